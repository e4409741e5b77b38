//! Frames that arrive in real time: a reader thread takes them from a source as they come
//! (or, for a file, at the file's own rate) and keeps only the newest, so a consumer that
//! is slower than the source skips frames instead of falling behind. A network stream that
//! does not answer is tried again ([`Reconnecting`]); a recording of a feed keeps the
//! source's rate.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::error::{Error, Result};
use crate::media::ffmpeg::{self, FrameRate, Segment, VideoReader};
use crate::media::frames::{FrameSink, FrameSource};

/// How long a stream may send nothing before it counts as not answering.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of source a live feed reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A camera or other capture device.
    Camera,
    /// A video file (played at its own rate when asked).
    File,
    /// A network stream (udp, srt, rtsp, http, …).
    Stream,
}

/// A live source opened by name.
pub struct OpenedSource {
    /// Its frames.
    pub frames: Box<dyn FrameSource + Send>,
    /// What it is.
    pub kind: SourceKind,
    /// Its frame rate: a file's own, else 25 (what cameras and streams usually give).
    pub rate: FrameRate,
}

/// FFmpeg's camera input on this system: v4l2 on Linux, avfoundation on macOS, dshow on
/// Windows.
pub fn default_camera_format() -> &'static str {
    if cfg!(target_os = "macos") {
        "avfoundation"
    } else if cfg!(windows) {
        "dshow"
    } else {
        "v4l2"
    }
}

/// Opens the live source `name`: a camera (`/dev/videoN`, or any device name given with
/// its FFmpeg `camera_format`), a video file, or a stream URL, which is tried again up to
/// `retries` times in all when it does not answer (`notice` hears of each retry).
pub fn open_source(
    name: &str,
    camera_format: Option<&str>,
    retries: u32,
    notice: Box<dyn FnMut(&str) + Send>,
) -> Result<OpenedSource> {
    let path = std::path::Path::new(name);
    let unreadable = |reason: String| Error::VideoRead {
        path: path.to_path_buf(),
        reason,
    };
    if name.starts_with("/dev/video") || camera_format.is_some() {
        if name.starts_with("/dev/") && !path.exists() {
            return Err(unreadable(format!("no such camera{}", cameras_here())));
        }
        let format = camera_format.unwrap_or(default_camera_format());
        return Ok(OpenedSource {
            frames: Box::new(Camera {
                reader: VideoReader::open_device(path, format)?,
                name: name.to_string(),
            }),
            kind: SourceKind::Camera,
            rate: FrameRate::from_fps(25.0)?,
        });
    }
    if path.is_file() {
        return Ok(OpenedSource {
            frames: Box::new(VideoReader::open(path, Segment::default())?),
            kind: SourceKind::File,
            rate: ffmpeg::probe(path)?.frame_rate,
        });
    }
    if !name.contains("://") {
        return Err(unreadable("no such file, camera or stream".into()));
    }
    let url = name.to_string();
    let open: Opener = Box::new(move || {
        let reader = VideoReader::open_stream(&url, STREAM_TIMEOUT)?;
        Ok(Box::new(reader) as Box<dyn FrameSource + Send>)
    });
    Ok(OpenedSource {
        frames: Box::new(Reconnecting::new(
            name,
            open,
            retries,
            Duration::from_secs(1),
            notice,
        )),
        kind: SourceKind::Stream,
        rate: FrameRate::from_fps(25.0)?,
    })
}

/// The cameras this computer has, for a message (Linux's `/dev/video*`).
fn cameras_here() -> String {
    let mut cameras: Vec<String> = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .filter(|p| p.starts_with("/dev/video"))
                .collect()
        })
        .unwrap_or_default();
    cameras.sort();
    if cameras.is_empty() {
        " (this computer shows no camera)".to_string()
    } else {
        format!(" (cameras here: {})", cameras.join(", "))
    }
}

