"""The end-to-end pipeline: its KFP spec, a local run with KFP's local runner, and Vertex AI Pipelines
(runs and schedules) against fake services on 127.0.0.1."""
import json
import os
import random

import pytest
import yaml

from tfproc import sample
from test_launcher import PROJECT, run  # noqa: F401

SMALL = ["--max-steps", 4, "--train-steps-per-eval", 4, "--train-batch-size", 2, "--backbone", "mobilenet",
         "--fpn-type", "fpn", "--image-size", "128,128", "--params-override",
         "{task: {model: {head: {num_filters: 32, num_convs: 1}, decoder: {fpn: {num_filters: 32}},"
         " backbone: {mobilenet: {filter_size_scale: 0.35}}}}, trainer: {steps_per_loop: 2}}"]
STEPS = ["transfer", "convert", "train", "evaluate", "compare", "promote"]


def test_compile_writes_a_kfp_spec_with_the_six_steps_in_order(tmp_path):
    out = tmp_path / "synthdet_pipeline.yaml"
    code, stdout, err = run("pipeline", "compile", "--output", out, "--image", "us-docker.pkg.dev/p/r/synthdet:1")
    assert code == 0, err
    spec = yaml.safe_load(out.read_text())
    from kfp import components
    assert components.load_component_from_file(str(out)).name == "synthdet-train-evaluate-promote"
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(STEPS)
    order = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    for earlier, later in zip(STEPS, STEPS[1:]):
        assert earlier in order[later] or any(earlier in order[t] for t in order[later]), (earlier, later)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"us-docker.pkg.dev/p/r/synthdet:1"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("source", "eval_pct", "max_steps", "train_batch_size", "num_eval_images", "train_steps_per_eval",
                 "warmup_learning_rate", "warmup_steps", "initial_learning_rate", "image_size", "fpn_type",
                 "aug_scale_min", "aug_scale_max", "real_dataset", "production_dir", "promote_mode", "metric"):
        assert name in parameters, name
    assert parameters["max_steps"]["defaultValue"] == 75000 and parameters["fpn_type"]["defaultValue"] == "nasfpn"


def _real_photos(folder, label_map):
    """A few photos with boxes, converted by real_data_loader.py with the synthetic label map."""
    rng = random.Random(3)
    (folder / "photos" / "images").mkdir(parents=True)
    items = []
    for i in range(4):
        box = {"label_id": 1 + i % 5, "x": 20, "y": 10, "width": 50, "height": 40}
        (folder / "photos" / "images" / ("p%d.png" % i)).write_bytes(sample.noisy_png(128, 96, rng, boxes=[box]))
        items.append({"file_name": "p%d.png" % i, "annotations": [{"label_id": box["label_id"], "bbox": [20, 10, 50, 40]}]})
    (folder / "photos" / "annotations.json").write_text(json.dumps(items))
    from tfproc import realdata
    assert realdata.main(["--source", str(folder / "photos"), "--label-map", str(label_map), "--eval-pct", "100",
                          "--output", str(folder / "real")]) == 0
    return folder / "real"


def test_the_whole_chain_runs_locally_promotes_then_reports(tmp_path):
    source = tmp_path / "run"
    sample.make_run(str(source), app_params=2, instances=2, frames=6, width=128, height=96, seed=9)
    production = tmp_path / "production"

    # first run: no production model yet, --promote auto makes the candidate production
    code, out, err = run("pipeline", "run", "--local", "--source", source, "--work-dir", tmp_path / "p1",
                         "--production-dir", production, "--promote", "auto", *SMALL)
    assert code == 0, err
    assert "promoted the candidate" in out
    record = json.loads((production / "production.json").read_text())
    assert record["source"] == str(tmp_path / "p1" / "candidate") and record["checkpoint"] == "ckpt-4"
    assert set(record["metrics"]) == {"synthetic"}
    assert (production / "model" / "params.yaml").exists()
    assert (tmp_path / "p1" / "output" / "summary.json").exists()
    evaluated = json.loads((tmp_path / "p1" / "candidate" / "eval_synthetic" / "metrics.json").read_text())
    assert evaluated["step"] == 4 and "AP" in evaluated

    # second run: real photos too; compared with production on the same data, reported (manual)
    real = _real_photos(tmp_path, tmp_path / "p1" / "output" / "label_map.pbtxt")
    code, out, err = run("pipeline", "run", "--local", "--source", source, "--work-dir", tmp_path / "p2",
                         "--production-dir", production, "--real-dataset", real, *SMALL)
    assert code == 0, err
    report = json.loads((tmp_path / "p2" / "promotion.json").read_text())
    assert report["metric"] == "real.AP" and report["mode"] == "manual" and report["promoted"] is False
    assert report["production"] is not None and "candidate" in report["reason"]
    assert report["promote_command"] in out
    assert json.loads((production / "production.json").read_text())["source"] == str(tmp_path / "p1" / "candidate")
    assert (tmp_path / "p2" / "candidate" / "eval_real" / "metrics.json").exists()
    assert (production / "model" / "eval_real" / "metrics.json").exists()     # production scored on the same data
    # the KFP metrics artifacts of the evaluate step
    found = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "p2" / "pipeline_root") for f in files
             if d.endswith(os.path.join("evaluate", "metrics")) or f == "metrics"]
    assert found or list((tmp_path / "p2" / "pipeline_root").rglob("executor_output.json"))

    # the report's command promotes by hand: the previous model is kept
    code, out, err = run(*report["promote_command"].split()[3:])
    assert code == 0, err
    assert (production / "previous" / "params.yaml").exists()
    assert json.loads((production / "production.json").read_text())["source"] == str(tmp_path / "p2" / "candidate")


