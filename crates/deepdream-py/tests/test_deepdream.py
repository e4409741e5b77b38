"""The installed `deepdream` package, end to end (CI installs the built wheel in a fresh
virtual environment and runs these): every input kind, the CLI's picture bit for bit,
errors as exceptions, Ctrl-C, the GIL released while dreaming, models kept across calls."""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

import deepdream

REPO = pathlib.Path(__file__).resolve().parents[3]
PHOTO = REPO / "crates/deepdream/tests/fixtures/chelsea.png"
SMALL = dict(octaves=2, iterations=2, seed=3)


@pytest.fixture(scope="module")
def photo():
    """A 96x64 crop of the test photo."""
    return Image.open(PHOTO).convert("RGB").crop((100, 40, 196, 104))


def test_the_package_is_the_installed_wheel():
    assert "site-packages" in deepdream.__file__, deepdream.__file__
    assert deepdream.__version__.count(".") == 2


def test_models_and_layers_are_listed():
    names = [m["name"] for m in deepdream.models()]
    assert {"vgg16", "inception3", "efficientnet-lite0"} <= set(names)
    layers = [layer["name"] for layer in deepdream.layers("vgg16")]
    assert "block4_conv3" in layers
    assert deepdream.load("vgg16").default_layers == ["block4_conv3"]


def test_a_dream_equals_the_cli_s_bit_for_bit(tmp_path, photo):
    cli = os.environ.get("DEEPDREAM_CLI")
    if cli is None:
        pytest.skip("DEEPDREAM_CLI (the deepdream binary) is not set")
    source = tmp_path / "photo.png"
    photo.save(source)
    output = tmp_path / "cli.png"
    subprocess.run(
        [cli, "dream", str(source), "-o", str(output), "--octaves", "2", "--iterations", "2",
         "--seed", "3", "--layers", "block3_conv3"],
        check=True,
    )
    ours = deepdream.dream(str(source), "vgg16", layers="block3_conv3", **SMALL)
    assert isinstance(ours, Image.Image)
    assert np.array_equal(np.asarray(ours), np.asarray(Image.open(output).convert("RGB")))


def test_every_input_kind_comes_back_as_it_went_in(photo):
    model = deepdream.load("vgg16")
    options = dict(layers="block2_conv2", **SMALL)
    from_pil = model.dream(photo, **options)
    assert isinstance(from_pil, Image.Image) and from_pil.size == photo.size
    pixels = np.asarray(photo)
    from_array = model.dream(pixels, **options)
    assert from_array.dtype == np.uint8 and from_array.shape == pixels.shape
    assert np.array_equal(from_array, np.asarray(from_pil))
    from_float = model.dream(pixels.astype(np.float32) / 255.0, **options)
    assert from_float.dtype == np.float32 and from_float.max() <= 1.0
    assert np.array_equal(np.rint(from_float * 255).astype(np.uint8), from_array)
    # Alpha is kept as it was; a grey array dreams in colour.
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 77, np.uint8)])
    from_rgba = model.dream(rgba, **options)
    assert from_rgba.shape[2] == 4 and (from_rgba[:, :, 3] == 77).all()
    assert np.array_equal(from_rgba[:, :, :3], from_array)
    assert model.dream(Image.fromarray(rgba, "RGBA"), **options).mode == "RGBA"
    assert model.dream(pixels[:, :, 0], **options).shape == pixels.shape


