"""Ctrl-C or SIGTERM while a command is starting (its imports take seconds) exits 130 with one line,
as it does later on. Nothing has been written yet, so there is nothing to clean up."""
import os
import signal
import sys


def _interrupted(signum, frame):
    try:
        sys.stderr.write("\ninterrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def exit_quietly_on_signals():
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted)
