# The project's one image: the converter, the launcher, the trainer with TensorFlow's CUDA and cuDNN
# wheels (trainer/requirements.py pins them to TensorFlow's own build), and the pipeline SDK. It runs
# every cloud step: Vertex AI training jobs (`launcher train --image`) and the pipeline's components.
#   gcloud builds submit --config cloudbuild.yaml --substitutions _IMAGE=REGION-docker.pkg.dev/P/REPO/synthdet:TAG
#   docker build . -t REGION-docker.pkg.dev/PROJECT/REPO/synthdet:TAG
# On a GPU machine Vertex AI mounts the NVIDIA driver (see ENV below); TensorFlow loads CUDA from the wheels.
# A smaller image for the converter and launcher alone (seed 003, phase 2): --build-arg EXTRAS=""
#   docker run --rm -it -v ~/.config/gcloud:/root/.config/gcloud IMAGE
# Credentials come from the machine (Vertex's service account) or the mounted gcloud folder; none
# are baked into the image. tests/test_image.py resolves this install and checks its versions.
FROM python:3.11-slim

# Vertex AI (GKE's device plugin) mounts the NVIDIA driver at /usr/local/nvidia and does not put it on
# the loader's path: TensorFlow opens libcuda.so.1 by name, so the image names the folder (as NVIDIA's
# and TensorFlow's GPU images do). trainer/container.py holds the same list for --backend local, and
# tests/test_image.py checks that the two agree and that the loader finds a driver mounted there.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/usr/local/nvidia/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Optional: the gcloud CLI (for gsutil and gcloud ai-platform), with --build-arg WITH_GCLOUD=1.
# Not version-pinned: Google's apt repository drops old gcloud releases, so a pin would break builds.
ARG WITH_GCLOUD=0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN if [ "$WITH_GCLOUD" = "1" ]; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates gnupg \
      && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
      && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" > /etc/apt/sources.list.d/google-cloud-sdk.list \
      && apt-get update && apt-get install -y --no-install-recommends google-cloud-cli \
      && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
COPY setup.py README.md main.py real_data_loader.py dataflow-run.sh ./
COPY tfproc ./tfproc
COPY launcher ./launcher
COPY trainer ./trainer
# EXTRAS: "[image]" (everything, the default), "" (converter and launcher only)
ARG EXTRAS="[image]"
# hadolint ignore=DL3013
RUN pip install ".${EXTRAS}" && chmod +x dataflow-run.sh

# main.py, dataflow-run.sh, `python -m launcher` and `python -m trainer` run from /app; the console
# scripts are on PATH.
CMD ["bash"]
