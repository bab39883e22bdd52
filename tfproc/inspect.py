"""``python -m tfproc inspect OUT``: what will be trained on, and whether the records are well-formed."""
import argparse
import collections
import hashlib
import io
import json
import os
import struct
import sys

from tfproc import fsutil, imageheader, labels, published, records, split
from tfproc.summary import base_splits

REQUIRED = ("image/encoded", "image/format", "image/height", "image/width", "image/filename",
            "image/source_id", "image/key/sha256", "image/object/bbox/xmin", "image/object/bbox/xmax",
            "image/object/bbox/ymin", "image/object/bbox/ymax", "image/object/class/label",
            "image/object/class/text")
MAX_PROBLEMS_SHOWN = 10


def check_example(example, label_map):
    """The problems of one decoded record, as short sentences (empty when it is well-formed)."""
    missing = [key for key in REQUIRED if key not in example]
    if missing:
        return ["missing %s" % ", ".join(missing)]
    problems = []
    if example["image/format"] not in ([b"png"], [b"jpeg"]):
        problems.append("image/format is %r" % example["image/format"])
    if hashlib.sha256(example["image/encoded"][0]).hexdigest().encode() != example["image/key/sha256"][0]:
        problems.append("image/key/sha256 does not match the image bytes")
    if not (example["image/width"] and example["image/width"][0] > 0
            and example["image/height"] and example["image/height"][0] > 0):
        problems.append("width/height not positive")
    else:
        try:
            _, width, height, _ = imageheader.read_header(example["image/encoded"][0])
            if (width, height) != (example["image/width"][0], example["image/height"][0]):
                problems.append("image/width and height say %dx%d, the image is %dx%d" % (
                    example["image/width"][0], example["image/height"][0], width, height))
        except imageheader.BadImage as error:
            problems.append("image/encoded: %s" % error)
    if not example["image/source_id"] or not example["image/source_id"][0].isdigit():
        problems.append("image/source_id '%s' is not a decimal number (evaluators read it as an integer)"
                        % b"".join(example["image/source_id"][:1]).decode("utf-8", "replace"))
    columns = [example["image/object/bbox/" + k] for k in ("xmin", "ymin", "xmax", "ymax")]
    labels, texts = example["image/object/class/label"], example["image/object/class/text"]
    if len({len(c) for c in columns + [labels, texts]}) != 1:
        problems.append("box, label and text lists differ in length")
        return problems
    areas = example.get("image/object/area") or [None] * len(labels)
    pixels = example["image/width"][0] * example["image/height"][0] if example["image/width"] else 0
    for i, (xmin, ymin, xmax, ymax) in enumerate(zip(*columns)):
        if not (0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0):
            problems.append("box %d not within [0, 1] and ordered: %.4g %.4g %.4g %.4g" % (i, xmin, ymin, xmax, ymax))
        elif i < len(areas) and areas[i] is not None and pixels and \
                abs(areas[i] - (xmax - xmin) * (ymax - ymin) * pixels) > 1e-3 * max(1.0, areas[i]):
            problems.append("box %d: image/object/area %.6g is not its area in pixels (%.6g)"
                            % (i, areas[i], (xmax - xmin) * (ymax - ymin) * pixels))
    for label, text in zip(labels, texts):
        if label not in label_map:
            problems.append("class %d is not in the label map" % label)
        elif label_map[label].encode("utf-8") != text:
            problems.append("class %d is named %r, the label map says %r" % (label, text.decode("utf-8", "replace"), label_map[label]))
    return problems


