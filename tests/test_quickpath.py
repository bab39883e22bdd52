"""README's first command and its quick path, run as written from a copy of the checkout."""
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = "<!-- quick path: tests/test_quickpath.py runs the next block as written -->"
RUNS = "<!-- runs: tests/test_quickpath.py runs the next block as written"


def quick_path_block():
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "README.md lost its quick path marker"
    match = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], re.S)
    return match.group(1)


def marked_blocks():
    """The README's other blocks this test runs, in their order: each after a RUNS marker."""
    text = (ROOT / "README.md").read_text()
    blocks, start = [], text.find(RUNS)
    while start >= 0:
        blocks.append(re.search(r"```bash\n(.*?)```", text[start:], re.S).group(1))
        start = text.find(RUNS, start + 1)
    return blocks


def first_command():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return block.splitlines()[0].split("#")[0].strip()


def copy_of_the_checkout(target):
    """A copy of the checkout whose .venv is the tests' own (scripts/install.sh then finds it complete)."""
    digest = hashlib.sha256((ROOT / "setup.py").read_bytes() + (ROOT / "trainer" / "requirements.py").read_bytes())
    stamp = pathlib.Path(sys.prefix) / (".synthdet-installed-test-" + digest.hexdigest()[:16])
    if not stamp.exists():
        pytest.skip("run the suite through scripts/test.sh, which installs every extra into .venv (%s)" % stamp)
    ignore = shutil.ignore_patterns(".venv", ".git", "sample", "runs", "__pycache__", "*.egg-info", ".pytest_cache",
                                    "bench-data")
    shutil.copytree(ROOT, target, ignore=ignore)
    # the environment the tests run in, which scripts/test.sh installed with every extra
    os.symlink(sys.prefix, target / ".venv")


