//! The job queue: dreams run one at a time on one worker thread (the CPU is the bottleneck,
//! and the networks stay loaded there); the others wait in order. Each job publishes its
//! status on a watch channel that the event streams and status requests read.

use deepdream::backend::device::Placement;
use deepdream::networks::placement::place;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deepdream::jobs::animation::{AnimationJob, AnimationSettings, VideoRange};
use deepdream::jobs::eta::{self, DreamEta, Eta};
use deepdream::media::ffmpeg::{FrameRate, Segment, VideoInfo};
use deepdream::modes::animation::{FrameProgress, FrameSettings};
use deepdream::modes::style::{StyleImage, StyleParams, Stylist};
use deepdream::modes::video::VideoParams;
use deepdream::modes::visualize::{Target, VisualizeParams, visualize_watched};
use deepdream::modes::zoom::ZoomParams;
use deepdream::{
    Device, DreamParams, Dreamer, Error, Network, Snapshot, media::image_io, networks::models,
    networks::weights,
};
use image::{DynamicImage, GrayImage, RgbImage};
use serde::Serialize;
use tokio::sync::watch;

/// A picture the user sent, decoded once and kept in memory.
pub struct Upload {
    /// Its id in URLs.
    pub id: String,
    /// The bytes as sent (for showing the "before" picture).
    pub bytes: Vec<u8>,
    /// The bytes' media type.
    pub media_type: &'static str,
    /// The colour channels.
    pub rgb: RgbImage,
    /// The alpha channel, if it has one (kept unchanged in the result).
    pub alpha: Option<GrayImage>,
}

/// A video the user sent, kept as a file in the server's private folder.
pub struct VideoUpload {
    /// Its id in URLs.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// What FFmpeg says about it.
    pub info: VideoInfo,
}

impl Drop for VideoUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A finished job's file.
pub struct Output {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Their media type (`image/png`, `image/gif`, `video/mp4`).
    pub media_type: &'static str,
    /// The file name extension to offer (`png`, `gif`, `mp4`).
    pub extension: &'static str,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for the worker.
    Queued,
    /// Being dreamed.
    Running,
    /// Finished; the result can be downloaded.
    Done,
    /// Stopped with an error.
    Failed,
    /// Stopped by the user or because its page went away.
    Cancelled,
}

impl State {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

/// A job's status, as the API reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Where the job is.
    pub state: State,
    /// Jobs ahead of it in the queue (0: next), while queued.
    pub position: Option<usize>,
    /// Steps done.
    pub step: usize,
    /// Steps in the whole job (known once it runs).
    pub steps: usize,
    /// The stage being worked on, from 1: the octave of a dream, the scale of a style
    /// transfer (a visualisation has one).
    pub stage: usize,
    /// Number of stages.
    pub stages: usize,
    /// Seconds since the job started running.
    pub elapsed_seconds: f64,
    /// Estimated seconds left, once a rate is known.
    pub eta_seconds: Option<f64>,
    /// Version of the preview picture: it changes whenever a new one is ready (0: none yet).
    pub preview: u64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}

impl Status {
    fn queued(position: usize) -> Self {
        Status {
            state: State::Queued,
            position: Some(position),
            step: 0,
            steps: 0,
            stage: 0,
            stages: 0,
            elapsed_seconds: 0.0,
            eta_seconds: None,
            preview: 0,
            error: None,
        }
    }
}

/// What a job makes, checked before it is queued.
pub enum Task {
    /// A dream of a photo.
    Dream {
        /// The model's name.
        model: &'static str,
        /// The dream's parameters (seed filled in).
        params: DreamParams,
        /// The photo.
        source: Arc<Upload>,
    },
    /// A photo painted in the manner of one or more paintings (with VGG16).
    Style {
        /// The transfer's parameters.
        params: StyleParams,
        /// The photo.
        source: Arc<Upload>,
        /// The paintings and their weights.
        styles: Vec<(Arc<Upload>, f32)>,
    },
    /// An endless zoom from a photo: each frame the previous one zoomed and dreamed again.
    Zoom {
        /// The model's name.
        model: &'static str,
        /// The first frame's dream (and the layers, seed, … of all frames).
        dream: DreamParams,
        /// The motion and length.
        params: ZoomParams,
        /// The photo.
        source: Arc<Upload>,
        /// Frames per second.
        fps: f64,
        /// An MP4 video (needs FFmpeg) instead of a GIF.
        mp4: bool,
    },
    /// A video dreamed frame by frame, kept coherent along the optical flow (audio kept).
    Video {
        /// The model's name.
        model: &'static str,
        /// The first frame's dream (and the layers, seed, … of all frames).
        dream: DreamParams,
        /// Blend, frame settings, scene cuts.
        params: VideoParams,
        /// The video.
        video: Arc<VideoUpload>,
        /// The part of it to dream.
        segment: Segment,
    },
    /// A picture grown from noise for a channel, a layer or a class.
    Visualize {
        /// The model's name.
        model: &'static str,
        /// What to grow.
        target: Target,
        /// The visualisation's parameters.
        params: VisualizeParams,
    },
}

