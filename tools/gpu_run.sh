#!/usr/bin/env bash
# The GPU check in one prepared script: the test suite and the benchmarks on a CUDA machine with no
# network (a remote GPU runner), from a clone that holds .gpu/ (made by tools/gpu_bundle.sh).
#
#   bash tools/gpu_run.sh tests [pytest args]   the suite (all but the browser tier) inside ComfyUI
#   bash tools/gpu_run.sh bench                 SD1.5 512² fp16, the same with --compile cudagraphs,
#                                                 SDXL 1024² fp16, SDXL on a card made 12 GB (--vram 12)
#   bash tools/gpu_run.sh all                   both
#
# It unpacks .gpu/ComfyUI-*.tar.gz to /tmp, installs the carried wheels that python3 cannot import yet,
# copies this pack into the host's custom_nodes/ as a user's install has it and runs from there. The
# random checkpoints are written on first use (~/.cache/comfyui-regiondrag/). Reports go to $OUT (the
# device tool's folder that comes back), else to .gpu/out/: gpu.txt (card, torch), tests.log,
# bench_*.txt, bench.json. PYTHON picks the interpreter (default python3). GPU_RUN_SMOKE=1 makes the
# benchmarks smoke runs (--quick --size 64, SD1.5 and SDXL only), to try this script on a CPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=$(pwd)
BUNDLE=${REGIONDRAG_GPU_BUNDLE:-$PACK/.gpu}
OUT=${OUT:-$BUNDLE/out}
PY=${PYTHON:-python3}
HOST_DIR=${REGIONDRAG_GPU_HOST:-/tmp/regiondrag-gpu-host}
what=${1:-all}
shift || true
case "$what" in tests|bench|all) ;; *) echo "usage: $0 tests|bench|all [pytest args]" >&2; exit 2 ;; esac
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# ------------------------------------------------------------------ the wheels python3 lacks
site=/tmp/regiondrag-gpu-site
for whl in "$BUNDLE"/wheels/*.whl; do
  [ -e "$whl" ] || { echo "no wheels in $BUNDLE/wheels: run tools/gpu_bundle.sh first" >&2; exit 1; }
  module=$(basename "$whl" | cut -d- -f1)
  if ! "$PY" -c "import $module" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$whl" || exit 1
  fi
done
[ -d "$site" ] && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"

# ------------------------------------------------------------------ the host, with this pack inside
tarball=$(ls "$BUNDLE"/ComfyUI-*.tar.gz 2>/dev/null | head -n 1)
[ -n "$tarball" ] || { echo "no ComfyUI-*.tar.gz in $BUNDLE: run tools/gpu_bundle.sh first" >&2; exit 1; }
rm -rf "$HOST_DIR" && mkdir -p "$HOST_DIR" && tar -xzf "$tarball" -C "$HOST_DIR" || exit 1
COMFY="$HOST_DIR/ComfyUI"
INSTALLED="$COMFY/custom_nodes/ComfyUI-RegionDrag"
mkdir -p "$INSTALLED"
tar -C "$PACK" --exclude=./.gpu --exclude=./.git --exclude=./.ci-venv --exclude=__pycache__ -cf - . \
  | tar -C "$INSTALLED" -xf - || exit 1
cd "$INSTALLED"
unset COMFYUI_PATH   # found as a user's install is: the pack inside ComfyUI/custom_nodes/

{
  echo "date: $(date -u +%FT%TZ); host: $(basename "$tarball"); pack: $(git -C "$PACK" rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
} | tee "$OUT/gpu.txt"

status=0
# ------------------------------------------------------------------ the suite
if [ "$what" != bench ]; then
  echo "== tests (all but the browser tier) $(date -u +%T)"
  REGIONDRAG_REQUIRE_HOST=1 "$PY" -m pytest tests -m "not browser" -p no:cacheprovider "$@" 2>&1 \
    | tee "$OUT/tests.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

# ------------------------------------------------------------------ the benchmarks
if [ "$what" != tests ]; then
  jsons=()
  bench() {   # name, benchmark args...
    local name=$1; shift
    echo "== benchmark $name: $* $(date -u +%T)"
    "$PY" scripts/benchmark.py --json "/tmp/regiondrag-$name.json" "$@" 2>&1 | tee "$OUT/bench_$name.txt"
    if [ "${PIPESTATUS[0]}" = 0 ]; then jsons+=("$name=/tmp/regiondrag-$name.json"); else status=1; fi
  }
  if [ "${GPU_RUN_SMOKE:-0}" != 0 ]; then
    bench sd15 --quick --size 64
    bench sdxl --family sdxl --quick --size 64 --sampler-steps 2
  else
    bench sd15
    bench sd15_cudagraphs --compile cudagraphs
    bench sdxl --family sdxl --repeats 2
    bench sdxl_12gb --family sdxl --repeats 1 --vram 12
  fi
  "$PY" - "$OUT/bench.json" "${jsons[@]}" <<'EOF'
import json, sys
out = {}
for arg in sys.argv[2:]:
    name, path = arg.split("=", 1)
    with open(path) as f:
        out[name] = json.load(f)
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
EOF
fi
echo "== gpu_run $what: $([ $status = 0 ] && echo OK || echo FAILED) $(date -u +%T); reports in $OUT"
exit $status
