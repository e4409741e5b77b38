//! `deepdream zoom` and `deepdream video` end to end: frame counts, rates, sizes and audio
//! of the outputs, resuming after a kill, GIFs without FFmpeg, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use deepdream::media::ffmpeg::{self, Segment, VideoReader};
use deepdream::{networks::models, networks::weights};
use image::AnimationDecoder;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deepdream/tests/fixtures")
        .join(name)
}

fn vgg16_weights() -> PathBuf {
    let spec = models::find("vgg16").unwrap();
    weights::ensure(spec, |_| eprintln!("fetching vgg16 weights…")).unwrap()
}

fn command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deepdream"));
    command.args(args).env("DEEPDREAM_HOME", home);
    command
}

fn deepdream(home: &Path, args: &[&str]) -> Output {
    command(home, args).output().expect("the binary runs")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A failure whose last stderr line is one `deepdream: error:` line containing `expected`.
fn assert_error(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("deepdream: error: "), "{stderr}");
    assert!(
        last.to_lowercase().contains(&expected.to_lowercase()),
        "expected '{expected}' in: {stderr}"
    );
}

/// Cheap dream settings: a shallow layer, one octave.
fn quick(weights: &str) -> Vec<&str> {
    vec![
        "--weights",
        weights,
        "--layers",
        "block3_conv1",
        "--octaves",
        "1",
        "--iterations",
        "2",
        "--octaves-per-frame",
        "1",
        "--iterations-per-frame",
        "1",
        "--seed",
        "3",
    ]
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Every decoded frame of a video, as raw RGB bytes.
fn decoded_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut reader = VideoReader::open(path, Segment::default()).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        frames.push(frame.into_raw());
    }
    frames
}

/// The duration of a file's first audio stream: the end of its last packet, from ffprobe.
fn audio_duration(path: &Path) -> Option<f64> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
        .args(["packet=pts_time,duration_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().parse::<f64>());
            Some(fields.next()?.ok()? + fields.next()?.ok()?)
        })
        .reduce(f64::max)
}

#[test]
fn a_video_keeps_its_frames_rate_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = fixture("carphone.mp4");
    let output = dir.path().join("dream.mp4");
    let mut args = vec![
        "video",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend(quick(weights.to_str().unwrap()));
    let run = deepdream(dir.path(), &args);
    assert_success(&run);
    // The rate of the frames after the first (a full dream) is said at the end.
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("Dreamed 120 frames in ") && stderr.contains("the 119 after it at "),
        "{stderr}"
    );
    let before = ffmpeg::probe(&input).unwrap();
    let after = ffmpeg::probe(&output).unwrap();
    assert_eq!((after.width, after.height), (176, 144));
    assert_eq!(after.frame_rate, before.frame_rate);
    assert_eq!(decoded_frames(&output).len(), 120);
    assert_eq!(after.audio_codec, None);
    // The work folder is gone once the video is written.
    assert!(!dir.path().join("dream.mp4.deepdream-work").exists());
}

#[test]
fn a_video_with_sound_keeps_its_audio_track() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        input.to_str().unwrap(),
    ]);
    for extension in ["mp4", "webm"] {
        let output = dir.path().join(format!("dream.{extension}"));
        let mut args = vec![
            "video",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ];
        args.extend(quick(weights.to_str().unwrap()));
        assert_success(&deepdream(dir.path(), &args));
        let before = ffmpeg::probe(&input).unwrap();
        let after = ffmpeg::probe(&output).unwrap();
        assert_eq!((after.width, after.height), (160, 120), "{extension}");
        assert_eq!(after.frame_rate, before.frame_rate, "{extension}");
        assert_eq!(decoded_frames(&output).len(), 50, "{extension}");
        assert!(after.audio_codec.is_some(), "{extension}: no audio");
        let (a, b) = (
            audio_duration(&input).unwrap(),
            audio_duration(&output).unwrap(),
        );
        assert!(
            (a - b).abs() < 0.05,
            "{extension}: audio {a} s became {b} s"
        );
    }
}

#[test]
fn part_of_a_video_with_its_frames_as_png() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = fixture("carphone.mp4");
    let output = dir.path().join("part.mp4");
    let frames = dir.path().join("frames");
    let mut args = vec![
        "video",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--start",
        "1",
        "--duration",
        "0.5",
        "--frames-dir",
        frames.to_str().unwrap(),
    ];
    args.extend(quick(weights.to_str().unwrap()));
    assert_success(&deepdream(dir.path(), &args));
    // 0.5 s at 29.97 fps.
    assert_eq!(decoded_frames(&output).len(), 15);
    let pngs = std::fs::read_dir(&frames).unwrap().count();
    assert_eq!(pngs, 15);
    let first = image::open(frames.join("frame_000000.png")).unwrap();
    assert_eq!((first.width(), first.height()), (176, 144));
}

