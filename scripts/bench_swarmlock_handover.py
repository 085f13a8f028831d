#!/usr/bin/env python3
"""Swarm lock hand-over bench, for scripts/bench.sh's swarmlock bench (SPEC 11).

Usage: bench_swarmlock_handover.py BIN WORK_DIR DOMAIN ROUNDS
Chains `BIN __hold-lock app DOMAIN` holders on the swarm backend (two hosts,
alternating) and on the flock backend (one host's state dir), and measures
from the holder's release (its stdin closed) to the waiter's `held` line.
Prints one line: the swarm and flock median hand-over in ns, the lease,
renew and margin settings in ms, and the lease-ms label of the lock object.
Exit 1 with a reason on stderr when a hand-over goes wrong.
"""
import os, queue, random, subprocess, sys, threading, time

BIN, work, domain, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BOUND = 20.0  # s: every wait is bounded by this
os.makedirs(work, exist_ok=True)
rng = random.Random(11)
live = []


class Fail(Exception):
    pass


def duration_ms(text):
    """units::parse_duration: whole numbers with ms, s, m, h or none (s)."""
    t = text.strip()
    digits = t.rstrip("msh")
    unit = t[len(digits):]
    scale = {"ms": 1, "": 1000, "s": 1000, "m": 60000, "h": 3600000}
    if not digits.isdigit() or unit not in scale:
        raise Fail("cannot read the duration %r" % text)
    return int(digits) * scale[unit]


def setting(var, default_ms):
    v = os.environ.get(var, "")
    return duration_ms(v) if v else default_ms


class Holder:
    """One `__hold-lock app DOMAIN`; its output lines, timestamped on arrival."""

    def __init__(self, name, backend, host, state):
        self.name = name
        self.log = os.path.join(work, "%s.log" % name)
        env = dict(os.environ, CCCI_LOCK_BACKEND=backend, CCCI_HOST_ID=host)
        self.q = queue.Queue()
        self.err = []
        # Its own session: a Ctrl-C reaches us, and we release it cleanly.
        self.p = subprocess.Popen(
            [BIN, "--state-dir", state, "__hold-lock", "app", domain, "--progress", "1s", "--wait", "60s"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True)
        live.append(self)
        self.pumps = [threading.Thread(target=self.pump, args=(s, tag), daemon=True)
                      for s, tag in ((self.p.stdout, "out"), (self.p.stderr, "err"))]
        for t in self.pumps:
            t.start()

    def pump(self, stream, tag):
        for raw in iter(stream.readline, b""):
            at = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            if tag == "err":
                self.err.append(line)
            self.q.put((at, tag, line))
        self.q.put((time.monotonic(), tag, None))

    def why(self):
        with open(self.log, "a") as f:
            f.write("\n".join(self.err) + "\n")
        return "; its stderr: " + (" | ".join(self.err[-3:]) or "(empty)")

    def expect(self, what, tag, test, forbid=None):
        """The arrival time of the first `tag` line passing `test`; a line
        passing `forbid` (tag, test, message) first is a failure."""
        deadline = time.monotonic() + BOUND
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("%s: no %s within %gs%s" % (self.name, what, BOUND, self.why()))
            try:
                at, t, line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None and t == "out":
                rc = self.p.poll()
                raise Fail("%s: stdout closed (exit %s) before %s%s" % (self.name, rc, what, self.why()))
            if line is None:
                continue
            if forbid and t == forbid[0] and forbid[1](line):
                raise Fail("%s: %s%s" % (self.name, forbid[2], self.why()))
            if t == tag and test(line):
                return at

    def held(self):
        return self.expect("`held` line", "out", lambda l: l == "held")

    def waiting(self, holder):
        return self.expect("`waiting for` line", "err", lambda l: "waiting for app lock" in l,
                           ("out", lambda l: l == "held",
                            "said `held` while %s still held the lock: two holders at once" % holder.name))

    def release(self):
        at = time.monotonic()
        self.p.stdin.close()
        return at

    def finish(self):
        try:
            rc = self.p.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            raise Fail("%s: still running %gs after its release%s" % (self.name, BOUND, self.why()))
        for t in self.pumps:
            t.join(timeout=BOUND)
        live.remove(self)
        if rc != 0 or any("lost" in l for l in self.err):
            raise Fail("%s: exit %d after its release%s" % (self.name, rc, self.why()))


class Chain:
    """Hand-overs on one backend between two hosts, the holder alternating."""

    def __init__(self, backend, hosts):
        self.backend, self.hosts, self.n, self.samples = backend, hosts, 0, []
        self.holder = self.start(0)
        self.holder.held()

    def start(self, i):
        host, state = self.hosts[i % 2]
        self.n += 1
        return Holder("%s-%d-%s" % (self.backend, self.n, host), self.backend, host, state)

    def round(self, r):
        waiter = self.start(r + 1)
        waiter.waiting(self.holder)
        time.sleep(0.5 + rng.uniform(0, 0.3))
        if self.holder.p.poll() is not None:
            raise Fail("%s: exited (%d) while holding the lock%s" % (self.holder.name, self.holder.p.returncode, self.holder.why()))
        t0 = self.holder.release()
        t1 = waiter.held()
        if t1 < t0:
            raise Fail("%s: %s said `held` before %s released: two holders at once" % (self.backend, waiter.name, self.holder.name))
        self.holder.finish()
        self.samples.append(t1 - t0)
        self.holder = waiter

    def end(self):
        self.holder.release()
        self.holder.finish()


def median_ns(samples):
    s = sorted(samples)
    return int(s[(len(s) - 1) // 2] * 1e9)


try:
    lease = setting("CCCI_LOCK_LEASE", 30000)
    renew = setting("CCCI_LOCK_RENEW", lease // 3)
    margin = setting("CCCI_LOCK_MARGIN", lease // 3)
    a, b = os.path.join(work, "host-a"), os.path.join(work, "host-b")
    swarm = Chain("swarm", [("bench-a", a), ("bench-b", b)])
    # The lease the binary wrote, read back from the lock object.
    label = subprocess.run(
        [os.environ.get("CCCI_DOCKER") or "docker", "config", "ls", "--filter", "label=cc-ci.lock.domain=" + domain,
         "--format", '{{ .ID }}'], capture_output=True, text=True, timeout=BOUND, check=True).stdout.split()
    if len(label) != 1:
        raise Fail("expected one lock object of %s while it is held, found %d" % (domain, len(label)))
    label_lease = subprocess.run(
        [os.environ.get("CCCI_DOCKER") or "docker", "config", "inspect", "--format",
         '{{ index .Spec.Labels "cc-ci.lock.lease-ms" }}', label[0]],
        capture_output=True, text=True, timeout=BOUND, check=True).stdout.strip()
    flock = Chain("flock", [("bench-a", os.path.join(work, "one-host"))] * 2)
    for r in range(rounds):
        swarm.round(r)
        flock.round(r)
    swarm.end()
    flock.end()
    print(median_ns(swarm.samples), median_ns(flock.samples), lease, renew, margin, label_lease)
except Fail as e:
    print("bench swarmlock: %s" % e, file=sys.stderr)
    sys.exit(1)
except KeyboardInterrupt:
    sys.exit(130)
finally:
    # Whatever is still running (a failure, a Ctrl-C) releases and ends.
    for h in list(live):
        try:
            h.p.stdin.close()
            h.p.wait(timeout=5)
        except Exception:
            h.p.kill()
            h.p.wait()
