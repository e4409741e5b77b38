//! `GET /api/live`: a live dream over a WebSocket. The page sends a JSON start message
//! ([`LiveRequest`]), then its camera's frames as JPEG (binary messages); the server dreams
//! the newest frame with the previous dream carried along the optical flow (frames that
//! come while one is dreamed are skipped, so the delay stays short) and answers each dream
//! with a JSON report and the dream as JPEG. JSON messages change the settings while it
//! runs (`{"set": "step", "value": 2}`) and start and stop a recording (`{"record": true}`),
//! which ends as an MP4 to download (`{"recording": URL}`). Instead of the page's camera,
//! the start message may name a source on the server (a video file played at its own rate,
//! a camera, a stream). One live dream runs at a time.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use deepdream::Error;
use deepdream::backend::device::Placement;
use deepdream::media::ffmpeg::{FrameRate, VideoWriter};
use deepdream::media::flow::FlowMethod;
use deepdream::media::frames::FrameSource;
use deepdream::media::live::{LiveRecording, LiveSource, Scaled, SourceKind, open_source};
use deepdream::modes::animation::FrameSettings;
use deepdream::modes::live::{LiveReport, LiveSettings, dream_live};
use deepdream::networks::placement::load_named;
use image::RgbImage;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc as async_mpsc;

use crate::jobs::lock;
use crate::requests::DreamSettings;

/// Finished recordings kept for download (the oldest file is deleted beyond this).
const MAX_RECORDINGS: usize = 4;

/// Largest frame side accepted.
const MAX_SIDE: u32 = 1920;

/// The start message: the dream's settings and the frames' size and rate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRequest {
    /// The model, layers, step, … (octaves and iterations are the per-frame ones below).
    #[serde(default = "DreamSettings::standard")]
    pub dream: DreamSettings,
    /// Share of the previous frame's dream carried into the next (0–1).
    #[serde(default = "defaults::blend")]
    pub blend: f32,
    /// Octaves dreamed per frame.
    #[serde(default = "defaults::octaves_per_frame")]
    pub octaves_per_frame: usize,
    /// Steps per octave per frame.
    #[serde(default = "defaults::iterations_per_frame")]
    pub iterations_per_frame: usize,
    /// The optical flow: `dis` or `farneback`.
    #[serde(default = "defaults::flow")]
    pub flow: String,
    /// Frames a second the page sends (the recording's rate).
    #[serde(default = "defaults::fps")]
    pub fps: f64,
    /// Dreamed frames a second to hold by lowering the steps and the size (none: off).
    #[serde(default)]
    pub hold_fps: Option<f64>,
    /// A source on the server to dream instead of the page's frames: a video file (played
    /// at its own rate), a camera (`/dev/video0`) or a stream URL.
    #[serde(default)]
    pub source: Option<String>,
    /// The frames' width (frames of another size are scaled to it).
    pub width: u32,
    /// The frames' height.
    pub height: u32,
}

mod defaults {
    use deepdream::modes::live::LiveSettings;

    pub fn blend() -> f32 {
        LiveSettings::default().blend
    }
    pub fn octaves_per_frame() -> usize {
        LiveSettings::default().next.octaves
    }
    pub fn iterations_per_frame() -> usize {
        LiveSettings::default().next.iterations
    }
    pub fn flow() -> String {
        LiveSettings::default().flow.name().to_string()
    }
    pub fn fps() -> f64 {
        15.0
    }
}

/// What the page sends after the start message, as JSON.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Control {
    /// Changes one live setting (a name of `LiveSettings::NAMES`).
    Set { set: String, value: Value },
    /// Starts (`true`) or ends (`false`) the recording.
    Record { record: bool },
}

/// The live dreams' shared state: one at a time, and the finished recordings.
pub struct LiveHub {
    busy: AtomicBool,
    recordings: Mutex<VecDeque<(u64, PathBuf)>>,
    next_recording: AtomicU64,
    scratch: PathBuf,
}

impl LiveHub {
    /// A hub writing recordings into `scratch`.
    pub fn new(scratch: PathBuf) -> Self {
        LiveHub {
            busy: AtomicBool::new(false),
            recordings: Mutex::new(VecDeque::new()),
            next_recording: AtomicU64::new(1),
            scratch,
        }
    }

