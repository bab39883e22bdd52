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


def evaluate_all(model_dir, dataset, real_dataset="", output=None, real_split=""):
    """``{"synthetic": metrics, "real": metrics, "real:test_low_ratio": metrics, ...}``: the real
    data's ``real_split`` (default: eval, else test) and every ``test_*`` subset it holds (the
    published UnityGroceries-Real's), only with a real dataset; each into OUTPUT/NAME (default
    MODEL_DIR/eval_NAME)."""
    where = (lambda name: fsutil.join(output, name.replace(":", "_"))) if output else (lambda name: None)
    results = {"synthetic": evaluate(model_dir, dataset, "synthetic", output=where("synthetic"))}
    if real_dataset:
        split = real_split or split_with_images(real_dataset)
        results["real"] = evaluate(model_dir, real_dataset, "real", split=split, output=where("real"))
        for subset in subsets(real_dataset, split):
            name = SUBSET + subset
            results[name] = subset_score(results["real"], model_dir, real_dataset, subset,
                                         where(name) or fsutil.join(model_dir, "eval_" + name.replace(":", "_")))
    return results


def subset_score(scored, model_dir, dataset, subset, output):
    """A subset's scores: from the matches of the split ``scored`` where it is a part of it (the
    published test_* of test: no new detection, pycocotools' numbers), else evaluated anew."""
    from launcher.decide import subset_scores
    derived = subset_scores.derive(scored, dataset, subset, output)
    if derived is not None:
        return derived
    return evaluate(model_dir, dataset, "", split=subset, output=output)


SUBSET = "real:"        # "real:test_low_contrast": the real data's subset test_low_contrast


def is_subset(name):
    return name.startswith(SUBSET)


def ordered(names):
    """synthetic, real, then the real subsets by name."""
    return sorted(names, key=lambda n: ({"synthetic": 0, "real": 1}.get(n, 2), n))


def split_names(dataset):
    """``{split: images}`` of a conversion output, from its summary.json (no TensorFlow)."""
    try:
        summary = fsutil.read_json_or_none(fsutil.join(dataset, "summary.json"))
        return {name: int(entry["images"]) for name, entry in summary["splits"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        raise StepFailed("%s is not a complete conversion output (no readable summary.json); pass the --output "
                         "folder of main.py or real_data_loader.py" % dataset)


def split_with_images(dataset):
    """The real data's split to judge on by default: eval, else test (the published splits), else train."""
    splits = split_names(dataset)
    for name in ("eval", "test"):
        if splits.get(name):
            return name
    return "train"


def subsets(dataset, split):
    """The ``test_*`` subsets a real dataset holds, with images, besides ``split`` itself."""
    return [name for name, images in sorted(split_names(dataset).items())
            if name.startswith("test_") and name != split and images]


def check_split(dataset, split, option):
    """Refuse a split the dataset does not hold (or one without images), naming those it does."""
    splits = split_names(dataset)
    if not splits.get(split):
        raise StepFailed("%s %s: %s holds %s; its splits: %s" % (
            option, split, dataset, "no images in it" if split in splits else "no such split",
            ", ".join("%s (%d images)" % item for item in sorted(splits.items()))))
    return split


def default_metric(real_dataset):
    return "real.AP" if real_dataset else "synthetic.AP"


def metric_value(results, metric):
    where, _, key = metric.partition(".")
    value = (results.get(where) or {}).get(key)
    if value is None:
        raise StepFailed("no metric %s in %s" % (metric, sorted(results)))
    return float(value)
