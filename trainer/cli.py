"""``python -m trainer train|evaluate|export``: TF Model Garden's RetinaNet on our records."""
import functools
import os
import sys

import click

from trainer import config
from trainer.dataset import DatasetError

DEFAULT_MODEL_DIR = "default: AIP_CHECKPOINT_DIR or AIP_MODEL_DIR when Vertex AI sets them"


class UserError(click.ClickException):
    """One line, exit 2."""
    exit_code = 2

    def show(self, file=None):
        click.echo("error: %s" % self.format_message(), err=True)


def _guarded(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (DatasetError, config.ConfigError, FileNotFoundError) as error:
            raise UserError(str(error))
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Train, evaluate and export the object detector (TF Model Garden's RetinaNet, the maintained
    successor of the AI Platform built-in algorithm) on a conversion output, local or gs://.

    \b
      python -m trainer train    --dataset OUT --model-dir runs/m1 [--max-steps 75000 ...]
      python -m trainer evaluate --dataset REAL_OUT --model-dir runs/m1
      python -m trainer export   --model-dir runs/m1
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _model_dir(value):
    value = value or os.environ.get("AIP_CHECKPOINT_DIR") or os.environ.get("AIP_MODEL_DIR")
    if not value:
        raise UserError("pass --model-dir (where checkpoints, summaries and metrics go)")
    return value.rstrip("/")


def _hyperparameter_options(command):
    for name, default in reversed(list(config.HYPERPARAMETERS.items())):
        help_text = "the seed's %s (default: %s)" % (name, default if default != "" else
                                                      "the dataset's most common resolution, as height,width")
        if name == "num_eval_images":
            help_text += "; 0 or no value: 200, or all the eval images if fewer"
        if name == "fpn_type":
            option = click.option("--fpn-type", name, type=click.Choice(["fpn", "nasfpn"]), default=default,
                                   show_default=True, help="the decoder")
        else:
            option = click.option("--" + name.replace("_", "-"), name, default=default, type=type(default),
                                  help=help_text)
        command = option(command)
    return command


@main.command()
@click.option("--dataset", required=True, help="a conversion output folder (local or gs://)")
@click.option("--model-dir", help="checkpoints, TensorBoard summaries, params.yaml, metrics.json (%s)" % DEFAULT_MODEL_DIR)
@_hyperparameter_options
@click.option("--backbone", type=click.Choice(sorted(config.BACKBONES)), default="resnet-50", show_default=True,
              help="mobilenet for quick runs")
@click.option("--init-checkpoint", help="a pretrained backbone checkpoint you have (nothing is downloaded)")
@click.option("--strategy", type=click.Choice(["one_device", "mirrored", "tpu"]), default="one_device",
              show_default=True, help="one_device (CPU or one GPU), mirrored (several GPUs), tpu")
@click.option("--tpu", help="TPU address with --strategy tpu (default: local)")
@click.option("--num-classes", type=int, help="overrides the dataset's num_classes (ours, without the background)")
@click.option("--params-override", "params_overrides", multiple=True, metavar="YAML",
              help="anything else Model Garden accepts, as YAML/JSON or a file (repeatable, applied last)")
@_guarded
def train(dataset, model_dir, backbone, init_checkpoint, strategy, tpu, num_classes, params_overrides, **hp):
    """Train (and evaluate every --train-steps-per-eval steps) on the dataset's train split.

    A model dir that holds checkpoints resumes from the newest (--max-steps must then exceed its
    step). metrics.json is written after each evaluation.
    """
    from trainer import dataset as dataset_lib
    from trainer import engine
    model_dir = _model_dir(model_dir)
    data = dataset_lib.load(dataset)
    if num_classes is not None:
        data.num_classes = num_classes
    if not data.images["train"]:
        raise UserError("%s has no training images" % dataset)
    size = config.image_size(hp["image_size"], None if hp["image_size"] else dataset_lib.common_resolution(data))
    if not hp["num_eval_images"] or hp["num_eval_images"] > data.images["eval"]:
        if _explicit("num_eval_images") and hp["num_eval_images"] > data.images["eval"]:
            raise UserError("--num-eval-images %d: the eval split holds %d images"
                            % (hp["num_eval_images"], data.images["eval"]))
        hp["num_eval_images"] = min(config.HYPERPARAMETERS["num_eval_images"], data.images["eval"])
    mode = "train_and_eval" if data.images["eval"] else "train"
    values = config.overrides(data, hp, backbone, size, init_checkpoint)
    params = config.experiment([values] + [config.parse_override(o) for o in params_overrides])

    step = engine.latest_step(model_dir)
    if step is not None:
        if step >= params.trainer.train_steps:
            raise UserError("%s is already trained to step %d; pass a larger --max-steps to go on"
                            % (model_dir, step))
        click.echo("resuming from the checkpoint at step %d in %s" % (step, model_dir), err=True)
    engine.save_params(params, model_dir)
    progress = engine.Progress(params.trainer.train_steps, step or 0, params.trainer.steps_per_loop)
    metrics_path = os.path.join(model_dir, engine.METRICS)

    def evaluated(logs):
        metrics = dict(engine.plain_metrics(logs, data.names), step=progress.step, dataset=data.path,
                       split="eval")
        engine.write_metrics(metrics_path, metrics)
        click.echo("evaluation at step %d: AP %.4f, AP50 %.4f, ARmax100 %.4f (%s)" % (
            progress.step, metrics.get("AP", float("nan")), metrics.get("AP50", float("nan")),
            metrics.get("ARmax100", float("nan")), metrics_path), err=True)

    click.echo("training %s on %s: %d classes, input %dx%d, batch %d, %d steps, %s" % (
        backbone, data.path, data.num_classes, size[0], size[1], params.task.train_data.global_batch_size,
        params.trainer.train_steps, mode.replace("_", " ")), err=True)
    engine.run(params, model_dir, mode, engine.strategy_for(strategy, tpu), on_train=progress,
               on_eval=evaluated, log_dir=os.environ.get("AIP_TENSORBOARD_LOG_DIR"))
    click.echo("trained to step %d; checkpoints in %s" % (params.trainer.train_steps, model_dir))
    aip_model_dir = os.environ.get("AIP_MODEL_DIR")
    if aip_model_dir and aip_model_dir.rstrip("/") != model_dir:
        exported = engine.export(params, _latest(model_dir), aip_model_dir)
        click.echo("exported the SavedModel to %s" % exported)


def _explicit(name):
    context = click.get_current_context()
    return context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _latest(model_dir):
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        raise UserError("no checkpoint in %s" % model_dir)
    return latest


@main.command()
@click.option("--dataset", required=True, help="a conversion output: the synthetic eval split, or real photos")
@click.option("--model-dir", help="the trained model's folder (%s)" % DEFAULT_MODEL_DIR)
@click.option("--split", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="which split of the dataset to score (real photos converted with --eval-pct 0 are in train)")
@click.option("--num-eval-images", type=int, default=0, help="images to score (default 0: all of the split)")
@click.option("--output", help="where metrics.json goes (default: MODEL_DIR/eval_<dataset folder name>/)")
@_guarded
def evaluate(dataset, model_dir, split, num_eval_images, output):
    """Score the newest checkpoint with COCO AP/AR on a conversion output; print a table with
    per-class AP and write metrics.json."""
    from trainer import dataset as dataset_lib
    from trainer import engine
    model_dir = _model_dir(model_dir)
    data = dataset_lib.load(dataset)
    trained = engine.load_params(model_dir)
    checkpoint = _latest(model_dir)
    if data.num_classes + 1 > trained.task.model.num_classes:
        raise UserError("%s has class ids up to %d; the model knows %d classes. Convert real photos with "
                        "--label-map of the synthetic conversion" % (dataset, data.num_classes,
                                                                     trained.task.model.num_classes - 1))
    available = data.images[split]
    if not available:
        raise UserError("the %s split of %s holds no images%s" % (
            split, dataset, "; try --split train" if split == "eval" and data.images["train"] else ""))
    count = num_eval_images or available
    batch = max(1, min(config.EVAL_BATCH_SIZE, count))
    params = config.experiment([trained.as_dict(), {
        "task": {"validation_data": {"input_path": data.pattern(split), "global_batch_size": batch,
                                     "drop_remainder": False}, "init_checkpoint": None},
        "trainer": {"validation_steps": -(-count // batch)}}])
    out_dir = (output or os.path.join(model_dir, "eval_" + os.path.basename(data.path.rstrip("/")))).rstrip("/")
    logs = engine.evaluate_checkpoint(params, model_dir)
    step = engine.step_of(checkpoint)
    metrics = dict(engine.plain_metrics(logs, data.names), step=step, dataset=data.path, split=split,
                   checkpoint=checkpoint, images=count)
    engine.write_metrics(os.path.join(out_dir, engine.METRICS), metrics)
    click.echo(table(metrics))
    click.echo("metrics: %s" % os.path.join(out_dir, engine.METRICS))


def table(metrics):
    from trainer import engine
    lines = ["%-10s %8s" % ("metric", "value")]
    for key in engine.COCO_KEYS:
        if key in metrics:
            lines.append("%-10s %8.4f" % (key, metrics[key]))
    per_class = metrics.get("per_class_AP") or {}
    if per_class:
        lines.append("")
        lines.append("%-30s %8s" % ("class", "AP"))
        for name in sorted(per_class):
            lines.append("%-30s %8.4f" % (name, per_class[name]))
    return "\n".join(lines)


@main.command()
@click.option("--model-dir", help="the trained model's folder (%s)" % DEFAULT_MODEL_DIR)
@click.option("--output", help="where the SavedModel goes (default: MODEL_DIR/export)")
@_guarded
def export(model_dir, output):
    """Write a SavedModel of the newest checkpoint: serving_default takes uint8 images
    [1, height, width, 3] and returns detection_boxes, detection_classes, detection_scores and
    num_detections."""
    from trainer import engine
    model_dir = _model_dir(model_dir)
    params = engine.load_params(model_dir)
    out = (output or os.path.join(model_dir, "export")).rstrip("/")
    path = engine.export(params, _latest(model_dir), out)
    click.echo("SavedModel: %s" % path)


if __name__ == "__main__":
    sys.exit(main())