impl Task {
    /// The mode's name in the API (`dream`, `style`, `visualize`).
    pub fn mode(&self) -> &'static str {
        match self {
            Task::Dream { .. } => "dream",
            Task::Style { .. } => "style",
            Task::Zoom { .. } => "zoom",
            Task::Video { .. } => "video",
            Task::Visualize { .. } => "visualize",
        }
    }

    /// The network it runs on.
    pub fn model(&self) -> &'static str {
        match self {
            Task::Dream { model, .. }
            | Task::Zoom { model, .. }
            | Task::Video { model, .. }
            | Task::Visualize { model, .. } => model,
            Task::Style { .. } => STYLE_MODEL,
        }
    }

    /// The photo it starts from, if any.
    pub fn source(&self) -> Option<&Arc<Upload>> {
        match self {
            Task::Dream { source, .. } | Task::Style { source, .. } | Task::Zoom { source, .. } => {
                Some(source)
            }
            Task::Video { .. } | Task::Visualize { .. } => None,
        }
    }
}

/// The network style transfer runs on (its default layers are VGG16's).
pub const STYLE_MODEL: &str = "vgg16";

/// A job as the client asked for it, with what is shown about it.
pub struct JobSpec {
    /// What it makes.
    pub task: Task,
    /// Text entries stored in the result PNG (software, mode, model, parameters).
    pub metadata: Vec<(String, String)>,
    /// The request as the client should see it (defaults and seed filled in).
    pub request: serde_json::Value,
    /// The equivalent command line.
    pub command: String,
}

/// A job in the queue, running, or finished.
pub struct Job {
    /// Its id in URLs.
    pub id: u64,
    /// What it makes and how it was asked for.
    pub spec: JobSpec,
    status: watch::Sender<Status>,
    cancel: AtomicBool,
    preview: Mutex<Option<Arc<Vec<u8>>>>,
    result: Mutex<Option<Arc<Output>>>,
    watchers: AtomicUsize,
    unwatched_since: Mutex<Option<Instant>>,
}

/// Locks a mutex, recovering the data if a panicking thread held it (the data here is
/// always left consistent).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Job {
    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// The latest preview (JPEG), if one is ready.
    pub fn preview(&self) -> Option<Arc<Vec<u8>>> {
        lock(&self.preview).clone()
    }

    /// The finished file (a PNG with the parameters in text chunks, a GIF or an MP4).
    pub fn result(&self) -> Option<Arc<Output>> {
        lock(&self.result).clone()
    }

    /// Asks the job to stop: a queued job leaves the queue, a running one stops after its
    /// current step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Counts an event stream watching the job until the returned guard is dropped.
    pub fn watch(self: &Arc<Self>) -> Watcher {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        *lock(&self.unwatched_since) = None;
        Watcher(self.clone())
    }

    /// Whether the job was watched by an event stream and none has watched it for `grace`:
    /// the page that started it went away.
    fn abandoned(&self, grace: Duration) -> bool {
        self.watchers.load(Ordering::SeqCst) == 0
            && lock(&self.unwatched_since).is_some_and(|since| since.elapsed() >= grace)
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }

    fn finish(&self, state: State, error: Option<String>) {
        self.update(|s| {
            s.state = state;
            s.position = None;
            s.eta_seconds = if state == State::Done {
                Some(0.0)
            } else {
                None
            };
            s.error = error;
        });
    }
}

/// Holds a job's watcher count up while an event stream is open.
pub struct Watcher(Arc<Job>);

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.0.watchers.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.0.unwatched_since) = Some(Instant::now());
        }
    }
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum QueueError {
    /// Too many jobs are waiting.
    Full(usize),
    /// The server is shutting down.
    Closed,
}

