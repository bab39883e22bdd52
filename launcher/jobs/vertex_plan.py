"""A Vertex AI training request checked and turned into its ``customJobs.create`` body: the job id,
the options by Vertex's rules, the dataset's facts, the hyperparameters, the overrides, the
machines, and the price (its ceiling, and what a measured step time expects).
"""
import os
import re

from launcher.cloud import google_api
from launcher.errors import UsageError
from launcher.jobs import capacity as capacity_lib
from launcher.jobs import jobspec, prices, training
from launcher.jobs.vertex_spec import (config_yaml, gcloud_command, job_body, promise, strategy, trainer_args,
                                       worker_pools, worker_pools_from_file)

_NETWORK = re.compile(r"^projects/[^/\s]+/global/networks/[^/\s]+\Z")
_TENSORBOARD = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/tensorboards/\d+\Z")
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com\Z")
LOCAL_IMAGE = "synthdet:local"      # --backend local runs the containerSpec's command in this environment


def check_identity(service_account, network):
    """A job's (or a pipeline run's) account and VPC network, by Vertex AI's forms."""
    if service_account and not _SERVICE_ACCOUNT.match(service_account):
        raise UsageError("--service-account takes an email such as trainer@PROJECT.iam.gserviceaccount.com, got %r"
                         % service_account)
    if network and not _NETWORK.match(network):
        raise UsageError("--network takes projects/PROJECT_NUMBER/global/networks/NAME, got %r" % network)


def _check_options(request):
    check_identity(request.service_account, request.network)
    if request.tensorboard:
        if not _TENSORBOARD.match(request.tensorboard):
            raise UsageError("--tensorboard takes projects/P/locations/R/tensorboards/ID, got %r" % request.tensorboard)
        if not request.service_account:
            raise UsageError("--tensorboard needs --service-account: Vertex AI uploads the logs as that account")
    if request.extra_args:
        raise UsageError("--arg is the built-in algorithm's (--backend ml); on Vertex AI pass Model Garden "
                         "settings with --params-override")
    if request.config_path:
        raise UsageError("--config is a gcloud config.yaml for --backend ml; on Vertex AI use "
                         "--worker-pool-spec-file")
    if request.training_data or request.validation_data:
        raise UsageError("--training-data/--validation-data are for --backend ml; the trainer reads --dataset")


def _check_hyperparameters(values, facts):
    for name in ("max_steps", "train_batch_size", "train_steps_per_eval"):
        try:
            ok = int(values[name]) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UsageError("%s must be a positive integer, got %r" % (name, values[name]))
    try:
        eval_images = int(values["num_eval_images"])
    except (TypeError, ValueError):
        eval_images = -1
    if eval_images < 0:
        raise UsageError("num_eval_images must be 0 (all) or a positive integer, got %r" % values["num_eval_images"])
    available = facts.get("validation_images")
    if available is not None and int(values["num_eval_images"]) > available:
        raise UsageError("num_eval_images %s is more than the %d validation images; pass --num-eval-images %d"
                         % (values["num_eval_images"], available, available))
    size = values.get("image_size")
    if size:
        parts = str(size).split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise UsageError('image_size must be "height,width" of positive integers, got %r' % size)


def _where(path, flag, local, dry_run, unchecked):
    """A gs:// path as given; a local one made absolute where the job can read it (--backend local),
    or, in a dry run for Vertex, read from disk with a note that the job needs it on gs://."""
    path = path.rstrip("/")
    if path.startswith("gs://"):
        return path
    if "://" in path:
        raise UsageError("%s must be a gs:// or local path, got %s" % (flag, path))
    if not local:
        if not dry_run:
            raise UsageError("%s must be on gs:// for Vertex AI to read it, got %s" % (flag, path))
        unchecked.append("%s %s is local: it was read from disk here, but a Vertex job reads only gs://" % (flag, path))
    return os.path.abspath(path)


def _dataset_facts(request, project, dry_run, unchecked):
    if dry_run and request.dataset.startswith("gs://") and not google_api.has_credentials():
        unchecked.append("no Google credentials: %s/summary.json was not read, so num_classes, the eval images "
                         "and the label map are not checked (the trainer reads them when the job starts)"
                         % request.dataset)
        return {"num_classes": request.num_classes, "validation_images": None, "label_ids": []}
    return training.dataset_facts(request, project)


def _settings(request, body):
    """What decides a step's time: the trainer's model and batch, and the machines it runs on."""
    from trainer import config as trainer_config
    chief = body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    values = dict(trainer_config.HYPERPARAMETERS, **{k: v for k, v in request.hyperparameters.items()
                                                     if v not in (None, "")})
    settings = {"backbone": request.backbone, "model_size": request.model_size,
                "train_batch_size": int(values["train_batch_size"]), "machine_type": chief.get("machineType", ""),
                "accelerator": promise(chief), "machines": capacity_lib.machines(body["jobSpec"]["workerPoolSpecs"])}
    if values.get("image_size"):
        settings["image_size"] = str(values["image_size"]).replace(" ", "")
    return settings


