//! Estimating the time left of a long job from the rate of the work done so far.

use std::time::Instant;

use crate::dream::Progress;

/// Estimates the time left of a job measured in units of work (for a dream: pixels times
/// steps). The rate is taken from the work done since the first update, so the first step,
/// which also pays for warming up (allocations, caches), does not skew it.
#[derive(Clone, Debug)]
pub struct Eta {
    total: f64,
    first: Option<(Instant, f64)>,
}

impl Eta {
    /// An estimator for `total` units of work.
    pub fn new(total: f64) -> Self {
        Eta { total, first: None }
    }

    /// Records that `done` units are finished; returns the seconds left once a rate is known
    /// (from the second update on).
    pub fn update(&mut self, done: f64) -> Option<f64> {
        let now = Instant::now();
        let Some((start, done_at_start)) = self.first else {
            self.first = Some((now, done));
            return None;
        };
        let seconds = now.duration_since(start).as_secs_f64();
        let rate = (done - done_at_start) / seconds;
        (rate > 0.0 && rate.is_finite()).then(|| ((self.total - done) / rate).max(0.0))
    }
}

/// The work of a dream with these octave sizes (`(height, width)`, smallest first) and
/// `iterations` steps per octave, in pixel-steps.
pub fn dream_work(sizes: &[(usize, usize)], iterations: usize) -> f64 {
    sizes.iter().map(|&(h, w)| (h * w) as f64).sum::<f64>() * iterations as f64
}

/// The part of [`dream_work`] finished at `progress`.
pub fn dream_work_done(sizes: &[(usize, usize)], iterations: usize, progress: &Progress) -> f64 {
    let finished = dream_work(&sizes[..progress.octave.min(sizes.len())], iterations);
    let current = sizes.get(progress.octave).map_or(0, |&(h, w)| h * w);
    finished + (current * progress.iteration) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_counts_pixels_times_steps() {
        let sizes = [(10, 10), (20, 20)];
        let at = |octave, iteration| Progress {
            octave,
            octaves: 2,
            iteration,
            iterations: 5,
            width: 0,
            height: 0,
        };
        assert_eq!(dream_work(&sizes, 5), 2500.0);
        assert_eq!(dream_work_done(&sizes, 5, &at(0, 1)), 100.0);
        assert_eq!(dream_work_done(&sizes, 5, &at(1, 5)), 2500.0);
    }

    #[test]
    fn the_first_update_gives_no_estimate() {
        let mut eta = Eta::new(10.0);
        assert_eq!(eta.update(1.0), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let left = eta.update(2.0).expect("a rate after two updates");
        // One unit took about 20 ms, eight are left.
        assert!((0.1..1.0).contains(&left), "{left}");
    }
}
