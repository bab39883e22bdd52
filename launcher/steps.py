"""The pipeline's steps as plain functions over the libraries (no CLI is called), each safe to run
again: run twice, a step gives back its complete result instead of redoing or breaking it.

The Kubeflow components in ``launcher/pipeline.py`` are thin wrappers around these; they run in the
project's image on Vertex AI Pipelines, or in this environment with ``pipeline run --local``. Every
path of a run lies under its own folder, ``WORK_DIR/runs/<run>/``.
"""
import json
import math
import os
import re
import shlex
import signal
import time

from launcher import production as production_lib
from tfproc import fsutil
from trainer import cocoap

PRODUCTION = production_lib.POINTER
RESAMPLES = 200
# Fewer eval images than this give no verdict. Simulated identical models (normal per-image
# differences, 200 resamples) are called "better" by the percentile interval 49% of the time on one
# image, 13% on 3, 9% on 5 and 5.5% on 10, where the interval promises 2.5%.
MIN_IMAGES = 10
REPORTED = ("AP", "AP50", "AP75", "ARmax100")      # the report's metric table, each with its interval


class StepFailed(RuntimeError):
    pass


def _join(folder, name):
    return folder.rstrip("/") + "/" + name


def run_name(given, job_name):
    """The run's name: the one given (a local run), else the pipeline job's (KFP's placeholder)."""
    name = given or job_name
    if not name or name.startswith("{{"):
        raise StepFailed("no run name: the pipeline job's name was not substituted")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def run_dir(work_dir, name):
    return _join(_join(work_dir, "runs"), name)


def _read_json(path):
    return fsutil.read_json(path) if fsutil.is_file(path) else None


def _write_json(path, value):
    text = json.dumps(_finite(value), indent=2, sort_keys=True, allow_nan=False)
    fsutil.write_atomically(path, (text + "\n").encode("utf-8"))


def _finite(value):
    """``value`` with NaN and infinities as None, so that the file is JSON (which has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def record_step(folder, step, state, detail=""):
    """RUN_DIR/steps/<step>.json: which step ran, and how it ended (a failed local run names it)."""
    _write_json(_join(_join(folder, "steps"), step + ".json"), {"step": step, "state": state, "detail": detail,
                                                                  "time": time.time()})


def step_records(folder):
    """Every RUN_DIR/steps/<step>.json record."""
    steps = _join(folder, "steps")
    names = sorted(fsutil.list_tree(steps))
    return [r for r in (_read_json(_join(steps, n)) for n in names if not n.endswith("-attempts.json")) if r]


def failed_step(folder):
    """The step of a run that failed, from its records, or None."""
    steps = _join(folder, "steps")
    for name in sorted(fsutil.list_tree(steps)):
        record = _read_json(_join(steps, name))
        if record and record.get("state") == "failed":
            return record
    return None


def recorded(folder, step, function, *args):
    """``function(*args)``, with RUN_DIR/steps/<step>.json saying it ran and how it ended."""
    record_step(folder, step, "running")
    try:
        result = function(*args)
    except StepFailed as error:
        record_step(folder, step, "failed", str(error))
        raise
    except Exception as error:
        record_step(folder, step, "failed", "%s: %s" % (type(error).__name__, error))
        raise
    record_step(folder, step, "succeeded")
    return result


def train_options(max_steps, train_batch_size, num_eval_images, train_steps_per_eval, warmup_learning_rate,
                  warmup_steps, initial_learning_rate, image_size, fpn_type, aug_scale_min, aug_scale_max, backbone,
                  params_override, init_checkpoint):
    """The pipeline's parameters as ``trainer.commands.train`` keyword arguments; zeros and empty
    strings mean the trainer's defaults."""
    options = {"max_steps": max_steps, "train_batch_size": train_batch_size,
               "train_steps_per_eval": train_steps_per_eval, "warmup_learning_rate": warmup_learning_rate,
               "warmup_steps": warmup_steps, "initial_learning_rate": initial_learning_rate, "fpn_type": fpn_type,
               "aug_scale_min": aug_scale_min, "aug_scale_max": aug_scale_max, "num_eval_images": num_eval_images,
               "image_size": image_size, "backbone": backbone, "init_checkpoint": init_checkpoint}
    options = {k: v for k, v in options.items() if v not in (0, 0.0, "", None)}
    if params_override:
        options["params_overrides"] = [params_override]
    return options


