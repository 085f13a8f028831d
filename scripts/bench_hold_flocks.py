#!/usr/bin/env python3
"""Holds an exclusive flock on N app lock files, as N live runs would, for
scripts/bench.sh's janitor bench (SPEC 5 and 8).

Usage: bench_hold_flocks.py LOCK_DIR N READY_FILE
Takes example-b1 .. example-bN.ci.localhost.lock in LOCK_DIR, then creates
READY_FILE and sleeps (an hour at most) until it is killed.
"""
import fcntl, os, sys, time
d, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fds = []
for i in range(1, n + 1):
    fd = os.open(os.path.join(d, "example-b%d.ci.localhost.lock" % i), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    fds.append(fd)
open(ready, "w").close()
time.sleep(3600)
