//! The studio's HTTP API against a server on a free loopback port: upload, dream with
//! small settings, the event stream, cancel, download with parameters, queue order, pages
//! that go away, and bad requests.

mod common;

use std::time::{Duration, Instant};

use common::{Studio, config, photo_png};
use serde_json::json;

/// The fastest network, so the dreams here take seconds.
const MODEL: &str = "efficientnet-lite0";

/// A dream that takes a while (for queue and cancel tests): many steps on a bigger picture.
fn long_dream(image: &str) -> serde_json::Value {
    json!({"image": image, "model": MODEL, "octaves": 1, "iterations": 500, "seed": 1})
}

#[test]
fn a_dream_streams_progress_and_previews_and_downloads_with_its_parameters() {
    let studio = Studio::start(config());
    let image = studio.upload(&photo_png(160));
    let job = studio.submit(&json!({
        "image": image, "model": MODEL, "octaves": 2, "iterations": 4, "seed": 5,
    }));

    let mut events = studio.events(job);
    let mut steps = Vec::new();
    let mut previews = Vec::new();
    let last = loop {
        let status = events
            .next_status()
            .expect("the stream ends with a final status");
        let state = status["state"].as_str().unwrap().to_string();
        if state == "running" {
            steps.push(status["step"].as_u64().unwrap());
            previews.push(status["preview"].as_u64().unwrap());
        }
        if ["done", "failed", "cancelled"].contains(&state.as_str()) {
            break status;
        }
    };
    assert_eq!(last["state"], "done", "{last}");
    assert_eq!(
        (last["step"].as_u64(), last["steps"].as_u64()),
        (Some(8), Some(8))
    );
    assert!(
        events.next_status().is_none(),
        "the stream ends after the final status"
    );
    // Updates may be merged (a watch channel keeps only the latest), but never go back.
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]) && steps.len() >= 2,
        "steps {steps:?}"
    );
    assert!(
        last["preview"].as_u64().unwrap() >= 2,
        "a preview at least at the end of each octave: {previews:?}"
    );

    let preview = studio.get(&format!("/api/jobs/{job}/preview"));
    assert_eq!(preview.status, 200);
    assert_eq!(
        image::guess_format(&preview.bytes).unwrap(),
        image::ImageFormat::Jpeg
    );

    let result = studio.get(&format!("/api/jobs/{job}/result"));
    assert_eq!(result.status, 200);
    let picture = image::load_from_memory(&result.bytes).unwrap();
    assert_eq!((picture.width(), picture.height()), (160, 106));
    let text = deepdream::media::image_io::png_text(&result.bytes).unwrap();
    let value = |key: &str| text.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(value("deepdream:seed").as_deref(), Some("5"));
    assert_eq!(value("deepdream:model").as_deref(), Some(MODEL));
    assert_eq!(value("deepdream:iterations").as_deref(), Some("4"));

    let listed = studio.get("/api/jobs").json();
    let entry = &listed[0];
    assert_eq!(entry["id"], job);
    assert_eq!(entry["request"]["seed"], 5);
    let command = entry["command"].as_str().unwrap();
    assert!(
        command.contains("--model efficientnet-lite0") && command.contains("--octaves 2"),
        "{command}"
    );
    assert!(
        command.contains("--iterations 4") && command.contains("--seed 5"),
        "{command}"
    );
}

#[test]
fn cancel_stops_a_running_dream_at_once() {
    let studio = Studio::start(config());
    let image = studio.upload(&photo_png(224));
    let job = studio.submit(&long_dream(&image));
    studio.wait_for(job, Duration::from_secs(120), |s| {
        s["step"].as_u64() >= Some(2)
    });
    let asked = Instant::now();
    let answer = studio.post(&format!("/api/jobs/{job}/cancel"), "application/json", b"");
    assert_eq!(answer.status, 200);
    let status = studio.wait_for(job, Duration::from_secs(10), |s| s["state"] == "cancelled");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped after {:?}",
        asked.elapsed()
    );
    assert!(status["step"].as_u64().unwrap() < 500);
    let error = studio.get(&format!("/api/jobs/{job}/result")).error(409);
    assert!(error.contains("cancelled"), "{error}");
}