/// A camera's frames, with a plain reason when another program holds it.
struct Camera {
    reader: VideoReader,
    name: String,
}

impl FrameSource for Camera {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        self.reader.next_frame().map_err(|error| match error {
            Error::VideoRead { reason, .. } if reason.contains("Device or resource busy") => {
                Error::VideoRead {
                    path: self.name.clone().into(),
                    reason: "the camera is in use by another program: close it (or choose \
                             another camera) and try again"
                        .into(),
                }
            }
            other => other,
        })
    }
}

/// Frames scaled to one size (when given).
pub struct Scaled {
    source: Box<dyn FrameSource + Send>,
    size: Option<(u32, u32)>,
}

impl Scaled {
    /// `source`'s frames at `size` (`None`: as they come).
    pub fn new(source: Box<dyn FrameSource + Send>, size: Option<(u32, u32)>) -> Self {
        Scaled { source, size }
    }
}

impl FrameSource for Scaled {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        let frame = self.source.next_frame()?;
        Ok(match (frame, self.size) {
            (Some(frame), Some((w, h))) if frame.dimensions() != (w, h) => Some(
                image::imageops::resize(&frame, w, h, image::imageops::FilterType::Triangle),
            ),
            (frame, _) => frame,
        })
    }
}

/// A frame as it arrived.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    /// The picture.
    pub image: RgbImage,
    /// Its number in the source, from 0 (frames skipped by the consumer included).
    pub index: u64,
    /// When it arrived.
    pub arrived: Instant,
}

/// What the reader thread shares with the consumer.
#[derive(Default)]
struct Slot {
    newest: Option<LiveFrame>,
    /// Frames replaced before the consumer took them.
    dropped: u64,
    ended: bool,
    error: Option<Error>,
    stop: bool,
}

/// A source read in real time on its own thread; the consumer takes the newest frame.
pub struct LiveSource {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl LiveSource {
    /// Starts reading `source`: as fast as it gives frames (a camera or a stream), or paced
    /// to `fps` frames a second when given (a file played at its own rate).
    pub fn start(mut source: Box<dyn FrameSource + Send>, fps: Option<f64>) -> Self {
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let reader = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let (slot, ready) = &*reader;
            let started = Instant::now();
            let mut index = 0u64;
            loop {
                if slot.lock().map(|s| s.stop).unwrap_or(true) {
                    break;
                }
                let next = source.next_frame();
                if let Some(fps) = fps.filter(|f| *f > 0.0) {
                    let due = started + Duration::from_secs_f64(index as f64 / fps);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                let Ok(mut slot) = slot.lock() else { break };
                match next {
                    Ok(Some(image)) => {
                        if slot.newest.is_some() {
                            slot.dropped += 1;
                        }
                        slot.newest = Some(LiveFrame {
                            image,
                            index,
                            arrived: Instant::now(),
                        });
                        index += 1;
                    }
                    Ok(None) => slot.ended = true,
                    Err(error) => {
                        slot.error = Some(error);
                        slot.ended = true;
                    }
                }
                let ended = slot.ended;
                drop(slot);
                ready.notify_all();
                if ended {
                    break;
                }
            }
        });
        LiveSource {
            shared,
            thread: Some(thread),
        }
    }

    /// The newest frame not taken yet, waiting for one; `None` once the source has ended
    /// (every frame taken or skipped), the source's error if it failed.
    pub fn next(&self) -> Result<Option<LiveFrame>> {
        let (slot, ready) = &*self.shared;
        let mut slot = slot.lock().map_err(|_| Error::Cancelled)?;
        loop {
            if let Some(frame) = slot.newest.take() {
                return Ok(Some(frame));
            }
            if let Some(error) = slot.error.take() {
                return Err(error);
            }
            if slot.ended {
                return Ok(None);
            }
            slot = ready.wait(slot).map_err(|_| Error::Cancelled)?;
        }
    }

