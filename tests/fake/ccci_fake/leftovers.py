"""What an undeploy leaves behind (CCCI_FAKE_UNDEPLOY_LEAVES): networks and
containers a `docker stack rm` fails to remove, and who uses a volume.
"""

import time

from .knobs import knob
from .render import iso
from .store import state_path, all_test_containers, stack_labels, write_json
from .views import task_container, view_networks


# ------------------------------------- what an undeploy leaves behind --
#
# `docker stack rm` removes a stack's services, then its networks, in one
# pass: a network still attached to a task that is shutting down fails with
# "network ... is in use by task ..." and is never retried (moby/moby#31068),
# and a container whose task is gone may stay. CCCI_FAKE_UNDEPLOY_LEAVES
# (read by abra's undeploy in the file backend) makes an undeploy leave them
# for good: left networks are `networks/ID.json`, left containers are
# `containers/ID.json` records (as `docker run` makes) that keep the task
# container's labels, its network and its volumes.


def undeploy_leaves(domain):
    """What CCCI_FAKE_UNDEPLOY_LEAVES asks this undeploy to leave: a subset
    of {"network", "container"} (items may be scoped: `network@DOMAIN`)."""
    return {what for what in ("network", "container")
            if knob("CCCI_FAKE_UNDEPLOY_LEAVES", what, domain)}


def leave_behind(rec, leaves, now):
    """Called under the state lock by an undeploy that just moved the
    services' task containers to `rec["lingering"]`: moves the stack's
    networks (when "network" is asked) and the first task container (when
    "container" is asked) out of the stack record, so they outlive the
    linger and `app rm`. Returns the message `docker stack rm` fails with,
    or None when no network was left."""
    stack = rec["stack"]
    nets = rec.get("networks", {})
    failure = None
    left_net_ids = []
    if "network" in leaves:
        lines = []
        for name, nid in sorted(nets.items()):
            write_json(state_path("networks", nid + ".json"), {
                "id": nid, "name": name, "driver": "overlay",
                "scope": "swarm", "labels": stack_labels(stack),
                "created": now, "rm_attempts": 0})
            left_net_ids.append(nid)
            task = (rec.get("lingering") or [{}])[0].get("task_id", "0" * 25)
            lines.append("Failed to remove network %s: Error response from "
                         "daemon: rpc error: code = FailedPrecondition desc "
                         "= network %s is in use by task %s" % (nid, nid,
                                                                task))
        rec["networks"] = {}
        if lines:
            failure = "\n".join(lines + [
                "failed to remove some resources from stack: %s" % stack])
    if "container" in leaves and rec.get("lingering"):
        c = rec["lingering"].pop(0)
        tc = task_container(rec, c["service"], c, "running")
        write_json(state_path("containers", tc["id"] + ".json"), {
            "id": tc["id"], "name": tc["name"], "image": tc["image"],
            "cmd": "", "labels": tc["labels"], "state": "running",
            "created": now, "autoremove": False,
            # the network it is attached to: the left one, else the
            # stack's own (which then goes with the linger, as here the
            # network of an unowned container is the test's concern)
            "networks": left_net_ids or sorted(nets.values()),
            "mounts": sorted(rec.get("volumes", [])),
        })
    return failure


def containers_using_volumes(volumes):
    """`docker run`-style containers (left ones included) mounting any of
    `volumes`: `docker volume rm` fails while they exist."""
    vols = set(volumes)
    return [c for c in all_test_containers() if vols & set(c.get("mounts", []))]


def container_object(c):
    """`docker container inspect` of one container, the fields the
    harness reads (and a few around them) as docker 20.10 prints them."""
    nets = {}
    for n in view_networks(time.time()):
        if n["id"] in c.get("networks", []) or n["name"] in c.get("networks", []):
            nets[n["name"]] = {"NetworkID": n["id"]}
    return {
        "Id": c["id"],
        "Created": iso(c.get("created", 0)),
        "Name": "/" + c["name"],
        "State": {"Status": c["state"], "Running": c["state"] == "running"},
        "Config": {"Image": c["image"], "Labels": c.get("labels") or None},
        "NetworkSettings": {"Networks": nets},
        "Mounts": [{"Type": "volume", "Name": v} for v in c.get("mounts", [])],
    }
