"""The trainer as plain functions: train, evaluate, export. ``python -m trainer`` and the pipeline's
steps both call these; each failure a user can act on is a ``TrainerError`` with one line."""
import contextlib
import gc
import json
import os
import time

from tfproc import console
from trainer import cocoap, config, devices, plots, timing
from trainer.dataset import DatasetError


class TrainerError(Exception):
    """A bad argument, dataset or model dir, or a machine without its accelerators; the message says
    what is wrong and what to do."""


_say = console.say


def model_dir_or_default(value):
    value = value or os.environ.get("AIP_CHECKPOINT_DIR") or os.environ.get("AIP_MODEL_DIR")
    if not value:
        raise TrainerError("pass --model-dir (where checkpoints, summaries and metrics go)")
    return absolute(value)


def absolute(path):
    """A local path made absolute (TensorFlow's checkpoint files name paths relative to where they
    are read from); gs:// and other URLs as given."""
    path = str(path).rstrip("/") or "/"
    return path if "://" in path else os.path.abspath(path)


def log_name(command):
    """``train.log``; ``train-worker-1.log`` on a worker of a multi-worker job."""
    machines, task_type, index = devices.cluster()
    return "%s.log" % command if devices.is_chief() or machines == 1 else "%s-%s-%d.log" % (command, task_type, index)


@contextlib.contextmanager
def quiet(verbose):
    """Framework output into a log (console.quiet) that ``keep_log`` puts beside the output."""
    with console.quiet(verbose):
        try:
            yield
        finally:
            gc.collect()    # TensorFlow warns of checkpoints it deletes: into the log, not at exit


def keep_log(folder, command):
    """FOLDER/<command>.log from now on (it holds what was written before, too); its path."""
    path = os.path.join(folder, log_name(command))
    try:
        return console.keep_log_at(path)
    except OSError as error:
        raise TrainerError("cannot write %s: %s" % (path, error.strerror or error))


def train(dataset, model_dir=None, backbone="resnet-50", init_checkpoint=None, init_from=None, strategy="auto",
          tpu=None, num_classes=None, params_overrides=(), expect_accelerator=None, machine_type=None,
          best_metric="AP", verbose=False, model_size="full", train_split="train", eval_split=None,
          **hyperparameters):
    """Train (and evaluate every ``train_steps_per_eval`` steps) on a split of the dataset.

    ``train_split`` is trained on (default train) and ``eval_split`` evaluated on (default eval, or
    val where the dataset has no eval split, as the published UnityGroceries-Real).

    ``hyperparameters`` are the seed's (``config.HYPERPARAMETERS``); one left out, or None, takes its
    default, ``num_eval_images`` None means at most 200, and ``warmup_steps`` None means the seed's
    500 or a tenth of ``max_steps``, whichever is fewer. ``init_checkpoint`` is a backbone
    checkpoint, or "imagenet" for Model Garden's published one; ``init_from`` a trained model dir
    whose whole network (its head too when the classes match) starts this training.
    ``expect_accelerator`` ("gpu:N", "tpu:N") is what the machine was promised: training stops at
    once if TensorFlow sees less. Each evaluation appends to MODEL_DIR/metrics_history.jsonl,
    redraws learning_curve.png and keeps the best checkpoint (by ``best_metric``) in MODEL_DIR/best/.
    TensorFlow's own output goes to MODEL_DIR/train.log (to the terminal with ``verbose``).
    Returns the model dir.
    """
    model_dir = model_dir_or_default(model_dir)
    with quiet(verbose):
        try:
            return _train(absolute(dataset), model_dir, backbone, init_checkpoint, init_from, strategy, tpu,
                          num_classes, params_overrides, expect_accelerator, machine_type, best_metric,
                          model_size, hyperparameters, train_split, eval_split)
        except (DatasetError, config.ConfigError, devices.AcceleratorMissing) as error:
            raise TrainerError(str(error)) from None


