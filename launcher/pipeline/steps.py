"""The pipeline's steps that make a candidate, as plain functions over the libraries (no CLI is
called): the transfer, the conversion, the training and the fine-tuning, here or as a Vertex AI
job. Each is safe to run again: run twice, a step gives back its complete result instead of
redoing or breaking it.

The Kubeflow components in ``launcher.pipeline.definition`` are thin wrappers around these and
``launcher.decide``'s; they run in the project's image on Vertex AI Pipelines, or in this
environment with ``pipeline run --local``. Every path of a run lies under its own folder,
``WORK_DIR/runs/<run>/`` (``launcher.pipeline.runs``).
"""
import re
import signal
import time

from launcher.decide import production as production_lib
from launcher.errors import LauncherError, StepFailed
from launcher.pipeline.runs import record_step, recorded
from tfproc import fsutil


def starting_point(options, init_from, production_dir):
    """The training options with ``init_from`` "production": the current production model's whole
    network, or, with no production model yet, ``--init-checkpoint`` as before; and the sentence
    that says which."""
    if init_from not in ("", "production"):
        raise StepFailed("init_from must be production or empty, got %r" % init_from)
    if not init_from:
        return options, ""
    try:
        model = production_lib.current_model(production_dir)
    except production_lib.PromotionError as error:
        raise StepFailed("--init-from production: %s" % error)
    if model is None:
        return options, "no production model in %s yet: the candidate starts from %s instead" % (
            production_dir, "--init-checkpoint %s" % options["init_checkpoint"] if options.get("init_checkpoint")
            else "the default of --init-checkpoint")
    options = dict(options, init_from=model)
    options.pop("init_checkpoint", None)
    return options, "the candidate starts from the production model %s (its whole network)" % model


def train_from(folder, dataset, options, init_from, production_dir, backend, project, region, image, accelerator,
               job_id, capacity="{}", timeout="", service_account="", network=""):
    """The train step of the run in ``folder``: its starting point (said in the step's record, so
    that the run's own lines show it), then the training into RUN_DIR/candidate."""
    from tfproc import console
    options, said = starting_point(options, init_from, production_dir)
    if said:
        console.say(said)
        record_step(folder, "train", "running", said)
    return train_candidate(dataset, fsutil.join(folder, "candidate"), options, backend, project, region, image,
                           accelerator, job_id, capacity, timeout, service_account, network)


def train_candidate(dataset, model_dir, options, backend, project, region, image, accelerator, job_id, capacity="{}",
                    timeout="", service_account="", network=""):
    """Train here (``backend`` local) or as a Vertex AI custom job; returns the checkpoints' folder.
    ``capacity`` (``launcher.jobs.capacity.Capacity.to_json()``), ``timeout`` (``12h``; empty:
    Vertex's 7 days), ``service_account`` and ``network`` shape the Vertex job."""
    if backend == "vertex":
        from launcher.jobs.capacity import Capacity
        return train_on_vertex(dataset, model_dir, options, project, region, image, accelerator, job_id,
                               capacity=Capacity.from_json(capacity), timeout=timeout,
                               service_account=service_account, network=network)
    if backend != "local":
        raise StepFailed("backend must be local or vertex, got %s" % backend)
    return train(dataset, model_dir, options)


def finetune(folder, name, model_dir, dataset, options, backend, project, region, image, accelerator, capacity="{}",
             timeout="", service_account="", network="", split=""):
    """The fine-tuning of run ``name``: the candidate ``model_dir``'s whole network trained on
    ``dataset``'s ``split`` (default train; with ``options``) into RUN_DIR/finetuned, as a job of its
    own; with no dataset the candidate goes on as it is."""
    if not dataset:
        record_step(folder, "finetune", "skipped", "no --finetune-dataset")
        return model_dir
    options = dict(options, init_from=model_dir)
    if split:
        options["train_split"] = split
    options.pop("init_checkpoint", None)
    return recorded(folder, "finetune", train_candidate, dataset, fsutil.join(folder, "finetuned"), options, backend,
                    project, region, image, accelerator, vertex_job_id(name + "_finetune"), capacity, timeout,
                    service_account, network)


