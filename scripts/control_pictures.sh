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
echo "wrote assets/control-*.jpg, assets/control-mask.png, assets/control-sweep.gif"
