"""gs:// in and out, against a GCS-protocol server on loopback (gcp-storage-emulator)."""
import json
import pathlib

import pytest

from tfproc import sample
from conftest import BUCKET, convert, read_records
RUN_PATH = ("projects/0c3b3e1a-5f2e-4b55-9a3c-6a5d1c2e7f10/run_executions/"
            "urn:run_definitions:El64GVP/urn:run_executions:5M6wq80")


@pytest.fixture(scope="module")
def gcs(cloud):
    return cloud.storage


def upload_tree(client, local_root, prefix):
    bucket = client.bucket(BUCKET)
    for path in sorted(pathlib.Path(local_root).rglob("*")):
        if path.is_file():
            bucket.blob("%s/%s" % (prefix, path.relative_to(local_root).as_posix())).upload_from_filename(str(path))


def download_tree(client, prefix, local_root):
    names = []
    for blob in client.list_blobs(BUCKET, prefix=prefix + "/"):
        rel = blob.name[len(prefix) + 1:]
        target = pathlib.Path(local_root) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        names.append(rel)
    return sorted(names)


def test_gs_to_gs_matches_the_local_conversion(gcs, tmp_path):
    local_run = tmp_path / "urn:run_executions:5M6wq80"
    expected = sample.make_run(str(local_run), app_params=2, instances=2, frames=4, width=64, height=48, seed=11)
    upload_tree(gcs, local_run, RUN_PATH)

    source = "gs://%s/%s" % (BUCKET, RUN_PATH)
    assert convert("--source", source, "--eval-pct", 25, "--shard-size-mb", 0.005) == 0

    names = download_tree(gcs, RUN_PATH + "/output", tmp_path / "from_gcs")
    assert "summary.json" in names and "label_map.pbtxt" in names
    assert not [n for n in names if ".staging" in n or ".tmp" in n]
    remote = tmp_path / "from_gcs"
    records = read_records(str(remote / "train" / "*.tfrecord")) + read_records(str(remote / "eval" / "*.tfrecord"))
    assert sorted(r["image/filename"].decode() for r in records) == sorted(expected)
    summary = json.loads((remote / "summary.json").read_text())
    assert summary["splits"]["train"]["pattern"] == source + "/output/train/*.tfrecord"
    assert summary["num_classes"] == len(sample.LABELS)

    # the same run converted from the local copy: the same files, byte for byte
    assert convert("--source", local_run, "--eval-pct", 25, "--shard-size-mb", 0.005,
                   "--direct_running_mode=in_memory", "--direct_num_workers=1") == 0
    local_out = local_run / "output"
    shard_names = sorted(str(p.relative_to(local_out)) for p in local_out.rglob("*.tfrecord"))
    assert shard_names == [n for n in names if n.endswith(".tfrecord")]
    assert len(shard_names) > 2
    for name in shard_names + ["label_map.pbtxt"]:
        assert (local_out / name).read_bytes() == (remote / name).read_bytes(), name

    # inspect reads the records straight from the bucket
    from tfproc import inspect
    assert inspect.main([source + "/output", "--preview", "2", "--preview-dir", str(tmp_path / "preview")]) == 0
    assert (tmp_path / "preview" / "contact_sheet.png").exists()

    # a second run refuses to overwrite the bucket's output
    assert convert("--source", source, "--eval-pct", 25) == 2

    # the output folder is what the launcher trains on
    from click.testing import CliRunner
    from launcher.cli import main as launcher
    result = CliRunner().invoke(launcher, [
        "train", "--dry-run", "--project", "test-project", "--dataset", source + "/output", "--image", "img:1",
        "--job-dir", "gs://%s/models/e2e" % BUCKET, "--job-id", "e2e"])
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout.split("(not sent):\n", 1)[1].split("\n\nThe same with gcloud", 1)[0])
    args = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert args[:3] == ["train", "--dataset", source + "/output"]
    eval_images = json.loads(gcs.bucket(BUCKET).blob(source[len("gs://%s/" % BUCKET):] + "/output/summary.json")
                             .download_as_bytes())["splits"]["eval"]["images"]
    assert args[args.index("--num-eval-images") + 1] == str(min(200, eval_images))
    result = CliRunner().invoke(launcher, [
        "train", "--backend", "ml", "--dry-run", "--project", "test-project", "--dataset", source + "/output",
        "--job-dir", "gs://%s/models/e2e" % BUCKET, "--job-id", "e2e", "--num-eval-images", "0"])
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout.split("(not sent):\n", 1)[1].split("\n\nThe same with gcloud", 1)[0])
    args = body["trainingInput"]["args"]
    assert "--training_data_path=%s/output/train/*.tfrecord" % source in args
    assert "--validation_data_path=%s/output/eval/*.tfrecord" % source in args
    assert "--num_classes=%d" % len(sample.LABELS) in args


