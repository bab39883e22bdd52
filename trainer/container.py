"""What the project's image sets in a container's environment (the Dockerfile's ENV, which
tests/test_image.py checks against this), for running a job's body outside the image."""
import os
import re

# Vertex AI (GKE's device plugin) mounts the NVIDIA driver at /usr/local/nvidia without putting it on
# the loader's path; TensorFlow opens libcuda.so.1 by name, so the image names the folder itself.
NVIDIA_MOUNT = "/usr/local/nvidia"
# Set by ``launcher train --backend local`` in each replica's environment: the launcher's pid, so
# that a replica ends when its launcher dies, even by SIGKILL (Vertex sets no such variable).
LAUNCHER_PID = "SYNTHDET_LAUNCHER_PID"
IMAGE_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "LD_LIBRARY_PATH": NVIDIA_MOUNT + "/lib64:" + NVIDIA_MOUNT + "/lib",
    "PATH": NVIDIA_MOUNT + "/bin:$PATH",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand(value, env):
    """``$NAME`` and ``${NAME}`` replaced from ``env``, as Docker's ENV does."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def image_environment(base, image_env=None, mount=NVIDIA_MOUNT):
    """``base`` with the image's variables applied in order (``mount``: where the driver folder is;
    a library path already in ``base`` is kept after the image's)."""
    env = dict(base)
    for key, value in (image_env or IMAGE_ENV).items():
        value = expand(value.replace(NVIDIA_MOUNT, mount), env)
        if key == "LD_LIBRARY_PATH" and base.get(key):
            value = value + ":" + base[key]
        env[key] = value
    return env


def driver_problem():
    """Why TensorFlow may see no GPU, in one clause: the driver library not loadable (and where the
    loader looked), or a TensorFlow without CUDA; None when both look right."""
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return ("libcuda.so.1 (the NVIDIA driver) cannot be loaded; LD_LIBRARY_PATH is %r and the platform mounts "
                "the driver at %s/lib64" % (os.environ.get("LD_LIBRARY_PATH", ""), NVIDIA_MOUNT))
    try:
        import tensorflow as tf
        if not tf.test.is_built_with_cuda():
            return "this TensorFlow is not a CUDA build (install the trainer's image extra, or use the project's image)"
    except ImportError:
        return None
    return None
