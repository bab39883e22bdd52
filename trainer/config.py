"""Model Garden's RetinaNet experiment, configured from a conversion output and the seed's hyperparameters.

| seed hyperparameter | Model Garden config path |
|---|---|
| train_batch_size | task.train_data.global_batch_size |
| num_eval_images | trainer.validation_steps = ceil(n / task.validation_data.global_batch_size) |
| train_steps_per_eval | trainer.validation_interval (and checkpoint_interval) |
| max_steps | trainer.train_steps |
| warmup_learning_rate, warmup_steps | trainer.optimizer_config.warmup.linear |
| initial_learning_rate | trainer.optimizer_config.learning_rate.stepwise.values[0] |
| image_size "h,w" | task.model.input_size = [h, w, 3] |
| fpn_type | task.model.decoder.type (fpn / nasfpn) |
| aug_scale_min / max | task.train_data.parser.aug_scale_min / aug_scale_max |
"""
import math

import yaml

# The seed's hyperparameters, with its names and defaults (seed 003, phase 3).
HYPERPARAMETERS = {
    "train_batch_size": 16,
    "num_eval_images": 200,
    "train_steps_per_eval": 2000,
    "max_steps": 75000,
    "warmup_learning_rate": 0.01,
    "warmup_steps": 500,
    "initial_learning_rate": 0.001,
    "image_size": "",               # "" = the dataset's most common resolution
    "fpn_type": "nasfpn",
    "aug_scale_min": 0.8,
    "aug_scale_max": 1.2,
}
BACKBONES = {
    "resnet-50": {"type": "resnet", "resnet": {"model_id": 50}},
    "resnet-18": {"type": "resnet", "resnet": {"model_id": 18}},
    "mobilenet": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2"}},
}
# Model Garden's published ImageNet checkpoints, as its own RetinaNet COCO preset names them
# (official/vision/configs/retinanet.py); --init-checkpoint imagenet resolves to these.
IMAGENET_CHECKPOINTS = {
    "resnet-50": "gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080",
}
# --model-size small: a detector that trains in minutes on a laptop CPU (MobileNetV2 at 0.35 width,
# a thin FPN and head); "full" is Model Garden's RetinaNet as configured by the seed's settings.
MODEL_SIZES = {
    "full": {},
    "small": {"backbone": {"mobilenet": {"filter_size_scale": 0.35}}, "decoder": {"fpn": {"num_filters": 32}},
              "head": {"num_filters": 32, "num_convs": 1}},
}
EVAL_BATCH_SIZE = 8
MAX_LEVEL = 7       # the coarsest feature level: input sides are padded to multiples of 2**MAX_LEVEL
KEEP_CHECKPOINTS = 3


class ConfigError(ValueError):
    pass