#[test]
fn an_interrupted_video_resumes_to_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = fixture("carphone.mp4");
    let run = |name: &str| -> Vec<String> {
        let output = dir.path().join(format!("{name}.mp4"));
        let frames = dir.path().join(format!("{name}-frames"));
        let mut args: Vec<String> = vec![
            "video".into(),
            input.to_str().unwrap().into(),
            "-o".into(),
            output.to_str().unwrap().into(),
            "--duration".into(),
            "1".into(),
            "--frames-dir".into(),
            frames.to_str().unwrap().into(),
        ];
        // Slower frames than `quick`, so that the run can be caught part-way.
        args.extend(
            quick(weights.to_str().unwrap())
                .iter()
                .map(|s| s.replace("block3_conv1", "block4_conv3")),
        );
        args
    };
    let whole_args = run("whole");
    let whole_args: Vec<&str> = whole_args.iter().map(String::as_str).collect();
    assert_success(&deepdream(dir.path(), &whole_args));

    let args = run("resumed");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let work = dir.path().join("resumed.mp4.deepdream-work");
    let mut child = command(dir.path(), &args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (as a crash or power loss would) once a few frames are done.
    let started = Instant::now();
    while !work.join("frame_000004.png").exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.path().join("resumed.mp4").exists(),
        "no partial output"
    );
    let output = deepdream(dir.path(), &args);
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Frames 0..=4 were not dreamed again.
    assert!(!stderr.contains("frame 1/"), "{stderr}");
    assert_eq!(
        decoded_frames(&dir.path().join("whole.mp4")),
        decoded_frames(&dir.path().join("resumed.mp4"))
    );
    for k in 0..30 {
        let name = format!("frame_{k:06}.png");
        let a = image::open(dir.path().join("whole-frames").join(&name)).unwrap();
        let b = image::open(dir.path().join("resumed-frames").join(&name)).unwrap();
        assert!(a == b, "frame {k} differs");
    }
}

#[test]
fn a_zoom_gif_needs_no_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let photo = image::open(fixture("chelsea.png")).unwrap();
    let input = dir.path().join("small.png");
    photo.crop_imm(150, 40, 96, 72).save(&input).unwrap();
    let output = dir.path().join("zoom.gif");
    let empty = tempfile::tempdir().unwrap();
    let mut args = vec![
        "zoom",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--frames",
        "4",
        "--rotate",
        "-2",
        "--pan",
        "1,-1",
    ];
    args.extend(quick(weights.to_str().unwrap()));
    let run = |args: &[&str]| {
        command(dir.path(), args)
            .env("PATH", empty.path())
            .output()
            .unwrap()
    };
    assert_success(&run(&args));
    let file = std::io::BufReader::new(std::fs::File::open(&output).unwrap());
    let frames = image::codecs::gif::GifDecoder::new(file)
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0].buffer().dimensions(), (96, 72));
    // Video output needs FFmpeg, and says how to get it.
    let mp4 = dir.path().join("zoom.mp4");
    let mut args = vec!["zoom", input.to_str().unwrap(), "-o", mp4.to_str().unwrap()];
    args.extend(quick(weights.to_str().unwrap()));
    assert_error(&run(&args), "apt install ffmpeg");
    let video = fixture("carphone.mp4");
    assert_error(
        &run(&[
            "video",
            video.to_str().unwrap(),
            "-o",
            mp4.to_str().unwrap(),
        ]),
        "ffmpeg was not found",
    );
    assert!(!mp4.exists());
}

