"""A model's COCO scores on a conversion output, as the pipeline's evaluate step and the
comparison take them: the metrics of ``trainer evaluate`` and where its per-image matches lie."""
import os

from launcher.errors import StepFailed
from tfproc import fsutil
from trainer import cocoap


def evaluate(model_dir, dataset, name, split="eval", output=None):
    """Score ``model_dir`` on a conversion output; returns its metrics (in OUTPUT, by default
    MODEL_DIR/eval_NAME/)."""
    from trainer import commands
    try:
        metrics = commands.evaluate(dataset, model_dir, split, output=output or fsutil.join(model_dir, "eval_" + name))
    except commands.TrainerError as error:
        raise StepFailed("evaluating %s on %s failed: %s" % (model_dir, dataset, error))
    metrics["matches"] = fsutil.join(os.path.dirname(metrics.pop("path")), cocoap.MATCHES)
    return metrics


def evaluate_all(model_dir, dataset, real_dataset="", output=None):
    """``{"synthetic": metrics, "real": metrics}`` (real only with a real dataset); each into
    OUTPUT/NAME (default MODEL_DIR/eval_NAME)."""
    where = (lambda name: fsutil.join(output, name)) if output else (lambda name: None)
    results = {"synthetic": evaluate(model_dir, dataset, "synthetic", output=where("synthetic"))}
    if real_dataset:
        results["real"] = evaluate(model_dir, real_dataset, "real", split=split_with_images(real_dataset),
                                   output=where("real"))
    return results


def split_with_images(dataset):
    from trainer import dataset as dataset_lib
    data = dataset_lib.load(dataset)
    return "eval" if data.images["eval"] else "train"


def default_metric(real_dataset):
    return "real.AP" if real_dataset else "synthetic.AP"


def metric_value(results, metric):
    where, _, key = metric.partition(".")
    value = (results.get(where) or {}).get(key)
    if value is None:
        raise StepFailed("no metric %s in %s" % (metric, sorted(results)))
    return float(value)