    /// The finished recording `id`, if it is kept.
    pub fn recording(&self, id: u64) -> Option<PathBuf> {
        let recordings = self.recordings.lock().unwrap_or_else(|p| p.into_inner());
        recordings
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, path)| path.clone())
    }

    /// Keeps a finished recording; returns its id.
    fn keep(&self, id: u64, path: PathBuf) {
        let mut recordings = self.recordings.lock().unwrap_or_else(|p| p.into_inner());
        recordings.push_back((id, path));
        while recordings.len() > MAX_RECORDINGS {
            if let Some((_, old)) = recordings.pop_front() {
                let _ = std::fs::remove_file(old);
            }
        }
    }
}

/// Marks the hub busy until dropped.
struct Claim<'a>(&'a LiveHub);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }
}

/// A live dream's settings checked against the model, as the start message asks.
pub struct Checked {
    /// The model's name.
    pub model: &'static str,
    /// The settings the dream starts with.
    pub settings: LiveSettings,
    /// The request.
    pub request: LiveRequest,
}

impl LiveRequest {
    /// The live settings this asks for, given the dream's parameters checked against the
    /// model.
    pub fn settings(&self, dream: deepdream::DreamParams) -> Result<LiveSettings, String> {
        let (w, h) = (self.width, self.height);
        if !((16..=MAX_SIDE).contains(&w) && (16..=MAX_SIDE).contains(&h)) {
            return Err(format!(
                "frames of {w}x{h}: each side must be from 16 to {MAX_SIDE}"
            ));
        }
        if !(self.fps.is_finite() && (1.0..=60.0).contains(&self.fps)) {
            return Err("fps must be from 1 to 60".into());
        }
        if !(1..=8).contains(&self.octaves_per_frame)
            || !(1..=50).contains(&self.iterations_per_frame)
        {
            return Err("octaves_per_frame must be 1 to 8 and iterations_per_frame 1 to 50".into());
        }
        Ok(LiveSettings {
            dream,
            next: FrameSettings {
                octaves: self.octaves_per_frame,
                iterations: self.iterations_per_frame,
            },
            blend: self.blend,
            flow: FlowMethod::parse(&self.flow).map_err(|e| e.to_string())?,
            fps: self.hold_fps,
            ..LiveSettings::default()
        })
        .and_then(|settings| {
            settings.validate().map_err(|e| e.to_string())?;
            Ok(settings)
        })
    }
}

/// Frames from the page: JPEG bytes decoded and scaled to the dream's size.
struct PageFrames {
    receiver: mpsc::Receiver<Bytes>,
    size: (u32, u32),
}

impl FrameSource for PageFrames {
    fn next_frame(&mut self) -> deepdream::Result<Option<RgbImage>> {
        loop {
            let Ok(bytes) = self.receiver.recv() else {
                return Ok(None);
            };
            // A frame that does not decode is skipped: the next one comes soon.
            let Ok(picture) = image::load_from_memory(&bytes) else {
                continue;
            };
            let picture = picture.to_rgb8();
            let (w, h) = self.size;
            return Ok(Some(if picture.dimensions() == (w, h) {
                picture
            } else {
                image::imageops::resize(&picture, w, h, image::imageops::FilterType::Triangle)
            }));
        }
    }
}

/// The recording in progress, if any: its id, its file and the recorder.
type Recording = Arc<Mutex<Option<(u64, PathBuf, LiveRecording)>>>;

/// What the dreaming thread tells the connection.
enum Outgoing {
    /// The network is loaded; frames are dreamed from now on.
    Ready,
    /// A dream with its report.
    Dream(LiveReport, Vec<u8>),
    /// Something the page should show (a stream tried again).
    Notice(String),
    /// The dream stopped with this error.
    Failed(String),
}

/// Tries at a server-side stream that does not answer.
const STREAM_RETRIES: u32 = 5;

/// A text message of JSON.
fn text(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

/// Runs a live dream on `socket` until the page closes it or stops. `check` turns the
/// start message into the model and settings (it needs the catalog).
pub async fn session<F, Fut>(
    hub: Arc<LiveHub>,
    placement: Placement,
    mut socket: WebSocket,
    check: F,
) where
    F: FnOnce(LiveRequest) -> Fut,
    Fut: Future<Output = Result<Checked, String>>,
{
    if hub
        .busy
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        let error = "a live dream is already running on this server; stop it first";
        let _ = socket.send(text(json!({ "error": error }))).await;
        return;
    }
    let claim = Claim(&hub);
    let request = match first_message(&mut socket).await {
        Some(Ok(request)) => request,
        Some(Err(error)) => return refuse(claim, socket, error).await,
        None => return,
    };
    let checked = match check(request).await {
        Ok(checked) => checked,
        Err(error) => return refuse(claim, socket, error).await,
    };
    if let Err(error) = run(&hub, placement, &mut socket, checked).await {
        refuse(claim, socket, error).await;
    }
}

