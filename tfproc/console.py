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
def quiet(verbose=False):
    """Send everything written to fds 1 and 2 to a log file, unless ``verbose``. The log starts in
    the system's temporary folder and is dropped at the end, unless ``keep_log_at(path)`` gave it a
    place (which a command does once it has checked its arguments and makes its output)."""
    global _terminal, _log
    if verbose or _terminal is not None:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log_fd, _state["local"] = tempfile.mkstemp(prefix="synthdet-", suffix=".log")
    _state["remote"] = None
    _terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1, errors="replace")
    _log = os.fdopen(os.dup(log_fd), "a", buffering=1, errors="replace")
    _point_output_at(log_fd)
    temporary = _state["temporary"] = _state["local"]
    try:
        yield
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
        if _state["remote"]:
            _upload(_state["local"], _state["remote"])
        elif _state["local"] == temporary:
            os.unlink(temporary)
        _state["temporary"] = None


_state = {"local": None, "remote": None, "temporary": None}


def _upload(local_path, remote_path):
    """Copy the log to its gs:// place at the end; the log is a convenience, so a failure is a warning."""
    try:
        from tfproc import fsutil
        with open(local_path, "rb") as f:
            fsutil.write_atomically(remote_path, f.read())
    except Exception as error:
        say("warning: could not copy the log to %s (%s); it is in %s" % (remote_path, error, local_path))
        return
    os.unlink(local_path)


def drop_temporary_log():
    """Remove the log of the current ``quiet()`` while it still lies in the temporary folder (no
    ``keep_log_at`` yet): for a process about to end at once on a signal."""
    if _state.get("temporary") and _state["local"] == _state["temporary"]:
        try:
            os.unlink(_state["temporary"])
        except OSError:
            pass


def _point_output_at(fd):
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)


def keep_log_at(path):
    """Keep the log of the current ``quiet()`` at ``path`` (appended to; a gs:// path is written
    locally and copied there at the end), from now on and from its start. Returns ``path``."""
    global _log
    if _terminal is None:
        return path
    if "://" in path:
        _state["remote"] = path
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    _log.flush()
    with open(_state["local"], "rb") as f:
        os.write(fd, f.read())
    os.unlink(_state["local"])
    _state["local"] = path
    _log.close()
    _log = os.fdopen(os.dup(fd), "a", buffering=1, errors="replace")
    _point_output_at(fd)
    return path


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
        drop_temporary_log()
        os._exit(130)

    threading.Thread(target=watch, name="stop-promptly", daemon=True).start()