class Stats:
    def __init__(self):
        self.records = collections.Counter()        # split -> records
        self.shards = collections.Counter()
        self.boxes = collections.Counter()          # class id -> boxes
        self.resolutions = collections.Counter()    # (width, height) -> images
        self.sizes, self.aspects = [], []           # sqrt(box area) in image fractions; width/height in pixels
        self.problems = []                          # (where, sentence)
        self.problem_count = 0
        self.negatives = 0
        self.split_boxes = collections.Counter()     # split -> boxes
        self.split_negatives = collections.Counter()

    def add(self, split_name, example, problems, where, counted=True):
        """One record of ``split_name``; ``counted`` False for a subset's (``test_low_contrast``), whose
        photos the base split (``test``) counts already."""
        self.records[split_name] += 1
        for problem in problems:
            self.problem_count += 1
            if len(self.problems) < MAX_PROBLEMS_SHOWN:
                self.problems.append((where, problem))
        if "image/width" not in example or "image/object/class/label" not in example:
            return
        width, height = example["image/width"][0], example["image/height"][0]
        labels = example["image/object/class/label"]
        self.split_negatives[split_name] += 0 if labels else 1
        self.split_boxes[split_name] += len(labels)
        if not counted:
            return
        self.resolutions[(width, height)] += 1
        self.negatives += 0 if labels else 1
        for label, xmin, ymin, xmax, ymax in zip(labels, *(example["image/object/bbox/" + k]
                                                          for k in ("xmin", "ymin", "xmax", "ymax"))):
            self.boxes[label] += 1
            if xmax > xmin and ymax > ymin:     # malformed boxes are reported by the checks instead
                self.sizes.append(((xmax - xmin) * (ymax - ymin)) ** 0.5)
                self.aspects.append((xmax - xmin) * width / ((ymax - ymin) * height))


def _percentiles(values):
    if not values:
        return "-"
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return "min %.3g  p5 %.3g  median %.3g  p95 %.3g  max %.3g" % (
        ordered[0], pick(0.05), pick(0.5), pick(0.95), ordered[-1])