def unity_token(secret=""):
    """The Unity Simulation token: from Secret Manager (``projects/P/secrets/S[/versions/V]``), or the
    usual places (--token, USIM_ACCESS_TOKEN, ~/.usim/token.json)."""
    from launcher.cloud import secrets, usim
    if not secret:
        return usim.resolve_token(None)
    return usim.well_formed(secrets.access(secret))


def transfer(source, run_definition_id="", run_execution_id="", bucket="", folder="", token_secret=""):
    """The run's folder: ``source`` when given, else the bucket path a Unity Simulation transfer fills.
    The transfer's id is recorded in RUN_DIR/transfer.json as soon as it starts, so a retried step
    waits for that transfer instead of starting another."""
    if source:
        return source.rstrip("/")
    if not (run_definition_id and run_execution_id and bucket):
        raise StepFailed("pass --source, or --run-definition-id, --run-execution-id and --bucket")
    from launcher.cloud import usim
    try:
        client = usim.TransferClient(usim.resolve_api_url(None), usim.resolve_project_id(None),
                                     unity_token(token_secret))
        record_path = fsutil.join(folder, "transfer.json") if folder else None
        record = fsutil.read_json_or_none(record_path) if record_path else None
        if record and record.get("run_execution_id") == run_execution_id:
            transfer_id = record["id"]
        else:
            transfer_id = usim.transfer_id(client.start(bucket, run_definition_id, run_execution_id))
            if record_path:
                fsutil.write_json(record_path, {"id": transfer_id, "run_definition_id": run_definition_id,
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
    params = yaml.safe_load(fsutil.read_bytes(fsutil.join(model_dir, "params.yaml"))) or {}
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


def record_attempt(job_dir, submission):
    """RUN_DIR/steps/<job dir's name>-attempts.json: every Vertex job a train step started or found
    again, oldest first (an attempt after one that FAILED or was CANCELLED gets an id of its own)."""
    parent, name = job_dir.rstrip("/").rsplit("/", 1)
    path = fsutil.join(fsutil.join(parent, "steps"), name + "-attempts.json")
    attempts = (fsutil.read_json_or_none(path) or {}).get("attempts", [])
    for job in (submission.retried_after, submission.job):
        if job is not None and job.name not in [a["job"] for a in attempts]:
            attempts.append({"job": job.name, "id": job.id, "state": job.state, "created": submission.created
                             if job is submission.job else False, "time": time.time()})
    fsutil.write_json(path, {"attempts": attempts})


def vertex_job_id(run):
    """A job id that a retried train step finds again (letters, digits and underscores)."""
    return ("synthdet_" + re.sub(r"[^A-Za-z0-9]+", "_", run)).strip("_")[:120] + "_train"


def train_on_vertex(dataset, job_dir, options, project, region, image, accelerator="gpu", job_id=None,
                    on_state=None, poll_seconds=60.0, capacity=None, timeout="", service_account="", network=""):
    """The same training as a Vertex AI custom job in the project's image, waited for.

    ``options`` are ``trainer.commands.train``'s keyword arguments (hyperparameters, backbone,
    params_overrides, init_checkpoint). With the same ``job_id`` a retried step re-attaches to its
    job instead of starting another; SIGTERM (the pipeline cancelled) cancels the job. Returns the
    folder of its checkpoints (Vertex's AIP_CHECKPOINT_DIR)."""
    from launcher.jobs import backends, training
    options = dict(options or {})
    request = training.TrainRequest(
        job_id=job_id or "synthdet_pipeline_%s" % time.strftime("%Y%m%d_%H%M%S"), job_dir=job_dir.rstrip("/"),
        dataset=dataset, accelerator=accelerator, image=image, backbone=options.pop("backbone", "resnet-50"),
        model_size=options.pop("model_size", "full"), train_split=options.pop("train_split", "") or "",
        eval_split=options.pop("eval_split", "") or "",
        init_checkpoint=options.pop("init_checkpoint", "") or "", init_from=options.pop("init_from", "") or "",
        params_overrides=tuple(options.pop("params_overrides", ())), hyperparameters=options, timeout=timeout or "",
        service_account=service_account or "", network=network or "")
    if capacity is not None:
        request.capacity = capacity
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
    return fsutil.join(job_dir, "checkpoints")
