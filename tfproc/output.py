"""The output folder: who may write it, and how a finished run replaces what was there.

- One run at a time: a run claims the output with a lock (``.tfproc.lock``; on a local disk an
  ``flock`` that the kernel drops when the process dies; on gs:// an object created only if absent,
  kept fresh by a heartbeat). A second run is refused with a message naming the first.
- Everything a run writes goes to its staging folder (``.staging-<run>/``) until ``commit``:
  the commit first writes ``COMMITTED`` (the plan of what goes where) into the staging folder, then
  removes the old summary, moves the new shards into place, removes stale shards, and writes the
  label map and, last, ``summary.json``, the mark of a complete output. Every step can run again;
  a commit cut short is finished by the next run (``recover``), a staging folder that never reached
  ``COMMITTED`` is deleted by it. So after any interruption the folder holds the old output or the
  new one, and the next run needs no manual cleanup.
- Before the point of no return the commit checks that every destination can be written, so a
  folder in the way of a shard fails the run with the old output untouched. After it, the staging
  folder's ``COMMITTED`` goes first when the folder is removed, so a half-removed folder is never
  taken for a commit to finish.
- Only files this tool names are ever deleted: shards named ``<split>-NNNNN-of-NNNNN.tfrecord`` in
  their split's folder (``train/``, ``eval/``, or a published split's), ``label_map.pbtxt``, ``summary.json``, their temporary files of an older
  version (``*.tmp-XXXXXXXX``), and its own staging folders (``.staging-<run id>/``, folders only).
"""
import json
import os
import re
import socket
import time

from tfproc import fsutil, split

LOCK = ".tfproc.lock"
STAGING_PREFIX = ".staging-"
COMMITTED = "COMMITTED"
LABEL_MAP = "label_map.pbtxt"
SUMMARY = "summary.json"
SPLITS = (split.TRAIN, split.EVAL)
SPLIT_NAME = r"[a-z][a-z0-9_]{0,63}"     # train, eval, or a published split (test_low_contrast)
SHARD_NAME = re.compile(r"^(%s)-\d{5}-of-\d{5}\.tfrecord$" % SPLIT_NAME)
STAGING_NAME = re.compile(r"^\.staging-\d{8}-\d{6}-[0-9a-f]{6}$")      # pipeline.new_run_id
TEMP_DEBRIS = re.compile(r"^(summary\.json|label_map\.pbtxt|(%s)/\2-\d{5}-of-\d{5}\.tfrecord)"
                         r"\.tmp-[0-9a-f]{8}$" % SPLIT_NAME)
HEARTBEAT_SECONDS = 60
STALE_AFTER_SECONDS = 15 * 60   # a gs:// lock not refreshed for this long belongs to a dead run


class OutputBusy(Exception):
    """Another run holds the output."""


def _elsewhere(what):
    """What else a user can do when the folder is held: a conversion can write elsewhere."""
    return ", or pass another --output" if what == "conversion" else ""


class LockLost(OutputBusy):
    """Another run took this run's lock (it was broken or thought stale): this run must not commit."""


class OutputUnusable(Exception):
    """An --output that cannot be written: not a folder, read-only, no locks, a folder in the way."""


def staging_folder(output, run_id):
    return fsutil.join(output, STAGING_PREFIX + run_id)


# -- the lock --------------------------------------------------------------------------------

class Claim:
    """This run's hold on an output folder; ``release`` ends it."""

    def __init__(self, output, run_id, record, handle=None, generation=None):
        self.output, self.run_id, self.record = output, run_id, record
        self.handle, self.generation = handle, generation
        self.last_beat = time.time()

    def heartbeat(self, **extra):
        """Refresh a gs:// lock (and record e.g. a Dataflow job id); a local lock needs none.

        Raises LockLost if the lock is no longer this run's; other errors (the network) propagate
        for the caller to try again."""
        from google.api_core import exceptions
        self.record.update(extra, heartbeat=time.time())
        self.last_beat = time.time()
        if self.handle is None:
            blob = _lock_blob(self.output)
            try:
                blob.upload_from_string(json.dumps(self.record), if_generation_match=self.generation)
            except (exceptions.PreconditionFailed, exceptions.NotFound):
                self.generation = None
                raise LockLost("%s: another run took this run's lock (%s); this run stops without "
                               "committing" % (self.output, LOCK))
            self.generation = blob.generation

    def heartbeat_if_due(self):
        if self.handle is None and time.time() - self.last_beat > HEARTBEAT_SECONDS:
            self.heartbeat()

    def release(self):
        if self.handle is not None:
            import fcntl
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        elif self.generation is not None:
            release_remote(self.output, self.run_id)
            self.generation = None


