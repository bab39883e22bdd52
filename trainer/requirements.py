"""What the trainer runs with: setup.py's ``train`` extra, and (with TensorFlow's CUDA libraries) the
``image`` extra that the Dockerfile installs.

numpy 2.4 breaks tf-models-official 2.20's COCO ground truth conversion (``int()`` on an array).
"""
VERSION = "0.1.0"
TENSORFLOW = "~=2.20.0"
REQUIRES = [
    "tf-models-official==2.20.0",
    "tensorflow" + TENSORFLOW,
    "numpy>=1.26,<2.4",
    "click>=8.0",
    "protobuf>=4.21",
]
# The image runs on GPU machines with TensorFlow's own CUDA and cuDNN wheels (nothing from the base
# image), pinned to the versions TensorFlow 2.20 was built and tested with (CUDA 12.5, cuDNN 9.3): its
# ``and-cuda`` extra only sets lower bounds, and a newer CUDA's ptxas can need a newer driver than
# the machine has.
CUDA_WHEELS = [
    "nvidia-cublas-cu12==12.5.3.2",
    "nvidia-cuda-cupti-cu12==12.5.82",
    "nvidia-cuda-nvcc-cu12==12.5.82",
    "nvidia-cuda-nvrtc-cu12==12.5.82",
    "nvidia-cuda-runtime-cu12==12.5.82",
    "nvidia-cudnn-cu12==9.3.0.75",
    "nvidia-cufft-cu12==11.2.3.61",
    "nvidia-curand-cu12==10.3.6.82",
    "nvidia-cusolver-cu12==11.6.3.83",
    "nvidia-cusparse-cu12==12.5.1.3",
    "nvidia-nccl-cu12==2.25.1",
    "nvidia-nvjitlink-cu12==12.5.82",
]
IMAGE = ["tensorflow[and-cuda]" + TENSORFLOW] + CUDA_WHEELS
