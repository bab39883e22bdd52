"""Conversion integrity, round two (issue 16): kills at every change of the commit and of the
recovery, the commit's checks and debris, the readers on odd files and names, signals at start-up,
Beam's worker processes, inspect against summary.json, and unusable outputs."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import convert
from test_integrity import ROOT, main_py, make_run
from tfproc import fsutil, output

OLD = ["--eval-pct", 30, "--shard-size-mb", 0.02]
NEW = ["--eval-pct", 70, "--shard-size-mb", 0.01]


FOLDERS = []    # the folders outputs were copied from: a copied summary names them


def summary_of(out):
    path = os.path.join(out, "summary.json")
    if not os.path.exists(path):
        return None
    text = open(path).read()
    for folder in FOLDERS + [str(out)]:
        text = text.replace(folder, "OUT")
    summary = json.loads(text)
    summary.pop("elapsed_seconds")
    return summary


def shards_of(out):
    found = {}
    for split_name in ("train", "eval"):
        folder = os.path.join(out, split_name)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if os.path.isfile(os.path.join(folder, name)):
                with open(os.path.join(folder, name), "rb") as f:
                    found["%s/%s" % (split_name, name)] = f.read()
    return found


def snapshot(out):
    """What a reader of the output sees: its summary, shards and label map."""
    label_map = os.path.join(out, "label_map.pbtxt")
    return {"summary": summary_of(out), "shards": shards_of(out),
            "label_map": open(label_map).read() if os.path.exists(label_map) else None}


def debris(out):
    return sorted(rel for rel in fsutil.list_tree(str(out))
                  if rel.startswith(".staging-") or ".tmp-" in rel)


def killed_at(change, work):
    """``work()`` in a forked copy of this process that is SIGKILLed at its ``change``-th change to a
    file (a fork skips the seconds a new process spends importing Beam). Returns what ``work``
    returned as the child's exit code, or minus the signal that ended it."""
    pid = os.fork()
    if pid == 0:        # the child: never returns into pytest
        code = 99
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            fsutil._KILL_AT, fsutil._changes[0] = change, 0
            code = work() or 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def convert_killed_at(change, *args):
    from tfproc import cli
    return killed_at(change, lambda: cli.main([str(a) for a in args]))


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """A run, its output as an earlier conversion wrote it (old) and as this one writes it (new)."""
    base = tmp_path_factory.mktemp("kills")
    make_run(base / "run", instances=1, frames=5)
    old = base / "old"
    FOLDERS.append(str(old))
    assert convert("--source", base / "run", *OLD, "--output", old) == 0
    new = base / "new"
    shutil.copytree(old, new)
    assert convert("--source", base / "run", *NEW, "--output", new, "--overwrite") == 0
    old_state, new_state = snapshot(old), snapshot(new)
    assert old_state["shards"].keys() != new_state["shards"].keys()
    return {"run": base / "run", "old": old, "old_state": old_state, "new_state": new_state}


def commit_changes(states, tmp_path):
    """The numbers of a run's changes from the start of its commit on (writing the staged summary),
    as the change hook counts them."""
    out = tmp_path / "traced"
    shutil.copytree(states["old"], out)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--source", str(states["run"]),
                          *map(str, NEW), "--output", str(out), "--overwrite"], capture_output=True, text=True,
                         env=dict(os.environ, TFPROC_TRACE_CHANGES="1", PYTHONPATH=ROOT), timeout=120)
    assert run.returncode == 0, run.stderr
    changes = [line.split(" ", 3)[2:] for line in run.stderr.splitlines() if line.startswith("tfproc change ")]
    first = next(int(n) for n, path in changes if "/.staging-" in path and "/summary.json" in path)
    shutil.rmtree(out)
    return list(range(first, int(changes[-1][0]) + 1))


