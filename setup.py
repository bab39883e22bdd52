"""Packaging; also what Dataflow workers install (``--setup_file ./setup.py``)."""
import os

import setuptools

_requirements = {}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "trainer", "requirements.py")) as _f:
    exec(_f.read(), _requirements)
TRAIN = _requirements["REQUIRES"]
PIPELINE = ["kfp>=2.7,<3", "croniter>=2.0"]

setuptools.setup(
    name="synthdet-tfproc",
    version="0.1.0",
    description="Unity Simulation / Perception datasets to TFRecords with Apache Beam, the RetinaNet "
                "trainer, and the launcher for Vertex AI (and AI Platform) and Kubeflow pipelines",
    packages=setuptools.find_packages(include=["tfproc", "tfproc.*", "launcher", "launcher.*", "trainer", "trainer.*"]),
    python_requires=">=3.9",
    # What the workers need to convert: no TensorFlow (records are encoded by tfproc.records).
    install_requires=[
        "apache-beam[gcp]>=2.50",
        "pillow>=9.0",
        "google-crc32c>=1.5",
        "google-cloud-storage>=2.10",
        "google-api-python-client>=2.80",
        "google-auth>=2.20",
        "requests>=2.28",
        "click>=8.0",
        "pyyaml>=5.4",
    ],
    extras_require={
        # Reading records back with TensorFlow itself (the conversion does not need it).
        "tf": ["tensorflow-cpu>=2.13"],
        # The trainer: TF Model Garden's RetinaNet (trainer/requirements.py).
        "train": TRAIN,
        # The end-to-end pipeline (Kubeflow Pipelines v2 SDK, also its local runner).
        "pipeline": PIPELINE,
        # The project's image (Dockerfile): every cloud step, training on GPUs included.
        "image": TRAIN + _requirements["IMAGE"] + PIPELINE,
        # The tests read records back with TensorFlow, train the detector for a few steps and run
        # the pipeline locally.
        "test": TRAIN + PIPELINE + ["pytest>=7", "gcp-storage-emulator>=2024.8"],
    },
    entry_points={
        "console_scripts": [
            "tfproc-convert=tfproc.cli:main",
            "tfproc-real=tfproc.realdata:main",
            "tfproc-inspect=tfproc.inspect:main",
            "synthdet-launcher=launcher.cli:main",
            "synthdet-trainer=trainer.cli:main",
        ],
    },
)