def test_the_readme_quick_path_runs_as_written(tmp_path):
    work = tmp_path / "checkout"
    copy_of_the_checkout(work)
    assert first_command() == "bash scripts/run-sample.sh"
    sample = subprocess.run(["bash", "-c", first_command()], cwd=work, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert sample.returncode == 0, sample.stdout + sample.stderr
    began = time.monotonic()
    done = subprocess.run(["bash", "-e", "-c", quick_path_block()], cwd=work, capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    took = time.monotonic() - began
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    print("the quick path took %.0f s" % took)
    quick = work / "runs" / "quick"
    assert json.loads((quick / "best" / "best.json").read_text())["metric"] == "AP"
    (evaluation,) = (quick / "eval").iterdir()
    metrics = json.loads((evaluation / "metrics.json").read_text())
    summary = json.loads((work / "sample/urn:run_executions:sample/output/summary.json").read_text())
    assert metrics["images"] == summary["splits"]["eval"]["images"]
    assert (evaluation / "pr_curves.png").exists() and (evaluation / "evaluate.log").exists()
    assert (quick / "predictions" / "contact_sheet.png").exists()
    detections = json.loads((quick / "predictions" / "detections.json").read_text())
    assert detections and "%d detections: " % len(detections) in printed       # the contact sheet draws them
    assert (quick / "export" / "saved_model.pb").exists()
    assert "train | step:" in (quick / "train.log").read_text()
    for line in ("evaluation at step 120 on %d images" % metrics["images"], "SavedModel: ",
                 "contact sheet: ", "trained to step 120"):
        assert line in printed
    # it learned something real: some detection of the right class on a true box (IoU 0.5)
    assert metrics["AP50"] > 0, metrics
    assert "WARNING" not in printed and "Traceback" not in printed
    assert len(printed.splitlines()) < 60, printed

    # then the README's other blocks on the sample, as a user with .venv activated pastes them
    env = dict(os.environ, PATH="%s:%s" % (work / ".venv" / "bin", os.environ.get("PATH", "")))
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    outputs = []
    for block in marked_blocks():
        began = time.monotonic()
        done = subprocess.run(["bash", "-e", "-c", block], cwd=work, capture_output=True, text=True, timeout=900,
                              stdin=subprocess.DEVNULL, env=env)
        printed = done.stdout + done.stderr
        assert done.returncode == 0, block + printed
        assert "Traceback" not in printed and "WARNING" not in printed, printed
        print("%.0f s: %s" % (time.monotonic() - began, block.splitlines()[0]))
        outputs.append(printed)
    pipeline, table, inspected = outputs
    for line in ("transfer  succeeded", "train     step 40/40", "train     evaluation at step 40 on",
                 "promote   succeeded", "promoted the candidate to %s" % (work / "runs" / "pipe" / "production")):
        assert line in pipeline, pipeline
    assert "I tensorflow" not in pipeline and "oneDNN" not in pipeline
    assert json.loads((work / "runs/pipe/runs/first/steps/train.json").read_text())["state"] == "succeeded"
    assert (work / "sample" / "preview" / "contact_sheet.png").exists() and inspected

    # seed 002's table: five models ranked on the published test split, a column per subset
    (board_dir,) = (work / "runs" / "table" / "leaderboards").glob("20*")
    board = json.loads((board_dir / "leaderboard.json").read_text())
    assert sorted(e["run"] for e in board["entries"]) == sorted(["synthetic", "real", "synthetic+76", "synthetic+380",
                                                                "synthetic+760"])
    assert board["real_split"] == "test" and board["dataset"] is None
    assert board["subsets"] == ["test_high_contrast", "test_high_ratio", "test_low_contrast", "test_low_ratio"]
    splits = json.loads((work / "groceries-out" / "summary.json").read_text())["splits"]
    assert board["images"] == splits["test"]["images"]
    for entry in board["entries"]:
        assert entry["kind"] == "model" and set(entry["subsets"]) == set(board["subsets"])
        assert "%d. %s" % (entry["rank"], entry["run"]) in table
    for split in ("train_small", "train_medium", "train"):
        tuned = json.loads((work / "runs" / ("synthetic+" + split) / "metrics.json").read_text())
        assert tuned["split"] == "val" and tuned["images"] == splits["val"]["images"]
    assert "no eval split: evaluating on val" in table


def test_run_sample_asks_before_deleting_a_folder_it_did_not_make(tmp_path):
    work = tmp_path / "checkout"
    copy_of_the_checkout(work)
    (work / "sample").mkdir()
    (work / "sample" / "mine.txt").write_text("a user's file")
    done = subprocess.run(["bash", "scripts/run-sample.sh"], cwd=work, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "was not made by this script" in done.stderr
    assert (work / "sample" / "mine.txt").read_text() == "a user's file"


def test_a_sample_cut_short_by_ctrl_c_is_made_again_by_the_next_run(tmp_path):
    import signal
    work = tmp_path / "checkout"
    copy_of_the_checkout(work)
    script = subprocess.Popen(["bash", "scripts/run-sample.sh"], cwd=work, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    began = time.monotonic()
    while not (work / "sample" / "urn:run_executions:sample").exists() and time.monotonic() - began < 120:
        time.sleep(0.05)
    os.killpg(script.pid, signal.SIGINT)            # Ctrl-C: the terminal signals the whole group
    _, err = script.communicate(timeout=60)
    assert script.returncode != 0 and "Traceback" not in err, err
    done = subprocess.run(["bash", "scripts/run-sample.sh"], cwd=work, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not made by this script" not in done.stderr


def test_install_checks_what_its_stamp_promises_and_reinstalls_what_a_venv_lost(tmp_path):
    work = tmp_path / "checkout"
    (work / "scripts").mkdir(parents=True)
    (work / "trainer").mkdir()
    for name in ("scripts/install.sh", "setup.py", "trainer/requirements.py"):
        shutil.copy(ROOT / name, work / name)
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexec %s \"$@\"\n" % sys.executable)   # a Python with the packages
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "pip").write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/pip-calls\"\n")
    (bin_dir / "pip").chmod(0o755)
    digest = hashlib.sha256((work / "setup.py").read_bytes() + (work / "trainer" / "requirements.py").read_bytes())
    stamp = work / ".venv" / (".synthdet-installed-base-" + digest.hexdigest()[:16])
    stamp.touch()
    done = subprocess.run(["bash", "scripts/install.sh"], cwd=work, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (bin_dir / "pip-calls").exists(), done.stderr      # whole: nothing to do
    (bin_dir / "python").write_text("#!/bin/sh\nexec %s -I -S \"$@\"\n" % sys.executable)   # its packages gone
    done = subprocess.run(["bash", "scripts/install.sh"], cwd=work, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ".venv has lost some of its packages; installing them again" in done.stdout
    assert "install" in (bin_dir / "pip-calls").read_text() and stamp.exists()
