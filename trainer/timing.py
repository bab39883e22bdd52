"""The step time a training measured, kept in its model dir so that the launcher can price the next
run with the same settings (``launcher train --step-time-from MODEL_DIR``)."""
import json

FILE = "timing.json"
COMPARED = ("backbone", "model_size", "train_batch_size", "image_size", "machine_type", "accelerator", "machines")


def record(seconds_per_step, steps, settings):
    """The file's text: seconds a step (the model's building and the first loop left out), how many
    steps that was measured over, and the settings that decide it."""
    return json.dumps({"seconds_per_step": round(seconds_per_step, 4), "steps": steps, "settings": settings},
                      indent=2, sort_keys=True) + "\n"


def parse(text, where):
    try:
        measured = json.loads(text)
        if float(measured["seconds_per_step"]) > 0 and isinstance(measured["settings"], dict):
            return measured
    except (ValueError, KeyError, TypeError):
        pass
    raise ValueError("%s is not a step time written by the trainer" % where)


def differences(measured, asked):
    """``["machine_type: g2-standard-8 there, a2-highgpu-1g here", ...]``; a setting the request
    leaves to the trainer (e.g. the image size, from the dataset) is not compared."""
    return ["%s: %s there, %s here" % (key, _shown(measured.get(key)), _shown(asked[key]))
            for key in COMPARED if key in asked and measured.get(key) != asked[key]]


def _shown(value):
    return "none" if value in (None, "") else value
