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


def descendants(pid):
    """Every living process below ``pid`` (children, theirs, ...), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] not in ("Z", "X"):
                    parents.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_processes(pids, grace=5.0):
    """SIGTERM to each of ``pids``, then SIGKILL to those still there after ``grace`` seconds."""
    import signal
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(process_gone(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if not process_gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
