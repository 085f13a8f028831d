"""The stand-in engine: a small Docker Engine API server (the shapes of API
v1.41, engine 20.10) on a unix socket, answering from the same state under
CCCI_FAKE_STATE that the stand-in `abra` and `docker` use, so a container
`docker run` made and the API's container list are one fake swarm.

tests/fake/engine is its entry point; tests/fake/README.md ("The stand-in
engine") lists the endpoints. What to know when changing it:

- One thread per connection (daemon threads; a handler told to hang sleeps
  for ever and never holds up the others or the exit).
- The knobs (CCCI_FAKE_ABRA_FAIL/HANG/WAIT_FOR, CCCI_FAKE_LOG_READS,
  CCCI_FAKE_DOCKER_*) are read per request from the environment of the
  process that connected (SO_PEERCRED, /proc/PID/environ), the server's own
  environment being the fallback; the call log names that process's pid
  and `prog` "engine". Step names are the CLI stand-in's.
- Every reply closes its connection (`Connection: close`); POST
  /images/create streams chunked JSON objects, one per line, as the engine.
- It exits on SIGTERM/SIGINT, when its parent dies (PR_SET_PDEATHSIG and a
  getppid() check) and when the state directory goes, removing its socket.
"""

import ctypes
import json
import os
import re
import signal
import socket
import socketserver
import struct
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from . import store
from .docker_cmds import (
    ENGINE_VERSION, find_service, image_object, info_object, network_object,
    ps_race_victim, remove_container, remove_network, resolve_container,
    resolve_network, service_object, task_object,
)
from .errors import Fail, die
from .flags import match_filters, match_labels
from .knobs import Injected, perform_step
from .leftovers import container_object
from .render import iso
from .store import (
    stable_hex, all_secrets, all_volumes, env_ms, images, locked,
    normalize_image, read_json, state_root, volume_data, write_json, state_path,
)
from .views import (
    BUILTIN_NETWORKS, view_containers, view_networks, view_services,
)


API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
STOP = threading.Event()  # set by a signal, the watch loop or a handler


class ApiError(Fail):
    """An error answer: `{"message": ...}` with an HTTP status."""

    def __init__(self, status, message):
        super().__init__(message, 1)
        self.status = status


class Reply:
    """kind: "json" (value: any JSON), "text", "empty" (204) or "stream"
    (value: a list of objects sent as chunks)."""

    def __init__(self, status, kind, value=None, headers=()):
        self.status, self.kind, self.value = status, kind, value
        self.headers = list(headers)


def ok(value, status=200):
    return Reply(status, "json", value)


# ------------------------------------------------------------- callers --


