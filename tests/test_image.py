"""The image's recipe, proved without a Docker engine: resolve the Dockerfile's install with pip and
check that what it would install agrees with itself and with the trainer's pins."""
import json
import pathlib
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from trainer import requirements

ROOT = pathlib.Path(__file__).resolve().parents[1]
OTHER_TENSORFLOWS = ("tensorflow-cpu", "tensorflow-intel", "tensorflow-tpu", "tf-nightly", "tensorflow-gpu")


def dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    python = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.M)
    extras = re.search(r'^ARG EXTRAS="([^"]*)"', text, re.M)
    assert python and extras and re.search(r'^RUN pip install "\.\$\{EXTRAS\}"', text, re.M), \
        "the Dockerfile no longer has the shape this test reads"
    return (int(python.group(1)), int(python.group(2))), extras.group(1)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    python, extras = dockerfile()
    if sys.version_info[:2] != python:
        pytest.skip("the image's Python is %d.%d; this test resolves with the running Python" % python)
    report = tmp_path_factory.mktemp("image") / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--disable-pip-version-check", "--report", str(report), str(ROOT) + extras],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    items = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in items}


def minor(version):
    return tuple(int(p) for p in version.split(".")[:2])


def test_one_tensorflow_at_the_trainers_pin(resolved):
    tf = resolved["tensorflow"]["version"]
    assert tf in SpecifierSet(requirements.TENSORFLOW)
    assert not [name for name in OTHER_TENSORFLOWS if name in resolved]
    for pin in requirements.REQUIRES:
        requirement = Requirement(pin)
        assert resolved[canonicalize_name(requirement.name)]["version"] in requirement.specifier, pin


def test_model_garden_and_tensorflows_companions_share_its_minor(resolved):
    tf = minor(resolved["tensorflow"]["version"])
    for name in ("tf-models-official", "tf-keras", "tensorflow-text", "tensorboard"):
        assert minor(resolved[name]["version"]) == tf, (name, resolved[name]["version"])


def test_the_cuda_wheels_are_the_ones_tensorflow_names_at_our_pins(resolved):
    """TensorFlow's ``and-cuda`` extra, read from the resolved wheel's own metadata."""
    cuda = [Requirement(r) for r in resolved["tensorflow"]["requires_dist"]
            if "and-cuda" in r and Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "and-cuda"})]
    assert len(cuda) >= 10 and any(r.name == "nvidia-cudnn-cu12" for r in cuda)
    pins = {canonicalize_name(Requirement(p).name): Requirement(p).specifier for p in requirements.CUDA_WHEELS}
    for requirement in cuda:
        name = canonicalize_name(requirement.name)
        version = resolved[name]["version"]
        assert version in requirement.specifier, (name, version, str(requirement.specifier))
        assert version in pins[name], (name, version, str(pins[name]))
    assert minor(resolved["nvidia-cuda-runtime-cu12"]["version"]) == (12, 5)
    assert resolved["nvidia-cudnn-cu12"]["version"].startswith("9.3.")


def test_the_pipeline_sdk_is_in_the_image(resolved):
    """The pipeline's components run in this image with nothing installed at run time."""
    assert "kfp" in resolved and "apache-beam" in resolved and "croniter" in resolved