def inspect(output, preview=0):
    """Read every record under ``output``; return (Stats, label map, [(key, example)] sampled for preview)."""
    label_map_path = fsutil.join(output, "label_map.pbtxt")
    try:
        label_map = labels.parse_label_map(fsutil.read_bytes(label_map_path).decode("utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError("cannot read the label map %s: %s" % (label_map_path, error))
    stats, sample = Stats(), []     # sample: the ``preview`` records with the smallest order keys
    names = split_names(output)
    bases = base_splits(names)
    seen = {}                       # source id (in a base split) and (source id, split): seen already
    for split_name in names:
        folder = fsutil.join(output, split_name)
        counted = split_name in bases
        for rel in sorted(r for r in fsutil.list_tree(folder) if r.endswith(".tfrecord")):
            stats.shards[split_name] += 1
            path = fsutil.join(folder, rel)
            try:
                with _open(path) as f:
                    for index, data in enumerate(records.read_records(f)):
                        where = "%s/%s#%d" % (split_name, rel, index)
                        try:
                            example = records.decode_example(data)
                        except (ValueError, IndexError, UnicodeDecodeError, struct.error) as error:
                            stats.add(split_name, {}, ["not a tf.train.Example: %s" % error], where)
                            continue
                        problems = check_example(example, label_map)
                        key = (example.get("image/source_id") or [b""])[0]
                        if (key, split_name) in seen or counted and key in seen:
                            problems.append("source_id %r appears twice" % key.decode("utf-8", "replace"))
                        seen[(key, split_name)] = True
                        if counted:
                            seen[key] = split_name
                        stats.add(split_name, example, problems, where, counted)
                        if preview and counted and not problems:
                            name = example["image/filename"][0].decode("utf-8", "replace")
                            sample = sorted(sample + [(split.order_of(name), example)],
                                            key=lambda item: item[0])[:preview]
            except ValueError as error:
                stats.add(split_name, {}, ["%s" % error], "%s/%s" % (split_name, rel))
    return stats, label_map, [example for _, example in sample]


def split_names(output):
    """The split folders of ``output`` that hold shards (train and eval, or the published splits), in
    reading order; train and eval at least."""
    from tfproc import output as output_lib
    summary, _ = read_summary(output)
    found = set(output_lib.split_folders(output))
    if not published.split_by_files(summary):
        found |= {split.TRAIN, split.EVAL}
    return published.ordered(found)


def _open(path):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def report(stats, label_map, summary=None):
    shown = published.ordered(set(stats.shards) | (set() if published.split_by_files(summary)
                                                   else {split.TRAIN, split.EVAL}))
    lines = ["records: %s" % ", ".join("%s %d (%d shards)" % (s, stats.records[s], stats.shards[s]) for s in shown)]
    lines.append("frames without boxes: %d" % stats.negatives)
    lines.append("boxes per class (%d classes in the label map):" % len(label_map))
    for class_id in sorted(set(label_map) | set(stats.boxes)):
        lines.append("  %4d %-30s %8d" % (class_id, label_map.get(class_id, "?"), stats.boxes[class_id]))
    lines.append("box size, sqrt(area) as a fraction of the image: %s" % _percentiles(stats.sizes))
    lines.append("box aspect, width/height in pixels:              %s" % _percentiles(stats.aspects))
    lines.append("images per resolution: %s" % ", ".join(
        "%dx%d: %d" % (w, h, n) for (w, h), n in stats.resolutions.most_common()))
    if summary is not None:
        for problem in summary_problems(summary, stats, label_map):
            stats.problem_count += 1
            stats.problems.append(("summary.json", problem))
    if stats.problem_count:
        lines.append("checks: %d problem(s); the first ones:" % stats.problem_count)
        lines += ["  %s: %s" % item for item in stats.problems]
    else:
        lines.append("checks: all %d records well-formed (keys, sha256, boxes in [0, 1] and ordered, "
                     "labels in the label map)" % sum(stats.records.values()))
    return "\n".join(lines)


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def summary_problems(summary, stats, label_map):
    """How summary.json disagrees with the records and the label map (or is not a summary)."""
    if not isinstance(summary, dict):
        return ["is not a JSON object"]
    problems = []
    num_classes, highest = summary.get("num_classes"), max(label_map) if label_map else 0
    if not _whole(num_classes):
        problems.append("num_classes is %r, not a whole number" % (num_classes,))
    elif num_classes != highest:
        problems.append("says num_classes %d, the label map's highest class id is %d" % (num_classes, highest))
    splits = summary.get("splits")
    if not isinstance(splits, dict):
        problems.append("has no splits")
    else:
        expected = list(splits) if published.split_by_files(summary) else [split.TRAIN, split.EVAL]
        for name in published.ordered(set(expected) | set(stats.shards)):
            entry = splits.get(name)
            if not isinstance(entry, dict):
                problems.append("has no %s split" % name)
                continue
            for key, actual in (("images", stats.records[name]), ("boxes", stats.split_boxes[name]),
                                ("negatives", stats.split_negatives[name]), ("shards", stats.shards[name])):
                value = entry.get(key)
                if not _whole(value):
                    problems.append("%s %s is %r, not a whole number" % (name, key, value))
                elif value != actual:
                    problems.append("says %d %s %s, the records hold %d" % (value, name, key, actual))
    classes = summary.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, dict) for c in classes):
        problems.append("has no list of classes")
        return problems
    listed = set()
    for entry in classes:
        class_id, name, boxes = entry.get("id"), entry.get("name"), entry.get("boxes")
        if not _whole(class_id) or not _whole(boxes):
            problems.append("class entry %r is not {id, name, boxes} with whole numbers" % (entry,))
            continue
        listed.add(class_id)
        if label_map.get(class_id) != name:
            problems.append("names class %d %r, the label map says %r" % (class_id, name, label_map.get(class_id)))
        if boxes != stats.boxes[class_id]:
            problems.append("says class %d has %d boxes, the records hold %d" % (class_id, boxes, stats.boxes[class_id]))
    if listed != set(label_map):
        problems.append("lists classes %s, the label map has %s" % (sorted(listed), sorted(label_map)))
    return problems


def read_summary(output):
    """``(summary, why not)``: the parsed summary.json, or None and the reason."""
    path = fsutil.join(output, "summary.json")
    if not fsutil.is_file(path):
        return None, "it has no summary.json (a conversion is running, or was interrupted)"
    try:
        return json.loads(fsutil.read_bytes(path)), None
    except (OSError, ValueError) as error:
        return None, "its summary.json cannot be read: %s" % str(error).splitlines()[0]


