#!/usr/bin/env bash
# Install the package with its test dependencies into .venv and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
.venv/bin/python -m pytest -q --durations=10 tests "$@"
