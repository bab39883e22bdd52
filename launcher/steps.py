"""The pipeline's steps as plain functions: each calls this project's own commands (no logic twice).

The Kubeflow components in ``launcher/pipeline.py`` are thin wrappers around these; they run in the
project's image on Vertex AI Pipelines, or in this environment with ``pipeline run --local``.
"""
import json
import os
import time

PRODUCTION = "production.json"


class StepFailed(RuntimeError):
    pass


def _join(folder, name):
    return folder.rstrip("/") + "/" + name


def transfer(source, run_definition_id="", run_execution_id="", bucket=""):
    """The run's folder: ``source`` when given, else the bucket path a Unity Simulation transfer fills."""
    if source:
        return source.rstrip("/")
    if not (run_definition_id and run_execution_id and bucket):
        raise StepFailed("pass --source, or --run-definition-id, --run-execution-id and --bucket")
    from launcher import usim
    client = usim.TransferClient(usim.resolve_api_url(None), usim.resolve_project_id(None), usim.resolve_token(None))
    started = client.start(bucket, run_definition_id, run_execution_id)
    client.wait(usim.transfer_id(started), 6 * 3600, 30.0)
    return "gs://%s/projects/%s/run_executions/urn:run_definitions:%s/urn:run_executions:%s" % (
        bucket, client.project_id, run_definition_id, run_execution_id)


def convert(source, output, eval_pct=20.0, beam_args=()):
    """The conversion (``python main.py``) of the run: DirectRunner here, or Dataflow through ``beam_args``."""
    from tfproc import cli, output as output_lib, pipeline as tfproc_pipeline
    try:
        cli.convert(source, eval_pct, output, beam_args=beam_args)
    except (cli.UsageError, tfproc_pipeline.ConversionFailed, output_lib.OutputBusy) as error:
        raise StepFailed("the conversion of %s failed: %s" % (source, error))
    return output


def train(dataset, model_dir, options=None):
    """The trainer on this machine; ``options`` are ``trainer.commands.train``'s keyword arguments."""
    from trainer import commands
    try:
        return commands.train(dataset, model_dir, **(options or {}))
    except commands.TrainerError as error:
        raise StepFailed("training on %s failed: %s" % (dataset, error))


def evaluate(model_dir, dataset, name, split="eval"):
    """Score ``model_dir`` on a conversion output; returns its metrics (also in MODEL_DIR/eval_NAME/)."""
    from trainer import commands
    try:
        metrics = commands.evaluate(dataset, model_dir, split, output=_join(model_dir, "eval_" + name))
    except commands.TrainerError as error:
        raise StepFailed("evaluating %s on %s failed: %s" % (model_dir, dataset, error))
    metrics.pop("path", None)
    return metrics


def evaluate_all(model_dir, dataset, real_dataset=""):
    """``{"synthetic": metrics, "real": metrics}`` (real only with a real dataset)."""
    results = {"synthetic": evaluate(model_dir, dataset, "synthetic")}
    if real_dataset:
        results["real"] = evaluate(model_dir, real_dataset, "real", split=_split_with_images(real_dataset))
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
    import tensorflow as tf
    model = _join(production_dir, "model")
    return model if tf.io.gfile.exists(_join(model, "params.yaml")) else None


def compare(candidate, production_dir, dataset, real_dataset="", metric=""):
    """Candidate against the production model on the same data, by ``metric`` (e.g. real.AP)."""
    metric = metric or default_metric(real_dataset)
    production = production_model(production_dir)
    result = {"metric": metric, "candidate": metric_value(candidate, metric), "candidate_metrics": candidate}
    if production is None:
        result.update(production=None, better=True, reason="no production model yet")
        return result
    scored = evaluate_all(production, dataset, real_dataset)
    result.update(production=metric_value(scored, metric), production_metrics=scored)
    result["better"] = result["candidate"] > result["production"]
    result["reason"] = "%s: candidate %.4f, production %.4f" % (metric, result["candidate"], result["production"])
    return result