#[test]
fn bad_video_input_gets_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = vgg16_weights();
    let w = weights.to_str().unwrap();
    let video = fixture("carphone.mp4");
    let v = video.to_str().unwrap();
    let out = d.join("out.mp4");
    let o = out.to_str().unwrap();
    let text = d.join("notes.mp4");
    std::fs::write(&text, "not a video").unwrap();
    let truncated = d.join("truncated.mp4");
    std::fs::write(&truncated, &std::fs::read(&video).unwrap()[..3000]).unwrap();
    let empty = d.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let sound = d.join("sound.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "1",
        sound.to_str().unwrap(),
    ]);
    let photo = fixture("chelsea.png");
    let (missing, png, txt) = (d.join("missing.mp4"), d.join("out.png"), d.join("z.txt"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["video", text.to_str().unwrap(), "-o", o],
            "cannot read video",
        ),
        (
            vec!["video", truncated.to_str().unwrap(), "-o", o],
            "cannot read video",
        ),
        (
            vec!["video", empty.to_str().unwrap(), "-o", o],
            "cannot read video",
        ),
        (
            vec!["video", missing.to_str().unwrap(), "-o", o],
            "no such file",
        ),
        (
            vec!["video", sound.to_str().unwrap(), "-o", o],
            "no video stream",
        ),
        (vec!["video", v, "-o", v], "input file"),
        (
            vec!["video", photo.to_str().unwrap(), "-o", o],
            "still image",
        ),
        (
            vec!["video", v, "-o", png.to_str().unwrap()],
            "cannot hold video",
        ),
        (vec!["video", v, "-o", o, "--blend", "1.5"], "blend"),
        (
            vec!["video", v, "-o", o, "--start", "100", "--weights", w],
            "no frames",
        ),
        (vec!["video", v, "-o", o, "--duration", "0"], "--duration"),
        (
            vec!["zoom", photo.to_str().unwrap(), "-o", o, "--zoom", "0"],
            "zoom must be",
        ),
        (
            vec!["zoom", photo.to_str().unwrap(), "-o", o, "--zoom", "NaN"],
            "zoom must be",
        ),
        (
            vec!["zoom", photo.to_str().unwrap(), "-o", o, "--frames", "0"],
            "frames",
        ),
        (
            vec!["zoom", photo.to_str().unwrap(), "-o", o, "--fps", "0"],
            "frame rate",
        ),
        (
            vec!["zoom", photo.to_str().unwrap(), "-o", txt.to_str().unwrap()],
            "cannot hold video",
        ),
        (
            vec!["zoom", video.to_str().unwrap(), "-o", o],
            "cannot read image",
        ),
    ];
    for (args, expected) in cases {
        let output = deepdream(d, &args);
        assert_error(&output, expected);
        assert!(!out.exists(), "{args:?} left an output");
    }
    // An existing output is kept unless --force.
    std::fs::write(&out, "keep me").unwrap();
    assert_error(&deepdream(d, &["video", v, "-o", o]), "exists");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
}

#[test]
fn a_rotated_video_is_dreamed_and_written_upright() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = dir.path().join("rotated.mp4");
    let clip = fixture("carphone.mp4");
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-t",
        "0.3",
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        input.to_str().unwrap(),
    ]);
    let before = ffmpeg::probe(&input).unwrap();
    assert_eq!(
        (before.width, before.height, before.rotation.abs()),
        (144, 176, 90)
    );
    let output = dir.path().join("dream.mp4");
    let mut args = vec![
        "video",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend(quick(weights.to_str().unwrap()));
    assert_success(&deepdream(dir.path(), &args));
    let after = ffmpeg::probe(&output).unwrap();
    assert_eq!((after.width, after.height, after.rotation), (144, 176, 0));
    // The same picture, upright, as a player shows the input.
    let (a, b) = (decoded_frames(&input), decoded_frames(&output));
    assert_eq!(a.len(), b.len());
    let difference: f64 = a[0]
        .iter()
        .zip(&b[0])
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a[0].len() as f64;
    assert!(difference < 20.0, "mean difference {difference}");
}

/// `n` frames of the carphone clip at 25 fps, with a cut to the same scene upside down and
/// in negative from frame `cut` when given, and a 440 Hz tone.
fn test_clip(path: &Path, frames: usize, cut: Option<usize>) {
    let clip = fixture("carphone.mp4");
    let video = match cut {
        Some(cut) => format!(
            "[0:v]fps=25,trim=end_frame={cut},setpts=PTS-STARTPTS[a];\
             [0:v]fps=25,trim=start_frame=60:end_frame={},setpts=PTS-STARTPTS,vflip,negate[b];\
             [a][b]concat=n=2:v=1:a=0[v]",
            60 + frames - cut
        ),
        None => format!("[0:v]fps=25,trim=end_frame={frames},setpts=PTS-STARTPTS[v]"),
    };
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=10",
        "-filter_complex",
        &video,
        "-map",
        "[v]",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        path.to_str().unwrap(),
    ]);
}

/// `video` with `quick` settings on `input` into `output`, plus `extra` arguments.
fn quick_video(input: &Path, output: &Path, weights: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "video",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend(quick(weights.to_str().unwrap()));
    args.extend(extra);
    command(output.parent().unwrap(), &args)
}

fn png_frames(dir: &Path) -> Vec<image::RgbImage> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| image::open(path).unwrap().to_rgb8())
        .collect()
}