def claim(output, run_id, break_lock=False, what="conversion"):
    """Claim ``output`` for this run or raise OutputBusy. The folder is created if need be.

    ``break_lock`` takes over a gs:// lock whatever it says (a local lock dies with its process);
    ``what`` names the kind of run in messages.
    """
    record = {"run": run_id, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.time(), "heartbeat": time.time(), "job": ""}
    if fsutil.is_remote(output):
        return _claim_remote(output, run_id, record, break_lock, what)
    return _claim_local(output, run_id, record, what)


def _claim_local(output, run_id, record, what="conversion"):
    import fcntl
    try:
        os.makedirs(output, exist_ok=True)
    except FileExistsError:
        raise OutputUnusable("--output %s exists and is not a folder (a file, or a symlink to nothing)" % output)
    except OSError as error:
        raise OutputUnusable("cannot create --output %s: %s" % (output, error.strerror))
    path = os.path.join(output, LOCK)
    for _ in range(20):
        try:
            handle = open(path, "a+")
        except OSError as error:
            raise OutputUnusable("cannot write in --output %s: %s" % (output, error.strerror))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            raise OutputBusy("%s is being written by another %s (%s); wait for it to end%s"
                             % (output, what, _describe(holder), _elsewhere(what)))
        except OSError as error:
            handle.close()
            raise OutputUnusable("cannot lock %s: %s (a filesystem without file locks?); write the output to a "
                                 "local disk or gs://" % (path, error.strerror))
        # A run that held the lock may have removed the file as it ended: then this lock is on a
        # file no one else will open; lock the one at the path instead.
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    else:
        raise OutputBusy("%s: could not claim its lock (%s), other runs keep replacing it" % (output, LOCK))
    if not os.access(output, os.W_OK):
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        raise OutputUnusable("cannot write in --output %s: permission denied" % output)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(record))
    handle.flush()
    return Claim(output, run_id, record, handle=handle)


def remove_local_lock(claim_):
    """Remove the lock file of an output this run created, while still holding the lock (a run
    that opened the old file sees it is gone, and locks the path anew)."""
    if claim_.handle is not None:
        try:
            os.remove(os.path.join(claim_.output, LOCK))
        except FileNotFoundError:
            pass


def verify(output, run_id):
    """Raise LockLost unless the output's lock still names this run (checked before committing)."""
    if fsutil.is_remote(output):
        from google.api_core import exceptions
        try:
            holder = _parse(_lock_blob(output).download_as_bytes())
        except exceptions.NotFound:
            holder = {}
    else:
        try:
            with open(os.path.join(output, LOCK)) as f:
                holder = _parse(f.read())
        except OSError:
            holder = {}
    if holder.get("run") != run_id:
        raise LockLost("%s: this run's lock is gone%s; nothing was committed, the output is as it was"
                       % (output, " (taken by run %s)" % holder["run"] if holder.get("run") else ""))


def _lock_blob(output):
    bucket, _, prefix = output[len("gs://"):].partition("/")
    return fsutil.storage_client().bucket(bucket).blob((prefix.rstrip("/") + "/" if prefix else "") + LOCK)


def _claim_remote(output, run_id, record, break_lock, what="conversion"):
    from google.api_core import exceptions
    blob = _lock_blob(output)
    for _ in range(3):
        try:
            blob.upload_from_string(json.dumps(record), if_generation_match=0)
            return Claim(output, run_id, record, generation=blob.generation)
        except exceptions.PreconditionFailed:
            pass
        try:
            blob.reload()
            holder = _parse(blob.download_as_bytes(if_generation_match=blob.generation))
        except exceptions.NotFound:
            continue        # released meanwhile: try again
        except exceptions.PreconditionFailed:
            continue
        if _alive(holder) and not break_lock:
            hint = (" If that job has ended (gcloud dataflow jobs describe %s), pass --break-lock."
                    % holder["job"]) if holder.get("job") else ""
            raise OutputBusy("%s is being written by another %s (%s); wait for it to end%s.%s"
                             % (output, what, _describe(holder), _elsewhere(what), hint))
        try:
            blob.delete(if_generation_match=blob.generation)    # only the stale lock we read
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            pass
    raise OutputBusy("%s: could not claim its lock (%s), another run keeps taking it" % (output, LOCK))


