#!/usr/bin/env bash
# Prepare the GPU check (tools/gpu_run.sh) for a machine that has a CUDA GPU but no network, such as
# a remote GPU runner: everything it needs goes into .gpu/ in this clone, which .git/info/exclude
# ignores and the device call carries (carry: [".gpu"]). Run here, where pip reaches a package index:
#
#   bash tools/gpu_bundle.sh [ComfyUI-<version>.tar.gz]   (default: ../shared/hosts/ComfyUI-0.8.0.tar.gz)
#
# .gpu/ then holds the ComfyUI source tarball and the Python 3.12 wheels that the device's image lacks
# for ComfyUI: av, torchsde, trampoline (in-process) and comfyui-frontend-package (main.py refuses to
# start without it). About 58 MiB with the repository: the device call's limit is 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
tarball=${1:-../shared/hosts/ComfyUI-0.8.0.tar.gz}
[ -f "$tarball" ] || { echo "no ComfyUI source tarball at $tarball" >&2; exit 1; }
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu
mkdir -p .gpu/wheels
cp "$tarball" .gpu/
# the frontend version the host pins in its requirements.txt
frontend=$(tar -xzOf "$tarball" ComfyUI/requirements.txt | grep -E '^comfyui-frontend-package' | tr -d ' \r')
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels av torchsde trampoline lpips==0.1.4 "$frontend"   # lpips: DragBench Score (pure Python)
du -sh .gpu
ls .gpu .gpu/wheels