def test_gs_source_without_a_dataset(gcs, capsys):
    gcs.bucket(BUCKET).blob("empty-run/readme.txt").upload_from_string(b"nothing here")
    assert convert("--source", "gs://%s/empty-run" % BUCKET, "--eval-pct", 20) == 2
    assert "no dataset under gs://%s/empty-run" % BUCKET in capsys.readouterr().err
    assert convert("--source", "gs://%s/absent-run" % BUCKET, "--eval-pct", 20) == 2
    assert "does not exist or is empty" in capsys.readouterr().err


DATAFLOW_OPTIONS = [
    "--runner=DataflowRunner", "--project=test-project", "--region=us-central1",
    "--temp_location=gs://%s/tmp" % BUCKET, "--staging_location=gs://%s/stg" % BUCKET,
    "--num_workers=4", "--max_num_workers=64", "--autoscaling_algorithm=THROUGHPUT_BASED",
    "--dry_run=True",
]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_dataflow_job_builds_with_the_seeds_options(gcs, tmp_path, monkeypatch):
    """Build the Dataflow job offline and check its graph and the package the workers get."""
    import tarfile
    import time

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability.api import beam_runner_api_pb2
    from tfproc import pipeline

    monkeypatch.chdir(ROOT)
    options = PipelineOptions(DATAFLOW_OPTIONS + ["--setup_file=./setup.py"])
    run = "gs://%s/%s" % (BUCKET, RUN_PATH)
    settings = pipeline.Settings(run, run + "/output", "test", 20.0, 200 << 20, False, time.time())
    pipeline.write_manifest(settings, [])
    p = beam.Pipeline(options=options)
    pipeline.build_pipeline(p, settings)   # DoFns and side inputs are pickled into the job here
    result = p.run()
    job = json.loads(result.job.json())
    transforms = {t.unique_name for t in p.runner.proto_pipeline.components.transforms.values()}
    for step in ("ReadManifest", "SpreadDatasets", "ListDatasets", "SpreadChunks", "ParseAnnotations", "AssignSplit", "SumPerSplit", "AssignShard",
                 "GroupByShard", "WriteShards", "MergeReports", "Finish"):
        assert step in transforms
    assert job["type"] == "JOB_TYPE_BATCH"
    options_sent = p.options.get_all_options(drop_default=True)
    assert options_sent["num_workers"] == 4 and options_sent["max_num_workers"] == 64
    assert options_sent["autoscaling_algorithm"] == "THROUGHPUT_BASED"
    assert options_sent["region"] == "us-central1"

    staged = {}
    for environment in p.runner.proto_pipeline.components.environments.values():
        for dependency in environment.dependencies:
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload).staged_name
            staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(dependency.type_payload).path
    assert "workflow.tar.gz" in staged, staged   # the sdist Dataflow workers pip-install
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:
        members = sdist.getnames()
    for module in ("tfproc/pipeline.py", "tfproc/records.py", "launcher/__init__.py"):
        assert any(m.endswith(module) for m in members), module


def test_main_py_dry_run_on_dataflow_writes_nothing(gcs, tmp_path, monkeypatch, capsys):
    local_run = tmp_path / "run"
    sample.make_run(str(local_run), app_params=1, instances=1, frames=2, width=32, height=24)
    upload_tree(gcs, local_run, "dry/run")
    monkeypatch.chdir(ROOT)
    assert convert("--source", "gs://%s/dry/run" % BUCKET, "--eval-pct", 20, "--setup_file=./setup.py",
                   *DATAFLOW_OPTIONS) == 0
    assert "Dry run" in capsys.readouterr().out
    assert not list(gcs.list_blobs(BUCKET, prefix="dry/run/output"))


def test_dataflow_needs_gs_paths(tmp_path, capsys):
    assert convert("--source", tmp_path, "--eval-pct", 20, *DATAFLOW_OPTIONS) == 2
    assert "--source must be a gs:// path with --runner DataflowRunner" in capsys.readouterr().err


def test_a_log_kept_on_gs_is_copied_there_at_the_end(gcs):
    """console.keep_log_at with a gs:// path (a trainer's train.log in a gs:// model dir, a leaderboard on gs://)."""
    import os

    from tfproc import console
    with console.quiet():
        os.write(1, b"chatter of a framework\n")
        os.write(2, b"and its C++ start-up line\n")
        console.keep_log_at("gs://%s/logs/run.log" % BUCKET)
        console.say("our own line")
    text = gcs.bucket(BUCKET).blob("logs/run.log").download_as_bytes().decode()
    assert text.splitlines() == ["chatter of a framework", "and its C++ start-up line", "our own line"]