def peer_of(sock):
    """(pid, environment) of the process at the other end of `sock`: its
    pid by SO_PEERCRED, its environment from /proc/PID/environ (what it was
    started with). (None, the server's environment) when either cannot be
    read (another pid namespace, a process already gone, no permission)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                              struct.calcsize("3i"))
        pid = struct.unpack("3i", raw)[0]
    except (OSError, AttributeError, struct.error):
        return None, dict(os.environ)
    if pid <= 0:
        return None, dict(os.environ)
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return pid, dict(os.environ)
    if not data:  # a zombie's (or a kernel thread's): nothing to read
        return pid, dict(os.environ)
    env = {}
    for item in data.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep and k:
            env[k.decode("utf-8", "surrogateescape")] = v.decode(
                "utf-8", "surrogateescape")
    return pid, env


class Call:
    """One request: who made it (knobs, call log) and what it asked."""

    def __init__(self, pid, env, method, target):
        self.pid, self.env = pid, env
        self.argv = ["engine", method, target]

    def step(self, name, body, mutating=False, scope="", failure=None):
        """`body` under the knobs and call log of step `name`, as the CLI
        stand-in runs its commands (knobs.perform_step)."""
        return perform_step(name, "", self.argv, body, mutating=mutating,
                            scope=scope, failure=failure, env=self.env,
                            pid=self.pid,
                            failed=lambda r: r is None or r.status >= 400)


# ------------------------------------------------------ query handling --


def qstr(query, name, default=""):
    return query.get(name, [default])[-1]


def qbool(query, name):
    """The engine's httputils.BoolValue: anything but "", 0, no, false,
    none is true."""
    return qstr(query, name).strip().lower() not in ("", "0", "no", "false",
                                                     "none")


def parse_filters_param(query):
    """`filters`: URL-encoded JSON, key -> list of strings, or the form
    the engine's own client sends, key -> {value: true}. None or a
    malformed parameter: 400."""
    raw = qstr(query, "filters")
    if raw == "":
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ApiError(400, "invalid filter: %s" % e)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid filter: not a JSON object: %s" % raw)
    out = {}
    for key, values in data.items():
        if isinstance(values, dict):
            values = list(values)
        if not isinstance(values, list) or not all(
                isinstance(v, str) for v in values):
            raise ApiError(400, "invalid filter: %s must be a list of "
                           "strings or a map of strings to true" % key)
        out[key] = values
    return out


def filters_of(query, allowed):
    filters = parse_filters_param(query)
    for key in filters:
        if key not in allowed:
            raise ApiError(400, "Invalid filter '%s'" % key)
    return {k: v for k, v in filters.items() if v}


def label_scope(query):
    """The `label=` filters of a container listing joined by commas: what a
    `docker-ps@SCOPE` knob is matched against, as the CLI stand-in's
    `docker ps --filter label=...` (docker_cmds.label_filters)."""
    try:
        return ",".join(parse_filters_param(query).get("label", []))
    except ApiError:
        return ""


# ----------------------------------------------------------- endpoints --


def ping(call, query):
    return Reply(200, "text", "OK", [
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache")])


def version(call, query):
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
               "Os": "linux", "Arch": "amd64", "GitCommit": "ccci-fake",
               "GoVersion": "go1.18.10", "KernelVersion": os.uname().release,
               "Experimental": "false", "BuildTime": "2023-04-14T10:32:03.000000000+00:00"}
    obj = {"Platform": {"Name": "Docker Engine - Community (file-backed "
                                "stand-in)"},
           "Components": [{"Name": "Engine", "Version": ENGINE_VERSION,
                           "Details": details}],
           "Version": ENGINE_VERSION}
    obj.update({k: v for k, v in details.items() if k != "Experimental"})
    return ok(obj)


def rfc3339_ns(ns):
    secs, frac = divmod(ns, 1000000000)
    return "%s.%09dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S",
                                       time.gmtime(secs)), frac)


def info(call, query):
    now_ns = time.time_ns()
    cs = view_containers(now_ns / 1e9)
    running = sum(1 for c in cs if c["state"] == "running")
    obj = info_object()
    obj.update({
        "ID": "CCCI:FAKE:ENGINE", "Name": "ccci-fake",
        "Containers": len(cs), "ContainersRunning": running,
        "ContainersPaused": 0, "ContainersStopped": len(cs) - running,
        "Images": len(images()), "Driver": "overlay2",
        "OSType": "linux", "Architecture": "x86_64",
        "OperatingSystem": "file-backed stand-in engine",
        "KernelVersion": os.uname().release, "NCPU": os.cpu_count() or 1,
        "DockerRootDir": state_root(), "SystemTime": rfc3339_ns(now_ns),
    })
    obj["Swarm"].update({"NodeAddr": "127.0.0.1", "Nodes": 1,
                         "Managers": 1, "Error": "", "RemoteManagers": None})
    return ok(obj)


def api_service(s, insert_defaults, status=False):
    """A service as the API returns it: the stored task template (plus
    Runtime), or with insertDefaults=true the daemon's defaults, without
    the NoNewPrivileges only the newer CLI's own types print."""
    obj = service_object(s, insert_defaults=insert_defaults)
    if insert_defaults:
        had = s["spec"].get("ContainerSpec", {}).get("Privileges") or {}
        if "NoNewPrivileges" not in had:
            obj["Spec"]["TaskTemplate"]["ContainerSpec"]["Privileges"].pop(
                "NoNewPrivileges", None)
    if status:
        obj["ServiceStatus"] = {"RunningTasks": s["running"],
                                "DesiredTasks": s["desired"],
                                "CompletedTasks": 0}
    return obj


