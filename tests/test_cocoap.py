"""trainer.cocoap: pycocotools' own AP and AR, computed again from its matching on any weighting of
the images, and the paired bootstrap between two models scored on the same images."""
import contextlib
import io
import json
import random

import pytest

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from trainer import cocoap  # noqa: E402

STATS = {"AP": 0, "AP50": 1, "AP75": 2, "ARmax1": 6, "ARmax10": 7, "ARmax100": 8}


def dataset(seed, images=40, classes=3):
    rnd = random.Random(seed)
    gts, dts, imgs = [], [], []
    for i in range(1, images + 1):
        imgs.append({"id": i, "width": 200, "height": 150})
        for _ in range(rnd.randint(0, 4)):
            x, y, w, h = rnd.uniform(0, 150), rnd.uniform(0, 100), rnd.uniform(5, 50), rnd.uniform(5, 50)
            c = rnd.randint(1, classes)
            gts.append({"id": len(gts) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if rnd.random() < 0.8:
                j = lambda v: v + rnd.gauss(0, 4)
                dts.append({"image_id": i, "category_id": c if rnd.random() < 0.85 else rnd.randint(1, classes), "bbox": [j(x), j(y), max(1, j(w)), max(1, j(h))], "score": rnd.random()})
        for _ in range(rnd.randint(0, 3)):
            dts.append({"image_id": i, "category_id": rnd.randint(1, classes), "bbox": [rnd.uniform(0, 150), rnd.uniform(0, 100), 20, 20], "score": rnd.random() * 0.6})
    return imgs, gts, dts

def evaluate(imgs, gts, dts, classes=3):
    gt = COCO(); gt.dataset = {"images": imgs, "annotations": gts, "categories": [{"id": c} for c in range(1, classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex(); dt = gt.loadRes([dict(d) for d in dts]) if dts else COCO()
        e = COCOeval(gt, dt, "bbox"); e.evaluate(); e.accumulate(); e.summarize()
    return e


def table_of(coco_eval):
    from trainer import engine
    return cocoap.Table(json.loads(json.dumps(engine.match_table(coco_eval))))


def test_every_image_once_gives_pycocotools_numbers():
    imgs, gts, dts = dataset(1)
    e = evaluate(imgs, gts, dts)
    table = table_of(e)
    for name, k in STATS.items():
        assert table.metric(name) == pytest.approx(e.stats[k], abs=1e-9), name
    assert e.stats[0] > 0.01


def test_an_image_counted_twice_is_the_image_given_twice():
    imgs, gts, dts = dataset(2)
    table = table_of(evaluate(imgs, gts, dts))
    twice = [1, 2, 3, 7, 11]
    more_imgs, more_gts, more_dts = list(imgs), list(gts), list(dts)
    for i in twice:
        copy = 1000 + i
        more_imgs.append({"id": copy, "width": 200, "height": 150})
        more_gts += [dict(g, id=len(more_gts) + 1 + k, image_id=copy)
                     for k, g in enumerate(x for x in gts if x["image_id"] == i)]
        more_dts += [dict(d, image_id=copy) for d in dts if d["image_id"] == i]
    e = evaluate(more_imgs, more_gts, more_dts)
    weights = table.weights()
    weights[[table.images.index(i) for i in twice]] = 2
    for name, k in STATS.items():
        assert table.metric(name, weights) == pytest.approx(e.stats[k], abs=1e-9), name


def test_a_subset_of_the_images_scores_as_pycocotools_on_that_subset_alone():
    """The published test_* subsets are taken from test's matches: the same numbers, per class too."""
    imgs, gts, dts = dataset(4, images=60)
    from trainer import engine
    doc = json.loads(json.dumps(engine.match_table(evaluate(imgs, gts, dts))))
    part = sorted(random.Random(5).sample(range(1, 61), 17))
    table = cocoap.Table(cocoap.subset(doc, part, "test_low_contrast"))
    alone = evaluate([i for i in imgs if i["id"] in part], [g for g in gts if g["image_id"] in part],
                     [d for d in dts if d["image_id"] in part])
    assert table.images == part and table.split == "test_low_contrast"
    for name, k in STATS.items():
        assert table.metric(name) == pytest.approx(alone.stats[k], abs=1e-9), name
    precision = alone.eval["precision"]          # [iou, recall, class, area, max detections]
    for k, class_id in enumerate(alone.params.catIds):
        values = precision[:, :, k, 0, -1]
        expected = float(values[values > -1].mean()) if (values > -1).any() else None
        assert table.per_class("AP").get(class_id) == (pytest.approx(expected, abs=1e-9) if expected is not None
                                                       else None), class_id
    assert alone.stats[0] > 0.01


def test_the_paired_bootstrap_knows_its_noise():
    imgs, gts, dts = dataset(3, images=120)
    noisy = table_of(evaluate(imgs, gts, dts))
    same = cocoap.paired_bootstrap(noisy, noisy, "AP", resamples=200)
    assert same["difference"] == 0 and same["ci95"] == [0, 0] and cocoap.verdict(same["ci95"]) == "within noise"
    assert same["resamples"] == 200 and same["images"] == 120
    perfect = table_of(evaluate(imgs, gts, [{"image_id": g["image_id"], "category_id": g["category_id"],
                                             "bbox": g["bbox"], "score": 0.9} for g in gts]))
    better = cocoap.paired_bootstrap(perfect, noisy, "AP", resamples=200)
    assert better["ci95"][0] > 0.5 and cocoap.verdict(better["ci95"]) == "better"
    assert cocoap.verdict(better["ci95"], min_improvement=0.99) == "within noise"
    worse = cocoap.paired_bootstrap(noisy, perfect, "AP50", resamples=200)
    assert cocoap.verdict(worse["ci95"]) == "worse"
    # a second noisy model of the same quality: the interval holds 0
    other = table_of(evaluate(imgs, gts, dataset(3, images=120)[2][::-1]))
    close = cocoap.paired_bootstrap(other, noisy, "AP", resamples=200)
    assert close["ci95"][0] <= close["difference"] <= close["ci95"][1]


def test_different_images_are_refused():
    a = table_of(evaluate(*dataset(4, images=10)))
    b = table_of(evaluate(*dataset(4, images=12)))
    with pytest.raises(ValueError, match="different images"):
        cocoap.paired_bootstrap(a, b, "AP")


def test_detections_scoring_zero_change_nothing():
    imgs, gts, dts = dataset(5)
    padded = dts + [{"image_id": i["id"], "category_id": 1, "bbox": [0, 0, 0.01, 0.01], "score": 0.0}
                    for i in imgs for _ in range(3)]
    e = evaluate(imgs, gts, padded)
    table = table_of(e)
    assert all(score > 0 for row in table.rows for score in row["scores"])
    for name, k in STATS.items():
        assert table.metric(name) == pytest.approx(e.stats[k], abs=1e-9), name


def test_scores_that_differ_past_the_fifth_decimal_keep_their_order():
    """Many detections within 1e-6 of each other: pycocotools ranks them by the exact score, and so
    must the table (rounded, they would tie and be ranked in another order)."""
    rnd = random.Random(7)
    imgs, gts, dts = dataset(3, images=30, classes=1)
    for d in dts:
        d["score"] = 0.5 + rnd.random() * 1e-6
    e = evaluate(imgs, gts, dts, classes=1)
    table = table_of(e)
    for name, k in STATS.items():
        assert table.metric(name) == pytest.approx(e.stats[k], abs=1e-12), name
