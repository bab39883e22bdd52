# A stable environment for the converter and the launcher (seed 003, phase 2).
#   docker build . -t tfdataflow
#   docker run --rm -it -v ~/.config/gcloud:/root/.config/gcloud tfdataflow
# With the trainer and the pipeline SDK, the image the pipeline's components run in:
#   docker build . --build-arg EXTRAS="[train,pipeline]" -t REGION-docker.pkg.dev/PROJECT/REPO/synthdet:TAG
# Credentials come from the mounted gcloud folder at run time; none are baked into the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

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
# EXTRAS: "" (converter and launcher), "[train]" (+ TensorFlow and TF Model Garden), "[train,pipeline]"
ARG EXTRAS=""
# hadolint ignore=DL3013
RUN pip install ".${EXTRAS}" && chmod +x dataflow-run.sh

# main.py, dataflow-run.sh, `python -m launcher` and `python -m trainer` run from /app; the console
# scripts are on PATH.
CMD ["bash"]