#[test]
fn a_video_split_at_a_scene_cut_joins_into_the_same_frames_and_sound() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = dir.path().join("cut.mp4");
    test_clip(&input, 24, Some(11));
    let whole_frames = dir.path().join("whole");
    let output = quick_video(
        &input,
        &dir.path().join("whole.mp4"),
        &weights,
        &["--frames-dir", whole_frames.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_success(&output);
    // The cut is 1 frame from the even split point 12: the split moves onto it.
    let film = dir.path().join("film.mp4");
    let mut parts = Vec::new();
    for shard in ["0/2", "1/2"] {
        let frames = dir.path().join(format!("part{}", &shard[..1]));
        let output = quick_video(
            &input,
            &film,
            &weights,
            &["--shard", shard, "--frames-dir", frames.to_str().unwrap()],
        )
        .output()
        .unwrap();
        assert_success(&output);
        parts.extend(png_frames(&frames));
    }
    // Each part dreamed its frames exactly as the whole video's dream did.
    let whole = png_frames(&whole_frames);
    assert_eq!(parts.len(), 24);
    assert_eq!(png_frames(&dir.path().join("part0")).len(), 11);
    assert!(
        parts == whole,
        "the parts' frames differ from the whole dream's"
    );
    let joined = deepdream(dir.path(), &["video-join", "-o", film.to_str().unwrap()]);
    assert_success(&joined);
    let stderr = String::from_utf8_lossy(&joined.stderr);
    assert!(
        stderr.contains("24 frames from 2 parts, 0 seams cross-faded, sound joined"),
        "{stderr}"
    );
    assert_eq!(decoded_frames(&film).len(), 24);
    let info = ffmpeg::probe(&film).unwrap();
    assert_eq!(
        (info.width, info.height, info.frame_rate.fps()),
        (176, 144, 25.0)
    );
    let (a, b) = (
        audio_duration(&input).unwrap(),
        audio_duration(&film).unwrap(),
    );
    assert!((a - b).abs() < 0.05, "audio {a} s became {b} s");
    assert!(
        !info.tags.contains_key("deepdream_part"),
        "the joined video is not a part"
    );
}

#[test]
fn three_workers_at_once_dream_a_video_that_joins_with_cross_faded_seams() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = dir.path().join("clip.mp4");
    test_clip(&input, 30, None);
    let film = dir.path().join("film.mkv");
    // Three workers at once, one of them told its number the Kubernetes way.
    let children: Vec<_> = ["0/3", "1/3", "k8s"]
        .iter()
        .map(|shard| {
            let mut command = match *shard {
                "k8s" => {
                    let mut c = quick_video(
                        &input,
                        &film,
                        &weights,
                        &["--shards", "3", "--overlap", "0.12"],
                    );
                    c.env("JOB_COMPLETION_INDEX", "2");
                    c
                }
                shard => quick_video(
                    &input,
                    &film,
                    &weights,
                    &["--shard", shard, "--overlap", "0.12"],
                ),
            };
            command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert_success(&child.wait_with_output().unwrap());
    }
    let part = |k: usize| dir.path().join(format!("film.part-{k}-of-3.mkv"));
    // 30 frames in parts of 10: parts 1 and 2 start 3 frames (0.12 s) early.
    let tags: Vec<String> = (0..3)
        .map(|k| ffmpeg::probe(&part(k)).unwrap().tags["deepdream_part"].clone())
        .collect();
    assert!(
        tags[0].starts_with("part=0/3 first=0 lead=0 frames=10 total=30"),
        "{tags:?}"
    );
    assert!(
        tags[1].starts_with("part=1/3 first=7 lead=3 frames=13 total=30"),
        "{tags:?}"
    );
    assert!(
        tags[2].starts_with("part=2/3 first=17 lead=3 frames=13 total=30"),
        "{tags:?}"
    );
    let joined_path = dir.path().join("joined.mp4");
    let (a, b, c) = (part(0), part(1), part(2));
    let (a, b, c) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        c.to_str().unwrap(),
    );
    let joined = deepdream(
        dir.path(),
        &["video-join", c, a, b, "-o", joined_path.to_str().unwrap()],
    );
    assert_success(&joined);
    assert!(
        String::from_utf8_lossy(&joined.stderr)
            .contains("30 frames from 3 parts, 2 seams cross-faded")
    );
    assert_eq!(decoded_frames(&joined_path).len(), 30);
    let (x, y) = (
        audio_duration(&input).unwrap(),
        audio_duration(&joined_path).unwrap(),
    );
    assert!((x - y).abs() < 0.05, "audio {x} s became {y} s");

    // What cannot be joined is a one-line error, and nothing is written.
    let out = dir.path().join("bad.mp4");
    let out = out.to_str().unwrap();
    let join = |parts: &[&str]| {
        let mut args = vec!["video-join", "-o", out];
        args.extend(parts);
        deepdream(dir.path(), &args)
    };
    assert_error(&join(&[a, c]), "part 1/3 of the video is missing");
    assert_error(&join(&[a, a, b, c]), "are both part 0/3");
    assert_error(
        &join(&[a, b, c, input.to_str().unwrap()]),
        "not a part of a split video",
    );
    assert_error(&join(&[]), "no parts named");
    std::fs::copy(&joined_path, dir.path().join("other.part-0-of-1.mp4")).unwrap();
    assert_error(&join(&[a, b, joined_path.to_str().unwrap()]), "not a part");
    // A part cut short after the fact (its tag copied along) is caught by its frame count.
    let short = dir.path().join("short.mkv");
    ffmpeg(&[
        "-i",
        b,
        "-frames:v",
        "5",
        "-c:v",
        "libx264",
        short.to_str().unwrap(),
    ]);
    assert_error(
        &join(&[a, short.to_str().unwrap(), c]),
        "has 5 frames where its tag says 13",
    );
    assert!(!Path::new(out).exists());
    // A part of another job (other settings) does not join with these.
    let other = dir.path().join("other.mkv");
    let output = quick_video(
        &input,
        &other,
        &weights,
        &["--shard", "2/3", "--blend", "0.5"],
    )
    .output()
    .unwrap();
    assert_success(&output);
    let other_part = dir.path().join("other.part-2-of-3.mkv");
    assert_error(
        &join(&[a, b, other_part.to_str().unwrap()]),
        "parts of different jobs",
    );
    // Splitting needs the whole video, and a video container.
    for (extra, expected) in [
        (vec!["--shard", "0/2", "--start", "1"], "leave out --start"),
        (vec!["--shard", "2/2"], "shard '2/2' is not I/N"),
        (vec!["--shards", "2"], "--shards needs JOB_COMPLETION_INDEX"),
        (vec!["--shard", "0/31"], "fewer than its 31 parts"),
        (vec!["--shard", "0/2", "--overlap=-1"], "--overlap must be"),
    ] {
        let output = quick_video(&input, &dir.path().join("x.mp4"), &weights, &extra)
            .output()
            .unwrap();
        assert_error(&output, expected);
    }
    let gif = quick_video(
        &input,
        &dir.path().join("x.gif"),
        &weights,
        &["--shard", "0/2"],
    )
    .output()
    .unwrap();
    assert_error(&gif, "not a GIF");
}

