#!/bin/sh
# Makes the README's pictures of "Directing the dream" with the release CLI:
#   cargo build --release && scripts/control_pictures.sh
# Needs Python with Pillow (to draw the masks and lay out the strips) and FFmpeg.
set -eu
cd "$(dirname "$0")/.."
dd=target/release/deepdream
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The photo at 240x160 for the small pictures; a mask of an ellipse around the cat's head;
# the two halves for the regions.
python3 - "$work" <<'EOF'
import sys
from PIL import Image, ImageDraw, ImageFilter
work = sys.argv[1]
photo = Image.open("assets/chelsea.png").convert("RGB")
photo.save(f"{work}/photo.png")
w, h = photo.size
mask = Image.new("L", (w, h), 0)
ImageDraw.Draw(mask).ellipse((w * 0.18, h * 0.02, w * 0.62, h * 0.62), fill=255)
mask = mask.filter(ImageFilter.GaussianBlur(6))
mask.save(f"{work}/mask.png")
mask.resize((w // 2, h // 2)).save("assets/control-mask.png")
for name, left in (("left", True), ("right", False)):
    half = Image.new("L", (w, h), 0)
    ImageDraw.Draw(half).rectangle((0, 0, w // 2, h) if left else (w // 2, 0, w, h), fill=255)
    half.save(f"{work}/{name}.png")
Image.open("assets/chelsea.png").resize((240, 160)).save(f"{work}/small.png")
EOF

$dd dream "$work/photo.png" -o "$work/masked.png" --mask "$work/mask.png" --seed 1
$dd dream "$work/photo.png" -o "$work/regions.png" --seed 1 \
  --region "$work/left.png:layers=block4_conv3,channels=12" \
  --region "$work/right.png:layers=block4_conv3,channels=57"

cat > "$work/sweep.toml" <<'EOF'
transition = "fade"
[[keyframes]]
frame = 0
layers = "block3_conv1"
step = 1.0
[[keyframes]]
frame = 12
layers = "block4_conv3"
step = 1.5
[[keyframes]]
frame = 24
layers = "block5_conv3"
step = 2.0
EOF
$dd zoom "$work/small.png" -o "$work/sweep.gif" --frames 36 --fps 12 --seed 1 \
  --keyframes "$work/sweep.toml"

python3 - "$work" <<'EOF'
import sys
from PIL import Image
work = sys.argv[1]
Image.open(f"{work}/masked.png").convert("RGB").save("assets/control-masked.jpg", quality=88)
Image.open(f"{work}/regions.png").convert("RGB").save("assets/control-regions.jpg", quality=88)
EOF
cp "$work/sweep.gif" assets/control-sweep.gif

# A guide video: a second each of three paintings, guiding three seconds of carphone.
for p in starry_night the_scream woman-with-hat-matisse; do
  ffmpeg -v error -y -loop 1 -i "assets/paintings/$p.jpg" -t 1 -r 25 \
    -vf "scale=176:144:force_original_aspect_ratio=increase,crop=176:144,format=yuv420p" "$work/$p.mp4"
done
printf "file '%s'\n" "$work/starry_night.mp4" "$work/the_scream.mp4" "$work/woman-with-hat-matisse.mp4" > "$work/list.txt"
ffmpeg -v error -y -f concat -safe 0 -i "$work/list.txt" -c copy "$work/guides.mp4"
$dd video crates/deepdream/tests/fixtures/carphone.mp4 -o "$work/guided.mp4" --duration 3 \
  --guide-video "$work/guides.mp4" --seed 1 --frames-dir "$work/guided"

# Sound: a zoom whose step follows a tone pulsing at 2 Hz; the chart shows each frame's
# loudness and how much the dream changed it.
ffmpeg -v error -y -f lavfi -i "sine=frequency=440:duration=3,volume='if(lt(mod(t,0.5),0.25),1,0.02)':eval=frame" "$work/pulses.wav"
$dd zoom "$work/small.png" -o "$work/react.mp4" --fps 8 --audio "$work/pulses.wav" \
  --react step=0.3..3 --zoom 1.0 --no-colour-match --seed 1 --frames-dir "$work/react"

python3 - "$work" <<'PY'
import glob, subprocess, sys
import numpy as np
from PIL import Image, ImageDraw
work = sys.argv[1]
# Guide strip: guide frame over dreamed frame, one per second.
guided = sorted(glob.glob(f"{work}/guided/*.png"))
paintings = ["starry_night", "the_scream", "woman-with-hat-matisse"]
strip = Image.new("RGB", (3 * 176, 2 * 144))
for k, name in enumerate(paintings):
    guide = Image.open(f"assets/paintings/{name}.jpg").convert("RGB")
    s = max(176 / guide.width, 144 / guide.height)
    guide = guide.resize((round(guide.width * s), round(guide.height * s)))
    guide = guide.crop(((guide.width - 176) // 2, (guide.height - 144) // 2, (guide.width + 176) // 2, (guide.height + 144) // 2))
    strip.paste(guide, (176 * k, 0))
    strip.paste(Image.open(guided[(2 * k + 1) * len(guided) // 6]).convert("RGB"), (176 * k, 144))
strip.save("assets/control-guide-video.jpg", quality=88)
# Sound chart: loudness (grey bars) and the dream's change (orange line), frame by frame.
frames = sorted(glob.glob(f"{work}/react/*.png"))
change = [0.0] + [float(np.abs(np.asarray(Image.open(b), float) - np.asarray(Image.open(a), float)).mean())
                  for a, b in zip(frames, frames[1:])]
t = (np.arange(len(frames)) + 0.5) / 8
loud = np.where((t % 0.5) < 0.25, 1.0, 0.02)
w, h = 480, 120
chart = Image.new("RGB", (w, h), (24, 23, 30))
d = ImageDraw.Draw(chart)
bar = w / len(frames)
top = max(change)
for k in range(len(frames)):
    d.rectangle((k * bar + 1, h - 10 - loud[k] * 90, (k + 1) * bar - 1, h - 10), fill=(90, 90, 110))
points = [((k + 0.5) * bar, h - 10 - change[k] / top * 90) for k in range(1, len(frames))]
d.line(points, fill=(255, 170, 60), width=3)
chart.save("assets/control-react.png")
PY
echo "wrote assets/control-*"
