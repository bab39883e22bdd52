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


def dockerfile_env():
    """The Dockerfile's ENV, in order, as Docker reads ``ENV K=V \\`` continuation lines."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in line[4:].split())
    return env


def test_the_local_backend_gives_replicas_the_images_own_environment():
    from trainer import container
    assert dockerfile_env() == container.IMAGE_ENV


STUB_DRIVER = "int cuInit(unsigned int flags) { return 0; }\n"


def test_the_image_environment_finds_a_driver_mounted_where_vertex_mounts_it(tmp_path):
    """A stub libcuda.so.1 in a folder standing for Vertex's /usr/local/nvidia is found by the loader
    under the Dockerfile's ENV, and not without it; the trainer's diagnosis says which."""
    from trainer import container
    mount = tmp_path / "usr-local-nvidia"
    (mount / "lib64").mkdir(parents=True)
    source = tmp_path / "stub.c"
    source.write_text(STUB_DRIVER)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(mount / "lib64" / "libcuda.so.1"), str(source)], check=True)
    probe = ("import ctypes, sys\n"
             "try:\n    ctypes.CDLL('libcuda.so.1')\nexcept OSError as e:\n    sys.exit('not found: %s' % e)\n"
             "from trainer import container\nprint(container.driver_problem() or 'driver ok')\n")
    bare = {k: v for k, v in __import__("os").environ.items() if k != "LD_LIBRARY_PATH"}
    image = container.image_environment(bare, dockerfile_env(), mount=str(mount))
    assert image["LD_LIBRARY_PATH"].startswith(str(mount / "lib64"))
    assert image["PATH"].startswith(str(mount / "bin") + ":") and image["PATH"].endswith(bare["PATH"])
    found = subprocess.run([sys.executable, "-c", probe], env=image, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert "libcuda.so.1" not in found.stdout      # loadable: what is left is whether TensorFlow has CUDA
    missing = subprocess.run([sys.executable, "-c", probe], env=bare, capture_output=True, text=True)
    assert missing.returncode != 0 and "not found" in missing.stderr
    diagnosis = subprocess.run([sys.executable, "-c", "from trainer import container; print(container.driver_problem())"],
                               env=bare, capture_output=True, text=True)
    assert "libcuda.so.1 (the NVIDIA driver) cannot be loaded" in diagnosis.stdout
    assert "/usr/local/nvidia/lib64" in diagnosis.stdout