/// Pearson's correlation of two samples.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// `seconds` of a 440 Hz tone pulsing at 2 Hz (loud for the first quarter second of each
/// half), as an FFmpeg lavfi source.
fn pulses(seconds: f64) -> String {
    format!(
        "sine=frequency=440:duration={seconds},volume='if(lt(mod(t,0.5),0.25),1,0.02)':eval=frame"
    )
}

#[test]
fn sound_drives_the_dream_strength_and_the_video_keeps_its_sound() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let input = dir.path().join("pulses.mp4");
    ffmpeg(&[
        "-i",
        fixture("carphone.mp4").to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        &pulses(4.0),
        "-filter_complex",
        "[0:v]fps=8,trim=end_frame=32,setpts=PTS-STARTPTS[v]",
        "-map",
        "[v]",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-crf",
        "12",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        input.to_str().unwrap(),
    ]);
    let output = dir.path().join("react.mp4");
    let frames_dir = dir.path().join("frames");
    // Every frame dreamed alike (one step, the first frame too), none carried over.
    let args = [
        "video",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--layers",
        "block3_conv1",
        "--octaves",
        "1",
        "--iterations",
        "1",
        "--octaves-per-frame",
        "1",
        "--iterations-per-frame",
        "1",
        "--seed",
        "3",
        "--blend",
        "0",
        "--react",
        "step=0.5..3",
        "--frames-dir",
        frames_dir.to_str().unwrap(),
    ];
    assert_success(&deepdream(dir.path(), &args));
    let inputs = decoded_frames(&input);
    let dreams = png_frames(&frames_dir);
    assert_eq!(dreams.len(), inputs.len());
    let strengths: Vec<f64> = inputs
        .iter()
        .zip(&dreams)
        .map(|(a, b)| {
            let sum: u64 = a
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| x.abs_diff(*y) as u64)
                .sum();
            sum as f64 / a.len() as f64
        })
        .collect();
    // The tone is loud where the middle of the frame falls in the first half of a pulse.
    let loud: Vec<f64> = (0..inputs.len())
        .map(|k| (((k as f64 + 0.5) / 8.0) % 0.5 < 0.25) as u8 as f64)
        .collect();
    let r = pearson(&strengths, &loud);
    eprintln!("strength per frame {strengths:.2?}; Pearson with the pulses {r:.3}");
    assert!(r >= 0.7, "Pearson {r}");
    assert!(
        ffmpeg::probe(&output).unwrap().audio_codec.is_some(),
        "the sound is kept"
    );
}

