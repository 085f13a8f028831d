"""File-backed stand-in for `docker` (the engine's view of one swarm node).

It answers the few docker queries cc-ci-run makes (SPEC section 10: the
engine is asked about convergence and about what is left of a stack) from
the same state directory that the stand-in `abra` writes, so both programs
see one fake swarm. The state model is this package's, shared with
`abra` (one model of the swarm, not two that drift apart).

State, under CCCI_FAKE_STATE (see tests/fake/README.md):

    .lock                 flock(2) held for every read-modify-write
    calls.log             append-only JSON lines, one per step event
    stacks/<stack>.json   services, networks, lingering containers
    volumes/<name>/       meta.json (labels) and _data/ (the data)
    secrets/<name>.json   labels, id, data
    containers/<id>.json  containers made by `docker run` (and task
                          containers an undeploy left behind)
    networks/<id>.json    networks an undeploy left behind
    images.json           image references present locally
    backups/<domain>/     what `abra app backup create` saved
    hang/<step>.<pid>     marker written by a step told to hang

Records are replaced atomically (write a temporary file, rename), so
readers never take the lock and never see half a record.

What mirrors the real engine (20.10), on purpose, because the harness must
cope with it: IDs in `ls` output are truncated to 12 characters and
`inspect`/`rm` accept unique prefixes; `name=` filters are prefixes for
services and secrets but substrings for networks and volumes; a service
that was never updated has no UpdateStatus; `network ls` lists the
built-in networks too; `rm` of a missing container prints an error per id
and exits 1.
"""

import json
import os
import sys
import time

from .errors import Fail, default_signals, die
from .flags import (
    LS_SPEC, match_filters, one_format, parse_filters, parse_flags, short,
)
from .knobs import run_step
from .leftovers import container_object
from .render import emit, iso, iso_ns, labels_str, render
from .store import (
    state_path, stable_hex, all_secrets, all_stacks, all_test_containers,
    all_volumes, env_ms, images, lingering, load_stack, locked, new_hex_id,
    new_id, normalize_image, read_json, remove_file, save_stack,
    state_root, volume_data, write_json,
)
from .tasks import DIE_ERR, died_at, task_state
from .views import (
    BUILTIN_NETWORKS, view_containers, view_networks, view_services,
)


ENGINE_VERSION = "20.10.24-ccci-fake"


# -------------------------------------------------------------- commands --


def cmd_service(argv):
    if not argv:
        raise Fail("docker service: subcommand required (docker stand-in)")
    sub, rest = argv[0], argv[1:]
    if sub in ("ls", "list"):
        return run_step("docker-service-ls", "", ["docker"] + ARGV,
                        lambda: service_ls(rest), mutating=False)
    if sub == "inspect":
        return run_step("docker-service-inspect", "", ["docker"] + ARGV,
                        lambda: service_inspect(rest), mutating=False)
    if sub == "ps":
        return run_step("docker-service-ps", "", ["docker"] + ARGV,
                        lambda: service_ps(rest), mutating=False)
    raise Fail("docker service %s: unsupported (docker stand-in)" % sub)


def find_service(services, want):
    hit = [s for s in services if s["name"] == want or s["id"] == want]
    if not hit:
        hit = [s for s in services if s["id"].startswith(want)]
    return hit[0] if len(hit) == 1 else None


def task_object(s, t, now):
    """A task as `docker inspect --type task` prints it (the fields a
    harness reads, shaped as the engine's)."""
    state, desired, err = task_state(t, now)
    changed = t["created"]
    for at in (t["run_at"], t.get("stop_at"), died_at(t)):
        if at is not None and at <= now:
            changed = max(changed, at)
    status = {"Timestamp": iso_ns(changed), "State": state,
              "Message": state, "PortStatus": {}}
    if err:
        status["Err"] = err
    if state in ("running", "failed"):
        # An exit by CCCI_FAKE_ABRA_DIE_ON is the app's own exit 1; a
        # container that never started has the runtime's 128.
        code = (1 if err == DIE_ERR else 128) if err else 0
        status["ContainerStatus"] = {"ContainerID": t["container_id"],
                                     "PID": 0 if err else 4242,
                                     "ExitCode": code}
    return {"ID": t["id"], "Version": {"Index": 1},
            "CreatedAt": iso_ns(t["created"]), "UpdatedAt": iso_ns(changed),
            "Labels": {}, "Spec": t["spec"], "ServiceID": s["id"],
            "Slot": 1, "NodeID": "ccci0fake0node", "Status": status,
            "DesiredState": desired}


