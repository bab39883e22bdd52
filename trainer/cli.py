"""``python -m trainer train|evaluate|export``: TF Model Garden's RetinaNet on our records."""
import functools
import os
import sys

import click

from trainer import config, devices

DEFAULT_MODEL_DIR = "default: AIP_CHECKPOINT_DIR or AIP_MODEL_DIR when Vertex AI sets them"


class UserError(click.ClickException):
    """One line, exit 2."""
    exit_code = 2

    def show(self, file=None):
        click.echo("error: %s" % self.format_message(), err=True)


def _guarded(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import importlib.util
        for module in ("tensorflow", "official"):
            try:
                missing = importlib.util.find_spec(module) is None
            except ValueError:          # sys.modules[module] is None: blocked
                missing = True
            if missing:
                raise UserError('the trainer needs the "train" extra (%s is not installed): bash scripts/install.sh '
                                'train (into .venv; run the commands with .venv/bin/python)' % module)
        _check_local_paths(command.__name__, kwargs)
        from trainer.commands import TrainerError
        try:
            return command(*args, **kwargs)
        except TrainerError as error:
            raise UserError(str(error))
    return wrapper


def _check_local_paths(name, options):
    """The checks a local path needs, made before TensorFlow is imported (which takes seconds); the
    commands make them again, and for gs:// paths, themselves."""
    dataset = (options.get("dataset") or "").rstrip("/")
    if dataset and "://" not in dataset and not all(
            os.path.isfile(os.path.join(dataset, name_)) for name_ in ("summary.json", "label_map.pbtxt")):
        raise UserError("%s is not a complete conversion output (no summary.json or label_map.pbtxt); pass the "
                        "--output folder of `python main.py` or `real_data_loader.py`" % dataset)
    model_dir = (options.get("model_dir") or "").rstrip("/")
    if name != "train" and model_dir and "://" not in model_dir and not os.path.isfile(
            os.path.join(model_dir, "params.yaml")):
        raise UserError("%s has no params.yaml: train a model into it first (python -m trainer train)" % model_dir)


def _verbose_option(command):
    return click.option("--verbose", is_flag=True,
                        help="show TensorFlow's own output here instead of writing it to the command's log file")(command)


def _checkpoint_option(command):
    return click.option("--checkpoint", default="latest", show_default=True, metavar="latest|best|STEP",
                        help="which checkpoint: the newest, the best evaluation's (MODEL_DIR/best), or a step")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Train, evaluate and export the object detector (TF Model Garden's RetinaNet, the maintained
    successor of the AI Platform built-in algorithm) on a conversion output, local or gs://.

    \b
      python -m trainer train    --dataset OUT --model-dir runs/m1 [--max-steps 75000 ...]
      python -m trainer evaluate --dataset REAL_OUT --model-dir runs/m1
      python -m trainer export   --model-dir runs/m1 [--checkpoint best]
      python -m trainer predict  --model-dir runs/m1 --dataset OUT --output runs/m1/predictions
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfproc import orphans
    from trainer import container
    orphans.watch_main(env=container.LAUNCHER_PID)      # a local job's replica ends with its launcher


def _hyperparameter_options(command):
    for name, default in reversed(list(config.HYPERPARAMETERS.items())):
        help_text = "the seed's %s (default: %s)" % (name, default if default != "" else
                                                      "the dataset's most common resolution, as height,width")
        if name == "num_eval_images":
            option = click.option("--num-eval-images", name, type=int, default=None,
                                  help="the seed's num_eval_images (default: 200, or all the eval images if fewer)")
        elif name == "warmup_steps":
            option = click.option("--warmup-steps", name, type=int, default=None,
                                  help="the seed's warmup_steps (default: 500, or a tenth of --max-steps if fewer)")
        elif name == "fpn_type":
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
@click.option("--train-split", default="train", show_default=True, metavar="NAME",
              help="the split to train on, e.g. train_small of the published UnityGroceries-Real")
@click.option("--eval-split", metavar="NAME",
              help="the split to evaluate on (default: eval, or val where the dataset has no eval split)")
@_hyperparameter_options
@click.option("--backbone", type=click.Choice(sorted(config.BACKBONES)), default="resnet-50", show_default=True,
              help="mobilenet for quick runs")
@click.option("--model-size", type=click.Choice(sorted(config.MODEL_SIZES)), default="full", show_default=True,
              help="small: MobileNetV2 at 0.35 width with a thin FPN and head, to try the whole path on a laptop CPU "
                   "in minutes (with --backbone mobilenet --fpn-type fpn)")
@click.option("--init-checkpoint", metavar="none|imagenet|CHECKPOINT",
              help="where the backbone starts: none (default: random weights), imagenet (Model Garden's published "
                   "ImageNet checkpoint for resnet-50, read from gs://cloud-tpu-checkpoints), or a checkpoint of yours")
@click.option("--init-from", metavar="MODEL_DIR",
              help="start from a trained model's whole network (its head too when the classes match), e.g. to "
                   "fine-tune a synthetic model on real photos")
@click.option("--best-metric", default="AP", show_default=True,
              help="the COCO metric that picks the checkpoint kept in MODEL_DIR/best/")
@click.option("--strategy", type=click.Choice(devices.STRATEGIES), default="auto", show_default=True,
              help="auto: multi_worker_mirrored when TF_CONFIG names several machines, tpu on a TPU, mirrored "
                   "on several GPUs, else one_device (CPU or one GPU)")
@click.option("--tpu", help="TPU address with --strategy tpu (default: local)")
@click.option("--expect-accelerator", metavar="gpu:N|tpu:N",
              help="what the machine was promised (the launcher sets it): stop at once if TensorFlow sees less")
@click.option("--machine-type", help="the machine's name, for messages (the launcher sets it)")
@click.option("--num-classes", type=int, help="overrides the dataset's num_classes (ours, without the background)")
@click.option("--params-override", "params_overrides", multiple=True, metavar="YAML",
              help="anything else Model Garden accepts, as YAML/JSON or a file (repeatable, applied last)")
@_verbose_option
@_guarded
def train(dataset, model_dir, params_overrides, **options):
    """Train (and evaluate every --train-steps-per-eval steps) on a split of the dataset (train by default).

    A model dir that holds checkpoints resumes from the newest (--max-steps must then exceed its
    step). metrics.json is written after each evaluation.
    """
    from tfproc import console
    from trainer import commands
    console.stop_promptly("interrupted: the newest whole checkpoint stays in the model dir; the same command "
                          "resumes from it")
    model_dir = commands.train(dataset, model_dir, params_overrides=params_overrides, **options)
    click.echo("model: %s" % model_dir)


@main.command()
@click.option("--dataset", required=True, help="a conversion output: the synthetic eval split, or real photos")
@click.option("--model-dir", help="the trained model's folder (%s)" % DEFAULT_MODEL_DIR)
@click.option("--split", metavar="NAME",
              help="which split of the dataset to score: eval (the default; val where there is no eval), train "
                   "(real photos converted with --eval-pct 0 are in train), or any split the dataset holds, e.g. "
                   "test or test_low_contrast of the published UnityGroceries-Real")
@click.option("--num-eval-images", type=int, default=0, help="images to score (default 0: all of the split)")
@click.option("--output", help="where metrics.json and pr_curves.png go (default: MODEL_DIR/eval/<the dataset's "
                                "parent and folder>-<split>-<hash of its path>/)")
@_checkpoint_option
@_verbose_option
@_guarded
def evaluate(dataset, model_dir, split, num_eval_images, output, checkpoint, verbose):
    """Score a checkpoint with COCO AP/AR on a conversion output; print a table with per-class AP and
    write metrics.json and per-class precision-recall curves (pr_curves.png)."""
    from trainer import commands
    metrics = commands.evaluate(dataset, model_dir, split, num_eval_images, output, checkpoint, verbose)
    click.echo(table(metrics))
    click.echo("metrics: %s" % metrics["path"])


def table(metrics):
    from trainer import engine
    lines = ["%d images, checkpoint of step %s" % (metrics.get("images", 0), metrics.get("step", "?")),
             "%-10s %8s" % ("metric", "value")]
    missing = False
    for key in engine.COCO_KEYS:
        if key in metrics:
            missing = missing or metrics[key] < 0
            lines.append("%-10s %8s" % (key, "n/a" if metrics[key] < 0 else "%.4f" % metrics[key]))
    if missing:
        lines.append("(n/a: no object of that size in the split)")
    per_class = metrics.get("per_class_AP") or {}
    without = metrics.get("classes_without_eval_boxes") or []
    if per_class or without:
        lines.append("")
        lines.append("%-30s %8s" % ("class", "AP"))
        for name in sorted(per_class):
            lines.append("%-30s %8.4f" % (name, per_class[name]))
        for name in without:
            lines.append("%-30s %8s" % (name, "no box"))
        if without:
            lines.append("(no box: the split holds no object of that class, so it has no AP)")
    return "\n".join(lines)


@main.command()
@click.option("--model-dir", help="the trained model's folder (%s)" % DEFAULT_MODEL_DIR)
@click.option("--output", help="where the SavedModel goes (default: MODEL_DIR/export)")
@_checkpoint_option
@_verbose_option
@_guarded
def export(model_dir, output, checkpoint, verbose):
    """Write a SavedModel: serving_default takes uint8 images [1, height, width, 3] of any size and
    returns detection_boxes [1, 100, 4] as [ymin, xmin, ymax, xmax] normalised to the image given,
    detection_classes, detection_scores, num_detections and image_info."""
    from trainer import commands
    click.echo("SavedModel: %s" % commands.export(model_dir, output, checkpoint, verbose))


@main.command()
@click.option("--model-dir", help="the trained model's folder (%s)" % DEFAULT_MODEL_DIR)
@click.option("--dataset", required=True, help="a conversion output whose images to run the model on")
@click.option("--output", help="where detections.json and contact_sheet.png go (default: MODEL_DIR/predictions)")
@click.option("--split", metavar="NAME",
              help="the split whose images to run on (default: eval, or val where there is no eval)")
@click.option("--max-images", type=click.IntRange(min=1), default=50, show_default=True, help="images to run on")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="detections below this score are left out")
@_checkpoint_option
@_verbose_option
@_guarded
def predict(model_dir, dataset, output, split, max_images, min_score, checkpoint, verbose):
    """Run the model on a split's images: COCO-format detections (image_id, category_id, bbox in
    pixels as [x, y, width, height], score) and a contact sheet of the predictions (coloured, with
    class and score) beside the ground truth (a dashed black-and-white outline)."""
    from trainer import commands
    detections, sheet = commands.predict(dataset, model_dir, output, split, max_images, min_score, checkpoint,
                                         verbose=verbose)
    click.echo("%d detections: %s" % (len(detections), os.path.join(os.path.dirname(sheet), "detections.json")))
    click.echo("contact sheet: %s" % sheet)


if __name__ == "__main__":
    sys.exit(main())
