"""Counts that every step adds to and the pipeline merges: what was written, what was skipped.

A report is a plain dict (JSON-ready, cheap to pickle); ``merge`` is associative and commutative,
so Beam can combine reports in any order.
"""
SPLIT_FIELDS = ("images", "boxes", "negatives", "bytes")
EXAMPLES_KEPT = 20


def new():
    return {
        "splits": {},            # split -> {images, boxes, negatives, bytes, classes: {id: boxes}}
        "frames": 0,             # distinct frames parsed (a frame may be in several published splits)
        "boxes_clipped": 0,
        "boxes_dropped": 0,
        "images_reoriented": 0,  # photos with an EXIF orientation: boxes moved to the stored grid
        "skipped": {},           # reason -> count
        "skipped_examples": [],  # [name, reason, detail], the first EXAMPLES_KEPT by name
        "shards_written": [],    # "split/name" of shards that hold frames
    }


def split_counts(report, split):
    counts = report["splits"].get(split)
    if counts is None:
        counts = report["splits"][split] = dict.fromkeys(SPLIT_FIELDS, 0)
        counts["classes"] = {}
    return counts


def add_skipped(report, name, reason, detail=""):
    report["skipped"][reason] = report["skipped"].get(reason, 0) + 1
    report["skipped_examples"] = _first(report["skipped_examples"] + [[name, reason, detail]])


def merge(reports):
    merged = new()
    for report in reports:
        merged["boxes_clipped"] += report["boxes_clipped"]
        merged["frames"] += report.get("frames", 0)
        merged["boxes_dropped"] += report["boxes_dropped"]
        merged["images_reoriented"] += report["images_reoriented"]
        for reason, count in report["skipped"].items():
            merged["skipped"][reason] = merged["skipped"].get(reason, 0) + count
        merged["skipped_examples"] = _first(merged["skipped_examples"] + report["skipped_examples"])
        merged["shards_written"].extend(report.get("shards_written", ()))
        for split, counts in report["splits"].items():
            total = split_counts(merged, split)
            for field in SPLIT_FIELDS:
                total[field] += counts[field]
            for class_id, boxes in counts["classes"].items():
                total["classes"][class_id] = total["classes"].get(class_id, 0) + boxes
    merged["shards_written"].sort()
    return merged


def skipped_total(report):
    return sum(report["skipped"].values())


def _first(examples):
    return sorted(examples)[:EXAMPLES_KEPT]