#[test]
fn jobs_wait_in_order_and_cancelled_ones_free_their_place() {
    let studio = Studio::start(config());
    let image = studio.upload(&photo_png(224));
    let first = studio.submit(&long_dream(&image));
    studio.wait_for(first, Duration::from_secs(120), |s| s["state"] == "running");
    let small = json!({"image": image, "model": MODEL, "octaves": 1, "iterations": 2, "seed": 2});
    let second = studio.submit(&small);
    let third = studio.submit(&small);
    assert_eq!(studio.status(second)["position"], 0);
    assert_eq!(studio.status(third)["position"], 1);

    studio.post(&format!("/api/jobs/{second}/cancel"), "text/plain", b"");
    assert_eq!(studio.status(second)["state"], "cancelled");
    assert_eq!(studio.status(third)["position"], 0, "moved up");

    studio.post(&format!("/api/jobs/{first}/cancel"), "text/plain", b"");
    let done = studio.wait_for(third, Duration::from_secs(120), |s| s["state"] == "done");
    assert_eq!(done["step"], 2);
    assert_eq!(studio.status(first)["state"], "cancelled");
    assert_eq!(
        studio.status(second)["step"],
        0,
        "a cancelled waiting job never ran"
    );
}

#[test]
fn a_job_whose_page_went_away_is_cancelled() {
    let studio = Studio::start(config());
    let image = studio.upload(&photo_png(224));
    let job = studio.submit(&long_dream(&image));
    let mut events = studio.events(job);
    // Read until it runs, then hang up.
    while events.next_status().expect("status")["state"] != "running" {}
    drop(events);
    let status = studio.wait_for(job, Duration::from_secs(20), |s| s["state"] == "cancelled");
    assert_eq!(status["error"], "its page went away");
}