def assert_old_or_new(out, states, allow_pending):
    seen = snapshot(out)
    if seen["summary"] is None:
        assert allow_pending, "no summary.json after a recovery"
        pending = [rel for rel in fsutil.list_tree(str(out)) if rel.endswith("/" + output.COMMITTED)]
        assert pending, "no summary.json and no commit to finish: the output is lost"
        return "pending"
    for name in ("old", "new"):
        if seen == states[name + "_state"]:
            return name
    raise AssertionError("a mix of the old and the new output: %s" % sorted(seen["shards"]))


def test_a_kill_at_any_change_of_a_run_then_the_next_run_finds_old_or_new(states, tmp_path):
    """SIGKILL at each write, rename and unlink of a conversion (staging, commit, staging removal):
    the output is the old one or the new one (or a commit the next run finishes), and the next run
    leaves it whole with no debris."""
    outcomes = []
    changes = [1, 2] + commit_changes(states, tmp_path)      # two kills while staging, then every one
    for change in changes + [changes[-1] + 1]:
        out = tmp_path / ("out%d" % change)
        shutil.copytree(states["old"], out)
        code = convert_killed_at(change, "--source", states["run"], *NEW, "--output", out, "--overwrite")
        if code == 0:
            break
        assert code == -signal.SIGKILL, code
        outcomes.append(assert_old_or_new(out, states, allow_pending=True))
        committed = any(rel.endswith("/" + output.COMMITTED) for rel in fsutil.list_tree(str(out)))
        for line in output.recover(str(out), "next"):       # what the next run does first
            assert "finished" in line or "removed" in line
        after = assert_old_or_new(out, states, allow_pending=False)
        assert after == ("new" if outcomes[-1] != "old" or committed else "old")
        assert debris(out) == []
        shutil.rmtree(out)
    assert len(outcomes) == len(changes) >= 12, outcomes
    assert {"old", "pending", "new"} <= set(outcomes), outcomes


