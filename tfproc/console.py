"""A command's own lines on the terminal; framework chatter in a log file beside its output.

TensorFlow's C++ runtime, absl, Orbit, Keras, pycocotools and KFP's local runner write to the
process's file descriptors 1 and 2 directly, so Python's logging settings cannot quiet them. Inside
``quiet(log)`` both descriptors point at the log file, and ``say`` writes to the terminal (and to the
log, so that the log tells the whole story). ``--verbose`` leaves the descriptors alone.
"""
import contextlib
import os
import signal
import sys
import tempfile
import threading

_terminal = None        # the terminal's stream while quiet() is active
_log = None             # the log file while quiet() is active


def say(line):
    """One line of ours for the person at the terminal."""
    stream = _terminal or sys.stderr
    stream.write(line + "\n")
    stream.flush()
    if _log is not None:
        _log.write(line + "\n")
        _log.flush()


@contextlib.contextmanager
def quiet(log_path, verbose=False):
    """Send everything written to fds 1 and 2 to ``log_path`` (appended; a gs:// path is written
    locally and copied there at the end) unless ``verbose``. Yields the log's path."""
    global _terminal, _log
    if verbose or _terminal is not None:
        yield log_path
        return
    remote = "://" in log_path
    local_path = tempfile.mkstemp(prefix="synthdet-", suffix=".log")[1] if remote else log_path
    if not remote:
        os.makedirs(os.path.dirname(os.path.abspath(local_path)), exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log_fd = os.open(local_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1, errors="replace")
    _log = os.fdopen(os.dup(log_fd), "a", buffering=1, errors="replace")
    for fd in (1, 2):
        os.dup2(log_fd, fd)
    os.close(log_fd)
    try:
        yield log_path
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        _terminal.close()
        _log.close()
        _terminal = _log = None
        if remote:
            _upload(local_path, log_path)


def _upload(local_path, remote_path):
    try:
        from tfproc import fsutil
        with open(local_path, "rb") as f:
            fsutil.write_atomically(remote_path, f.read())
    except Exception as error:       # the log is a convenience: never fail a run for it
        say("warning: could not copy the log to %s (%s); it is in %s" % (remote_path, error, local_path))
        return
    os.unlink(local_path)


def stop_promptly(message="interrupted"):
    """Make SIGINT end the process within a second even while the main thread is inside TensorFlow's
    C++ runtime (where Python's own handler would wait for the current loop to return): a thread
    woken by the signal says ``message`` and exits with 130. Files written by whole-file renames
    (checkpoints, metrics) are left as they were: the newest whole one stays."""
    if threading.current_thread() is not threading.main_thread():
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGINT, lambda signum, frame: None)

    def watch():
        while True:
            data = os.read(read_end, 16)
            if not data or signal.SIGINT in data:
                break
        say(message)
        os._exit(130)

    threading.Thread(target=watch, name="stop-promptly", daemon=True).start()