def _train(dataset, model_dir, backbone, init_checkpoint, init_from, strategy, tpu, num_classes, params_overrides,
           expect_accelerator, machine_type, best_metric, model_size, hyperparameters, train_split="train",
           eval_split=None):
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

    # No TensorFlow op may run before a multi-worker strategy exists: everything up to
    # engine.strategy_for reads files and checkpoints without starting TensorFlow's runtime.
    from trainer import dataset as dataset_lib
    from trainer import engine
    hp = dict(config.HYPERPARAMETERS)
    explicit_eval_images = hyperparameters.get("num_eval_images") not in (None, 0)
    explicit_warmup = hyperparameters.get("warmup_steps") is not None
    hp.update({k: v for k, v in hyperparameters.items() if v is not None})
    unknown = set(hp) - set(config.HYPERPARAMETERS)
    if unknown:
        raise TrainerError("unknown hyperparameter(s): %s" % ", ".join(sorted(unknown)))
    if not explicit_warmup:
        hp["warmup_steps"] = config.default_warmup_steps(hp["max_steps"])
    data = dataset_lib.load(dataset)
    data.check_split(train_split, "--train-split")
    if eval_split is None:
        eval_split = data.default_eval_split() or "eval"
        if eval_split != "eval":
            _say("%s has no eval split: evaluating on %s (pass --eval-split to choose another)" % (data.path, eval_split))
    else:
        data.check_split(eval_split, "--eval-split")
    eval_images = data.images.get(eval_split, 0)
    if num_classes is not None:
        highest = max(data.names or {0: None})
        if num_classes < 1 or num_classes < highest:
            raise TrainerError("--num-classes %d cannot hold the classes of %s, whose ids go up to %d; pass %d or "
                               "more (or leave it out)" % (num_classes, dataset, highest, max(highest, 1)))
        data.num_classes = num_classes
    if not data.images[train_split]:
        raise TrainerError("%s has no training images%s" % (
            dataset, "" if train_split == "train" else " in its %s split" % train_split))
    size = config.image_size(hp["image_size"], None if hp["image_size"] else
                             dataset_lib.common_resolution(data, train_split))
    if explicit_eval_images and hp["num_eval_images"] > eval_images:
        raise TrainerError("--num-eval-images %d: the %s split holds %d images"
                           % (hp["num_eval_images"], eval_split, eval_images))
    if not explicit_eval_images:
        hp["num_eval_images"] = min(config.HYPERPARAMETERS["num_eval_images"], eval_images)
    mode = "train_and_eval" if eval_images else "train"
    check_shards(data, (train_split, eval_split) if eval_images else (train_split,))
    if init_checkpoint and init_from:
        raise TrainerError("pass --init-checkpoint (a backbone) or --init-from (a whole trained model), not both")
    backbone_checkpoint = config.resolve_init_checkpoint(init_checkpoint, backbone)
    replicas = machines * max(1, gpus) if chosen == "multi_worker_mirrored" else max(1, gpus) \
        if chosen == "mirrored" else 1
    values = config.overrides(data, hp, backbone, size, backbone_checkpoint, eval_split=eval_split,
                              eval_images=eval_images, model_size=model_size, replicas=replicas, train_split=train_split)
    params = config.experiment([values] + [config.parse_override(o) for o in params_overrides])
    if best_metric not in engine.COCO_KEYS:
        raise TrainerError("--best-metric must be one of %s, got %s" % (", ".join(engine.COCO_KEYS), best_metric))
    initialize, starts_from = None, ("ImageNet checkpoint %s" % backbone_checkpoint if init_checkpoint == "imagenet"
                                     else "the backbone of %s" % backbone_checkpoint if backbone_checkpoint
                                     else "scratch (random weights)")
    if init_from:
        initialize, starts_from = initializer_from(absolute(init_from), params)

    step = engine.latest_step(model_dir)
    aip_model_dir = os.environ.get("AIP_MODEL_DIR")
    if step is not None:
        if step >= params.trainer.train_steps:
            if aip_model_dir:       # a job run again after its training ended (a retry): export only
                _say("%s is already trained to step %d; exporting it" % (model_dir, step))
                if devices.is_chief():
                    _say("exported the SavedModel to %s" % engine.export(params, latest_checkpoint(model_dir),
                                                                        aip_model_dir))
                return model_dir
            raise TrainerError("%s is already trained to step %d; pass a larger --max-steps to go on"
                               % (model_dir, step))
        _say("resuming from the checkpoint at step %d in %s" % (step, model_dir))
    chief = devices.is_chief()
    log = keep_log(model_dir, "train")
    try:
        distribution = engine.strategy_for(chosen, tpu)
    except (ValueError, RuntimeError) as error:     # e.g. no TPU where one was promised
        raise devices.AcceleratorMissing("machine %s: cannot start the %s strategy: %s"
                                         % (machine_type or "(type not given)", chosen, str(error).splitlines()[0]))
    if chief:
        from trainer import classes
        engine.save_params(params, model_dir, resumed_at=step)
        classes.save(model_dir, data.names)
    if promise and promise[0] == "tpu":
        import tensorflow as tf
        devices.check_promise(promise, gpus, len(tf.config.list_logical_devices("TPU")), seen, machine_type)
    progress = engine.Progress(params.trainer.train_steps, step or 0, _say)
    metrics_path = os.path.join(model_dir, engine.METRICS)
    began = time.time()

    def evaluated(logs, at_step):
        metrics = dict(engine.plain_metrics(logs, data.names), step=at_step, dataset=data.path, split=eval_split,
                       images=engine.images_scored())
        if chief:
            engine.write_metrics(metrics_path, metrics)
            entry = {k: v for k, v in metrics.items() if k not in ("dataset", "split")}
            entry.update(train_loss=progress.loss, wall_time=round(time.time(), 1),
                         elapsed_seconds=round(time.time() - began, 1))
            history = engine.append_history(model_dir, entry)
            with tf_gfile_writer(os.path.join(model_dir, engine.CURVE)) as f:
                plots.learning_curve(history, f, best_metric)
        progress.last_line = time.time()
        _say("evaluation at step %d on %s images: AP %.4f, AP50 %.4f, ARmax100 %.4f" % (
            at_step, metrics.get("images") or "?", metrics.get("AP", float("nan")), metrics.get("AP50", float("nan")),
            metrics.get("ARmax100", float("nan"))))
        if chief and best_metric in metrics and engine.keep_best(model_dir, at_step, best_metric, metrics[best_metric]):
            _say("  best %s so far: the checkpoint of step %d is kept in %s"
                 % (best_metric, at_step, os.path.join(model_dir, engine.BEST)))

    _say("training %s%s on %s%s: %d classes, input %dx%d, batch %d, %d steps, %s every %d steps on %d images; "
         "starting from %s" % (
             backbone, "" if model_size == "full" else " (%s)" % model_size, data.path,
             "" if train_split == "train" else " (split %s)" % train_split, data.num_classes, size[0], size[1],
             params.task.train_data.global_batch_size, params.trainer.train_steps,
             "evaluating" + ("" if eval_split == "eval" else " on %s" % eval_split) if mode == "train_and_eval"
             else "no eval split, not evaluating",
             params.trainer.validation_interval, hp["num_eval_images"],
             "the checkpoint at step %d" % step if step else starts_from))
    _say("learning rate: %s" % config.describe_schedule(params, explicit_warmup))
    _say("strategy %s with %d replica(s) (TensorFlow sees: %s); TensorFlow's own output: %s"
         % (chosen, distribution.num_replicas_in_sync, ", ".join(seen), log))
    progress.start_heartbeat()
    try:
        with damaged_shards_named(data), disk_full_named(model_dir, step):
            engine.run(params, model_dir, mode, distribution, on_train=progress, on_eval=evaluated,
                       log_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR"), initialize=initialize)
    finally:
        progress.stop()
    _say("trained to step %d in %s; checkpoints in %s" % (
        params.trainer.train_steps, engine.duration(time.time() - began), model_dir))
    if chief:
        keep_step_time(model_dir, progress, params.trainer.train_steps, {
            "backbone": backbone, "model_size": model_size, "train_batch_size": params.task.train_data.global_batch_size,
            "image_size": "%d,%d" % tuple(size[:2]), "machine_type": machine_type or "",
            "accelerator": expect_accelerator or None, "machines": machines})
    unused = variables_without_gradients(log)
    if unused:
        _say("note: %s" % explain_unused(unused, backbone))
    if chief and aip_model_dir and absolute(aip_model_dir) != model_dir:
        _say("exported the SavedModel to %s" % engine.export(params, latest_checkpoint(model_dir), aip_model_dir))
    return model_dir


@contextlib.contextmanager
def disk_full_named(model_dir, resumed_at):
    """A full disk under the model dir, at a checkpoint or any other write, ends the training in one
    line; what the cut save left is removed, and the newest whole checkpoint is kept to resume from."""
    try:
        yield
    except Exception as error:
        if "No space left on device" not in str(error) and getattr(error, "errno", None) != 28:
            raise
        from trainer import engine
        removed = engine.remove_unfinished_checkpoints(model_dir, resumed_at)
        kept = engine.latest_step(model_dir)
        raise TrainerError("no space left on the disk of %s%s; %s. Free some space and run the same command again"
                           % (model_dir, " (removed the unfinished %s)" % ", ".join(removed) if removed else "",
                              "its newest whole checkpoint, of step %d, is kept and training resumes from it" % kept
                              if kept is not None else "it holds no whole checkpoint yet")) from None


def keep_step_time(model_dir, progress, final_step, settings):
    """MODEL_DIR/timing.json: the seconds a step took after the first loop (evaluations included)."""
    if progress.first_step_at is None:
        return
    began, first = progress.first_step_at
    if final_step <= first:
        return
    import tensorflow as tf
    path = os.path.join(model_dir, timing.FILE)
    with tf_gfile_writer(path + ".tmp") as f:
        f.write(timing.record((time.time() - began) / (final_step - first), final_step - first, settings).encode())
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def variables_without_gradients(log):
    """The variables TensorFlow warned got no gradient (in the local log), or []."""
    import ast
    import re
    try:
        with open(log, errors="replace") as f:
            for line in f:
                found = re.search(r"Gradients do not exist for variables (\[.*?\])", line)
                if found:
                    return ast.literal_eval(found.group(1))
    except (OSError, ValueError, SyntaxError):
        pass
    return []


def explain_unused(names, backbone):
    """One line for TensorFlow's warning about variables without gradients."""
    short = ", ".join(sorted({n.split(":")[0] for n in names}))
    if backbone == "mobilenet" and all(n.startswith("conv2dbn_block_1/") for n in names):
        return ("MobileNetV2's last 1x1 layer feeds no detection level, so its batch-norm scale and offset (%s) get "
                "no gradient and keep their initial values; this is harmless" % short)
    return "%d variable(s) got no gradient and did not change in training: %s" % (len(names), short)


def tf_gfile_writer(path):
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "wb")