#[test]
fn a_zoom_with_a_soundtrack_lasts_as_long_as_it() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let sound = dir.path().join("pulses.wav");
    ffmpeg(&["-f", "lavfi", "-i", &pulses(1.5), sound.to_str().unwrap()]);
    let photo = image::open(fixture("chelsea.png")).unwrap();
    let input = dir.path().join("small.png");
    photo.crop_imm(150, 40, 96, 72).save(&input).unwrap();
    let output = dir.path().join("zoom.mp4");
    let mut args = vec![
        "zoom",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--fps",
        "10",
        "--audio",
        sound.to_str().unwrap(),
        "--react",
        "zoom=1.0..1.08,step=0.5..2",
        "--react-band",
        "mid",
    ];
    args.extend(quick(weights.to_str().unwrap()));
    assert_success(&deepdream(dir.path(), &args));
    let frames = decoded_frames(&output).len();
    assert!(
        (14..=16).contains(&frames),
        "{frames} frames for 1.5 s at 10 fps"
    );
    let duration = audio_duration(&output).expect("the zoom carries the sound");
    assert!((duration - 1.5).abs() < 0.1, "sound of {duration} s");
}

#[test]
fn bad_control_input_gets_one_line_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = vgg16_weights();
    let w = weights.to_str().unwrap();
    let video = fixture("carphone.mp4");
    let v = video.to_str().unwrap();
    let photo = fixture("chelsea.png");
    let p = photo.to_str().unwrap();
    let out = d.join("out.mp4");
    let o = out.to_str().unwrap();
    let text = d.join("mask.png");
    std::fs::write(&text, "not a picture").unwrap();
    // A mask video without a single frame: only sound.
    let no_frames = d.join("mask.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        no_frames.to_str().unwrap(),
    ]);
    let keyframes = |name: &str, text: &str| {
        let path = d.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let unknown = keyframes("unknown.toml", "[[keyframes]]\nframe = 0\nspeed = 2\n");
    let order = keyframes(
        "order.toml",
        "[[keyframes]]\nframe = 9\n[[keyframes]]\nframe = 3\n",
    );
    let beyond = keyframes(
        "beyond.json",
        r#"{"keyframes": [{"frame": 0}, {"time": 60}]}"#,
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["zoom", p, "-o", o, "--mask", text.to_str().unwrap()],
            "not a mask picture",
        ),
        (
            vec!["video", v, "-o", o, "--mask", no_frames.to_str().unwrap()],
            "no video stream",
        ),
        (
            vec!["zoom", p, "-o", o, "--keyframes", &unknown],
            "unknown parameter 'speed'",
        ),
        (vec!["zoom", p, "-o", o, "--keyframes", &order], "in order"),
        (
            vec!["video", v, "-o", o, "--keyframes", &beyond],
            "beyond the last frame",
        ),
        (
            vec!["video", v, "-o", o, "--react", "step=0.5..3"],
            "the video has no sound",
        ),
        (
            vec!["zoom", p, "-o", o, "--react", "step=0.5..3"],
            "--audio",
        ),
        (
            vec!["zoom", p, "-o", o, "--react", "step=0.5-3"],
            "LOW..HIGH",
        ),
        (
            vec![
                "zoom",
                p,
                "-o",
                o,
                "--react-band",
                "sub",
                "--react",
                "step=1..2",
            ],
            "unknown band",
        ),
        (
            vec!["zoom", p, "-o", o, "--mask-strength", "2"],
            "mask strength",
        ),
        (
            vec![
                "zoom",
                p,
                "-o",
                o,
                "--region",
                "nowhere.png:layers=block3_conv1",
            ],
            "nowhere.png",
        ),
        (
            vec!["zoom", p, "-o", o, "--channels", "auto:loudest:3"],
            "auto:strongest:N",
        ),
    ];
    for (mut args, expected) in cases {
        args.extend(["--weights", w]);
        let output = deepdream(d, &args);
        assert_error(&output, expected);
        assert_eq!(
            String::from_utf8_lossy(&output.stderr).lines().count(),
            1,
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!out.exists(), "{args:?} left an output");
        assert!(
            !d.join("out.mp4.deepdream-work").exists(),
            "{args:?} left a work folder"
        );
    }
}