/// A PNG whose header announces `width`x`height` pixels, followed by the start of a
/// compressed stream: a decompression bomb's first bytes.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
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
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let typed = [kind, data].concat();
        png.extend_from_slice(&typed);
        png.extend_from_slice(&crc32(&typed).to_be_bytes());
    };
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &header);
    chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x60]);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn bad_requests_are_answered_with_a_4xx_and_a_json_message() {
    let mut config = config();
    config.max_upload_bytes = 1 << 20;
    let studio = Studio::start(config);

    // Uploads.
    let error = studio
        .post_raw("/api/images", "image/png", &vec![0u8; 2 << 20])
        .error(413);
    assert!(error.contains("size limit"), "{error}");
    studio
        .post("/api/images", "image/png", b"plain text, not a picture")
        .error(415);
    studio
        .post("/api/images", "text/plain", &photo_png(64))
        .error(415);
    let error = studio
        .post("/api/images", "image/png", &png_header(17_000, 17_000))
        .error(413);
    assert!(error.contains("17000x17000"), "{error}");
    let mut truncated = photo_png(64);
    truncated.truncate(truncated.len() / 2);
    studio
        .post("/api/images", "image/png", &truncated)
        .error(422);
    studio.post("/api/images", "image/png", b"").error(415);

    // Dreams.
    let image = studio.upload(&photo_png(96));
    let dream = |extra: serde_json::Value| {
        let mut request = json!({"image": image, "model": MODEL});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    let error = studio
        .post_json("/api/dream", &dream(json!({"layers": ["block99"]})))
        .error(422);
    assert!(error.contains("no layer 'block99'"), "{error}");
    studio
        .post_json("/api/dream", &dream(json!({"channels": [100000]})))
        .error(422);
    studio
        .post_json("/api/dream", &dream(json!({"class": "no such class"})))
        .error(422);
    studio
        .post_json("/api/dream", &dream(json!({"model": "alexnet"})))
        .error(422);
    studio
        .post_json("/api/dream", &dream(json!({"iterations": 0})))
        .error(422);
    studio
        .post_json("/api/dream", &dream(json!({"octaves": 1000})))
        .error(422);
    studio
        .post_json("/api/dream", &dream(json!({"step": "big"})))
        .error(422);
    studio
        .post_json("/api/dream", &dream(json!({"image": "u999"})))
        .error(422);
    let error = studio.post_json("/api/dream", &json!({})).error(422);
    assert!(error.contains("missing field `image`"), "{error}");
    let error = studio
        .post("/api/dream", "application/json", b"{\"image\": ")
        .error(400);
    assert!(error.contains("invalid request"), "{error}");
    studio
        .post_raw("/api/dream", "application/json", &vec![b' '; 100 << 10])
        .error(413);

    // Unknown things.
    studio.get("/api/jobs/12345").error(404);
    studio.get("/api/jobs/abc/result").error(404);
    studio.get("/api/images/u999").error(404);
    studio.get("/api/models/alexnet").error(422);
    studio.get("/no/such/page").error(404);
    studio.get("/examples/../Cargo.toml").error(404);

    // The server still works.
    assert_eq!(studio.get("/").status, 200);
    let job = studio.submit(&dream(json!({"octaves": 1, "iterations": 1})));
    let status = studio.wait_for(job, Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
}

#[test]
fn the_page_and_the_catalog_are_served() {
    let studio = Studio::start(config());
    let page = studio.get("/");
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.bytes).unwrap();
    for id in [
        "upload", "model", "layer", "dream", "preview", "progress", "cancel", "download", "gallery",
    ] {
        assert!(
            html.contains(&format!("data-testid=\"{id}\"")),
            "the page has a {id} control"
        );
    }
    let models = studio.get("/api/models").json();
    assert!(
        models
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "vgg16")
    );
    let info = studio.get(&format!("/api/models/{MODEL}")).json();
    assert_eq!(info["classifier"], true);
    let layers = info["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .any(|l| l["name"] == "block10" && l["produces"].is_string())
    );
    let classes = studio.get("/api/classes").json();
    assert_eq!(classes.as_array().unwrap().len(), 1000);
    let examples = studio.get("/api/examples").json();
    let url = examples[0]["url"].as_str().unwrap();
    let photo = studio.get(url);
    assert_eq!(
        image::guess_format(&photo.bytes).unwrap(),
        image::ImageFormat::Png
    );
}