def starting_point(options, init_from, production_dir):
    """The training options with ``init_from`` "production": the current production model's whole
    network, or, with no production model yet, ``--init-checkpoint`` as before (both said)."""
    from tfproc import console
    if init_from not in ("", "production"):
        raise StepFailed("init_from must be production or empty, got %r" % init_from)
    if not init_from:
        return options
    model = production_model(production_dir)
    if model is None:
        console.say("no production model in %s yet: the candidate starts from %s instead" % (
            production_dir, "--init-checkpoint %s" % options["init_checkpoint"] if options.get("init_checkpoint")
            else "the default of --init-checkpoint"))
        return options
    console.say("the candidate starts from the production model %s (its whole network)" % model)
    options = dict(options, init_from=model)
    options.pop("init_checkpoint", None)
    return options


def train_candidate(dataset, model_dir, options, backend, project, region, image, accelerator, job_id, capacity="{}",
                    timeout=""):
    """Train here (``backend`` local) or as a Vertex AI custom job; returns the checkpoints' folder.
    ``capacity``: ``launcher.capacity.Capacity.to_json()`` and ``timeout`` (``12h``; empty:
    Vertex's 7 days) for the Vertex job."""
    if backend == "vertex":
        from launcher.capacity import Capacity
        return train_on_vertex(dataset, model_dir, options, project, region, image, accelerator, job_id,
                               capacity=Capacity.from_json(capacity), timeout=timeout)
    if backend != "local":
        raise StepFailed("backend must be local or vertex, got %s" % backend)
    return train(dataset, model_dir, options)


def finetune(folder, name, model_dir, dataset, options, backend, project, region, image, accelerator, capacity="{}",
             timeout=""):
    """The fine-tuning of run ``name``: the candidate ``model_dir``'s whole network trained on
    ``dataset`` (with ``options``) into RUN_DIR/finetuned, as a job of its own; with no dataset the
    candidate goes on as it is."""
    if not dataset:
        record_step(folder, "finetune", "skipped", "no --finetune-dataset")
        return model_dir
    options = dict(options, init_from=model_dir)
    options.pop("init_checkpoint", None)
    return recorded(folder, "finetune", train_candidate, dataset, _join(folder, "finetuned"), options, backend,
                    project, region, image, accelerator, vertex_job_id(name + "_finetune"), capacity, timeout)


def unity_token(secret=""):
    """The Unity Simulation token: from Secret Manager (``projects/P/secrets/S[/versions/V]``), or the
    usual places (--token, USIM_ACCESS_TOKEN, ~/.usim/token.json)."""
    from launcher import usim
    if not secret:
        return usim.resolve_token(None)
    from launcher import secrets, usim
    return usim.well_formed(secrets.access(secret))


def transfer(source, run_definition_id="", run_execution_id="", bucket="", folder="", token_secret=""):
    """The run's folder: ``source`` when given, else the bucket path a Unity Simulation transfer fills.
    The transfer's id is recorded in RUN_DIR/transfer.json as soon as it starts, so a retried step
    waits for that transfer instead of starting another."""
    if source:
        return source.rstrip("/")
    if not (run_definition_id and run_execution_id and bucket):
        raise StepFailed("pass --source, or --run-definition-id, --run-execution-id and --bucket")
    from launcher import usim
    from launcher.errors import LauncherError
    try:
        client = usim.TransferClient(usim.resolve_api_url(None), usim.resolve_project_id(None),
                                     unity_token(token_secret))
        record_path = _join(folder, "transfer.json") if folder else None
        record = _read_json(record_path) if record_path else None
        if record and record.get("run_execution_id") == run_execution_id:
            transfer_id = record["id"]
        else:
            transfer_id = usim.transfer_id(client.start(bucket, run_definition_id, run_execution_id))
            if record_path:
                _write_json(record_path, {"id": transfer_id, "run_definition_id": run_definition_id,
                                          "run_execution_id": run_execution_id, "bucket": bucket})
        client.wait(transfer_id, 6 * 3600, 30.0)
    except LauncherError as error:
        raise StepFailed("the Unity Simulation transfer failed: %s" % error)
    return "gs://%s/projects/%s/run_executions/urn:run_definitions:%s/urn:run_executions:%s" % (
        bucket, client.project_id, run_definition_id, run_execution_id)


