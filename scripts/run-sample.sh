#!/usr/bin/env bash
# Make a small synthetic Unity Simulation run under sample/ and convert it locally.
set -euo pipefail
cd -P "$(dirname "$0")/.."
bash scripts/install.sh
MARK=sample/.made-by-run-sample
if [ -e sample ] && [ ! -e "$MARK" ]; then
  # sample/ was not made by this script: ask before deleting it
  if [ -t 0 ]; then
    read -r -p "sample/ exists and was not made by this script; delete it and make the sample again? [y/N] " answer
    case "$answer" in y|Y|yes) ;; *) echo "left sample/ as it is"; exit 1 ;; esac
  else
    echo "error: sample/ exists and was not made by this script; move it away, then run this again" >&2
    exit 1
  fi
fi
rm -rf sample
mkdir sample
touch "$MARK"         # first: a sample cut short by Ctrl-C is still this script's to remake
.venv/bin/python -m tfproc.sample sample/urn:run_executions:sample
.venv/bin/python main.py --source sample/urn:run_executions:sample --eval-pct 20
echo
.venv/bin/python -m tfproc inspect sample/urn:run_executions:sample/output --preview 8 --preview-dir sample/preview
echo
echo "Output: sample/urn:run_executions:sample/output"
echo "Preview of 8 records with their boxes: sample/preview/contact_sheet.png"