def release_remote(output, run_id):
    """Remove a gs:// lock if it is still this run's (a Dataflow job's last step calls this too)."""
    from google.api_core import exceptions
    blob = _lock_blob(output)
    try:
        blob.reload()
        if _parse(blob.download_as_bytes(if_generation_match=blob.generation)).get("run") == run_id:
            blob.delete(if_generation_match=blob.generation)
    except (exceptions.NotFound, exceptions.PreconditionFailed):
        pass


def _alive(holder):
    if holder.get("host") == socket.gethostname() and not holder.get("job"):
        return _pid_alive(holder.get("pid"))
    if holder.get("job"):
        return True     # a Dataflow job left running: only its own last step releases the lock
    return time.time() - float(holder.get("heartbeat") or 0) < STALE_AFTER_SECONDS


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _parse(text):
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


def _describe(holder):
    if not holder:
        return "no details recorded"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started") or 0)))
    what = "run %s from %s, pid %s, started %s" % (holder.get("run"), holder.get("host"), holder.get("pid"), when)
    if holder.get("job"):
        what += "; Dataflow job %s" % holder["job"]
    return what


# -- recovery and the commit -----------------------------------------------------------------

def staging_names(output, listing=None):
    """This tool's staging folders in ``output``: folders named ``.staging-<run id>``, nothing else."""
    listing = fsutil.list_tree(output) if listing is None else listing
    names = {rel.split("/", 1)[0] for rel in listing if "/" in rel}
    if not fsutil.is_remote(output) and os.path.isdir(output):     # an emptied one holds no file to list
        names |= {name for name in os.listdir(output) if os.path.isdir(os.path.join(output, name))}
    return sorted(name for name in names if STAGING_NAME.match(name))


def recover(output, own_run):
    """With the lock held: finish commits cut short, delete staging folders of dead runs and the
    temporary files an older version could leave.

    Returns what was done, as lines for the user.
    """
    done = []
    listing = fsutil.list_tree(output)
    for name in staging_names(output, listing):
        if name == STAGING_PREFIX + own_run:
            continue
        staging = fsutil.join(output, name)
        files = {rel.split("/", 1)[1] for rel in listing if rel.startswith(name + "/")}
        if COMMITTED in files and {SUMMARY, LABEL_MAP} <= files:
            commit(output, staging)
            done.append("finished the interrupted commit of an earlier run (%s)" % name)
        elif COMMITTED in files:    # its commit was done and the folder half removed
            fsutil.delete_tree(staging, first=[COMMITTED])
            done.append("removed the rest of a committed run's staging folder (%s)" % name)
        else:
            fsutil.delete_tree(staging)
            done.append("removed the staging folder of an interrupted run (%s)" % name)
    debris = [fsutil.join(output, *rel.split("/")) for rel in listing if TEMP_DEBRIS.match(rel)]
    if debris:
        fsutil.delete_many(debris)
        done.append("removed %d temporary file(s) an interrupted run left" % len(debris))
    return done


def plan(shard_counts, written):
    """What a commit puts in place: every shard name per split, and those that hold frames."""
    return {"shards": {name: [split.shard_name(name, i, count) for i in range(count)]
                       for name, count in sorted(shard_counts.items())},
            "written": sorted(written)}