def test_a_kill_at_any_change_of_a_recovery_then_the_next_one_finishes(states, tmp_path):
    """A commit cut short in its middle, then the recovering run killed at each of its changes."""
    changes = commit_changes(states, tmp_path)
    pending = tmp_path / "pending"
    FOLDERS.append(str(pending))
    shutil.copytree(states["old"], pending)
    middle = changes[len(changes) // 2]
    assert convert_killed_at(middle, "--source", states["run"], *NEW, "--output", pending, "--overwrite") == -signal.SIGKILL
    assert assert_old_or_new(pending, states, allow_pending=True) == "pending"
    kills = 0
    for change in range(1, 100):
        out = tmp_path / ("recover%d" % change)
        shutil.copytree(pending, out)
        code = killed_at(change, lambda: output.recover(str(out), "next") and 0)
        if code == 0:
            assert assert_old_or_new(out, states, allow_pending=False) == "new" and debris(out) == []
            break
        assert code == -signal.SIGKILL, code
        kills += 1
        assert assert_old_or_new(out, states, allow_pending=True) in ("pending", "new")
        output.recover(str(out), "again")
        assert assert_old_or_new(out, states, allow_pending=False) == "new" and debris(out) == []
        shutil.rmtree(out)
    assert kills >= 5


def test_a_half_removed_committed_staging_folder_does_not_wedge_the_output(states, tmp_path, capsys):
    """What an older version left when killed while removing the committed staging folder:
    COMMITTED without the summary and label map beside it."""
    out = tmp_path / "out"
    shutil.copytree(states["old"], out)
    staging = out / ".staging-20261130-101010-abcdef"
    staging.mkdir()
    (staging / "COMMITTED").write_text(json.dumps({"shards": {}, "written": []}))
    for args in ((), ("--overwrite",)):
        code = convert("--source", states["run"], *NEW, "--output", out, *args)
        err = capsys.readouterr().err
        assert "Traceback" not in err and "FileNotFoundError" not in err
        assert code == (2 if not args else 0), err
    assert snapshot(out) == states["new_state"] and debris(out) == []


def test_a_folder_in_the_way_of_a_new_shard_fails_before_the_old_output_is_touched(states, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(states["old"], out)
    blocked = sorted(set(states["new_state"]["shards"]) - set(states["old_state"]["shards"]))[0]
    (out / blocked).mkdir()
    for _ in range(2):      # and a retry fails the same way, still touching nothing
        assert convert("--source", states["run"], *NEW, "--output", out, "--overwrite") == 1
        err = capsys.readouterr().err
        assert "in the way" in err and blocked in err and "Traceback" not in err
        assert snapshot(out) == states["old_state"] and debris(out) == []
    (out / blocked).rmdir()
    assert convert("--source", states["run"], *NEW, "--output", out, "--overwrite") == 0
    assert snapshot(out) == states["new_state"]


def test_temporary_files_of_an_older_run_are_removed_and_nothing_else(states, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(states["old"], out)
    ours = ["summary.json.tmp-0a1b2c3d", "label_map.pbtxt.tmp-deadbeef",
            "train/train-00000-of-00003.tfrecord.tmp-01234567"]
    theirs = ["notes.tmp-0a1b2c3d", "summary.json.tmp-mine", "train/README.tmp-01234567", ".staging-notes.txt",
              ".staging-mine/keep.txt", ".staging-20261130-101010-abcdef.bak/keep.txt"]
    for rel in ours + theirs:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("x")
    (out / ".staging-20261130-101010-abcdef" / "train").mkdir(parents=True)     # ours, never committed
    (out / ".staging-20261130-101010-abcdef" / "train" / "x.tfrecord").write_text("x")
    assert convert("--source", states["run"], *NEW, "--output", out, "--overwrite") == 0
    left = set(fsutil.list_tree(str(out)))
    assert not left & set(ours) and set(theirs) <= left
    assert not [rel for rel in left if rel.startswith(".staging-20261130-101010-abcdef/")]


def test_local_writes_reach_the_disk_before_their_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    fsutil.write_atomically(str(tmp_path / "a" / "summary.json"), b"{}", str(tmp_path))
    assert len(synced) >= 2         # the file, then its folder
    assert (tmp_path / "a" / "summary.json").read_bytes() == b"{}"
    assert not [n for n in os.listdir(tmp_path / "a") if ".tmp-" in n] and not list(tmp_path.glob("*.tmp-*"))


def test_every_shard_is_on_disk_before_the_commit_point(states, tmp_path, monkeypatch):
    """A crash after COMMITTED must find the shards' bytes: each shard and its folder are fsynced
    before COMMITTED is renamed into place."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink("/proc/self/fd/%d" % fd)))
        return real_fsync(fd)

    def replace(source, destination):
        events.append(("replace", str(destination)))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert convert("--source", states["run"], *NEW, "--output", tmp_path / "out") == 0
    point = next(i for i, (kind, path) in enumerate(events)
                 if kind == "replace" and path.endswith("/" + output.COMMITTED))
    staged = {path for kind, path in events[:point] if kind == "replace" and path.endswith(".tfrecord")}
    synced = {path for kind, path in events[:point] if kind == "fsync"}
    assert len(staged) == len([data for data in states["new_state"]["shards"].values() if data])
    assert staged <= synced and {os.path.dirname(path) for path in staged} <= synced


def test_a_commit_whose_shard_is_missing_stops_before_claiming_a_complete_output(tmp_path):
    out = tmp_path / "out"
    staging = out / ".staging-20261203-101010-abcdef"
    (staging / "train").mkdir(parents=True)
    (staging / "summary.json").write_text("{}")
    (staging / "label_map.pbtxt").write_text("")
    name = "train-00000-of-00001.tfrecord"
    (staging / "COMMITTED").write_text(json.dumps({"shards": {"train": [name]}, "written": ["train/" + name]}))
    with pytest.raises(RuntimeError, match="neither staged nor in place"):
        output.commit(str(out), str(staging))
    assert not (out / "summary.json").exists() and (staging / "COMMITTED").exists()


def test_a_gs_write_is_one_upload(cloud, monkeypatch):
    """An object appears whole when its upload ends: no temporary object, copy or delete."""
    from apache_beam.io.filesystems import FileSystems
    monkeypatch.setattr(FileSystems, "rename", lambda *a: pytest.fail("renamed"))
    monkeypatch.setattr(FileSystems, "delete", lambda *a: pytest.fail("deleted"))
    path = "gs://%s/atomic/summary.json" % cloud.bucket
    fsutil.write_atomically(path, b'{"a": 1}')
    fsutil.write_atomically(path, b'{"a": 2}')
    assert fsutil.read_bytes(path) == b'{"a": 2}'
    assert [b.name for b in cloud.storage.list_blobs(cloud.bucket, prefix="atomic/")] == ["atomic/summary.json"]


# -- the readers -------------------------------------------------------------------------------

def final_dataset(run, app_param):
    """The Dataset folder of the highest attempt of instance 0 (earlier attempts are not read)."""
    attempts = sorted((run / app_param / "instance:0").glob("attempt:*"), key=lambda p: int(p.name.split(":")[1]))
    return next(attempts[-1].glob("Dataset*"))


def test_fifos_and_devices_are_named_not_read(tmp_path):
    """A FIFO named like a captures file or an image would block the reader forever; /dev/zero
    linked as an image would be read until memory runs out."""
    run = tmp_path / "run"
    expected = make_run(run, instances=1, frames=6)
    dataset = final_dataset(run, "urn:app_params:AP0")
    os.mkfifo(dataset / "captures_099.json")
    keys = sorted(k for k in expected if "AP0/" in k)
    (run / keys[0]).unlink()
    os.mkfifo(run / keys[0])
    (run / keys[1]).unlink()
    os.symlink("/dev/zero", run / keys[1])
    process = main_py("--source", run, "--eval-pct", 30, "--output", tmp_path / "out")
    try:
        _, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the conversion hung on a FIFO or a device")
    assert process.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    named = {e["item"]: e["detail"] for e in summary["skipped_examples"]}
    assert "a FIFO, not a regular file" in named[keys[0]] and "a device, not a regular file" in named[keys[1]]
    assert any(item.endswith("captures_099.json") and "FIFO" in detail for item, detail in named.items())
    images = sum(s["images"] for s in summary["splits"].values())
    assert images == len(expected) - 2


def test_names_that_are_not_utf8_skip_their_dataset_or_frame_and_the_rest_converts(tmp_path):
    run = tmp_path / "run"
    expected = make_run(run, instances=1, frames=4)
    bad_folder = b"urn:app_params:AP0\xff"
    os.rename(os.path.join(bytes(run), b"urn:app_params:AP0"), os.path.join(bytes(run), bad_folder))
    dataset = final_dataset(run, "urn:app_params:AP1")
    captures = sorted(dataset.glob("captures_*.json"))[0]
    doc = json.loads(captures.read_text())
    lost_key = doc["captures"][0]["filename"]
    doc["captures"][0]["filename"] = lost_key.replace(".png", "\udcff.png")
    captures.write_text(json.dumps(doc))           # a lone surrogate, as JSON escapes it
    out = tmp_path / "out"
    assert convert("--source", run, "--eval-pct", 30, "--output", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"]["name not valid UTF-8"] == 2
    items = [e["item"] for e in summary["skipped_examples"]]
    assert any(item.startswith("urn:app_params:AP0\\xff") for item in items)
    kept = [k for k in expected if k.startswith("urn:app_params:AP1/")]
    assert sum(s["images"] for s in summary["splits"].values()) == len(kept) - 1

    # a label name with a lone surrogate: that dataset is named, the other converted
    definitions = final_dataset(run, "urn:app_params:AP1") / "annotation_definitions.json"
    doc = json.loads(definitions.read_text())
    for definition in doc["annotation_definitions"]:
        for spec in definition.get("spec") or []:
            spec["label_name"] = "cer\udcffeal"
    definitions.write_text(json.dumps(doc))
    os.rename(os.path.join(bytes(run), bad_folder), os.path.join(bytes(run), b"urn:app_params:AP0"))
    assert convert("--source", run, "--eval-pct", 30, "--output", tmp_path / "out2") == 0
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["skipped"]["name not valid UTF-8"] == 1
    assert sum(s["images"] for s in summary["splits"].values()) == len([k for k in expected if "AP0/" in k])


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_starting_exits_130_in_one_line(tmp_path, how):
    process = main_py("--source", tmp_path, "--eval-pct", 20)
    time.sleep(0.4)      # in the imports, which take seconds
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and err.strip() == "interrupted"


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_beams_worker_processes_die_with_the_main_process(tmp_path):
    run = tmp_path / "run"
    make_run(run, instances=4, frames=30)
    process = main_py("--source", run, "--eval-pct", 20, "--output", tmp_path / "out",
                      "--direct_running_mode", "multi_processing", "--direct_num_workers", 2)
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and process.poll() is None:
        workers = [p for p in _descendants(process.pid) if "worker" in open("/proc/%d/cmdline" % p).read()] \
            if os.path.exists("/proc/%d" % process.pid) else []
        if workers:
            break
        time.sleep(0.05)
    assert workers, "no Beam worker process seen"
    everyone = _descendants(process.pid)
    process.kill()
    process.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in everyone):
        time.sleep(0.2)
    left = [p for p in everyone if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "worker processes outlived the main process"


# -- inspect against summary.json -----------------------------------------------------------------

@pytest.mark.parametrize("edit, problem", [
    (lambda s: s.update(num_classes=s["num_classes"] + 1), "num_classes"),
    (lambda s: s["splits"]["train"].update(boxes=s["splits"]["train"]["boxes"] + 1), "train boxes"),
    (lambda s: s["splits"]["eval"].update(shards=s["splits"]["eval"]["shards"] + 1), "eval shards"),
    (lambda s: s["classes"][0].update(boxes=s["classes"][0]["boxes"] + 1), "class 1 has"),
    (lambda s: s["classes"][0].update(name="other"), "names class 1"),
    (lambda s: s["splits"].pop("eval"), "has no eval split"),
    (lambda s: s["splits"].update(train=None), "has no train split"),
    (lambda s: s["splits"]["train"].update(images="12"), "train images is '12'"),
    (lambda s: s.update(classes=None), "has no list of classes"),
])
def test_inspect_checks_every_count_of_the_summary(states, tmp_path, capsys, edit, problem):
    from tfproc import inspect
    out = tmp_path / "out"
    shutil.copytree(states["old"], out)
    capsys.readouterr()
    assert inspect.main([str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    edit(summary)
    (out / "summary.json").write_text(json.dumps(summary))
    assert inspect.main([str(out)]) == 1
    printed = capsys.readouterr()
    assert problem in printed.out and "Traceback" not in printed.err + printed.out
    assert "all records well-formed" not in printed.out


def test_inspect_says_an_unparsable_summary_is_unparsable(states, tmp_path, capsys):
    from tfproc import inspect
    out = tmp_path / "out"
    shutil.copytree(states["old"], out)
    (out / "summary.json").write_text("{not json")
    assert inspect.main([str(out)]) == 1
    err = capsys.readouterr().err
    assert "summary.json cannot be read" in err and "no summary.json" not in err


# -- unusable outputs ----------------------------------------------------------------------------

def test_an_unusable_output_is_one_line_and_exit_2(states, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    for out, message in ((tmp_path / "dangling", "is not a folder"),
                         (tmp_path / "file" / "out", "cannot create --output")):
        assert convert("--source", states["run"], *NEW, "--output", out) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "x" and not os.path.exists(tmp_path / "nowhere")


def test_a_read_only_output_is_one_line_and_exit_2(states, tmp_path, capsys):
    """A read-only filesystem (root writes anywhere else)."""
    read_only = tmp_path / "ro"
    read_only.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only filesystem here")
    try:
        for out in (read_only, read_only / "out"):
            assert convert("--source", states["run"], *NEW, "--output", out) == 2
            err = capsys.readouterr().err
            assert ("cannot write in --output" in err or "cannot create --output" in err) and "Traceback" not in err
            assert "Read-only file system" in err and len(err.strip().splitlines()) == 1, err
    finally:
        subprocess.run(["umount", str(read_only)], check=True)
