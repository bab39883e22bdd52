#!/usr/bin/env bash
# Install the package with its test dependencies into .venv and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
echo "Installing the package and test dependencies into .venv ..."
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/python -m pytest -q tests "$@"
