"""The figures of scripts/bench-floor.sh, from what its rounds left in WORK.

Usage: python3 scripts/bench_floor.py WORK BIN...

WORK holds the engine's own event stream (`events`), one line per round
(`rounds`), each cc-ci-run round's log (`log-bB-R`), run record
(`state-bB-R/runs/bfl-bB-R/run.json`) and abra call times (`abra-bB-R`:
`START END VERB` per call, wall-clock seconds, written by the bench's abra
shim), and the floor rounds' removal times (`floor-rm-STACK`).

The floor of a `--quick` run is the time during which something it cannot
do without was at work: the engine deploying (service create -> the last
container start) and removing (service remove -> the last container or
network destroy) the stack, the recipe's tests (`phase: test-install` ->
`phase: teardown`), and abra's own calls (each from its start to its end,
measured in the run itself through the shim). Their union is the floor;
the rest of the run's wall time is cc-ci-run's own, printed by where it
goes: before the first abra call (start, fetch, checks, prepare, lock),
the convergence and teardown notice gaps, after the last abra call
(record, exit), and the remainder.
"""

import datetime
import json
import os
import statistics
import sys

work, bins = sys.argv[1], sys.argv[2:]
events = [json.loads(line) for line in open(work + "/events") if line.strip()]


def of_stack(e, stack):
    a = e.get("Actor", {}).get("Attributes", {}) or {}
    if a.get("com.docker.stack.namespace") == stack:
        return True
    return (a.get("name") or "").startswith(stack + "_")


def ev(stack, typ, action):
    return [e["timeNano"] / 1e9 for e in events
            if e.get("Type") == typ and e.get("Action") == action and of_stack(e, stack)]


def log_ts(line):
    ts = line.split(" ", 1)[0]
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def first_line(path, needle):
    for line in open(path, encoding="utf-8", errors="replace"):
        if needle in line:
            return log_ts(line)
    return None


def ms(x):
    return None if x is None else round(x * 1000)


# How much earlier than the engine's own event a look may see its effect.
EARLY = 0.05


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def union(intervals, lo, hi):
    """The length of the union of `intervals`, each clipped to [lo, hi]."""
    spans = sorted((max(a, lo), min(b, hi)) for a, b in intervals if a is not None and b is not None)
    total, end = 0.0, lo
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def abra_calls(path):
    """(start, end, verb) of each abra call the shim recorded."""
    if not os.path.exists(path):
        return []
    calls = []
    for line in open(path):
        f = line.split()
        if len(f) >= 2:
            calls.append((float(f[0]), float(f[1]), " ".join(f[2:4])))
    return calls


