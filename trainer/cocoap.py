"""COCO AP and AR computed again from pycocotools' own matching, on any weighting of the images,
and the paired bootstrap that puts an interval on the difference between two models.

An evaluation keeps, in ``matches.json`` beside its ``metrics.json``, what pycocotools decided for
each image and class (``trainer.engine.match_table``). Matching is per image, so AP on a resample
of the images needs no new detection and no new matching: each image counts as often as it was
drawn, and the precision-recall curves are accumulated as ``COCOeval.accumulate`` does. With every
image counted once, the numbers are pycocotools' own. Needs numpy only.
"""
import json

import numpy as np

MATCHES = "matches.json"
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
AP_METRICS = {"AP": None, "AP50": 0.5, "AP75": 0.75}        # IoU threshold (None: all of them)
AR_METRICS = {"ARmax1": 1, "ARmax10": 10, "ARmax100": 100}     # detections per image and class
SUPPORTED = tuple(AP_METRICS) + tuple(AR_METRICS)


class Table:
    """One evaluation's matches, as arrays per class, in pycocotools' order."""

    def __init__(self, doc):
        self.images = list(doc["images"])
        self.thresholds = list(doc["iou_thresholds"])
        self.max_detections = int(doc["max_detections"])
        self.rows = doc["rows"]
        self.dataset, self.split = doc.get("dataset"), doc.get("split", "eval")     # what was scored
        index = {image: i for i, image in enumerate(self.images)}
        by_class = {}
        for row in doc["rows"]:
            entry = by_class.setdefault(row["class"], {"image": [], "score": [], "matched": [], "ignored": [],
                                                       "rank": [], "gt": np.zeros(len(self.images))})
            i = index[row["image"]]
            entry["gt"][i] += row["gt"]
            count = len(row["scores"])
            entry["image"] += [i] * count
            entry["score"] += row["scores"]
            entry["matched"] += row["matched"]
            entry["ignored"] += row["ignored"]
            entry["rank"] += range(count)
        self.classes = {}
        bits = 1 << np.arange(len(self.thresholds))
        for class_id, entry in by_class.items():
            self.classes[class_id] = {
                "image": np.asarray(entry["image"], dtype=np.int64), "score": np.asarray(entry["score"], dtype=float),
                "matched": (np.asarray(entry["matched"], dtype=np.int64)[None, :] & bits[:, None]) > 0,
                "ignored": (np.asarray(entry["ignored"], dtype=np.int64)[None, :] & bits[:, None]) > 0,
                "rank": np.asarray(entry["rank"], dtype=np.int64), "gt": entry["gt"]}

    def _curves(self, class_id, weights, most):
        """Per IoU threshold: (interpolated precision at the 101 recall points, final recall), or
        None when the class has no ground truth in this weighting."""
        c = self.classes[class_id]
        positives = float((c["gt"] * weights).sum())
        if positives == 0:
            return None
        keep = c["rank"] < most
        w = weights[c["image"][keep]]
        present = w > 0
        order = np.argsort(-c["score"][keep][present], kind="mergesort")
        w = w[present][order]
        matched = c["matched"][:, keep][:, present][:, order]
        ignored = c["ignored"][:, keep][:, present][:, order]
        tp = np.cumsum((matched & ~ignored) * w, axis=1)
        fp = np.cumsum((~matched & ~ignored) * w, axis=1)
        precisions, recalls = [], []
        for t in range(len(self.thresholds)):
            if tp.shape[1] == 0:
                precisions.append(np.zeros(len(RECALL_THRESHOLDS)))
                recalls.append(0.0)
                continue
            recall = tp[t] / positives
            precision = tp[t] / (tp[t] + fp[t] + np.spacing(1))
            precision = np.maximum.accumulate(precision[::-1])[::-1]
            at = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
            q = np.zeros(len(RECALL_THRESHOLDS))
            valid = at < len(precision)
            q[valid] = precision[at[valid]]
            precisions.append(q)
            recalls.append(recall[-1])
        return np.asarray(precisions), np.asarray(recalls)

    def _value(self, name, class_id, weights):
        if name in AP_METRICS:
            curves = self._curves(class_id, weights, self.max_detections)
            if curves is None:
                return None
            threshold = AP_METRICS[name]
            rows = slice(None) if threshold is None else [self._threshold_index(threshold)]
            return float(curves[0][rows].mean())
        curves = self._curves(class_id, weights, AR_METRICS[name])
        return None if curves is None else float(curves[1].mean())

    def _threshold_index(self, threshold):
        return min(range(len(self.thresholds)), key=lambda i: abs(self.thresholds[i] - threshold))

    def weights(self, counts=None, images=None):
        """Each image's count in this table's order: ``counts`` given for ``images`` (default: every
        image once)."""
        if counts is None:
            return np.ones(len(self.images))
        where = {image: i for i, image in enumerate(self.images)}
        out = np.zeros(len(self.images))
        out[[where[image] for image in images]] = counts
        return out

    def metric(self, name, weights=None):
        """The COCO metric over every class with ground truth (pycocotools' mean); -1 when none has."""
        if name not in SUPPORTED:
            raise ValueError("%s has no interval here: one of %s" % (name, ", ".join(SUPPORTED)))
        weights = self.weights() if weights is None else weights
        values = [v for v in (self._value(name, k, weights) for k in sorted(self.classes)) if v is not None]
        return float(np.mean(values)) if values else -1.0

    def per_class(self, name="AP", weights=None):
        weights = self.weights() if weights is None else weights
        return {k: self._value(name, k, weights) for k in sorted(self.classes)}


