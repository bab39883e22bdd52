#!/usr/bin/env bash
# Render a report.html (a run's, or a leaderboard's) to a PNG with headless Chromium.
#   bash scripts/render-report.sh work/runs/night-2/report.html report.png [width]
# Installs the Debian package chromium when it is missing (needs root, as in the project's image).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/render-report.sh REPORT.html OUT.png [WIDTH, default 1100]" >&2
  exit 2
fi
report=$1; out=$2; width=${3:-1100}
if [ ! -f "$report" ]; then
  echo "error: $report does not exist" >&2
  exit 2
fi
if [ -e "$out" ]; then
  echo "error: $out exists; pass another name or remove it" >&2
  exit 2
fi
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: no Chromium here; install it (sudo apt-get install chromium), then run this again" >&2
    exit 1
  fi
  apt-get install -y --no-install-recommends chromium >/dev/null
  browser=$(command -v chromium)
fi
# the page's height: render tall once, then crop to what the page holds
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$width,12000" \
  --screenshot="$scratch/page.png" "file://$(realpath "$report")" >/dev/null 2>&1
.venv/bin/python - "$scratch/page.png" "$out" <<'PY'
import sys
from PIL import Image, ImageChops
page = Image.open(sys.argv[1]).convert("RGB")
background = Image.new("RGB", page.size, page.getpixel((page.width - 1, page.height - 1)))
box = ImageChops.difference(page, background).getbbox()
bottom = min(page.height, (box[3] if box else page.height) + 24)
page.crop((0, 0, page.width, bottom)).save(sys.argv[2] + ".tmp.png")
PY
mv "$out.tmp.png" "$out"
echo "rendered $report to $out"
