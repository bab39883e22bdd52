"""The candidate against the production model on the same images: the difference of a COCO
metric, its 95% interval from a paired bootstrap over the images (``trainer.cocoap``), and the
verdict, written to RUN_DIR/comparison.json."""
import json
import math

from launcher.decide import production as production_lib
from launcher.decide.scores import default_metric, evaluate_all, metric_value, ordered
from launcher.errors import StepFailed
from tfproc import fsutil
from trainer import cocoap

RESAMPLES = 200
# Fewer eval images than this give no verdict. On one image every resample is that image and the
# interval has no width. From a few, its standard error rests on a few values, and one odd image
# moves it: in simulations of identical detectors (tests/test_interval.py) it kept its promise
# from 3 images, but only for a detector whose images are all alike. 10 is the fewest simulated
# there, where it says "better" 1.7% of the time (the percentile interval used before: 4.9%).
MIN_IMAGES = 10
REPORTED = ("AP", "AP50", "AP75", "ARmax100")      # the report's metric table, each with its interval


def compare(candidate, production_dir, dataset, real_dataset="", metric="", folder="", min_improvement=0.0,
            resamples=RESAMPLES, real_split=""):
    """Candidate against the production model on the same images, by ``metric`` (e.g. real.AP):
    the difference, its 95% interval from a paired bootstrap over the images (the detections and
    their matching computed once), and the verdict: ``better`` when the interval lies above
    ``min_improvement``, ``worse`` when it lies below 0, ``within noise`` otherwise. The
    production model's scores go under FOLDER/production_scores/, never into the production folder;
    the comparison is written to FOLDER/comparison.json. The real data's subsets (``real:test_*``)
    get their differences and intervals too; the verdict is on ``metric`` alone."""
    metric = metric or default_metric(real_dataset)
    where, _, key = metric.partition(".")
    production = production_lib.current_model(production_dir)
    result = {"metric": metric, "candidate": metric_value(candidate, metric), "candidate_metrics": candidate,
              "production_model": production, "min_improvement": min_improvement,
              "min_images": MIN_IMAGES}
    if production is None:
        usable = math.isfinite(result["candidate"]) and result["candidate"] >= 0
        result.update(production=None, better=usable, verdict="first model" if usable else "scored nothing",
                      difference=None, ci95=None, resamples=0, images=candidate[where].get("images"),
                      reason="no production model yet; the candidate's %s is %.4f" % (metric, result["candidate"])
                      if usable else "no production model yet, but the candidate's %s is %s: it scored nothing, so "
                      "it is not promoted" % (metric, result["candidate"]))
        scored = {}
    else:
        scored = evaluate_all(production, dataset, real_dataset,
                              output=fsutil.join(folder, "production_scores") if folder else fsutil.join(production, "eval"),
                              real_split=real_split or (candidate.get("real") or {}).get("split", ""))
        result.update(production=metric_value(scored, metric), production_metrics=scored)
        tables = {split: _tables(candidate[split], scored[split]) for split in ordered(candidate)
                  if split in scored}
        result["intervals"] = {"%s.%s" % (split, name): _interval(tables[split], name, resamples)
                               for split in tables for name in sorted(set(REPORTED) | {key})}
        result.update(_on_shared_classes(tables, candidate, scored, sorted(set(REPORTED) | {key})))
        if where in result.get("shared_classes", {}):
            result.update({model: result["shared_classes"][where][model][key] for model in ("candidate", "production")})
        result.update(result["intervals"][metric])
        result["verdict"], result["reason"] = _verdict(result, metric, min_improvement)
        result["better"] = result["verdict"] == "better"
    result["per_class"] = {name: {cls: {"candidate": ap, "production": (scored.get(name) or {}).get(
        "per_class_AP", {}).get(cls)} for cls, ap in sorted((candidate[name].get("per_class_AP") or {}).items())}
        for name in ordered(candidate)}
    if folder:
        fsutil.write_json(fsutil.join(folder, "comparison.json"), result)
    return result


def _verdict(result, metric, min_improvement):
    """The verdict and the sentence that explains it. No resample that scores both models (no
    ground truth in the images) is "nothing to compare"; fewer than MIN_IMAGES images is "within
    noise" whatever the interval, which from so few images is too narrow to trust."""
    if result["ci95"] is None:
        return cocoap.verdict(None), ("%s: no resample of the %d eval images holds a ground-truth box to score, so "
                                      "there is nothing to compare" % (metric, result["images"]))
    scores = "%s: candidate %.4f, production %.4f; difference %+.4f" % (
        metric, result["candidate"], result["production"], result["difference"])
    alone = [("the candidate", result.get("classes_candidate_alone")),
             ("the production model", result.get("classes_production_alone"))]
    if any(names for _, names in alone):
        scores += " on the classes both know (%s)" % "; ".join(
            "%s alone knows %s" % (model, ", ".join(names)) for model, names in alone if names)
    interval = "95%% interval [%+.4f, %+.4f] over %d resamples of %d images" % (
        result["ci95"][0], result["ci95"][1], result["resamples"], result["images"])
    if result["images"] < MIN_IMAGES:
        return "within noise", "%s, %s: within noise, since a verdict needs at least %d eval images" % (
            scores, interval, MIN_IMAGES)
    verdict = cocoap.verdict(result["ci95"], min_improvement)
    return verdict, "%s, %s: %s" % (scores, interval, verdict)


def _tables(candidate_scores, production_scores):
    """The per-image matches of two evaluations of the same images (``trainer.cocoap`` tables), on
    the classes both scored: a class one model was not trained on is left out of both."""
    docs = []
    for scores in (candidate_scores, production_scores):
        try:
            docs.append(json.loads(fsutil.read_bytes(scores["matches"])))
        except (KeyError, OSError, ValueError) as error:
            raise StepFailed("the per-image matches of an evaluation (%s) cannot be read (%s): evaluate the model "
                             "again with this version" % (scores.get("matches"), error))
    return cocoap.on_common_classes(docs)


def _on_shared_classes(tables, candidate, scored, names):
    """Where one model was not trained on a class of the data (a new product): the names of the
    classes each one alone knows, and per split both models' metrics on the classes both know,
    which the verdict and the report use (pycocotools' numbers with those classes alone)."""
    alone = {"candidate": set(), "production": set()}
    for split in tables:
        alone["candidate"] |= set(scored[split].get("classes_new_to_model") or ())
        alone["production"] |= set(candidate[split].get("classes_new_to_model") or ())
    if not alone["candidate"] and not alone["production"]:
        return {}
    return {"classes_candidate_alone": sorted(alone["candidate"]),
            "classes_production_alone": sorted(alone["production"]),
            "shared_classes": {split: {model: {name: table.metric(name) for name in names}
                                       for model, table in zip(("candidate", "production"), tables[split])}
                               for split in tables}}


def _interval(tables, key, resamples):
    """The paired bootstrap of ``key`` between the two evaluations."""
    if key not in cocoap.SUPPORTED:
        raise StepFailed("%s has no interval: compare by one of %s" % (key, ", ".join(cocoap.SUPPORTED)))
    try:
        return cocoap.paired_bootstrap(tables[0], tables[1], key, resamples)
    except ValueError as error:
        raise StepFailed(str(error))