/// A painting from the README's examples, scaled to `width` pixels wide, as PNG.
fn painting_png(width: u32) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/paintings/starry_night.jpg"
    );
    let painting = image::open(path).unwrap();
    let small = painting.resize(width, width, image::imageops::FilterType::Triangle);
    let mut bytes = std::io::Cursor::new(Vec::new());
    small.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn png_value(png: &[u8], key: &str) -> Option<String> {
    deepdream::media::image_io::png_text(png)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn a_style_transfer_runs_as_a_job() {
    let studio = Studio::start(config());
    let photo = studio.upload(&photo_png(96));
    let painting = studio.upload(&painting_png(96));
    let request = json!({
        "image": photo, "styles": [{"image": painting}], "size": 64, "scales": 1,
        "iterations": 4, "seed": 3,
    });
    let job = studio.submit_to("/api/style", &request);
    let status = studio.wait_for(job, Duration::from_secs(300), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    assert!(status["preview"].as_u64().unwrap() >= 1);
    let result = studio.get(&format!("/api/jobs/{job}/result")).bytes;
    let picture = image::load_from_memory(&result).unwrap();
    assert_eq!(picture.width().max(picture.height()), 64);
    assert_eq!(
        png_value(&result, "deepdream:mode").as_deref(),
        Some("style")
    );
    assert_eq!(
        png_value(&result, "deepdream:iterations").as_deref(),
        Some("4")
    );
    let listed = studio.get(&format!("/api/jobs/{job}")).json();
    assert_eq!(listed["mode"], "style");
    let command = listed["command"].as_str().unwrap();
    assert!(
        command.starts_with("deepdream style photo.png --style painting1.png -o styled.png")
            && command.contains("--size 64 --scales 1"),
        "{command}"
    );

    for (bad, why) in [
        (json!({"image": photo, "styles": []}), "paintings"),
        (
            json!({"image": photo, "styles": [{"image": "u999"}]}),
            "u999",
        ),
        (
            json!({"image": photo, "styles": [{"image": painting, "weight": -1}]}),
            "weight",
        ),
        (
            json!({"image": photo, "styles": [{"image": painting}], "size": 100000}),
            "size",
        ),
    ] {
        let error = studio.post_json("/api/style", &bad).error(422);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn a_visualisation_runs_as_a_job() {
    let studio = Studio::start(config());
    let request = json!({"model": MODEL, "layer": "block10", "channel": 3, "size": 64, "steps": 8, "seed": 4});
    let job = studio.submit_to("/api/visualize", &request);
    let status = studio.wait_for(job, Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["steps"], 8);
    let result = studio.get(&format!("/api/jobs/{job}/result")).bytes;
    let picture = image::load_from_memory(&result).unwrap();
    assert_eq!((picture.width(), picture.height()), (64, 64));
    assert_eq!(
        png_value(&result, "deepdream:targets").as_deref(),
        Some("block10:3")
    );
    let listed = studio.get(&format!("/api/jobs/{job}")).json();
    assert_eq!(listed["source"], serde_json::Value::Null);
    assert!(
        listed["command"]
            .as_str()
            .unwrap()
            .contains("--layer block10 --channel 3")
    );

    for (bad, why) in [
        (
            json!({"model": MODEL, "layer": "block10", "class": "goldfish"}),
            "either",
        ),
        (json!({"model": MODEL}), "either"),
        (
            json!({"model": MODEL, "layer": "block10", "channel": 100000}),
            "channel",
        ),
        (
            json!({"model": MODEL, "class": "goldfish", "channel": 1}),
            "either",
        ),
        (json!({"model": MODEL, "layer": "nope"}), "no layer"),
        (
            json!({"model": MODEL, "class": "goldfish", "steps": 0}),
            "steps",
        ),
    ] {
        let error = studio.post_json("/api/visualize", &bad).error(422);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn an_endless_zoom_runs_as_a_job_and_gives_a_gif() {
    let studio = Studio::start(config());
    let image = studio.upload(&photo_png(96));
    let request = json!({
        "image": image, "frames": 4, "fps": 10,
        "dream": {"model": MODEL, "octaves": 1, "iterations": 2, "seed": 6},
        "octaves_per_frame": 1, "iterations_per_frame": 1,
    });
    let job = studio.submit_to("/api/zoom", &request);
    let status = studio.wait_for(job, Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(
        (status["step"].as_u64(), status["steps"].as_u64()),
        (Some(4), Some(4))
    );
    assert!(
        status["preview"].as_u64().unwrap() >= 4,
        "a preview per frame: {status}"
    );
    let result = studio.get(&format!("/api/jobs/{job}/result"));
    assert_eq!(result.status, 200);
    use image::AnimationDecoder;
    let frames = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&result.bytes))
        .unwrap()
        .into_frames()
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0].buffer().dimensions(), (96, 63));
    let listed = studio.get(&format!("/api/jobs/{job}")).json();
    let command = listed["command"].as_str().unwrap();
    assert!(
        command.starts_with("deepdream zoom photo.png -o zoom.gif --model efficientnet-lite0")
            && command.contains("--frames 4 --fps 10"),
        "{command}"
    );
    studio
        .post_json("/api/zoom", &json!({"image": image, "frames": 0}))
        .error(422);
    studio
        .post_json(
            "/api/zoom",
            &json!({"image": image, "dream": {"octave": 2}}),
        )
        .error(422);
}

#[test]
fn a_video_upload_is_dreamed_along_its_motion() {
    let studio = Studio::start(config());
    let clip = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deepdream/tests/fixtures/carphone.mp4"
    ))
    .unwrap();
    let upload = studio.post("/api/videos", "video/mp4", &clip);
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.bytes)
    );
    let info = upload.json();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(176), Some(144))
    );
    let video = info["id"].as_str().unwrap().to_string();
    let request = json!({
        "video": video, "duration": 0.2,
        "dream": {"model": MODEL, "octaves": 1, "iterations": 1, "seed": 1},
        "octaves_per_frame": 1, "iterations_per_frame": 1,
    });
    let job = studio.submit_to("/api/video", &request);
    let status = studio.wait_for(job, Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    let result = studio.get(&format!("/api/jobs/{job}/result"));
    assert_eq!(result.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dream.mp4");
    std::fs::write(&path, &result.bytes).unwrap();
    let dreamed = deepdream::media::ffmpeg::probe(&path).unwrap();
    assert_eq!((dreamed.width, dreamed.height), (176, 144));
    assert_eq!(dreamed.frame_estimate(), Some(6), "0.2 s at 29.97 fps");

    studio
        .post("/api/videos", "video/mp4", b"not a video at all")
        .error(415);
    studio
        .post("/api/videos", "image/png", &photo_png(32))
        .error(415);
    studio
        .post_json("/api/video", &json!({"video": "v999"}))
        .error(422);
    studio
        .post_json("/api/video", &json!({"video": video, "start": 1000}))
        .error(422);
}

#[test]
fn a_painted_mask_keeps_the_rest_and_keyframes_drive_a_zoom() {
    let studio = Studio::start(config());
    let photo = photo_png(96);
    let image = studio.upload(&photo);
    // A mask as the brush sends it: white where painted (the left half), black elsewhere.
    let mask =
        image::GrayImage::from_fn(96, 63, |x, _| image::Luma([if x < 48 { 255 } else { 0 }]));
    let mut png = std::io::Cursor::new(Vec::new());
    mask.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let mask = studio.upload(&png.into_inner());
    let request = json!({
        "image": image, "model": MODEL, "octaves": 1, "iterations": 3, "seed": 2,
        "mask": mask,
    });
    let job = studio.submit(&request);
    let status = studio.wait_for(job, Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    let result = studio.get(&format!("/api/jobs/{job}/result"));
    let dreamed = image::load_from_memory(&result.bytes).unwrap().to_rgb8();
    let original = image::load_from_memory(&photo).unwrap().to_rgb8();
    let right_kept =
        (64..96).all(|x| (0..63).all(|y| dreamed.get_pixel(x, y) == original.get_pixel(x, y)));
    assert!(right_kept, "the unpainted half stays");
    assert!((0..32).any(|x| (0..63).any(|y| dreamed.get_pixel(x, y) != original.get_pixel(x, y))));
    let listed = studio.get(&format!("/api/jobs/{job}")).json();
    assert!(
        listed["command"]
            .as_str()
            .unwrap()
            .contains("--mask mask.png"),
        "{listed}"
    );
    studio
        .post_json("/api/dream", &json!({"image": image, "mask": "nope"}))
        .error(422);

    // A zoom whose step is keyframed.
    let request = json!({
        "image": image, "frames": 3, "fps": 10,
        "dream": {"model": MODEL, "octaves": 1, "iterations": 1, "seed": 6},
        "octaves_per_frame": 1, "iterations_per_frame": 1,
        "keyframes": {"keyframes": [{"frame": 0, "step": 0.5}, {"frame": 2, "step": 3}]},
    });
    let job = studio.submit_to("/api/zoom", &request);
    let status = studio.wait_for(job, Duration::from_secs(120), |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(status["state"], "done", "{status}");
    let listed = studio.get(&format!("/api/jobs/{job}")).json();
    assert!(
        listed["command"]
            .as_str()
            .unwrap()
            .contains("--keyframes keyframes.json")
    );
    let bad = json!({
        "image": image, "frames": 3,
        "keyframes": {"keyframes": [{"frame": 0, "speed": 1}]},
    });
    let message = studio.post_json("/api/zoom", &bad).error(422);
    assert!(message.contains("unknown parameter 'speed'"), "{message}");
}

/// A live-dream socket to the studio, with a read timeout.
type LiveSocket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn live_socket(studio: &Studio) -> LiveSocket {
    let url = format!("{}/api/live", studio.url.replacen("http://", "ws://", 1));
    let (socket, _) = tungstenite::connect(url).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
    }
    socket
}

fn send_json(socket: &mut LiveSocket, value: serde_json::Value) {
    socket
        .send(tungstenite::Message::text(value.to_string()))
        .unwrap();
}

/// The next JSON message (dreams in between are skipped).
fn next_json(socket: &mut LiveSocket) -> serde_json::Value {
    loop {
        match socket.read().unwrap() {
            tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            tungstenite::Message::Binary(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// The next JSON message that is not a dream's report.
fn next_notice(socket: &mut LiveSocket) -> serde_json::Value {
    loop {
        let message = next_json(socket);
        if message.get("frame").is_none() {
            return message;
        }
    }
}

/// A camera frame: the cat photo at 64x48 as JPEG.
fn camera_frame() -> Vec<u8> {
    let photo = image::load_from_memory(&photo_png(64)).unwrap();
    let frame = photo.resize_exact(64, 48, image::imageops::FilterType::Triangle);
    let mut bytes = std::io::Cursor::new(Vec::new());
    frame
        .write_to(&mut bytes, image::ImageFormat::Jpeg)
        .unwrap();
    bytes.into_inner()
}

#[test]
fn a_live_dream_answers_frames_with_dreams_and_bad_messages_with_one_line() {
    let studio = Studio::start(config());
    // Bad start messages end the socket with a reason.
    for (start, expected) in [
        (json!({"width": 8, "height": 48}), "each side must be"),
        (json!({"width": 64, "height": 48, "blend": 3}), "blend"),
        (
            json!({"width": 64, "height": 48, "flow": "lucas"}),
            "unknown optical flow",
        ),
        (
            json!({"width": 64, "height": 48, "dream": {"model": "alexnet"}}),
            "alexnet",
        ),
        (json!({"size": 64}), "not a live request"),
    ] {
        let mut socket = live_socket(&studio);
        send_json(&mut socket, start.clone());
        let answer = next_json(&mut socket);
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{start}: {answer}");
    }

    let mut socket = live_socket(&studio);
    let start = json!({"width": 64, "height": 48, "iterations_per_frame": 1,
                       "dream": {"model": MODEL, "seed": 3}});
    send_json(&mut socket, start.clone());
    assert_eq!(next_notice(&mut socket)["ready"]["model"], MODEL);
    // A second live dream waits for this one to end.
    let mut second = live_socket(&studio);
    send_json(&mut second, start.clone());
    let busy = next_json(&mut second);
    assert!(
        busy["error"]
            .as_str()
            .unwrap_or_default()
            .contains("already running"),
        "{busy}"
    );
    // Frames in, dreams out: a report, then the dream as JPEG.
    let frame = camera_frame();
    let mut dreams = 0;
    send_json(&mut socket, json!({"record": true}));
    while dreams < 3 {
        socket
            .send(tungstenite::Message::binary(frame.clone()))
            .unwrap();
        let report = loop {
            let message = next_json(&mut socket);
            if message.get("frame").is_some() {
                break message;
            }
        };
        assert!(report["latency_ms"].as_f64().unwrap() >= 0.0, "{report}");
        assert!(report["change"].as_f64().unwrap() > 0.0, "{report}");
        match socket.read().unwrap() {
            tungstenite::Message::Binary(jpeg) => {
                let dream = image::load_from_memory(&jpeg).unwrap();
                assert_eq!((dream.width(), dream.height()), (64, 48));
            }
            other => panic!("expected a dream, got {other:?}"),
        }
        dreams += 1;
    }
    // A setting it does not know: one warning, and the dream goes on.
    send_json(&mut socket, json!({"set": "speed", "value": 2}));
    let warning = next_notice(&mut socket);
    assert!(
        warning["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown setting"),
        "{warning}"
    );
    // Another model mid-stream: the dream goes on with VGG16's default layers.
    let changes_before = loop {
        socket
            .send(tungstenite::Message::binary(frame.clone()))
            .unwrap();
        let message = next_json(&mut socket);
        if let Some(changes) = message["changes"].as_u64() {
            break changes;
        }
    };
    send_json(&mut socket, json!({"set": "model", "value": "VGG16"}));
    let mut switched = false;
    for _ in 0..20 {
        socket
            .send(tungstenite::Message::binary(frame.clone()))
            .unwrap();
        let message = next_json(&mut socket);
        if message["changes"]
            .as_u64()
            .is_some_and(|c| c > changes_before)
        {
            switched = true;
            break;
        }
    }
    assert!(switched, "the model change never took effect");
    send_json(&mut socket, json!({"set": "model", "value": "alexnet"}));
    let warning = next_notice(&mut socket);
    assert!(
        warning["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("alexnet"),
        "{warning}"
    );
    send_json(&mut socket, json!({"set": "step", "value": 0.5}));
    send_json(&mut socket, json!({"record": false}));
    let recorded = next_notice(&mut socket);
    let url = recorded["recording"].as_str().expect("a recording");
    let mp4 = studio.get(url);
    assert_eq!(mp4.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    std::fs::write(&path, &mp4.bytes).unwrap();
    let info = deepdream::media::ffmpeg::probe(&path).unwrap();
    assert_eq!((info.width, info.height), (64, 48));
    assert_eq!(studio.get("/api/live/recordings/99").status, 404);
    // Once closed, the next live dream may start.
    socket.close(None).unwrap();
    drop(socket);
    let start_again = Instant::now();
    loop {
        let mut again = live_socket(&studio);
        send_json(&mut again, start.clone());
        let answer = next_notice(&mut again);
        if answer.get("ready").is_some() {
            break;
        }
        assert!(
            start_again.elapsed() < Duration::from_secs(30),
            "the first live dream did not end: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_live_dream_can_read_a_source_on_the_server() {
    let studio = Studio::start(config());
    let clip = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deepdream/tests/fixtures/carphone.mp4"
    );
    let mut socket = live_socket(&studio);
    send_json(
        &mut socket,
        json!({"width": 88, "height": 72, "iterations_per_frame": 1, "source": clip,
               "dream": {"model": MODEL}}),
    );
    assert_eq!(next_notice(&mut socket)["ready"]["model"], MODEL);
    // The clip's frames come at its own rate; no frame is sent from here.
    let mut frames = Vec::new();
    while frames.len() < 3 {
        let report = next_json(&mut socket);
        if let Some(frame) = report["frame"].as_u64() {
            frames.push(frame);
        }
    }
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
    // A source that is not there: one line.
    drop(socket);
    let missing = concat!(env!("CARGO_MANIFEST_DIR"), "/no-such-clip.mp4");
    let answer = loop {
        let mut socket = live_socket(&studio);
        send_json(
            &mut socket,
            json!({"width": 88, "height": 72, "source": missing, "dream": {"model": MODEL}}),
        );
        let answer = next_notice(&mut socket);
        if !answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("already running")
        {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no such file, camera or stream"),
        "{answer}"
    );
}
