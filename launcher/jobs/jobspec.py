"""The built-in object detection training job (seed 003, phase 3): its body, its checks, its gcloud twin."""
import copy
import json
import re
import shlex

import yaml

from launcher.errors import UsageError
from trainer import config as trainer_config

IMAGE = "gcr.io/cloud-ml-algos/image_object_detection:latest"

# The seed's example values: the defaults, each settable by a flag of the same name; the same as
# the trainer's, but for image_size, which the built-in algorithm needs spelled out.
HYPERPARAMETERS = dict(trainer_config.HYPERPARAMETERS, image_size="960,1280")

MACHINES = {
    # the seed's config.yaml: a P100 master and one Cloud TPU worker with 8 TPU_V2 cores
    "tpu": {
        "scaleTier": "CUSTOM",
        "masterType": "n1-standard-16",
        "masterConfig": {"imageUri": IMAGE, "acceleratorConfig": {"type": "NVIDIA_TESLA_P100", "count": 1}},
        "workerType": "cloud_tpu",
        "workerConfig": {"imageUri": IMAGE, "acceleratorConfig": {"type": "TPU_V2", "count": 8}},
        "workerCount": 1,
    },
    # one GPU machine, no worker
    "gpu": {
        "scaleTier": "CUSTOM",
        "masterType": "n1-standard-16",
        "masterConfig": {"imageUri": IMAGE, "acceleratorConfig": {"type": "NVIDIA_TESLA_P100", "count": 1}},
    },
}

_JOB_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}\Z")


def machines_from_config(text, path):
    """``trainingInput`` of a gcloud config.yaml, as the seed writes it."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError("%s is not valid YAML: %s" % (path, str(error).splitlines()[0]))
    if not isinstance(doc, dict) or not isinstance(doc.get("trainingInput"), dict):
        raise UsageError("%s has no trainingInput section (see the seed's config.yaml)" % path)
    training_input = copy.deepcopy(doc["trainingInput"])
    training_input.setdefault("masterConfig", {}).setdefault("imageUri", IMAGE)
    return training_input


def dataset_facts(summary_text, label_map_text, where, train_split="", eval_split=""):
    """What training needs to know of a conversion output: patterns, classes, validation images.
    The splits trained and evaluated on are ``train`` and ``eval`` (``val`` where there is no eval,
    as in the published UnityGroceries-Real), or those named."""
    try:
        summary = json.loads(summary_text)
        splits = summary["splits"]
        num_classes = int(summary["num_classes"])
        from tfproc import published
        eval_split = eval_split or published.default_eval_split(splits) or "eval"
        train_split = train_split or "train"
        for name, option in ((train_split, "--train-split"), (eval_split, "--eval-split")):
            if name not in splits:
                raise UsageError("%s %s: %s holds no such split; its splits: %s" % (
                    option, name, where, ", ".join(sorted(splits))))
        facts = {"num_classes": num_classes, "validation_images": int(splits[eval_split]["images"])}
    except (ValueError, KeyError, TypeError):
        raise UsageError("%s/summary.json is not a conversion summary; pass the output folder of "
                         "`python main.py`" % where)
    facts["label_ids"] = []
    if label_map_text:
        from tfproc import labels
        try:
            facts["label_ids"] = sorted(labels.parse_label_map(label_map_text))
        except labels.BadLabelMap as error:
            raise UsageError("%s/label_map.pbtxt: %s" % (where, error))
    # the patterns follow the output to where it is now (it may have been copied since)
    facts["training_data_path"] = "%s/%s/*.tfrecord" % (where, train_split)
    facts["validation_data_path"] = "%s/%s/*.tfrecord" % (where, eval_split)
    return facts


def default_eval_images(facts):
    """The seed's 200 eval images, or all the validation images when there are fewer."""
    available = facts.get("validation_images")
    default = HYPERPARAMETERS["num_eval_images"]
    return default if available is None else min(default, available)


def algorithm_args(facts, hyperparameters, extra):
    """The algorithm's arguments in order: data, classes, hyperparameters, then ``--arg`` extras."""
    values = {
        "training_data_path": facts["training_data_path"],
        "validation_data_path": facts["validation_data_path"],
    }
    values.update(hyperparameters)
    values["num_classes"] = facts["num_classes"]
    for item in extra:
        name, sep, value = item.partition("=")
        name = name.lstrip("-")
        if not sep or not name:
            raise UsageError("--arg takes name=value, got %r" % item)
        values[name] = value
    return values


def check_job_id(job_id):
    if not _JOB_ID.match(job_id or ""):
        raise UsageError("job id %r is not valid: letters, digits and underscores, starting with a "
                         "letter, at most 128 characters" % job_id)


def check(job_id, job_dir, args, facts):
    """Every check that can be made before anything is sent; raises UsageError naming the bad value."""
    check_job_id(job_id)
    if not str(job_dir).startswith("gs://"):
        raise UsageError("--job-dir must be a gs:// folder, got %s" % job_dir)
    for name in ("training_data_path", "validation_data_path"):
        if not args.get(name):
            raise UsageError("no %s: pass --dataset (a conversion output) or --%s"
                             % (name, name.replace("_", "-").replace("-path", "")))
        if not str(args[name]).startswith("gs://"):
            raise UsageError("%s must be on gs:// for AI Platform to read it, got %s" % (name, args[name]))
    num_classes = _positive_int(args, "num_classes")
    label_ids = facts.get("label_ids") or []
    if label_ids and max(label_ids) > num_classes:
        raise UsageError("num_classes %d does not cover class id %d of the label map; pass "
                         "--num-classes %d or more" % (num_classes, max(label_ids), max(label_ids)))
    _positive_int(args, "max_steps")
    _positive_int(args, "train_batch_size")
    eval_images = _int(args, "num_eval_images")
    available = facts.get("validation_images")
    if available is not None and eval_images > available:
        raise UsageError("num_eval_images %d is more than the %d validation images; pass "
                         "--num-eval-images %d (or 0 for all)" % (eval_images, available, available))
    size = str(args.get("image_size", ""))
    parts = size.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UsageError('image_size must be "height,width" of positive integers, got %r' % size)


def _int(args, name):
    try:
        return int(args[name])
    except (KeyError, TypeError, ValueError):
        raise UsageError("%s must be an integer, got %r" % (name, args.get(name)))


def _positive_int(args, name):
    value = _int(args, name)
    if value <= 0:
        raise UsageError("%s must be positive, got %d" % (name, value))
    return value


def job_body(job_id, region, job_dir, machines, args, labels=None):
    """The ``projects.jobs.create`` request body."""
    training_input = copy.deepcopy(machines)
    training_input.update({
        "region": region,
        "jobDir": job_dir,
        "args": ["--%s=%s" % (name, value) for name, value in args.items()],
    })
    body = {"jobId": job_id, "trainingInput": training_input}
    if labels:
        body["labels"] = labels
    return body


def gcloud_command(body, config_path):
    """The equivalent `gcloud ai-platform jobs submit training` command."""
    training = body["trainingInput"]
    flags = ["--region=%s" % training["region"], "--config=%s" % config_path,
             "--job-dir=%s" % training["jobDir"], "--"] + training["args"]
    return " \\\n    ".join(["gcloud ai-platform jobs submit training %s" % shlex.quote(body["jobId"])]
                             + [shlex.quote(flag) for flag in flags])


def config_yaml(body):
    """The config.yaml (machines only) that goes with ``gcloud_command``."""
    machines = {k: v for k, v in body["trainingInput"].items() if k not in ("region", "jobDir", "args")}
    return yaml.safe_dump({"trainingInput": machines}, sort_keys=False)
