"""Does the detector learn, and how fast: a learning curve on an easy synthetic dataset.

    .venv/bin/python benchmarks/bench_learning.py [--frames 600] [--steps 400] [--evals 4] [--workdir DIR]

Makes ``--frames`` 256x256 photos of one to three shapes (circles, squares, triangles, each its own
colour) on a noisy background, with boxes exactly where the shapes are drawn, as real photos with
an ``annotations.json``; converts them with ``real_data_loader.py`` (20% eval); trains the small
configuration (MobileNetV2, FPN, 256x256, batch 8) for ``--steps`` steps from scratch, evaluating
``--evals`` times; then scores the final model once more. Prints the learning curve (AP, AP50,
ARmax100 against step and wall time) and images/s for training and for evaluation. A benchmark:
nothing is asserted.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHAPES = ["circle", "square", "triangle"]
COLOURS = [(230, 60, 60), (60, 120, 230), (250, 210, 40)]
SIZE = 256
SMALL = ("{task: {model: {head: {num_filters: 64, num_convs: 2}, decoder: {fpn: {num_filters: 64}},"
         " backbone: {mobilenet: {filter_size_scale: 0.5}}}}}")


def make_photos(folder, frames, seed=0):
    from PIL import Image, ImageDraw
    rng = random.Random(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    items = []
    for index in range(frames):
        image = Image.new("RGB", (SIZE, SIZE), (rng.randint(90, 140),) * 3)
        pixels = image.load()
        for _ in range(400):
            pixels[rng.randrange(SIZE), rng.randrange(SIZE)] = (rng.randint(0, 255),) * 3
        draw = ImageDraw.Draw(image)
        annotations = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.randrange(3)
            side = rng.randint(30, 90)
            x, y = rng.randint(0, SIZE - side), rng.randint(0, SIZE - side)
            if kind == 0:
                draw.ellipse((x, y, x + side - 1, y + side - 1), fill=COLOURS[0])
            elif kind == 1:
                draw.rectangle((x, y, x + side - 1, y + side - 1), fill=COLOURS[1])
            else:
                draw.polygon([(x + side / 2, y), (x, y + side - 1), (x + side - 1, y + side - 1)], fill=COLOURS[2])
            annotations.append({"label_id": kind + 1, "bbox": [x, y, side, side]})
        name = "shapes_%05d.png" % index
        image.save(os.path.join(folder, "images", name))
        items.append({"file_name": name, "annotations": annotations})
    with open(os.path.join(folder, "annotations.json"), "w") as f:
        json.dump(items, f)
    label_map = os.path.join(folder, "label_map.pbtxt")
    with open(label_map, "w") as f:
        f.write("".join("item {\n  id: %d\n  name: '%s'\n}\n" % (i + 1, n) for i, n in enumerate(SHAPES)))
    return label_map


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--evals", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workdir", help="kept between runs (default: a temporary folder)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-learning-")
    photos, out, model = (os.path.join(workdir, name) for name in ("photos", "out", "model"))
    if not os.path.exists(os.path.join(out, "summary.json")):
        began = time.time()
        label_map = make_photos(photos, args.frames)
        subprocess.run([sys.executable, os.path.join(ROOT, "real_data_loader.py"), "--source", photos,
                        "--label-map", label_map, "--eval-pct", "20", "--output", out], check=True,
                       stdout=subprocess.DEVNULL)
        print("dataset: %d photos of shapes, converted in %.0f s" % (args.frames, time.time() - began))
    shutil.rmtree(model, ignore_errors=True)

    from trainer import commands, engine
    summary = json.load(open(os.path.join(out, "summary.json")))
    eval_images = summary["splits"]["eval"]["images"]
    interval = max(1, args.steps // args.evals)
    began = time.time()
    commands.train(out, model, backbone="mobilenet", fpn_type="fpn", image_size="%d,%d" % (SIZE, SIZE),
                   train_batch_size=args.batch, max_steps=args.steps, train_steps_per_eval=interval,
                   num_eval_images=eval_images, warmup_steps=min(100, args.steps // 4),
                   initial_learning_rate=0.02, warmup_learning_rate=0.002, params_overrides=[SMALL])
    trained = time.time() - began
    began = time.time()
    final = commands.evaluate(out, model)
    evaluated = time.time() - began

    history = engine.read_history(model)
    print("\nlearning curve (%d train, %d eval images; MobileNetV2 x0.5, FPN, %dx%d, batch %d, from scratch):"
          % (summary["splits"]["train"]["images"], eval_images, SIZE, SIZE, args.batch))
    print("%6s %8s %8s %8s %10s %10s" % ("step", "AP", "AP50", "ARmax100", "loss", "wall s"))
    for entry in history:
        print("%6d %8.4f %8.4f %8.4f %10.4f %10.0f" % (entry["step"], entry["AP"], entry["AP50"], entry["ARmax100"],
                                                       entry.get("train_loss", float("nan")), entry["elapsed_seconds"]))
    eval_seconds_in_training = len(history) * evaluated      # each evaluation scores the same images
    print("\ntraining: %.1f images/s (%d steps x %d in %.0f s, less about %.0f s of evaluations)"
          % (args.steps * args.batch / max(1e-9, trained - eval_seconds_in_training), args.steps, args.batch, trained,
             eval_seconds_in_training))
    print("evaluation: %.1f images/s (%d images in %.1f s, model building included)"
          % (eval_images / evaluated, eval_images, evaluated))
    print("final: AP %.4f, AP50 %.4f, per class %s" % (final["AP"], final["AP50"], json.dumps(final.get("per_class_AP"))))
    print("learning curve picture: %s" % os.path.join(model, engine.CURVE))


if __name__ == "__main__":
    main()