def service_ps(argv):
    """`docker service ps SERVICE...`: every task the engine keeps of the
    services (history included), newest first per service."""
    spec = dict(LS_SPEC, **{"--no-resolve": ("noresolve", False)})
    opts, args = parse_flags(argv, spec)
    if not args:
        raise Fail('"docker service ps" requires at least 1 argument.')
    filters = parse_filters(opts.get("filter"),
                            {"desired-state", "id", "name", "node"})
    now = time.time()
    services = view_services(now)
    rows = []
    for want in args:
        svc = find_service(services, want)
        if svc is None:
            raise Fail("no such service: %s" % want)
        for t in svc["tasks"]:
            obj = task_object(svc, t, now)
            ds = filters.get("desired-state")
            if ds and obj["DesiredState"] not in ds:
                continue
            if filters.get("id") and not any(
                    t["id"].startswith(i) for i in filters["id"]):
                continue
            rows.append({"ID": short(t["id"], opts.get("notrunc")),
                         "Name": "%s.1" % svc["name"],
                         "Image": t["spec"]["ContainerSpec"]["Image"],
                         "Node": "ccci-fake", "DesiredState":
                         obj["DesiredState"].capitalize(),
                         "CurrentState": obj["Status"]["State"].capitalize(),
                         "Error": obj["Status"].get("Err", ""),
                         "Ports": ""})
    if opts.get("quiet"):
        emit(rows, "", "ID", quiet=True)
        return 0
    fmt = one_format(opts, None)
    if fmt is None:
        print("ID\tNAME\tIMAGE\tNODE\tDESIRED STATE\tCURRENT STATE\t"
              "ERROR\tPORTS")
        fmt = "{{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t" \
              "{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t"
    emit(rows, fmt)
    return 0


def cmd_inspect(argv):
    """`docker inspect --type task ID...` (tasks are the only type the
    harness asks this verb for): found ones as a JSON array, an error per
    missing id, exit 1 when any is missing."""
    opts, args = parse_flags(argv, {"--type": ("type", True),
                                    "--format": ("format", True),
                                    "-f": ("format", True)})
    if (opts.get("type") or [""])[-1] != "task":
        raise Fail("docker inspect without --type task: unsupported "
                   "(docker stand-in)")
    if not args:
        raise Fail('"docker inspect" requires at least 1 argument.')
    now = time.time()
    found, missing = [], []
    every = [(svc, t) for svc in view_services(now) for t in svc["tasks"]]
    for want in args:
        hit = [(svc, t) for svc, t in every if t["id"] == want]
        if not hit:
            hit = [(svc, t) for svc, t in every if t["id"].startswith(want)]
        if len(hit) == 1:
            found.append(task_object(hit[0][0], hit[0][1], now))
        else:
            missing.append(want)
    fmt = one_format(opts, None)
    if fmt is None:
        print(json.dumps(found, indent=4))
    else:
        emit(found, fmt)
    for m in missing:
        sys.stderr.write("Error: No such task: %s\n" % m)
    return 1 if missing else 0


