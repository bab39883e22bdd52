"""Packaging; also what Dataflow workers install (``--setup_file ./setup.py``)."""
import setuptools

setuptools.setup(
    name="synthdet-tfproc",
    version="0.1.0",
    description="Unity Simulation / Perception datasets to TFRecords with Apache Beam, "
                "and the AI Platform training launcher",
    packages=setuptools.find_packages(include=["tfproc", "tfproc.*", "launcher", "launcher.*"]),
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
        # Reading records back (tests, inspect) uses TensorFlow itself.
        "tf": ["tensorflow-cpu>=2.13"],
        "test": ["tensorflow-cpu>=2.13", "pytest>=7", "gcp-storage-emulator>=2024.8"],
    },
    entry_points={
        "console_scripts": [
            "tfproc-convert=tfproc.cli:main",
            "tfproc-real=tfproc.realdata:main",
            "tfproc-inspect=tfproc.inspect:main",
            "synthdet-launcher=launcher.cli:main",
        ],
    },
)