struct Jobs {
    /// Waiting jobs, in order.
    waiting: VecDeque<Arc<Job>>,
    /// Every job kept, oldest first.
    all: VecDeque<Arc<Job>>,
    next_id: u64,
    closed: bool,
}

/// The queue and the worker that empties it.
pub struct Queue {
    jobs: Mutex<Jobs>,
    wake: Condvar,
    max_waiting: usize,
    max_kept: usize,
    disconnect_grace: Duration,
    /// A private folder for animations' frames and files while they are made.
    scratch: PathBuf,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Queue {
    /// Starts the worker thread, which runs networks on `placement`. At most `max_waiting`
    /// jobs wait; the last `max_kept` finished jobs are kept for the gallery; a job whose
    /// page went away for `disconnect_grace` is cancelled.
    pub fn start(
        placement: Placement,
        max_waiting: usize,
        max_kept: usize,
        disconnect_grace: Duration,
        scratch: PathBuf,
    ) -> Arc<Queue> {
        let queue = Arc::new(Queue {
            jobs: Mutex::new(Jobs {
                waiting: VecDeque::new(),
                all: VecDeque::new(),
                next_id: 1,
                closed: false,
            }),
            wake: Condvar::new(),
            max_waiting,
            max_kept,
            disconnect_grace,
            scratch,
            worker: Mutex::new(None),
        });
        let worker = queue.clone();
        let handle = std::thread::Builder::new()
            .name("deepdream-worker".into())
            .spawn(move || worker.work(&placement))
            .expect("cannot start the worker thread");
        *lock(&queue.worker) = Some(handle);
        queue
    }

    /// Queues a job; returns it.
    pub fn submit(&self, spec: JobSpec) -> Result<Arc<Job>, QueueError> {
        let mut jobs = lock(&self.jobs);
        if jobs.closed {
            return Err(QueueError::Closed);
        }
        if jobs.waiting.len() >= self.max_waiting {
            return Err(QueueError::Full(self.max_waiting));
        }
        let id = jobs.next_id;
        jobs.next_id += 1;
        let (status, _) = watch::channel(Status::queued(jobs.waiting.len()));
        let job = Arc::new(Job {
            id,
            spec,
            status,
            cancel: AtomicBool::new(false),
            preview: Mutex::new(None),
            result: Mutex::new(None),
            watchers: AtomicUsize::new(0),
            unwatched_since: Mutex::new(None),
        });
        jobs.waiting.push_back(job.clone());
        jobs.all.push_back(job.clone());
        self.forget_old(&mut jobs);
        drop(jobs);
        self.wake.notify_all();
        Ok(job)
    }

    /// The job with this id, if it is kept.
    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        lock(&self.jobs).all.iter().find(|j| j.id == id).cloned()
    }

