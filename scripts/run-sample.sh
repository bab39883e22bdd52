#!/usr/bin/env bash
# Make a small synthetic Unity Simulation run under sample/ and convert it locally.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
echo "Installing the package into .venv (the first time takes a few minutes) ..."
.venv/bin/pip install -q --disable-pip-version-check -e .
rm -rf sample
.venv/bin/python -m tfproc.sample sample/urn:run_executions:sample
.venv/bin/python main.py --source sample/urn:run_executions:sample --eval-pct 20
echo
.venv/bin/python -m tfproc inspect sample/urn:run_executions:sample/output --preview 8 --preview-dir sample/preview
echo
echo "Output: $(pwd)/sample/urn:run_executions:sample/output"
echo "Preview of 8 records with their boxes: $(pwd)/sample/preview/contact_sheet.png"
