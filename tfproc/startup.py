"""Ctrl-C or SIGTERM while a command is starting (its imports take seconds) exits 130 with one line,
as it does later on. Nothing has been written yet, so there is nothing to clean up."""
import os
import signal
import sys


def _interrupted(signum, frame):
    try:
        console = sys.modules.get("tfproc.console")
        if console is not None:         # inside console.quiet(): fd 2 is the log; say it on the terminal
            console.say("\ninterrupted")
            console.drop_temporary_log()
        else:
            sys.stderr.write("\ninterrupted\n")
            sys.stderr.flush()
    finally:
        os._exit(130)


def exit_quietly_on_signals():
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted)


def exit_now(code):
    """End the command with ``code``, skipping Python's teardown of Beam's modules: it takes about a
    second and writes nothing, since every output file is closed and on disk by then."""
    import logging
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):       # a closed pipe: nothing more can be said
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def require(*modules):
    """One line and exit 2 when this Python lacks what the command needs: the usual cause is the
    system's Python instead of the project's environment."""
    import importlib.util

    def absent(name):
        try:
            return importlib.util.find_spec(name) is None
        except ValueError:          # sys.modules[name] is None: blocked
            return True
    missing = [name for name in modules if absent(name)]
    if missing:
        sys.stderr.write("error: %s is not installed in this Python (%s): run the project's commands with "
                         ".venv/bin/python, or `source .venv/bin/activate` first (bash scripts/install.sh makes "
                         ".venv)\n" % (", ".join(missing), sys.executable))
        sys.exit(2)
