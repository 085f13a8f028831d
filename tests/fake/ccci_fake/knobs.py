"""Failure injection and the call log: the CCCI_FAKE_ABRA_FAIL and
CCCI_FAKE_ABRA_HANG knobs, and one calls.log line per step event.

Every function reads the knobs from `env` (default os.environ): the
stand-in engine (api.py) passes the environment of the process that called
it, read from /proc, and that process's pid for the call log.
"""

import json
import os
import time

from .errors import Fail, die
from .store import PROG_NAME, state_path


# ---------------------------------------------------------------- call log --


def log_call(step, domain, argv, result, env=None, pid=None):
    """One JSON line per step event, written with a single write(2) on an
    O_APPEND descriptor so lines of concurrent processes never interleave.
    `env` and `pid`: the caller's (default: this process's)."""
    env = os.environ if env is None else env
    line = json.dumps({
        "ts": time.time_ns(),
        "pid": os.getpid() if pid is None else pid,
        "prog": PROG_NAME[0],
        "abra_dir": env.get("ABRA_DIR", ""),
        "run_id": env.get("CCCI_RUN_ID", ""),
        "step": step,
        "domain": domain,
        "argv": argv,
        "result": result,
    }, sort_keys=True) + "\n"
    fd = os.open(state_path("calls.log"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def knob(name, step, scope, env=None):
    """Whether `step` (for `scope`, a domain) is listed in the knob `name`:
    comma-separated `step` or `step@scope` items."""
    env = os.environ if env is None else env
    for item in env.get(name, "").split(","):
        item = item.strip()
        if not item:
            continue
        want, _, at = item.partition("@")
        if want == step and (not at or at == scope):
            return True
    return False


def hang_forever(step):
    """Leave a marker the tests wait on, then sleep until killed. Plain
    sleeps in this process: SIGTERM and SIGKILL end it the ordinary way."""
    os.makedirs(state_path("hang"), exist_ok=True)
    marker = state_path("hang", "%s.%d" % (step, os.getpid()))
    with open(marker, "w") as f:
        f.write("%d\n" % os.getpid())
    while True:
        time.sleep(3600)


def waits_for(step, env=None):
    """The file the knob CCCI_FAKE_ABRA_WAIT_FOR (`STEP@FILE` items) makes
    `step` wait for, if any."""
    env = os.environ if env is None else env
    for item in env.get("CCCI_FAKE_ABRA_WAIT_FOR", "").split(","):
        want, sep, file = item.strip().partition("@")
        if sep and file and want == step:
            return file
    return None


def wait_for_file(step, domain, argv, path, env=None, pid=None):
    """A step that takes as long as something outside it decides (a real
    restore of a large volume takes minutes): it starts only once `path`
    exists, which the test creates on an event it follows, so no test
    sleeps. One `wait` line in the call log. Plain sleeps in this process:
    a signal ends it the ordinary way."""
    log_call(step, domain, argv, "wait", env, pid)
    while not os.path.exists(path):
        time.sleep(0.05)


class Injected(Fail):
    """A failure CCCI_FAKE_ABRA_FAIL injected into a step (already logged)."""


def perform_step(step, domain, argv, body, mutating=True, scope=None,
                 failure=None, env=None, pid=None, failed=bool):
    """Runs one step with fault injection and the call log around it, and
    returns what `body` returns; a failure (injected: Injected, or a Fail
    of `body`) is raised after its line is logged.

    `scope` is what a `step@scope` knob is matched against (the domain,
    unless given). Mutating steps log `start` then `ok`/`fail` (`fail`
    when `failed(result)`); read-only steps are logged only when a fault is
    injected or CCCI_FAKE_LOG_READS=1. A hanging step logs one `hang` line
    and never ends by itself. `env`/`pid`: the caller's knobs and pid."""
    env = os.environ if env is None else env
    scope = domain if scope is None else scope
    log = mutating or env.get("CCCI_FAKE_LOG_READS") == "1"
    if knob("CCCI_FAKE_ABRA_HANG", step, scope, env):
        log_call(step, domain, argv, "hang", env, pid)
        hang_forever(step)
    wait_for = waits_for(step, env)
    if wait_for:
        wait_for_file(step, domain, argv, wait_for, env, pid)
    if knob("CCCI_FAKE_ABRA_FAIL", step, scope, env):
        if mutating:
            log_call(step, domain, argv, "start", env, pid)
        log_call(step, domain, argv, "fail", env, pid)
        prefix = "FATA " if PROG_NAME[0] == "abra" else "Error: "
        msg = failure or "%s%s failed (injected by CCCI_FAKE_ABRA_FAIL=%s)" % (
            prefix, step, env.get("CCCI_FAKE_ABRA_FAIL", ""))
        raise Injected(msg, 1)
    if log and mutating:
        log_call(step, domain, argv, "start", env, pid)
    try:
        result = body()
    except Fail:
        if log:
            log_call(step, domain, argv, "fail", env, pid)
        raise
    if log:
        log_call(step, domain, argv, "fail" if failed(result) else "ok",
                 env, pid)
    return result


def run_step(step, domain, argv, body, mutating=True, scope=None,
             failure=None):
    """perform_step for a command-line stand-in: `body` returns an exit
    status; a failure is printed to stderr and exits (status 1 when
    injected, else the Fail's)."""
    try:
        code = perform_step(step, domain, argv, body, mutating, scope,
                            failure)
    except Fail as e:
        die(e.message, e.code)
    return code or 0
