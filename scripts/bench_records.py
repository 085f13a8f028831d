"""Writes N finished run records (STATE/runs/<id>/run.json) as real runs
leave them, for the views benchmark (scripts/bench-views.sh): RECIPES
recipes, each on its own app domain, runs back to back on each domain so
every other run waited behind the one before it, a mix of verdicts, and
phases and tier counts like a full run's.

Usage: bench_records.py STATE N RECIPES
"""

import datetime
import json
import os
import sys

VERDICTS = ("passed", "passed", "passed", "failed", "infra", "cancelled")
# Phase names as a run writes them: the record reads only those.
PHASES = ("fetch", "checks", "install", "install-converge", "test-install", "teardown")


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def main(state, n, recipes):
    step = datetime.timedelta(seconds=90)
    # The last runs end about now, so a timeline of the last 24 hours
    # shows them all (10,000 runs over 20 domains span about 14 hours).
    now = datetime.datetime.now(datetime.timezone.utc)
    base = now - datetime.timedelta(seconds=100) * (n // recipes + 1)
    clock = [base] * recipes
    for i in range(n):
        k = i % recipes
        recipe = "recipe%02d" % k
        domain = "%s.ci.example.org" % recipe
        run_id = "drone-coop-cloud-%s-%d" % (recipe, i // recipes + 1)
        requested = clock[k]
        # Every other run of a domain asked while the one before held it.
        waited = (i // recipes) % 2 == 1
        acquired = requested + (datetime.timedelta(seconds=30) if waited else datetime.timedelta(0))
        t = acquired
        phases = []
        for p in PHASES:
            end = t + datetime.timedelta(seconds=10)
            phases.append({"name": p, "started": stamp(t), "ended": stamp(end), "duration_ms": 10000})
            t = end
        released = t
        next_waits = (i // recipes + 1) % 2 == 1
        clock[k] = released + (-datetime.timedelta(seconds=30) if next_waits else step)
        verdict = VERDICTS[i % len(VERDICTS)]
        record = {
            "run_id": run_id,
            "recipe": recipe,
            "git_ref": "refs/pull/%d/head" % (i % 50 + 1),
            "domain": domain,
            "stack": domain.replace(".", "_"),
            "pid": 1000 + i,
            "host": "ci1",
            "phase": "finished",
            "started": stamp(requested),
            "updated": stamp(released),
            "finished": stamp(released),
            "exit_code": 0 if verdict == "passed" else 1,
            "tiers": ["install"],
            "verdict": verdict,
            "failed_phase": None if verdict == "passed" else "test-install",
            "phases": phases,
            "lock": {
                "domain": domain,
                "backend": "flock",
                "requested": stamp(requested),
                "acquired": stamp(acquired),
                "released": stamp(released),
                "wait_ms": int((acquired - requested).total_seconds() * 1000),
            },
            "tests": [{"tier": "install", "passed": 3, "failed": int(verdict == "failed"),
                       "skipped": 0, "flaky": 0, "report_dir": "/x"}],
        }
        d = os.path.join(state, "runs", run_id)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "run.json"), "w") as f:
            json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
