"""abra's swarm backend (CCCI_FAKE_BACKEND=swarm): the real engine through
the real docker CLI.
"""

import json
import os
import re
import sys

from . import backupbot
from .compose import compose_files, read_compose
from .errors import Fail, fatal
from .ports import release_port
from .realdocker import NAMESPACE, dk, dk_ok
from .store import state_path, remove_file, remove_tree


# -------------------------------------------------------- swarm backend --
#
# With CCCI_FAKE_BACKEND=swarm the app steps act on the real engine through
# the real docker CLI (never the stand-in tests/fake/docker; realdocker.py).
# CCCI_FAKE_STATE still holds the call log, hang markers, backups and the
# temporary override compose files.


def sw_stack_filter(stack):
    return "label=%s=%s" % (NAMESPACE, stack)


def sw_services(stack):
    return dk_ok(["service", "ls", "-q", "--filter",
                  sw_stack_filter(stack)]).stdout.split()


def sw_is_deployed(stack):
    return bool(sw_services(stack))


def sw_volumes(stack):
    return dk_ok(["volume", "ls", "-q", "--filter",
                  sw_stack_filter(stack)]).stdout.split()


def sw_secrets(stack, env):
    """(id, name) of the app's secrets: STACK_NAME_VERSION for each
    SECRET_NAME_VERSION of the env file, any version. They are found by
    name, as abra does: they carry no stack label (see sw_create_secrets)."""
    prefixes = ["%s_%s_" % (stack, m.group(1).lower()) for m in (
        re.fullmatch(r"SECRET_([A-Z0-9_]+)_VERSION", k) for k in env) if m]
    if not prefixes:
        return []
    out = dk_ok(["secret", "ls", "--filter", "name=" + stack + "_",
                 "--format", "{{.ID}} {{.Name}}"]).stdout
    found = []
    for line in out.splitlines():
        sid, _, name = line.strip().partition(" ")
        if any(name.startswith(p) and len(name) > len(p) for p in prefixes):
            found.append((sid, name))
    return found


def sw_service_labels():
    """Stack name → labels of its services (the app service's win), from
    the engine: every service that carries a stack namespace label."""
    ids = dk_ok(["service", "ls", "-q", "--filter",
                 "label=" + NAMESPACE]).stdout.split()
    if not ids:
        return {}
    p = dk(["service", "inspect"] + ids)
    try:
        # a service removed since `ls` makes inspect exit 1 after printing
        # the others
        data = json.loads(p.stdout or "[]")
    except ValueError:
        raise fatal("docker service inspect: %s" % p.stderr.strip())
    out = {}
    for svc in data:
        labels = (svc.get("Spec") or {}).get("Labels") or {}
        stack = labels.get(NAMESPACE)
        if not stack:
            continue
        cur = out.setdefault(stack, {})
        if "coop-cloud.%s.version" % stack in labels or not cur:
            cur.update(labels)
    return out


def sw_create_secrets(secrets):
    """Real secrets ([(name, value)]), without the com.docker.stack.namespace
    label: `docker stack rm` removes every secret that carries it, and an
    app's secrets must outlive an undeploy (abra's do: undeploy, then
    deploy again)."""
    made = []
    try:
        for name, value in secrets:
            p = dk(["secret", "create", name, "-"], input=value)
            if p.returncode != 0:
                err = p.stderr.strip()
                if "already exists" in err or "AlreadyExists" in err:
                    raise fatal("secret %s already exists" % name)
                raise fatal("creating secret %s: %s" % (name, err))
            made.append(name)
    except Fail:
        for name in made:
            dk(["secret", "rm", name])
        raise


def sw_deploy(domain, stack, path, env, cenv, labels, crashloop, docs):
    """`docker stack deploy` of the recipe's compose files plus an override
    file with abra's labels on the `app` service, the env file's values
    substituted by docker from its environment."""
    files = compose_files(env)
    services, _ = read_compose(path, cenv, docs)  # the file backend's checks
    first = docs[0][1]
    override = {"version": str(first.get("version") or "3.8"),
                "services": {}}
    if "app" in services:
        app = {"deploy": {"labels": labels}}
        if crashloop:
            # the task's container is created but cannot start: never a
            # running replica, whatever the image
            app["entrypoint"] = ["/ccci-fake-crashloop-no-such-file"]
        override["services"]["app"] = app
    tmpdir = state_path("tmp", "deploy.%d" % os.getpid())
    remove_tree(tmpdir)
    os.makedirs(tmpdir)
    try:
        # --resolve-image never: the images are local (built, not pulled)
        # and there is no registry to ask for a digest
        args = ["stack", "deploy", "--resolve-image", "never"]
        for name in files:
            args += ["-c", name]
        if override["services"]:
            ofile = os.path.join(tmpdir, "abra-override.yml")
            with open(ofile, "w", encoding="utf-8") as f:
                json.dump(override, f, indent=1)  # JSON is YAML
            args += ["-c", ofile]
        args.append(stack)
        p = dk(args, env=cenv, cwd=path)
        if p.returncode != 0:
            raise fatal("deploy of %s failed: %s" % (
                domain, (p.stderr or p.stdout).strip()))
        sys.stdout.write(p.stdout)
    finally:
        remove_tree(tmpdir)


