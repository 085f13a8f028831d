"""APP_PORT claims of the swarm backend: one free host port per app, claimed
under a lock in TMPDIR so concurrent runs never share one.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile

from .errors import fatal
from .realdocker import dk, dk_ok
from .store import remove_file


PORT_MIN, PORT_MAX = 20000, 29999


def ports_dir():
    return os.environ.get("CCCI_FAKE_PORTS_DIR") or os.path.join(
        tempfile.gettempdir(), "ccci-fake-ports-%d" % os.getuid())


@contextlib.contextmanager
def ports_locked():
    d = ports_dir()
    os.makedirs(d, exist_ok=True)
    fd = os.open(os.path.join(d, ".lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield d
    finally:
        os.close(fd)


def port_start(domain):
    """Where the search for a domain's port starts: a hash of the domain
    into PORT_MIN..PORT_MAX, so an app gets the same port run after run
    unless that one is taken."""
    span = PORT_MAX - PORT_MIN + 1
    digest = hashlib.sha256(domain.encode()).hexdigest()
    return PORT_MIN + int(digest, 16) % span


def port_bindable(port):
    """Nothing listens on the port (host-mode publishing binds 0.0.0.0
    and ::, so both are tried when the host has them)."""
    for family, addr in ((socket.AF_INET, "0.0.0.0"),
                         (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr, port))
        except OSError as e:
            if family == socket.AF_INET6 and e.errno in (
                    97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL
                continue
            return False
        finally:
            sock.close()
    return True


def published_ports():
    """Ports published by any service on the engine (a deployed service
    whose task is not running yet holds its port too)."""
    ids = dk_ok(["service", "ls", "-q"]).stdout.split()
    if not ids:
        return set()
    p = dk(["service", "inspect", "--format",
            "{{json .Endpoint.Spec.Ports}}"] + ids)
    ports = set()
    for line in p.stdout.splitlines():
        try:
            for item in json.loads(line) or []:
                if item.get("PublishedPort"):
                    ports.add(int(item["PublishedPort"]))
        except ValueError:
            continue
    return ports


def claim_port(domain, env_path):
    """Picks and claims APP_PORT for a new app. A claim is the file
    PORTS_DIR/PORT naming the claiming env file; it is stale once that file
    is gone. A port is free when no live claim holds it, no service
    publishes it and it can be bound."""
    owner = os.path.realpath(env_path)
    span = PORT_MAX - PORT_MIN + 1
    start = port_start(domain)
    with ports_locked() as d:
        taken = published_ports()
        for i in range(span):
            port = PORT_MIN + (start - PORT_MIN + i) % span
            claim = os.path.join(d, str(port))
            try:
                with open(claim, encoding="utf-8") as f:
                    holder = f.read().strip()
            except FileNotFoundError:
                holder = ""
            if holder and holder != owner and os.path.exists(holder):
                continue
            if port in taken or not port_bindable(port):
                continue
            tmp = "%s.tmp.%d" % (claim, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(owner + "\n")
            os.replace(tmp, claim)
            return port
    raise fatal("no free port in %d-%d for %s" % (PORT_MIN, PORT_MAX, domain))


def release_port(port, env_path):
    if not re.fullmatch(r"[0-9]+", str(port or "")):
        return
    owner = os.path.realpath(env_path)
    with ports_locked() as d:
        claim = os.path.join(d, str(port))
        try:
            with open(claim, encoding="utf-8") as f:
                holder = f.read().strip()
        except FileNotFoundError:
            return
        if holder == owner:
            remove_file(claim)


# -- deploy
