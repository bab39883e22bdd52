"""Pictures of a training run with Pillow alone: the learning curve, per-class precision-recall
curves, and predictions drawn beside the ground truth."""
import io
import math

from PIL import Image, ImageDraw

from tfproc.palette import COLOURS, class_colour

INK, GRID, PAPER = (40, 40, 40), (225, 225, 225), (255, 255, 255)


def _nice_ticks(low, high, count=5, integer=False):
    """About ``count`` round tick values covering [low, high]."""
    span = (high - low) or 1.0
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1, round(step))
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + 1e-9 * span:
        ticks.append(value)
        value += step
    return ticks


def _tick_text(value):
    return "%d" % value if float(value).is_integer() else "%.3g" % value


class _Panel:
    """A rectangle of a figure with axes from (x0, y0) to (x1, y1) in data units."""

    def __init__(self, draw, box, x_range, y_range, title, x_label, y_label, integer_x=False):
        self.draw, self.box = draw, box
        (self.x0, self.x1), (self.y0, self.y1) = x_range, y_range
        self.slots = 0
        left, top, right, bottom = box
        draw.rectangle(box, outline=INK)
        draw.text((left, top - 16), title, fill=INK)
        for value in _nice_ticks(self.y0, self.y1):
            _, y = self.point(self.x0, value)
            draw.line((left, y, right, y), fill=GRID)
            draw.text((left - 8 - 6 * len(_tick_text(value)), y - 6), _tick_text(value), fill=INK)
        for value in _nice_ticks(self.x0, self.x1, 6, integer_x):
            x, _ = self.point(value, self.y0)
            draw.line((x, bottom, x, bottom + 4), fill=INK)
            draw.text((x - 3 * len(_tick_text(value)), bottom + 6), _tick_text(value), fill=INK)
        draw.text(((left + right) // 2 - 3 * len(x_label), bottom + 22), x_label, fill=INK)
        draw.text((left - 44, top - 30), y_label, fill=INK)
        draw.rectangle(box, outline=INK)

    def point(self, x, y):
        left, top, right, bottom = self.box
        fx = (x - self.x0) / ((self.x1 - self.x0) or 1)
        fy = (y - self.y0) / ((self.y1 - self.y0) or 1)
        return left + fx * (right - left), bottom - fy * (bottom - top)

    def line(self, xs, ys, colour, label, dots=True):
        points = [self.point(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(points) > 1:
            self.draw.line(points, fill=colour, width=2)
        if dots or len(points) == 1:
            for x, y in points:
                self.draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        self.legend(label, colour)

    def lines(self, series, dots=True):
        """``[(label, xs, ys, colour)]``: series with the same values are drawn once, labelled
        together ("A = B"), so that none hides another unsaid."""
        groups = {}
        for label, xs, ys, colour in series:
            key = tuple((x, None if y is None or not math.isfinite(y) else round(y, 9)) for x, y in zip(xs, ys))
            groups.setdefault(key, [label, xs, ys, colour, []])[4].append(label)
        for _, xs, ys, colour, labels in groups.values():
            self.line(xs, ys, colour, " = ".join(labels), dots)

    def legend(self, label, colour):
        left, top, right, _ = self.box
        y = top + 12 + 14 * self.slots
        self.draw.line((right - 230, y, right - 210, y), fill=colour, width=3)
        self.draw.text((right - 205, y - 7), label, fill=INK)
        self.slots += 1

    def marker(self, x, label):
        left, top, right, bottom = self.box
        px, _ = self.point(x, self.y0)
        for y in range(top, bottom, 8):
            self.draw.line((px, y, px, min(y + 4, bottom)), fill=INK)
        self.draw.text((min(px + 4, right - 6 * len(label)), top + 4), label, fill=INK)


def learning_curve(history, path_or_file, best_metric="AP"):
    """AP, AP50 and ARmax100, and the losses, against the step of each evaluation; the best
    evaluation (by ``best_metric``) marked."""
    steps = [h["step"] for h in history]
    image = Image.new("RGB", (900, 700), PAPER)
    draw = ImageDraw.Draw(image)
    x_range = (min(steps + [0]), max(steps + [1]))
    top = _Panel(draw, (80, 40, 860, 320), x_range, (0.0, 1.0), "COCO metrics on the eval split", "step", "value",
                 integer_x=True)
    top.lines([(key, steps, [h.get(key) for h in history], COLOURS[slot])
               for slot, key in enumerate(("AP", "AP50", "ARmax100"))])
    scored = [h for h in history if isinstance(h.get(best_metric), (int, float)) and math.isfinite(h[best_metric])]
    if scored:
        best = max(scored, key=lambda h: h[best_metric])
        top.marker(best["step"], "best %s %.3f at step %d" % (best_metric, best[best_metric], best["step"]))
    keys = [k for k in ("train_loss", "total_loss", "cls_loss", "box_loss") if any(k in h for h in history)]
    values = [h[k] for h in history for k in keys if isinstance(h.get(k), (int, float)) and math.isfinite(h[k])]
    bottom = _Panel(draw, (80, 400, 860, 640), x_range, (0.0, max(values + [1e-6]) * 1.05), "losses", "step", "loss",
                    integer_x=True)
    bottom.lines([("train loss" if key == "train_loss" else "eval " + key.replace("_", " "), steps,
                   [h.get(key) for h in history], COLOURS[slot + 3]) for slot, key in enumerate(keys)])
    image.save(path_or_file, format="PNG")


def precision_recall(curves, path_or_file, title="precision-recall at IoU 0.5, per class", class_ids=None, missing=()):
    """``curves``: {class name: (recall points, precision points)}, each labelled with the AP of the
    curve drawn (its mean precision over the recall points, as COCO's AP at IoU 0.5) and drawn in
    its class's colour (``class_ids``: {class name: id}); ``missing``: the classes with no box in
    the data, named below the plot."""
    class_ids = class_ids or {}
    image = Image.new("RGB", (900, 640), PAPER)
    draw = ImageDraw.Draw(image)
    panel = _Panel(draw, (80, 40, 860, 560), (0.0, 1.0), (0.0, 1.0), title, "recall", "precision")
    series = []
    for slot, (name, (recall, precision)) in enumerate(sorted(curves.items())):
        ap50 = curve_ap(precision)
        label = "%s (AP50 %.3f)" % (name[:20], ap50) if ap50 is not None else name[:28]
        colour = class_colour(class_ids[name]) if name in class_ids else COLOURS[slot % len(COLOURS)]
        series.append((label, recall, precision, colour))
    panel.lines(series, dots=False)
    if missing:
        text = "no box of these classes in the data, so no curve: " + ", ".join(missing)
        draw.text((80, 600), text[:140], fill=INK)
    image.save(path_or_file, format="PNG")


def curve_ap(precision):
    """The AP of a drawn curve: its mean precision over the recall points where it has one (None
    where pycocotools has -1), as pycocotools averages a class's precision at one IoU."""
    drawn = [p for p in precision if p is not None]
    return sum(drawn) / len(drawn) if drawn else None


def _dashed_rectangle(draw, box, width, dash=6):
    """Ground truth: a dashed black-and-white outline, unlike any class colour."""
    left, top, right, bottom = box
    edges = [((left, top), (right, top)), ((right, top), (right, bottom)), ((right, bottom), (left, bottom)),
             ((left, bottom), (left, top))]
    for (x0, y0), (x1, y1) in edges:
        length = max(abs(x1 - x0), abs(y1 - y0))
        count = max(1, int(length // dash))
        for i in range(count):
            a, b = i / count, (i + 1) / count
            segment = (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a, x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)
            draw.line(segment, fill=(255, 255, 255) if i % 2 else (0, 0, 0), width=width)


def draw_boxes(encoded, truth, predicted, names, thumb_width=320, caption=""):
    """A tile: the image with ground-truth boxes (dashed black and white) and predicted boxes (solid,
    coloured by class, with name and score), and a caption below. Boxes are [ymin, xmin, ymax, xmax]
    normalised."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    width, height = image.size
    scale = thumb_width / width
    image = image.resize((thumb_width, max(1, round(height * scale))))
    width, height = image.size
    draw = ImageDraw.Draw(image)
    for (ymin, xmin, ymax, xmax), label in truth:
        _dashed_rectangle(draw, (xmin * width, ymin * height, xmax * width, ymax * height), 2)
    for (ymin, xmin, ymax, xmax), label, score in predicted:
        colour = class_colour(label)
        draw.rectangle((xmin * width, ymin * height, xmax * width, ymax * height), outline=colour, width=2)
        text = "%s %.2f" % (names.get(label, label), score)
        left, top_, right, bottom = draw.textbbox((xmin * width, ymin * height), text)
        y = max(0, ymin * height - (bottom - top_) - 2)
        draw.rectangle((left, y, right + 2, y + bottom - top_ + 2), fill=colour)
        draw.text((xmin * width + 1, y), text, fill=(0, 0, 0))
    tile = Image.new("RGB", (width, height + 30), PAPER)
    tile.paste(image, (0, 0))
    tile_draw = ImageDraw.Draw(tile)
    for row, text in enumerate(str(caption).split("\n")[:2]):
        tile_draw.text((2, height + 3 + 13 * row), text[:52], fill=INK)
    return tile


def contact_sheet(thumbs, path_or_file, columns=4, names=None, gap=10):
    """Tiles in a grid with ``gap`` pixels between them, under a legend: the ground truth's outline
    and each class's colour (``names``: {class id: name})."""
    if not thumbs:
        thumbs = [Image.new("RGB", (320, 40), PAPER)]
    width = max(t.size[0] for t in thumbs)
    cell = max(t.size[1] for t in thumbs)
    columns = max(1, min(columns, len(thumbs)))
    rows = -(-len(thumbs) // columns)
    legend_height = 28
    sheet_width = max(columns * (width + gap) + gap, 640)
    sheet = Image.new("RGB", (sheet_width, legend_height + rows * (cell + gap) + gap), PAPER)
    draw = ImageDraw.Draw(sheet)
    _dashed_rectangle(draw, (gap, 8, gap + 28, 20), 2)
    draw.text((gap + 34, 8), "ground truth", fill=INK)
    x = gap + 130
    draw.text((x, 8), "predictions, by class:", fill=INK)
    x += 140
    for label, name in sorted((names or {}).items()):
        if x > sheet_width - 80:
            break
        draw.rectangle((x, 8, x + 12, 20), outline=class_colour(label), width=2)
        draw.text((x + 16, 8), str(name)[:14], fill=INK)
        x += 24 + 6 * len(str(name)[:14])
    for i, thumb in enumerate(thumbs):
        sheet.paste(thumb, (gap + (i % columns) * (width + gap), legend_height + gap + (i // columns) * (cell + gap)))
    sheet.save(path_or_file, format="PNG")
