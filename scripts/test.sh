#!/usr/bin/env bash
# Install the package with its test dependencies into .venv and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
echo "Installing the package and test dependencies (TensorFlow, TF Model Garden) into .venv ..."
# an older .venv held tensorflow-cpu, which the trainer's tensorflow would clash with
if .venv/bin/python -m pip show -q tensorflow-cpu >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -y -q tensorflow-cpu
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/python -m pytest -q tests "$@"