def test_the_dream_changes_the_picture_and_the_seed_decides_it(photo):
    model = deepdream.load("vgg16")
    a = np.asarray(model.dream(photo, **SMALL))
    b = np.asarray(model.dream(photo, **SMALL))
    c = np.asarray(model.dream(photo, octaves=2, iterations=2, seed=4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - np.asarray(photo).astype(int)).mean() > 1.0


@pytest.mark.parametrize(
    "call, exception, message",
    [
        (lambda p: deepdream.dream("/no/such/photo.png"), FileNotFoundError, "does not exist"),
        (lambda p: deepdream.dream(p, "vgg16", layers="nope", **SMALL), ValueError, "has no layer 'nope'"),
        (lambda p: deepdream.dream(p, "vgg17"), ValueError, "unknown model 'vgg17'"),
        (lambda p: deepdream.dream(p, "efficientnet-lite0", class_="no such thing", **SMALL), ValueError, "unknown ImageNet class"),
        (lambda p: deepdream.dream(p, "vgg16", step=float("nan")), ValueError, "finite"),
        (lambda p: deepdream.dream(p, "vgg16", iterations=-1), ValueError, "positive"),
        (lambda p: deepdream.dream(p, "vgg16", octaves=0), ValueError, "positive"),
        (lambda p: deepdream.dream(p, "vgg16", max_memory="lots"), ValueError, "'lots'"),
        (lambda p: deepdream.dream(np.zeros((0, 5, 3), np.uint8)), ValueError, "empty"),
        (lambda p: deepdream.dream(np.zeros((8, 8, 5), np.uint8)), ValueError, "x 3 or 4"),
        (lambda p: deepdream.dream(np.zeros((8, 8, 3), np.int64)), ValueError, "uint8 or float"),
        (lambda p: deepdream.dream([[1, 2, 3]]), ValueError, "a path, a PIL image or a numpy array"),
        (lambda p: deepdream.Model("vgg16", device="tpu"), ValueError, "unknown device 'tpu'"),
        (lambda p: deepdream.classify(p, "vgg16"), ValueError, "no ImageNet classifier"),
    ],
)
def test_bad_input_raises_the_fitting_exception(photo, call, exception, message):
    with pytest.raises(exception, match=message) as raised:
        call(photo)
    assert "Panic" not in type(raised.value).__name__


def test_a_file_that_is_not_an_image_is_an_image_error(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(deepdream.ImageError):
        deepdream.dream(text)


def test_errors_share_a_base_class():
    with pytest.raises(deepdream.Error):
        deepdream.Model("vgg17")


def test_progress_reports_every_step_with_previews(photo):
    seen = []
    deepdream.dream(photo, "vgg16", progress=seen.append, preview_every=2, **SMALL)
    assert [info["step"] for info in seen] == [1, 2, 3, 4]
    assert all(info["steps"] == 4 for info in seen)
    previews = [info for info in seen if "preview" in info]
    assert [info["step"] for info in previews] == [2, 4]
    assert previews[-1]["preview"].shape == (64, 96, 3)


def test_an_error_in_the_progress_callback_stops_the_dream(photo):
    def fail(info):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        deepdream.dream(photo, "vgg16", progress=fail, **SMALL)


def test_ctrl_c_stops_the_dream_within_a_step(photo):
    steps = []

    def interrupt(info):
        steps.append(info["step"])
        if info["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        deepdream.dream(photo, "vgg16", progress=interrupt, octaves=2, iterations=10, seed=1)
    assert steps[-1] <= 3, steps


def test_other_threads_run_while_a_model_dreams(photo):
    model = deepdream.load("vgg16")
    done = threading.Event()
    ticks = 0

    def dream():
        model.dream(photo, octaves=2, iterations=6, seed=1)
        done.set()

    worker = threading.Thread(target=dream)
    worker.start()
    started = time.monotonic()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    elapsed = time.monotonic() - started
    # Holding the GIL for the whole dream would leave this thread one or two ticks.
    assert ticks >= 10, (ticks, elapsed)


def test_a_model_is_loaded_once_and_reused():
    assert deepdream.load("vgg16") is deepdream.load("vgg16")
    model = deepdream.Model("efficientnet-lite0")
    assert model.classifier and not deepdream.load("vgg16").classifier


def test_classify_names_the_cat():
    names = [name for _, name, _ in deepdream.classify(str(PHOTO), top=3)]
    assert any("cat" in name for name in names), names


def test_the_wheel_installs_the_command(tmp_path, photo):
    command = pathlib.Path(sys.executable).parent / "deepdream"
    assert command.exists(), command
    listed = subprocess.run([str(command), "layers", "--model", "vgg16"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "block4_conv3" in listed.stdout
    source = tmp_path / "photo.png"
    photo.save(source)
    output = tmp_path / "dream.png"
    dreamed = subprocess.run(
        [sys.executable, "-m", "deepdream", "dream", str(source), "-o", str(output),
         "--octaves", "2", "--iterations", "2", "--seed", "3"],
        capture_output=True, text=True,
    )
    assert dreamed.returncode == 0, dreamed.stderr
    ours = deepdream.dream(photo, "vgg16", **SMALL)
    assert np.array_equal(np.asarray(ours), np.asarray(Image.open(output).convert("RGB")))
    bad = subprocess.run([str(command), "dream", "/no/such.png", "-o", str(tmp_path / "x.png")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "deepdream: error:" in bad.stderr and "Traceback" not in bad.stderr


def test_style_transfer_moves_towards_the_painting(photo):
    painting = Image.open(REPO / "crates/deepdream/tests/fixtures/starry_night.jpg").convert("RGB")
    steps = []
    styled = deepdream.style(photo, painting, size=64, iterations=4, scales=1, seed=1, progress=steps.append)
    assert isinstance(styled, Image.Image) and max(styled.size) == 64
    assert [s["step"] for s in steps][-1] == 4 and "loss" in steps[-1]
    blended = deepdream.style(np.asarray(photo), [(painting, 2.0), (np.asarray(photo), 1.0)],
                              size=48, iterations=2, scales=1, seed=1)
    assert isinstance(blended, np.ndarray) and blended.shape[2] == 3
    with pytest.raises(ValueError, match="init must be content or noise"):
        deepdream.style(photo, painting, init="zeros")


def test_visualisation_grows_a_picture_from_noise():
    model = deepdream.load("vgg16")
    a = model.visualize("block3_conv3", 5, size=64, steps=4, seed=2)
    b = model.visualize("block3_conv3", 5, size=64, steps=4, seed=2)
    assert isinstance(a, Image.Image) and a.size == (64, 64)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(model.visualize("block3_conv3", size=64, steps=2, seed=2, priors=False)).std() > 0
    with pytest.raises(ValueError, match="a layer"):
        model.visualize()
    with pytest.raises(ValueError, match="channel"):
        model.visualize("block3_conv3", 100000, size=64, steps=2)


def test_a_zoom_starts_with_the_dream_and_keeps_the_size(photo):
    seen = []
    frames = deepdream.zoom(photo, "vgg16", frames=3, octaves=2, iterations=2, seed=3,
                            octaves_per_frame=1, iterations_per_frame=1, progress=seen.append)
    assert len(frames) == 3 and all(f.size == photo.size for f in frames)
    first = deepdream.dream(photo, "vgg16", octaves=2, iterations=2, seed=3)
    assert np.array_equal(np.asarray(frames[0]), np.asarray(first))
    assert not np.array_equal(np.asarray(frames[1]), np.asarray(frames[2]))
    assert {info["frame"] for info in seen} == {0, 1, 2}
    with pytest.raises(TypeError, match="unknown dream option"):
        deepdream.zoom(photo, "vgg16", frames=2, octave=3)


def test_a_dream_film_from_frames(photo):
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"))
    batch = np.stack([pixels[40:104, 100 + 2 * k:196 + 2 * k] for k in range(4)])
    seen = []
    dreamed = deepdream.video(batch, "vgg16", octaves=2, iterations=2, seed=3,
                              octaves_per_frame=1, iterations_per_frame=1, progress=seen.append)
    assert isinstance(dreamed, np.ndarray) and dreamed.shape == batch.shape
    first = deepdream.dream(batch[0], "vgg16", octaves=2, iterations=2, seed=3)
    assert np.array_equal(dreamed[0], first)
    assert [info["fresh"] for info in seen if info["frame_done"]] == [True, False, False, False]
    as_list = deepdream.video([Image.fromarray(f) for f in batch[:2]], "vgg16", octaves=2, iterations=2, seed=3,
                              octaves_per_frame=1, iterations_per_frame=1)
    assert all(isinstance(f, Image.Image) for f in as_list)
    assert np.array_equal(np.asarray(as_list[1]), dreamed[1])
    # Along DIS's flow: the same first frame, a film as coherent.
    along_dis = deepdream.video(batch, "vgg16", octaves=2, iterations=2, seed=3, flow="dis",
                                octaves_per_frame=1, iterations_per_frame=1)
    assert np.array_equal(along_dis[0], first) and along_dis.shape == batch.shape
    with pytest.raises(ValueError, match="unknown optical flow method"):
        deepdream.video(batch, "vgg16", flow="lucas-kanade")
    with pytest.raises(ValueError, match="differ in size"):
        deepdream.video([batch[0], batch[0][:10]], "vgg16")
    with pytest.raises(ValueError, match="no frames"):
        deepdream.video([], "vgg16")


def test_animations_are_written_and_videos_read(tmp_path, photo):
    gif = tmp_path / "zoom.gif"
    frames = deepdream.zoom(photo, "vgg16", frames=3, octaves=2, iterations=1, seed=1,
                            octaves_per_frame=1, iterations_per_frame=1, output=gif, fps=10)
    with Image.open(gif) as written:
        assert written.n_frames == 3 and written.size == photo.size
    clip = REPO / "crates/deepdream/tests/fixtures/carphone.mp4"
    decoded, fps = deepdream.read_video(clip, duration=0.25)
    assert len(decoded) >= 2 and fps > 0 and isinstance(decoded[0], Image.Image)
    film = tmp_path / "film.mp4"
    small = [f.resize((88, 72)) for f in decoded[:3]]
    dreamed = deepdream.video(small, "vgg16", output=film, fps=fps, octaves=1, iterations=1,
                              octaves_per_frame=1, iterations_per_frame=1, seed=1)
    assert len(dreamed) == 3 and film.stat().st_size > 0
    again, _ = deepdream.read_video(film)
    assert len(again) == 3 and again[0].size == (88, 72)
    deepdream.save_animation(frames, tmp_path / "frames.webm", fps=5)
    with pytest.raises(deepdream.VideoError, match="cannot hold video"):
        deepdream.save_animation(frames, tmp_path / "frames.txt")
    with pytest.raises(FileNotFoundError):
        deepdream.read_video(tmp_path / "missing.mp4")


def test_the_readme_example_writes_the_cli_s_picture(tmp_path):
    cli = os.environ.get("DEEPDREAM_CLI")
    if cli is None:
        pytest.skip("DEEPDREAM_CLI (the deepdream binary) is not set")
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python"):]
    example = section[section.index("```python") + len("```python"):]
    example = example[:example.index("```")]
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "chelsea.png").write_bytes((REPO / "assets" / "chelsea.png").read_bytes())
    subprocess.run([sys.executable, "-c", example], cwd=tmp_path, check=True)
    subprocess.run(
        [cli, "dream", "assets/chelsea.png", "-o", "cli.png", "--layers", "block3_conv3", "--seed", "1"],
        cwd=tmp_path, check=True, capture_output=True,
    )
    ours = np.asarray(Image.open(tmp_path / "chelsea-block3.png").convert("RGB"))
    assert np.array_equal(ours, np.asarray(Image.open(tmp_path / "cli.png").convert("RGB")))


def test_a_mask_keeps_the_picture_where_it_is_black(photo):
    width, height = photo.size
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    dreamed = np.asarray(deepdream.dream(photo, "vgg16", layers="block3_conv3", mask=mask, **SMALL)).astype(int)
    original = np.asarray(photo).astype(int)
    assert np.array_equal(dreamed[:, width // 2 + 16:], original[:, width // 2 + 16:])
    assert np.abs(dreamed[:, : width // 2] - original[:, : width // 2]).mean() > 1.0
    # Regions: each half with its own channels, nothing else changes where none covers.
    left = Image.fromarray(mask)
    regions = [(left, {"layers": "block3_conv3", "channels": [5]})]
    only_left = np.asarray(deepdream.dream(photo, "vgg16", regions=regions, **SMALL)).astype(int)
    assert np.array_equal(only_left[:, width // 2 + 16:], original[:, width // 2 + 16:])
    with pytest.raises(ValueError, match="mask strength"):
        deepdream.dream(photo, "vgg16", mask=mask, mask_strength=3, **SMALL)
    with pytest.raises(ValueError, match="unknown region option"):
        deepdream.dream(photo, "vgg16", regions=[(left, {"colour": 1})], **SMALL)


def test_channels_picked_from_the_picture(photo):
    picked = deepdream.dream(photo, "vgg16", layers="block3_conv3", channels="auto:strongest:3", **SMALL)
    assert not np.array_equal(np.asarray(picked), np.asarray(photo))
    with pytest.raises(ValueError, match="auto:strongest:N"):
        deepdream.dream(photo, "vgg16", channels="auto:most:3", **SMALL)


def test_a_keyframed_zoom_grows_stronger(photo):
    keyframes = {"keyframes": [{"frame": 0, "step": 0.2}, {"frame": 5, "step": 4.0}]}
    frames = deepdream.zoom(photo, "vgg16", frames=6, zoom=1.0, colour_match=False, octaves=1,
                            iterations=1, seed=3, octaves_per_frame=1, iterations_per_frame=1,
                            keyframes=keyframes)
    arrays = [np.asarray(f).astype(int) for f in frames]
    changes = [np.abs(arrays[k] - arrays[k - 1]).mean() for k in range(1, 6)]
    assert changes == sorted(changes), changes
    with pytest.raises(ValueError, match="unknown parameter 'speed'"):
        deepdream.zoom(photo, "vgg16", frames=3, keyframes={"keyframes": [{"frame": 0, "speed": 1}]})
    with pytest.raises(ValueError, match="beyond the last frame"):
        deepdream.zoom(photo, "vgg16", frames=3, keyframes={"keyframes": [{"frame": 0}, {"frame": 7}]})


def test_sound_moves_a_zoom_and_guide_footage_guides_a_film(tmp_path, photo):
    sound = tmp_path / "pulses.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=1,volume='if(lt(mod(t,0.5),0.25),1,0.02)':eval=frame", str(sound)],
        check=True,
    )
    film = tmp_path / "zoom.mp4"
    frames = deepdream.zoom(photo, "vgg16", zoom=1.0, colour_match=False, fps=8, audio=sound,
                            react={"step": (0.3, 3.0)}, octaves=1, iterations=1, seed=3,
                            octaves_per_frame=1, iterations_per_frame=1, output=film)
    assert len(frames) == 8, "the zoom lasts as long as the sound"
    arrays = [np.asarray(f).astype(int) for f in frames]
    changes = [np.abs(arrays[k] - arrays[k - 1]).mean() for k in range(1, 8)]
    # Frames 4 and 5 are loud (the second pulse), 6 and 7 quiet.
    assert min(changes[3], changes[4]) > max(changes[5], changes[6]), changes
    assert deepdream._deepdream.has_sound(str(film))
    with pytest.raises(ValueError, match="react needs sound"):
        deepdream.zoom(photo, "vgg16", frames=2, react="step=1..2")
    with pytest.raises(ValueError, match="unknown band"):
        deepdream.zoom(photo, "vgg16", frames=2, audio=sound, react="step=1..2", react_band="sub")

    guides = tmp_path / "guides.mp4"
    deepdream.save_animation([photo.rotate(180)] * 2 + [photo] * 2, guides, fps=4)
    film = [photo] * 4
    guided = deepdream.video(film, "vgg16", fps=4, guide_video=guides, layers="block3_conv3",
                             octaves=1, iterations=2, seed=1, octaves_per_frame=1, iterations_per_frame=2)
    plain = deepdream.video(film, "vgg16", fps=4, layers="block3_conv3",
                            octaves=1, iterations=2, seed=1, octaves_per_frame=1, iterations_per_frame=2)
    assert not np.array_equal(np.asarray(guided[0]), np.asarray(plain[0]))
    with pytest.raises(ValueError, match="loop or hold"):
        deepdream.video(film, "vgg16", guide_video=guides, guide_video_end="bounce")


def test_a_live_feed_dreams_a_clip_as_it_comes():
    clip = REPO / "crates/deepdream/tests/fixtures/carphone.mp4"
    model = deepdream.load("vgg16")
    with model.live(clip, size=(96, 72), realtime=True, layers="block3_conv1",
                    iterations_per_frame=1, seed=2) as feed:
        dreams = []
        for dream in feed:
            dreams.append(dream)
            if len(dreams) == 3:
                feed.set("step", 0.5)
            if len(dreams) >= 6 and feed.report["changes"] >= 1 or len(dreams) == 30:
                break
        report = feed.report
        with pytest.raises(ValueError, match="unknown setting 'speed'"):
            feed.set("speed", 1)
    assert all(d.shape == (72, 96, 3) and d.dtype == np.uint8 for d in dreams)
    assert report["changes"] >= 1 and report["dreamed"] >= 6, report
    assert report["latency"] >= 0 and report["steps"] == 1
    # Closed: no more dreams.
    assert next(iter(feed), None) is None
    with pytest.raises(deepdream.VideoError, match="no such file, camera or stream"):
        model.live("/no/such/clip.mp4")
    with pytest.raises(ValueError, match="unknown optical flow method"):
        model.live(clip, flow="lucas-kanade")