def service_ls(argv):
    opts, args = parse_flags(argv, LS_SPEC)
    if args:
        raise Fail('"docker service ls" accepts no arguments.')
    filters = parse_filters(opts.get("filter"), {"label", "name", "id"})
    now = time.time()
    rows = []
    for s in view_services(now):
        if not match_filters(s, filters, "prefix"):
            continue
        rows.append({"ID": short(s["id"], opts.get("notrunc")),
                     "Name": s["name"], "Mode": "replicated",
                     "Replicas": "%d/%d" % (s["running"], s["desired"]),
                     "Image": s["image"], "Ports": ""})
    if opts.get("quiet"):
        emit(rows, "", "ID", quiet=True)
        return 0
    fmt = one_format(opts, None)
    if fmt is None:
        print("ID\tNAME\tMODE\tREPLICAS\tIMAGE\tPORTS")
        fmt = "{{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t"
    emit(rows, fmt)
    return 0


def with_inserted_defaults(spec):
    """The task template as the CLI's `service inspect` prints it. The CLI
    always asks with insertDefaults=true (docker/cli
    cli/command/service/inspect.go), so the daemon applies swarmkit's
    InterpolateService (moby/swarmkit api/defaults/service.go): a
    container's StopGracePeriod 10 s and DNSConfig {} when unset,
    Resources {} and Placement {} when unset, a whole RestartPolicy
    (condition any, delay 5 s; moby's converter always prints MaxAttempts)
    when the service has none, else its Delay 5 s when unset. moby's
    service converter adds Runtime "container" (daemon/cluster/convert/
    service.go); the CLI's own API types print Privileges.NoNewPrivileges
    false (measured: Docker 20.10.24, CLI 28.2.2). The task's own copy of
    the spec has none of these (`docker inspect --type task`)."""
    t = json.loads(json.dumps(spec))
    c = t.setdefault("ContainerSpec", {})
    if c.get("StopGracePeriod") is None:
        c["StopGracePeriod"] = 10000000000
    if c.get("DNSConfig") is None:
        c["DNSConfig"] = {}
    c.setdefault("Privileges", {}).setdefault("NoNewPrivileges", False)
    if t.get("Resources") is None:
        t["Resources"] = {}
    if t.get("RestartPolicy") is None:
        t["RestartPolicy"] = {"Condition": "any", "Delay": 5000000000,
                              "MaxAttempts": 0}
    elif t["RestartPolicy"].get("Delay") is None:
        t["RestartPolicy"]["Delay"] = 5000000000
    if t.get("Placement") is None:
        t["Placement"] = {}
    t.setdefault("Runtime", "container")
    return t


def api_task_template(spec):
    """The task template as the API returns it without insertDefaults (the
    list, and an inspect that does not ask for them): the stored spec, plus
    the Runtime "container" moby's converter adds to every service it
    returns (not to a task's copy of the spec)."""
    t = json.loads(json.dumps(spec))
    t.setdefault("Runtime", "container")
    return t


def service_object(s, insert_defaults=True):
    """A service as `service inspect` prints it (the CLI asks with
    insertDefaults=true); with insert_defaults=False as the API's list
    returns it (the stand-in engine, api.py)."""
    template = (with_inserted_defaults if insert_defaults
                else api_task_template)(s["spec"])
    obj = {
        "ID": s["id"],
        "Version": {"Index": 1},
        "CreatedAt": iso(s["created"]),
        "UpdatedAt": iso(s["created"]),
        "Spec": {
            "Name": s["name"],
            "Labels": s["labels"],
            "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": s["desired"]}},
        },
    }
    if s["update"] is not None:
        state, message = s["update"]
        times = s["update_times"]
        obj["UpdateStatus"] = {"State": state, "Message": message,
                               "StartedAt": iso_ns(times["shown"])}
        if state != "updating":
            obj["UpdateStatus"]["CompletedAt"] = iso_ns(times["done"])
    return obj


def service_inspect(argv):
    opts, args = parse_flags(argv, {"--format": ("format", True),
                                    "-f": ("format", True),
                                    "--pretty": ("pretty", False)})
    if not args:
        raise Fail('"docker service inspect" requires at least 1 argument.')
    services = view_services(time.time())
    found, missing = [], []
    for want in args:
        hit = find_service(services, want)
        if hit is not None:
            found.append(service_object(hit))
        else:
            missing.append(want)
    fmt = one_format(opts, None)
    if fmt is None:
        print(json.dumps(found, indent=4))
    else:
        emit(found, fmt)
    if missing:
        for m in missing:
            sys.stderr.write("Error: no such service: %s\n" % m)
        return 1
    return 0