def sw_backup_plan(stack):
    """backupbot's plan (backupbot.py) over the stack's services as the
    engine holds them: their labels and volume mounts."""
    ids = sw_services(stack)
    p = dk(["service", "inspect"] + ids)
    try:
        data = json.loads(p.stdout or "[]")
    except ValueError:
        raise fatal("docker service inspect: %s" % p.stderr.strip())
    services = {}
    for svc in data:
        spec = svc.get("Spec") or {}
        mounts = ((spec.get("TaskTemplate") or {}).get("ContainerSpec")
                  or {}).get("Mounts") or []
        services[spec.get("Name", "")] = (
            spec.get("Labels") or {},
            [(m.get("Source", ""), m.get("Target", "")) for m in mounts
             if m.get("Type") == "volume" and m.get("Source")])
    return backupbot.plan(stack, services)


def sw_running_container(stack, service):
    """A running container of the stack's `service` (full name)."""
    ids = dk_ok(["ps", "-q", "--no-trunc",
                 "--filter", "label=com.docker.swarm.service.name=" + service,
                 "--filter", sw_stack_filter(stack),
                 "--filter", "status=running"]).stdout.split()
    if not ids:
        raise fatal("no running container of service %s (not converged "
                    "yet?)" % service)
    return ids[0]


def sw_backup(domain, stack, noop=False):
    """`docker cp` of each path backupbot's labels name, from a running
    container of its service, into the backup store (replaced whole)."""
    if not sw_is_deployed(stack):
        raise fatal("%s is not deployed" % domain)
    items = [] if noop else sw_backup_plan(stack)
    dest = state_path("backups", domain)
    tmp = dest + ".tmp.%d" % os.getpid()
    remove_tree(tmp)
    os.makedirs(tmp)
    try:
        for it in items:
            cid = sw_running_container(stack, it.service)
            to = os.path.join(tmp, it.store)
            os.makedirs(os.path.dirname(to), exist_ok=True)
            # PATH/. copies a directory's content; a file is copied as is
            # (docker cp needs no shell in the container: FROM scratch works)
            src = it.path.rstrip("/")
            p = dk(["cp", "%s:%s/." % (cid, src), to])
            if p.returncode != 0:
                dk_ok(["cp", "%s:%s" % (cid, src), to])
            print("%s: %s backed up" % (it.service, it.path))
        remove_tree(dest)
        os.replace(tmp, dest)
    finally:
        remove_tree(tmp)


def sw_restore(domain, stack):
    """`docker cp` of each kept path back into a running container of its
    service: the backup's files overwrite, files it lacks stay (as a
    restic restore)."""
    if not sw_is_deployed(stack):
        raise fatal("%s is not deployed" % domain)
    src = state_path("backups", domain)
    if not os.path.isdir(src):
        raise fatal("no backup of %s to restore" % domain)
    for it in sw_backup_plan(stack):
        kept = os.path.join(src, it.store)
        if not os.path.exists(kept):
            continue
        cid = sw_running_container(stack, it.service)
        if os.path.isdir(kept):
            dk_ok(["cp", kept + "/.", "%s:%s" % (cid, it.path)])
        else:
            dk_ok(["cp", kept, "%s:%s" % (cid, it.path)])
        print("%s: %s restored" % (it.service, it.path))


def sw_rm(domain, stack, env, env_path):
    if sw_is_deployed(stack):
        raise fatal("%s is still deployed. Run \"abra app undeploy %s\""
                    % (domain, domain))
    for vol in sw_volumes(stack):
        p = dk(["volume", "rm", vol])
        if p.returncode != 0:
            # docker's own words: "Error response from daemon: remove
            # VOL: volume is in use - [ids]" while containers remain
            raise fatal("removing volumes failed: %s" % p.stderr.strip())
        print("volume %s removed" % vol)
    for sid, name in sw_secrets(stack, env):
        p = dk(["secret", "rm", sid])
        if p.returncode != 0 and "not found" not in p.stderr.lower():
            raise fatal("removing secret %s failed: %s"
                        % (name, p.stderr.strip()))
        print("secret %s removed" % name)
    remove_file(env_path)
    release_port(env.get("APP_PORT"), env_path)