def convert(source, output, eval_pct=20.0, beam_args=()):
    """The conversion (``python main.py``) of the run: DirectRunner here, or Dataflow through
    ``beam_args``. A complete output already there (a retried step) is reused; a partial one is
    finished or replaced by the conversion's own recovery."""
    from tfproc import cli
    from tfproc import output as output_lib
    from tfproc import pipeline as tfproc_pipeline
    if fsutil.is_file(fsutil.join(output, tfproc_pipeline.SUMMARY)) and not [
            rel for rel in fsutil.list_tree(output) if rel.endswith("/" + output_lib.COMMITTED)]:
        summary = fsutil.read_json(fsutil.join(output, tfproc_pipeline.SUMMARY))
        asked = {"source": source.rstrip("/"), "eval_pct": float(eval_pct)}
        found = {"source": str(summary.get("source", "")).rstrip("/"), "eval_pct": float(summary.get("eval_pct", -1))}
        if found != asked:
            raise StepFailed("%s was converted from %s with --eval-pct %g; this run asks for %s with %g. Use another "
                             "--run-id for other data" % (output, found["source"], found["eval_pct"], asked["source"],
                                                          asked["eval_pct"]))
        return output
    try:
        cli.convert(source, eval_pct, output, overwrite=True, beam_args=beam_args)
    except (cli.UsageError, tfproc_pipeline.ConversionFailed, output_lib.OutputBusy, output_lib.OutputUnusable) as error:
        raise StepFailed("the conversion of %s failed: %s" % (source, error))
    return output


def trained_to(model_dir, steps):
    """Whether ``model_dir`` holds a checkpoint at ``steps`` or beyond."""
    from trainer import engine
    step = engine.latest_step(model_dir)
    return step is not None and step >= int(steps)


def train(dataset, model_dir, options=None):
    """The trainer on this machine; ``options`` are ``trainer.commands.train``'s keyword arguments.
    A model dir trained to ``max_steps`` already is reused."""
    from trainer import commands, config
    options = dict(options or {})
    if trained_to(model_dir, options.get("max_steps") or config.HYPERPARAMETERS["max_steps"]):
        check_trained_as_asked(model_dir, options)
        return model_dir
    try:
        return commands.train(dataset, model_dir, **options)
    except commands.TrainerError as error:
        raise StepFailed("training on %s failed: %s" % (dataset, error))


def check_trained_as_asked(model_dir, options):
    """Refuse to reuse a model trained with other settings than this run asks for."""
    import yaml

    from trainer import config
    params = yaml.safe_load(fsutil.read_bytes(_join(model_dir, "params.yaml"))) or {}
    model, trainer_params = params.get("task", {}).get("model", {}), params.get("trainer", {})
    backbone = config.BACKBONES.get(options.get("backbone") or "resnet-50", {})
    asked = {"backbone": backbone.get("type"), "max_steps": int(options.get("max_steps") or
                                                                config.HYPERPARAMETERS["max_steps"])}
    found = {"backbone": (model.get("backbone") or {}).get("type"), "max_steps": trainer_params.get("train_steps")}
    if "fpn_type" in options:
        asked["fpn_type"], found["fpn_type"] = options["fpn_type"], (model.get("decoder") or {}).get("type")
    if "train_batch_size" in options:
        asked["train_batch_size"] = int(options["train_batch_size"])
        found["train_batch_size"] = params.get("task", {}).get("train_data", {}).get("global_batch_size")
    different = sorted(k for k in asked if asked[k] != found[k])
    if different:
        raise StepFailed("%s was trained with other settings (%s); use another --run-id to train anew"
                         % (model_dir, ", ".join("%s %s, asked %s" % (k, found[k], asked[k]) for k in different)))