# -- Vertex AI Pipelines ------------------------------------------------------------------------

PARENT = "projects/%s/locations/us-central1" % PROJECT


@pytest.fixture
def fake_pipelines(google):
    created = {}

    def create(request):
        name = "%s/pipelineJobs/%s" % (PARENT, (request["query"].get("pipelineJobId") or ["run-1"])[0])
        job = dict(request["body"], name=name, state="PIPELINE_STATE_PENDING")
        created[name.rsplit("/", 1)[1]] = job
        return 200, job

    states = iter(["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"])
    google.route("POST", r"/v1/%s/pipelineJobs" % PARENT, create)
    google.route("GET", r"/v1/%s/pipelineJobs/run-1" % PARENT, lambda r: (200, dict(created["run-1"], state=next(states))))
    google.route("GET", r"/v1/%s/pipelineJobs" % PARENT, lambda r: (200, {"pipelineJobs": list(created.values())}))
    google.route("POST", r"/v1/%s/pipelineJobs/run-1:cancel" % PARENT, lambda r: (200, {}))
    google.route("POST", r"/v1/%s/schedules" % PARENT,
                 lambda r: (200, dict(r["body"], name="%s/schedules/77" % PARENT, state="ACTIVE")))
    google.route("GET", r"/v1/%s/schedules" % PARENT, lambda r: (200, {"schedules": [
        {"name": "%s/schedules/77" % PARENT, "state": "ACTIVE", "cron": "0 3 1,15 * *", "nextRunTime": "2026-12-01T03:00:00Z"}]}))
    google.route("POST", r"/v1/%s/schedules/77:pause" % PARENT, lambda r: (200, {}))
    google.route("DELETE", r"/v1/%s/schedules/77" % PARENT, lambda r: (200, {}))
    return created


VERTEX = ["--project", PROJECT, "--region", "us-central1", "--pipeline-root", "gs://b/pipelines",
          "--image", "us-docker.pkg.dev/p/r/synthdet:1", "--run-definition-id", "El64GVP",
          "--run-execution-id", "5M6wq80", "--bucket", "b", "--real-dataset", "gs://b/real/output"]


def test_vertex_pipeline_run_status_wait_cancel_list(fake_pipelines, google):
    code, out, err = run("pipeline", "run", *VERTEX, "--run-id", "run-1", "--max-steps", 5000)
    assert code == 0, err
    (create,) = google.calls("POST", r"/v1/%s/pipelineJobs" % PARENT)
    assert create["query"]["pipelineJobId"] == ["run-1"]
    body = create["body"]
    assert body["displayName"] == "run-1" and body["pipelineSpec"]["pipelineInfo"]["name"] == "synthdet-train-evaluate-promote"
    config = body["runtimeConfig"]
    assert config["gcsOutputDirectory"] == "gs://b/pipelines"
    values = config["parameterValues"]
    assert values["run_execution_id"] == "5M6wq80" and values["backend"] == "vertex" and values["max_steps"] == 5000
    assert values["work_dir"] == "gs://b/pipelines/work" and values["production_dir"] == "gs://b/pipelines/work/production"
    assert values["real_dataset"] == "gs://b/real/output" and values["promote_mode"] == "manual"
    assert "pipeline run %s/pipelineJobs/run-1: PREPARING" % PARENT in out
    common = ["--project", PROJECT, "--region", "us-central1"]
    code, out, err = run("pipeline", "wait", "run-1", *common, "--interval", 0)
    assert code == 0 and "pipeline run run-1: SUCCEEDED" in out
    assert run("pipeline", "cancel", "run-1", *common)[0] == 0
    assert google.calls("POST", r"/v1/%s/pipelineJobs/run-1:cancel" % PARENT)
    code, out, _ = run("pipeline", "list", *common)
    assert code == 0 and "run-1" in out


def test_vertex_schedule_every_two_weeks_and_its_management(fake_pipelines, google):
    code, out, err = run("pipeline", "run", *VERTEX, "--schedule", "0 3 1,15 * *", "--run-id", "sched")
    assert code == 0, err
    (create,) = google.calls("POST", r"/v1/%s/schedules" % PARENT)
    body = create["body"]
    assert body["cron"] == "0 3 1,15 * *" and body["maxConcurrentRunCount"] == "1"
    assert body["createPipelineJobRequest"]["parent"] == PARENT
    assert body["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"]["parameterValues"]["bucket"] == "b"
    assert not google.calls("POST", r"/v1/%s/pipelineJobs" % PARENT)
    common = ["--project", PROJECT, "--region", "us-central1"]
    code, out, _ = run("pipeline", "schedules", *common)
    assert code == 0 and "77" in out and "0 3 1,15 * *" in out
    assert run("pipeline", "schedules", *common, "--pause", "77")[0] == 0
    assert run("pipeline", "schedules", *common, "--delete", "77")[0] == 0
    assert google.calls("POST", r"/v1/%s/schedules/77:pause" % PARENT)
    assert google.calls("DELETE", r"/v1/%s/schedules/77" % PARENT)
    code, _, err = run("pipeline", "run", *VERTEX, "--schedule", "every day")
    assert code == 2 and "cron expression" in err


def test_vertex_pipeline_dry_run_sends_nothing(fake_pipelines, google):
    code, out, err = run("pipeline", "run", *VERTEX, "--dry-run")
    assert code == 0, err
    assert not google.calls(path_pattern=r"/v1/.*")
    body = json.loads(out[out.index("{"):])
    assert body["runtimeConfig"]["parameterValues"]["run_definition_id"] == "El64GVP"