def check_shards(data, splits):
    """Refuse, before a model is built, a split whose summary counts images but that has no shards."""
    import tensorflow as tf
    for split in splits:
        if data.images.get(split) and not tf.io.gfile.glob(data.pattern(split)):
            raise TrainerError("%s says the %s split holds %d images, but %s matches no file: the output is "
                               "damaged or incomplete; convert again" % (data.path, split, data.images[split],
                                                                         data.pattern(split)))


class damaged_shards_named:
    """Turn TensorFlow's DataLossError (a truncated or corrupt shard) into a line naming the shard."""

    def __init__(self, data):
        self.data = data

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        import tensorflow as tf
        if kind is None or not issubclass(kind, tf.errors.DataLossError):
            return False
        raise TrainerError("a shard of %s is damaged (%s): %s; convert the dataset again"
                           % (self.data.path, first_damaged_shard(self.data) or "which one is unknown",
                              str(error).strip().splitlines()[0][:200])) from None


def first_damaged_shard(data):
    import tensorflow as tf
    for split in data.images:
        for path in sorted(tf.io.gfile.glob(data.pattern(split))):
            try:
                for _ in tf.data.TFRecordDataset(path):
                    pass
            except tf.errors.DataLossError:
                return path
    return None


def initializer_from(source, params):
    """``(initialize(model), what it starts from)`` for --init-from: the backbone and decoder of a
    trained model, and its head when it knows the same classes."""
    import tensorflow as tf

    from trainer import engine
    source = source.rstrip("/")
    checkpoint = tf.train.latest_checkpoint(source) if tf.io.gfile.exists(source) else None
    if not checkpoint:
        raise TrainerError("--init-from %s: no checkpoint there (a model dir of python -m trainer train)" % source)
    check_readable(checkpoint)
    try:
        trained = engine.load_params(source)
    except FileNotFoundError as error:
        raise TrainerError(str(error)) from None
    ours, theirs = params.task.model, trained.task.model
    plain = lambda value: value.as_dict() if hasattr(value, "as_dict") else value  # noqa: E731
    for field in ("backbone", "decoder", "min_level", "max_level"):
        if plain(getattr(ours, field)) != plain(getattr(theirs, field)):
            raise TrainerError("--init-from %s: its %s differs from this training's; pass the same --backbone, "
                               "--fpn-type and overrides" % (source, field))
    with_head = ours.num_classes == theirs.num_classes and ours.head.as_dict() == theirs.head.as_dict()

    def initialize(model):
        parts = tf.Module()
        parts._backbone, parts._decoder = model.backbone, model.decoder
        if with_head:
            parts._head = model.head
        tf.train.Checkpoint(model=parts).read(checkpoint).expect_partial().assert_existing_objects_matched()

    what = "the whole network of %s (step %d%s)" % (
        source, engine.step_of(checkpoint), "" if with_head else "; a new head: it knows other classes")
    return initialize, what


