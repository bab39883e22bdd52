"""Running Model Garden: training with evaluations, evaluating a checkpoint, exporting a SavedModel."""
import json
import os
import threading
import time

import tensorflow as tf

from trainer import validation

PARAMS = "params.yaml"
METRICS = "metrics.json"
HISTORY = "metrics_history.jsonl"
CURVE = "learning_curve.png"
BEST = "best"               # MODEL_DIR/best/: the checkpoint of the best evaluation, and best.json
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")
LOSS_KEYS = ("total_loss", "cls_loss", "box_loss", "model_loss", "validation_loss")


def strategy_for(name, tpu=None):
    from official.common import distribute_utils
    gpus = len(tf.config.list_physical_devices("GPU"))
    if name == "tpu":
        return distribute_utils.get_distribution_strategy("tpu", tpu_address=tpu or "local")
    if name == "mirrored":
        return distribute_utils.get_distribution_strategy("mirrored", num_gpus=max(gpus, 1))
    if name == "multi_worker_mirrored":
        return distribute_utils.get_distribution_strategy("multi_worker_mirrored")
    return distribute_utils.get_distribution_strategy("one_device", num_gpus=min(gpus, 1))


def latest_step(model_dir):
    """The step of the newest checkpoint in ``model_dir``, or None."""
    latest = tf.train.latest_checkpoint(model_dir) if tf.io.gfile.exists(model_dir) else None
    if not latest:
        return None
    return int(tf.train.load_variable(latest, "global_step/.ATTRIBUTES/VARIABLE_VALUE")) \
        if _has_variable(latest, "global_step/.ATTRIBUTES/VARIABLE_VALUE") else 0


def _has_variable(checkpoint, name):
    return any(n == name for n, _ in tf.train.list_variables(checkpoint))


def save_params(params, model_dir, resumed_at=None):
    """MODEL_DIR/params.yaml; a resumed run keeps the first one and records its own beside it."""
    from official.modeling import hyperparams
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, PARAMS)
    if resumed_at is not None and tf.io.gfile.exists(path):
        path = os.path.join(model_dir, "params.resumed-at-%d.yaml" % resumed_at)
    hyperparams.save_params_dict_to_yaml(params, path)


def load_params(model_dir):
    from official.core import exp_factory
    from official.modeling import hyperparams
    from official.vision import registry_imports  # noqa: F401
    path = os.path.join(model_dir, PARAMS)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError("%s has no %s: train a model into it first (python -m trainer train)" % (model_dir, PARAMS))
    params = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
    params = hyperparams.override_params_dict(params, path, is_strict=False)
    return params


def controller_class(log_dir, running, model_dir=None, chief=True):
    """An orbit.Controller that puts itself in ``running`` (so actions can read the true global
    step) and, with ``log_dir`` (Vertex's AIP_TENSORBOARD_LOG_DIR), writes its TensorBoard
    summaries there instead of the model dir. On a worker that is not the chief, summaries go to
    scratch (one writer per folder) and the start is the chief's newest checkpoint in ``model_dir``
    (Model Garden gives such a worker a scratch checkpoint folder of its own, so a restarted job
    would otherwise start it from scratch while the chief resumes)."""
    import tempfile

    import orbit

    class Controller(orbit.Controller):
        def __init__(self, **kwargs):
            if not chief:
                scratch = tempfile.mkdtemp(prefix="synthdet-worker-summaries-")
                for key in ("summary_dir", "eval_summary_dir"):
                    if kwargs.get(key):
                        kwargs[key] = os.path.join(scratch, key)
            elif log_dir:
                if kwargs.get("summary_dir"):
                    kwargs["summary_dir"] = os.path.join(log_dir, "train")
                if kwargs.get("eval_summary_dir"):
                    kwargs["eval_summary_dir"] = os.path.join(log_dir, "validation")
            running[:] = [self]
            super().__init__(**kwargs)

        def restore_checkpoint(self, checkpoint_path=None):
            if checkpoint_path is None and not chief and model_dir:
                checkpoint_path = tf.train.latest_checkpoint(model_dir) if tf.io.gfile.exists(model_dir) else None
            return super().restore_checkpoint(checkpoint_path)
    return Controller