    /// Every kept job, newest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        lock(&self.jobs).all.iter().rev().cloned().collect()
    }

    /// Cancels a job; a queued one leaves the queue at once.
    pub fn cancel(&self, job: &Job) {
        job.cancel();
        let mut jobs = lock(&self.jobs);
        if let Some(index) = jobs.waiting.iter().position(|j| j.id == job.id) {
            jobs.waiting.remove(index);
            job.finish(State::Cancelled, Some("cancelled".into()));
            renumber(&jobs.waiting);
        }
    }

    /// Stops taking jobs, cancels the waiting and running ones, and waits for the worker to
    /// stop (after the running job's current step).
    pub fn close(&self) {
        let mut jobs = lock(&self.jobs);
        jobs.closed = true;
        for job in jobs.waiting.drain(..) {
            job.cancel();
            job.finish(State::Cancelled, Some("the server stopped".into()));
        }
        for job in &jobs.all {
            job.cancel();
        }
        drop(jobs);
        self.wake.notify_all();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }

    /// Drops the oldest finished jobs beyond `max_kept`.
    fn forget_old(&self, jobs: &mut Jobs) {
        while jobs.all.len() > self.max_kept {
            match jobs.all.iter().position(|j| j.status().state.is_final()) {
                Some(index) => {
                    jobs.all.remove(index);
                }
                None => break,
            }
        }
    }

    /// The next job to run, waiting for one; `None` once the queue is closed. Abandoned
    /// waiting jobs are cancelled on the way.
    fn next(&self) -> Option<Arc<Job>> {
        let mut jobs = lock(&self.jobs);
        loop {
            if jobs.closed {
                return None;
            }
            let grace = self.disconnect_grace;
            let mut changed = false;
            jobs.waiting.retain(|job| {
                let gone = job.abandoned(grace);
                if gone {
                    job.cancel();
                    job.finish(State::Cancelled, Some("its page went away".into()));
                    changed = true;
                }
                !gone
            });
            if let Some(job) = jobs.waiting.pop_front() {
                renumber(&jobs.waiting);
                return Some(job);
            }
            if changed {
                renumber(&jobs.waiting);
            }
            // Wake now and then to drop abandoned jobs even when nothing new arrives.
            jobs = self
                .wake
                .wait_timeout(jobs, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The worker: runs jobs one at a time, keeping the last network loaded.
    fn work(&self, placement: &Placement) {
        let mut loaded: Option<(&'static str, Box<dyn Network>)> = None;
        while let Some(job) = self.next() {
            let result = self.run(&job, placement, &mut loaded);
            match result {
                Ok(output) => {
                    *lock(&job.result) = Some(Arc::new(output));
                    job.finish(State::Done, None);
                }
                Err(Error::Cancelled) => {
                    let why = if job.abandoned(self.disconnect_grace) {
                        "its page went away"
                    } else {
                        "cancelled"
                    };
                    job.finish(State::Cancelled, Some(why.into()));
                }
                Err(error) => job.finish(State::Failed, Some(error.to_string())),
            }
        }
    }

    /// Runs one job; returns its file.
    fn run(
        &self,
        job: &Job,
        placement: &Placement,
        loaded: &mut Option<(&'static str, Box<dyn Network>)>,
    ) -> deepdream::Result<Output> {
        let device = &placement.tensors();
        if job.cancelled() {
            return Err(Error::Cancelled);
        }
        job.update(|s| {
            s.state = State::Running;
            s.position = None;
        });
        let task = &job.spec.task;
        if loaded
            .as_ref()
            .is_none_or(|(name, _)| *name != task.model())
        {
            // Free the old network before loading the next one.
            *loaded = None;
            let spec = models::find(task.model())?;
            let path = weights::ensure(spec, |_| {})?;
            let network = place((spec.load)(&path, device)?, placement)?;
            *loaded = Some((spec.name, network));
        }
        let (_, network) = loaded.as_ref().expect("loaded above");
        let network = network.as_ref();
        let mut reporter = Reporter::new(job, self.disconnect_grace);
        let picture = match task {
            Task::Dream { params, source, .. } => {
                let dreamer = Dreamer::new(network, params.clone(), device)?;
                let sizes = dreamer.octave_sizes(source.rgb.width(), source.rgb.height())?;
                let mut dream_eta = DreamEta::new(&sizes, params.iterations);
                let dreamed = dreamer.dream_watched(&source.rgb, params.seed, |snapshot| {
                    let p = snapshot.progress;
                    let left = dream_eta.step(&p);
                    let stage = (p.steps_done(), p.steps_total(), p.octave + 1, p.octaves);
                    reporter.observe(snapshot, left, stage, p.iteration == p.iterations)
                })?;
                image_io::join_alpha(dreamed, source.alpha.as_ref())
            }
            Task::Style {
                params,
                source,
                styles,
            } => {
                let stylist = Stylist::new(network, params.clone(), device)?;
                let paintings: Vec<StyleImage> = styles
                    .iter()
                    .map(|(upload, weight)| StyleImage {
                        image: upload.rgb.clone(),
                        weight: *weight,
                    })
                    .collect();
                // Work per evaluation grows with the scale's area.
                let areas: Vec<f64> = params
                    .sizes()
                    .iter()
                    .map(|&s| f64::from(s).powi(2))
                    .collect();
                let iterations = params.iterations as f64;
                reporter.eta = Eta::new(areas.iter().sum::<f64>() * iterations);
                let styled = stylist.transfer_watched(&source.rgb, &paintings, |snapshot| {
                    let p = snapshot.progress;
                    let finished: f64 = areas[..p.scale].iter().sum();
                    let done = (finished * iterations) + areas[p.scale] * p.iteration as f64;
                    let stage = (p.done(), p.scales * p.iterations, p.scale + 1, p.scales);
                    let left = reporter.eta.update(done);
                    reporter.observe(snapshot, left, stage, p.iteration == p.iterations)
                })?;
                DynamicImage::ImageRgb8(styled)
            }
            Task::Zoom {
                dream,
                params,
                source,
                fps,
                mp4,
                ..
            } => {
                let (extension, media_type) = if *mp4 {
                    ("mp4", "video/mp4")
                } else {
                    ("gif", "image/gif")
                };
                let scratch = self.scratch(job, extension);
                let animation = AnimationJob::zoom(
                    network,
                    None,
                    source.rgb.clone(),
                    params.clone(),
                    FrameRate::from_fps(*fps)?,
                    scratch.settings(dream),
                )?;
                let size = source.rgb.dimensions();
                let frames = FrameWork::of(network, dream, params.next, size, device)?;
                let bytes = scratch.run(animation, network, device, &mut reporter, &frames)?;
                return Ok(Output {
                    bytes,
                    media_type,
                    extension,
                });
            }
            Task::Video {
                dream,
                params,
                video,
                segment,
                ..
            } => {
                let info = &video.info;
                let scratch = self.scratch(job, "mp4");
                let animation = AnimationJob::video(
                    network,
                    &video.path,
                    info.clone(),
                    params.clone(),
                    VideoRange::Segment(*segment),
                    scratch.settings(dream),
                    device,
                )?;
                let size = (info.width, info.height);
                let frames = FrameWork::of(network, dream, params.next, size, device)?;
                let bytes = scratch.run(animation, network, device, &mut reporter, &frames)?;
                return Ok(Output {
                    bytes,
                    media_type: "video/mp4",
                    extension: "mp4",
                });
            }
            Task::Visualize { target, params, .. } => {
                reporter.eta = Eta::new(params.steps as f64);
                let grown = visualize_watched(network, target, params, device, |snapshot| {
                    let p = snapshot.progress;
                    let left = reporter.eta.update(p.step as f64);
                    reporter.observe(snapshot, left, (p.step, p.steps, 1, 1), false)
                })?;
                DynamicImage::ImageRgb8(grown)
            }
        };
        let elapsed = reporter.start.elapsed().as_secs_f64();
        job.update(|s| s.elapsed_seconds = elapsed);
        Ok(Output {
            bytes: image_io::png_bytes(&picture, &job.spec.metadata)?,
            media_type: "image/png",
            extension: "png",
        })
    }

    /// Where an animation job writes its frames and its file, both removed when it ends.
    fn scratch(&self, job: &Job, extension: &str) -> Scratch {
        let work = self.scratch.join(format!("job-{}", job.id));
        // Left by an earlier server that stopped mid-job: no frames of it are wanted.
        let _ = std::fs::remove_dir_all(&work);
        Scratch {
            work,
            output: self.scratch.join(format!("job-{}.{extension}", job.id)),
        }
    }
}

/// An animation job's work folder and file in the server's private folder, deleted when
/// the job ends however it ends.
struct Scratch {
    work: PathBuf,
    output: PathBuf,
}

impl Scratch {
    /// The job settings of an animation dreamed with `dream` into this scratch space.
    fn settings(&self, dream: &DreamParams) -> AnimationSettings {
        AnimationSettings {
            work_dir: Some(self.work.clone()),
            ..AnimationSettings::new(dream.clone(), self.output.clone())
        }
    }

    /// Dreams the animation with progress reports (the time left from `work`), writes it
    /// and reads the file back.
    fn run(
        &self,
        mut animation: AnimationJob,
        network: &dyn Network,
        device: &Device,
        reporter: &mut Reporter,
        work: &FrameWork,
    ) -> deepdream::Result<Vec<u8>> {
        let expected = animation.frames().unwrap_or(1).max(1);
        reporter.eta = Eta::new(work.total(expected));
        let frames = animation.dream(network, device, |s| {
            reporter.observe_frame(s, work, expected)
        })?;
        reporter.job.update(|s| s.eta_seconds = None);
        animation.write(frames)?;
        std::fs::read(&self.output).map_err(|source| Error::Io {
            path: self.output.clone(),
            source,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = std::fs::remove_file(&self.output);
    }
}

/// The work of an animation's frames in pixel-steps: the first frame is a full dream, the
/// others the lighter one.
struct FrameWork {
    first: f64,
    next: f64,
}

impl FrameWork {
    fn of(
        network: &dyn Network,
        dream: &DreamParams,
        next: FrameSettings,
        (width, height): (u32, u32),
        device: &Device,
    ) -> deepdream::Result<Self> {
        let work = |params: DreamParams| -> deepdream::Result<f64> {
            let dreamer = Dreamer::new(
                network,
                DreamParams {
                    guide: None,
                    ..params
                },
                device,
            )?;
            let sizes = dreamer.octave_sizes(width, height)?;
            Ok(eta::dream_work(&sizes, dreamer.params().iterations))
        };
        Ok(FrameWork {
            first: work(dream.clone())?,
            next: work(DreamParams {
                octaves: next.octaves,
                iterations: next.iterations,
                ..dream.clone()
            })?,
        })
    }

    fn total(&self, frames: usize) -> f64 {
        self.first + self.next * frames.saturating_sub(1) as f64
    }

    /// Work done at `progress` (a scene cut's fresh frame counts as a light one).
    fn done(&self, progress: &FrameProgress) -> f64 {
        let (frame_work, before) = match progress.frame {
            0 => (self.first, 0.0),
            k => (self.next, self.first + self.next * (k - 1) as f64),
        };
        let share = progress.step.map_or(1.0, |step| {
            step.steps_done() as f64 / step.steps_total().max(1) as f64
        });
        before + frame_work * share
    }
}

/// Publishes a running job's progress: steps, stage, time left, previews; and stops the job
/// when it is cancelled or its page went away.
struct Reporter<'a> {
    job: &'a Job,
    grace: Duration,
    start: Instant,
    eta: Eta,
    last_preview: Option<Instant>,
    previews: u64,
}

impl<'a> Reporter<'a> {
    fn new(job: &'a Job, grace: Duration) -> Self {
        Reporter {
            job,
            grace,
            start: Instant::now(),
            eta: Eta::new(0.0),
            last_preview: None,
            previews: 0,
        }
    }

    /// Records a step: the seconds `left`, `(step, steps, stage, stages)`; a preview is made
    /// when one is due or at the end of a stage.
    fn observe<P>(
        &mut self,
        snapshot: &Snapshot<P>,
        left: Option<f64>,
        (step, steps, stage, stages): (usize, usize, usize, usize),
        stage_end: bool,
    ) -> deepdream::Result<()> {
        if self.job.cancelled() || self.job.abandoned(self.grace) {
            return Err(Error::Cancelled);
        }
        let due = self
            .last_preview
            .is_none_or(|t| t.elapsed() >= PREVIEW_INTERVAL);
        if stage_end || due {
            *lock(&self.job.preview) = Some(Arc::new(jpeg(&snapshot.image()?)?));
            self.last_preview = Some(Instant::now());
            self.previews += 1;
        }
        let (elapsed, previews) = (self.start.elapsed().as_secs_f64(), self.previews);
        self.job.update(|s| {
            s.step = step;
            s.steps = steps;
            s.stage = stage;
            s.stages = stages;
            s.elapsed_seconds = elapsed;
            s.eta_seconds = left;
            s.preview = previews;
        });
        Ok(())
    }
}

impl Reporter<'_> {
    /// Records an animation's step or finished frame: steps count frames.
    fn observe_frame(
        &mut self,
        snapshot: &Snapshot<FrameProgress>,
        work: &FrameWork,
        frames: usize,
    ) -> deepdream::Result<()> {
        let p = snapshot.progress;
        let finished = p.frame + usize::from(p.step.is_none());
        let frames = frames.max(finished);
        let left = self.eta.update(work.done(&p));
        self.observe(
            snapshot,
            left,
            (finished, frames, p.frame + 1, frames),
            p.step.is_none(),
        )
    }
}

/// Shortest time between two previews (each octave's last step always gives one).
const PREVIEW_INTERVAL: Duration = Duration::from_millis(150);

/// Tells each waiting job its place.
fn renumber(waiting: &VecDeque<Arc<Job>>) {
    for (position, job) in waiting.iter().enumerate() {
        job.update(|s| s.position = Some(position));
    }
}

/// A preview picture as JPEG.
pub(crate) fn jpeg(image: &RgbImage) -> deepdream::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image.clone())
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut bytes, 85,
        ))
        .map_err(|e| Error::ImageData(e.to_string()))?;
    Ok(bytes)
}