def evaluate(model_dir, dataset, name, split="eval", output=None):
    """Score ``model_dir`` on a conversion output; returns its metrics (in OUTPUT, by default
    MODEL_DIR/eval_NAME/)."""
    from trainer import commands
    try:
        metrics = commands.evaluate(dataset, model_dir, split, output=output or _join(model_dir, "eval_" + name))
    except commands.TrainerError as error:
        raise StepFailed("evaluating %s on %s failed: %s" % (model_dir, dataset, error))
    metrics["matches"] = _join(os.path.dirname(metrics.pop("path")), cocoap.MATCHES)
    return metrics


def evaluate_all(model_dir, dataset, real_dataset="", output=None):
    """``{"synthetic": metrics, "real": metrics}`` (real only with a real dataset); each into
    OUTPUT/NAME (default MODEL_DIR/eval_NAME)."""
    where = (lambda name: _join(output, name)) if output else (lambda name: None)
    results = {"synthetic": evaluate(model_dir, dataset, "synthetic", output=where("synthetic"))}
    if real_dataset:
        results["real"] = evaluate(model_dir, real_dataset, "real", split=_split_with_images(real_dataset),
                                   output=where("real"))
    return results


def _split_with_images(dataset):
    from trainer import dataset as dataset_lib
    data = dataset_lib.load(dataset)
    return "eval" if data.images["eval"] else "train"


def default_metric(real_dataset):
    return "real.AP" if real_dataset else "synthetic.AP"


def metric_value(results, metric):
    where, _, key = metric.partition(".")
    value = (results.get(where) or {}).get(key)
    if value is None:
        raise StepFailed("no metric %s in %s" % (metric, sorted(results)))
    return float(value)


def production_model(production_dir):
    """The production model's folder, or None when nothing was promoted yet."""
    return production_lib.current_model(production_dir)


def compare(candidate, production_dir, dataset, real_dataset="", metric="", folder="", min_improvement=0.0,
            resamples=RESAMPLES):
    """Candidate against the production model on the same images, by ``metric`` (e.g. real.AP):
    the difference, its 95% interval from a paired bootstrap over the images (the detections and
    their matching computed once), and the verdict: ``better`` when the interval lies above
    ``min_improvement``, ``worse`` when it lies below 0, ``within noise`` otherwise. The
    production model's scores go under FOLDER/production_scores/, never into the production folder;
    the comparison is written to FOLDER/comparison.json."""
    metric = metric or default_metric(real_dataset)
    where, _, key = metric.partition(".")
    production = production_model(production_dir)
    result = {"metric": metric, "candidate": metric_value(candidate, metric), "candidate_metrics": candidate,
              "production_model": production, "min_improvement": min_improvement,
              "min_images": MIN_IMAGES}
    if production is None:
        usable = math.isfinite(result["candidate"]) and result["candidate"] >= 0
        result.update(production=None, better=usable, verdict="first model" if usable else "scored nothing",
                      difference=None, ci95=None, resamples=0, images=candidate[where].get("images"),
                      reason="no production model yet; the candidate's %s is %.4f" % (metric, result["candidate"])
                      if usable else "no production model yet, but the candidate's %s is %s: it scored nothing, so "
                      "it is not promoted" % (metric, result["candidate"]))
        scored = {}
    else:
        scored = evaluate_all(production, dataset, real_dataset,
                              output=_join(folder, "production_scores") if folder else _join(production, "eval"))
        result.update(production=metric_value(scored, metric), production_metrics=scored)
        tables = {split: _tables(candidate[split], scored[split]) for split in ("synthetic", "real")
                  if split in candidate and split in scored}
        result["intervals"] = {"%s.%s" % (split, name): _interval(tables[split], name, resamples)
                               for split in tables for name in sorted(set(REPORTED) | {key})}
        result.update(result["intervals"][metric])
        result["verdict"], result["reason"] = _verdict(result, metric, min_improvement)
        result["better"] = result["verdict"] == "better"
    result["per_class"] = {name: {cls: {"candidate": ap, "production": (scored.get(name) or {}).get(
        "per_class_AP", {}).get(cls)} for cls, ap in sorted((candidate[name].get("per_class_AP") or {}).items())}
        for name in ("synthetic", "real") if name in candidate}
    if folder:
        _write_json(_join(folder, "comparison.json"), result)
    return result


