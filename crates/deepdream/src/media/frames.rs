//! Frame sources and sinks: where an animation's frames come from and where they go.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use image::RgbImage;

use crate::error::{Error, Result};

/// Where frames come from, one after another.
pub trait FrameSource {
    /// The next frame, or `None` after the last.
    fn next_frame(&mut self) -> Result<Option<RgbImage>>;
}

/// At most `count` frames of another source.
pub struct TakeFrames<S> {
    source: S,
    left: usize,
}

impl<S: FrameSource> TakeFrames<S> {
    /// The first `count` frames of `source`.
    pub fn new(source: S, count: usize) -> Self {
        TakeFrames {
            source,
            left: count,
        }
    }
}

impl<S: FrameSource> FrameSource for TakeFrames<S> {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.source.next_frame()
    }
}

/// Frames from any iterator of images (frames already in memory, generated ones, …).
pub struct IterSource<I>(pub I);

impl<I: Iterator<Item = RgbImage>> FrameSource for IterSource<I> {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        Ok(self.0.next())
    }
}

/// Where frames go, one after another. Nothing appears at the destination until
/// [`FrameSink::finish`] succeeds.
pub trait FrameSink {
    /// Appends a frame.
    fn write(&mut self, frame: &RgbImage) -> Result<()>;
    /// Completes the output and moves it into place.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// A [`FrameSink`] on a thread of its own: frames handed to it are written while the caller
/// goes on (up to [`SinkThread::QUEUE`] frames wait their turn). Dropped without
/// [`SinkThread::finish`], the sink is dropped unfinished, so nothing appears.
pub struct SinkThread {
    frames: Option<SyncSender<Option<RgbImage>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl SinkThread {
    /// How many frames may wait for the sink before [`SinkThread::send`] waits too.
    pub const QUEUE: usize = 4;

    /// Runs `sink` on a new thread.
    pub fn new(mut sink: Box<dyn FrameSink + Send>) -> Self {
        let (frames, received) = sync_channel::<Option<RgbImage>>(Self::QUEUE);
        let thread = std::thread::spawn(move || {
            while let Ok(message) = received.recv() {
                match message {
                    Some(frame) => sink.write(&frame)?,
                    None => return sink.finish(),
                }
            }
            // The sender went without finishing: the sink goes unfinished.
            Ok(())
        });
        SinkThread {
            frames: Some(frames),
            thread: Some(thread),
        }
    }

    /// Hands `frame` to the sink; an error if the sink failed on an earlier frame.
    pub fn send(&mut self, frame: RgbImage) -> Result<()> {
        let sent = self
            .frames
            .as_ref()
            .is_some_and(|frames| frames.send(Some(frame)).is_ok());
        if sent { Ok(()) } else { Err(self.stop()) }
    }

    /// Writes the frames still waiting and completes the sink.
    pub fn finish(mut self) -> Result<()> {
        if let Some(frames) = self.frames.take() {
            // A sink that failed has stopped listening: its error comes from the thread.
            let _ = frames.send(None);
        }
        self.join()
    }

    /// The sink's error once it stopped listening.
    fn stop(&mut self) -> Error {
        self.frames = None;
        match self.join() {
            Err(error) => error,
            Ok(()) => Error::InvalidParameter("the frame sink stopped".into()),
        }
    }

    /// Waits for the thread to end; its result.
    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Ok(()),
        }
    }
}

impl Drop for SinkThread {
    fn drop(&mut self) {
        self.frames = None;
        // The sink is dropped unfinished on its thread before this returns.
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink that records what it is given in `log`, and fails on frame `fails_at`.
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
        fails_at: Option<u8>,
    }

    impl FrameSink for Recorder {
        fn write(&mut self, frame: &RgbImage) -> Result<()> {
            let value = frame.as_raw()[0];
            if self.fails_at == Some(value) {
                return Err(Error::InvalidParameter(format!(
                    "cannot take frame {value}"
                )));
            }
            self.log.lock().unwrap().push(format!("frame {value}"));
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<()> {
            self.log.lock().unwrap().push("finished".into());
            Ok(())
        }
    }

    fn recorder(fails_at: Option<u8>) -> (SinkThread, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Recorder {
            log: log.clone(),
            fails_at,
        };
        (SinkThread::new(Box::new(sink)), log)
    }

    fn frame(value: u8) -> RgbImage {
        RgbImage::from_pixel(2, 1, image::Rgb([value; 3]))
    }

    #[test]
    fn a_sink_thread_writes_every_frame_in_order_then_finishes() {
        let (mut sink, log) = recorder(None);
        for value in 0..10 {
            sink.send(frame(value)).unwrap();
        }
        sink.finish().unwrap();
        let mut expected: Vec<String> = (0..10).map(|v| format!("frame {v}")).collect();
        expected.push("finished".into());
        assert_eq!(*log.lock().unwrap(), expected);
    }

    #[test]
    fn a_sink_thread_dropped_unfinished_does_not_finish_its_sink() {
        let (mut sink, log) = recorder(None);
        sink.send(frame(1)).unwrap();
        drop(sink);
        assert_eq!(*log.lock().unwrap(), ["frame 1"]);
    }

    #[test]
    fn a_failing_sink_s_error_comes_back() {
        let (mut sink, _) = recorder(Some(3));
        // The frames queue up before the sink fails: the error comes from a later `send`
        // or from `finish`.
        let sent: Result<()> = (0..20).try_for_each(|value| sink.send(frame(value)));
        let error = match sent {
            Err(error) => error,
            Ok(()) => sink.finish().unwrap_err(),
        };
        assert!(error.to_string().contains("cannot take frame 3"), "{error}");

        let (mut sink, log) = recorder(Some(0));
        let _ = sink.send(frame(0));
        assert!(sink.finish().is_err());
        assert!(log.lock().unwrap().is_empty(), "never finished");
    }
}
