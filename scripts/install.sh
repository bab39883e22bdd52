#!/usr/bin/env bash
# Install the package into .venv with an extra: `bash scripts/install.sh [train|pipeline|test]`.
# Skips pip when .venv already holds this extra (or the test extra, which holds every other) for the
# current setup.py and trainer requirements.
set -euo pipefail
cd -P "$(dirname "$0")/.."
extra="${1:-}"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
hash=$(cat setup.py trainer/requirements.py | sha256sum | cut -c1-16)
stamp() { echo ".venv/.synthdet-installed-${1:-base}-$hash"; }
# what each extra promises, checked behind its stamp (a .venv can lose packages)
modules="apache_beam click PIL googleapiclient google.cloud.storage requests yaml"
case "$extra" in
  train) modules="$modules tensorflow official" ;;
  pipeline) modules="$modules kfp" ;;
  test) modules="$modules tensorflow official kfp pytest gcp_storage_emulator" ;;
esac
present() {
  .venv/bin/python -c 'import importlib.util, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
sys.exit(0 if all(found(m) for m in sys.argv[1:]) else 1)' $modules 2>/dev/null
}
if { [ -e "$(stamp "$extra")" ] || [ -e "$(stamp test)" ]; } && present; then
  exit 0
fi
if [ -e "$(stamp "$extra")" ] || [ -e "$(stamp test)" ]; then
  echo ".venv has lost some of its packages; installing them again ..."
  rm -f "$(stamp "$extra")" "$(stamp test)"
fi
case "$extra" in
  "") echo "Installing the converter and the launcher into .venv (the first time takes a few minutes) ..." ;;
  train) echo "Installing the trainer (TensorFlow, TF Model Garden) into .venv (the first time takes a few minutes) ..." ;;
  *) echo "Installing the package with its \"$extra\" extra into .venv (the first time takes a few minutes) ..." ;;
esac
# an older .venv held tensorflow-cpu, which the trainer's tensorflow would clash with
if [ -n "$extra" ] && .venv/bin/python -m pip show -q tensorflow-cpu >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -y -q tensorflow-cpu
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra:+[$extra]}"
touch "$(stamp "$extra")"