def draw_previews(examples, label_map, folder, columns=4, thumb_width=320):
    """One PNG per record with its boxes and class names, and a contact sheet of them all."""
    from PIL import Image, ImageDraw

    from tfproc.palette import class_colour
    os.makedirs(folder, exist_ok=True)
    written, thumbs = [], []
    for index, example in enumerate(examples):
        # the stored pixel grid, as TensorFlow decodes it (no EXIF rotation), which the boxes refer to
        image = Image.open(io.BytesIO(example["image/encoded"][0])).convert("RGB")
        draw = ImageDraw.Draw(image)
        width, height = image.size
        line = max(2, width // 400)
        for label, xmin, ymin, xmax, ymax in zip(example["image/object/class/label"],
                                                 *(example["image/object/bbox/" + k] for k in ("xmin", "ymin", "xmax", "ymax"))):
            colour = class_colour(label)
            box = (xmin * width, ymin * height, xmax * width, ymax * height)
            draw.rectangle(box, outline=colour, width=line)
            text = "%d %s" % (label, label_map.get(label, "?"))
            left, top, right, bottom = draw.textbbox((box[0], box[1]), text)
            text_height = bottom - top + 2
            y = box[1] - text_height if box[1] >= text_height else box[1]   # above the box, or inside at the edge
            draw.rectangle((left, y, right + 2, y + text_height), fill=colour)
            draw.text((box[0] + 1, y), text, fill=(0, 0, 0))
        name = os.path.basename(example["image/filename"][0].decode("utf-8", "replace"))
        path = os.path.join(folder, "%02d_%s.png" % (index, os.path.splitext(name)[0]))
        image.save(path)
        written.append(path)
        thumbs.append(image.resize((thumb_width, max(1, round(height * thumb_width / width)))))
    if thumbs:
        rows = -(-len(thumbs) // columns)
        cell_height = max(t.size[1] for t in thumbs)
        sheet = Image.new("RGB", (columns * thumb_width, rows * cell_height), (255, 255, 255))
        for i, thumb in enumerate(thumbs):
            sheet.paste(thumb, ((i % columns) * thumb_width, (i // columns) * cell_height))
        sheet_path = os.path.join(folder, "contact_sheet.png")
        sheet.save(sheet_path)
        written.append(sheet_path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tfproc inspect",
        description="Show what a conversion output holds (records per split, boxes per class, box "
                    "sizes and aspects, resolutions) and check that every record is well-formed. "
                    "Exits 1 if a check fails, so it can gate a training launch.")
    parser.add_argument("output", help="a conversion output folder (local or gs://)")
    parser.add_argument("--preview", type=int, default=0, metavar="N",
                        help="draw the boxes of N sampled records onto their images")
    parser.add_argument("--preview-dir", default="tfrecord-preview",
                        help="where the preview PNGs and contact_sheet.png go (default: ./tfrecord-preview)")
    args = parser.parse_args(argv)
    output = args.output.rstrip("/")
    try:
        stats, label_map, sample = inspect(output, max(0, args.preview))
    except ValueError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    summary, unread = read_summary(output)
    print(report(stats, label_map, summary))
    pending = [rel.split("/", 1)[0] for rel in fsutil.list_tree(output) if rel.endswith("/COMMITTED")
               and rel.startswith(".staging-")]
    if summary is None or pending:
        print("error: %s is not a complete output: %s" % (output, (
            "a commit was cut short (%s); run the conversion again to finish it" % pending[0]) if pending
            else unread), file=sys.stderr)
        return 1
    if not sum(stats.records.values()):
        print("error: no records under %s/<split>/" % output, file=sys.stderr)
        return 1
    if args.preview:
        written = draw_previews(sample, label_map, args.preview_dir)
        print("preview: %d image(s) and a contact sheet in %s" % (len(written) - 1, args.preview_dir))
    return 1 if stats.problem_count else 0
