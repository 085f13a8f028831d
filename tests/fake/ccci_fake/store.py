"""The fake swarm's state store under CCCI_FAKE_STATE (tests/fake/README.md):
the lock, atomic JSON records, stacks, volumes, secrets, containers and
images, shared by the stand-in docker and abra's file backend.
"""

import contextlib
import fcntl
import json
import os
import re
import secrets as _random
import time

from .errors import Fail, die


PROG = "docker"


# ------------------------------------------------------------------ state --


def state_root():
    root = os.environ.get("CCCI_FAKE_STATE", "")
    if not root:
        die("%s (fake): CCCI_FAKE_STATE is not set; it must name the fake "
            "swarm's state directory" % PROG_NAME[0])
    if CREATE_STATE[0]:
        os.makedirs(root, exist_ok=True)
    return root


PROG_NAME = [PROG]  # abra sets this to "abra" so messages name the caller
# The stand-in engine (api.py) creates the state once and then must not
# bring a removed one back (it exits when the directory goes).
CREATE_STATE = [True]


def state_path(*parts):
    return os.path.join(state_root(), *parts)


@contextlib.contextmanager
def locked():
    """Exclusive flock on $CCCI_FAKE_STATE/.lock for a read-modify-write.

    Many stand-in processes run at once (concurrent runs and janitors);
    the lock serialises mutations, the kernel releases it on any death."""
    fd = os.open(state_path(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)  # readers see the old or the new record, never half


def remove_file(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def remove_tree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def list_dir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def new_id(length):
    """Swarm object ids are lower-case base-36; container ids are hex."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(_random.choice(alphabet) for _ in range(length))


def new_hex_id():
    return _random.token_hex(32)


def env_ms(name, default, env=None):
    raw = (os.environ if env is None else env).get(name, "")
    if raw == "":
        return default
    if not re.fullmatch(r"[0-9]+", raw):
        raise Fail("%s must be whole milliseconds, got %r" % (name, raw))
    return int(raw)


# -- stacks


def stack_path(stack):
    return state_path("stacks", stack + ".json")


def load_stack(stack):
    return read_json(stack_path(stack))


def save_stack(rec):
    write_json(stack_path(rec["stack"]), rec)


def delete_stack(stack):
    remove_file(stack_path(stack))


def all_stacks():
    out = []
    for name in list_dir(state_path("stacks")):
        if name.endswith(".json"):
            rec = read_json(state_path("stacks", name))
            if rec is not None:
                out.append(rec)
    return out


def is_deployed(rec):
    return bool(rec and rec.get("services"))


def lingering(rec, now):
    """Containers of an undeployed stack that still exist (docker stack rm
    returns long before its containers are gone: SPEC section 10)."""
    if not rec or now >= rec.get("containers_until", 0):
        return []
    return rec.get("lingering", [])


def stack_labels(stack):
    return {"com.docker.stack.namespace": stack}


# -- volumes, secrets, containers, images


def volume_dir(name):
    return state_path("volumes", name)


def volume_data(name):
    return os.path.join(volume_dir(name), "_data")


def volume_exists(name):
    return os.path.isfile(os.path.join(volume_dir(name), "meta.json"))


def create_volume(name, labels):
    if volume_exists(name):
        return False
    os.makedirs(volume_data(name), exist_ok=True)
    write_json(os.path.join(volume_dir(name), "meta.json"),
               {"name": name, "labels": labels, "created": time.time()})
    return True


def all_volumes():
    out = []
    for name in list_dir(state_path("volumes")):
        meta = read_json(os.path.join(volume_dir(name), "meta.json"))
        if meta is not None:
            out.append(meta)
    return out


def secret_path(name):
    return state_path("secrets", name + ".json")


def all_secrets():
    out = []
    for name in list_dir(state_path("secrets")):
        if name.endswith(".json"):
            rec = read_json(state_path("secrets", name))
            if rec is not None:
                out.append(rec)
    return out


def all_test_containers():
    out = []
    for name in list_dir(state_path("containers")):
        if name.endswith(".json"):
            rec = read_json(state_path("containers", name))
            if rec is not None:
                out.append(rec)
    return out


def normalize_image(ref):
    ref = ref.strip()
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        ref += ":latest"
    return ref


def images():
    return [normalize_image(i) for i in read_json(state_path("images.json"), [])]


def stable_hex(text):
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
