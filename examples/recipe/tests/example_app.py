"""Helper of the example recipe's tests (not a test: not executable, so
`cc-ci-run test` does not run it). python3 standard library only.

    python3 example_app.py mode
        prints "http PORT" when the app runs on a real engine and answers
        on 127.0.0.1:PORT, else "none: REASON"; exits 0 either way
    python3 example_app.py get PATH          GET, prints the body
    python3 example_app.py put PATH VALUE    PUT VALUE
    python3 example_app.py serves VERSION    GET / until it serves VERSION
    python3 example_app.py image-version     the version tag of the image
                                             the stack's app service runs
    python3 example_app.py marker            the marker the install tier
                                             writes (from the environment)
    python3 example_app.py data-mode         where the app's data volume is
                                             reached: "http PORT", "file
                                             DIR" or "none: REASON"
    python3 example_app.py data-get          the marker file on the data
                                             volume (exit 1 when absent)
    python3 example_app.py data-put VALUE    writes the marker file

The data volume (`data`, mounted at /data, labelled for backupbot) is
reached over HTTP (GET and PUT /data) when the app is real, and as the
volume's directory in the file-backed fake swarm
($CCCI_FAKE_STATE/volumes/STACK_data/_data), which the stand-in abra's
backup and restore copy as they copy a real volume.

How a test knows that the app is real (a stack on a Docker engine, with
its port published in mode: host) rather than a record of the file-backed
stand-ins (tests/fake in cc-ci-run):
  1. CCCI_FAKE_BACKEND=file: not real; CCCI_FAKE_BACKEND=swarm: real.
  2. CCCI_FAKE_STATE is set and holds the stack's record
     (stacks/STACK.json): the file-backed fake swarm has the app: not real.
  3. Otherwise real when the app's env file sets APP_PORT (what the
     recipe's .env.sample does, and what the real abra copies).
Requests go to 127.0.0.1 only, never to a container's address, and
connection errors are retried for CCCI_EXAMPLE_HTTP_WAIT seconds
(default 20): the port answers a moment after the task starts.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def die(msg):
    sys.stderr.write("example_app: %s\n" % msg)
    sys.exit(1)


def domain():
    d = os.environ.get("CCCI_APP_DOMAIN", "")
    if not d:
        die("CCCI_APP_DOMAIN is not set")
    return d


def stack():
    return os.environ.get("CCCI_STACK") or domain().replace(".", "_")[:45]


def env_file():
    abra_dir = os.environ.get("ABRA_DIR") or os.path.join(
        os.path.expanduser("~"), ".abra")
    servers = os.path.join(abra_dir, "servers")
    names = [os.environ["CCCI_SERVER"]] if os.environ.get("CCCI_SERVER") \
        else sorted(os.listdir(servers)) if os.path.isdir(servers) else []
    for server in names:
        path = os.path.join(servers, server, domain() + ".env")
        if os.path.isfile(path):
            return path
    return None


def app_port():
    path = env_file()
    if not path:
        return None
    port = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export "):]
            if line.startswith("APP_PORT="):
                port = line.split("=", 1)[1].strip().strip("'\"")
    return port if port and port.isdigit() else None


def mode():
    """(port, reason): port is None when no real HTTP checks apply."""
    backend = os.environ.get("CCCI_FAKE_BACKEND", "")
    if backend == "file":
        return None, "CCCI_FAKE_BACKEND=file"
    state = os.environ.get("CCCI_FAKE_STATE", "")
    if backend != "swarm" and state and os.path.isfile(
            os.path.join(state, "stacks", stack() + ".json")):
        return None, "the app lives in the file-backed fake swarm"
    port = app_port()
    if port:
        return port, "APP_PORT in the env file"
    if backend == "swarm":
        die("CCCI_FAKE_BACKEND=swarm but no APP_PORT in the env file of %s"
            % domain())
    return None, "no APP_PORT in the env file"


def data_mode():
    """("http", port) | ("file", directory) | ("none", reason)."""
    port, reason = mode()
    if port:
        return "http", port
    state = os.environ.get("CCCI_FAKE_STATE", "")
    vol = os.path.join(state, "volumes", stack() + "_data", "_data")
    if state and os.environ.get("CCCI_FAKE_BACKEND", "") in ("", "file") \
            and os.path.isdir(vol):
        return "file", vol
    return "none", reason


def data_get():
    kind, where = data_mode()
    if kind == "http":
        status, body = request("GET", "/data")
        if status != 200:
            die("GET /data answered %d: %s" % (
                status, body.decode("utf-8", "replace").strip()))
        return body.decode("utf-8", "replace")
    if kind == "file":
        try:
            with open(os.path.join(where, "marker"), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            die("no marker in the data volume (%s)" % where)
    die("no data volume to read (%s)" % where)


def data_put(value):
    kind, where = data_mode()
    if kind == "http":
        status, body = request("PUT", "/data", value.encode())
        if status != 200:
            die("PUT /data answered %d: %s" % (
                status, body.decode("utf-8", "replace").strip()))
        return
    if kind == "file":
        tmp = os.path.join(where, "marker.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(value)
        os.replace(tmp, os.path.join(where, "marker"))
        return
    die("no data volume to write (%s)" % where)


def need_port():
    port, reason = mode()
    if port is None:
        die("no real app to talk to (%s)" % reason)
    return port


def wait_seconds():
    raw = os.environ.get("CCCI_EXAMPLE_HTTP_WAIT", "20")
    try:
        return float(raw)
    except ValueError:
        die("CCCI_EXAMPLE_HTTP_WAIT must be seconds, got %r" % raw)


def request(method, path, data=None, ok=(200,)):
    """(status, body); connection errors are retried until the deadline,
    HTTP answers are returned at once."""
    url = "http://127.0.0.1:%s%s" % (need_port(), path)
    deadline = time.monotonic() + wait_seconds()
    while True:
        try:
            req = urllib.request.Request(url, data=data, method=method)
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            if time.monotonic() >= deadline:
                die("%s %s: %s" % (method, url, getattr(e, "reason", e)))
            time.sleep(0.2)


def served_version():
    status, body = request("GET", "/")
    text = body.decode("utf-8", "replace").strip()
    if status != 200 or not text.startswith("ccci-example "):
        die("GET / answered %d %r, not the example app" % (status, text))
    return text.split(" ", 1)[1]


def image_version():
    docker = os.environ.get("CCCI_DOCKER") or "docker"
    p = subprocess.run([docker, "service", "inspect", stack() + "_app",
                        "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Image}}"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        die("docker service inspect %s_app: %s" % (stack(), p.stderr.strip()))
    image = json.loads(p.stdout.strip() or '""').split("@", 1)[0]
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"


def marker():
    return "ccci-example marker of %s (run %s)" % (
        domain(), os.environ.get("CCCI_RUN_ID", "manual"))


def main(argv):
    if not argv:
        die("usage: example_app.py mode|get|put|serves|image-version|marker|"
            "data-mode|data-get|data-put")
    cmd, args = argv[0], argv[1:]
    if cmd == "mode" and not args:
        port, reason = mode()
        print("http %s" % port if port else "none: %s" % reason)
    elif cmd == "get" and len(args) == 1:
        status, body = request("GET", args[0])
        if status != 200:
            die("GET %s answered %d: %s" % (args[0], status,
                                           body.decode("utf-8", "replace").strip()))
        sys.stdout.write(body.decode("utf-8", "replace"))
    elif cmd == "put" and len(args) == 2:
        status, body = request("PUT", args[0], args[1].encode())
        if status != 200:
            die("PUT %s answered %d: %s" % (args[0], status,
                                           body.decode("utf-8", "replace").strip()))
    elif cmd == "serves" and len(args) == 1:
        # an update may still be replacing the old task: retry until the
        # wanted version answers or the wait is over
        deadline = time.monotonic() + wait_seconds()
        while True:
            got = served_version()
            if got == args[0]:
                print("127.0.0.1:%s serves ccci-example %s" % (need_port(), got))
                break
            if time.monotonic() >= deadline:
                die("127.0.0.1:%s serves %s, want %s" % (need_port(), got, args[0]))
            time.sleep(0.2)
    elif cmd == "image-version" and not args:
        print(image_version())
    elif cmd == "marker" and not args:
        print(marker())
    elif cmd == "data-mode" and not args:
        kind, where = data_mode()
        print("%s %s" % (kind, where) if kind != "none" else
              "none: %s" % where)
    elif cmd == "data-get" and not args:
        sys.stdout.write(data_get())
    elif cmd == "data-put" and len(args) == 1:
        data_put(args[0])
    else:
        die("bad arguments: %s" % " ".join(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