#[test]
fn a_live_feed_is_dreamed_in_real_time_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let clip = fixture("carphone.mp4");
    let output = dir.path().join("live.mp4");
    let args = [
        "live",
        clip.to_str().unwrap(),
        "--realtime",
        "-o",
        output.to_str().unwrap(),
        "--size",
        "96x72",
        "--weights",
        weights.to_str().unwrap(),
        "--layers",
        "block3_conv1",
        "--iterations-per-frame",
        "1",
        "--seed",
        "2",
    ];
    let run = deepdream(dir.path(), &args);
    assert_success(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("frames dreamed") && stderr.contains("fps, latency"),
        "{stderr}"
    );
    // The recording runs in real time: a frame for each of the clip's, at its rate.
    let (before, after) = (
        ffmpeg::probe(&clip).unwrap(),
        ffmpeg::probe(&output).unwrap(),
    );
    assert_eq!(after.frame_rate, before.frame_rate);
    assert_eq!((after.width, after.height), (96, 72));
    let frames = decoded_frames(&output);
    assert_eq!(frames.len(), decoded_frames(&clip).len());
    assert_ne!(
        frames.first(),
        frames.last(),
        "the dream moves with the feed"
    );
    // The feed sent to a UDP stream on loopback, read back by FFmpeg.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let received = dir.path().join("received.ts");
    let mut listener = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-probesize",
            "32768",
            "-analyzeduration",
            "500000",
        ])
        .arg("-i")
        .arg(format!("udp://127.0.0.1:{port}"))
        .args(["-frames:v", "20", "-c", "copy"])
        .arg(&received)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut streamed: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let at = streamed.iter().position(|a| a == "-o").unwrap();
    streamed.splice(
        at..at + 2,
        [
            "--to".to_string(),
            format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        ],
    );
    let streamed: Vec<&str> = streamed.iter().map(String::as_str).collect();
    assert_success(&deepdream(dir.path(), &streamed));
    let started = Instant::now();
    while listener.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = listener.kill();
    let frames = decoded_frames(&received);
    assert_eq!(frames.len(), 20, "the stream carries the dreamed frames");
    assert_eq!(ffmpeg::probe(&received).unwrap().width, 96);
    // Bad sources and sizes: one line each, nothing recorded.
    let missing = dir.path().join("missing.mp4");
    let out = dir.path().join("none.mp4");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["live", missing.to_str().unwrap()],
            "no such file, camera or stream",
        ),
        (
            vec!["live", "/dev/video63", "-o", out.to_str().unwrap()],
            "cannot read video /dev/video63: no such camera",
        ),
        (
            vec!["live", "tcp://127.0.0.1:9", "--retries", "2"],
            "no answer after 2 tries",
        ),
        (
            vec!["live", clip.to_str().unwrap(), "--fps", "0"],
            "--fps must be",
        ),
        (
            vec!["live", clip.to_str().unwrap(), "--size", "12x9000"],
            "--size",
        ),
        (
            vec!["live", clip.to_str().unwrap(), "--blend", "2"],
            "blend",
        ),
    ];
    for (mut args, expected) in cases {
        args.extend(["--weights", weights.to_str().unwrap()]);
        assert_error(&deepdream(dir.path(), &args), expected);
        assert!(!out.exists(), "{args:?}");
    }
}

#[test]
fn a_live_feed_holds_a_frame_rate_by_lowering_steps_then_size() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let clip = fixture("carphone.mp4");
    let live = |fps: &str| {
        let args = [
            "live",
            clip.to_str().unwrap(),
            "--realtime",
            "--size",
            "96x72",
            "--weights",
            weights.to_str().unwrap(),
            "--layers",
            "block3_conv1",
            "--iterations-per-frame",
            "3",
            "--fps",
            fps,
        ];
        let run = deepdream(dir.path(), &args);
        assert_success(&run);
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        let last = stderr
            .lines()
            .rev()
            .find(|l| l.contains("frames dreamed"))
            .unwrap_or_default()
            .to_string();
        eprintln!("--fps {fps}: {last}");
        last
    };
    // A rate no computer holds: one step and the smallest picture.
    let fast = live("200");
    assert!(fast.contains("(1 steps, 25% size)"), "{fast}");
    // One frame in five seconds: every frame gets its three steps at full size.
    let slow = live("0.2");
    assert!(slow.contains("(3 steps, 100% size)"), "{slow}");
}