def load(text):
    return Table(json.loads(text))


def subset(doc, images, split=None):
    """A match table document restricted to ``images`` (a part of those it scored): matching is
    per image, so its numbers are pycocotools' own on those images alone."""
    wanted = set(images)
    out = dict(doc, images=[i for i in doc["images"] if i in wanted], rows=[r for r in doc["rows"] if r["image"] in wanted])
    if split is not None:
        out["split"] = split
    return out


def only_classes(doc, class_ids):
    """A match table document restricted to the classes ``class_ids``: matching is per image and
    class, so its numbers are pycocotools' own with those category ids alone."""
    wanted = {int(c) for c in class_ids}
    return dict(doc, classes=sorted(c for c in scored_classes(doc) if c in wanted),
                rows=[r for r in doc["rows"] if r["class"] in wanted])


def scored_classes(doc):
    """The category ids an evaluation scored (those of its rows for tables written before they were kept)."""
    return [int(c) for c in doc["classes"]] if "classes" in doc else sorted({r["class"] for r in doc["rows"]})


def on_common_classes(docs):
    """Tables of match table documents, each on the classes all of them scored (a class that one
    model was not trained on is left out of every table)."""
    common = set.intersection(*(set(scored_classes(doc)) for doc in docs))
    return [Table(only_classes(doc, common) if set(scored_classes(doc)) - common else doc) for doc in docs]


def paired_bootstrap(candidate, production, name, resamples=200, seed=0):
    """The difference candidate minus production in metric ``name`` on the same images, and its 95%
    interval from ``resamples`` resamples of the images (each resample scores both models on the
    same draw). Returns {"difference", "ci95", "resamples", "images"}; ``ci95`` is None when no
    resample holds ground truth to score."""
    images = sorted(set(candidate.images))
    if images != sorted(set(production.images)):
        raise ValueError("the two evaluations scored different images (%d and %d); score both on the same data"
                         % (len(candidate.images), len(production.images)))
    difference = candidate.metric(name) - production.metric(name)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(images), len(images)), minlength=len(images))
        a = candidate.metric(name, candidate.weights(counts, images))
        b = production.metric(name, production.weights(counts, images))
        if a >= 0 and b >= 0:
            differences.append(a - b)
    return {"difference": float(difference), "ci95": percentile_interval(differences),
            "resamples": len(differences), "images": len(images)}


def percentile_interval(values):
    """The 95% percentile interval of bootstrap ``values``, or None with no value to take it from."""
    return [float(v) for v in np.percentile(values, [2.5, 97.5])] if len(values) else None


def verdict(ci95, min_improvement=0.0):
    """``better`` when the whole interval is above ``min_improvement``, ``worse`` when it is below 0,
    ``within noise`` otherwise; ``nothing to compare`` without an interval (no resample had ground
    truth to score)."""
    if ci95 is None:
        return "nothing to compare"
    low, high = ci95
    if low > min_improvement:
        return "better"
    if high < 0:
        return "worse"
    return "within noise"