    /// The frames the consumer skipped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.0.lock().map(|s| s.dropped).unwrap_or(0)
    }
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.shared.0.lock() {
            slot.stop = true;
        }
        // The reader stops after the frame it is reading (a camera's next frame comes soon;
        // a stalled stream is left to end with the process).
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

/// Opens a source: what [`Reconnecting`] calls for each try.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn FrameSource + Send>> + Send>;

/// A network stream opened again when it does not answer or breaks off, after waits that
/// double from `first_wait`; after `tries` failures in a row it gives up with the last
/// reason. Frames read reset the count.
pub struct Reconnecting {
    name: String,
    open: Opener,
    current: Option<Box<dyn FrameSource + Send>>,
    tries: u32,
    first_wait: Duration,
    failures: u32,
    notice: Box<dyn FnMut(&str) + Send>,
}

impl Reconnecting {
    /// The stream `name` (for messages), opened by `open`; `notice` hears of each retry.
    pub fn new(
        name: &str,
        open: Opener,
        tries: u32,
        first_wait: Duration,
        notice: Box<dyn FnMut(&str) + Send>,
    ) -> Self {
        Reconnecting {
            name: name.to_string(),
            open,
            current: None,
            tries: tries.max(1),
            first_wait,
            failures: 0,
            notice,
        }
    }

    /// Counts a failure: waits before the next try, or gives up.
    fn failed(&mut self, error: Error) -> Result<()> {
        self.current = None;
        self.failures += 1;
        let reason = match error {
            Error::VideoRead { reason, .. } => reason,
            other => other.to_string(),
        };
        if self.failures >= self.tries {
            return Err(Error::VideoRead {
                path: self.name.clone().into(),
                reason: format!("no answer after {} tries ({reason})", self.tries),
            });
        }
        let wait = self.first_wait * 2u32.pow(self.failures - 1);
        (self.notice)(&format!(
            "{} did not answer ({reason}); trying again in {:.0} s (try {} of {})",
            self.name,
            wait.as_secs_f64(),
            self.failures + 1,
            self.tries
        ));
        std::thread::sleep(wait);
        Ok(())
    }
}

impl FrameSource for Reconnecting {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        loop {
            let source = match self.current.as_mut() {
                Some(source) => source,
                None => match (self.open)() {
                    Ok(source) => self.current.insert(source),
                    Err(error) => {
                        self.failed(error)?;
                        continue;
                    }
                },
            };
            match source.next_frame() {
                Ok(Some(frame)) => {
                    self.failures = 0;
                    return Ok(Some(frame));
                }
                Ok(None) => {
                    self.failed(Error::VideoRead {
                        path: self.name.clone().into(),
                        reason: "the stream ended".into(),
                    })?;
                }
                Err(error) => self.failed(error)?,
            }
        }
    }
}

/// A live feed written at its source's frame rate: each dream stands for its own source
/// frame and the skipped ones before it, so the recording runs in real time.
pub struct LiveRecording {
    sink: Box<dyn FrameSink + Send>,
    /// Frames written so far (the next source frame to cover).
    written: u64,
    /// The source frame the recording starts at.
    first: Option<u64>,
}

impl LiveRecording {
    /// A recording into `sink` from source frame `start` (the first dream written stands
    /// for the frames before it too), or from the first dream written when `None`.
    pub fn new(sink: Box<dyn FrameSink + Send>, start: Option<u64>) -> Self {
        LiveRecording {
            sink,
            written: 0,
            first: start,
        }
    }