def check_destinations(output, the_plan=None):
    """Raise OutputUnusable if a file of the output cannot be put in place (a folder in the way of a
    shard, a split folder that is a file, a folder that cannot be written). Object stores have
    no such obstacles."""
    if fsutil.is_remote(output):
        return
    names = [(output, SUMMARY), (output, LABEL_MAP)]
    for split_name in sorted(set(SPLITS) | set(((the_plan or {}).get("shards") or {}))):
        folder = os.path.join(output, split_name)
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise OutputUnusable("%s is in the way of the %s folder; move it away and run again" % (folder, split_name))
        if os.path.isdir(folder) and not os.access(folder, os.W_OK):
            raise OutputUnusable("cannot write in %s: permission denied" % folder)
        names += [(folder, name) for name in ((the_plan or {}).get("shards") or {}).get(split_name, [])]
    for folder, name in names:
        path = os.path.join(folder, name)
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
            raise OutputUnusable("%s is in the way of the output's %s (it is not a plain file); move it away "
                                 "and run again" % (path, name))


def write_committed(output, staging, the_plan, label_map_text):
    """The point of no return: from here on the new output is the output. The staging folder holds
    the run's summary already. Every destination is checked first, so a commit that could not
    finish is refused with the old output untouched; the staged shards reach the disk before
    ``COMMITTED`` does."""
    check_destinations(output, the_plan)
    if not fsutil.is_remote(staging):     # a shard not staged was put in place, synced, by a first try
        staged = [os.path.join(staging, *rel.split("/")) for rel in the_plan["written"]]
        fsutil.sync_files([path for path in staged if os.path.isfile(path)])
    fsutil.write_atomically(fsutil.join(staging, LABEL_MAP), label_map_text.encode("utf-8"))
    fsutil.write_atomically(fsutil.join(staging, COMMITTED), json.dumps(the_plan).encode("utf-8"))


def commit(output, staging):
    """Put the committed run of ``staging`` in place; idempotent, so it may run any number of times."""
    the_plan = json.loads(fsutil.read_bytes(fsutil.join(staging, COMMITTED)))
    new_summary = fsutil.read_bytes(fsutil.join(staging, SUMMARY))
    old_summary = fsutil.join(output, SUMMARY)
    if fsutil.is_file(old_summary) and fsutil.read_bytes(old_summary) != new_summary:
        fsutil.delete_many([old_summary])       # the folder no longer claims to be complete

    staged = fsutil.list_tree(staging)
    written = set(the_plan["written"])
    temp_folder = None if fsutil.is_remote(output) else staging
    moves, empties = [], []
    for split_name in sorted(set(the_plan["shards"]) | set(split_folders(output))):
        names = the_plan["shards"].get(split_name, [])
        folder = fsutil.join(output, split_name)
        fsutil.makedirs(folder)
        existing = fsutil.list_tree(folder)
        stale = [fsutil.join(folder, rel) for rel in existing
                 if SHARD_NAME.match(rel) and rel not in names]
        fsutil.delete_many(stale)
        for name in names:
            rel = "%s/%s" % (split_name, name)
            if rel in staged:
                moves.append((fsutil.join(staging, split_name, name), fsutil.join(folder, name)))
            elif rel not in written:     # no frame hashed to it: an empty shard keeps the set whole
                empties.append(fsutil.join(folder, name))
            elif name not in existing:
                raise RuntimeError("shard %s is neither staged nor in place" % rel)
    fsutil.rename_many([m[0] for m in moves], [m[1] for m in moves])
    for path in empties:
        fsutil.write_atomically(path, b"", temp_folder)
    fsutil.write_atomically(fsutil.join(output, LABEL_MAP), fsutil.read_bytes(fsutil.join(staging, LABEL_MAP)),
                            temp_folder)
    fsutil.write_atomically(old_summary, new_summary, temp_folder)
    fsutil.delete_tree(staging, first=[COMMITTED])


def existing_output(output):
    """Files of an earlier run in ``output`` (shards, label map, summary), for the overwrite check."""
    return sorted(rel for rel in fsutil.list_tree(output) if rel in (SUMMARY, LABEL_MAP) or _is_shard(rel))


def split_folders(output):
    """The split folders of an earlier run in ``output``: those holding shards named after them."""
    return sorted({rel.split("/")[0] for rel in fsutil.list_tree(output) if _is_shard(rel)})


def _is_shard(rel):
    parts = rel.split("/")
    if len(parts) != 2:
        return False
    match = SHARD_NAME.match(parts[1])
    return bool(match) and match.group(1) == parts[0]
