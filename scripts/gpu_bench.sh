#!/usr/bin/env bash
# GPU figures: deepdream's gradient step for each network on the wgpu backend (and cuda where
# it builds: its build downloads LLVM, so it needs general network access), compared with the
# CPU's gradient on the same input, PyTorch CUDA's step for the same networks on the same card
# as the baseline, and a default VGG16 dream of a 1024x768 photo. On a machine with an NVIDIA
# GPU and a Rust toolchain:
#
#     scripts/gpu_bench.sh 2>&1 | tee gpu-bench.txt
#
# On one without a toolchain or network access, build the benchmark where you can
# (`cargo bench -p deepdream --bench dream --features wgpu --no-run` prints its path), make
# stand-in weights (`scripts/random_weights.py skeleton ~/.cache/deepdream skeleton/`), take
# both along and run:
#
#     BENCH=path/to/dream-bench SKELETON=skeleton/ scripts/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c 'import torch, torchvision, timm, onnx' 2>/dev/null ||
  python3 -m pip install -q torch torchvision timm onnx
export BENCH_TORCH_DEVICE=cuda
repeats=(--warmup 5 --repeats 10)

if [[ -n "${BENCH:-}" ]]; then
  weights=()
  if [[ -n "${SKELETON:-}" ]]; then
    python3 scripts/random_weights.py fill "$SKELETON" /tmp/deepdream-weights
    weights=(--weights /tmp/deepdream-weights)
  fi
  "$BENCH" --device "${DEVICE:-wgpu}" "${repeats[@]}" "${weights[@]}"
  exit
fi
for backend in wgpu cuda; do
  echo "== deepdream --device $backend"
  if cargo build --release -p deepdream --bench dream --features "$backend"; then
    cargo bench -p deepdream --bench dream --features "$backend" -- --device "$backend" "${repeats[@]}"
  else
    echo "$backend: the build failed on this machine"
  fi
done