def latest_checkpoint(model_dir):
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        raise TrainerError("no checkpoint in %s" % model_dir)
    return latest


def evaluate(dataset, model_dir=None, split=None, num_eval_images=0, output=None, checkpoint="latest",
             verbose=False):
    """Score a checkpoint (``latest``, ``best`` or a step) with COCO AP/AR on a split of a conversion
    output; write OUTPUT/metrics.json and OUTPUT/pr_curves.png (default OUTPUT:
    MODEL_DIR/eval/<the dataset's folder and its parent>-<split>), TensorFlow's output to
    OUTPUT/evaluate.log, and return the metrics."""
    model_dir, dataset = model_dir_or_default(model_dir), absolute(dataset)
    if split is None:
        split = default_split(dataset)
    out_dir = absolute(output or default_eval_folder(model_dir, dataset, split))
    with quiet(verbose):
        try:
            return _evaluate(dataset, model_dir, split, num_eval_images, out_dir, checkpoint)
        except (DatasetError, config.ConfigError, FileNotFoundError) as error:
            raise TrainerError(str(error)) from None


def default_split(dataset):
    """eval, or val where the dataset has no eval split (the published UnityGroceries-Real splits)."""
    from trainer import dataset as dataset_lib
    try:
        return dataset_lib.load(dataset).default_eval_split() or "eval"
    except DatasetError as error:
        raise TrainerError(str(error)) from None