def container_row(c, notrunc):
    state = c["state"]
    return {
        "ID": short(c["id"], notrunc),
        "Names": c["name"],
        "Image": c["image"],
        "Command": json.dumps(c.get("cmd", "")),
        "CreatedAt": iso(c.get("created", 0)),
        "Labels": labels_str(c.get("labels", {})),
        "State": state,
        "Status": "Up 1 second" if state == "running" else "Exited (1)",
        "Ports": "", "Mounts": "", "Networks": "", "LocalVolumes": "0",
        "RunningFor": "1 second ago", "Size": "0B",
    }


def ps_race_victim(now, env=None):
    """CCCI_FAKE_DOCKER_PS_RACE=1 (in `env`, default os.environ): the first
    container listing that runs while an undeployed stack's containers
    linger fails as the real engine's can when a container is removed while
    it lists (once per state directory: the marker is created with O_EXCL).
    Returns the short id the listing fails on, or None."""
    env = os.environ if env is None else env
    if env.get("CCCI_FAKE_DOCKER_PS_RACE") != "1":
        return None
    gone = [c for rec in all_stacks() for c in lingering(rec, now)]
    if not gone:
        return None
    try:
        fd = os.open(state_path("ps-race.done"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    os.close(fd)
    return gone[0].get("container_id", "0" * 12)[:12]


def ps_race_once(now):
    """`docker ps` under CCCI_FAKE_DOCKER_PS_RACE (ps_race_victim)."""
    victim = ps_race_victim(now)
    if victim is not None:
        raise Fail("Error response from daemon: No such container: %s" % victim)


def cmd_ps(argv):
    spec = dict(LS_SPEC, **{"-a": ("all", False), "--all": ("all", False)})
    opts, args = parse_flags(argv, spec)
    if args:
        raise Fail('"docker ps" accepts no arguments.')
    ps_race_once(time.time())
    filters = parse_filters(opts.get("filter"),
                            {"label", "name", "id", "status"})
    notrunc = opts.get("notrunc")
    rows = []
    for c in view_containers(time.time()):
        if not opts.get("all") and c["state"] != "running":
            continue
        if filters.get("status") and c["state"] not in filters["status"]:
            continue
        if not match_filters(c, filters, "substring"):
            continue
        rows.append(container_row(c, notrunc))
    if opts.get("quiet"):
        emit(rows, "", "ID", quiet=True)
        return 0
    fmt = one_format(opts, None)
    if fmt is None:
        print("CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
        fmt = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t" \
              "{{.Status}}\t\t{{.Names}}"
    emit(rows, fmt)
    return 0


def cmd_object_ls(kind, argv):
    if not argv or argv[0] not in ("ls", "list"):
        raise Fail("docker %s %s: unsupported (docker stand-in)"
                   % (kind, " ".join(argv[:1])))
    opts, args = parse_flags(argv[1:], LS_SPEC)
    if args:
        raise Fail('"docker %s ls" accepts no arguments.' % kind)
    filters = parse_filters(opts.get("filter"), {"label", "name", "id"}
                            if kind != "volume" else {"label", "name"})
    notrunc = opts.get("notrunc")
    now = time.time()
    rows = []
    if kind == "network":
        for n in view_networks(now):
            if match_filters(n, filters, "substring"):
                rows.append({"ID": short(n["id"], notrunc), "Name": n["name"],
                             "Driver": n["driver"], "Scope": n["scope"],
                             "Labels": labels_str(n["labels"]),
                             "IPv6": "false", "Internal": "false",
                             "CreatedAt": iso(0)})
        quiet_field = "ID"
        default = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
        header = "NETWORK ID\tNAME\tDRIVER\tSCOPE"
    elif kind == "volume":
        for v in all_volumes():
            obj = {"id": v["name"], "name": v["name"], "labels": v["labels"]}
            if match_filters(obj, filters, "substring"):
                rows.append({"Name": v["name"], "Driver": "local",
                             "Labels": labels_str(v["labels"]),
                             "Links": "N/A", "Scope": "local",
                             "Mountpoint": volume_data(v["name"]),
                             "Size": "N/A"})
        quiet_field = "Name"
        default = "{{.Driver}}\t{{.Name}}"
        header = "DRIVER\tVOLUME NAME"
    else:
        for s in all_secrets():
            if match_filters(s, filters, "prefix"):
                rows.append({"ID": s["id"], "Name": s["name"], "Driver": "",
                             "Labels": labels_str(s["labels"]),
                             "CreatedAt": iso(s["created"]),
                             "UpdatedAt": iso(s["created"])})
        quiet_field = "ID"
        default = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}"
        header = "ID\tNAME\tDRIVER\tCREATED"
    if opts.get("quiet"):
        emit(rows, "", quiet_field, quiet=True)
        return 0
    fmt = one_format(opts, None)
    if fmt is None:
        print(header)
        fmt = default
    emit(rows, fmt)
    return 0


RUN_SPEC = {
    "-d": ("detach", False), "--detach": ("detach", False),
    "--rm": ("rm", False),
    "--label": ("label", True), "-l": ("label", True),
    "--name": ("name", True),
}


def cmd_run(argv):
    opts, args = parse_flags(argv, RUN_SPEC, stop_at_positional=True)
    if not args:
        raise Fail('"docker run" requires at least 1 argument.')
    if not opts.get("detach"):
        raise Fail("docker run without -d: unsupported (docker stand-in)")
    image, cmd = args[0], args[1:]
    labels = {}
    for item in opts.get("label", []):
        k, _, v = item.partition("=")
        labels[k] = v
    cid = new_hex_id()
    name = (opts.get("name") or [None])[-1]

    def body():
        nonlocal name
        with locked():
            existing = {c["name"] for c in view_containers(time.time())}
            if name is None:
                name = "ccci_fake_%s" % cid[:8]
            elif name in existing:
                raise Fail('docker: Error response from daemon: Conflict. The '
                           'container name "/%s" is already in use.' % name,
                           125)
            write_json(state_path("containers", cid + ".json"), {
                "id": cid, "name": name, "image": image,
                "cmd": " ".join(cmd), "labels": labels, "state": "running",
                "created": time.time(), "autoremove": bool(opts.get("rm")),
            })
        print(cid)
        return 0

    return run_step("docker-run", "", ["docker"] + ARGV, body)


def cmd_rm(argv):
    opts, args = parse_flags(argv, {"-f": ("force", False),
                                    "--force": ("force", False),
                                    "-v": ("volumes", False),
                                    "--volumes": ("volumes", False)})
    if not args:
        raise Fail('"docker rm" requires at least 1 argument.')

    def body():
        failed = False
        with locked():
            now = time.time()
            for want in args:
                err = remove_container(want, now, opts.get("force"))
                if err is not None:
                    sys.stderr.write("Error response from daemon: %s\n"
                                     % err[1])
                    # docker 20.10: with -f a missing container is printed
                    # and is not an error (exit 0)
                    failed = failed or err[0] != 404 or not opts.get("force")
                    continue
                print(want)
        return 1 if failed else 0

    return run_step("docker-rm", "", ["docker"] + ARGV, body)


def remove_container(want, now, force):
    """Removes one container (called under the state lock); None when it
    is gone, else (HTTP status, the engine's message): 404 for a missing
    one, 409 for a running one without `force`. A lingering task container
    goes; a live service's task would be rescheduled by the swarm, so it
    stays (and the removal succeeds)."""
    hit = resolve_container(want, now)
    if hit is None:
        return 404, "No such container: %s" % want
    if hit["stack"] is None:
        if hit["state"] == "running" and not force:
            return 409, ("You cannot remove a running container %s. Stop the "
                         "container before attempting removal or force "
                         "remove" % hit["id"])
        remove_file(state_path("containers", hit["id"] + ".json"))
    else:
        rec = load_stack(hit["stack"])
        if rec is not None:
            rec["lingering"] = [c for c in rec.get("lingering", [])
                                if c["container_id"] != hit["id"]]
            save_stack(rec)
    return None


def resolve_container(want, now):
    cs = view_containers(now)
    hit = [c for c in cs if c["id"] == want or c["name"] == want]
    if not hit:
        hit = [c for c in cs if c["id"].startswith(want)]
    return hit[0] if len(hit) == 1 else None


def cmd_image(argv):
    if not argv or argv[0] != "inspect":
        raise Fail("docker image %s: unsupported (docker stand-in)"
                   % " ".join(argv[:1]))
    opts, args = parse_flags(argv[1:], {"--format": ("format", True),
                                        "-f": ("format", True)})
    if not args:
        raise Fail('"docker image inspect" requires at least 1 argument.')

    def body():
        have = set(images())
        found, missing = [], []
        for ref in args:
            n = normalize_image(ref)
            if n in have:
                found.append(image_object(n))
            else:
                missing.append(ref)
        fmt = one_format(opts, None)
        if fmt is None:
            print(json.dumps(found, indent=4))
        else:
            emit(found, fmt)
        for m in missing:
            sys.stderr.write("Error: No such image: %s\n" % m)
        return 1 if missing else 0

    return run_step("docker-image-inspect", "", ["docker"] + ARGV, body,
                    mutating=False)


def image_object(ref):
    """An image present locally (`ref` normalised), as inspect shows it."""
    return {"Id": "sha256:" + stable_hex(ref), "RepoTags": [ref],
            "RepoDigests": []}


def label_filters(args):
    """The `label=` filters of a `docker ps`, without `label=`, joined by
    commas: what a `docker-ps@SCOPE` knob is matched against (so a test
    can hang the listing of one label, `docker-ps@cc-ci.run=RUN`, and not
    the teardown's listing of the stack)."""
    out = []
    for i, a in enumerate(args):
        v = None
        if a == "--filter" and i + 1 < len(args):
            v = args[i + 1]
        elif a.startswith("--filter="):
            v = a[len("--filter="):]
        if v and v.startswith("label="):
            out.append(v[len("label="):])
    return ",".join(out)


def cmd_pull(argv):
    opts, args = parse_flags(argv, {"-q": ("quiet", False),
                                    "--quiet": ("quiet", False)})
    if len(args) != 1:
        raise Fail('"docker pull" requires exactly 1 argument.')
    ref = normalize_image(args[0])

    def body():
        with locked():
            have = read_json(state_path("images.json"), [])
            if ref not in [normalize_image(i) for i in have]:
                have.append(ref)
                write_json(state_path("images.json"), have)
        if not opts.get("quiet"):
            print("%s: Pulling from library/%s" % (ref.rsplit(":", 1)[-1],
                                                   ref.split(":")[0]))
            print("Digest: sha256:%s" % stable_hex(ref))
            print("Status: Downloaded newer image for %s" % ref)
        print("docker.io/library/%s" % ref)
        return 0

    failure = ("Error response from daemon: Get \"https://registry-1.docker"
               ".io/v2/\": dial tcp: lookup registry-1.docker.io: no such "
               "host (injected by CCCI_FAKE_ABRA_FAIL)")
    return run_step("pull", "", ["docker"] + ARGV, body, scope=ref,
                    failure=failure)


def info_object():
    """`docker info` as `{{json .}}` shows it (the stand-in engine's
    GET /info adds to it)."""
    return {"ServerVersion": ENGINE_VERSION,
            "Swarm": {"LocalNodeState": "active", "NodeID": "ccci0fake0node",
                      "ControlAvailable": True}}


def cmd_info(argv):
    opts, args = parse_flags(argv, {"--format": ("format", True),
                                    "-f": ("format", True)})
    if args:
        raise Fail('"docker info" accepts no arguments.')
    info = info_object()
    fmt = one_format(opts, None)
    if fmt is None:
        print("Server Version: %s\nSwarm: active" % ENGINE_VERSION)
    else:
        print(render(fmt, info))
    return 0


def cmd_version(argv):
    opts, args = parse_flags(argv, {"--format": ("format", True),
                                    "-f": ("format", True)})
    info = {"Client": {"Version": ENGINE_VERSION},
            "Server": {"Version": ENGINE_VERSION}}
    fmt = one_format(opts, None)
    if fmt is None:
        print("Docker version %s (file-backed stand-in)" % ENGINE_VERSION)
    else:
        print(render(fmt, info))
    return 0


INSPECT_SPEC = {"--format": ("format", True), "-f": ("format", True)}


def cmd_container_inspect(argv):
    opts, args = parse_flags(argv, dict(INSPECT_SPEC, **{
        "-s": ("size", False), "--size": ("size", False)}))
    return inspect_each(
        "container", opts, args, resolve_container, container_object,
        "Error response from daemon: No such container: %s\n")


def inspect_each(kind, opts, args, resolve, to_object, missing_msg):
    """`docker KIND inspect`: each argument resolved and printed (JSON, or
    `--format` per object); a missing one is `missing_msg` on stderr and
    exit 1, after the found ones are printed, as the real CLI does."""
    if not args:
        raise Fail('"docker %s inspect" requires at least 1 argument.' % kind)
    now = time.time()
    found, missing = [], []
    for want in args:
        hit = resolve(want, now)
        if hit is None:
            missing.append(want)
        else:
            found.append(to_object(hit))
    fmt = one_format(opts, None)
    if fmt is None:
        print(json.dumps(found, indent=4))
    else:
        emit(found, fmt)
    for m in missing:
        sys.stderr.write(missing_msg % m)
    return 1 if missing else 0


def resolve_network(want, now):
    ns = view_networks(now)
    hit = [n for n in ns if n["id"] == want or n["name"] == want]
    if not hit:
        hit = [n for n in ns if n["id"].startswith(want)]
    return hit[0] if len(hit) == 1 else None


def network_users(n):
    """Containers attached to network `n` (by id or name)."""
    return [c for c in all_test_containers()
            if n["id"] in c.get("networks", []) or n["name"] in c.get("networks", [])]


def network_object(n):
    return {
        "Name": n["name"], "Id": n["id"], "Created": iso(n.get("created", 0)),
        "Scope": n["scope"], "Driver": n["driver"],
        "Labels": n.get("labels", {}),
        "Containers": {c["id"]: {"Name": c["name"]} for c in network_users(n)},
    }


def cmd_network_inspect(argv):
    opts, args = parse_flags(argv, dict(INSPECT_SPEC, **{
        "-v": ("verbose", False), "--verbose": ("verbose", False)}))
    return inspect_each(
        "network", opts, args, resolve_network, network_object,
        "Error response from daemon: network %s not found\n")


def cmd_network_rm(argv):
    """`docker network rm NETWORK...` (20.10): prints each removed argument;
    a missing one is "network X not found", one with attached containers
    "is in use by task" (a swarm task's container) or "has active
    endpoints"; any error ends with "exit status 1" and exit 1. With
    CCCI_FAKE_DOCKER_NETWORK_IN_USE=N the first N removals of each left
    network fail "in use by task" (a task the swarm still shuts down)."""
    opts, args = parse_flags(argv, {})
    if not args:
        raise Fail('"docker network rm" requires at least 1 argument.')
    busy_n = env_ms("CCCI_FAKE_DOCKER_NETWORK_IN_USE", 0)

    def body():
        errors = []
        with locked():
            now = time.time()
            for want in args:
                err = remove_network(want, now, busy_n)
                if err is not None:
                    errors.append("Error response from daemon: " + err[1])
                    continue
                print(want)
        for e in errors:
            sys.stderr.write(e + "\n")
        if errors:
            sys.stderr.write("exit status 1\n")
            return 1
        return 0

    return run_step("docker-network-rm", "", ["docker"] + ARGV, body)


def remove_network(want, now, busy_n):
    """Removes one network (called under the state lock); None when it is
    gone, else (HTTP status, the engine's message) as the engine answers
    (the status of its error class, the message the CLI prints after
    "Error response from daemon: "): 404 not found; 403 a pre-defined one;
    400 in use by a task (swarmkit's gRPC FailedPrecondition, which moby
    maps to 400); 403 active endpoints (libnetwork's Forbidden). `busy_n`:
    CCCI_FAKE_DOCKER_NETWORK_IN_USE."""
    n = resolve_network(want, now)
    if n is None:
        return 404, "network %s not found" % want
    path = state_path("networks", n["id"] + ".json")
    rec = read_json(path)
    users = network_users(n)
    task = next((c["labels"].get("com.docker.swarm.task.id")
                 for c in users
                 if "com.docker.swarm.task.id" in c.get("labels", {})),
                None)
    if rec is None:
        # a built-in network, or a live (or lingering) stack's
        if any(n["name"] == b[0] for b in BUILTIN_NETWORKS):
            return 403, ("%s is a pre-defined network and cannot be removed"
                         % n["name"])
        return 400, ("rpc error: code = FailedPrecondition desc = network %s "
                     "is in use by task %s" % (n["id"], "0" * 25))
    if rec.get("rm_attempts", 0) < busy_n:
        rec["rm_attempts"] = rec.get("rm_attempts", 0) + 1
        write_json(path, rec)
        task = task or new_id(25)
    if task:
        return 400, ("rpc error: code = FailedPrecondition desc = network %s "
                     "is in use by task %s" % (n["id"], task))
    if users:
        return 403, ("error while removing network: network %s id %s has "
                     "active endpoints" % (n["name"], n["id"]))
    remove_file(path)
    return None


ARGV = []


def main(argv):
    default_signals()
    ARGV[:] = argv
    state_root()  # required for every command, like a daemon socket
    if not argv:
        die("Usage: docker COMMAND (file-backed stand-in)", 1)
    sub, rest = argv[0], argv[1:]
    try:
        if sub == "service":
            return cmd_service(rest)
        if sub == "ps":
            return run_step("docker-ps", "", ["docker"] + argv,
                            lambda: cmd_ps(rest), mutating=False,
                            scope=label_filters(rest))
        if sub == "container" and rest[:1] in (["ls"], ["list"]):
            return run_step("docker-ps", "", ["docker"] + argv,
                            lambda: cmd_ps(rest[1:]), mutating=False,
                            scope=label_filters(rest[1:]))
        if sub == "container" and rest[:1] == ["inspect"]:
            return run_step("docker-container-inspect", "", ["docker"] + argv,
                            lambda: cmd_container_inspect(rest[1:]),
                            mutating=False)
        if sub == "network" and rest[:1] == ["inspect"]:
            return run_step("docker-network-inspect", "", ["docker"] + argv,
                            lambda: cmd_network_inspect(rest[1:]),
                            mutating=False)
        if sub == "network" and rest[:1] in (["rm"], ["remove"]):
            return cmd_network_rm(rest[1:])
        if sub in ("network", "volume", "secret"):
            return run_step("docker-%s-ls" % sub, "", ["docker"] + argv,
                            lambda: cmd_object_ls(sub, rest), mutating=False)
        if sub == "run":
            return cmd_run(rest)
        if sub == "rm":
            return cmd_rm(rest)
        if sub == "image":
            return cmd_image(rest)
        if sub == "inspect":
            return run_step("docker-inspect", "", ["docker"] + argv,
                            lambda: cmd_inspect(rest), mutating=False)
        if sub == "pull":
            return cmd_pull(rest)
        if sub == "info":
            return cmd_info(rest)
        if sub in ("version", "--version", "-v"):
            return cmd_version(rest)
    except Fail as e:
        die(e.message, e.code)
    die("docker %s: unsupported (file-backed stand-in; see "
        "tests/fake/README.md)" % " ".join(argv[:2]), 1)

