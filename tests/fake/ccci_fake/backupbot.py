"""What `abra app backup create` and `abra app restore` copy: the paths
backupbot's labels name, in both backends.

backupbot (Co-op Cloud's backup bot) reads the deploy labels of the app's
services: a service with `backupbot.backup=true` is backed up; its
`backupbot.backup.path=/path[,/path2]` names the paths inside its
containers to keep (absolute, comma-separated), and without that label
every volume the service mounts is kept. Only data on a volume survives a
redeploy, so a path on no volume of its service is an error that names it.

Each path is kept in the backup store by the volume that holds it and the
path inside that volume: `/data` on volume `STACK_data` mounted at `/data`
is `backups/DOMAIN/data/`, `/data/db` is `backups/DOMAIN/data/db/`.
"""

import posixpath

from .errors import fatal


LABEL = "backupbot.backup"
PATH_LABEL = "backupbot.backup.path"


class Item:
    """One path to back up: of `service`, at `path` in its containers, on
    `volume` (mounted at `target`), kept at `store` (relative to the
    domain's backup directory)."""

    def __init__(self, service, path, volume, target, store):
        self.service = service
        self.path = path
        self.volume = volume
        self.target = target
        self.store = store

    def inside(self):
        """The path relative to the volume's root ("" for the whole)."""
        rel = posixpath.relpath(self.path, self.target)
        return "" if rel == "." else rel


def plan(stack, services):
    """[Item] for `services`: {service name: (labels, [(volume, target)])},
    in name order. A service without `backupbot.backup=true` is left out."""
    items = []
    for name in sorted(services):
        labels, mounts = services[name]
        if labels.get(LABEL) != "true":
            continue
        raw = labels.get(PATH_LABEL, "")
        paths = [p.strip() for p in raw.split(",") if p.strip()] if raw \
            else [t for _, t in mounts]
        for path in paths:
            if not path.startswith("/"):
                raise fatal("service %s: %s=%s: %r is not an absolute path"
                            % (name, PATH_LABEL, raw, path))
            path = posixpath.normpath(path)
            # the innermost mount that holds the path
            holders = [(v, t) for v, t in mounts
                       if path == t or path.startswith(t.rstrip("/") + "/")]
            if not holders:
                raise fatal("service %s: backup path %s is on no volume of "
                            "the service (mounts: %s)" % (
                                name, path, ", ".join(
                                    "%s:%s" % m for m in mounts) or "none"))
            volume, target = max(holders, key=lambda m: len(m[1]))
            short = volume[len(stack) + 1:] \
                if volume.startswith(stack + "_") else volume
            item = Item(name, path, volume, target, short)
            if item.inside():
                item.store = posixpath.join(short, item.inside())
            items.append(item)
    return items
