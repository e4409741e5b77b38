//! The studio page in a real browser: headless Chromium driven over WebDriver by
//! chromedriver (Debian's `chromium` and `chromium-driver` packages). It uploads a photo,
//! dreams it while watching the preview change, downloads the result and checks its
//! parameters, then cancels a second dream. A second test dreams a fake camera (Chromium's,
//! playing a real clip) live in the Live tab.
//!
//! Without Chromium the test says so and passes, unless `DEEPDREAM_REQUIRE_BROWSER=1` (set
//! by `.ci/run`) makes that a failure. `DEEPDREAM_SCREENSHOT=path.png` saves a screenshot of
//! the page after the first dream, `DEEPDREAM_LIVE_SCREENSHOT=path.png` one of the Live tab
//! (the README's pictures).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Studio, config, photo_png};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect(port: u16, extra_args: &[String]) -> Client {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra_args);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    let start = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return client,
            Err(error) if start.elapsed() < Duration::from_secs(30) => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot start a Chromium session: {error}"),
        }
    }
}

/// Clicks the control with this `data-testid`.
async fn click(client: &Client, testid: &str) {
    client
        .find(Locator::Css(&format!("[data-testid={testid}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The address the link with this `data-testid` points at.
async fn link_target(client: &Client, testid: &str) -> String {
    client
        .find(Locator::Css(&format!("[data-testid={testid}]")))
        .await
        .unwrap()
        .prop("href")
        .await
        .unwrap()
        .expect("a download link")
}

/// The bytes at `href`.
async fn fetch(href: String) -> Vec<u8> {
    tokio::task::spawn_blocking(move || {
        let mut response = ureq::get(&href).call().unwrap();
        response.body_mut().read_to_vec().unwrap()
    })
    .await
    .unwrap()
}

/// Evaluates `script` (a function body) in the page.
async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Waits until `script` returns true.
async fn until(client: &Client, what: &str, limit: Duration, script: &str) {
    let start = Instant::now();
    while js(client, script).await != json!(true) {
        let status = js(
            client,
            "return document.getElementById('status').textContent",
        )
        .await;
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}; status: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a job with the main button and waits until it ends; returns its final state.
async fn run_job(client: &Client, what: &str, limit: Duration) -> String {
    let before = js(
        client,
        "return document.getElementById('status').dataset.job || ''",
    )
    .await;
    click(client, "dream").await;
    let ended = format!(
        "const s = document.getElementById('status').dataset; \
         return s.job !== undefined && s.job !== '{}' && ['done', 'failed', 'cancelled'].includes(s.state)",
        before.as_str().unwrap_or("")
    );
    until(client, what, limit, &ended).await;
    js(
        client,
        "return document.getElementById('status').dataset.state",
    )
    .await
    .as_str()
    .unwrap()
    .to_string()
}

fn status_is(text: &str) -> String {
    format!("return document.getElementById('status').textContent.startsWith('{text}')")
}

/// Whether Chromium and chromedriver are here (a failure under `.ci/run` if not).
fn have_browser() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let message = "Chromium or chromedriver is missing: apt-get install chromium chromium-driver";
    assert!(
        std::env::var("DEEPDREAM_REQUIRE_BROWSER").is_err(),
        "{message}"
    );
    eprintln!("skipped: {message}");
    false
}

/// Runs `test` on a studio in Chromium (started with `chromium_args` too), closing the
/// browser even when a check fails.
async fn in_browser<F, Fut>(chromium_args: &[String], test: F)
where
    F: FnOnce(Client, Studio) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let studio = tokio::task::spawn_blocking(|| Studio::start(config()))
        .await
        .unwrap();
    let port = free_port();
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let client = connect(port, chromium_args).await;
    let outcome = AssertUnwindSafe(test(client.clone(), studio))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_dreams_a_photo_in_the_browser() {
    if have_browser() {
        in_browser(&[], |client, studio| async move {
            use_the_page(&client, studio).await
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_dreams_a_camera_live_in_the_browser() {
    if !have_browser() {
        return;
    }
    // The fake camera plays four seconds of the carphone clip, over and over.
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("camera.y4m");
    let carphone =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deepdream/tests/fixtures/carphone.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&carphone)
        .args(["-t", "4", "-vf", "scale=320:240", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let args = [
        "--use-fake-ui-for-media-stream".to_string(),
        "--use-fake-device-for-media-stream".to_string(),
        format!("--use-file-for-fake-video-capture={}", clip.display()),
    ];
    in_browser(&args, |client, studio| async move {
        dream_live(&client, studio, dir.path()).await
    })
    .await;
}

/// A number the page shows in the live view's `data-NAME`.
async fn live_number(client: &Client, name: &str) -> f64 {
    let value = js(
        client,
        &format!("return document.getElementById('live-view').dataset.{name} || '-1'"),
    )
    .await;
    value.as_str().unwrap().parse().unwrap()
}

/// The live view's pixels, summed coarsely (a fingerprint of the frame shown).
async fn live_pixels(client: &Client) -> Vec<u64> {
    let value = js(
        client,
        "const c = document.getElementById('live-view'); \
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
         const sums = new Array(16).fill(0); \
         for (let i = 0; i < d.length; i += 4) sums[Math.floor(16 * i / d.length)] += d[i] + d[i + 1] + d[i + 2]; \
         return sums;",
    )
    .await;
    serde_json::from_value(value).unwrap()
}

/// Waits until the live view shows a frame dreamed after `frame`; returns its number.
async fn next_live_frame(client: &Client, frame: f64) -> f64 {
    until(
        client,
        "the next live frame",
        Duration::from_secs(60),
        &format!(
            "return Number(document.getElementById('live-view').dataset.frame || -1) > {frame}"
        ),
    )
    .await;
    live_number(client, "frame").await
}

async fn dream_live(client: &Client, studio: Studio, dir: &Path) {
    client.goto(&format!("{}/", studio.url)).await.unwrap();
    until(
        client,
        "the layers",
        Duration::from_secs(300),
        "return document.getElementById('layer').options.length > 1",
    )
    .await;
    client
        .find(Locator::Css("[data-testid=model]"))
        .await
        .unwrap()
        .select_by_value("efficientnet-lite0")
        .await
        .unwrap();
    until(
        client,
        "the model's layers",
        Duration::from_secs(300),
        "return [...document.getElementById('layer').options].some(o => o.value === 'block5')",
    )
    .await;
    click(client, "tab-live").await;
    click(client, "live-start").await;
    // The first dreams (the model loads first).
    let first = next_live_frame(client, -1.0).await;
    let before = live_pixels(client).await;
    let mut frame = first;
    for _ in 0..3 {
        frame = next_live_frame(client, frame).await;
    }
    assert_ne!(
        live_pixels(client).await,
        before,
        "the dreamed frames change"
    );
    if let Ok(path) = std::env::var("DEEPDREAM_LIVE_SCREENSHOT") {
        std::fs::write(path, client.screenshot().await.unwrap()).unwrap();
    }
    let fps = js(
        client,
        "return document.getElementById('live-fps').textContent",
    )
    .await;
    let latency = js(
        client,
        "return document.getElementById('live-latency').textContent",
    )
    .await;
    let (fps, latency) = (fps.as_str().unwrap(), latency.as_str().unwrap());
    let fps_value: f64 = fps.trim_end_matches(" fps").parse().unwrap_or(0.0);
    let latency_value: f64 = latency.trim_end_matches(" ms").parse().unwrap_or(-1.0);
    eprintln!("live in the browser: {fps}, latency {latency}");
    assert!(fps_value > 0.0, "{fps}");
    assert!(latency_value >= 0.0, "{latency}");

    // The dream's strength before, then the step and blend turned down mid-stream.
    let mut strong = 0.0;
    for _ in 0..3 {
        frame = next_live_frame(client, frame).await;
        strong += live_number(client, "change").await / 3.0;
    }
    // Each change is in effect by the second frame after it (the frame being dreamed
    // when it came may still have the old settings).
    let mut took = Duration::ZERO;
    for (slider, value) in [("live_blend", 0.0), ("live_step", 0.1)] {
        let changes = live_number(client, "changes").await;
        let asked = Instant::now();
        js(
            client,
            &format!(
                "const s = document.getElementById('{slider}'); s.value = {value}; \
                 s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); \
                 return true;"
            ),
        )
        .await;
        let mut frames_between = 0;
        while live_number(client, "changes").await < changes + 1.0 {
            assert!(
                frames_between < 3,
                "{slider}: {frames_between} frames before the change"
            );
            frame = next_live_frame(client, frame).await;
            frames_between += 1;
        }
        took = took.max(asked.elapsed());
    }
    frame = next_live_frame(client, frame).await;
    let weak = live_number(client, "change").await;
    eprintln!(
        "settings changed mid-stream: in effect after {:.0} ms at most; change per pixel \
         {strong:.2} levels before, {weak:.2} after",
        took.as_secs_f64() * 1000.0
    );
    assert!(weak < 0.5 * strong, "{weak} vs {strong}");

    // Record a few frames and download the MP4.
    click(client, "live-record").await;
    for _ in 0..4 {
        frame = next_live_frame(client, frame).await;
    }
    click(client, "live-record").await;
    until(
        client,
        "the recording",
        Duration::from_secs(60),
        "return !document.getElementById('live-download').hidden",
    )
    .await;
    let href = link_target(client, "live-download").await;
    let mp4 = fetch(href).await;
    let path = dir.join("live.mp4");
    std::fs::write(&path, &mp4).unwrap();
    let info = deepdream::media::ffmpeg::probe(&path).unwrap();
    assert_eq!((info.width, info.height), (320, 240));
    assert!(info.frames.unwrap_or(0) >= 4, "{info:?}");

    // Stop frees the camera.
    js(client, "window.liveStream = live.stream; return true").await;
    click(client, "live-stop").await;
    until(
        client,
        "the camera to stop",
        Duration::from_secs(5),
        "return live === null && window.liveStream.getTracks().every(t => t.readyState === 'ended')",
    )
    .await;
}

async fn use_the_page(client: &Client, studio: Studio) {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("cat.png");
    std::fs::write(&photo, photo_png(240)).unwrap();

    client.goto(&format!("{}/", studio.url)).await.unwrap();
    until(
        client,
        "the layers",
        Duration::from_secs(300),
        "return document.getElementById('layer').options.length > 1",
    )
    .await;
    client
        .find(Locator::Css("[data-testid=upload]"))
        .await
        .unwrap()
        .send_keys(photo.to_str().unwrap())
        .await
        .unwrap();
    until(
        client,
        "the upload",
        Duration::from_secs(30),
        &status_is("Ready to dream"),
    )
    .await;
    client
        .find(Locator::Css("[data-testid=model]"))
        .await
        .unwrap()
        .select_by_value("efficientnet-lite0")
        .await
        .unwrap();
    until(
        client,
        "efficientnet's layers",
        Duration::from_secs(300),
        "return [...document.getElementById('layer').options].some(o => o.value === 'block10')",
    )
    .await;
    // Sliders: 3 octaves of 8 steps, a fixed seed.
    js(
        client,
        "for (const [k, v] of [['octaves', 3], ['iterations', 8]]) { \
           const e = document.getElementById(k); e.value = v; e.dispatchEvent(new Event('input')); } \
         document.getElementById('seed').value = 11;",
    )
    .await;

    // Dream, watching the preview.
    let preview = client
        .find(Locator::Css("[data-testid=preview]"))
        .await
        .unwrap();
    client
        .find(Locator::Css("[data-testid=dream]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut previews = Vec::new();
    let start = Instant::now();
    loop {
        let src = preview.attr("src").await.unwrap().unwrap_or_default();
        if src.contains("/preview?v=") && previews.last() != Some(&src) {
            previews.push(src);
        }
        let done = js(client, &status_is("Done")).await == json!(true);
        if done {
            break;
        }
        let failed = js(client, &status_is("Failed")).await == json!(true);
        assert!(!failed, "the dream failed");
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the dream did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        previews.len() >= 2,
        "the preview changed {} times before the end: {previews:?}",
        previews.len()
    );
    let progress = js(
        client,
        "const p = document.querySelector('[data-testid=progress]'); return p.value / p.max",
    )
    .await;
    assert_eq!(progress.as_f64(), Some(1.0), "the progress bar is full");
    let command = js(
        client,
        "return document.getElementById('command').textContent",
    )
    .await;
    assert!(command.as_str().unwrap().contains("--seed 11"), "{command}");

    // Download what the link points at.
    let href = link_target(client, "download").await;
    let png = fetch(href).await;
    let picture = image::load_from_memory(&png).unwrap();
    assert_eq!((picture.width(), picture.height()), (240, 159));
    let text = deepdream::media::image_io::png_text(&png).unwrap();
    assert!(
        text.iter().any(|(k, v)| k == "deepdream:seed" && v == "11"),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|(k, v)| k == "deepdream:octaves" && v == "3")
    );
    let items = client
        .find_all(Locator::Css(
            "[data-testid=gallery] [data-testid=gallery-item]",
        ))
        .await
        .unwrap();
    assert_eq!(items.len(), 1, "the gallery shows the dream");
    if let Ok(path) = std::env::var("DEEPDREAM_SCREENSHOT") {
        js(client, "document.getElementById('compare').value = 50; document.getElementById('compare').dispatchEvent(new Event('input'));").await;
        std::fs::write(path, client.screenshot().await.unwrap()).unwrap();
    }

    // The brush: paint the left third of the photo, dream again; the rest stays.
    click(client, "mask-paint").await;
    js(
        client,
        "const c = document.getElementById('mask-canvas'), b = c.getBoundingClientRect(); \
         const at = (type, fx, fy) => c.dispatchEvent(new PointerEvent(type, { pointerId: 7, buttons: 1, \
           clientX: b.left + fx * b.width, clientY: b.top + fy * b.height, bubbles: true })); \
         at('pointerdown', 0.05, 0.0); \
         for (let y = 0; y <= 1.0; y += 0.02) for (const x of [0.05, 0.15, 0.25]) at('pointermove', x, y);",
    )
    .await;
    click(client, "mask-paint").await;
    let state = run_job(client, "the masked dream", Duration::from_secs(300)).await;
    assert_eq!(state, "done");
    let href = link_target(client, "download").await;
    let png = fetch(href).await;
    let masked = image::load_from_memory(&png).unwrap().to_rgb8();
    let original = image::load_from_memory(&photo_png(240)).unwrap().to_rgb8();
    let kept =
        (140..240).all(|x| (0..159).all(|y| masked.get_pixel(x, y) == original.get_pixel(x, y)));
    assert!(kept, "the unpainted part stays");
    assert_ne!(masked, original, "the painted part dreams");
    let command = js(
        client,
        "return document.getElementById('command').textContent",
    )
    .await;
    assert!(
        command.as_str().unwrap().contains("--mask mask.png"),
        "{command}"
    );
    click(client, "mask-clear").await;

    // The Zoom tab: a 4-frame GIF with the Dream tab's settings.
    click(client, "tab-zoom").await;
    js(
        client,
        "for (const [k, v] of [['zoom_frames', 4], ['zoom_octaves', 1], ['zoom_iterations', 1], ['fps', 10]]) { \
           const e = document.getElementById(k); e.value = v; e.dispatchEvent(new Event('input')); }",
    )
    .await;
    let state = run_job(client, "the zoom", Duration::from_secs(120)).await;
    assert_eq!(state, "done");
    let shown = js(
        client,
        "return document.getElementById('preview').getAttribute('src')",
    )
    .await;
    let href = link_target(client, "download").await;
    assert!(
        href.ends_with(shown.as_str().unwrap()),
        "{href} shows {shown}"
    );
    let gif = fetch(href).await;
    assert_eq!(image::guess_format(&gif).unwrap(), image::ImageFormat::Gif);
    click(client, "tab-dream").await;

    // A second, longer dream (VGG16, 50 steps an octave), cancelled.
    client
        .find(Locator::Css("[data-testid=model]"))
        .await
        .unwrap()
        .select_by_value("vgg16")
        .await
        .unwrap();
    until(
        client,
        "VGG16's layers",
        Duration::from_secs(300),
        "return [...document.getElementById('layer').options].some(o => o.value === 'block4_conv3')",
    )
    .await;
    js(
        client,
        "const e = document.getElementById('iterations'); e.value = 50; e.dispatchEvent(new Event('input'));",
    )
    .await;
    client
        .find(Locator::Css("[data-testid=dream]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the second dream",
        Duration::from_secs(60),
        &status_is("Dreaming"),
    )
    .await;
    client
        .find(Locator::Css("[data-testid=cancel]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the cancel",
        Duration::from_secs(10),
        &status_is("Cancelled"),
    )
    .await;

    // The Visualize tab: a channel grown from noise, with the same live progress.
    client
        .find(Locator::Css("[data-testid=tab-visualize]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("[data-testid=vis-model]"))
        .await
        .unwrap()
        .select_by_value("efficientnet-lite0")
        .await
        .unwrap();
    until(
        client,
        "efficientnet's layers in the Visualize tab",
        Duration::from_secs(60),
        "return [...document.getElementById('vis-layer').options].some(o => o.value === 'block10')",
    )
    .await;
    js(
        client,
        "document.getElementById('vis-layer').value = 'block10'; \
         document.getElementById('vis-channel').value = 3; \
         for (const [k, v] of [['vis_size', 64], ['steps', 32]]) { \
           const e = document.getElementById(k); e.value = v; e.dispatchEvent(new Event('input')); }",
    )
    .await;
    let state = run_job(client, "the visualisation", Duration::from_secs(120)).await;
    assert_eq!(state, "done");
    let items = client
        .find_all(Locator::Css(
            "[data-testid=gallery] [data-testid=gallery-item]",
        ))
        .await
        .unwrap();
    assert_eq!(
        items.len(),
        4,
        "the gallery shows the dream, the masked dream, the zoom and the visualisation"
    );

    // Phone width: nothing sticks out sideways.
    client.set_window_size(400, 900).await.unwrap();
    let overflow = js(
        client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert_eq!(
        overflow.as_i64(),
        Some(0),
        "the page scrolls sideways at 400 px"
    );

    let jobs: Value = tokio::task::spawn_blocking(move || studio.get("/api/jobs").json())
        .await
        .unwrap();
    let summary: Vec<(String, String)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let state = j["status"]["state"].as_str().unwrap();
            (j["mode"].as_str().unwrap().to_string(), state.to_string())
        })
        .collect();
    let expected = [
        ("visualize", "done"),
        ("dream", "cancelled"),
        ("zoom", "done"),
        ("dream", "done"),
        ("dream", "done"),
    ];
    assert_eq!(
        summary,
        expected.map(|(m, s)| (m.to_string(), s.to_string()))
    );
}