def _verdict(result, metric, min_improvement):
    """The verdict and the sentence that explains it. No resample that scores both models (no
    ground truth in the images) is "nothing to compare"; fewer than MIN_IMAGES images is "within
    noise" whatever the interval, which from so few images is too narrow to trust."""
    if result["ci95"] is None:
        return cocoap.verdict(None), ("%s: no resample of the %d eval images holds a ground-truth box to score, so "
                                      "there is nothing to compare" % (metric, result["images"]))
    scores = "%s: candidate %.4f, production %.4f; difference %+.4f" % (
        metric, result["candidate"], result["production"], result["difference"])
    interval = "95%% interval [%+.4f, %+.4f] over %d resamples of %d images" % (
        result["ci95"][0], result["ci95"][1], result["resamples"], result["images"])
    if result["images"] < MIN_IMAGES:
        return "within noise", "%s, %s: within noise, since a verdict needs at least %d eval images" % (
            scores, interval, MIN_IMAGES)
    verdict = cocoap.verdict(result["ci95"], min_improvement)
    return verdict, "%s, %s: %s" % (scores, interval, verdict)


def _tables(candidate_scores, production_scores):
    """The per-image matches of two evaluations of the same images (``trainer.cocoap`` tables)."""
    tables = []
    for scores in (candidate_scores, production_scores):
        try:
            tables.append(cocoap.load(fsutil.read_bytes(scores["matches"])))
        except (KeyError, OSError, ValueError) as error:
            raise StepFailed("the per-image matches of an evaluation (%s) cannot be read (%s): evaluate the model "
                             "again with this version" % (scores.get("matches"), error))
    return tables


def _interval(tables, key, resamples):
    """The paired bootstrap of ``key`` between the two evaluations."""
    if key not in cocoap.SUPPORTED:
        raise StepFailed("%s has no interval: compare by one of %s" % (key, ", ".join(cocoap.SUPPORTED)))
    try:
        return cocoap.paired_bootstrap(tables[0], tables[1], key, resamples)
    except ValueError as error:
        raise StepFailed(str(error))


def promote_command(candidate_dir, production_dir, run):
    """The promote command, shell-quoted: pasted, it gets exactly these paths."""
    return shlex.join(["python", "-m", "launcher", "pipeline", "promote", "--candidate", str(candidate_dir),
                       "--production", str(production_dir), "--run", str(run)])


def promote(comparison, candidate_dir, production_dir, mode="manual", folder="", run=""):
    """``manual``: a report of which is better and the command that promotes the candidate.
    ``auto``: promote a better candidate (launcher.production: a write-once version and the pointer
    replaced). The report goes to FOLDER/promotion.json. Run again, it changes nothing more."""
    run = run or os.path.basename(folder.rstrip("/")) or "manual"
    report = {"metric": comparison["metric"], "candidate": comparison["candidate"],
              "production": comparison.get("production"), "better": comparison["better"],
              "verdict": comparison.get("verdict"), "difference": comparison.get("difference"),
              "ci95": comparison.get("ci95"),
              "reason": comparison.get("reason", ""), "mode": mode, "candidate_dir": candidate_dir,
              "production_dir": production_dir, "promoted": False, "run": run, "time": round(time.time(), 1),
              "promote_command": promote_command(candidate_dir, production_dir, run)}
    try:
        current = production_lib.read_pointer(production_dir) if production_dir else None
    except production_lib.PromotionError as error:
        raise StepFailed(str(error))
    if ((current or {}).get("current") or {}).get("source") == production_lib.normal_path(candidate_dir):
        report.update(promoted=True, reason="the candidate is production already")     # a run done again
    elif mode == "auto" and comparison["better"]:
        install(candidate_dir, production_dir, comparison, run)
        report["promoted"] = True
    if folder:
        _write_json(_join(folder, "promotion.json"), report)
        from launcher import report as report_lib
        report["report"] = report_lib.write(folder, comparison, report, candidate_dir, run)
    return report


