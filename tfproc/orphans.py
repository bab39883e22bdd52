"""Beam's worker processes (``--direct_running_mode multi_processing``) end when the main process
dies, even by SIGKILL: the main process names itself in the environment the workers inherit, and
each worker watches it."""
import os
import threading
import time

ENV = "TFPROC_MAIN_PID"
_started = []


def mark_main():
    os.environ[ENV] = str(os.getpid())


def process_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")     # dead, not yet reaped
    except (OSError, IndexError):
        return False


def watch_main(interval=1.0, env=ENV):
    """In a worker process: exit as soon as the main process (named by ``env``) is gone."""
    pid = int(os.environ.get(env) or 0)
    if not pid or pid == os.getpid() or _started:
        return
    _started.append(pid)

    def loop():
        while not process_gone(pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=loop, daemon=True, name="tfproc-watch-main").start()