    /// Writes the dream of source frame `frame` (frames from the start of the source).
    pub fn write(&mut self, dream: &RgbImage, frame: u64) -> Result<()> {
        let first = *self.first.get_or_insert(frame);
        while first + self.written <= frame {
            self.sink.write(dream)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.written
    }

    /// Closes the recording (the file is complete only now); returns the frames written.
    pub fn finish(self) -> Result<u64> {
        self.sink.finish()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames sent by the test, one by one.
    struct Channel(std::sync::mpsc::Receiver<RgbImage>);

    impl FrameSource for Channel {
        fn next_frame(&mut self) -> Result<Option<RgbImage>> {
            Ok(self.0.recv().ok())
        }
    }

    fn frame(value: u8) -> RgbImage {
        RgbImage::from_pixel(2, 2, image::Rgb([value; 3]))
    }

    /// Frames written, shared with the test.
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl FrameSink for Collect {
        fn write(&mut self, frame: &RgbImage) -> Result<()> {
            self.0.lock().unwrap().push(frame.get_pixel(0, 0)[0]);
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stream_is_tried_again_with_doubling_waits_then_given_up() {
        // Fails twice, gives two frames, breaks off, then never answers again.
        let opened = Arc::new(Mutex::new(0));
        let counter = opened.clone();
        let open: Opener = Box::new(move || {
            let mut n = counter.lock().unwrap();
            *n += 1;
            match *n {
                3 => {
                    let (send, receive) = std::sync::mpsc::channel();
                    send.send(frame(1)).unwrap();
                    send.send(frame(2)).unwrap();
                    Ok(Box::new(Channel(receive)) as Box<dyn FrameSource + Send>)
                }
                _ => Err(Error::VideoRead {
                    path: "udp://x".into(),
                    reason: "Connection refused".into(),
                }),
            }
        });
        let notices = Arc::new(Mutex::new(Vec::new()));
        let heard = notices.clone();
        let mut stream = Reconnecting::new(
            "udp://x",
            open,
            3,
            Duration::from_millis(1),
            Box::new(move |n| heard.lock().unwrap().push(n.to_string())),
        );
        assert_eq!(stream.next_frame().unwrap().unwrap().get_pixel(0, 0)[0], 1);
        assert_eq!(stream.next_frame().unwrap().unwrap().get_pixel(0, 0)[0], 2);
        let error = stream.next_frame().unwrap_err().to_string();
        assert!(
            error.contains("no answer after 3 tries (Connection refused)"),
            "{error}"
        );
        let notices = notices.lock().unwrap();
        assert!(
            notices[0].contains("trying again in 0 s (try 2 of 3)"),
            "{notices:?}"
        );
        // Two failures before the frames, then the end and two failures: five notices less
        // the one that gave up.
        assert_eq!(notices.len(), 4, "{notices:?}");
        assert_eq!(*opened.lock().unwrap(), 5);
    }

    #[test]
    fn a_recording_repeats_each_dream_for_the_frames_skipped_before_it() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut recording = LiveRecording::new(Box::new(Collect(written.clone())), None);
        recording.write(&frame(3), 3).unwrap();
        recording.write(&frame(5), 5).unwrap();
        recording.write(&frame(6), 6).unwrap();
        assert_eq!(recording.finish().unwrap(), 4);
        assert_eq!(*written.lock().unwrap(), vec![3, 5, 5, 6]);
        // From the start of the source: the first dream covers the frames before it.
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut recording = LiveRecording::new(Box::new(Collect(written.clone())), Some(0));
        recording.write(&frame(2), 2).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![2, 2, 2]);
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frame_and_the_others_are_counted_as_dropped() {
        let (send, receive) = std::sync::mpsc::channel();
        let live = LiveSource::start(Box::new(Channel(receive)), None);
        send.send(frame(0)).unwrap();
        assert_eq!(live.next().unwrap().unwrap().index, 0);
        // Five frames arrive while the consumer is busy: it gets the fifth.
        for value in 1..=5 {
            send.send(frame(value)).unwrap();
        }
        while live.dropped() < 4 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let newest = live.next().unwrap().unwrap();
        assert_eq!((newest.index, newest.image.get_pixel(0, 0)[0]), (5, 5));
        drop(send);
        assert!(
            live.next().unwrap().is_none(),
            "the end of the source ends it"
        );
        assert_eq!(live.dropped(), 4);
    }
}