def install(candidate_dir, production_dir, comparison=None, run="manual"):
    """Make the candidate production, as version ``run``; returns the model's folder."""
    try:
        pointer, _ = production_lib.promote(candidate_dir, production_dir, run, comparison)
    except production_lib.PromotionError as error:
        raise StepFailed(str(error))
    return pointer["current"]["model"]


def record_attempt(job_dir, submission):
    """RUN_DIR/steps/<job dir's name>-attempts.json: every Vertex job a train step started or found
    again, oldest first (an attempt after one that FAILED or was CANCELLED gets an id of its own)."""
    parent, name = job_dir.rstrip("/").rsplit("/", 1)
    path = _join(_join(parent, "steps"), name + "-attempts.json")
    attempts = (_read_json(path) or {}).get("attempts", [])
    for job in (submission.retried_after, submission.job):
        if job is not None and job.name not in [a["job"] for a in attempts]:
            attempts.append({"job": job.name, "id": job.id, "state": job.state, "created": submission.created
                             if job is submission.job else False, "time": time.time()})
    _write_json(path, {"attempts": attempts})


def vertex_job_id(run):
    """A job id that a retried train step finds again (letters, digits and underscores)."""
    return ("synthdet_" + re.sub(r"[^A-Za-z0-9]+", "_", run)).strip("_")[:120] + "_train"


def train_on_vertex(dataset, job_dir, options, project, region, image, accelerator="gpu", job_id=None,
                    on_state=None, poll_seconds=60.0, capacity=None, timeout=""):
    """The same training as a Vertex AI custom job in the project's image, waited for.

    ``options`` are ``trainer.commands.train``'s keyword arguments (hyperparameters, backbone,
    params_overrides, init_checkpoint). With the same ``job_id`` a retried step re-attaches to its
    job instead of starting another; SIGTERM (the pipeline cancelled) cancels the job. Returns the
    folder of its checkpoints (Vertex's AIP_CHECKPOINT_DIR)."""
    from launcher import training
    from launcher.errors import LauncherError
    options = dict(options or {})
    request = training.TrainRequest(
        job_id=job_id or "synthdet_pipeline_%s" % time.strftime("%Y%m%d_%H%M%S"), job_dir=job_dir.rstrip("/"),
        dataset=dataset, accelerator=accelerator, image=image, backbone=options.pop("backbone", "resnet-50"),
        init_checkpoint=options.pop("init_checkpoint", "") or "", init_from=options.pop("init_from", "") or "",
        params_overrides=tuple(options.pop("params_overrides", ())), hyperparameters=options, timeout=timeout or "")
    if capacity is not None:
        request.capacity = capacity
    from launcher import backends
    try:
        backend = backends.backend("vertex", project, region)
        submission = backend.submit(backend.plan(request))
    except LauncherError as error:
        raise StepFailed("training on Vertex AI failed: %s" % error)
    job = submission.job
    record_attempt(job_dir, submission)

    def cancel_job(signum, frame):
        backend.cancel(job.id)
        raise StepFailed("the pipeline was cancelled: asked Vertex AI to cancel job %s" % job.title())

    previous = signal.signal(signal.SIGTERM, cancel_job)
    try:
        job = backend.wait(job.id, poll_seconds, on_state=on_state)
    except LauncherError as error:
        raise StepFailed("following Vertex job %s failed: %s" % (job.title(), error))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if job.state != "SUCCEEDED":
        raise StepFailed("Vertex job %s ended %s%s" % (job.title(), job.state, ": " + job.error if job.error else ""))
    return _join(job_dir, "checkpoints")
