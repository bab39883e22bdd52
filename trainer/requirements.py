"""What the trainer runs with: setup.py's ``train`` extra and the package a Vertex AI job installs.

numpy 2.4 breaks tf-models-official 2.20's COCO ground truth conversion (``int()`` on an array).
"""
VERSION = "0.1.0"
REQUIRES = [
    "tf-models-official==2.20.0",
    "tensorflow~=2.20.0",
    "numpy>=1.26,<2.4",
    "click>=8.0",
    "protobuf>=4.21",
]