def promote(comparison, candidate_dir, production_dir, mode="manual", report_dir=""):
    """``manual``: write a report of which is better and the command that promotes the candidate.
    ``auto``: if the candidate is better, copy it to PRODUCTION/model (the previous one goes to
    PRODUCTION/previous) and write PRODUCTION/production.json. Returns the report."""
    import tensorflow as tf
    command = ("python -m launcher pipeline promote --candidate %s --production %s"
               % (candidate_dir, production_dir))
    report = {"metric": comparison["metric"], "candidate": comparison["candidate"],
              "production": comparison.get("production"), "better": comparison["better"],
              "reason": comparison.get("reason", ""), "mode": mode, "candidate_dir": candidate_dir,
              "production_dir": production_dir, "promoted": False, "promote_command": command}
    if mode == "auto" and comparison["better"]:
        install(candidate_dir, production_dir, comparison)
        report["promoted"] = True
    if report_dir:
        tf.io.gfile.makedirs(report_dir)
        with tf.io.gfile.GFile(_join(report_dir, "promotion.json"), "w") as f:
            f.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def install(candidate_dir, production_dir, comparison=None):
    """Copy the candidate's newest checkpoint, params and metrics to PRODUCTION/model, keeping the
    previous model in PRODUCTION/previous; write production.json last."""
    import tensorflow as tf
    model, previous = _join(production_dir, "model"), _join(production_dir, "previous")
    latest = tf.train.latest_checkpoint(candidate_dir)
    if not latest:
        raise StepFailed("no checkpoint in %s" % candidate_dir)
    if tf.io.gfile.exists(model):
        if tf.io.gfile.exists(previous):
            tf.io.gfile.rmtree(previous)
        tf.io.gfile.rename(model, previous)
    staging = _join(production_dir, ".model-incoming")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    tf.io.gfile.makedirs(staging)
    names = [os.path.basename(p) for p in tf.io.gfile.glob(latest + "*")] + ["params.yaml", "metrics.json"]
    for name in names:
        if tf.io.gfile.exists(_join(candidate_dir, name)):
            tf.io.gfile.copy(_join(candidate_dir, name), _join(staging, name), overwrite=True)
    with tf.io.gfile.GFile(_join(staging, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "%s"\n' % os.path.basename(latest))
    tf.io.gfile.rename(staging, model)
    record = {"source": candidate_dir, "checkpoint": os.path.basename(latest),
              "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "metrics": (comparison or {}).get("candidate_metrics"), "compared": {
                  k: (comparison or {}).get(k) for k in ("metric", "candidate", "production", "reason")}}
    with tf.io.gfile.GFile(_join(production_dir, PRODUCTION), "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return model


def train_on_vertex(dataset, job_dir, options, project, region, image, accelerator="gpu", job_id=None,
                    on_state=None):
    """The same training as a Vertex AI custom job in the project's image, waited for.

    ``options`` are ``trainer.commands.train``'s keyword arguments (hyperparameters, backbone,
    params_overrides). Returns the folder of its checkpoints (Vertex's AIP_CHECKPOINT_DIR)."""
    from launcher import training
    from launcher.errors import LauncherError
    options = dict(options or {})
    request = training.TrainRequest(
        job_id=job_id or "synthdet_pipeline_%s" % time.strftime("%Y%m%d_%H%M%S"), job_dir=job_dir.rstrip("/"),
        dataset=dataset, accelerator=accelerator, image=image, backbone=options.pop("backbone", "resnet-50"),
        params_overrides=tuple(options.pop("params_overrides", ())), hyperparameters=options)
    try:
        backend = training.backend("vertex", project, region)
        submission = backend.submit(backend.plan(request))
        job = backend.wait(submission.job.id, 60.0, on_state=on_state)
    except LauncherError as error:
        raise StepFailed("training on Vertex AI failed: %s" % error)
    if job.state != "SUCCEEDED":
        raise StepFailed("Vertex job %s ended %s%s" % (job.title(), job.state, ": " + job.error if job.error else ""))
    return _join(job_dir, "checkpoints")
