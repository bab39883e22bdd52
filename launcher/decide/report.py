"""``report.html``: the page a person decides from, one self-contained file (pictures inlined as
PNG data, no links to local files), written beside a run's comparison.json and promotion.json.

Every number in it comes from comparison.json; the cells carry ``data-key`` attributes
("synthetic.AP.candidate", "real.AP.ci95", "class.milk.real.production", ...) so that a test, or
a script, can read them back.
"""
import base64
import html
import io
import json
import os
import shlex

from tfproc import fsutil
from trainer import cocoap

NAME = "report.html"
ROWS = ("AP", "AP50", "AP75", "ARmax100")
DISPLAY_SCORE = 0.3
SHEET_IMAGES = 6
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1080px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 4px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 17px; padding: 10px 14px; border-left: 5px solid #888; background: #f8f8f8; }
.better { border-color: #2a8a3a; } .worse { border-color: #c0392b; } .noise { border-color: #d68910; }
.flag { color: #c0392b; font-weight: 600; } .gap { color: #8e44ad; font-weight: 600; }
code { background: #f1f1f1; padding: 2px 5px; border-radius: 3px; font-size: 13px; word-break: break-all; }
img { max-width: 100%; border: 1px solid #ddd; } .pair { display: flex; gap: 12px; flex-wrap: wrap; }
.pair figure { margin: 0; flex: 1 1 420px; } figcaption { color: #555; font-size: 13px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; } dt { color: #555; }
"""


def _e(value):
    return html.escape(str(value))


def _number(value, signed=False):
    if value is None:
        return "—"
    return ("%+.4f" if signed else "%.4f") % value


def _cell(key, value, signed=False):
    shown = _number(value, signed)
    return '<td class="num" data-key="%s" data-value="%s">%s</td>' % (_e(key), "" if value is None else repr(value),
                                                                      shown)


def _interval_cell(key, ci95):
    if not ci95:
        return '<td class="num" data-key="%s">—</td>' % _e(key)
    return '<td class="num" data-key="%s" data-value="%s">[%+.4f, %+.4f]</td>' % (
        _e(key), _e(json.dumps(ci95)), ci95[0], ci95[1])


def _png(data):
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _learning_curve(candidate_dir, folder):
    """The candidate's learning curve, or, for a fine-tuned candidate that evaluated nothing, the
    one of its training before the fine-tuning."""
    for where, caption in ((candidate_dir, "learning curve of %s" % candidate_dir),
                           (folder.rstrip("/") + "/candidate" if folder else "", "learning curve before the "
                                                                                 "fine-tuning")):
        data = _read(os.path.join(where, "learning_curve.png")) if where else None
        if data:
            return data, caption
    return None, "learning curve"


def _read(path):
    try:
        return fsutil.read_bytes(path) if path and fsutil.is_file(path) else None
    except OSError:
        return None


def verdict_sentence(comparison, promotion):
    """The decision in one sentence, and the command that acts on it."""
    metric, verdict = comparison["metric"], comparison.get("verdict")
    production_dir = promotion.get("production_dir", "")
    rollback = shlex.join(["python", "-m", "launcher", "pipeline", "promote", "--production", str(production_dir),
                           "--rollback"])
    promote = promotion.get("promote_command", "")
    if comparison.get("production") is None:
        text = ("There is no production model yet; the candidate scores %s %.4f on %s images."
                % (metric, comparison["candidate"], comparison.get("images") or "?"))
        if verdict == "scored nothing":
            text = ("There is no production model yet, and the candidate scored nothing (%s %s): it is not "
                    "promoted." % (metric, comparison["candidate"]))
    elif comparison.get("ci95") is None:
        text = "%s." % comparison.get("reason", "there is nothing to compare")
    else:
        low, high = comparison["ci95"]
        text = ("By %s the candidate is %s: %+.4f against production (95%% interval %+.4f to %+.4f, from %d "
                "resamples of %d images; better needs the whole interval above %+.4f)." % (
                    metric, verdict, comparison["difference"], low, high, comparison["resamples"],
                    comparison["images"], comparison.get("min_improvement") or 0.0))
        if comparison["images"] < (comparison.get("min_images") or 0):
            text += " It is within noise because a verdict needs at least %d eval images." % comparison["min_images"]
    if promotion.get("promoted"):
        return text + " It is production now; to roll back:", rollback
    return text + " It was not promoted; to promote it anyway:", promote


def _metric_rows(comparison):
    rows = []
    intervals = comparison.get("intervals") or {}
    for split in ("synthetic", "real"):
        candidate = (comparison.get("candidate_metrics") or {}).get(split)
        if not candidate:
            continue
        production = (comparison.get("production_metrics") or {}).get(split) or {}
        candidate, production = _as_compared(comparison, split, candidate, production)
        for name in ROWS:
            key = "%s.%s" % (split, name)
            interval = intervals.get(key) or {}
            mark = " ◀ decides" if key == comparison["metric"] else ""
            rows.append("<tr><td>%s%s</td>%s%s%s%s</tr>" % (
                _e(key), mark, _cell(key + ".candidate", candidate.get(name)),
                _cell(key + ".production", production.get(name)),
                _cell(key + ".difference", interval.get("difference"), signed=True),
                _interval_cell(key + ".ci95", interval.get("ci95"))))
    return rows


def _subset_rows(comparison):
    """One row per subset of the real data (``real:test_low_contrast``): the deciding metric's key for
    both models, their paired difference and its interval, and the subset's images."""
    key = comparison["metric"].partition(".")[2]
    intervals = comparison.get("intervals") or {}
    rows = []
    for name in sorted(comparison.get("candidate_metrics") or {}):
        if not name.startswith("real:"):
            continue
        candidate, production = _as_compared(comparison, name, comparison["candidate_metrics"][name],
                                             (comparison.get("production_metrics") or {}).get(name) or {})
        cell = "%s.%s" % (name, key)
        interval = intervals.get(cell) or {}
        rows.append("<tr><td>%s</td><td>%s</td>%s%s%s%s</tr>" % (
            _e(name.partition(":")[2]), _e(candidate.get("images")), _cell(cell + ".candidate", candidate.get(key)),
            _cell(cell + ".production", production.get(key)),
            _cell(cell + ".difference", interval.get("difference"), signed=True),
            _interval_cell(cell + ".ci95", interval.get("ci95"))))
    return rows


def _as_compared(comparison, split, candidate, production):
    """Both models' metrics as compared: on the classes both know, where one was not trained on all."""
    shared = (comparison.get("shared_classes") or {}).get(split)
    if not shared:
        return candidate, production
    return dict(candidate, **shared["candidate"]), dict(production, **shared["production"])


def _classes_note(comparison):
    alone = [(who, comparison.get("classes_%s_alone" % who)) for who in ("candidate", "production")]
    if not any(names for _, names in alone):
        return ""
    return ("<p id=\"classes-alone\">Compared on the classes both models know: %s. Each model's scores on all "
            "of its classes are in comparison.json.</p>" % _e("; ".join(
                "the %s alone knows %s" % (who, ", ".join(names)) for who, names in alone if names)))


def _subsets(comparison):
    rows = _subset_rows(comparison)
    if not rows:
        return ""
    return ("<h2>Subsets of the real data</h2><p>The same %s on each subset the real data holds; the verdict is "
            "on %s alone.</p><table id=\"subsets\"><tr><th>subset</th><th>images</th><th>candidate</th>"
            "<th>production</th><th>difference</th><th>95%% interval</th></tr>%s</table>" % (
                _e(comparison["metric"].partition(".")[2]), _e(comparison["metric"]), "".join(rows)))


def class_rows(comparison):
    """Per class: AP on synthetic and real data for both models, the candidate's synthetic-to-real
    gap, and the flags: worse than production, and the largest gaps."""
    per_class = comparison.get("per_class") or {}
    names = sorted(set().union(*[set(v) for v in per_class.values()])) if per_class else []
    decides = comparison["metric"].split(".", 1)[0]

    def value(split, name, model):
        return ((per_class.get(split) or {}).get(name) or {}).get(model)

    gaps = {}
    for name in names:
        synthetic, real = value("synthetic", name, "candidate"), value("real", name, "candidate")
        if synthetic is not None and real is not None and synthetic >= 0 and real >= 0:
            gaps[name] = synthetic - real
    largest = sorted((g for g in gaps.values() if g > 0), reverse=True)[:3]
    rows = []
    for name in names:
        flags = []
        candidate, production = value(decides, name, "candidate"), value(decides, name, "production")
        if candidate is not None and production is not None and 0 <= candidate < production:
            flags.append('<span class="flag" data-flag="worse">worse than production</span>')
        if name in (comparison.get("classes_candidate_alone") or ()):
            flags.append('<span class="gap" data-flag="new">new: production was not trained on it</span>')
        if name in gaps and gaps[name] in largest:
            flags.append('<span class="gap" data-flag="gap">large synthetic-to-real gap</span>')
        cells = "".join(_cell("class.%s.%s.%s" % (name, split, model), value(split, name, model))
                        for split in ("synthetic", "real") for model in ("candidate", "production"))
        rows.append("<tr><td>%s</td>%s%s<td>%s</td></tr>" % (_e(name), cells,
                                                            _cell("class.%s.gap" % name, gaps.get(name), signed=True),
                                                            " ".join(flags)))
    return rows


def _table_of(scores):
    text = _read((scores or {}).get("matches"))
    return cocoap.load(text) if text else None


def _counts(rows, image, threshold_bit=1):
    """Of one image's detections at IoU 0.5: (right, wrong) among those scoring DISPLAY_SCORE or
    more, and the score-weighted balance of all of them (how confidently right the model is)."""
    right = wrong = 0
    balance = 0.0
    for row in rows.get(image, []):
        for score, matched, ignored in zip(row["scores"], row["matched"], row["ignored"]):
            if ignored & threshold_bit:
                continue
            hit = bool(matched & threshold_bit)
            balance += score if hit else -score
            if score >= DISPLAY_SCORE:
                right += hit
                wrong += not hit
    return right, wrong, balance


def disagreements(candidate, production, count=SHEET_IMAGES):
    """The images on which the two models differ most, by the score-weighted balance of right and
    wrong detections: ``[(image, candidate's counts, production's counts)]``."""
    by_image = [{}, {}]
    for rows, table in zip(by_image, (candidate, production)):
        for row in table.rows:
            rows.setdefault(row["image"], []).append(row)
    scored = []
    for image in candidate.images:
        a, b = _counts(by_image[0], image), _counts(by_image[1], image)
        difference = abs(a[2] - b[2])
        if difference > 1e-6:
            scored.append((-difference, image, a, b))
    return [(image, a, b) for _, image, a, b in sorted(scored)[:count]], by_image


def contact_sheet(comparison):
    """PNG bytes: each chosen image twice, the candidate's detections beside production's."""
    split = "real" if "real" in (comparison.get("candidate_metrics") or {}) else "synthetic"
    candidate = _table_of(comparison["candidate_metrics"][split])
    production = _table_of((comparison.get("production_metrics") or {}).get(split))
    if candidate is None or production is None:
        return None, split, []
    chosen, by_image = disagreements(candidate, production)
    if not chosen:
        return None, split, []
    images = _images(candidate.dataset, candidate.split, {image for image, _, _ in chosen})
    from trainer import plots
    thumbs = []
    for image, a, b in chosen:
        record = images.get(image)
        if record is None:
            continue
        for label, rows, (right, wrong, _) in (("candidate", by_image[0], a), ("production", by_image[1], b)):
            truth, predicted = [], []
            for row in rows.get(image, []):
                truth += [(_normalised(box, record), row["class"]) for box in row["gt_boxes"]]
                predicted += [(_normalised(box, record), row["class"], score)
                              for box, score in zip(row["boxes"], row["scores"])]
            confident = [p for p in predicted if p[2] >= DISPLAY_SCORE]
            shown = confident or sorted(predicted, key=lambda p: -p[2])[:3]
            caption = "%s, image %s\n%d right, %d wrong at %.1f+%s" % (
                label, image, right, wrong, DISPLAY_SCORE, "" if confident else "; its best 3 shown")
            thumbs.append(plots.draw_boxes(record["encoded"], truth, shown, record["names"], thumb_width=300,
                                           caption=caption))
    out = io.BytesIO()
    plots.contact_sheet(thumbs, out, columns=2, names=next(iter(images.values()))["names"] if images else {})
    return out.getvalue(), split, chosen


def _normalised(box, record):
    x, y, w, h = box
    width, height = record["width"], record["height"]
    return (y / height, x / width, (y + h) / height, (x + w) / width)


def _images(dataset, split, wanted):
    """{source id: encoded image, size and class names} of the wanted images of a split."""
    import tensorflow as tf

    from tfproc import records
    from trainer import dataset as dataset_lib
    if not dataset:
        return {}
    data = dataset_lib.load(dataset)
    found = {}
    for path in sorted(tf.io.gfile.glob(data.pattern(split))):
        with tf.io.gfile.GFile(path, "rb") as f:
            for raw in records.read_records(f):
                example = records.decode_example(raw)
                source = int(example["image/source_id"][0])
                if source in wanted:
                    found[source] = {"encoded": example["image/encoded"][0], "width": example["image/width"][0],
                                     "height": example["image/height"][0], "names": data.names}
                    if len(found) == len(wanted):
                        return found
    return found


def _figure(data, caption):
    if not data:
        return "<figure><figcaption>%s: not available</figcaption></figure>" % _e(caption)
    return '<figure><img alt="%s" src="%s"><figcaption>%s</figcaption></figure>' % (_e(caption), _png(data),
                                                                                    _e(caption))


def _used(comparison, promotion, candidate_dir):
    items = []
    for split in ("synthetic", "real"):
        scores = (comparison.get("candidate_metrics") or {}).get(split)
        if scores:
            items.append(("%s data" % split, "%s (%s split, %s images)" % (scores.get("dataset"), scores.get("split"),
                                                                         scores.get("images"))))
    params = _read(os.path.join(candidate_dir, "params.yaml")) if candidate_dir else None
    if params:
        import yaml
        doc = yaml.safe_load(params) or {}
        task, trainer = doc.get("task", {}), doc.get("trainer", {})
        model = task.get("model", {})
        items.append(("training", "backbone %s, input %s, batch %s, %s steps" % (
            (model.get("backbone") or {}).get("type"), model.get("input_size"),
            (task.get("train_data") or {}).get("global_batch_size"), trainer.get("train_steps"))))
    items += [("decided by", "%s, better only above %+.4f, %s resamples" % (
        comparison["metric"], comparison.get("min_improvement") or 0.0, comparison.get("resamples") or "no")),
        ("candidate", candidate_dir), ("production model", comparison.get("production_model") or "none yet"),
        ("production folder", promotion.get("production_dir", ""))]
    return "".join("<dt>%s</dt><dd data-key=\"used.%s\">%s</dd>" % (_e(k), _e(k), _e(v)) for k, v in items)


def render(comparison, promotion, candidate_dir, run="", folder=""):
    """The page, as text."""
    sentence, command = verdict_sentence(comparison, promotion)
    style = {"better": "better", "worse": "worse", "within noise": "noise"}.get(comparison.get("verdict"), "")
    split = "real" if "real" in (comparison.get("candidate_metrics") or {}) else "synthetic"
    pr = [(_read(os.path.join(os.path.dirname((scores or {}).get("matches", "")), "pr_curves.png"))
           if (scores or {}).get("matches") else None, caption) for scores, caption in (
        ((comparison.get("candidate_metrics") or {}).get(split), "candidate, %s data" % split),
        ((comparison.get("production_metrics") or {}).get(split), "production, %s data" % split))]
    try:
        sheet, sheet_split, _ = contact_sheet(comparison)
        sheet_note = "The two models agree on every image."
    except Exception as error:     # a picture must not fail the promote step: say why it is missing
        sheet, sheet_split = None, split
        sheet_note = "The contact sheet could not be drawn: %s: %s" % (type(error).__name__, error)
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head>"
        "<body>" % (_e("synthdet run %s" % run), STYLE),
        "<h1>Run %s: the candidate against production</h1>" % _e(run or "?"),
        '<p class="verdict %s" id="verdict" data-verdict="%s">%s<br><code id="command">%s</code></p>' % (
            style, _e(comparison.get("verdict")), _e(sentence), _e(command)),
        "<h2>Metrics</h2><table id=\"metrics\"><tr><th>metric</th><th>candidate</th><th>production</th>"
        "<th>difference</th><th>95%% interval</th></tr>%s</table>" % "".join(_metric_rows(comparison)),
        _classes_note(comparison),
        "<p>Intervals: a paired bootstrap over the images, both models scored on the same resample each time; "
        "the detections and pycocotools' matching are computed once.</p>",
        _subsets(comparison),
        "<h2>Per class</h2><table id=\"classes\"><tr><th>class</th><th>synthetic, candidate</th>"
        "<th>synthetic, production</th><th>real, candidate</th><th>real, production</th>"
        "<th>gap (candidate, synthetic − real)</th><th></th></tr>%s</table>" % "".join(class_rows(comparison)),
        "<h2>Learning curve of the candidate</h2>%s" % _figure(*_learning_curve(candidate_dir, folder)),
        "<h2>Precision-recall</h2><div class=\"pair\">%s</div>" % "".join(_figure(d, c) for d, c in pr),
        "<h2>Where the two models disagree most (%s data)</h2>%s" % (
            _e(sheet_split), _figure(sheet, "left: candidate, right: production; dashed: ground truth; detections "
                                            "scoring %.1f or more (else its best 3)" % DISPLAY_SCORE) if sheet else
            "<p>%s</p>" % _e("No production model to compare with." if comparison.get("production") is None
                             else sheet_note)),
        "<h2>What was used</h2><dl>%s</dl>" % _used(comparison, promotion, candidate_dir),
        "</body></html>\n"]
    return "".join(parts)


def write(folder, comparison, promotion, candidate_dir, run=""):
    path = folder.rstrip("/") + "/" + NAME
    fsutil.write_atomically(path, render(comparison, promotion, candidate_dir, run, folder).encode("utf-8"))
    return path