def plain_metrics(logs, names):
    """Model Garden's eval logs as plain numbers: COCO AP/AR, losses, per-class AP by name."""
    out = {}
    for key, value in logs.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if key in COCO_KEYS or key in LOSS_KEYS:
            out[key] = number
        elif key.startswith("Precision mAP ByCategory/"):
            class_id = int(key.rsplit("/", 1)[1])
            out.setdefault("per_class_AP", {})[names.get(class_id, "class_%d" % class_id)] = number
    return out


def write_metrics(path, metrics):
    write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def write_text(path, text):
    """Replace ``path`` whole (gs:// objects cannot be appended to, and a reader never sees half)."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(text)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


class Progress:
    """A line per training loop: the true step (Orbit's global step), loss, speed and time left; and,
    from a thread, a line whenever 30 s pass without one (model building, a long loop)."""

    def __init__(self, total_steps, start_step, say, every=30.0):
        self.total, self.step, self.start = total_steps, start_step, start_step
        self.say, self.every = say, every
        self.began = self.last_line = time.time()
        self.loss = float("nan")
        self.first_step_at = None
        self._stop = threading.Event()

    def __call__(self, logs, step):
        now = time.time()
        if self.first_step_at is None:      # the first loop includes building the model: measure from here
            self.first_step_at = (now, step)
        self.step = step
        self.loss = float(logs.get("total_loss", logs.get("training_loss", float("nan"))))
        self._line("step %d/%d  loss %.4f  %s" % (self.step, self.total, self.loss, self._speed(now)))

    def _speed(self, now):
        if self.first_step_at is None:
            return ""
        began, start = self.first_step_at
        done, elapsed = self.step - start, now - began
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        if not rate:
            return ""
        return "%.2f steps/s  about %s left" % (rate, duration((self.total - self.step) / rate))

    def _line(self, text):
        self.last_line = time.time()
        self.say("[%5.0fs] %s" % (self.last_line - self.began, text))

    def start_heartbeat(self):
        def beat():
            while not self._stop.wait(1.0):
                if time.time() - self.last_line >= self.every:
                    if self.first_step_at is None:
                        self._line("building the model and its input pipeline (the first steps compile it)")
                    else:
                        self._line("still training after step %d/%d  %s" % (self.step, self.total,
                                                                            self._speed(time.time())))
        threading.Thread(target=beat, name="progress", daemon=True).start()
        return self

    def stop(self):
        self._stop.set()


def duration(seconds):
    """``75`` -> "1m15s"; "?" for a value that is not finite."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


def append_history(model_dir, entry):
    """One line of MODEL_DIR/metrics_history.jsonl per evaluation; returns every line so far."""
    lines = [line for line in read_history(model_dir) if line.get("step") != entry["step"]] + [entry]
    write_text(os.path.join(model_dir, HISTORY), "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    return lines


def read_history(model_dir):
    path = os.path.join(model_dir, HISTORY)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def checkpoint_at(model_dir, step):
    """The checkpoint prefix of ``step`` in ``model_dir`` (or its best/ folder), or None."""
    for folder in (model_dir, os.path.join(model_dir, BEST)):
        state = tf.train.get_checkpoint_state(folder) if tf.io.gfile.exists(folder) else None
        listed = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path] if state else []
        for path in listed:     # TF joins them to the folder; a file of one model_checkpoint_path lists no others
            if step_of(path) == step:
                return path
    return None


def remove_unfinished_checkpoints(model_dir, after_step):
    """Delete what a save cut short left in ``model_dir`` (a full disk): the ``ckpt-N_temp/`` shards
    and the ``ckpt-N.*`` files of steps past ``after_step`` that its ``checkpoint`` file does not
    list. Whole checkpoints, and anything of other names, are left alone. Returns what was removed."""
    import re
    state = tf.train.get_checkpoint_state(model_dir) if tf.io.gfile.exists(model_dir) else None
    whole = {os.path.basename(p) for p in (list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
                                           if state else [])}
    removed = []
    for name in sorted(tf.io.gfile.listdir(model_dir)):
        name = name.rstrip("/")
        found = re.fullmatch(r"(ckpt-(\d+))(_temp|\.index|\.data-\d+-of-\d+)", name)
        if not found or found.group(1) in whole or int(found.group(2)) <= (after_step or 0):
            continue
        path = os.path.join(model_dir, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
        removed.append(name)
    return removed


def keep_best(model_dir, step, metric, value):
    """Copy the checkpoint of ``step`` to MODEL_DIR/best/ if ``value`` beats the best so far, or
    ties it at a later step (the model that learned longer; the training keeps only its newest
    checkpoints). Returns whether it did."""
    best_dir = os.path.join(model_dir, BEST)
    record_path = os.path.join(best_dir, "best.json")
    if tf.io.gfile.exists(record_path):
        with tf.io.gfile.GFile(record_path) as f:
            record = json.load(f)
        best, best_step = record.get("value", float("-inf")), int(record.get("step") or 0)
        if record.get("metric") == metric and (best > value or (best == value and best_step >= step)):
            return False
    source = checkpoint_at(model_dir, step)
    if source is None:
        return False
    incoming = best_dir + ".incoming"
    if tf.io.gfile.exists(incoming):
        tf.io.gfile.rmtree(incoming)
    tf.io.gfile.makedirs(incoming)
    name = os.path.basename(source)
    for path in tf.io.gfile.glob(source + ".*"):
        tf.io.gfile.copy(path, os.path.join(incoming, os.path.basename(path)), overwrite=True)
    with tf.io.gfile.GFile(os.path.join(incoming, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (name, name))
    with tf.io.gfile.GFile(os.path.join(incoming, "best.json"), "w") as f:
        f.write(json.dumps({"metric": metric, "value": value, "step": step, "checkpoint": name}, indent=2) + "\n")
    if tf.io.gfile.exists(best_dir):
        tf.io.gfile.rmtree(best_dir)
    tf.io.gfile.rename(incoming, best_dir)
    return True


def choose_checkpoint(model_dir, which="latest"):
    """The checkpoint prefix for ``which``: ``latest``, ``best`` or a step number."""
    if which == "latest":
        return tf.train.latest_checkpoint(model_dir)
    if which == "best":
        return tf.train.latest_checkpoint(os.path.join(model_dir, BEST)) \
            if tf.io.gfile.exists(os.path.join(model_dir, BEST)) else None
    return checkpoint_at(model_dir, int(which))


_PRECISION = {}     # the last COCO evaluation's precision table and class ids (for PR curves)
_SCORED = {"classes": None}     # the category ids the COCO evaluations in this process score (None: all)


def score_only_classes(class_ids):
    """Score the next COCO evaluations in this process on these category ids alone (None: all of
    the ground truth's): pycocotools matches per image and class, so the others' boxes change nothing."""
    _SCORED["classes"] = None if class_ids is None else {int(c) for c in class_ids}


def images_scored():
    """How many images the last COCO evaluation in this process scored, or None."""
    return _PRECISION.get("images")


def precision_recall_curves(names):
    """{class name: (recall, precision)} at IoU 0.5 from the last COCO evaluation in this process."""
    import numpy as np
    precision, class_ids = _PRECISION.get("table"), _PRECISION.get("class_ids") or []
    if precision is None:
        return {}
    recall = list(np.linspace(0.0, 1.0, precision.shape[1]))
    curves = {}
    for k, class_id in enumerate(class_ids):
        values = precision[0, :, k, 0, -1]
        if (values > -1).any():
            curves[names.get(class_id, "class %d" % class_id)] = (recall, [float(v) if v > -1 else None for v in values])
    return curves


def detector(params, checkpoint):
    """A function from one uint8 image [H, W, 3] to ``[(box normalised to it, class, score)]``,
    using the same module as the SavedModel's serving signature."""
    from official.vision.serving import detection
    size = list(params.task.model.input_size[:2])
    module = detection.DetectionModule(params=params, batch_size=1, input_image_size=size)
    tf.train.Checkpoint(model=module.model).read(checkpoint).expect_partial().assert_existing_objects_matched()

    def detect(image):
        out = module.serve(tf.cast(image[tf.newaxis], tf.uint8))
        count = int(out["num_detections"][0])
        boxes = out["detection_boxes"][0][:count].numpy().tolist()
        classes = out["detection_classes"][0][:count].numpy().astype(int).tolist()
        scores = out["detection_scores"][0][:count].numpy().tolist()
        return list(zip(boxes, classes, scores))
    return detect


BOXES_KEPT = 5


def match_table(coco_eval, min_box_score=0.3):
    """What pycocotools decided for each image and class (all areas, the most detections), so that
    AP can be computed again on any resample of the images (``trainer.cocoap``): the images scored,
    the IoU thresholds, and per (image, class) the ground truths that count, each detection's score
    and, as bits over the thresholds, whether it matched and whether it is ignored. Boxes (COCO
    pixels [x, y, w, h]) are kept, for pictures, for the detections scoring ``min_box_score`` or
    more and at least the first BOXES_KEPT (they come sorted by score)."""
    import numpy as np
    p = coco_eval.params
    all_areas, most = list(p.areaRng[0]), p.maxDets[-1]
    bits = 1 << np.arange(len(p.iouThrs))
    rows = []
    for e in coco_eval.evalImgs:
        if e is None or list(e["aRng"]) != all_areas or e["maxDet"] != most:
            continue
        # a detection scoring 0 (Model Garden pads to its maximum with them) comes last and is never
        # a match: leaving it out changes no AP or AR
        kept = [k for k, score in enumerate(e["dtScores"][:most]) if score > 0]
        scores = [float(e["dtScores"][k]) for k in kept]      # exact: a rounded tie would reorder them
        matched = (np.asarray(e["dtMatches"]).reshape(len(bits), -1)[:, kept] > 0)
        ignored = np.asarray(e["dtIgnore"]).reshape(len(bits), -1)[:, kept].astype(bool)
        ids = [e["dtIds"][k] for k in kept]
        gt_ignored = np.asarray(e["gtIgnore"]).astype(bool)
        rows.append({
            "image": int(e["image_id"]), "class": int(e["category_id"]), "gt": int((~gt_ignored).sum()),
            "scores": scores, "matched": [int(v) for v in (matched * bits[:, None]).sum(axis=0)],
            "ignored": [int(v) for v in (ignored * bits[:, None]).sum(axis=0)],
            "boxes": [[round(float(v), 1) for v in coco_eval.cocoDt.anns[i]["bbox"]]
                      for rank, (i, score) in enumerate(zip(ids, scores))
                      if score >= min_box_score or rank < BOXES_KEPT],
            "gt_boxes": [[round(float(v), 1) for v in coco_eval.cocoGt.anns[i]["bbox"]]
                         for i, ignore in zip(e["gtIds"], gt_ignored) if not ignore]})
    return {"images": [int(i) for i in p.imgIds], "classes": [int(c) for c in p.catIds],
            "iou_thresholds": [round(float(t), 2) for t in p.iouThrs],
            "max_detections": int(most), "box_min_score": min_box_score, "rows": rows}


def last_match_table():
    """The match table of the last COCO evaluation in this process, or None."""
    return _PRECISION.get("matches")


def enable_per_class_ap():
    """Model Garden reports per-class AP from ``COCOeval.category_stats``, which pycocotools does not
    compute: derive it from the precision table that ``summarize`` leaves (all areas, 100 detections)."""
    import numpy as np
    from pycocotools import cocoeval
    if getattr(cocoeval.COCOeval, "_per_class_ap", False):
        return
    summarize, evaluate = cocoeval.COCOeval.summarize, cocoeval.COCOeval.evaluate

    def evaluate_scored_classes(self):
        if _SCORED["classes"] is not None:
            self.params.catIds = [c for c in self.params.catIds if c in _SCORED["classes"]]
        evaluate(self)

    def summarize_with_categories(self):
        summarize(self)
        precision = self.eval["precision"]          # [IoU thresholds, recall, class, area, max dets]
        _PRECISION.update(table=precision, class_ids=list(self.params.catIds), images=len(self.params.imgIds),
                          matches=match_table(self))
        stats = np.full((12, precision.shape[2]), -1.0)
        for row, thresholds in ((0, slice(None)), (1, 0), (2, 5)):     # AP, AP50, AP75
            for k in range(precision.shape[2]):
                values = precision[thresholds, :, k, 0, -1]
                values = values[values > -1]
                stats[row, k] = values.mean() if values.size else -1.0
        self.category_stats = stats

    cocoeval.COCOeval.summarize = summarize_with_categories
    cocoeval.COCOeval.evaluate = evaluate_scored_classes
    cocoeval.COCOeval._per_class_ap = True


def run(params, model_dir, mode, strategy, on_train=None, on_eval=None, log_dir=None, initialize=None):
    """Model Garden's train_lib with our actions, which get the logs and the true global step;
    ``initialize(model)`` replaces the task's own start from ``init_checkpoint``. Returns the final
    eval logs (if any)."""
    enable_per_class_ap()
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)        # Orbit's and Model Garden's per-loop dumps
    from official.core import task_factory, train_lib

    from trainer import devices
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=model_dir)
    validation.clip_detections_to_the_photo(task)
    validation.gather_evaluations_across_workers(task, strategy)
    if initialize is not None:
        task.initialize = initialize
    running = []

    def step():
        return int(running[0].global_step.numpy())

    def evaluated(output):
        # Orbit saves its first checkpoint after the first loop, then every interval from there, so
        # an evaluation's step may have none: save it, so the step reported is a checkpoint kept
        # (each worker asks its own checkpoint manager: a multi-worker save needs them all, at once)
        controller = running[0]
        manager = controller.checkpoint_manager
        if mode != "eval" and manager is not None and (
                manager.latest_checkpoint is None or step_of(manager.latest_checkpoint) != step()):
            controller.save_checkpoint()
        on_eval(output, step())

    train_actions = [lambda output: on_train(output, step())] if on_train else None
    eval_actions = [evaluated] if on_eval else None
    _, logs = train_lib.run_experiment(
        distribution_strategy=strategy, task=task, mode=mode, params=params, model_dir=model_dir,
        train_actions=train_actions, eval_actions=eval_actions, controller_cls=controller_class(log_dir, running, model_dir,
                                                                            devices.is_chief()))
    return logs


def evaluate_checkpoint(params, model_dir, strategy=None):
    """Score the newest checkpoint of ``model_dir`` on ``params.task.validation_data``; the eval logs."""
    captured = {}
    run(params, model_dir, "eval", strategy or strategy_for("one_device"),
        on_eval=lambda logs, step: captured.update(logs))
    return captured


def normalised_outputs(params):
    """A copy of the params whose export gives boxes normalised to the image given (Model Garden's
    default is pixels of the resized model input)."""
    from official.core import exp_factory
    copy = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
    copy.override(params.as_dict(), is_strict=False)
    copy.override({"task": {"export_config": {"output_normalized_coordinates": True}}}, is_strict=True)
    return copy


def damaged_checkpoint(checkpoint):
    """Why a checkpoint cannot be read whole (a data file cut short, say), or None: every tensor is read."""
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError, RuntimeError) as error:
        return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return None


def checkpoint_digest(checkpoint):
    """What names a checkpoint's weights, whatever its folder and step: the SHA-1 of its index
    file, which holds every variable's checksum."""
    import hashlib
    with tf.io.gfile.GFile(checkpoint + ".index", "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def step_of(checkpoint):
    name = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
    return int(tf.train.load_variable(checkpoint, name)) if _has_variable(checkpoint, name) else 0


def export(params, checkpoint, export_dir):
    """A SavedModel whose ``serving_default`` takes uint8 images [1, H, W, 3] of any size and returns
    detection_boxes as [ymin, xmin, ymax, xmax] normalised to the image given, detection_classes,
    detection_scores, num_detections and image_info."""
    from official.vision.serving import export_saved_model_lib
    params = normalised_outputs(params)
    size = list(params.task.model.input_size[:2])
    export_saved_model_lib.export_inference_graph(
        input_type="image_tensor", batch_size=1, input_image_size=size, params=params,
        checkpoint_path=checkpoint, export_dir=export_dir)
    return export_dir
