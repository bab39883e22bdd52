#!/usr/bin/env bash
# Convert a Unity Simulation run locally or on Google Cloud Dataflow (seed 003, phase 2).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $0 -e local|real -p PATH -g GCP_PROJECT [-r REGION] [-t EVAL_PCT] [-n WORKERS] [-m MAX_WORKERS] [-- MAIN_PY_OPTIONS...]

  -e  local: on this machine (Beam's in-memory runner)
      real:  Google Cloud Dataflow (PATH must be gs://; temp and staging go under PATH)
  -p  the urn:run_executions:<id> folder of the run (local path or gs://)
  -g  Google Cloud project (used by 'real')
  -r  Dataflow region (default: us-central1)
  -t  percent of frames for evaluation (default: 20)
  -n  initial Dataflow workers (default: 4); -m  most workers (default: 64)
Anything after -- goes to main.py, e.g. -- --overwrite --strict --worker_machine_type n1-standard-4
USAGE
}

env="" path="" project="" region="us-central1" eval_pct=20 workers=4 max_workers=64
while getopts "e:p:g:r:t:n:m:h" opt; do
  case "$opt" in
    e) env="$OPTARG" ;;
    p) path="${OPTARG%/}" ;;
    g) project="$OPTARG" ;;
    r) region="$OPTARG" ;;
    t) eval_pct="$OPTARG" ;;
    n) workers="$OPTARG" ;;
    m) max_workers="$OPTARG" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift

if [ -z "$env" ] || [ -z "$path" ]; then usage >&2; exit 2; fi
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
if [ -x "$here/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python="$here/.venv/bin/python"; fi

case "$env" in
  local)
    exec "$python" "$here/main.py" --source "$path" --eval-pct "$eval_pct" "$@"
    ;;
  real)
    if [ -z "$project" ]; then echo "error: -g GCP_PROJECT is required with -e real" >&2; exit 2; fi
    case "$path" in gs://*) ;; *) echo "error: -e real needs a gs:// path, got $path" >&2; exit 2 ;; esac
    cd "$here"
    exec "$python" main.py --setup_file=./setup.py \
      --source "$path" \
      --eval-pct "$eval_pct" \
      --runner DataflowRunner \
      --project "$project" \
      --region "$region" \
      --temp_location "$path/tmp" \
      --staging_location "$path/stg" \
      --num_workers "$workers" \
      --max_num_workers "$max_workers" \
      --autoscaling_algorithm THROUGHPUT_BASED \
      "$@"
    ;;
  *) echo "error: -e must be local or real, got $env" >&2; exit 2 ;;
esac
