"""The pictures a person reads: one colour per class on every sheet, a PR legend that gives the AP
of the curve drawn (pycocotools' own), and series with equal values said, not hidden."""
import io

import pytest
from PIL import Image


def _truth_and_detections():
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, 6)]
    truth, detections = [], []
    for i in range(1, 6):
        for category, x in ((1, 10), (2, 60)):
            truth.append({"id": len(truth) + 1, "image_id": i, "category_id": category, "bbox": [x, 10, 30, 30],
                          "area": 900, "iscrowd": 0})
            shift = 2 if (i + category) % 3 else 20                 # some found, some missed by IoU 0.5
            detections.append({"image_id": i, "category_id": category, "bbox": [x + shift, 10, 30, 30],
                               "score": 0.9 - 0.1 * i + 0.01 * category})
    return {"images": images, "annotations": truth, "categories": [{"id": 1}, {"id": 2}]}, detections


def test_the_pr_legend_gives_the_ap50_pycocotools_gives_the_curve_drawn():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from trainer import plots
    dataset, detections = _truth_and_detections()
    ground = COCO()
    ground.dataset = dataset
    ground.createIndex()
    found = ground.loadRes(detections)
    evaluation = COCOeval(ground, found, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    precision = evaluation.eval["precision"]
    for k, category in enumerate(evaluation.params.catIds):
        curve = [float(v) if v > -1 else None for v in precision[0, :, k, 0, -1]]     # as the trainer draws it
        alone = COCOeval(ground, found, "bbox")
        alone.params.catIds = [category]
        alone.evaluate()
        alone.accumulate()
        alone.summarize()
        assert plots.curve_ap(curve) == pytest.approx(alone.stats[1], abs=1e-12)
    assert plots.curve_ap([1.0] * 101) == 1.0 and plots.curve_ap([None] * 101) is None


def _colour_at(image, xy):
    return image.convert("RGB").getpixel(xy)


def test_a_class_has_the_same_colour_in_the_preview_and_in_the_predictions(tmp_path):
    from tfproc import inspect, palette
    from trainer import plots
    photo = io.BytesIO()
    Image.new("RGB", (400, 300), (128, 128, 128)).save(photo, format="PNG")
    label = 5
    example = {"image/encoded": [photo.getvalue()], "image/filename": [b"a.png"],
               "image/object/class/label": [label], "image/object/bbox/xmin": [0.25],
               "image/object/bbox/ymin": [0.5], "image/object/bbox/xmax": [0.75], "image/object/bbox/ymax": [0.9]}
    inspect.draw_previews([example], {label: "tea"}, str(tmp_path / "preview"))
    preview = Image.open(sorted((tmp_path / "preview").glob("00_*.png"))[0])
    tile = plots.draw_boxes(photo.getvalue(), [], [((0.5, 0.25, 0.9, 0.75), label, 0.9)], {label: "tea"},
                            thumb_width=400)
    left_edge_preview = _colour_at(preview, (100, 250))
    left_edge_tile = _colour_at(tile, (100, 250))
    assert left_edge_preview == left_edge_tile == palette.class_colour(label)


def test_series_with_equal_values_are_drawn_once_and_labelled_together():
    from PIL import ImageDraw

    from trainer import plots
    drawn = []
    panel = plots._Panel(ImageDraw.Draw(Image.new("RGB", (900, 700))), (80, 40, 860, 320), (0, 40), (0.0, 1.0),
                         "t", "step", "value")
    panel.line = lambda xs, ys, colour, label, dots=True: drawn.append(label)
    panel.lines([("AP", [20, 40], [0.0, 0.0], (1, 1, 1)), ("AP50", [20, 40], [0.0, 0.0], (2, 2, 2)),
                 ("ARmax100", [20, 40], [0.0, 0.1], (3, 3, 3))])
    assert drawn == ["AP = AP50", "ARmax100"]
    history = [{"step": 20, "AP": 0.0, "AP50": 0.0, "ARmax100": 0.0, "train_loss": 2.0},
               {"step": 40, "AP": 0.0, "AP50": 0.0, "ARmax100": 0.0, "train_loss": 1.5}]
    out = io.BytesIO()
    plots.learning_curve(history, out)
    assert Image.open(io.BytesIO(out.getvalue())).size == (900, 700)
