"""No data lost to retries, interruptions, concurrent runs or bad input (issue 10)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import convert, read_records
from tfproc import cli, fsutil, labels, layout, output, pipeline, sample, split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H = 64, 48


def make_run(path, instances=2, frames=5, seed=3, **kwargs):
    return sample.make_run(str(path), app_params=2, instances=instances, frames=frames, width=W, height=H,
                           seed=seed, **kwargs)


def shard_bytes(out):
    """{split/name: bytes} of every shard under ``out``."""
    found = {}
    for split_name in ("train", "eval"):
        folder = os.path.join(out, split_name)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            with open(os.path.join(folder, name), "rb") as f:
                found["%s/%s" % (split_name, name)] = f.read()
    return found


def keys_in(out):
    found = {}
    for split_name in ("train", "eval"):
        folder = os.path.join(out, split_name)
        files = [os.path.join(folder, n) for n in os.listdir(folder)] if os.path.isdir(folder) else []
        found[split_name] = sorted(r["image/filename"].decode() for r in read_records(files))
    return found


def main_py(*args, **popen):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


# -- retries and commits ----------------------------------------------------------------------

def test_the_finishing_step_run_twice_gives_the_same_output(tmp_path, monkeypatch):
    """Dataflow retries a failed bundle: a second Finish must not take the new shards for stale ones."""
    run = tmp_path / "run"
    make_run(run)
    assert convert("--source", run, "--eval-pct", 30, "--shard-size-mb", 0.002, "--output", tmp_path / "once") == 0
    real_finish = pipeline.finish

    def finish_twice(*args):
        real_finish(*args)
        real_finish(*args)

    monkeypatch.setattr(pipeline, "finish", finish_twice)
    assert convert("--source", run, "--eval-pct", 30, "--shard-size-mb", 0.002, "--output", tmp_path / "twice") == 0
    once, twice = shard_bytes(tmp_path / "once"), shard_bytes(tmp_path / "twice")
    assert once == twice and any(once.values())
    summary = json.loads((tmp_path / "twice" / "summary.json").read_text())
    records = keys_in(tmp_path / "twice")
    assert summary["splits"]["train"]["images"] == len(records["train"]) > 0
    assert summary["splits"]["eval"]["images"] == len(records["eval"]) > 0


class Killed(BaseException):
    """Stands for the process dying at that point."""


def test_a_commit_cut_short_is_finished_by_the_next_run(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    make_run(run)
    out, clean = tmp_path / "out", tmp_path / "clean"
    assert convert("--source", run, "--eval-pct", 30, "--shard-size-mb", 0.002, "--output", out) == 0
    assert convert("--source", run, "--eval-pct", 70, "--shard-size-mb", 0.004, "--output", clean) == 0
    old_shards = shard_bytes(out)

    real_rename = fsutil.rename_many

    def half_then_die(sources, destinations):
        real_rename(sources[:len(sources) // 2], destinations[:len(destinations) // 2])
        raise Killed()

    monkeypatch.setattr(fsutil, "rename_many", half_then_die)
    assert convert("--source", run, "--eval-pct", 70, "--shard-size-mb", 0.004, "--output", out, "--overwrite") == 1
    monkeypatch.setattr(fsutil, "rename_many", real_rename)
    # the old output is no longer claimed complete; the committed staging folder is kept
    assert not (out / "summary.json").exists()
    staging = [p for p in os.listdir(out) if p.startswith(".staging-")]
    assert len(staging) == 1 and (out / staging[0] / "COMMITTED").exists()
    assert shard_bytes(out) != old_shards
    from tfproc import inspect
    capsys.readouterr()
    assert inspect.main([str(out)]) == 1
    assert "a commit was cut short" in capsys.readouterr().err

    # the next run into the output finishes the commit before anything else
    done = output.recover(str(out), "next")
    assert done and "finished the interrupted commit" in done[0]
    assert shard_bytes(out) == shard_bytes(clean)
    assert (out / "label_map.pbtxt").read_text() == (clean / "label_map.pbtxt").read_text()
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (out, clean))
    assert summary["splits"] == {k: dict(v, pattern=v["pattern"].replace(str(clean), str(out)))
                                 for k, v in expected["splits"].items()}
    assert not [p for p in os.listdir(out) if p.startswith(".staging-")]
    # and running the commit's recovery again changes nothing
    assert output.recover(str(out), "again") == [] and shard_bytes(out) == shard_bytes(clean)


def test_commit_moves_shards_in_one_batch(tmp_path, monkeypatch):
    """No request per shard: one batched rename for all the staged shards."""
    run = tmp_path / "run"
    make_run(run)
    calls = []
    real_rename = fsutil.rename_many
    monkeypatch.setattr(fsutil, "rename_many", lambda s, d: (calls.append(len(s)), real_rename(s, d)))
    assert convert("--source", run, "--eval-pct", 30, "--shard-size-mb", 0.002, "--output", tmp_path / "o") == 0
    holding_frames = [name for name, data in shard_bytes(tmp_path / "o").items() if data]
    assert calls == [len(holding_frames)]


# -- interruptions ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """Enough frames and shards that a conversion takes a few seconds to write."""
    run = tmp_path_factory.mktemp("slow") / "run"
    expected = sample.make_run(str(run), app_params=2, instances=4, frames=40, width=160, height=120, seed=5)
    return run, expected


def _wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _staged_files(out):
    return [rel for rel in fsutil.list_tree(str(out)) if rel.startswith(".staging-") and "/train/" in rel]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_leaves_the_old_output_and_the_next_run_works(slow_run, tmp_path, how):
    run, expected = slow_run
    out = tmp_path / "out"
    assert convert("--source", run, "--eval-pct", 20, "--output", out) == 0
    before = shard_bytes(out), (out / "summary.json").read_bytes()

    process = main_py("--source", run, "--eval-pct", 50, "--shard-size-mb", 0.001, "--output", out, "--overwrite")
    assert _wait_for(lambda: _staged_files(out)), process.communicate()
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    if how == signal.SIGINT:
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "interrupted" in stderr
    assert (shard_bytes(out), (out / "summary.json").read_bytes()) == before   # the old output, whole

    again = main_py("--source", run, "--eval-pct", 50, "--output", out, "--overwrite")
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert not [p for p in os.listdir(out) if p.startswith(".staging-")]
    written = keys_in(out)
    assert sorted(written["train"] + written["eval"]) == sorted(expected)


def test_an_interrupted_dataflow_launch_leaves_the_job_or_cancels_it(capsys):
    class Job:
        cancelled = False

        def job_id(self):
            return "2026-11-22_01_02_03-123"

        def cancel(self):
            Job.cancelled = True

    error = cli.Interrupted()
    error.dataflow_job = Job()
    args = cli.parse_args(["--source", "gs://b/run", "--eval-pct", "20"])[0]
    assert cli._is_detached(error, args) is True and not Job.cancelled
    assert "keeps running" in capsys.readouterr().err
    args.cancel_on_interrupt = True
    assert cli._is_detached(error, args) is False and Job.cancelled
    assert cli._is_detached(cli.Interrupted(), args) is False     # a local run: nothing left behind


def test_the_local_default_is_beams_in_memory_runner_never_prism_nor_threads():
    """Beam's multi-threaded local mode has a race (a 20,000-frame SOLO run grew to 12.8 GB and
    failed; benchmarks/bench_solo.py); Beam's DirectRunner tries to download Prism first."""
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    options = cli._pipeline_options([])
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    assert options.view_as(DirectOptions).direct_num_workers == 1
    assert isinstance(cli._local_runner(options), FnApiRunner) and cli._is_local(options)
    chosen = cli._pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert chosen.view_as(DirectOptions).direct_running_mode == "multi_processing"


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    run = tmp_path / "run"
    make_run(run, instances=1, frames=2)
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert convert("--source", run, "--eval-pct", 20, "--output", target) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_a_failed_run_deletes_only_what_it_made(tmp_path):
    run = tmp_path / "run"
    make_run(run, instances=1, frames=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.txt").write_text("mine")
    (out / "train").mkdir()
    (out / "train" / "notes.tfrecord.txt").write_text("mine too")
    for image in run.rglob("*.png"):
        image.write_bytes(b"not an image")
    assert convert("--source", run, "--eval-pct", 20, "--output", out) == 1
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [".tfproc.lock", "README.txt", "notes.tfrecord.txt"]


def test_two_conversions_into_one_output(slow_run, tmp_path, capsys):
    run, expected = slow_run
    out = tmp_path / "out"
    first = main_py("--source", run, "--eval-pct", 20, "--shard-size-mb", 0.001, "--output", out)
    assert _wait_for(lambda: _staged_files(out)), first.communicate()
    assert convert("--source", run, "--eval-pct", 60, "--output", out, "--overwrite") == 1
    message = capsys.readouterr().err
    assert "being written by another conversion" in message and "pid %d" % first.pid in message
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    written = keys_in(out)
    assert not set(written["train"]) & set(written["eval"])
    assert sorted(written["train"] + written["eval"]) == sorted(expected)


def test_a_claim_is_exclusive_and_dies_with_its_process(tmp_path):
    held = output.claim(str(tmp_path / "o"), "a")
    with pytest.raises(output.OutputBusy):
        output.claim(str(tmp_path / "o"), "b")
    held.release()
    output.claim(str(tmp_path / "o"), "c").release()


# -- attempts ---------------------------------------------------------------------------------

def test_a_final_attempt_without_its_definitions_is_reported_not_replaced(tmp_path):
    run = tmp_path / "run"
    expected = make_run(run)
    final = run / "urn:app_params:AP0" / "instance:1" / "attempt:1"
    os.remove(next(final.glob("Dataset*")) / "annotation_definitions.json")
    broken = run / "urn:app_params:AP1" / "instance:0" / "attempt:1"
    (next(broken.glob("Dataset*")) / "annotation_definitions.json").write_text("{ not json")
    assert convert("--source", run, "--eval-pct", 30, "--output", tmp_path / "out") == 0

    written = keys_in(tmp_path / "out")
    lost = ("urn:app_params:AP0/instance:1/", "urn:app_params:AP1/instance:0/")
    assert sorted(written["train"] + written["eval"]) == sorted(k for k in expected if not k.startswith(lost))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"]["final attempt without a dataset"] == 1
    assert summary["skipped"]["invalid JSON"] == 1
    named = {e["item"]: e["reason"] for e in summary["skipped_examples"]}
    assert named["urn:app_params:AP0/instance:1/attempt:1"] == "final attempt without a dataset"
    assert any(k.startswith("urn:app_params:AP1/instance:0/attempt:1/Dataset") for k in named)


# -- bad input --------------------------------------------------------------------------------

def _png_header_only(width, height):
    """A PNG whose header claims ``width`` x ``height`` pixels, with a tiny body and its end."""
    return sample._png(width, height, b"")


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hostile") / "run"
    expected = sample.make_run(str(run), app_params=1, instances=1, frames=12, width=W, height=H, seed=11)
    attempt = run / "urn:app_params:AP0" / "instance:0" / "attempt:1"
    dataset, rgb = next(attempt.glob("Dataset*")), next(attempt.glob("RGB*"))
    keys = sorted(expected)
    prefix = "urn:app_params:AP0/instance:0/attempt:1/"
    bad = {}
    (run / keys[0]).write_bytes(_png_header_only(100000, 100000))
    bad[keys[0]] = "image too large"
    whole = (run / keys[1]).read_bytes()
    (run / keys[1]).write_bytes(whole[:len(whole) // 2])
    bad[keys[1]] = "truncated image"
    for key in bad:
        del expected[key]

    def capture(cid, filename, values):
        return {"id": cid, "sensor": {"modality": "camera"}, "filename": filename,
                "annotations": [{"annotation_definition": sample.BOX_DEFINITION_ID, "values": values}]}

    image = "%s/%s" % (rgb.name, os.path.basename(keys[2]))
    good = {"label_id": 1, "label_name": "cereal", "x": 1, "y": 1, "width": 5, "height": 5}
    captures = [
        capture("huge-number", image, [dict(good, x=10 ** 400)]),
        capture("label-2^40", image, [dict(good, label_id=2 ** 40)]),
        capture("label-2^63", image, [dict(good, label_id=2 ** 63)]),
        capture("string-box", image, [dict(good, width="5")]),
        capture("bool-box", image, [dict(good, height=True)]),
        capture("exr", "%s/depth.exr" % rgb.name, []),
        capture("no-file", None, []),
    ]
    with open(dataset / "captures_090.json", "w") as f:
        json.dump({"captures": captures}, f)
    (dataset / "captures_091.json").write_text("[" * 100000 + "]" * 100000)
    return {"run": run, "expected": expected, "bad": bad, "prefix": prefix, "dataset": dataset.name}


def test_hostile_input_is_skipped_counted_and_named(hostile_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert convert("--source", hostile_run["run"], "--eval-pct", 30, "--output", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == {"image too large": 1, "truncated image": 1, "malformed box": 5,
                                  "unsupported image format": 1, "malformed capture": 1, "invalid JSON": 1}
    named = {e["item"]: (e["reason"], e["detail"]) for e in summary["skipped_examples"]}
    for key, reason in hostile_run["bad"].items():
        assert named[key][0] == reason
    base = hostile_run["prefix"] + hostile_run["dataset"]
    assert named[base + "/captures_091.json"][0] == "invalid JSON"
    assert named[base + "/captures_090.json#exr"][0] == "unsupported image format"
    assert named[base + "/captures_090.json#no-file"][0] == "malformed capture"
    assert named[base + "/captures_090.json#label-2^63"][0] == "malformed box"
    written = keys_in(out)
    assert sorted(written["train"] + written["eval"]) == sorted(hostile_run["expected"])
    # every record written decodes in TensorFlow, and inspect finds nothing wrong
    import tensorflow as tf
    for record in read_records(str(out / "*" / "*.tfrecord")):
        tf.io.decode_image(record["image/encoded"])
    from tfproc import inspect
    stats, label_map, _ = inspect.inspect(str(out))
    assert stats.problem_count == 0 and max(label_map) <= 5


def test_inspect_names_a_truncated_image(tmp_path):
    from tfproc import inspect, records
    whole = sample.noisy_png(W, H, __import__("random").Random(2))
    example = records.decode_example(b"".join(records.encode_example({
        "image/encoded": records.bytes_feature([whole[:len(whole) // 2]]),
        "image/format": records.bytes_feature([b"png"]),
        "image/height": records.int64_feature([H]), "image/width": records.int64_feature([W]),
        "image/filename": records.bytes_feature([b"a.png"]), "image/source_id": records.bytes_feature([b"1"]),
        "image/key/sha256": records.bytes_feature([__import__("hashlib").sha256(whole[:len(whole) // 2]).hexdigest()]),
        **{"image/object/bbox/" + k: records.float_feature([]) for k in ("xmin", "ymin", "xmax", "ymax")},
        "image/object/class/label": records.int64_feature([]), "image/object/class/text": records.bytes_feature([]),
    })))
    assert any("truncated" in p for p in inspect.check_example(example, {1: "a"}))


NAMES = ["new\nline", 'a "quoted" name', "back\\slash", "it's", "brace } item { id: 9", "größe"]


def test_label_names_survive_the_label_map_whatever_they_hold(tmp_path):
    names = {i + 1: name for i, name in enumerate(NAMES)}
    text = labels.format_label_map(names)
    assert labels.parse_label_map(text) == names
    # and the photos' loader reads them back from such a file
    photos = tmp_path / "photos"
    (photos / "images").mkdir(parents=True)
    (photos / "images" / "a.png").write_bytes(sample.noisy_png(W, H, __import__("random").Random(1)))
    (photos / "annotations.json").write_text(json.dumps([{"file_name": "a.png", "annotations": [
        {"label_id": i, "bbox": [1, 1, 10, 10]} for i in names]}]))
    (tmp_path / "labels.pbtxt").write_text(text)
    from tfproc import realdata
    assert realdata.main(["--source", str(photos), "--label-map", str(tmp_path / "labels.pbtxt"),
                          "--eval-pct", 0, "--output", str(tmp_path / "out")]) == 0
    (record,) = read_records(str(tmp_path / "out" / "train" / "*.tfrecord"))
    assert [t.decode() for t in record["image/object/class/text"]] == NAMES
    assert labels.parse_label_map((tmp_path / "out" / "label_map.pbtxt").read_text()) == names


def test_a_label_map_that_is_not_one_is_refused():
    with pytest.raises(labels.BadLabelMap):
        labels.parse_label_map("item { id: 1 name: 'a' ")
    with pytest.raises(labels.BadLabelMap):
        labels.parse_label_map("")
    assert labels.parse_label_map("item { id: 2 display_name: 'b' keypoints { id: 0 label: 'x' } }") == {2: "b"}


# -- arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--shard-size-mb", "nan"], "--shard-size-mb must be"),
    (["--shard-size-mb", "inf"], "--shard-size-mb must be"),
    (["--shard-size-mb", "-1"], "--shard-size-mb must be"),
    (["--stict"], "unknown option --stict; did you mean --strict?"),
    (["--output-dir", "x"], "unknown option --output-dir"),
    (["--direct_num_worker", "2"], "did you mean --direct_num_workers?"),
])
def test_bad_arguments_are_refused_in_one_line(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    make_run(run, instances=1, frames=1)
    assert convert("--source", run, "--eval-pct", 20, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (run / "output").exists()


def test_a_tiny_shard_size_makes_at_most_one_shard_per_frame(tmp_path):
    run = tmp_path / "run"
    expected = make_run(run, instances=1, frames=4)
    assert convert("--source", run, "--eval-pct", 0, "--shard-size-mb", 1e-7, "--output", tmp_path / "o") == 0
    assert len(os.listdir(tmp_path / "o" / "train")) == len(expected)


def test_glob_characters_in_a_local_path(tmp_path):
    run = tmp_path / "run [1] *?"
    expected = make_run(run, instances=1, frames=3)
    assert convert("--source", run, "--eval-pct", 0) == 0
    assert sorted(keys_in(run / "output")["train"]) == sorted(expected)


def test_gs_without_credentials_says_so_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "CLOUDSDK"))}
    env.update(HOME=str(tmp_path), NO_GCE_CHECK="true", CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
    started = time.time()
    process = main_py("--source", "gs://some-bucket/run", "--eval-pct", 20, env=env)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "credentials" in stderr and "gcloud auth application-default login" in stderr
    assert "Traceback" not in stderr and time.time() - started < 30


# -- scale ------------------------------------------------------------------------------------

def test_solo_parsing_fans_out_in_chunks_and_any_local_mode_gives_the_same_bytes(tmp_path):
    solo = tmp_path / "solo"
    expected = sample.make_solo(str(solo), sequences=120, steps=10, cameras=1, width=32, height=24, seed=4)
    (dataset,) = layout.find_datasets(str(solo)).datasets
    files, images = layout.list_dataset(dataset)
    chunks = layout.chunks(dataset, files, images)
    assert len(chunks) == 3 and sum(len(c.files) for c in chunks) == 1200
    for chunk in chunks:      # each chunk carries only the images of its own sequences
        assert {os.path.dirname(i) for i in chunk.images} == {os.path.dirname(f) for f in chunk.files}
    assert convert("--source", solo, "--eval-pct", 20, "--output", tmp_path / "a") == 0
    assert convert("--source", solo, "--eval-pct", 20, "--output", tmp_path / "b",
                   "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    written = keys_in(tmp_path / "a")
    assert sorted(written["train"] + written["eval"]) == sorted(expected)


def test_repeated_default_runs_all_succeed_alike(tmp_path):
    """A soak of the local default: the same bytes every time, never a failure."""
    solo = tmp_path / "solo"
    sample.make_solo(str(solo), sequences=60, steps=10, cameras=2, width=32, height=24, seed=8)
    first = None
    for attempt in range(6):
        out = tmp_path / ("o%d" % attempt)
        assert convert("--source", solo, "--eval-pct", 20, "--output", out) == 0
        if first is None:
            first = shard_bytes(out)
        assert shard_bytes(out) == first


def test_the_manifest_holds_datasets_not_files(tmp_path, monkeypatch):
    """The launching machine writes one short line per dataset, however many files the run has."""
    solo = tmp_path / "solo"
    sample.make_solo(str(solo), sequences=50, steps=10, cameras=1, width=16, height=12)
    written = []
    real = pipeline.write_manifest
    monkeypatch.setattr(pipeline, "write_manifest", lambda s, d: (written.append(list(d)), real(s, d)))
    assert convert("--source", solo, "--eval-pct", 20, "--output", tmp_path / "o") == 0
    (datasets,) = written
    assert len(datasets) == 1 and len(json.dumps(datasets[0].to_json())) < 500


def test_shards_stay_under_their_size_as_promised():
    """100k frames of 1.5 MB hashed into shards: (almost) none over the limit."""
    limit = 200 * 2 ** 20
    frames, size = 100000, int(1.5 * 2 ** 20)
    count = split.num_shards(frames * size, limit, frames)
    sizes = [0] * count
    for i in range(frames):
        sizes[split.shard_of("frame-%d" % i, count)] += size
    over = sum(1 for s in sizes if s > limit)
    assert over <= count // 200 and max(sizes) < 1.1 * limit
    assert sum(sizes) / count < 0.8 * limit


def test_beam_counters_follow_the_work(tmp_path):
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    run = tmp_path / "run"
    make_run(run)
    found = layout.find_datasets(str(run))
    settings = pipeline.Settings(str(run), str(tmp_path / "out"), "m", 20.0, 1 << 20, False, time.time())
    claim = output.claim(settings.output, "m")
    pipeline.write_manifest(settings, found.datasets)
    p = beam.Pipeline(runner=FnApiRunner())
    pipeline.build_pipeline(p, settings)
    result = p.run()
    result.wait_until_finish()
    claim.release()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("tfproc"))["counters"]}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    images = sum(s["images"] for s in summary["splits"].values())
    assert counters["frames_written"] == counters["frames_parsed"] == images
    assert counters["boxes_written"] == sum(s["boxes"] for s in summary["splits"].values())
    assert counters["shards_written"] >= 2