def image_size(text, fallback):
    """``[height, width]`` from "h,w" (or ``fallback``), each rounded up to a multiple of 2**MAX_LEVEL."""
    if text:
        parts = str(text).split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise ConfigError('--image-size must be "height,width" of positive integers, got %r' % text)
        size = [int(p) for p in parts]
    else:
        size = list(fallback)
    step = 2 ** MAX_LEVEL
    return [-(-side // step) * step for side in size]


def check_model_size(model_size, backbone, fpn_type):
    """The model sizes and the backbone and FPN each is built from."""
    if model_size not in MODEL_SIZES:
        raise ConfigError("--model-size must be one of %s, got %s" % (", ".join(MODEL_SIZES), model_size))
    if model_size == "small" and (backbone != "mobilenet" or fpn_type != "fpn"):
        raise ConfigError("--model-size small is MobileNetV2 with an FPN: pass --backbone mobilenet --fpn-type fpn")


def overrides(dataset, hp, backbone, size, init_checkpoint=None, eval_split="eval", eval_images=None,
              model_size="full", replicas=1, train_split="train"):
    """The ``params.override`` dict for the ``retinanet_resnetfpn_coco`` preset.

    The preset's own defaults that cannot work offline are replaced: its gs:// backbone checkpoint
    (``init_checkpoint`` is the user's, or none), its COCO annotation file (ground truth comes from
    the records) and bfloat16 (float32 runs everywhere; a GPU user may override). BatchNorm moving
    statistics use momentum 0.9 so that an evaluation after few steps is not thrown off.
    """
    if backbone not in BACKBONES:
        raise ConfigError("--backbone must be one of %s, got %s" % (", ".join(BACKBONES), backbone))
    check_model_size(model_size, backbone, hp["fpn_type"])
    if hp["fpn_type"] not in ("fpn", "nasfpn"):
        raise ConfigError("--fpn-type must be fpn or nasfpn, got %s" % hp["fpn_type"])
    for name in ("train_batch_size", "max_steps", "train_steps_per_eval"):
        if int(hp[name]) <= 0:
            raise ConfigError("--%s must be positive, got %s" % (name.replace("_", "-"), hp[name]))
    available = dataset.images.get(eval_split, 0) if eval_images is None else eval_images
    requested = int(hp["num_eval_images"])
    if requested < 0 or requested > available:
        raise ConfigError("--num-eval-images %d: the %s split holds %d images (0 = all)"
                          % (requested, eval_split, available))
    eval_count = requested or available
    if int(hp["train_batch_size"]) % replicas:
        raise ConfigError("--train-batch-size %s does not divide among the %d replicas that train in step; pass a "
                          "multiple of %d" % (hp["train_batch_size"], replicas, replicas))
    eval_batch = eval_batch_size(eval_count, replicas)
    interval = min(int(hp["train_steps_per_eval"]), int(hp["max_steps"]))
    loop = steps_per_loop(interval)
    model = {
        "num_classes": dataset.num_classes + 1,     # Model Garden counts the background (0)
        "input_size": [size[0], size[1], 3],
        "min_level": 3, "max_level": MAX_LEVEL,
        "backbone": BACKBONES[backbone],
        "decoder": {"type": hp["fpn_type"]},
        "norm_activation": {"norm_momentum": 0.9, "use_sync_bn": False},
    }
    for key, value in MODEL_SIZES[model_size].items():
        model[key] = _merged(model.get(key, {}), value)
    return {
        "runtime": {"mixed_precision_dtype": "float32"},
        "task": {
            "init_checkpoint": init_checkpoint or None,
            "init_checkpoint_modules": "backbone",
            "annotation_file": None,
            "per_category_metrics": True,
            "model": model,
            "train_data": {
                "input_path": dataset.pattern(train_split), "global_batch_size": int(hp["train_batch_size"]),
                "dtype": "float32", "is_training": True,
                "parser": {"aug_scale_min": float(hp["aug_scale_min"]), "aug_scale_max": float(hp["aug_scale_max"]),
                           "aug_rand_hflip": True},
            },
            "validation_data": {
                "input_path": dataset.pattern(eval_split), "global_batch_size": eval_batch,
                "dtype": "float32", "is_training": False, "drop_remainder": False,
            },
        },
        "trainer": {
            "train_steps": int(hp["max_steps"]),
            "validation_steps": math.ceil(eval_count / eval_batch),
            "validation_interval": interval,
            "checkpoint_interval": interval,
            "steps_per_loop": loop,
            "summary_interval": loop,
            "max_to_keep": KEEP_CHECKPOINTS,
            "optimizer_config": {
                "learning_rate": {"type": "stepwise", "stepwise": {
                    "boundaries": [int(hp["max_steps"] * 0.75), int(hp["max_steps"] * 0.9)],
                    "values": [float(hp["initial_learning_rate"]), float(hp["initial_learning_rate"]) / 10,
                               float(hp["initial_learning_rate"]) / 100]}},
                "warmup": {"type": "linear", "linear": {
                    "warmup_steps": int(hp["warmup_steps"]),
                    "warmup_learning_rate": float(hp["warmup_learning_rate"])}},
            },
        },
    }


def eval_batch_size(images, replicas=1):
    """At most EVAL_BATCH_SIZE images a step (fewer for a small eval set), a multiple of the replicas."""
    batch = max(1, min(EVAL_BATCH_SIZE, images))
    return -(-batch // replicas) * replicas


def _merged(base, extra):
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def default_warmup_steps(max_steps):
    """The seed's 500 warm-up steps, or a tenth of a shorter run (so that a short run learns)."""
    return max(1, min(HYPERPARAMETERS["warmup_steps"], int(max_steps) // 10))


def describe_schedule(params, explicit_warmup=True):
    """The learning-rate schedule in words, for the first lines of a training."""
    optimizer = params.trainer.optimizer_config
    warmup = optimizer.warmup.linear
    stepwise = optimizer.learning_rate.stepwise
    steps = params.trainer.train_steps
    values, boundaries = list(stepwise.values), list(stepwise.boundaries)
    parts = []
    if warmup.warmup_steps:
        parts.append("linear warm-up from %g to %g over the first %d steps%s" % (
            warmup.warmup_learning_rate, values[0], warmup.warmup_steps,
            "" if explicit_warmup else " (a tenth of the run, at most the seed's %d; --warmup-steps sets it)"
            % HYPERPARAMETERS["warmup_steps"]))
    parts.append("then %g" % values[0] if parts else "%g" % values[0])
    parts += ["%g from step %d" % (value, boundary) for value, boundary in zip(values[1:], boundaries)
              if boundary < steps]
    return ", ".join(parts)


def resolve_init_checkpoint(value, backbone):
    """``--init-checkpoint``: None/"none" (scratch), "imagenet" (Model Garden's published ImageNet
    weights for the backbone), or a checkpoint of your own (a prefix or a folder)."""
    if not value or value == "none":
        return None
    if value == "imagenet":
        if backbone not in IMAGENET_CHECKPOINTS:
            raise ConfigError("Model Garden publishes no ImageNet checkpoint for --backbone %s in its configs (only "
                              "for %s); pass a checkpoint of your own, or none" % (backbone, ", ".join(IMAGENET_CHECKPOINTS)))
        return IMAGENET_CHECKPOINTS[backbone]
    if "://" not in value:
        import glob
        import os
        if not (os.path.isdir(value) or glob.glob(glob.escape(value) + ".index")):
            raise ConfigError("--init-checkpoint %s: no such checkpoint (a prefix with a .index file, or a folder)" % value)
    return value


def steps_per_loop(interval, most=100):
    """The largest divisor of the evaluation interval up to ``most``: a loop never straddles an
    evaluation, so each evaluation lands on a step the progress line has shown."""
    return max(d for d in range(1, min(most, interval) + 1) if interval % d == 0)


def parse_override(text):
    """A ``--params-override``: YAML or JSON text, or the path of such a file (local or gs://)."""
    text = str(text)
    if "\n" not in text and text.strip().endswith((".yaml", ".yml", ".json")):
        text = _read_override_file(text.strip())
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError("--params-override is not YAML/JSON: %s" % str(error).splitlines()[0])
    if not isinstance(value, dict):
        raise ConfigError("--params-override must be a mapping, e.g. 'task.model.head.num_filters: 64' "
                          "as {task: {model: {head: {num_filters: 64}}}}")
    return value


def _read_override_file(path):
    if "://" in path:
        import tensorflow as tf
        if not tf.io.gfile.exists(path):
            raise ConfigError("--params-override file %s does not exist" % path)
        with tf.io.gfile.GFile(path) as f:
            return f.read()
    try:
        with open(path) as f:
            return f.read()
    except OSError as error:
        raise ConfigError("--params-override file %s: %s" % (path, error.strerror))


def check_overrides(override_dicts):
    """Apply the overrides to Model Garden's preset strictly, as the trainer will; raises ConfigError
    for an unknown key or a wrong type. False when Model Garden is not installed (nothing checked)."""
    try:
        from official.core import exp_factory
        from official.vision import registry_imports  # noqa: F401
    except ImportError:
        return False
    params = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
    for value in override_dicts:
        _check_types(value, params.as_dict())
        try:
            params.override(value, is_strict=True)
        except (KeyError, ValueError, AttributeError, TypeError) as error:
            raise ConfigError("a parameter override does not fit Model Garden's config: %s" % error)
    return True


def _check_types(value, defaults, where=""):
    """Model Garden takes any value for a known key: refuse text where it keeps a number or a flag."""
    if not isinstance(value, dict) or not isinstance(defaults, dict):
        return
    for key, new in value.items():
        old, name = defaults.get(key), where + key
        if isinstance(old, dict):
            _check_types(new, old, name + ".")
        elif isinstance(old, bool) and not isinstance(new, bool):
            raise ConfigError("a parameter override does not fit Model Garden's config: %s takes true or false, got %r"
                              % (name, new))
        elif isinstance(old, (int, float)) and not isinstance(old, bool) and (
                isinstance(new, bool) or not isinstance(new, (int, float))):
            raise ConfigError("a parameter override does not fit Model Garden's config: %s takes a number, got %r"
                              % (name, new))


def experiment(override_dicts):
    """The locked ExperimentConfig: the preset, then each override in order."""
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the experiments)
    params = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
    for value in override_dicts:
        try:
            params.override(value, is_strict=True)
        except (KeyError, ValueError, AttributeError) as error:
            raise ConfigError("a parameter override does not fit Model Garden's config: %s" % error)
    loop = params.trainer.steps_per_loop
    if isinstance(loop, int) and loop > 0 and params.trainer.summary_interval % loop:
        params.trainer.summary_interval = loop      # Orbit wants a multiple of the loop
    params.validate()
    params.lock()
    return params
