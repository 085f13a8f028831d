"""Errors of both stand-ins: the user-facing Fail, how a stand-in dies, its
signal dispositions, and abra's FATA error lines.
"""

import signal
import sys


# ----------------------------------------------------------------- errors --


class Fail(Exception):
    """A user-facing error: printed to stderr, exit status `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code


def die(message, code=1):
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)


def default_signals():
    # SIGINT and SIGPIPE kill quietly, like a compiled tool, instead of a
    # Python traceback; SIGTERM already has its default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def fatal(message):
    """abra's error lines (charmbracelet/log) start with FATA."""
    return Fail("FATA " + message)
