"""The end-to-end pipeline: its KFP spec, a local run with KFP's local runner, and Vertex AI Pipelines
(runs and schedules) against fake services on 127.0.0.1."""
import json
import os
import pathlib
import random
import shlex
import shutil

import pytest
import yaml

from tfproc import sample
from test_launcher import PROJECT, dataset, run  # noqa: F401

SMALL = ["--max-steps", 4, "--train-steps-per-eval", 4, "--train-batch-size", 2, "--backbone", "mobilenet",
         "--fpn-type", "fpn", "--image-size", "128,128", "--params-override",
         "{task: {model: {head: {num_filters: 32, num_convs: 1}, decoder: {fpn: {num_filters: 32}},"
         " backbone: {mobilenet: {filter_size_scale: 0.35}}}}, trainer: {steps_per_loop: 2}}"]
STEPS = ["transfer", "convert", "train", "finetune", "evaluate", "compare", "promote"]


def test_compile_writes_a_kfp_spec_for_vertex_with_per_run_paths_and_no_cache(tmp_path):
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
    for name, task in tasks.items():
        assert not task.get("cachingOptions", {}).get("enableCache"), name       # never cached
        job_name = task["inputs"]["parameters"]["job_name"]["runtimeValue"]["constant"]
        assert job_name == "{{$.pipeline_job_name}}", name                     # WORK_DIR/runs/<job>/
    executors = spec["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {"us-docker.pkg.dev/p/r/synthdet:1"}
    for executor in executors:
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command and "kfp.dsl.executor_main" in command
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("source", "eval_pct", "max_steps", "train_batch_size", "num_eval_images", "train_steps_per_eval",
                 "warmup_learning_rate", "warmup_steps", "initial_learning_rate", "image_size", "fpn_type",
                 "aug_scale_min", "aug_scale_max", "real_dataset", "production_dir", "promote_mode", "metric",
                 "usim_token_secret", "finetune_dataset", "finetune_steps", "work_dir", "run_name"):
        assert name in parameters, name
    assert parameters["max_steps"]["defaultValue"] == 75000 and parameters["fpn_type"]["defaultValue"] == "nasfpn"
    assert parameters["backend"]["defaultValue"] == "vertex" and parameters["promote_mode"]["defaultValue"] == "manual"
    assert parameters["image"]["defaultValue"] == "us-docker.pkg.dev/p/r/synthdet:1"


def _real_photos(folder, label_map, eval_pct=100, name="real"):
    """A few photos with boxes, converted by real_data_loader.py with the synthetic label map."""
    rng = random.Random(3)
    (folder / "photos" / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(4):
        box = {"label_id": 1 + i % 5, "x": 20, "y": 10, "width": 50, "height": 40}
        (folder / "photos" / "images" / ("p%d.png" % i)).write_bytes(sample.noisy_png(128, 96, rng, boxes=[box]))
        items.append({"file_name": "p%d.png" % i, "annotations": [{"label_id": box["label_id"], "bbox": [20, 10, 50, 40]}]})
    (folder / "photos" / "annotations.json").write_text(json.dumps(items))
    from tfproc import realdata
    assert realdata.main(["--source", str(folder / "photos"), "--label-map", str(label_map), "--eval-pct",
                          str(eval_pct), "--output", str(folder / name)]) == 0
    return folder / name


def _groceries(folder, label_map):
    """A small dataset in the published UnityGroceries-Real layout, converted with its split files
    and checked against the synthetic label map."""
    from tfproc import groceries_sample, realdata
    made = groceries_sample.make_groceries(str(folder / "groceries"), photos=30, width=160, height=120, seed=4)
    assert realdata.main(["--source", str(folder / "groceries"), "--label-map", str(label_map), "--output",
                          str(folder / "groceries_out")]) == 0
    return folder / "groceries_out", made


def _runs(work_dir):
    return sorted(os.listdir(work_dir / "runs"))


def test_the_same_chain_twice_into_one_work_dir_keeps_each_run_and_the_production_history(tmp_path):
    source = tmp_path / "run"
    sample.make_run(str(source), app_params=2, instances=2, frames=6, width=128, height=96, seed=9)
    work, production = tmp_path / "work", tmp_path / "production"

    # first run, typed from a working folder with relative paths: no production model yet, --promote
    # auto makes the candidate production
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "launcher", "pipeline", "run", "--local", "--source", "run",
                           "--work-dir", "work", "--production-dir", "production", "--promote", "auto", "--run-id",
                           "night-1"] + [str(a) for a in SMALL], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "promoted the candidate" in done.stdout
    printed = (done.stdout + done.stderr).splitlines()
    assert len(printed) < 30, printed                     # a line per step and its result
    for step in STEPS:
        state = "skipped (no --finetune-dataset)" if step == "finetune" else "succeeded"
        assert any(line.endswith("%s %s" % (step.ljust(9), state)) for line in printed), (step, printed)
    first = work / "runs" / "night-1"
    pointer = json.loads((production / "production.json").read_text())
    assert pointer["current"]["name"] == "night-1" and pointer["previous"] is None
    assert pointer["current"]["source"] == str(first / "candidate") and pointer["current"]["checkpoint"] == "ckpt-4"
    assert pointer["current"]["model"] == str(production / "models" / "night-1")
    assert (production / "models" / "night-1" / "COMPLETE").exists()
    assert set(pointer["current"]["metrics"]) == {"synthetic"}
    assert (first / "output" / "summary.json").exists()
    evaluated = json.loads((first / "candidate" / "eval_synthetic" / "metrics.json").read_text())
    assert evaluated["step"] == 4 and "AP" in evaluated
    assert {json.loads(p.read_text())["state"] for p in (first / "steps").iterdir()} == {"succeeded", "skipped"}
    log = (first / "pipeline.log").read_text()        # KFP's and the steps' own output, kept out of sight
    assert "train     succeeded" in log and "finished with status" in log
    first_comparison = json.loads((first / "comparison.json").read_text())
    assert first_comparison["verdict"] == "first model" and first_comparison["ci95"] is None
    assert report_cells(first / "report.html").cells["verdict"] == "first model"

    # second run into the same work dir: its own folder; fine-tuned on real photos (seed 002: the
    # published train_small), then compared with the first run's model on the published test split
    real, made = _groceries(tmp_path, first / "output" / "label_map.pbtxt")
    code, out, err = run("pipeline", "run", "--local", "--source", source, "--work-dir", work,
                         "--production-dir", production, "--real-dataset", real, "--run-id", "night-2",
                         "--real-split", "test", "--finetune-dataset", real, "--finetune-split", "train_small",
                         "--finetune-steps", 2, "--init-from", "production", *SMALL)
    assert code == 0, err
    second = work / "runs" / "night-2"
    tuned = json.loads((second / "finetuned" / "metrics.json").read_text())
    assert tuned["split"] == "val" and tuned["images"] == len(made["splits"]["val"])     # trained on train_small
    assert "train_small" in (second / "finetuned" / "params.yaml").read_text()
    subsets = ["test_high_contrast", "test_high_ratio", "test_low_contrast", "test_low_ratio"]
    compared = json.loads((second / "comparison.json").read_text())
    assert compared["candidate_metrics"]["real"]["split"] == "test" and compared["images"] == len(made["splits"]["test"])
    cells = report_cells(second / "report.html").cells
    for subset in subsets:
        scored = compared["candidate_metrics"]["real:" + subset]
        assert scored["split"] == subset and scored["images"] == len(made["splits"][subset])
        assert compared["production_metrics"]["real:" + subset]["images"] == len(made["splits"][subset])
        interval = compared["intervals"]["real:%s.AP" % subset]
        assert interval["difference"] == pytest.approx(scored["AP"] - compared["production_metrics"]["real:" + subset]["AP"])
        assert float(cells["real:%s.AP.candidate" % subset]) == scored["AP"]
        assert "real:%s.AP.ci95" % subset in cells
    log = (second / "pipeline.log").read_text() + out + err       # in this process, KFP's output is captured here
    assert "the candidate starts from the production model %s" % (production / "models" / "night-1") in log
    assert "starting from the whole network of %s (step 4)" % (production / "models" / "night-1") in log
    check_report(second, production)
    assert (second / "finetuned" / "params.yaml").exists() and (second / "finetuned" / "eval_real").exists()
    assert _runs(work) == ["night-1", "night-2"] and (second / "output" / "summary.json").exists()
    comparison = json.loads((second / "comparison.json").read_text())
    assert comparison["production_model"] == str(production / "models" / "night-1")
    assert (second / "production_scores" / "real" / "metrics.json").exists()     # scores in the run's folder
    assert sorted(os.listdir(production / "models" / "night-1")) == [
        "COMPLETE", "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index", "label_map.pbtxt", "metrics.json",
        "params.yaml", "version.json"]            # write-once: nothing was added to production's model by the comparison
    assert not (production / "models" / "night-1" / "eval").exists()
    report = json.loads((second / "promotion.json").read_text())
    assert report["metric"] == "real.AP" and report["mode"] == "manual" and report["promoted"] is False
    assert report["candidate_dir"] == str(second / "finetuned")
    assert report["promote_command"] in out

    # the report's command promotes by hand; the first run's model is kept as the previous one
    code, out, err = run(*shlex.split(report["promote_command"])[3:])
    assert code == 0, err
    pointer = json.loads((production / "production.json").read_text())
    assert pointer["current"]["name"] == "night-2" and pointer["previous"]["name"] == "night-1"
    assert pointer["current"]["source"] == str(second / "finetuned")
    assert pointer["current"]["metrics"] == comparison["candidate_metrics"]      # as an automatic promotion records
    assert pointer["current"]["compared"]["reason"] == comparison["reason"]
    before = (production / "production.json").read_text()
    code, out, err = run(*shlex.split(report["promote_command"])[3:])          # twice: nothing changes
    assert code == 0 and "nothing changed" in out
    assert (production / "production.json").read_text() == before
    code, out, err = run("pipeline", "promote", "--rollback", "--production", production)
    assert code == 0, err
    assert json.loads((production / "production.json").read_text())["current"]["name"] == "night-1"
    assert (production / "models" / "night-2" / "COMPLETE").exists()      # kept, write-once

    # all candidates side by side with production (night-1 again), on the newest run's data
    import subprocess
    import sys
    board_command = [sys.executable, "-m", "launcher", "pipeline", "leaderboard", "--work-dir", "work",
                     "--production-dir", "production"]
    done = subprocess.run(board_command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = (work / "leaderboards").glob("20*")
    board = json.loads((folder / "leaderboard.json").read_text())
    assert board["metric"] == "real.AP" and board["dataset"] == str(second / "output")
    assert sorted((e["run"], e["kind"]) for e in board["entries"]) == [
        ("night-1", "candidate"), ("night-2", "candidate"), ("production (night-1)", "production")]
    assert [e["rank"] for e in board["entries"]] == [1, 2, 3]
    values = [e["value"] for e in board["entries"]]
    assert values == sorted(values, reverse=True)
    for entry in board["entries"]:
        assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
        assert (entry["vs_production"] is None) == (entry["kind"] == "production")
        assert set(entry["per_class"]) == {"synthetic", "real"}
    by_run = {e["run"]: e for e in board["entries"]}
    assert by_run["night-1"]["value"] == by_run["production (night-1)"]["value"]      # the same weights
    assert "production (night-1) on %s: scored before" % (second / "output") in done.stderr
    cells = report_cells(folder / "report.html").cells
    assert float(cells["night-2.value"]) == by_run["night-2"]["value"]
    assert board["real_split"] == "test" and board["subsets"] == subsets       # the published test split decides
    assert by_run["night-2"]["value"] == compared["candidate_metrics"]["real"]["AP"]
    for subset in subsets:
        for entry in board["entries"]:
            shown = entry["subsets"][subset]
            assert shown["images"] == len(made["splits"][subset])
            assert float(cells["%s.%s.value" % (entry["run"], subset)]) == shown["value"]
        assert by_run["night-2"]["subsets"][subset]["value"] == compared["candidate_metrics"]["real:" + subset]["AP"]
    assert "test_low_contrast %.4f" % by_run["night-2"]["subsets"]["test_low_contrast"]["value"] in done.stdout
    done = subprocess.run(board_command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "scoring the checkpoint" not in done.stderr, done.stderr   # all reused

    # a step run again in the same run gives back its result: nothing converted or trained again
    from launcher.pipeline import steps
    stamp = os.path.getmtime(second / "output" / "summary.json")
    assert steps.convert(str(source), str(second / "output")) == str(second / "output")
    assert os.path.getmtime(second / "output" / "summary.json") == stamp
    checkpoints = sorted(os.listdir(second / "candidate"))
    assert json.loads((second / "steps" / "finetune.json").read_text())["state"] == "succeeded"
    assert steps.train(str(second / "output"), str(second / "candidate"),
                       {"max_steps": 4, "backbone": "mobilenet"}) == str(second / "candidate")
    assert sorted(os.listdir(second / "candidate")) == checkpoints


def report_cells(path):
    """{data-key: (data-value or text)} of report.html, the verdict and the command, and every image src."""
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.sources, self.links, self.open, self.attrs = {}, [], [], None, {}

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.sources.append(attrs.get("src", ""))
            if tag in ("a", "link", "script"):
                self.links.append(attrs.get("href") or attrs.get("src") or "")
            if "data-key" in attrs or attrs.get("id") in ("verdict", "command"):
                self.open, self.attrs = attrs.get("data-key") or attrs["id"], attrs
                if self.open == "verdict":
                    self.cells["verdict"] = attrs["data-verdict"]
                    self.open = None
                elif "data-value" in attrs:
                    self.cells[self.open] = attrs["data-value"]
                    self.open = None

        def handle_data(self, data):
            if self.open:
                self.cells[self.open] = self.cells.get(self.open, "") + data

        def handle_endtag(self, tag):
            self.open = None

    parser = Cells()
    parser.feed(path.read_text())
    return parser


def check_report(folder, production):
    """report.html holds comparison.json's numbers, its verdict and command, and nothing outside itself."""
    comparison = json.loads((folder / "comparison.json").read_text())
    promotion = json.loads((folder / "promotion.json").read_text())
    assert comparison["resamples"] == 200 and comparison["images"] > 0
    assert comparison["verdict"] in ("better", "worse", "within noise")
    low, high = comparison["ci95"]
    assert low <= comparison["difference"] <= high
    assert comparison["better"] == (comparison["verdict"] == "better")
    for split in ("synthetic", "real"):
        assert set(comparison["per_class"][split]) == set(comparison["candidate_metrics"][split]["per_class_AP"])
        for values in comparison["per_class"][split].values():
            assert set(values) == {"candidate", "production"}
    page = report_cells(folder / "report.html")
    cells = page.cells
    assert cells["verdict"] == comparison["verdict"] and cells["command"] == promotion["promote_command"]
    for split in ("synthetic", "real"):
        for name in ("AP", "AP50", "AP75", "ARmax100"):
            key = "%s.%s" % (split, name)
            assert float(cells[key + ".candidate"]) == comparison["candidate_metrics"][split][name]
            assert float(cells[key + ".production"]) == comparison["production_metrics"][split][name]
            assert json.loads(cells[key + ".ci95"]) == comparison["intervals"][key]["ci95"]
    assert json.loads(cells["real.AP.ci95"]) == comparison["ci95"]
    for name, values in comparison["per_class"]["real"].items():
        assert float(cells["class.%s.real.candidate" % name]) == values["candidate"]
    assert cells["used.production model"] == str(production / "models" / "night-1")
    assert len(page.sources) >= 3 and all(src.startswith("data:image/png;base64,") for src in page.sources)
    assert not page.links                                  # self-contained: no links, scripts or stylesheets
    print("report.html: %d bytes, %d pictures" % ((folder / "report.html").stat().st_size, len(page.sources)))


def test_a_failed_local_run_names_its_step_and_resumes_only_with_its_own_settings(tmp_path):
    first = ["pipeline", "run", "--local", "--source", tmp_path / "nothing-here", "--work-dir", tmp_path / "work",
             "--run-id", "broken", *SMALL]
    code, out, err = run(*first)
    assert code == 1
    assert "the pipeline failed at its convert step" in err and "does not exist" in err
    folder = tmp_path / "work" / "runs" / "broken"
    records = {p.name: p.read_bytes() for p in (folder / "steps").iterdir()}
    code, out, err = run(*first, "--max-steps", 7, "--backbone", "resnet-18")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "run broken was started with other settings (backbone \"mobilenet\", now \"resnet-18\"; max-steps 4, " \
           "now 7); the same command resumes it, another --run-id starts a new run" in err
    assert {p.name: p.read_bytes() for p in (folder / "steps").iterdir()} == records      # untouched
    code, out, err = run(*first)                    # the same command is the same run again
    assert code == 1 and "the pipeline failed at its convert step" in err


def test_a_resumed_run_shows_its_steps_as_they_happen_not_the_old_records(tmp_path):
    from launcher.pipeline import local_run, runs
    folder = str(tmp_path / "runs" / "r1")
    for step, state in (("train", "failed"), ("evaluate", "succeeded"), ("promote", "succeeded")):
        runs.record_step(folder, step, state)
    said = []
    watcher = local_run.StepWatcher(folder, said.append, interval=0.05)
    watcher.start()
    runs.record_step(folder, "train", "running")
    runs.record_step(folder, "train", "succeeded")
    watcher.stop()
    assert [line.split("] ", 1)[1].split()[:2] for line in said] in ([["train", "succeeded"]],
                                                                     [["train", "running"], ["train", "succeeded"]])


def _candidate(folder, value):
    import tensorflow as tf
    folder.mkdir(parents=True)
    tf.train.Checkpoint(v=tf.Variable(float(value))).save(str(folder / "ckpt"))
    (folder / "params.yaml").write_text("runtime: {}\n")
    (folder / "metrics.json").write_text(json.dumps({"AP": value}))
    return str(folder)


def test_a_promotion_killed_at_any_change_leaves_a_valid_pointer(tmp_path):
    from launcher.decide import production as production_lib
    from test_integrity_kills import killed_at
    prod = tmp_path / "prod"
    first, second = _candidate(tmp_path / "c1", 0.1), _candidate(tmp_path / "c2", 0.2)
    production_lib.promote(first, str(prod), "run-1")
    kills = 0
    for change in range(1, 100):
        trial = tmp_path / ("prod%d" % change)
        shutil.copytree(prod, trial)
        code = killed_at(change, lambda: production_lib.promote(second, str(trial), "run-2") and 0)
        pointer = json.loads((trial / "production.json").read_text())
        assert pointer["current"]["name"] in ("run-1", "run-2")
        assert (pathlib.Path(pointer["current"]["model"]) / "COMPLETE").exists()
        if code == 0:
            assert pointer["current"]["name"] == "run-2"
            break
        kills += 1
        production_lib.promote(second, str(trial), "run-2")        # the next promotion finishes it
        pointer = json.loads((trial / "production.json").read_text())
        assert pointer["current"]["name"] == "run-2" and pointer["previous"]["name"] == "run-1"
        assert (trial / "models" / "run-2" / "COMPLETE").exists()
        assert not [p for p in (trial / "models" / "run-2").iterdir() if ".tmp-" in p.name]
    assert kills >= 5


def test_two_promotions_at_once_are_kept_apart(tmp_path):
    from launcher.decide import production as production_lib
    from tfproc import output
    prod = tmp_path / "prod"
    held = output.claim(str(prod), "someone", what="promotion")
    with pytest.raises(output.OutputBusy, match="another promotion"):
        production_lib.promote(_candidate(tmp_path / "c", 0.3), str(prod), "run-3")
    held.release()
    assert not (prod / "production.json").exists()


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
          "--run-execution-id", "5M6wq80", "--bucket", "b", "--real-dataset", "gs://b/real/output",
          "--usim-token-secret", "projects/%s/secrets/usim" % PROJECT]


def test_vertex_pipeline_run_status_wait_cancel_list(fake_pipelines, google):
    code, out, err = run("pipeline", "run", *VERTEX, "--run-id", "run-1", "--max-steps", 5000,
                         "--service-account", "pipe@%s.iam.gserviceaccount.com" % PROJECT,
                         "--network", "projects/123/global/networks/vpc1", "--labels", "team=vision",
                         "--params-override", "trainer: {steps_per_loop: 50}")
    assert code == 0, err
    (create,) = google.calls("POST", r"/v1/%s/pipelineJobs" % PARENT)
    assert create["query"]["pipelineJobId"] == ["run-1"]
    body = create["body"]
    assert body["displayName"] == "run-1" and body["pipelineSpec"]["pipelineInfo"]["name"] == "synthdet-train-evaluate-promote"
    assert body["serviceAccount"] == "pipe@%s.iam.gserviceaccount.com" % PROJECT
    assert body["network"] == "projects/123/global/networks/vpc1" and body["labels"] == {"team": "vision"}
    config = body["runtimeConfig"]
    assert config["gcsOutputDirectory"] == "gs://b/pipelines"
    values = config["parameterValues"]
    assert values["run_execution_id"] == "5M6wq80" and values["backend"] == "vertex" and values["max_steps"] == 5000
    assert values["work_dir"] == "gs://b/pipelines/work" and values["production_dir"] == "gs://b/pipelines/work/production"
    assert values["run_name"] == ""            # each run's folder comes from its pipeline job's name
    assert values["usim_token_secret"] == "projects/%s/secrets/usim" % PROJECT
    assert json.loads(values["params_override"]) == {"trainer": {"steps_per_loop": 50}}
    assert values["real_dataset"] == "gs://b/real/output" and values["promote_mode"] == "manual"
    assert "pipeline run %s/pipelineJobs/run-1: PREPARING" % PARENT in out
    assert "gs://b/pipelines/work/runs/run-1" in out
    common = ["--project", PROJECT, "--region", "us-central1"]
    code, out, err = run("pipeline", "wait", "run-1", *common, "--interval", 0)
    assert code == 0 and "pipeline run run-1: SUCCEEDED" in out
    assert run("pipeline", "cancel", "run-1", *common)[0] == 0
    assert google.calls("POST", r"/v1/%s/pipelineJobs/run-1:cancel" % PARENT)
    code, out, _ = run("pipeline", "list", *common)
    assert code == 0 and "run-1" in out


def test_a_failed_vertex_run_names_its_failed_step(fake_pipelines, google):
    google.route("GET", r"/v1/%s/pipelineJobs/bad" % PARENT, lambda r: (200, {
        "name": "%s/pipelineJobs/bad" % PARENT, "displayName": "bad", "state": "PIPELINE_STATE_FAILED",
        "error": {"message": "The DAG failed because some tasks failed."},
        "jobDetail": {"taskDetails": [
            {"taskName": "bad", "state": "FAILED"},
            {"taskName": "convert", "state": "SUCCEEDED"},
            {"taskName": "train", "state": "FAILED", "error": {"message": "Vertex job synthdet_bad_train ended FAILED"}},
            {"taskName": "evaluate", "state": "CANCELLED"}]}}))
    code, out, err = run("pipeline", "wait", "bad", "--project", PROJECT, "--region", "us-central1", "--interval", 0)
    assert code == 1 and "ended FAILED at its train step" in err
    assert "failed step: train: Vertex job synthdet_bad_train ended FAILED" in out


def test_listings_page_through(google):
    pages = {None: ({"pipelineJobs": [{"name": "%s/pipelineJobs/r%d" % (PARENT, i)} for i in range(3)],
                     "nextPageToken": "t2"}),
             "t2": ({"pipelineJobs": [{"name": "%s/pipelineJobs/r%d" % (PARENT, i)} for i in range(3, 5)]})}
    google.route("GET", r"/v1/%s/pipelineJobs" % PARENT,
                 lambda r: (200, pages[(r["query"].get("pageToken") or [None])[0]]))
    schedules = {None: {"schedules": [{"name": "%s/schedules/1" % PARENT}], "nextPageToken": "s2"},
                 "s2": {"schedules": [{"name": "%s/schedules/2" % PARENT}]}}
    google.route("GET", r"/v1/%s/schedules" % PARENT,
                 lambda r: (200, schedules[(r["query"].get("pageToken") or [None])[0]]))
    code, out, _ = run("pipeline", "list", "--project", PROJECT, "--limit", 10)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["r%d" % i for i in range(5)]
    code, out, _ = run("pipeline", "schedules", "--project", PROJECT)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["1", "2"]


def test_vertex_schedule_every_two_weeks_and_its_management(fake_pipelines, google):
    code, out, err = run("pipeline", "run", *VERTEX, "--schedule", "0 3 1,15 * *", "--run-id", "sched",
                         "--service-account", "pipe@%s.iam.gserviceaccount.com" % PROJECT, "--labels", "team=vision")
    assert code == 0, err
    (create,) = google.calls("POST", r"/v1/%s/schedules" % PARENT)
    body = create["body"]
    assert body["cron"] == "0 3 1,15 * *" and body["maxConcurrentRunCount"] == "1"
    assert body["createPipelineJobRequest"]["parent"] == PARENT
    job = body["createPipelineJobRequest"]["pipelineJob"]
    assert job["serviceAccount"] == "pipe@%s.iam.gserviceaccount.com" % PROJECT and job["labels"] == {"team": "vision"}
    values = job["runtimeConfig"]["parameterValues"]
    assert values["bucket"] == "b" and values["run_name"] == "" and values["work_dir"] == "gs://b/pipelines/work"
    assert "pipelineJobId" not in body["createPipelineJobRequest"]     # each scheduled run gets its own id
    assert not google.calls("POST", r"/v1/%s/pipelineJobs" % PARENT)
    common = ["--project", PROJECT, "--region", "us-central1"]
    code, out, _ = run("pipeline", "schedules", *common)
    assert code == 0 and "77" in out and "0 3 1,15 * *" in out
    assert run("pipeline", "schedules", *common, "--pause", "77")[0] == 0
    assert run("pipeline", "schedules", *common, "--delete", "77")[0] == 0
    assert google.calls("POST", r"/v1/%s/schedules/77:pause" % PARENT)
    assert google.calls("DELETE", r"/v1/%s/schedules/77" % PARENT)


@pytest.mark.parametrize("failure", ["dropped", "503"])
def test_a_schedule_create_whose_answer_is_lost_makes_one_schedule(fake_pipelines, google, monkeypatch, failure):
    import launcher.cloud.google_api
    monkeypatch.setattr(launcher.cloud.google_api.time, "sleep", lambda seconds: None)
    made = []

    def create_then_lose_the_answer(request):
        made.append(dict(request["body"], name="%s/schedules/%d" % (PARENT, 70 + len(made)), state="ACTIVE"))
        if len(made) == 1:
            return None if failure == "dropped" else (503, {"error": {"code": 503, "message": "backend error"}})
        return 200, made[-1]

    def listed(request):
        wanted = (request["query"].get("filter") or [""])[0]
        return 200, {"schedules": [s for s in made if wanted == 'display_name="%s"' % s["displayName"]]}

    google.route("POST", r"/v1/%s/schedules" % PARENT, create_then_lose_the_answer)
    google.route("GET", r"/v1/%s/schedules" % PARENT, listed)
    code, out, err = run("pipeline", "run", *VERTEX, "--schedule", "0 3 1,15 * *", "--run-id", "sched")
    assert code == 0, err
    assert len(made) == 1, "a second schedule was made: every scheduled run would be paid twice"
    assert len(google.calls("POST", r"/v1/%s/schedules" % PARENT)) == 1
    assert "schedule %s/schedules/70: 0 3 1,15 * *" % PARENT in out


def test_a_schedule_create_that_keeps_failing_says_so_and_makes_none(fake_pipelines, google, monkeypatch):
    import launcher.cloud.google_api
    monkeypatch.setattr(launcher.cloud.google_api.time, "sleep", lambda seconds: None)
    google.route("POST", r"/v1/%s/schedules" % PARENT, lambda r: (503, {"error": {"code": 503, "message": "down"}}))
    google.route("GET", r"/v1/%s/schedules" % PARENT, lambda r: (200, {}))
    code, _, err = run("pipeline", "run", *VERTEX, "--schedule", "0 3 1,15 * *", "--run-id", "sched")
    assert code == 1 and "creating schedule sched failed after 5 attempts: HTTP 503: down" in err
    assert len(google.calls("POST", r"/v1/%s/schedules" % PARENT)) == 5


@pytest.mark.parametrize("cron, accepted", [
    ("0 3 1,15 * *", True), ("CRON_TZ=Europe/Paris 0 3 * * MON", True), ("TZ=America/New_York 30 2 * JAN-JUN 1-5", True),
    ("*/15 6-18 * * *", True), ("99 99 99 99 99", False), ("every day", False),
    ("TZ=Mars/Olympus 0 3 * * *", False), ("0 3 * *", False), ("0 3 31 2 * *", False),
])
def test_cron_is_checked_as_vertex_takes_it(cron, accepted):
    from launcher import errors
    from launcher.cloud import pipelines_api
    if accepted:
        assert pipelines_api.check_cron(cron) == cron
    else:
        with pytest.raises(errors.UsageError, match="--schedule"):
            pipelines_api.check_cron(cron)


def test_vertex_pipeline_dry_run_sends_nothing(fake_pipelines, google):
    code, out, err = run("pipeline", "run", *VERTEX, "--dry-run")
    assert code == 0, err
    assert not google.calls(path_pattern=r"/v1/.*")
    body = json.loads(out[out.index("{"):])
    assert body["runtimeConfig"]["parameterValues"]["run_definition_id"] == "El64GVP"


def test_the_pipelines_network_and_account_reach_its_training_jobs(fake_pipelines, google):
    network, account = "projects/123/global/networks/vpc", "pipe@%s.iam.gserviceaccount.com" % PROJECT
    code, out, err = run("pipeline", "run", *VERTEX, "--dry-run", "--network", network, "--service-account", account)
    assert code == 0, err
    body = json.loads(out[out.index("{"):])
    assert body["network"] == network and body["serviceAccount"] == account       # the pipeline run's own
    values = body["runtimeConfig"]["parameterValues"]
    assert values["network"] == network and values["service_account"] == account     # and its jobs'
    tasks = body["pipelineSpec"]["root"]["dag"]["tasks"]
    for step in ("train", "finetune"):
        inputs = tasks[step]["inputs"]["parameters"]
        assert inputs["network"]["componentInputParameter"] == "network", step
        assert inputs["service_account"]["componentInputParameter"] == "service_account", step


@pytest.mark.parametrize("option, value", [("--network", "vpc"), ("--network", "projects/1/global/networks/v\n"),
                                           ("--service-account", "pipe@example.com")])
def test_a_bad_pipeline_network_or_account_is_refused_before_sending(fake_pipelines, google, option, value):
    code, _, err = run("pipeline", "run", *VERTEX, "--run-id", "bad-1", option, value)
    assert code == 2 and option in err and "Traceback" not in err
    assert not google.calls(path_pattern=r"/v1/.*")


def test_the_transfer_step_reads_its_token_from_secret_manager_and_is_found_again(google, tmp_path, monkeypatch):
    import base64

    from fakes import FakeServer
    from launcher.pipeline import steps
    google.route("GET", r"/v1/projects/%s/secrets/usim/versions/latest:access" % PROJECT,
                 lambda r: (200, {"name": "x", "payload": {"data": base64.b64encode(b"secret-token\n").decode()}}))
    monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", google.url + "/")
    monkeypatch.setenv("USIM_HOME", str(tmp_path / "no-usim"))
    monkeypatch.delenv("USIM_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("USIM_PROJECT_ID", "unity-proj")
    with FakeServer() as usim:
        monkeypatch.setenv("USIM_API_URL", usim.url)
        usim.route("PUT", r"/v1/projects/unity-proj/data_transfer", lambda r: (200, {"id": "tr-7", "status": "running"}))
        usim.route("GET", r"/v1/projects/unity-proj/data_transfer/tr-7", lambda r: (200, {"id": "tr-7", "status": "success"}))
        folder = str(tmp_path / "runs" / "r1")
        for _ in range(2):      # a retried step finds the transfer it started
            found = steps.transfer("", "El64GVP", "5M6wq80", "b", folder, "projects/%s/secrets/usim" % PROJECT)
            assert found == "gs://b/projects/unity-proj/run_executions/urn:run_definitions:El64GVP/urn:run_executions:5M6wq80"
        assert len(usim.calls("PUT")) == 1
        assert usim.calls("PUT")[0]["headers"]["authorization"] == "Bearer secret-token"
    recorded = (tmp_path / "runs" / "r1" / "transfer.json").read_text()
    assert json.loads(recorded)["id"] == "tr-7" and "secret-token" not in recorded


def test_the_vertex_train_step_re_attaches_and_a_cancelled_pipeline_cancels_its_job(google, dataset, monkeypatch):
    import signal
    import threading
    import time as time_module

    from launcher.pipeline import steps
    from test_vertex import IMAGE, JOBS, FakeVertex
    from test_launcher import job_dir
    fake = FakeVertex(google)
    armed = []

    def running(request):       # the pipeline is cancelled while the step follows its job (its handler is set)
        if armed:
            armed.clear()
            threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        return 200, dict(fake.jobs[request["match"].group(1)], state="JOB_STATE_RUNNING")
    google.route("GET", JOBS + r"/(\d+)", running)
    import launcher.jobs.training
    monkeypatch.setattr(launcher.jobs.training.time, "sleep", lambda s: time_module.monotonic() and threading.Event().wait(0.05))
    job_id = steps.vertex_job_id("synthdet-20261201-030000")
    assert job_id == "synthdet_synthdet_20261201_030000_train"
    armed.append(True)
    with pytest.raises(steps.StepFailed, match="cancel"):
        steps.train_on_vertex(dataset, job_dir("pipe2"), {"max_steps": 9}, PROJECT, "us-central1", IMAGE,
                              job_id=job_id, poll_seconds=0.05)
    assert google.calls("POST", JOBS + r"/1000:cancel")
    # the task retried: the same job is found, not a second one started
    armed.append(True)
    with pytest.raises(steps.StepFailed):
        steps.train_on_vertex(dataset, job_dir("pipe2"), {"max_steps": 9}, PROJECT, "us-central1", IMAGE,
                              job_id=job_id, poll_seconds=0.05)
    assert len(google.calls("POST", JOBS)) == 1 and len(fake.jobs) == 1


def test_the_train_step_says_its_starting_point_and_names_a_damaged_pointer(tmp_path):
    from launcher.decide import production as production_lib
    from launcher.errors import StepFailed
    from launcher.pipeline import runs, steps
    folder, prod = str(tmp_path / "runs" / "r2"), tmp_path / "prod"
    production_lib.promote(_candidate(tmp_path / "old", 0.4), str(prod), "r1")
    with pytest.raises(StepFailed, match="backend must be local or vertex"):
        runs.recorded(folder, "train", steps.train_from, folder, "unused", {"max_steps": 4}, "production", str(prod),
                      "nowhere", "", "", "", "cpu", "job")
    records = {r["step"]: r for r in runs.step_records(folder)}
    assert records["train"]["state"] == "failed"
    options, said = steps.starting_point({"max_steps": 4, "init_checkpoint": "imagenet"}, "production", str(prod))
    assert said == "the candidate starts from the production model %s (its whole network)" % (prod / "models" / "r1")
    assert options == {"max_steps": 4, "init_from": str(prod / "models" / "r1")}
    (prod / "production.json").write_text("{cut")
    with pytest.raises(StepFailed, match=r"--init-from production: .*production.json is not valid JSON"):
        runs.recorded(folder, "train", steps.train_from, folder, "unused", {}, "production", str(prod), "local", "",
                      "", "", "cpu", "job")
    record = {r["step"]: r for r in runs.step_records(folder)}["train"]
    assert record["state"] == "failed" and "production.json is not valid JSON" in record["detail"]
