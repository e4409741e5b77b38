#!/usr/bin/env bash
# GPU figures: deepdream's gradient step for each network on the GPU backends (wgpu, and
# cuda where it builds: its build downloads LLVM, so it needs general network access),
# PyTorch CUDA's step for the same networks on the same card as the baseline, and a default
# VGG16 dream of a 1024x768 photo. Run it on a machine with an NVIDIA GPU:
#
#     scripts/gpu_bench.sh 2>&1 | tee gpu-bench.txt
set -uo pipefail
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -m pip install -q torch torchvision timm onnx
export BENCH_TORCH_DEVICE=cuda
for backend in wgpu cuda; do
  echo "== deepdream --device $backend"
  if cargo build --release -p deepdream --bench dream --features "$backend"; then
    cargo bench -p deepdream --bench dream --features "$backend" -- --device "$backend"
  else
    echo "$backend: the build failed on this machine"
  fi
done