def services_list(call, query):
    def body():
        filters = filters_of(query, {"id", "label", "mode", "name"})
        out = []
        for s in view_services(time.time()):
            if not match_filters(s, filters, "prefix"):
                continue
            if filters.get("mode") and "replicated" not in filters["mode"]:
                continue
            out.append(api_service(s, False, qbool(query, "status")))
        return ok(out)

    return call.step("docker-service-ls", body)


def service_inspect(call, query, want):
    def body():
        s = find_service(view_services(time.time()), want)
        if s is None:
            raise ApiError(404, "service %s not found" % want)
        return ok(api_service(s, qbool(query, "insertDefaults")))

    return call.step("docker-service-inspect", body)


def tasks_list(call, query):
    def body():
        filters = filters_of(query, {"desired-state", "id", "label", "name",
                                     "node", "service"})
        now = time.time()
        services = view_services(now)
        if filters.get("service"):
            chosen = []
            for want in filters["service"]:
                s = find_service(services, want)
                if s is None:
                    raise ApiError(404, "service %s not found" % want)
                if s not in chosen:
                    chosen.append(s)
            services = chosen
        out = []
        for s in services:
            for t in s["tasks"]:
                obj = task_object(s, t, now)
                if filters.get("desired-state") and \
                        obj["DesiredState"] not in filters["desired-state"]:
                    continue
                if filters.get("id") and not any(
                        t["id"].startswith(i) for i in filters["id"]):
                    continue
                if filters.get("name") and not any(
                        ("%s.1" % s["name"]).startswith(n)
                        for n in filters["name"]):
                    continue
                if filters.get("node") and not any(
                        n in ("ccci0fake0node", "ccci-fake")
                        for n in filters["node"]):
                    continue
                if not match_labels(obj["Labels"], filters.get("label", [])):
                    continue
                out.append(obj)
        return ok(out)

    return call.step("docker-service-ps", body)


def task_inspect(call, query, want):
    def body():
        now = time.time()
        every = [(s, t) for s in view_services(now) for t in s["tasks"]]
        hit = [(s, t) for s, t in every if t["id"] == want]
        if not hit:
            hit = [(s, t) for s, t in every if t["id"].startswith(want)]
        if len(hit) != 1:
            raise ApiError(404, "task %s not found" % want)
        return ok(task_object(hit[0][0], hit[0][1], now))

    return call.step("docker-inspect", body)


def container_summary(c):
    """A container as GET /containers/json lists it."""
    nets = {}
    for n in view_networks(time.time()):
        if n["id"] in c.get("networks", []) or \
                n["name"] in c.get("networks", []):
            nets[n["name"]] = {"NetworkID": n["id"]}
    running = c["state"] == "running"
    return {
        "Id": c["id"], "Names": ["/" + c["name"]], "Image": c["image"],
        "ImageID": "sha256:" + stable_hex(normalize_image(c["image"])),
        "Command": c.get("cmd", ""), "Created": int(c.get("created", 0)),
        "Ports": [], "Labels": c.get("labels") or {},
        "State": c["state"],
        "Status": "Up 1 second" if running else "Exited (1)",
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": nets},
        "Mounts": [{"Type": "volume", "Name": v}
                   for v in c.get("mounts", [])],
    }


def containers_list(call, query):
    def body():
        now = time.time()
        victim = ps_race_victim(now, call.env)
        if victim is not None:
            raise ApiError(404, "No such container: %s" % victim)
        filters = filters_of(query, {"id", "label", "name", "status"})
        out = []
        for c in view_containers(now):
            if not qbool(query, "all") and c["state"] != "running":
                continue
            if filters.get("status") and c["state"] not in filters["status"]:
                continue
            if not match_filters(c, filters, "substring"):
                continue
            out.append(container_summary(c))
        return ok(out)

    return call.step("docker-ps", body, scope=label_scope(query))


def container_inspect(call, query, want):
    def body():
        hit = resolve_container(want[1:] if want.startswith("/") else want,
                                time.time())
        if hit is None:
            raise ApiError(404, "No such container: %s" % want)
        return ok(container_object(hit))

    return call.step("docker-container-inspect", body)


