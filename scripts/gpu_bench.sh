#!/usr/bin/env bash
# GPU figures and checks: deepdream's gradient step for each network on the cuda device (and
# wgpu in a build with it), compared with the CPU's gradient on the same input and with
# PyTorch CUDA's step on the same card in the same run; the CUDA test suite (gradients and a
# dream against the CPU's); a default VGG16 dream of a 1024x768 photo, whole process, cold.
#
# On a machine with an NVIDIA GPU and a Rust toolchain:
#
#     scripts/gpu_bench.sh 2>&1 | tee gpu-bench.txt
#
# For a GPU machine without a toolchain or network access (the device runs here), prepare
# everything on the development machine, at most 64 MiB, into target/gpu-kit:
#
#     scripts/gpu_bench.sh prepare
#
# then, on the GPU machine, in the repository root with target/gpu-kit carried along:
#
#     KIT=target/gpu-kit scripts/gpu_bench.sh
#
# The kit holds the benchmark, the CUDA tests and the CLI built for x86-64 (compressed), and
# stand-in weights (scripts/random_weights.py skeletons: the same shapes and value
# distributions); results go to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c 'import torch, torchvision, timm, onnx' 2>/dev/null ||
  python3 -m pip install -q torch torchvision timm onnx
export BENCH_TORCH_DEVICE=cuda
repeats=(--warmup 5 --repeats 10)

if [[ "${1:-}" == prepare ]]; then
  kit=target/gpu-kit
  rm -rf "$kit" && mkdir -p "$kit"
  cargo build --release -p deepdream-cli
  bench=$(cargo bench -p deepdream --features cuda --bench dream --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "dream"][0])')
  tests=$(cargo test --release -p deepdream --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "cuda"][0])')
  cp "$bench" "$kit/dream-bench"
  cp "$tests" "$kit/cuda-tests"
  cp target/release/deepdream "$kit/deepdream"
  strip "$kit"/* 2>/dev/null || true
  gzip -9 "$kit/dream-bench" "$kit/cuda-tests" "$kit/deepdream"
  python3 scripts/random_weights.py skeleton "${DEEPDREAM_HOME:-$HOME/.cache/deepdream}" "$kit/skeleton"
  du -sh "$kit"
  exit
fi

if [[ -n "${KIT:-}" ]]; then
  out=${OUT:-/tmp/gpu-bench}
  mkdir -p "$out"
  # The binaries find the test photos and scripts where they were built.
  [[ -e /work/main ]] || { mkdir -p /work && ln -s "$PWD" /work/main; }
  python3 scripts/random_weights.py fill "$KIT/skeleton" /tmp/deepdream-weights
  export DEEPDREAM_TEST_WEIGHTS=/tmp/deepdream-weights
  bin=/tmp/deepdream-kit
  mkdir -p "$bin"
  for program in dream-bench cuda-tests deepdream; do
    gunzip -c "$KIT/$program.gz" >"$bin/$program" && chmod +x "$bin/$program"
  done
  {
    echo "== CUDA tests"
    DEEPDREAM_REQUIRE_GPU=1 "$bin/cuda-tests" --nocapture --test-threads=1
    for precision in tf32 fp32; do
      echo "== deepdream --device cuda --precision $precision"
      "$bin/dream-bench" --device cuda --precision "$precision" "${repeats[@]}" \
        --weights /tmp/deepdream-weights
    done
    echo "== a default VGG16 dream of a 1024x768 photo, whole process, cold and warm"
    python3 -c 'from PIL import Image; Image.open("crates/deepdream/tests/fixtures/chelsea.png").convert("RGB").resize((1024, 768)).save("/tmp/photo.png")'
    for run in cold warm; do
      TIMEFORMAT="$run: %R s"
      time "$bin/deepdream" --device cuda dream /tmp/photo.png \
        --model vgg16 --weights /tmp/deepdream-weights/vgg16.onnx -o "/tmp/dream-$run.png"
    done
  } 2>&1 | tee "$out/gpu-bench.txt"
  exit
fi
DEEPDREAM_REQUIRE_GPU=1 cargo test --release -p deepdream --test cuda -- --nocapture --test-threads=1
cargo bench -p deepdream --bench dream -- --device cuda "${repeats[@]}"
cargo bench -p deepdream --bench dream --features wgpu -- --device wgpu "${repeats[@]}"
