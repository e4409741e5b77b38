//! Frames that arrive in real time: a reader thread takes them from a source as they come
//! (or, for a file, at the file's own rate) and keeps only the newest, so a consumer that
//! is slower than the source skips frames instead of falling behind. A recording of such a
//! feed keeps the source's rate.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::error::{Error, Result};
use crate::media::frames::{FrameSink, FrameSource};

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