/// Ends a session with `error`, the server free for the next live dream before the page
/// reads why (a page that starts again at once finds it free).
async fn refuse(claim: Claim<'_>, mut socket: WebSocket, error: String) {
    drop(claim);
    let _ = socket.send(text(json!({ "error": error }))).await;
}

/// The start message, or why it is not one (`None`: the page went away).
async fn first_message(socket: &mut WebSocket) -> Option<Result<LiveRequest, String>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(body)) => {
                return Some(
                    serde_json::from_str(&body)
                        .map_err(|e| format!("the start message is not a live request: {e}")),
                );
            }
            Ok(Message::Binary(_)) => {
                return Some(Err("send the start message before any frame".into()));
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The dream, from the checked start message to the end of the connection.
async fn run(
    hub: &Arc<LiveHub>,
    placement: Placement,
    socket: &mut WebSocket,
    checked: Checked,
) -> Result<(), String> {
    let Checked {
        model,
        settings,
        request,
    } = checked;
    let size = (request.width, request.height);
    let (frames, receiver) = mpsc::channel::<Bytes>();
    // Dreams wait here for the connection; when it lags they are skipped, not queued.
    let (outgoing, mut incoming) = async_mpsc::channel::<Outgoing>(2);
    // The page's frames, or a source on the server played at its own rate.
    let (source, pace, rate): (Box<dyn FrameSource + Send>, Option<f64>, FrameRate) =
        match request.source.clone() {
            None => {
                let rate = FrameRate::from_fps(request.fps).map_err(|e| e.to_string())?;
                (Box::new(PageFrames { receiver, size }), None, rate)
            }
            Some(name) => {
                let notices = outgoing.clone();
                let notice = Box::new(move |line: &str| {
                    let _ = notices.blocking_send(Outgoing::Notice(line.to_string()));
                });
                let opened = tokio::task::spawn_blocking(move || {
                    open_source(&name, None, STREAM_RETRIES, notice)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                let pace = (opened.kind == SourceKind::File).then(|| opened.rate.fps());
                let frames = Box::new(Scaled::new(opened.frames, Some(size)));
                (frames, pace, opened.rate)
            }
        };
    let settings = Arc::new(Mutex::new(settings));
    let recording: Recording = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let dreamer = {
        let (settings, recording, stop) = (settings.clone(), recording.clone(), stop.clone());
        std::thread::Builder::new()
            .name("deepdream-live".into())
            .spawn(move || {
                let source = LiveSource::start(source, pace);
                let outcome = dream(
                    model,
                    &placement,
                    &settings,
                    &source,
                    &outgoing,
                    |dream, report| {
                        if stop.load(Ordering::SeqCst) {
                            return Err(Error::Cancelled);
                        }
                        if let Some((_, _, recorder)) = lock(&recording).as_mut() {
                            recorder.write(dream, report.frame)?;
                        }
                        Ok(())
                    },
                );
                match outcome {
                    Ok(()) | Err(Error::Cancelled) => {}
                    Err(error) => {
                        let _ = outgoing.blocking_send(Outgoing::Failed(error.to_string()));
                    }
                }
            })
            .map_err(|e| format!("cannot start the live dream: {e}"))?
    };
    let outcome = loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    // The frame reader keeps only the newest frame.
                    let _ = frames.send(bytes);
                }
                Some(Ok(Message::Text(body))) => {
                    let reply = control(hub, &body, &settings, &recording, size, rate).await;
                    if let Some(reply) = reply && socket.send(text(reply)).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break Ok(()),
                Some(Ok(_)) => {}
            },
            out = incoming.recv() => match out {
                Some(Outgoing::Ready) => {
                    if socket.send(text(json!({ "ready": { "model": model } }))).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Outgoing::Dream(report, jpeg)) => {
                    let sent = socket.send(text(report_json(&report))).await.is_ok()
                        && socket.send(Message::Binary(Bytes::from(jpeg))).await.is_ok();
                    if !sent {
                        break Ok(());
                    }
                }
                Some(Outgoing::Notice(line)) => {
                    if socket.send(text(json!({ "notice": line }))).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Outgoing::Failed(error)) => break Err(error),
                None => break Ok(()),
            },
        }
    };
    stop.store(true, Ordering::SeqCst);
    drop(frames);
    drop(incoming);
    let _ = tokio::task::spawn_blocking(move || dreamer.join()).await;
    // A recording still open when the page went away is not wanted.
    if let Some((_, path, recorder)) = lock(&recording).take() {
        let _ = recorder.finish();
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// Loads the network and dreams `source` until it ends, sending each dream (as JPEG) to
/// the connection; `after` sees each dream first.
fn dream(
    model: &'static str,
    placement: &Placement,
    settings: &Mutex<LiveSettings>,
    source: &LiveSource,
    outgoing: &async_mpsc::Sender<Outgoing>,
    mut after: impl FnMut(&RgbImage, &LiveReport) -> deepdream::Result<()>,
) -> deepdream::Result<()> {
    let device = &placement.tensors();
    let network = load_named(model, placement)?;
    if outgoing.blocking_send(Outgoing::Ready).is_err() {
        return Err(Error::Cancelled);
    }
    let mut other = |name: &str| load_named(name, placement);
    dream_live(
        network,
        &mut other,
        settings,
        source,
        device,
        |dream, report| {
            after(dream, report)?;
            match outgoing.try_send(Outgoing::Dream(*report, crate::jobs::jpeg(dream)?)) {
                Err(async_mpsc::error::TrySendError::Closed(_)) => Err(Error::Cancelled),
                // The page is behind: this dream is skipped on the way to it.
                _ => Ok(()),
            }
        },
    )?;
    Ok(())
}

/// Applies a control message; returns the answer for the page, if any.
async fn control(
    hub: &Arc<LiveHub>,
    body: &str,
    settings: &Mutex<LiveSettings>,
    recording: &Recording,
    (w, h): (u32, u32),
    rate: FrameRate,
) -> Option<Value> {
    let message: Control = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(_) => {
            return Some(json!({
                "warning": "unknown message: send {\"set\": NAME, \"value\": V} or {\"record\": true|false}"
            }));
        }
    };
    match message {
        Control::Set { set, value } => {
            let value = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            match lock(settings).set(&set, &value) {
                Ok(()) => None,
                Err(error) => Some(json!({ "warning": error.to_string() })),
            }
        }
        Control::Record { record: true } => {
            if lock(recording).is_some() {
                return None;
            }
            let id = hub.next_recording.fetch_add(1, Ordering::SeqCst);
            let path = hub.scratch.join(format!("live-{id}.mp4"));
            let opened = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || VideoWriter::create_live(&path, w, h, rate))
                    .await
            };
            match opened {
                Ok(Ok(writer)) => {
                    *lock(recording) = Some((id, path, LiveRecording::new(Box::new(writer), None)));
                    Some(json!({ "recording_started": id }))
                }
                Ok(Err(error)) => Some(json!({ "warning": format!("cannot record: {error}") })),
                Err(error) => Some(json!({ "warning": format!("cannot record: {error}") })),
            }
        }
        Control::Record { record: false } => {
            let (id, path, recorder) = lock(recording).take()?;
            let finished = tokio::task::spawn_blocking(move || recorder.finish()).await;
            match finished {
                Ok(Ok(frames)) if frames > 0 => {
                    hub.keep(id, path);
                    Some(json!({
                        "recording": format!("/api/live/recordings/{id}"),
                        "frames": frames,
                    }))
                }
                Ok(Ok(_)) => {
                    Some(json!({ "warning": "nothing was recorded: no frame was dreamed" }))
                }
                Ok(Err(error)) => {
                    Some(json!({ "warning": format!("the recording failed: {error}") }))
                }
                Err(error) => Some(json!({ "warning": format!("the recording failed: {error}") })),
            }
        }
    }
}

/// A dream's report as the page gets it.
fn report_json(report: &LiveReport) -> Value {
    json!({
        "frame": report.frame,
        "dreamed": report.dreamed,
        "dropped": report.dropped,
        "fps": report.fps,
        "latency_ms": report.latency.as_secs_f64() * 1000.0,
        "changes": report.changes,
        "change": report.change,
        "steps": report.steps,
        "scale": report.scale,
    })
}
