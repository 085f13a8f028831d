"""Failure injection and the call log: the CCCI_FAKE_ABRA_FAIL and
CCCI_FAKE_ABRA_HANG knobs, and one calls.log line per step event.
"""

import json
import os
import time

from .errors import Fail, die
from .store import PROG_NAME, _path


# ---------------------------------------------------------------- call log --


def log_call(step, domain, argv, result):
    """One JSON line per step event, written with a single write(2) on an
    O_APPEND descriptor so lines of concurrent processes never interleave."""
    line = json.dumps({
        "ts": time.time_ns(),
        "pid": os.getpid(),
        "prog": PROG_NAME[0],
        "abra_dir": os.environ.get("ABRA_DIR", ""),
        "run_id": os.environ.get("CCCI_RUN_ID", ""),
        "step": step,
        "domain": domain,
        "argv": argv,
        "result": result,
    }, sort_keys=True) + "\n"
    fd = os.open(_path("calls.log"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def knob(name, step, scope):
    """Whether `step` (for `scope`, a domain) is listed in the knob `name`:
    comma-separated `step` or `step@scope` items."""
    for item in os.environ.get(name, "").split(","):
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
    os.makedirs(_path("hang"), exist_ok=True)
    marker = _path("hang", "%s.%d" % (step, os.getpid()))
    with open(marker, "w") as f:
        f.write("%d\n" % os.getpid())
    while True:
        time.sleep(3600)


def waits_for(step):
    """The file the knob CCCI_FAKE_ABRA_WAIT_FOR (`STEP@FILE` items) makes
    `step` wait for, if any."""
    for item in os.environ.get("CCCI_FAKE_ABRA_WAIT_FOR", "").split(","):
        want, sep, file = item.strip().partition("@")
        if sep and file and want == step:
            return file
    return None


def wait_for_file(step, domain, argv, path):
    """A step that takes as long as something outside it decides (a real
    restore of a large volume takes minutes): it starts only once `path`
    exists, which the test creates on an event it follows, so no test
    sleeps. One `wait` line in the call log. Plain sleeps in this process:
    a signal ends it the ordinary way."""
    log_call(step, domain, argv, "wait")
    while not os.path.exists(path):
        time.sleep(0.05)


def run_step(step, domain, argv, body, mutating=True, scope=None,
             failure=None):
    """Runs one step with fault injection and the call log around it.

    `scope` is what a `step@scope` knob is matched against (the domain,
    unless given). Mutating steps log `start` then `ok`/`fail`; read-only
    steps are logged only when a fault is injected or CCCI_FAKE_LOG_READS=1.
    A hanging step logs one `hang` line and never ends by itself."""
    scope = domain if scope is None else scope
    log = mutating or os.environ.get("CCCI_FAKE_LOG_READS") == "1"
    if knob("CCCI_FAKE_ABRA_HANG", step, scope):
        log_call(step, domain, argv, "hang")
        hang_forever(step)
    wait_for = waits_for(step)
    if wait_for:
        wait_for_file(step, domain, argv, wait_for)
    if knob("CCCI_FAKE_ABRA_FAIL", step, scope):
        if mutating:
            log_call(step, domain, argv, "start")
        log_call(step, domain, argv, "fail")
        prefix = "FATA " if PROG_NAME[0] == "abra" else "Error: "
        msg = failure or "%s%s failed (injected by CCCI_FAKE_ABRA_FAIL=%s)" % (
            prefix, step, os.environ.get("CCCI_FAKE_ABRA_FAIL", ""))
        die(msg, 1)
    if log and mutating:
        log_call(step, domain, argv, "start")
    try:
        code = body()
    except Fail as e:
        if log:
            log_call(step, domain, argv, "fail")
        die(e.message, e.code)
    if log:
        log_call(step, domain, argv, "ok" if not code else "fail")
    return code or 0
