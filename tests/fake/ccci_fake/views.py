"""The engine's views derived from the state: services, task containers
and networks as `docker service/ps/network` show them.
"""


from .store import (
    state_path, stable_hex, all_stacks, all_test_containers, is_deployed,
    lingering, list_dir, read_json, stack_labels,
)
from .tasks import service_running, task_state, task_template, update_status


# -------------------------------------------------------- derived views --


def view_services(now):
    out = []
    for rec in all_stacks():
        for name, svc in sorted(rec.get("services", {}).items()):
            labels = dict(svc.get("labels", {}))
            labels.update(stack_labels(rec["stack"]))
            labels["com.docker.stack.image"] = svc["image"]
            out.append({
                "id": svc["id"],
                "name": name,
                "image": svc["image"],
                "labels": labels,
                "desired": svc.get("replicas", 1),
                "running": service_running(svc, now),
                "update": update_status(svc, now),
                "update_times": svc.get("update"),
                "created": svc.get("created", rec.get("deployed_at", now)),
                "spec": svc.get("spec") or task_template(
                    rec["stack"], svc["image"], False),
                "tasks": svc.get("tasks", []),
            })
    return out


def task_container(rec, svc_name, svc, state):
    return {
        "id": svc["container_id"],
        "name": "%s.1.%s" % (svc_name, svc["task_id"]),
        "image": svc["image"],
        "cmd": "",
        "labels": {
            "com.docker.stack.namespace": rec["stack"],
            "com.docker.swarm.service.id": svc["id"],
            "com.docker.swarm.service.name": svc_name,
            "com.docker.swarm.task.id": svc["task_id"],
            "com.docker.swarm.task.name": "%s.1.%s" % (svc_name,
                                                       svc["task_id"]),
        },
        "state": state,
        "created": rec.get("deployed_at", 0),
        "stack": rec["stack"],
    }


def view_containers(now):
    """Task containers of live services (a running task's, an exited one
    for a task that failed to start), lingering containers of undeployed
    stacks, and containers made by `docker run`."""
    out = []
    for rec in all_stacks():
        for name, svc in sorted(rec.get("services", {}).items()):
            for t in svc.get("tasks", []):
                state = task_state(t, now)[0]
                # a pending task has no container yet; a shut-down one's
                # container is left out (the engine removes it in time)
                if state in ("running", "failed"):
                    c = dict(svc, container_id=t["container_id"],
                             task_id=t["id"],
                             image=t["spec"]["ContainerSpec"]["Image"])
                    out.append(task_container(
                        rec, name, c,
                        "running" if state == "running" else "exited"))
        for c in lingering(rec, now):
            out.append(task_container(rec, c["service"], c, "running"))
    for c in all_test_containers():
        out.append(dict(c, stack=None))
    return out


BUILTIN_NETWORKS = [
    ("bridge", "bridge", "local"),
    ("docker_gwbridge", "bridge", "local"),
    ("host", "host", "local"),
    ("ingress", "overlay", "swarm"),
    ("none", "null", "local"),
]


def view_networks(now):
    out = []
    for name, driver, scope in BUILTIN_NETWORKS:
        out.append({"id": stable_hex(name)[:25], "name": name,
                    "driver": driver, "scope": scope, "labels": {}})
    for rec in all_stacks():
        if is_deployed(rec) or lingering(rec, now):
            for name, nid in sorted(rec.get("networks", {}).items()):
                out.append({"id": nid, "name": name, "driver": "overlay",
                            "scope": "swarm",
                            "labels": stack_labels(rec["stack"])})
    out.extend(left_networks())
    return out


def left_networks():
    out = []
    for name in list_dir(state_path("networks")):
        if name.endswith(".json"):
            rec = read_json(state_path("networks", name))
            if rec is not None:
                out.append(rec)
    return out
