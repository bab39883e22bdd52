"""Round three of the hostile probe (issue 22): each defect it found, as a test that failed before
its fix."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import convert
from test_launcher import PROJECT, dataset, job_dir, run  # noqa: F401  (fixtures)
from test_pipeline import _candidate
from test_vertex import IMAGE, JOBS, PARENT, fake_vertex, vertex_train  # noqa: F401  (fixtures)
from tfproc import sample

# -- conversion ---------------------------------------------------------------------------------


def test_an_emptied_staging_folder_of_a_killed_commit_is_removed_by_the_next_run(tmp_path):
    sample.make_run(str(tmp_path / "run"), app_params=1, instances=1, frames=3, width=64, height=48, seed=1)
    assert convert("--source", tmp_path / "run", "--eval-pct", 30, "--output", tmp_path / "out") == 0
    left = tmp_path / "out" / ".staging-20261201-101010-abcdef"
    left.mkdir()
    assert convert("--source", tmp_path / "run", "--eval-pct", 30, "--output", tmp_path / "out", "--overwrite") == 0
    assert not left.exists()
    (tmp_path / "out" / ".staging-not-ours").mkdir()          # only this tool's names are removed
    assert convert("--source", tmp_path / "run", "--eval-pct", 30, "--output", tmp_path / "out", "--overwrite") == 0
    assert (tmp_path / "out" / ".staging-not-ours").exists()


def test_a_lone_surrogate_in_one_datasets_label_name_skips_that_dataset_only(tmp_path):
    sample.make_run(str(tmp_path / "run"), app_params=2, instances=1, frames=3, width=64, height=48, seed=1)
    (definitions,) = sorted((tmp_path / "run" / "urn:app_params:AP0").rglob("attempt:1/*/annotation_definitions.json"))
    text = definitions.read_text()
    assert '"cereal"' in text
    definitions.write_text(text.replace('"cereal"', '"cer\\ud800eal"'))
    assert convert("--source", tmp_path / "run", "--eval-pct", 30, "--output", tmp_path / "out") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["splits"]["train"]["images"] + summary["splits"]["eval"]["images"] == 3
    assert "name not valid UTF-8" in json.dumps(summary)


def test_a_truncated_shard_read_for_the_input_size_is_named(tmp_path):
    sample.make_run(str(tmp_path / "run"), app_params=1, instances=1, frames=4, width=64, height=48, seed=1)
    assert convert("--source", tmp_path / "run", "--eval-pct", 30, "--output", tmp_path / "out") == 0
    (shard,) = (tmp_path / "out" / "train").iterdir()
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    done = subprocess.run([sys.executable, "-m", "trainer", "train", "--dataset", "out", "--model-dir", "m"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is damaged" in done.stderr and shard.name in done.stderr
    assert not (tmp_path / "m").exists()


# -- promotion and the production folder ----------------------------------------------------------

@pytest.mark.parametrize("pointer", ["null", "5", '"x"', '{"current": "x"}', '{"current": {"model": 1}}'])
def test_a_pointer_of_the_wrong_shape_is_one_line(tmp_path, pointer):
    prod = tmp_path / "prod"
    prod.mkdir()
    (prod / "production.json").write_text(pointer)
    candidate = _candidate(tmp_path / "c", 0.5)
    for args in (("--candidate", candidate, "--production", prod, "--run", "r1"), ("--rollback", "--production", prod)):
        code, _, err = run("pipeline", "promote", *args)
        assert code == 1 and "is not a production pointer" in err


def test_a_production_path_that_is_a_file_or_mistyped_is_refused(tmp_path):
    candidate = _candidate(tmp_path / "c", 0.5)
    (tmp_path / "afile").write_text("x")
    for production in (tmp_path / "afile", tmp_path / "afile" / "below"):
        code, _, err = run("pipeline", "promote", "--candidate", candidate, "--production", production)
        assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err
    code, _, err = run("pipeline", "promote", "--rollback", "--production", tmp_path / "prdouction")
    assert code == 1 and "nothing to roll back" in err and not (tmp_path / "prdouction").exists()


def test_versions_keep_their_own_models_and_paths_are_compared_whole(tmp_path, monkeypatch):
    from launcher.decide import production as production_lib
    prod = str(tmp_path / "prod")
    first = _candidate(tmp_path / "models" / "m1", 0.1)
    second = _candidate(tmp_path / "models" / "m2", 0.2)
    code, out, err = run("pipeline", "promote", "--candidate", first, "--production", prod)
    assert code == 0, err
    code, out, err = run("pipeline", "promote", "--candidate", second, "--production", prod)
    assert code == 0, err         # named after its own folder, not the shared parent
    pointer = production_lib.read_pointer(prod)
    assert (pointer["current"]["name"], pointer["previous"]["name"]) == ("m2", "m1")
    code, _, err = run("pipeline", "promote", "--candidate", first, "--production", prod, "--run", "m2")
    assert code == 1 and "version m2 is already the model of" in err
    monkeypatch.chdir(tmp_path)
    code, out, _ = run("pipeline", "promote", "--candidate", "models/m2", "--production", prod)
    assert code == 0 and "nothing changed" in out
    code, out, _ = run("pipeline", "promote", "--rollback", "--production", prod)
    assert code == 0 and production_lib.read_pointer(prod)["current"]["name"] == "m1"


def test_a_candidate_without_params_is_not_promoted(tmp_path):
    candidate = pathlib.Path(_candidate(tmp_path / "c", 0.5))
    (candidate / "params.yaml").unlink()
    code, _, err = run("pipeline", "promote", "--candidate", candidate, "--production", tmp_path / "prod")
    assert code == 1 and "has no params.yaml" in err and not (tmp_path / "prod" / "production.json").exists()


@pytest.mark.parametrize("value", [float("nan"), -1.0])
def test_with_no_production_a_candidate_that_scored_nothing_is_not_promoted(tmp_path, value):
    from launcher.decide import compare as compare_lib
    from launcher.decide import promotion
    candidate = _candidate(tmp_path / "c", 0.5)
    comparison = compare_lib.compare({"synthetic": {"AP": value}}, str(tmp_path / "prod"), "unused")
    assert comparison["better"] is False and "scored nothing" in comparison["reason"]
    report = promotion.promote(comparison, candidate, str(tmp_path / "prod"), mode="auto", run="r")
    assert report["promoted"] is False and not (tmp_path / "prod" / "production.json").exists()


def test_a_promotion_refused_for_a_busy_folder_names_no_option_promote_lacks(tmp_path):
    from launcher.decide import production as production_lib
    from tfproc import output
    prod = tmp_path / "prod"
    prod.mkdir()
    holder = output.claim(str(prod), "other", what="promotion")
    try:
        code, _, err = run("pipeline", "promote", "--candidate", _candidate(tmp_path / "c", 0.5), "--production",
                           prod, "--run", "r")
    finally:
        holder.release()
    assert code == 1 and "wait for it to end" in err and "--output" not in err
    del production_lib


def test_pointer_debris_of_a_killed_write_is_removed_by_the_next_promotion(tmp_path):
    from launcher.decide import production as production_lib
    prod = tmp_path / "prod"
    production_lib.promote(_candidate(tmp_path / "c1", 0.1), str(prod), "r1")
    (prod / "production.json.tmp-0123abcd").write_text("{half")
    production_lib.promote(_candidate(tmp_path / "c2", 0.2), str(prod), "r2")
    assert not list(prod.glob("production.json.tmp-*"))


# -- pipeline re-runs ------------------------------------------------------------------------------

def test_a_run_done_again_after_an_auto_promotion_says_it_is_production(tmp_path):
    from launcher.decide import compare as compare_lib
    from launcher.decide import promotion
    candidate, prod = _candidate(tmp_path / "run" / "candidate", 0.5), str(tmp_path / "prod")
    comparison = compare_lib.compare({"synthetic": {"AP": 0.5}}, prod, "unused")
    assert promotion.promote(comparison, candidate, prod, mode="auto", run="run")["promoted"] is True
    again = {"metric": "synthetic.AP", "candidate": 0.5, "production": 0.5, "better": False,
             "reason": "synthetic.AP: candidate 0.5000, production 0.5000"}      # itself, scored again
    report = promotion.promote(again, candidate, prod, mode="auto", run="run")
    assert report["promoted"] is True and report["reason"] == "the candidate is production already"


def test_a_reused_conversion_or_model_must_match_what_the_run_asks(tmp_path):
    from launcher.pipeline import steps
    for name in ("a", "b"):
        sample.make_run(str(tmp_path / name), app_params=1, instances=1, frames=3, width=64, height=48, seed=1)
    output = str(tmp_path / "run" / "output")
    assert steps.convert(str(tmp_path / "a"), output, 30.0) == output
    assert steps.convert(str(tmp_path / "a"), output, 30.0) == output                  # reused
    with pytest.raises(steps.StepFailed, match="was converted from .*/a with --eval-pct 30"):
        steps.convert(str(tmp_path / "b"), output, 30.0)
    with pytest.raises(steps.StepFailed, match="--eval-pct 30; this run asks for .* with 50"):
        steps.convert(str(tmp_path / "a"), output, 50.0)
    model = tmp_path / "model"
    model.mkdir()
    (model / "params.yaml").write_text("task: {model: {backbone: {type: mobilenet}, decoder: {type: fpn}}, "
                                       "train_data: {global_batch_size: 2}}\ntrainer: {train_steps: 4}\n")
    steps.check_trained_as_asked(str(model), {"backbone": "mobilenet", "max_steps": 4, "fpn_type": "fpn"})
    with pytest.raises(steps.StepFailed, match="backbone mobilenet, asked resnet"):
        steps.check_trained_as_asked(str(model), {"backbone": "resnet-50", "max_steps": 4})


# -- arguments, checked before anything is sent or built -------------------------------------------

def vertex(dataset, *extra):
    return run("train", "--project", PROJECT, "--image", IMAGE, "--dataset", dataset, "--job-dir", job_dir("r3"),
               "--job-id", "r3", *extra)


@pytest.mark.parametrize("extra, message", [
    (["--params-override", "{task: {model: {no_such_key: 1}}}"], "does not fit Model Garden's config"),
    (["--params-override", "{trainer: {train_steps: abc}}"], "does not fit Model Garden's config"),
    (["--num-classes", "0"], "--num-classes must be at least 1"),
    (["--num-classes", "-3"], "--num-classes must be at least 1"),
    (["--num-classes", "5"], "does not cover class id 63"),
    (["--num-eval-images", "-1"], "num_eval_images must be 0 (all) or a positive integer"),
    (["--timeout", "\u00b2"], "--timeout takes a duration"),
    (["--labels", "team=vision\n"], "--labels takes key=value"),
])
def test_bad_vertex_arguments_end_before_anything_is_sent(fake_vertex, google, dataset, extra, message):
    code, _, err = vertex(dataset, *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert not google.calls("POST", r"/v1/.*")


@pytest.mark.parametrize("extra, message", [
    (["--schedule", "0 3 30 2 *"], "never fires"),
    (["--eval-pct", "150"], "--eval-pct"),
    (["--backbone", "vgg"], "--backbone"),
    (["--accelerator", "v100"], "--accelerator"),
    (["--metric", "real.APX"], "--metric"),
    (["--max-steps", "0"], "--max-steps"),
    (["--timeout", "3x"], "--timeout"),
    (["--eval-pct", "0"], "evaluated on the eval split"),
    (["--eval-pct", "100"], "evaluated on the eval split"),
    (["--params-override", "{task: {no_such_key: 1}}"], "does not fit Model Garden's config"),
])
def test_bad_pipeline_arguments_end_before_anything_is_sent(google, extra, message):
    code, _, err = run("pipeline", "run", "--project", PROJECT, "--pipeline-root", "gs://b/p", "--source", "gs://b/r",
                       *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert not google.calls(path_pattern=r"/v1/.*")


# -- the trainer ------------------------------------------------------------------------------------

def test_a_checkpoint_cut_short_is_named(tmp_path):
    import tensorflow as tf

    from trainer import commands
    prefix = tf.train.Checkpoint(v=tf.Variable(tf.zeros([1000]))).save(str(tmp_path / "ckpt"))
    (data,) = tmp_path.glob("ckpt-1.data-*")
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(commands.TrainerError, match="the checkpoint .*ckpt-1 is damaged"):
        commands.check_readable(prefix)


@pytest.mark.parametrize("classes", ["2", "0", "-1"])
def test_a_head_that_cannot_hold_the_records_classes_is_refused(tmp_path, classes):
    sample.make_run(str(tmp_path / "run"), app_params=1, instances=1, frames=4, width=64, height=48, seed=1)
    assert convert("--source", tmp_path / "run", "--eval-pct", 30, "--output", tmp_path / "out") == 0
    done = subprocess.run([sys.executable, "-m", "trainer", "train", "--dataset", "out", "--model-dir", "m",
                           "--num-classes", classes, "--image-size", "64,64"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "cannot hold the classes of" in done.stderr and "Traceback" not in done.stderr


# -- secrets -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["abc\u2014def", "abc\ndef", "abc def"])
def test_a_malformed_unity_token_is_said_without_printing_it(token, tmp_path, monkeypatch):
    monkeypatch.setenv("USIM_HOME", str(tmp_path))
    code, out, err = run("transfer", "--run-definition-id", "d", "--run-execution-id", "e", "--bucket", "b",
                         "--token", token, "--project-id", "p", "--api-url", "http://127.0.0.1:9")
    assert code == 2 and "the Unity Simulation token is malformed" in err
    assert token not in out + err and "def" not in out + err


# -- bugs the suite let through (issue 22's mutation audit) ----------------------------------------

def test_durations_and_run_names():
    from launcher.pipeline import runs
    from launcher.pipeline import steps
    from launcher.jobs import training
    assert training.timeout_seconds("1d") == 86400 and training.timeout_seconds("2h30m") == 9000
    assert training.timeout_seconds("45s") == 45 and training.timeout_seconds("3600") == 3600
    with pytest.raises(steps.StepFailed, match="not substituted"):
        runs.run_name("", "{{$.pipeline_job_name}}")
    assert runs.run_name("", "synthdet-20261201") == "synthdet-20261201"


def test_a_missing_metric_fails_instead_of_scoring_zero():
    from launcher.decide import scores
    from launcher.pipeline import steps
    with pytest.raises(steps.StepFailed, match="no metric real.AP"):
        scores.metric_value({"synthetic": {"AP": 0.4}}, "real.AP")


def _scores(folder, hits, images=20):
    """An evaluation of ``images`` images with one box each, of which the first ``hits`` are found:
    its metrics and the per-image matches compare bootstraps."""
    folder.mkdir(parents=True)
    rows = [{"image": i, "class": 1, "gt": 1, "scores": [0.9], "matched": [1023 if i < hits else 0], "ignored": [0],
             "boxes": [], "gt_boxes": []} for i in range(images)]
    (folder / "matches.json").write_text(json.dumps({"images": list(range(images)), "iou_thresholds": [
        0.5 + 0.05 * k for k in range(10)], "max_detections": 100, "rows": rows}))
    from trainer import cocoap
    value = cocoap.load((folder / "matches.json").read_text()).metric("AP")
    return {"AP": value, "matches": str(folder / "matches.json"), "per_class_AP": {"c1": value}}


def test_auto_promotion_never_installs_a_worse_model_or_one_within_noise(tmp_path, monkeypatch):
    from launcher.decide import compare as compare_lib
    from launcher.decide import production as production_lib
    from launcher.decide import promotion
    prod = str(tmp_path / "prod")
    production_lib.promote(_candidate(tmp_path / "old", 0.6), prod, "old")
    production_scores = _scores(tmp_path / "scores_old", hits=12)
    monkeypatch.setattr(compare_lib, "evaluate_all", lambda *args, **kwargs: {"synthetic": production_scores})
    worse = _candidate(tmp_path / "new" / "candidate", 0.3)
    comparison = compare_lib.compare({"synthetic": _scores(tmp_path / "scores_worse", hits=2)}, prod, "unused")
    assert comparison["better"] is False and comparison["verdict"] == "worse" and comparison["ci95"][1] < 0
    report = promotion.promote(comparison, worse, prod, mode="auto", run="new")
    assert report["promoted"] is False and production_lib.read_pointer(prod)["current"]["name"] == "old"
    close = compare_lib.compare({"synthetic": _scores(tmp_path / "scores_close", hits=13)}, prod, "unused")
    assert close["difference"] > 0 and close["verdict"] == "within noise"          # one image more: noise
    assert promotion.promote(close, worse, prod, mode="auto", run="new")["promoted"] is False
    better = compare_lib.compare({"synthetic": _scores(tmp_path / "scores_better", hits=20)}, prod, "unused")
    assert better["better"] is True and better["verdict"] == "better" and better["ci95"][0] > 0
    assert better["resamples"] == 200 and better["images"] == 20
    demanding = compare_lib.compare({"synthetic": _scores(tmp_path / "scores_b2", hits=20)}, prod, "unused",
                              min_improvement=0.9)
    assert demanding["verdict"] == "within noise"
    assert promotion.promote(better, worse, prod, mode="auto", run="new")["promoted"] is True


def test_rollbacks_walk_back_one_version_at_a_time_and_only_to_complete_models(tmp_path):
    from launcher.decide import production as production_lib
    prod = str(tmp_path / "prod")
    for name, value in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        production_lib.promote(_candidate(tmp_path / name, value), prod, name)
    assert production_lib.rollback(prod)["current"]["name"] == "b"
    assert production_lib.rollback(prod)["current"]["name"] == "a"
    production_lib.promote(_candidate(tmp_path / "d", 0.4), prod, "d")
    os.unlink(os.path.join(prod, "models", "a", "COMPLETE"))
    with pytest.raises(production_lib.PromotionError, match="not complete"):
        production_lib.rollback(prod)


def test_a_cancelled_vertex_job_is_not_trained(fake_vertex, google, dataset, monkeypatch):
    from launcher.pipeline import steps
    import launcher.jobs.training
    monkeypatch.setattr(launcher.jobs.training.time, "sleep", lambda seconds: None)
    reads = []

    def cancelled(request):     # a poll after the end would go on for ever: it fails instead
        reads.append(request)
        if len(reads) > 1:
            return 404, {"error": {"code": 404, "message": "polled again after the job ended"}}
        return 200, dict(fake_vertex.jobs[request["match"].group(1)], state="JOB_STATE_CANCELLED")

    google.route("GET", JOBS + r"/(\d+)", cancelled)
    with pytest.raises(steps.StepFailed, match="ended CANCELLED"):
        steps.train_on_vertex(dataset, job_dir("cancelled"), {"max_steps": 9}, PROJECT, "us-central1", IMAGE,
                              job_id="cancelled_1", poll_seconds=0)
    reads.clear()
    code, _, err = run("wait", "1000", "--project", PROJECT, "--interval", "0")
    assert code == 1 and "ended CANCELLED" in err


def test_pipeline_wait_ends_on_a_cancelled_run_and_exits_1(google):
    polls = []

    def cancelled(request):
        polls.append(request)
        if len(polls) > 1:
            return 404, {"error": {"code": 404, "message": "polled again after the run ended"}}
        return 200, {"name": "%s/pipelineJobs/stopped" % PARENT, "displayName": "stopped",
                     "state": "PIPELINE_STATE_CANCELLED"}

    google.route("GET", r"/v1/%s/pipelineJobs/stopped" % PARENT, cancelled)
    code, _, err = run("pipeline", "wait", "stopped", "--project", PROJECT, "--region", "us-central1",
                       "--interval", 0)
    assert code == 1 and "pipeline run stopped ended CANCELLED" in err and len(polls) == 1


def test_a_vertex_job_dir_with_checkpoints_is_refused(fake_vertex, google, dataset, cloud):
    from conftest import BUCKET
    cloud.storage.bucket(BUCKET).blob("models/used/ckpt-10.index").upload_from_string(b"x")
    code, _, err = run("train", "--project", PROJECT, "--image", IMAGE, "--dataset", dataset, "--job-dir",
                       job_dir("used"), "--job-id", "used_1")
    assert code == 2 and "already holds files" in err and not fake_vertex.jobs


def test_machines_and_strategies_of_several_replicas():
    from launcher.jobs import vertex_spec
    pools = vertex_spec.worker_pools("gpu", 2, 3)
    assert pools[1]["machineSpec"] == pools[0]["machineSpec"] and pools[1]["replicaCount"] == "2"
    assert vertex_spec.strategy(pools) == "multi_worker_mirrored"
    assert vertex_spec.strategy([{"machineSpec": {"machineType": "n1-standard-8"}, "replicaCount": "3"}]) \
        == "multi_worker_mirrored"
    assert vertex_spec.machine_spec("a100", 1)["machineType"] == "a2-highgpu-1g"
    assert vertex_spec.machine_spec("a100", 8)["machineType"] == "a2-highgpu-8g"
    assert vertex_spec.machine_spec("cpu") == {"machineType": "n1-standard-8"}


def test_auto_on_two_machines_trains_multi_worker():
    """Vertex's TF_CONFIG for a chief and one worker: the trainer's ``--strategy auto`` must see two
    machines, or each would train alone on its own device."""
    from trainer import devices
    tf_config = json.dumps({"cluster": {"chief": ["cmle-training-workerpool0-0:2222"],
                                        "worker": ["cmle-training-workerpool1-0:2222"]},
                            "task": {"type": "worker", "index": 0}, "job": {}})
    assert devices.cluster(tf_config) == (2, "worker", 0)
    assert devices.choose("auto", gpus=1, tpus=0, machines=devices.cluster(tf_config)[0]) == "multi_worker_mirrored"
    assert not devices.is_chief(tf_config)


def test_a_pool_file_with_other_worker_machines_promises_each_pool_its_own(fake_vertex, google, dataset, tmp_path):
    chief = {"machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}
    worker = {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}
    pools = tmp_path / "pools.yaml"
    pools.write_text(json.dumps({"workerPoolSpecs": [{"machineSpec": chief, "replicaCount": "1"},
                                                     {"machineSpec": worker, "replicaCount": "2"}]}))
    code, _, err = vertex_train(dataset, "vtx_mixed", "--worker-pool-spec-file", pools)
    assert code == 0, err
    sent = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"]
    assert [p["machineSpec"]["machineType"] for p in sent] == ["g2-standard-24", "g2-standard-8"]
    assert [p["replicaCount"] for p in sent] == ["1", "2"]
    args = [dict(zip(p["containerSpec"]["args"][3::2], p["containerSpec"]["args"][4::2])) for p in sent]
    assert [a["--strategy"] for a in args] == ["multi_worker_mirrored"] * 2
    assert [a["--expect-accelerator"] for a in args] == ["gpu:2", "gpu:1"]
    assert [a["--machine-type"] for a in args] == ["g2-standard-24", "g2-standard-8"]


def test_the_transfer_step_returns_only_when_the_transfer_succeeded(tmp_path, monkeypatch):
    from fakes import FakeServer
    from launcher.pipeline import steps
    from launcher.cloud import usim
    monkeypatch.setattr(usim.time, "sleep", lambda seconds: None)
    monkeypatch.setenv("USIM_ACCESS_TOKEN", "token-1")
    monkeypatch.setenv("USIM_PROJECT_ID", "unity-proj")
    monkeypatch.setenv("USIM_HOME", str(tmp_path / "no-usim"))
    transfer = r"/v1/projects/unity-proj/data_transfer"
    with FakeServer() as unity:
        monkeypatch.setenv("USIM_API_URL", unity.url)
        unity.route("PUT", transfer, lambda r: (200, {"id": "tr-8", "status": "queued"}))
        states = iter(["queued", "running", "success"])
        unity.route("GET", transfer + "/tr-8", lambda r: (200, {"id": "tr-8", "status": next(states)}))
        steps.transfer("", "D", "E", "b", str(tmp_path / "run"))
        assert len(unity.calls("GET")) == 3
        unity.route("GET", transfer + "/tr-8", lambda r: (200, {"id": "tr-8", "status": "failed", "message": "quota"}))
        with pytest.raises(steps.StepFailed, match="tr-8 failed: quota"):
            steps.transfer("", "D", "E", "b", str(tmp_path / "run"))     # the retried step waits too
        assert len(unity.calls("PUT")) == 1


def test_list_shows_the_newest_jobs_first(fake_vertex, google):
    for number, minute in (("1000", 5), ("1001", 1), ("1002", 9)):
        fake_vertex.jobs[number] = {"name": "%s/customJobs/%s" % (PARENT, number), "displayName": "job" + number,
                                    "state": "JOB_STATE_SUCCEEDED", "createTime": "2026-11-22T08:0%d:00Z" % minute}
    code, out, err = run("list", "--backend", "vertex", "--project", PROJECT, "--limit", 2)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()] == ["job1002", "job1000"]


def test_a_429_is_retried_by_the_create_and_by_every_other_call(fake_vertex, google, dataset, monkeypatch):
    import googleapiclient.http

    import launcher.cloud.google_api
    monkeypatch.setattr(launcher.cloud.google_api.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(googleapiclient.http.time, "sleep", lambda seconds: None)
    limited = (429, {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})
    creates = [limited]
    google.route("POST", JOBS, lambda r: creates.pop() if creates else fake_vertex.create(r))
    code, _, err = vertex_train(dataset, "vtx_429")
    assert code == 0, err
    assert len(google.calls("POST", JOBS)) == 2 and len(fake_vertex.jobs) == 1
    reads = [limited]
    google.route("GET", JOBS + r"/(\d+)", lambda r: reads.pop() if reads else fake_vertex.get(r))
    code, out, err = run("status", "1000", "--backend", "vertex", "--project", PROJECT)
    assert code == 0 and "PREPARING" in out, err
    assert len(google.calls("GET", JOBS + r"/1000")) == 2


def test_the_fine_tuning_on_vertex_is_a_job_of_its_own_from_the_candidates_whole_network(fake_vertex, google, dataset,
                                                                                        monkeypatch):
    import launcher.jobs.training
    from launcher.pipeline import steps
    from launcher.pipeline.settings import TrainSettings
    monkeypatch.setattr(launcher.jobs.training.time, "sleep", lambda seconds: None)
    google.route("GET", JOBS + r"/(\d+)",
                 lambda r: (200, dict(fake_vertex.jobs[r["match"].group(1)], state="JOB_STATE_SUCCEEDED")))
    folder = job_dir("ftrun")
    options = TrainSettings(max_steps=9, backbone="resnet-50", init_checkpoint="imagenet").trainer_options()
    candidate = steps.train_candidate(dataset, folder + "/candidate", options, "vertex", PROJECT, "us-central1", IMAGE,
                                      "gpu", steps.vertex_job_id("ftrun"))
    tuned = steps.finetune(folder, "ftrun", candidate, dataset, dict(options, max_steps=4), "vertex", PROJECT,
                           "us-central1", IMAGE, "gpu")
    train_job, finetune_job = [call["body"] for call in google.calls("POST", JOBS)]
    assert train_job["displayName"] != finetune_job["displayName"]
    assert tuned.startswith(folder + "/finetuned") and candidate.startswith(folder + "/candidate")
    train_args = train_job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    args = finetune_job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert "--init-checkpoint" in train_args and "--init-from" not in train_args
    assert args[args.index("--init-from") + 1] == candidate and "--init-checkpoint" not in args
    assert args[args.index("--max-steps") + 1] == "4"
    assert steps.finetune(folder, "ftrun", candidate, "", options, "vertex", PROJECT, "us-central1", IMAGE,
                          "gpu") == candidate
    assert len(google.calls("POST", JOBS)) == 2
