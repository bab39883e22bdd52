"""Pictures of a training run with Pillow alone: the learning curve, per-class precision-recall
curves, and predictions drawn beside the ground truth."""
import io
import math

from PIL import Image, ImageDraw

COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]
INK, GRID, PAPER = (40, 40, 40), (225, 225, 225), (255, 255, 255)


class _Panel:
    """A rectangle of a figure with axes from (x0, y0) to (x1, y1) in data units."""

    def __init__(self, draw, box, x_range, y_range, title, x_label, y_label):
        self.draw, self.box = draw, box
        (self.x0, self.x1), (self.y0, self.y1) = x_range, y_range
        left, top, right, bottom = box
        draw.rectangle(box, outline=INK)
        draw.text((left, top - 16), title, fill=INK)
        for i in range(5):
            fraction = i / 4
            y = bottom - fraction * (bottom - top)
            x = left + fraction * (right - left)
            draw.line((left, y, right, y), fill=GRID)
            draw.text((left - 44, y - 6), "%.3g" % (self.y0 + fraction * (self.y1 - self.y0)), fill=INK)
            draw.text((x - 12, bottom + 4), "%.4g" % (self.x0 + fraction * (self.x1 - self.x0)), fill=INK)
        draw.text(((left + right) // 2 - 3 * len(x_label), bottom + 20), x_label, fill=INK)
        draw.text((left - 44, top - 30), y_label, fill=INK)

    def point(self, x, y):
        left, top, right, bottom = self.box
        fx = (x - self.x0) / ((self.x1 - self.x0) or 1)
        fy = (y - self.y0) / ((self.y1 - self.y0) or 1)
        return left + fx * (right - left), bottom - fy * (bottom - top)

    def line(self, xs, ys, colour, label, slot):
        points = [self.point(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(points) > 1:
            self.draw.line(points, fill=colour, width=2)
        for x, y in points:
            self.draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        left, top, right, _ = self.box
        self.draw.line((right - 150, top + 12 + 14 * slot, right - 130, top + 12 + 14 * slot), fill=colour, width=3)
        self.draw.text((right - 125, top + 5 + 14 * slot), label, fill=INK)


def learning_curve(history, path_or_file):
    """AP and AP50, and the losses, against the step of each evaluation."""
    steps = [h["step"] for h in history]
    image = Image.new("RGB", (900, 700), PAPER)
    draw = ImageDraw.Draw(image)
    x_range = (min(steps + [0]), max(steps + [1]))
    top = _Panel(draw, (80, 40, 860, 320), x_range, (0.0, 1.0), "COCO AP on the eval split", "step", "AP")
    for slot, key in enumerate(("AP", "AP50", "ARmax100")):
        top.line(steps, [h.get(key) for h in history], COLOURS[slot], key, slot)
    keys = [k for k in ("train_loss", "total_loss", "cls_loss", "box_loss") if any(k in h for h in history)]
    values = [h[k] for h in history for k in keys if isinstance(h.get(k), (int, float)) and math.isfinite(h[k])]
    bottom = _Panel(draw, (80, 400, 860, 640), x_range, (0.0, max(values + [1e-6]) * 1.05), "losses", "step", "loss")
    for slot, key in enumerate(keys):
        label = "train loss" if key == "train_loss" else "eval " + key.replace("_", " ")
        bottom.line(steps, [h.get(key) for h in history], COLOURS[slot + 3], label, slot)
    image.save(path_or_file, format="PNG")


def precision_recall(curves, path_or_file, title="precision-recall at IoU 0.5, per class"):
    """``curves``: {class name: (recall points, precision points)}."""
    image = Image.new("RGB", (900, 620), PAPER)
    draw = ImageDraw.Draw(image)
    panel = _Panel(draw, (80, 40, 860, 560), (0.0, 1.0), (0.0, 1.0), title, "recall", "precision")
    for slot, (name, (recall, precision)) in enumerate(sorted(curves.items())):
        panel.line(recall, precision, COLOURS[slot % len(COLOURS)], name[:18], slot)
    image.save(path_or_file, format="PNG")


def draw_boxes(encoded, truth, predicted, names, thumb_width=320):
    """The image with ground-truth boxes (thin, white-edged green) and predicted boxes (coloured by
    class, with name and score). Boxes are [ymin, xmin, ymax, xmax] normalised."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    width, height = image.size
    draw = ImageDraw.Draw(image)
    thick = max(2, width // 300)
    for (ymin, xmin, ymax, xmax), label in truth:
        draw.rectangle((xmin * width, ymin * height, xmax * width, ymax * height), outline=(255, 255, 255), width=thick + 2)
        draw.rectangle((xmin * width, ymin * height, xmax * width, ymax * height), outline=(0, 200, 0), width=thick)
    for (ymin, xmin, ymax, xmax), label, score in predicted:
        colour = COLOURS[label % len(COLOURS)]
        draw.rectangle((xmin * width, ymin * height, xmax * width, ymax * height), outline=colour, width=thick)
        text = "%s %.2f" % (names.get(label, label), score)
        left, top_, right, bottom = draw.textbbox((xmin * width, ymin * height), text)
        y = max(0, ymin * height - (bottom - top_) - 2)
        draw.rectangle((left, y, right + 2, y + bottom - top_ + 2), fill=colour)
        draw.text((xmin * width + 1, y), text, fill=(0, 0, 0))
    return image.resize((thumb_width, max(1, round(height * thumb_width / width))))


def contact_sheet(thumbs, path_or_file, columns=4):
    if not thumbs:
        thumbs = [Image.new("RGB", (320, 40), PAPER)]
    width = max(t.size[0] for t in thumbs)
    cell = max(t.size[1] for t in thumbs)
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * width, rows * cell), PAPER)
    for i, thumb in enumerate(thumbs):
        sheet.paste(thumb, ((i % columns) * width, (i // columns) * cell))
    sheet.save(path_or_file, format="PNG")
