"""summary.json and the short human summary printed at the end of a run."""
from tfproc import published as published_lib
from tfproc import report as report_lib
from tfproc import split


def build(settings, merged, label_map, shard_counts, elapsed_seconds):
    splits = {}
    for name in settings.split_names:
        counts = merged["splits"].get(name) or report_lib.split_counts(report_lib.new(), name)
        splits[name] = {
            "images": counts["images"],
            "boxes": counts["boxes"],
            "negatives": counts["negatives"],
            "bytes": counts["bytes"],
            "shards": shard_counts.get(name, 0),
            "pattern": "%s/%s/*.tfrecord" % (settings.output.rstrip("/"), name),
        }
    class_boxes = {}
    for name, counts in merged["splits"].items():
        if name not in base_splits(merged["splits"]):
            continue
        for class_id, boxes in counts["classes"].items():
            class_boxes[class_id] = class_boxes.get(class_id, 0) + boxes
    published = settings.eval_pct is None
    images = merged.get("frames", 0) if published else sum(s["images"] for s in splits.values())
    return {
        "source": settings.source,
        "output": settings.output,
        "eval_pct": settings.eval_pct,
        "eval_share": None if published else round(splits[split.EVAL]["images"] / images, 4) if images else 0.0,
        "split_by": published_lib.SPLIT_BY if published else "hash",
        "images": images,
        "splits": splits,
        "num_classes": label_map.num_classes,
        "label_id_shift": label_map.shift,
        "label_name_conflicts": [{"label_id": i, "names": n} for i, n in label_map.conflicts],
        "classes": [
            {"id": class_id, "name": name, "boxes": class_boxes.get(str(class_id), 0)}
            for class_id, name in sorted(label_map.names.items())
        ],
        "frames_without_boxes": sum(s["negatives"] for n, s in splits.items() if n in base_splits(splits)),
        "boxes_clipped": merged["boxes_clipped"],
        "boxes_dropped": merged["boxes_dropped"],
        "images_reoriented": merged["images_reoriented"],
        "skipped": merged["skipped"],
        "skipped_total": report_lib.skipped_total(merged),
        "skipped_examples": [
            {"item": name, "reason": reason, "detail": detail}
            for name, reason, detail in merged["skipped_examples"]
        ],
        "superseded_attempts": settings.superseded,
        "elapsed_seconds": round(elapsed_seconds, 1),
    }


def base_splits(names):
    """The splits that are not a part of another (``train_small`` is a part of ``train``): each frame
    is in one of them at most, so counts over them count each frame once."""
    names = set(names)
    return {n for n in names if not any(n.startswith(other + "_") for other in names)}


def human(summary):
    """A few lines for the terminal."""
    splits = {name: summary["splits"][name] for name in published_lib.ordered(summary["splits"])}
    if summary.get("eval_pct") is None:
        first = "Converted %d photos into %d published splits (%s) in %.0fs." % (
            summary["images"], len(splits), ", ".join("%s %d" % (n, s["images"]) for n, s in splits.items()),
            summary["elapsed_seconds"])
    else:
        train, evaluation = splits[split.TRAIN], splits[split.EVAL]
        first = "Converted %d images (%d train, %d eval = %.1f%% eval) with %d boxes in %.0fs." % (
            train["images"] + evaluation["images"], train["images"], evaluation["images"],
            100 * summary["eval_share"], train["boxes"] + evaluation["boxes"], summary["elapsed_seconds"])
    lines = [
        first,
        "num_classes: %d%s" % (
            summary["num_classes"],
            " (dataset label ids shifted by +1 because they start at 0)"
            if summary["label_id_shift"] else ""),
        "frames without boxes: %d; boxes clipped at the edge: %d; boxes dropped (no area left): %d"
        % (summary["frames_without_boxes"], summary["boxes_clipped"], summary["boxes_dropped"]),
    ]
    if summary["skipped_total"]:
        reasons = ", ".join("%s %d" % item for item in sorted(summary["skipped"].items()))
        lines.append("skipped %d items (%s); the first ones:" % (summary["skipped_total"], reasons))
        for example in summary["skipped_examples"][:10]:
            detail = ": " + example["detail"] if example["detail"] else ""
            lines.append("warning: skipped %s: %s%s" % (example["item"], example["reason"], detail))
    if summary["images_reoriented"]:
        lines.append("%d photo(s) carry an EXIF orientation: their boxes were moved onto the stored "
                     "pixel grid, which is what TensorFlow decodes" % summary["images_reoriented"])
    if summary["superseded_attempts"]:
        lines.append("left out %d earlier attempt(s) of retried instances"
                     % len(summary["superseded_attempts"]))
    for conflict in summary["label_name_conflicts"]:
        lines.append("warning: label id %d has several names: %s"
                     % (conflict["label_id"], ", ".join(conflict["names"])))
    width = max(len(name) for name in splits) + 1
    for name, entry in splits.items():
        lines.append("%s %s (%d shards)" % ((name + ":").ljust(width), entry["pattern"], entry["shards"]))
    lines.append("label map and summary: %s/label_map.pbtxt, %s/summary.json"
                 % (summary["output"].rstrip("/"), summary["output"].rstrip("/")))
    return "\n".join(lines)
