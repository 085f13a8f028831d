"""The real docker CLI, for the swarm backend: which backend is chosen, and
the first `docker` on PATH that is not the stand-in.
"""

import os
import subprocess

from .errors import fatal


BACKENDS = ("file", "swarm")
NAMESPACE = "com.docker.stack.namespace"


def backend():
    value = os.environ.get("CCCI_FAKE_BACKEND", "") or "file"
    if value not in BACKENDS:
        raise fatal("CCCI_FAKE_BACKEND must be one of %s, not %r"
                    % ("/".join(BACKENDS), value))
    return value


_REAL_DOCKER = []


def real_docker():
    """The first `docker` on PATH that is not the stand-in: the swarm
    backend must reach the engine even when tests/fake is on PATH."""
    if _REAL_DOCKER:
        return _REAL_DOCKER[0]
    # tests/fake/docker, the entry point next to this package.
    here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    fake = os.path.realpath(os.path.join(here, "docker"))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", "docker")
        if (os.path.isfile(cand) and os.access(cand, os.X_OK)
                and os.path.realpath(cand) != fake):
            _REAL_DOCKER.append(cand)
            return cand
    raise fatal("CCCI_FAKE_BACKEND=swarm needs the real docker CLI on PATH "
                "(found none besides the stand-in %s)" % fake)


def dk(args, input=None, env=None, cwd=None):
    return subprocess.run([real_docker()] + list(args), input=input,
                          capture_output=True, text=True, env=env, cwd=cwd)


def dk_ok(args, **kw):
    p = dk(args, **kw)
    if p.returncode != 0:
        raise fatal("docker %s: %s" % (" ".join(args[:2]),
                                       (p.stderr or p.stdout).strip()))
    return p