/// Sends the OSC message `address value` to `port` on loopback.
fn send_osc(port: u16, address: &str, value: rosc::OscType) {
    let packet = rosc::OscPacket::Message(rosc::OscMessage {
        addr: address.to_string(),
        args: vec![value],
    });
    let bytes = rosc::encoder::encode(&packet).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&bytes, ("127.0.0.1", port)).unwrap();
}

#[test]
fn osc_messages_change_a_live_dream_as_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let clip = fixture("carphone.mp4");
    let output = dir.path().join("live.mp4");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_text = format!("127.0.0.1:{port}");
    let mut args = vec![
        "live",
        clip.to_str().unwrap(),
        "--realtime",
        "-o",
        output.to_str().unwrap(),
        "--size",
        "96x72",
        "--weights",
        weights.to_str().unwrap(),
        "--layers",
        "block3_conv1",
        "--iterations-per-frame",
        "1",
        "--blend",
        "0",
        "--step",
        "8",
        "--osc",
        &port_text,
    ];
    let mut child = command(dir.path(), &args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The feed starts once the model is loaded and says so; its lines are collected.
    let (started, starting) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("Ctrl-C ends it") {
                let _ = started.send(());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    starting
        .recv_timeout(Duration::from_secs(60))
        .expect("the feed starts");
    // Halfway through the 4 s clip, the step goes to 0: the picture stops changing.
    std::thread::sleep(Duration::from_millis(2000));
    send_osc(port, "/deepdream/step", rosc::OscType::Float(0.0));
    send_osc(port, "/deepdream/speed", rosc::OscType::Float(1.0));
    send_osc(port, "/deepdream/speed", rosc::OscType::Float(2.0));
    send_osc(port, "/elsewhere", rosc::OscType::Int(1));
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("OSC /deepdream/speed").count(),
        1,
        "one warning: {stderr}"
    );
    assert!(stderr.contains("unknown setting 'speed'"), "{stderr}");
    assert!(
        stderr.contains("OSC /elsewhere: unknown OSC address"),
        "{stderr}"
    );
    // Each recorded frame against its input frame at the same size.
    let inputs = decoded_frames(&clip);
    let recorded = decoded_frames(&output);
    assert_eq!(recorded.len(), inputs.len());
    let change: Vec<f64> = inputs
        .iter()
        .zip(&recorded)
        .map(|(input, dream)| {
            let input = image::RgbImage::from_raw(176, 144, input.clone()).unwrap();
            let small =
                image::imageops::resize(&input, 96, 72, image::imageops::FilterType::Triangle);
            let total: u64 = small
                .as_raw()
                .iter()
                .zip(dream)
                .map(|(a, b)| a.abs_diff(*b) as u64)
                .sum();
            total as f64 / dream.len() as f64
        })
        .collect();
    let quarter = change.len() / 4;
    let mean = |part: &[f64]| part.iter().sum::<f64>() / part.len() as f64;
    let (first, last) = (
        mean(&change[..quarter]),
        mean(&change[change.len() - quarter..]),
    );
    eprintln!("change against the input: {first:.2} in the first quarter, {last:.2} in the last");
    assert!(last < 0.5 * first, "{change:.2?}");
    // A port already taken: one line, before anything runs.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken_text = format!("127.0.0.1:{}", taken.local_addr().unwrap().port());
    let last_arg = args.len() - 1;
    args[last_arg] = &taken_text;
    let _ = std::fs::remove_file(&output);
    assert_error(&deepdream(dir.path(), &args), "cannot listen for OSC");
}

#[test]
fn ctrl_c_ends_a_live_feed_with_its_recording_playable() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg16_weights();
    let clip = fixture("carphone.mp4");
    let output = dir.path().join("live.mp4");
    let args = [
        "live",
        clip.to_str().unwrap(),
        "--realtime",
        "-o",
        output.to_str().unwrap(),
        "--size",
        "96x72",
        "--weights",
        weights.to_str().unwrap(),
        "--layers",
        "block3_conv1",
        "--iterations-per-frame",
        "1",
    ];
    let mut child = command(dir.path(), &args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("Ctrl-C ends it") {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "the feed ended early: {seen}");
        seen.push_str(&line);
    }
    // Halfway through the 4 s clip.
    std::thread::sleep(Duration::from_millis(2000));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "Ctrl-C is how a feed ends: {seen}{rest}"
    );
    assert!(rest.contains("Recorded"), "{rest}");
    let frames = decoded_frames(&output).len();
    assert!(
        frames > 0 && frames < decoded_frames(&clip).len(),
        "{frames} frames"
    );
}