def container_rm(call, query, want):
    def body():
        with locked():
            err = remove_container(want, time.time(), qbool(query, "force"))
        if err is not None:
            raise ApiError(*err)
        return Reply(204, "empty")

    return call.step("docker-rm", body, mutating=True)


def network_summary(n):
    obj = network_object(n)
    builtin = any(n["name"] == b[0] for b in BUILTIN_NETWORKS)
    obj.update({"EnableIPv6": False, "Internal": False,
                "Attachable": False, "Ingress": n["name"] == "ingress",
                "IPAM": {"Driver": "default", "Options": None,
                         "Config": []},
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Options": {}})
    return obj, builtin


def networks_list(call, query):
    def body():
        filters = filters_of(query, {"driver", "id", "label", "name",
                                     "scope", "type"})
        out = []
        for n in view_networks(time.time()):
            if not match_filters(n, filters, "substring"):
                continue
            obj, builtin = network_summary(n)
            if filters.get("driver") and n["driver"] not in filters["driver"]:
                continue
            if filters.get("scope") and n["scope"] not in filters["scope"]:
                continue
            if filters.get("type") and ("builtin" if builtin else "custom") \
                    not in filters["type"]:
                continue
            obj["Containers"] = {}  # the list leaves them out (API >= 1.28)
            out.append(obj)
        return ok(out)

    return call.step("docker-network-ls", body)


def network_inspect(call, query, want):
    def body():
        n = resolve_network(want, time.time())
        if n is None:
            raise ApiError(404, "network %s not found" % want)
        return ok(network_summary(n)[0])

    return call.step("docker-network-inspect", body)


def network_rm(call, query, want):
    def body():
        busy_n = env_ms("CCCI_FAKE_DOCKER_NETWORK_IN_USE", 0, call.env)
        with locked():
            err = remove_network(want, time.time(), busy_n)
        if err is not None:
            raise ApiError(*err)
        return Reply(204, "empty")

    return call.step("docker-network-rm", body, mutating=True)


def volumes_list(call, query):
    def body():
        filters = filters_of(query, {"driver", "label", "name"})
        out = []
        for v in all_volumes():
            obj = {"id": v["name"], "name": v["name"], "labels": v["labels"]}
            if not match_filters(obj, filters, "substring"):
                continue
            if filters.get("driver") and "local" not in filters["driver"]:
                continue
            out.append({"CreatedAt": iso(v.get("created", 0)),
                        "Driver": "local", "Labels": v["labels"],
                        "Mountpoint": volume_data(v["name"]),
                        "Name": v["name"], "Options": {}, "Scope": "local"})
        return ok({"Volumes": out, "Warnings": None})

    return call.step("docker-volume-ls", body)


def secrets_list(call, query):
    def body():
        filters = filters_of(query, {"id", "label", "name", "names"})
        out = []
        for s in all_secrets():
            if not match_filters(s, filters, "prefix"):
                continue
            if filters.get("names") and s["name"] not in filters["names"]:
                continue
            out.append({"ID": s["id"], "Version": {"Index": 1},
                        "CreatedAt": iso(s["created"]),
                        "UpdatedAt": iso(s["created"]),
                        "Spec": {"Name": s["name"], "Labels": s["labels"]}})
        return ok(out)

    return call.step("docker-secret-ls", body)


def image_inspect(call, query, name):
    def body():
        ref = normalize_image(name)
        if ref not in set(images()):
            raise ApiError(404, "No such image: %s" % name)
        return ok(image_object(ref))

    return call.step("docker-image-inspect", body)


PULL_FAILURE = ('Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
                'registry-1.docker.io: no such host (injected by '
                'CCCI_FAKE_ABRA_FAIL)')


def image_create(call, query):
    """`docker pull`'s request: every image can be pulled (as with the CLI
    stand-in); an injected `pull` failure is the engine's answer to a
    registry it cannot reach, an error status before any of the stream."""
    if qstr(query, "fromSrc"):
        raise ApiError(400, "fromSrc (image import) is not served by the "
                       "file-backed stand-in engine")
    frm, tag = qstr(query, "fromImage"), qstr(query, "tag")
    if not frm:
        raise ApiError(400, "fromImage is required (the file-backed "
                       "stand-in engine only pulls)")
    ref = frm
    if tag:
        ref += ("@" if tag.startswith("sha256:") else ":") + tag
    ref = normalize_image(ref)

    def body():
        with locked():
            have = read_json(state_path("images.json"), [])
            if ref not in [normalize_image(i) for i in have]:
                have.append(ref)
                write_json(state_path("images.json"), have)
        repo, _, tagpart = ref.rpartition("@" if "@" in ref else ":")
        digest = "sha256:" + stable_hex(ref)
        return Reply(200, "stream", [
            {"status": "Pulling from %s" % (
                repo if "/" in repo else "library/" + repo),
             "id": tagpart},
            {"status": "Digest: %s" % digest},
            {"status": "Status: Downloaded newer image for %s" % ref},
        ])

    return call.step("pull", body, mutating=True, scope=ref,
                     failure=PULL_FAILURE)


def events(call, query):
    return Reply(501, "json", {"message": "events are not served by the "
                               "file-backed stand-in engine"})


ROUTES = [(m, re.compile(p), f) for m, p, f in [
    ("GET", r"/_ping", ping),
    ("HEAD", r"/_ping", ping),
    ("GET", r"/version", version),
    ("GET", r"/info", info),
    ("GET", r"/services", services_list),
    ("GET", r"/services/([^/]+)", service_inspect),
    ("GET", r"/tasks", tasks_list),
    ("GET", r"/tasks/([^/]+)", task_inspect),
    ("GET", r"/containers/json", containers_list),
    ("GET", r"/containers/([^/]+)/json", container_inspect),
    ("DELETE", r"/containers/([^/]+)", container_rm),
    ("GET", r"/networks", networks_list),
    ("GET", r"/networks/([^/]+)", network_inspect),
    ("DELETE", r"/networks/([^/]+)", network_rm),
    ("GET", r"/volumes", volumes_list),
    ("GET", r"/secrets", secrets_list),
    ("GET", r"/images/(.+)/json", image_inspect),
    ("POST", r"/images/create", image_create),
    ("GET", r"/events", events),
]]


def version_tuple(v):
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def route(call, method, target):
    url = urlsplit(target)
    path = url.path
    m = re.match(r"/v([0-9.]+)(/.*)$", path)
    if m:
        asked, path = m.group(1), m.group(2)
        if version_tuple(asked) < version_tuple(MIN_API_VERSION):
            raise ApiError(400, "client version %s is too old. Minimum "
                           "supported API version is %s, please upgrade "
                           "your client to a newer version"
                           % (asked, MIN_API_VERSION))
        if version_tuple(asked) > version_tuple(API_VERSION):
            raise ApiError(400, "client version %s is too new. Maximum "
                           "supported API version is %s"
                           % (asked, API_VERSION))
    query = parse_qs(url.query, keep_blank_values=True)
    for want, pattern, fn in ROUTES:
        mo = pattern.fullmatch(path)
        if mo and want == method:
            return fn(call, query, *[unquote(g) for g in mo.groups()])
    raise ApiError(404, "page not found")


# -------------------------------------------------------------- server --


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "Docker/%s (linux)" % ENGINE_VERSION

    def address_string(self):
        return "unix"

    def log_message(self, format, *args):
        pass  # the tests capture the output: nothing per request

    def do_GET(self):
        self.serve("GET")

    def do_HEAD(self):
        self.serve("HEAD")

    def do_POST(self):
        self.serve("POST")

    def do_DELETE(self):
        self.serve("DELETE")

    def do_PUT(self):
        self.serve("PUT")

    def do_PATCH(self):
        self.serve("PATCH")

    def read_body(self):
        """Reads (and drops) the request body: a socket closed with unread
        data would reset the client's read of the reply."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n",
                                                             b""):
                        pass
                    return
                self.rfile.read(size)
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)

    def serve(self, method):
        self.close_connection = True
        try:
            self.read_body()
        except (OSError, ValueError):
            return
        if not os.path.isdir(state_root()):
            STOP.set()
            reply = Reply(503, "json", {
                "message": "the stand-in engine's state directory %s is "
                           "gone; the engine is exiting" % state_root()})
        else:
            pid, env = peer_of(self.request)
            call = Call(pid, env, method, self.path)
            try:
                reply = route(call, method, self.path)
            except Injected as e:
                reply = Reply(500, "json", {"message": e.message})
            except ApiError as e:
                reply = Reply(e.status, "json", {"message": e.message})
            except Fail as e:
                reply = Reply(500, "json", {"message": e.message})
            except Exception:
                reply = Reply(500, "json", {
                    "message": "stand-in engine: " + traceback.format_exc()})
        try:
            self.send(reply, head=method == "HEAD")
        except OSError:  # the client went away
            pass

    def send(self, reply, head):
        self.send_response(reply.status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("OSType", "linux")
        for k, v in reply.headers:
            self.send_header(k, v)
        if reply.kind == "stream":
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for obj in reply.value:
                data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
            return
        if reply.kind == "empty":
            self.send_header("Connection", "close")
            self.end_headers()
            return
        if reply.kind == "text":
            body = reply.value.encode()
            ctype = "text/plain; charset=utf-8"
        else:
            body = (json.dumps(reply.value, separators=(",", ":"))
                    + "\n").encode()
            ctype = "application/json"
        if head:  # the engine's HEAD /_ping: headers only, length 0
            body = b""
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True  # a hung handler never holds up the exit
    block_on_close = False  # ... nor server_close()
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # a client that went away is not worth a traceback


def set_parent_death_signal():
    """PR_SET_PDEATHSIG: SIGTERM when the thread that started us exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def bind(path):
    """Binds and listens on a temporary name next to `path`, then renames
    it to `path`: a client that sees `path` can connect. Returns the server
    and the socket's inode (to remove only our own socket at exit)."""
    limit = 107  # sun_path, less its NUL
    if len(os.fsencode(path)) > limit:
        die("engine (fake): socket path longer than %d bytes: %s"
            % (limit, path))
    tmp = None
    for cand in ("%s.tmp%d" % (path, os.getpid()),
                 os.path.join(os.path.dirname(path), ".e%d" % os.getpid())):
        if len(os.fsencode(cand)) <= limit:
            tmp = cand
            break
    if tmp is None:
        die("engine (fake): no room for a temporary socket name next to %s"
            % path)
    store.remove_file(tmp)
    try:
        server = Server(tmp, Handler)
        os.rename(tmp, path)
    except OSError as e:
        store.remove_file(tmp)
        die("engine (fake): cannot listen on %s: %s" % (path, e))
    return server, os.stat(path).st_ino


USAGE = "usage: engine --socket PATH [--state DIR]   (state: DIR, else $CCCI_FAKE_STATE)"


def main(argv, parent=None):
    parent = os.getppid() if parent is None else parent
    socket_path = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--socket" and i + 1 < len(argv):
            socket_path = argv[i + 1]
            i += 2
        elif a.startswith("--socket="):
            socket_path = a[len("--socket="):]
            i += 1
        elif a == "--state" and i + 1 < len(argv):
            # Given as an argument, the state stays out of this process's
            # /proc/PID/environ: tests look for leaked stand-ins by it.
            os.environ["CCCI_FAKE_STATE"] = argv[i + 1]
            i += 2
        elif a in ("-h", "--help"):
            print(USAGE)
            return 0
        else:
            die("engine (fake): unknown argument %r\n%s" % (a, USAGE))
    if not socket_path:
        die("engine (fake): --socket PATH is required\n" + USAGE)
    store.PROG_NAME[0] = "engine"
    root = state_root()  # required; created once, never again
    store.CREATE_STATE[0] = False
    set_parent_death_signal()
    if os.getppid() != parent:
        return 0  # the parent died before the death signal was set
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())
    path = os.path.abspath(socket_path)
    server, inode = bind(path)
    threading.Thread(target=server.serve_forever, kwargs={
        "poll_interval": 0.2}, daemon=True).start()
    try:
        while not STOP.wait(0.5):
            if not os.path.isdir(root) or os.getppid() != parent:
                break
    finally:
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except OSError:
            pass
        os._exit(0)  # handler threads may sleep for ever (HANG)
