"""The trainer as plain functions: train, evaluate, export. ``python -m trainer`` and the pipeline's
steps both call these; each failure a user can act on is a ``TrainerError`` with one line."""
import os
import sys

from trainer import config, devices
from trainer.dataset import DatasetError


class TrainerError(Exception):
    """A bad argument, dataset or model dir, or a machine without its accelerators; the message says
    what is wrong and what to do."""


def _say(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def model_dir_or_default(value):
    value = value or os.environ.get("AIP_CHECKPOINT_DIR") or os.environ.get("AIP_MODEL_DIR")
    if not value:
        raise TrainerError("pass --model-dir (where checkpoints, summaries and metrics go)")
    return value.rstrip("/")


def train(dataset, model_dir=None, backbone="resnet-50", init_checkpoint=None, strategy="auto", tpu=None,
          num_classes=None, params_overrides=(), expect_accelerator=None, machine_type=None, **hyperparameters):
    """Train (and evaluate every ``train_steps_per_eval`` steps) on the dataset's train split.

    ``hyperparameters`` are the seed's (``config.HYPERPARAMETERS``); one left out, or None, takes its
    default, and ``num_eval_images`` None means at most 200. ``expect_accelerator`` ("gpu:N",
    "tpu:N") is what the machine was promised: training stops at once if TensorFlow sees less.
    Returns the model dir.
    """
    try:
        return _train(dataset, model_dir, backbone, init_checkpoint, strategy, tpu, num_classes,
                      params_overrides, expect_accelerator, machine_type, hyperparameters)
    except (DatasetError, config.ConfigError, devices.AcceleratorMissing) as error:
        raise TrainerError(str(error)) from None


def _train(dataset, model_dir, backbone, init_checkpoint, strategy, tpu, num_classes, params_overrides,
           expect_accelerator, machine_type, hyperparameters):
    try:
        promise = devices.parse_promise(expect_accelerator)
    except ValueError as error:
        raise TrainerError(str(error)) from None
    if strategy not in devices.STRATEGIES:
        raise TrainerError("--strategy must be one of %s, got %s" % (", ".join(devices.STRATEGIES), strategy))
    gpus, tpus, seen = devices.visible()
    if promise and promise[0] == "gpu":
        devices.check_promise(promise, gpus, tpus, seen, machine_type)
    machines = devices.cluster()[0]
    chosen = devices.choose(strategy, gpus, tpus, machines)

    from trainer import dataset as dataset_lib
    from trainer import engine
    model_dir = model_dir_or_default(model_dir)
    hp = dict(config.HYPERPARAMETERS)
    explicit_eval_images = hyperparameters.get("num_eval_images") not in (None, 0)
    hp.update({k: v for k, v in hyperparameters.items() if v is not None})
    unknown = set(hp) - set(config.HYPERPARAMETERS)
    if unknown:
        raise TrainerError("unknown hyperparameter(s): %s" % ", ".join(sorted(unknown)))
    data = dataset_lib.load(dataset)
    if num_classes is not None:
        data.num_classes = num_classes
    if not data.images["train"]:
        raise TrainerError("%s has no training images" % dataset)
    size = config.image_size(hp["image_size"], None if hp["image_size"] else dataset_lib.common_resolution(data))
    if explicit_eval_images and hp["num_eval_images"] > data.images["eval"]:
        raise TrainerError("--num-eval-images %d: the eval split holds %d images"
                           % (hp["num_eval_images"], data.images["eval"]))
    if not explicit_eval_images:
        hp["num_eval_images"] = min(config.HYPERPARAMETERS["num_eval_images"], data.images["eval"])
    mode = "train_and_eval" if data.images["eval"] else "train"
    values = config.overrides(data, hp, backbone, size, init_checkpoint)
    params = config.experiment([values] + [config.parse_override(o) for o in params_overrides])

    step = engine.latest_step(model_dir)
    if step is not None:
        if step >= params.trainer.train_steps:
            raise TrainerError("%s is already trained to step %d; pass a larger --max-steps to go on"
                               % (model_dir, step))
        _say("resuming from the checkpoint at step %d in %s" % (step, model_dir))
    chief = devices.is_chief()
    if chief:
        engine.save_params(params, model_dir)
    try:
        distribution = engine.strategy_for(chosen, tpu)
    except (ValueError, RuntimeError) as error:     # e.g. no TPU where one was promised
        raise devices.AcceleratorMissing("machine %s: cannot start the %s strategy: %s"
                                         % (machine_type or "(type not given)", chosen, str(error).splitlines()[0]))
    if promise and promise[0] == "tpu":
        import tensorflow as tf
        devices.check_promise(promise, gpus, len(tf.config.list_logical_devices("TPU")), seen, machine_type)
    progress = engine.Progress(params.trainer.train_steps, step or 0, params.trainer.steps_per_loop)
    metrics_path = os.path.join(model_dir, engine.METRICS)

    def evaluated(logs):
        metrics = dict(engine.plain_metrics(logs, data.names), step=progress.step, dataset=data.path, split="eval")
        if chief:
            engine.write_metrics(metrics_path, metrics)
        _say("evaluation at step %d: AP %.4f, AP50 %.4f, ARmax100 %.4f (%s)" % (
            progress.step, metrics.get("AP", float("nan")), metrics.get("AP50", float("nan")),
            metrics.get("ARmax100", float("nan")), metrics_path))

    _say("training %s on %s: %d classes, input %dx%d, batch %d, %d steps, %s; strategy %s with %d replica(s) "
         "(TensorFlow sees: %s)" % (
             backbone, data.path, data.num_classes, size[0], size[1], params.task.train_data.global_batch_size,
             params.trainer.train_steps, mode.replace("_", " "), chosen, distribution.num_replicas_in_sync,
             ", ".join(seen)))
    engine.run(params, model_dir, mode, distribution, on_train=progress, on_eval=evaluated,
               log_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR"))
    _say("trained to step %d; checkpoints in %s" % (params.trainer.train_steps, model_dir))
    aip_model_dir = os.environ.get("AIP_MODEL_DIR")
    if chief and aip_model_dir and aip_model_dir.rstrip("/") != model_dir:
        _say("exported the SavedModel to %s" % engine.export(params, latest_checkpoint(model_dir), aip_model_dir))
    return model_dir


def latest_checkpoint(model_dir):
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        raise TrainerError("no checkpoint in %s" % model_dir)
    return latest


def evaluate(dataset, model_dir=None, split="eval", num_eval_images=0, output=None):
    """Score the newest checkpoint with COCO AP/AR on a split of a conversion output; write
    OUTPUT/metrics.json (default MODEL_DIR/eval_<dataset folder name>/) and return the metrics."""
    try:
        return _evaluate(dataset, model_dir, split, num_eval_images, output)
    except (DatasetError, config.ConfigError, FileNotFoundError) as error:
        raise TrainerError(str(error)) from None


def _evaluate(dataset, model_dir, split, num_eval_images, output):
    from trainer import dataset as dataset_lib
    from trainer import engine
    model_dir = model_dir_or_default(model_dir)
    data = dataset_lib.load(dataset)
    trained = engine.load_params(model_dir)
    checkpoint = latest_checkpoint(model_dir)
    if data.num_classes + 1 > trained.task.model.num_classes:
        raise TrainerError("%s has class ids up to %d; the model knows %d classes. Convert real photos with "
                           "--label-map of the synthetic conversion" % (dataset, data.num_classes,
                                                                        trained.task.model.num_classes - 1))
    available = data.images[split]
    if not available:
        raise TrainerError("the %s split of %s holds no images%s" % (
            split, dataset, "; try --split train" if split == "eval" and data.images["train"] else ""))
    count = num_eval_images or available
    batch = max(1, min(config.EVAL_BATCH_SIZE, count))
    params = config.experiment([trained.as_dict(), {
        "task": {"validation_data": {"input_path": data.pattern(split), "global_batch_size": batch,
                                     "drop_remainder": False}, "init_checkpoint": None},
        "trainer": {"validation_steps": -(-count // batch)}}])
    out_dir = (output or os.path.join(model_dir, "eval_" + os.path.basename(data.path.rstrip("/")))).rstrip("/")
    logs = engine.evaluate_checkpoint(params, model_dir)
    metrics = dict(engine.plain_metrics(logs, data.names), step=engine.step_of(checkpoint), dataset=data.path,
                   split=split, checkpoint=checkpoint, images=count)
    metrics["path"] = os.path.join(out_dir, engine.METRICS)
    engine.write_metrics(metrics["path"], {k: v for k, v in metrics.items() if k != "path"})
    return metrics


def export(model_dir=None, output=None):
    """A SavedModel of the newest checkpoint (default MODEL_DIR/export); returns its folder."""
    from trainer import engine
    model_dir = model_dir_or_default(model_dir)
    try:
        params = engine.load_params(model_dir)
    except FileNotFoundError as error:
        raise TrainerError(str(error)) from None
    out = (output or os.path.join(model_dir, "export")).rstrip("/")
    return engine.export(params, latest_checkpoint(model_dir), out)