def default_eval_folder(model_dir, dataset_path, split):
    """MODEL_DIR/eval/<parent>_<folder>-<split>-<hash of the whole path>: two datasets that are both
    some SRC/output never share one."""
    import hashlib
    import re
    parts = [p for p in dataset_path.rstrip("/").replace("\\", "/").split("/") if p][-2:]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_")[-80:] or "dataset"
    digest = hashlib.sha1(dataset_path.rstrip("/").encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return os.path.join(model_dir, "eval", "%s-%s-%s" % (readable, split, digest))


def _evaluate(dataset, model_dir, split, num_eval_images, output, which):
    import tensorflow as tf

    from trainer import dataset as dataset_lib
    from trainer import engine
    data = dataset_lib.load(dataset)
    trained = engine.load_params(model_dir)
    checkpoint = chosen_checkpoint(model_dir, which)
    from trainer import classes
    try:
        new = classes.new_to_model(classes.model_names(model_dir, trained), trained.task.model.num_classes - 1,
                                   data.names, dataset)
    except classes.ClassMismatch as error:
        raise TrainerError(str(error)) from None
    if new and len(new) == len(data.names):
        raise TrainerError("the model knows none of the classes of %s (%s)" % (dataset, ", ".join(sorted(new.values()))))
    if new:
        _say("%s holds %d class(es) the model was not trained on (%s): scored on the other %d" % (
            dataset, len(new), ", ".join(new[i] for i in sorted(new)), len(data.names) - len(new)))
    available = data.images[data.check_split(split)]
    if not available:
        raise TrainerError("the %s split of %s holds no images%s" % (
            split, dataset, "; try --split train" if split == "eval" and data.images["train"] else ""))
    check_shards(data, (split,))
    count = num_eval_images or available
    batch = max(1, min(config.EVAL_BATCH_SIZE, count))
    params = config.experiment([trained.as_dict(), {
        "task": {"validation_data": {"input_path": data.pattern(split), "global_batch_size": batch,
                                     "drop_remainder": False}, "init_checkpoint": None},
        "trainer": {"validation_steps": -(-count // batch)}}])
    out_dir = output
    keep_log(out_dir, "evaluate")
    scratch = out_dir + "/.checkpoint"          # the eval mode scores the newest checkpoint of a folder
    tf.io.gfile.makedirs(scratch)
    with tf.io.gfile.GFile(scratch + "/checkpoint", "w") as f:
        f.write('model_checkpoint_path: "%s"\n' % checkpoint)
    engine.score_only_classes([i for i in data.names if i not in new] if new else None)
    with damaged_shards_named(data):
        logs = engine.evaluate_checkpoint(params, scratch)
    tf.io.gfile.rmtree(scratch)
    metrics = dict(engine.plain_metrics(logs, data.names), step=engine.step_of(checkpoint), dataset=data.path,
                   split=split, checkpoint=checkpoint, checkpoint_digest=engine.checkpoint_digest(checkpoint),
                   images=engine.images_scored() or count)
    if new:
        metrics["classes_new_to_model"] = sorted(new.values())
    metrics["path"] = os.path.join(out_dir, engine.METRICS)
    engine.write_metrics(metrics["path"], {k: v for k, v in metrics.items() if k != "path"})
    table = engine.last_match_table()
    if table is not None:
        table.update(dataset=data.path, split=split, checkpoint=checkpoint)
        engine.write_text(os.path.join(out_dir, cocoap.MATCHES), json.dumps(table, separators=(",", ":")) + "\n")
    curves = engine.precision_recall_curves(data.names)
    without_boxes = sorted(name for i, name in data.names.items() if name not in curves and i not in new)
    if without_boxes:
        metrics["classes_without_eval_boxes"] = without_boxes
    if curves or without_boxes:
        with tf_gfile_writer(os.path.join(out_dir, "pr_curves.png")) as f:
            plots.precision_recall(curves, f, class_ids={n: i for i, n in data.names.items()},
                                   missing=without_boxes)
    return metrics


def chosen_checkpoint(model_dir, which="latest"):
    from trainer import engine
    which = str(which or "latest")
    if which not in ("latest", "best") and not which.isdigit():
        raise TrainerError("--checkpoint takes latest, best or a step number, got %s" % which)
    found = engine.choose_checkpoint(model_dir, which)
    if not found:
        kept = ", ".join(str(h["step"]) for h in engine.read_history(model_dir)) or "none"
        raise TrainerError("no %s checkpoint in %s (steps evaluated: %s; the newest checkpoints and the best "
                           "are kept)" % ("checkpoint of step " + which if which.isdigit() else which, model_dir, kept))
    check_readable(found)
    return found


def check_readable(checkpoint):
    from trainer import engine
    problem = engine.damaged_checkpoint(checkpoint)
    if problem:
        raise TrainerError("the checkpoint %s is damaged (%s); pick another with --checkpoint, or train again"
                           % (checkpoint, problem))


def export(model_dir=None, output=None, checkpoint="latest", verbose=False):
    """A SavedModel of a checkpoint (``latest``, ``best`` or a step; default MODEL_DIR/export); returns
    its folder. TensorFlow's output goes to MODEL_DIR/export.log."""
    from trainer import engine
    model_dir = model_dir_or_default(model_dir)
    with quiet(verbose):
        try:
            params = engine.load_params(model_dir)
        except FileNotFoundError as error:
            raise TrainerError(str(error)) from None
        out = absolute(output or os.path.join(model_dir, "export"))
        chosen = chosen_checkpoint(model_dir, checkpoint)
        keep_log(model_dir, "export")
        return engine.export(params, chosen, out)


def predict(dataset, model_dir=None, output=None, split=None, max_images=50, min_score=0.3, checkpoint="latest",
            sheet_images=16, verbose=False):
    """Run the model on up to ``max_images`` images of a split: OUTPUT/detections.json holds COCO
    detections (image_id, category_id, bbox [x, y, width, height] in pixels, score) at or above
    ``min_score``, and OUTPUT/contact_sheet.png draws them beside the ground truth. Returns
    ``(detections, contact sheet path)``."""
    model_dir, dataset = model_dir_or_default(model_dir), absolute(dataset)
    out_dir = absolute(output or os.path.join(model_dir, "predictions"))
    if split is None:
        split = default_split(dataset)
    with quiet(verbose):
        try:
            return _predict(dataset, model_dir, out_dir, split, max_images, min_score, checkpoint, sheet_images)
        except (DatasetError, config.ConfigError, FileNotFoundError) as error:
            raise TrainerError(str(error)) from None


def _predict(dataset, model_dir, output, split, max_images, min_score, which, sheet_images):
    import json

    import tensorflow as tf

    from trainer import dataset as dataset_lib
    from trainer import engine
    data = dataset_lib.load(dataset)
    if not data.images[data.check_split(split)]:
        raise TrainerError("the %s split of %s holds no images" % (split, dataset))
    check_shards(data, (split,))
    params = engine.normalised_outputs(engine.load_params(model_dir))
    detector = engine.detector(params, chosen_checkpoint(model_dir, which))
    out_dir = output
    keep_log(out_dir, "predict")
    detections, thumbs = [], []
    with damaged_shards_named(data):
        for record in dataset_lib.records(data, split).take(max_images):
            image = tf.io.decode_image(record["encoded"], channels=3, expand_animations=False)
            found = detector(image)
            height, width = int(record["height"]), int(record["width"])
            image_id = int(record["source_id"])
            kept = [(box, label, score) for box, label, score in found if score >= min_score]
            for (ymin, xmin, ymax, xmax), label, score in kept:
                detections.append({"image_id": image_id, "category_id": label, "score": round(score, 5),
                                   "bbox": [round(xmin * width, 2), round(ymin * height, 2),
                                            round((xmax - xmin) * width, 2), round((ymax - ymin) * height, 2)]})
            if len(thumbs) < sheet_images:
                truth = list(zip(record["boxes"], record["labels"]))
                name = record["filename"].numpy().decode("utf-8", "replace").rsplit("/", 1)[-1] or str(image_id)
                caption = "%s (%s)\n%d true, %d found at %.2f+" % (name, split, len(truth), len(kept), min_score)
                thumbs.append(plots.draw_boxes(record["encoded"].numpy(), truth, kept, data.names, caption=caption))
    with tf.io.gfile.GFile(os.path.join(out_dir, "detections.json"), "w") as f:
        f.write(json.dumps(detections) + "\n")
    sheet = os.path.join(out_dir, "contact_sheet.png")
    with tf_gfile_writer(sheet) as f:
        plots.contact_sheet(thumbs, f, names=data.names)
    return detections, sheet
