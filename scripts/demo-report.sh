#!/usr/bin/env bash
# The README's report picture, made from scratch on this machine (about 15 minutes on 2 cores):
# two local pipeline runs on synthetic samples, the second compared with the first on "real"
# photos (here: another sample, of the same classes), then report.html
# rendered to a PNG with headless Chromium.
#   bash scripts/demo-report.sh [STEPS, default 300]
set -euo pipefail
steps=${1:-300}
if [ -e demo ]; then
  echo "error: demo/ exists; move it away, then run this again" >&2
  exit 1
fi
bash scripts/install.sh pipeline >/dev/null
bash scripts/install.sh train >/dev/null
py=.venv/bin/python
$py -m tfproc.sample demo/run --app-params 4 --instances 2 --frames 20 --seed 11
$py -m tfproc.sample demo/photos --app-params 1 --instances 1 --frames 40 --seed 12
small=(--backbone mobilenet --fpn-type fpn --train-batch-size 8 --train-steps-per-eval 100
       --initial-learning-rate 0.02 --warmup-learning-rate 0.002
       --params-override "{task: {model: {head: {num_filters: 64, num_convs: 2}, decoder: {fpn: {num_filters: 64}}, backbone: {mobilenet: {filter_size_scale: 0.35}}}}}")
$py -m launcher pipeline run --local --source demo/run --work-dir demo/work --run-id demo-1 --promote auto \
    --max-steps "$steps" "${small[@]}"
$py main.py --source demo/photos --eval-pct 100 --output demo/real   # the same five classes, the same ids
$py -m launcher pipeline run --local --source demo/run --work-dir demo/work --run-id demo-2 --real-dataset demo/real \
    --init-from production --max-steps "$((steps + steps / 2))" "${small[@]}"
bash scripts/render-report.sh demo/work/runs/demo-2/report.html demo/report.png