def _measured_step_time(request, body, project, unchecked):
    """The step time an earlier run with the same settings measured (its TIMING file): in
    ``--step-time-from``, or in the job dir when resuming. None when there is none to trust."""
    from launcher.cloud import storage
    from trainer import timing
    where = request.step_time_from or (request.job_dir if request.resume else "")
    if not where:
        return None
    where = where.rstrip("/")
    if where.startswith("gs://") and not google_api.has_credentials():
        unchecked.append("no Google credentials: %s/%s was not read, so there is no expected cost"
                         % (where, timing.FILE))
        return None
    text = storage.read_text(storage.join(where, timing.FILE), project, missing_ok=True)
    if not text:
        if request.step_time_from:
            raise UsageError("--step-time-from %s holds no %s: pass the model dir of a finished training run"
                             % (where, timing.FILE))
        return None
    try:
        measured = timing.parse(text, "%s/%s" % (where, timing.FILE))
    except ValueError as error:
        raise UsageError(str(error))
    differs = timing.differences(measured["settings"], _settings(request, body))
    if differs:
        unchecked.append("no expected cost: the step time in %s was measured with other settings (%s)"
                         % (where, "; ".join(differs)))
        return None
    return dict(measured, where=where)


def build_plan(request, project, region, local=False, dry_run=False):
    """The checked ``customJobs.create`` body for ``request``: for Vertex AI, or (``local``) for the
    same job run on this machine, where the dataset and job dir may be local folders."""
    from trainer import config as trainer_config
    unchecked = []
    if not request.dataset:
        raise UsageError("--backend %s needs --dataset (the trainer reads the conversion output)"
                         % ("local" if local else "vertex"))
    request.dataset = _where(request.dataset, "--dataset", local, dry_run, unchecked)
    request.job_dir = _where(request.job_dir, "--job-dir", local, dry_run, unchecked)
    jobspec.check_job_id(request.job_id)
    _check_options(request)
    timeout = training.timeout_seconds(request.timeout) if request.timeout else None
    facts = _dataset_facts(request, project, dry_run, unchecked)
    if request.num_classes is not None:
        if request.num_classes < 1:
            raise UsageError("--num-classes must be at least 1, got %d" % request.num_classes)
        if facts.get("label_ids") and max(facts["label_ids"]) > request.num_classes:
            raise UsageError("--num-classes %d does not cover class id %d of the label map; pass %d or more"
                             % (request.num_classes, max(facts["label_ids"]), max(facts["label_ids"])))
    values = {k: v for k, v in trainer_config.HYPERPARAMETERS.items() if k not in ("image_size", "warmup_steps")}
    values["num_eval_images"] = jobspec.default_eval_images(facts)
    values.update({k: v for k, v in request.hyperparameters.items() if v not in (None, "")})
    unknown = set(values) - set(trainer_config.HYPERPARAMETERS)
    if unknown:
        raise UsageError("unknown hyperparameter(s): %s" % ", ".join(sorted(unknown)))
    _check_hyperparameters(values, facts)
    try:
        trainer_config.check_model_size(request.model_size, request.backbone, values["fpn_type"])
    except trainer_config.ConfigError as error:
        raise UsageError(str(error))
    try:
        overrides = [trainer_config.parse_override(text) for text in request.params_overrides]
        if overrides and not trainer_config.check_overrides(overrides):
            unchecked.append("--params-override: the trainer extra is not installed here, so Model Garden could not "
                             "check the keys (bash scripts/install.sh train)")
    except trainer_config.ConfigError as error:
        raise UsageError(str(error))
    if request.worker_pool_spec_file:
        pools = worker_pools_from_file(request.worker_pool_spec_file)
    else:
        pools = worker_pools(request.accelerator or "gpu", request.gpus, request.replicas)
    strategy_name = strategy(pools)
    unchecked += capacity_lib.check(request.capacity, region)
    capacity_lib.check_machines(request.capacity, pools, timeout)
    init = request.init_checkpoint or ("imagenet" if request.backbone in trainer_config.IMAGENET_CHECKPOINTS
                                       else "none")
    try:
        trainer_config.resolve_init_checkpoint(init if "://" in init or init in ("imagenet", "none") else None,
                                               request.backbone)
    except trainer_config.ConfigError as error:
        raise UsageError(str(error))
    init_from = _where(request.init_from, "--init-from", local, False, unchecked) if request.init_from else None
    if init not in ("imagenet", "none") and "://" not in init:
        if not local:
            raise UsageError("--init-checkpoint must be imagenet, none or a gs:// checkpoint the job can read, got %s"
                             % init)
        init = os.path.abspath(init)
    image = request.image or (LOCAL_IMAGE if local else "")
    body = job_body(
        request.job_id, request.job_dir, pools, image,
        lambda spec: trainer_args(request.dataset, values, request.num_classes, request.backbone, strategy_name,
                                  spec, overrides, None if init == "none" else init, init_from,
                                  request.model_size, request.train_split, request.eval_split),
        labels=request.labels, service_account=request.service_account, network=request.network,
        timeout_seconds=timeout, tensorboard=request.tensorboard, enable_web_access=request.enable_web_access,
        capacity=request.capacity)
    parent = "projects/%s/locations/%s" % (project or "PROJECT", region)
    costs = [prices.ceiling(body, region, request.capacity).line]
    measured = _measured_step_time(request, body, project, unchecked)
    if measured:
        costs.append(prices.expected(body, region, request.capacity, measured["seconds_per_step"],
                                     int(values["max_steps"]), measured["where"]))
    return training.Plan(request, body, gcloud_command(body, region, "job.yaml"), "job.yaml", config_yaml(body),
                         "POST %s/customJobs" % parent, unchecked, costs)
