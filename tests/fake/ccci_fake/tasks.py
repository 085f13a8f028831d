"""The swarm model of services and their tasks: deploys as rolling updates
spread over CCCI_FAKE_ABRA_CONVERGE_MS, task states derived from the clock,
crash loops.
"""


import os

from .store import new_hex_id, new_id, stack_labels


# -- tasks
#
# Each service keeps its tasks, each with its own copy of the spec it runs
# (`spec`), as swarmkit does. A task's state is derived from the clock:
# `pending` until `run_at`, then `running` (or `failed` when it cannot
# start), `shutdown` from `stop_at` on. A redeploy that changes the task
# spec is a rolling update (stop-first, as the engine's default) spread
# over CCCI_FAKE_ABRA_CONVERGE_MS = c after the deploy at t0:
#
#   [t0, t0+c/4)      UpdateStatus null (swarmkit resets it when the spec
#                     changes, before its updater starts); old task running
#   [t0+c/4, t0+c/2)  UpdateStatus updating; old task still running
#   [t0+c/2, t0+3c/4) old task shut down, the new one pending (0/1)
#   [t0+3c/4, t0+c)   new task running (or failed), still updating
#   t0+c on           completed (paused, with the task's error, when the new
#                     task cannot start)
#
# So a harness that counts running replicas sees 1/1 with no update status
# at first, and with `updating` next, while the OLD task serves: the wrong
# "converged" the real engine gives too. A redeploy that changes only
# service labels keeps its tasks and has no UpdateStatus (the engine drops
# it), like the engine.

TASK_HISTORY = 5  # swarmkit's default task history limit per slot
CRASH_ERR = ("starting container failed: failed to create shim task: OCI "
             "runtime create failed: runc create failed: unable to start "
             "container process: exec: \"/ccci-fake-crashloop-no-such-file\": "
             "stat /ccci-fake-crashloop-no-such-file: no such file or "
             "directory: unknown")


def task_template(stack, image, crashloop):
    """A task spec as the engine stores it in the task: no defaults filled
    in (compare docker_cmds.with_inserted_defaults, what the CLI's `service
    inspect` adds). `docker stack deploy` of a compose service that sets no
    `deploy.restart_policy` and no `stop_grace_period` (measured): no
    RestartPolicy at all, no StopGracePeriod. Every service of the stand-in
    is of that kind (its compose reader does not read either key): the
    form public recipes' database services take, and the one a harness
    comparing the CLI's template with a task's spec gets wrong."""
    container = {"Image": image, "Labels": stack_labels(stack),
                 "Privileges": {"CredentialSpec": None,
                                "SELinuxContext": None},
                 "Isolation": "default"}
    if crashloop:
        container["Command"] = ["/ccci-fake-crashloop-no-such-file"]
    return {"ContainerSpec": container, "Resources": {},
            "Placement": {}, "ForceUpdate": 0}


DIE_ERR = "task: non-zero exit (1)"  # swarmkit's Status.Err for an exit


def new_task(spec, run_at, crashloop, now, die_on=None):
    """`die_on`: a file (CCCI_FAKE_ABRA_DIE_ON) whose appearance ends the
    running task: its container exits 1 at the file's mtime, as an app
    that dies after its start (the engine's restart is not modelled: the
    slot stays empty)."""
    return {"id": new_id(25), "container_id": new_hex_id(), "spec": spec,
            "created": now, "run_at": run_at, "stop_at": None,
            "fail": bool(crashloop), "die_on": die_on}


def died_at(t):
    """When the task's container exited by the CCCI_FAKE_ABRA_DIE_ON knob,
    or None: the file's mtime, once it exists (never before the task
    ran)."""
    path = t.get("die_on")
    if not path:
        return None
    try:
        at = os.stat(path).st_mtime
    except OSError:
        return None
    return max(at, t["run_at"])


def deploy_service(prev, stack, image, labels, crashloop, now, converge,
                   die_on=None):
    """The service record after a deploy at `now`: a first deploy starts
    one task; a spec change starts a rolling update (timeline above); a
    redeploy that changes only labels keeps the tasks and drops the
    update status. `container_id`/`task_id`/`image` name the newest task
    (what an undeploy leaves lingering)."""
    spec = task_template(stack, image, crashloop)
    svc = {"id": prev["id"] if prev else new_id(25), "image": image,
           "labels": labels, "replicas": 1,
           "created": prev["created"] if prev else now, "spec": spec}
    if prev is None:
        svc["tasks"] = [new_task(spec, now + converge, crashloop, now,
                                 die_on)]
        svc["update"] = None
    elif prev.get("spec") == spec:
        svc["tasks"] = prev.get("tasks", [])
        svc["update"] = None
    else:
        tasks = [dict(t) for t in prev.get("tasks", [])]
        for t in tasks:
            if t.get("stop_at") is None or t["stop_at"] > now + converge / 2:
                t["stop_at"] = now + converge / 2
        fresh = new_task(spec, now + 3 * converge / 4, crashloop, now,
                         die_on)
        svc["tasks"] = ([fresh] + tasks)[:TASK_HISTORY]
        svc["update"] = {"shown": now + converge / 4, "done": now + converge,
                         "final": "paused" if crashloop else "completed",
                         "task": fresh["id"]}
    newest = svc["tasks"][0]
    svc["container_id"] = newest["container_id"]
    svc["task_id"] = newest["id"]
    svc["updated"] = prev is not None
    return svc


def task_state(t, now):
    """(state, desired state, error) of a task at `now`."""
    if t.get("stop_at") is not None and now >= t["stop_at"]:
        return "shutdown", "shutdown", ""
    desired = "running"
    if t.get("stop_at") is not None:
        desired = "shutdown"  # the updater decided; it still runs a while
    if now < t["run_at"]:
        return "pending", desired, ""
    if t.get("fail"):
        return "failed", "shutdown", CRASH_ERR
    died = died_at(t)
    if died is not None and now >= died:
        return "failed", "shutdown", DIE_ERR
    return "running", desired, ""


def service_running(svc, now):
    """Running tasks of any spec: what `service ls` counts as replicas."""
    return sum(1 for t in svc.get("tasks", [])
               if task_state(t, now)[0] == "running")


def update_status(svc, now):
    """(State, Message) of the service's UpdateStatus, or None."""
    u = svc.get("update")
    if not u or now < u["shown"]:
        return None
    if now < u["done"]:
        return "updating", "update in progress"
    if u["final"] == "paused":
        return "paused", ("update paused due to failure or early termination "
                          "of task %s" % u["task"])
    return "completed", "update completed"
