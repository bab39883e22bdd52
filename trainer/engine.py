"""Running Model Garden: training with evaluations, evaluating a checkpoint, exporting a SavedModel."""
import json
import os
import sys
import time

import tensorflow as tf

PARAMS = "params.yaml"
METRICS = "metrics.json"
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")
LOSS_KEYS = ("total_loss", "cls_loss", "box_loss", "model_loss", "validation_loss")


def strategy_for(name, tpu=None):
    from official.common import distribute_utils
    gpus = len(tf.config.list_physical_devices("GPU"))
    if name == "tpu":
        return distribute_utils.get_distribution_strategy("tpu", tpu_address=tpu or "local")
    if name == "mirrored":
        return distribute_utils.get_distribution_strategy("mirrored", num_gpus=max(gpus, 1))
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


def save_params(params, model_dir):
    from official.modeling import hyperparams
    tf.io.gfile.makedirs(model_dir)
    hyperparams.save_params_dict_to_yaml(params, os.path.join(model_dir, PARAMS))


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


def summary_controller(log_dir):
    """An orbit.Controller that writes its TensorBoard summaries under ``log_dir`` (Vertex's
    AIP_TENSORBOARD_LOG_DIR) instead of the model dir."""
    import orbit

    class Controller(orbit.Controller):
        def __init__(self, **kwargs):
            if kwargs.get("summary_dir"):
                kwargs["summary_dir"] = os.path.join(log_dir, "train")
            if kwargs.get("eval_summary_dir"):
                kwargs["eval_summary_dir"] = os.path.join(log_dir, "validation")
            super().__init__(**kwargs)
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
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


class Progress:
    """Counts the steps (a training loop is ``steps_per_loop`` steps) and prints a line per loop."""

    def __init__(self, total_steps, start_step, steps_per_loop):
        self.total, self.step, self.per_loop = total_steps, start_step, steps_per_loop
        self.start, self.began = start_step, time.time()

    def __call__(self, logs):
        self.step = min(self.total, self.step + self.per_loop)
        done, elapsed = self.step - self.start, time.time() - self.began
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.step) / rate if rate else float("nan")
        loss = logs.get("total_loss", logs.get("training_loss", float("nan")))
        sys.stderr.write("[%5.0fs] step %d/%d  loss %.4f  %.2f steps/s  about %.0fs left\n"
                         % (elapsed, self.step, self.total, float(loss), rate, left))
        sys.stderr.flush()


def enable_per_class_ap():
    """Model Garden reports per-class AP from ``COCOeval.category_stats``, which pycocotools does not
    compute: derive it from the precision table that ``summarize`` leaves (all areas, 100 detections)."""
    import numpy as np
    from pycocotools import cocoeval
    if getattr(cocoeval.COCOeval, "_per_class_ap", False):
        return
    summarize = cocoeval.COCOeval.summarize

    def summarize_with_categories(self):
        summarize(self)
        precision = self.eval["precision"]          # [IoU thresholds, recall, class, area, max dets]
        stats = np.full((12, precision.shape[2]), -1.0)
        for row, thresholds in ((0, slice(None)), (1, 0), (2, 5)):     # AP, AP50, AP75
            for k in range(precision.shape[2]):
                values = precision[thresholds, :, k, 0, -1]
                values = values[values > -1]
                stats[row, k] = values.mean() if values.size else -1.0
        self.category_stats = stats

    cocoeval.COCOeval.summarize = summarize_with_categories
    cocoeval.COCOeval._per_class_ap = True


def run(params, model_dir, mode, strategy, on_train=None, on_eval=None, log_dir=None):
    """Model Garden's train_lib with our actions; returns the final eval logs (if any)."""
    import orbit
    enable_per_class_ap()
    from official.core import task_factory, train_lib
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=model_dir)
    train_actions = [lambda output: on_train(output)] if on_train else None
    eval_actions = [lambda output: on_eval(output)] if on_eval else None
    _, logs = train_lib.run_experiment(
        distribution_strategy=strategy, task=task, mode=mode, params=params, model_dir=model_dir,
        train_actions=train_actions, eval_actions=eval_actions,
        controller_cls=summary_controller(log_dir) if log_dir else orbit.Controller)
    return logs


def evaluate_checkpoint(params, model_dir, strategy=None):
    """Score the newest checkpoint of ``model_dir`` on ``params.task.validation_data``; the eval logs."""
    captured = {}
    run(params, model_dir, "eval", strategy or strategy_for("one_device"),
        on_eval=lambda logs: captured.update(logs))
    return captured


def step_of(checkpoint):
    name = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
    return int(tf.train.load_variable(checkpoint, name)) if _has_variable(checkpoint, name) else 0


def export(params, checkpoint, export_dir):
    """A SavedModel whose ``serving_default`` takes uint8 images [1, H, W, 3] and returns
    detection_boxes, detection_classes, detection_scores and num_detections."""
    from official.vision.serving import export_saved_model_lib
    size = list(params.task.model.input_size[:2])
    export_saved_model_lib.export_inference_graph(
        input_type="image_tensor", batch_size=1, input_image_size=size, params=params,
        checkpoint_path=checkpoint, export_dir=export_dir)
    return export_dir