rows = [line.split() for line in open(work + "/rounds")]
floor_conv, floor_rm, floor_total = [], [], []
keys = ("wall", "conv", "td", "tests", "engine", "abra", "floor", "before", "after", "other")
runs = {i: {k: [] for k in keys} for i in range(len(bins))}
shell = []
for r in rows:
    kind, rnd, stack = r[0], r[1], r[2]
    if kind == "floor":
        create = min(ev(stack, "service", "create"), default=None)
        start = max(ev(stack, "container", "start"), default=None)
        rm_at = int(open("%s/floor-rm-%s" % (work, stack)).read()) / 1000
        last = max(ev(stack, "container", "destroy") + ev(stack, "network", "destroy"), default=None)
        c = start - create if create and start else None
        t = last - rm_at if last else None
        floor_conv.append(c)
        floor_rm.append(t)
        floor_total.append(c + t if c is not None and t is not None else None)
        print("floor round %s: converge %s ms (service create -> container start), removal %s ms (stack rm -> last destroy)"
              % (rnd, ms(c), ms(t)))
    elif kind == "ccci":
        b = int(r[4])
        log = "%s/log-b%d-%s" % (work, b, rnd)
        wall = int(r[3]) / 1000
        began = int(r[5]) / 1000
        ended = began + wall
        conv_line = first_line(log, " converged")
        rm_line = first_line(log, "$ abra app rm")
        start = max([t for t in ev(stack, "container", "start") if conv_line and t <= conv_line], default=None)
        create = min(ev(stack, "service", "create"), default=None)
        # A look at the engine can find an object gone a little before the
        # engine publishes its `destroy` (and a log line's time is cut to
        # the millisecond): a destroy up to EARLY after the line is the one
        # the line followed, and the gap is then 0.
        last = max([t for t in ev(stack, "container", "destroy") + ev(stack, "network", "destroy")
                    if rm_line and t <= rm_line + EARLY], default=None)
        removal_start = min(ev(stack, "service", "remove"), default=None)
        tests = None
        t0, t1 = first_line(log, "phase: test-install"), first_line(log, "phase: teardown")
        if t0 and t1:
            tests = t1 - t0
        conv_gap = conv_line - start if conv_line and start else None
        td_gap = max(rm_line - last, 0.0) if rm_line and last else None
        engine = (start - create if start and create else 0) + (last - removal_start if last and removal_start else 0)
        calls = abra_calls("%s/abra-b%d-%s" % (work, b, rnd))
        abra = sum(e - s for s, e, _ in calls)
        parts = [(create, start), (removal_start, last), (t0, t1)] + [(s, e) for s, e, _ in calls]
        floor = union(parts, began, ended)
        before = min((s for s, _, _ in calls), default=ended) - began
        after = ended - max((e for _, e, _ in calls), default=ended)
        other = wall - floor - before - after - (conv_gap or 0) - (td_gap or 0)
        d = runs[b]
        for k, v in (("wall", wall), ("conv", conv_gap), ("td", td_gap), ("tests", tests),
                     ("engine", engine), ("abra", abra), ("floor", floor), ("before", before),
                     ("after", after), ("other", other)):
            d[k].append(v)
        print("cc-ci-run #%d round %s: wall %d ms, tests %s ms, engine converge+removal in this run %s ms, "
              "abra's %d calls %s ms, floor (their union) %s ms; "
              "convergence noticed %s ms after the last container start, teardown noticed %s ms after the last destroy"
              % (b, rnd, ms(wall), ms(tests), ms(engine), len(calls), ms(abra), ms(floor),
                 ms(conv_gap), ms(td_gap)))
    elif kind == "shell":
        shell.append(int(r[3]) / 1000)
        print("shell round %s: wall %d ms" % (rnd, int(r[3])))

fc, fr, ft, sh = med(floor_conv), med(floor_rm), med(floor_total), med(shell)
n = len(floor_total)
print("engine floor (median of %d): converge %d ms, removal %d ms, total %d ms" % (n, ms(fc), ms(fr), ms(ft)))
print("shell script of the same abra calls (median of %d): %.2f s" % (len(shell), sh))
for b, path in enumerate(bins):
    d = runs[b]
    w, t = med(d["wall"]), med(d["tests"])
    floor_plus = ft + t
    print("cc-ci-run #%d %s: --quick %.2f s (ratio %.3f of the shell script, %.3f of the floor %.2f s + tests %.2f s); "
          "convergence noticed %s ms, teardown noticed %s ms after the engine's last event (medians; every: %s / %s)"
          % (b, path, w, w / sh, w / floor_plus, ft, t, ms(med(d["conv"])), ms(med(d["td"])),
             [ms(x) for x in d["conv"]], [ms(x) for x in d["td"]]))
    if d["abra"] and any(d["abra"]):
        fl = med(d["floor"])
        print("cc-ci-run #%d its own floor (medians): engine %s ms + tests %s ms + abra's calls %s ms, "
              "as one union %s ms; --quick %.3f of it. The rest, %s ms: before the first abra call %s ms, "
              "convergence notice %s ms, teardown notice %s ms, after the last abra call %s ms, other %s ms"
              % (b, ms(med(d["engine"])), ms(t), ms(med(d["abra"])), ms(fl), w / fl, ms(w - fl),
                 ms(med(d["before"])), ms(med(d["conv"])), ms(med(d["td"])), ms(med(d["after"])),
                 ms(med(d["other"]))))
