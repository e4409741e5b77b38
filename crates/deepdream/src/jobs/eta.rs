//! Estimating the time left of a long job from the rate of the work done so far.

use std::time::Instant;

use crate::modes::dream::Progress;

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

/// Estimates the time left of a dream from its steps' durations. A step costs a fixed part
/// (launching the network's operations, which small octaves feel most) plus a part that
/// grows with the pixels; once steps of two octave sizes are timed, the two parts are fitted
/// to each octave's median step and the remaining steps priced one by one. The first step of
/// each octave, which also prepares for the new size (and for the very first, warms up
/// allocations and caches), is not used.
#[derive(Clone, Debug)]
pub struct DreamEta {
    pixels: Vec<f64>,
    iterations: usize,
    /// Per octave: the timed steps' seconds.
    timed: Vec<Vec<f64>>,
    last: Option<Instant>,
}

impl DreamEta {
    /// An estimator for a dream with these octave sizes (`(height, width)`, smallest first)
    /// and `iterations` steps per octave.
    pub fn new(sizes: &[(usize, usize)], iterations: usize) -> Self {
        DreamEta {
            pixels: sizes.iter().map(|&(h, w)| (h * w) as f64).collect(),
            iterations,
            timed: vec![Vec::new(); sizes.len()],
            last: None,
        }
    }

    /// Steps an octave needs timed before it counts: two (one when it has no more).
    fn enough(&self) -> usize {
        self.iterations.saturating_sub(1).clamp(1, 2)
    }

    /// Records the step that `progress` reports as just finished; returns the seconds left
    /// once they can be priced: when every octave has the same size, from the third step;
    /// else from the third step of the second octave.
    pub fn step(&mut self, progress: &Progress) -> Option<f64> {
        let now = Instant::now();
        let seconds = self
            .last
            .replace(now)
            .map(|last| now.duration_since(last).as_secs_f64());
        self.step_took(progress, seconds)
    }

    /// [`DreamEta::step`] with the step's duration given (`None` for the very first step,
    /// whose start is not known): for replaying recorded dreams.
    pub fn step_took(&mut self, progress: &Progress, seconds: Option<f64>) -> Option<f64> {
        // An octave's first step also prepares for the new size (kernels, buffers): it is
        // timed only when it is the octave's only step.
        let counts = progress.iteration > 1 || self.iterations == 1;
        if let Some(seconds) = seconds
            && counts
            && let Some(octave) = self.timed.get_mut(progress.octave)
        {
            octave.push(seconds);
        }
        let (fixed, per_pixel) = self.fit()?;
        let left: f64 = (0..self.pixels.len())
            .map(|octave| {
                let steps = match octave.cmp(&progress.octave) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Equal => self.iterations.saturating_sub(progress.iteration),
                    std::cmp::Ordering::Greater => self.iterations,
                };
                steps as f64 * (fixed + per_pixel * self.pixels[octave])
            })
            .sum();
        Some(left)
    }

    /// The fixed and per-pixel cost of a step, by least squares over the octaves' median
    /// step times (both kept non-negative).
    fn fit(&self) -> Option<(f64, f64)> {
        let points: Vec<(f64, f64)> = self
            .timed
            .iter()
            .zip(&self.pixels)
            .filter(|(times, _)| times.len() >= self.enough())
            .map(|(times, &pixels)| (pixels, median(times)))
            .collect();
        let all_same = self.pixels.windows(2).all(|w| w[0] == w[1]);
        match points.as_slice() {
            [] => None,
            [(pixels, seconds)] if all_same => Some((0.0, seconds / pixels.max(1.0))),
            [_] => None,
            _ => {
                let n = points.len() as f64;
                let mean_p = points.iter().map(|p| p.0).sum::<f64>() / n;
                let mean_t = points.iter().map(|p| p.1).sum::<f64>() / n;
                let covariance: f64 = points.iter().map(|p| (p.0 - mean_p) * (p.1 - mean_t)).sum();
                let variance: f64 = points.iter().map(|p| (p.0 - mean_p).powi(2)).sum();
                let per_pixel = (covariance / variance).max(0.0);
                let fixed = mean_t - per_pixel * mean_p;
                if fixed >= 0.0 {
                    Some((fixed, per_pixel))
                } else {
                    // Steps cost less than proportionally: price by pixels alone.
                    let total_t: f64 = points.iter().map(|p| p.1).sum();
                    let total_p: f64 = points.iter().map(|p| p.0).sum();
                    Some((0.0, total_t / total_p))
                }
            }
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// The work of a dream with these octave sizes (`(height, width)`, smallest first) and
/// `iterations` steps per octave, in pixel-steps.
pub fn dream_work(sizes: &[(usize, usize)], iterations: usize) -> f64 {
    sizes.iter().map(|&(h, w)| (h * w) as f64).sum::<f64>() * iterations as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_counts_pixels_times_steps() {
        assert_eq!(dream_work(&[(10, 10), (20, 20)], 5), 2500.0);
    }

    #[test]
    fn dream_steps_are_priced_by_a_fixed_and_a_per_pixel_part() {
        // Two octaves of 100 and 400 pixels; steps cost 10 ms + 0.1 ms/pixel, i.e. 20 ms and
        // 50 ms. Fed synthetic durations through `timed`.
        let mut eta = DreamEta::new(&[(10, 10), (20, 20)], 3);
        eta.timed = vec![vec![0.020, 0.020], vec![0.050, 0.050]];
        let (fixed, per_pixel) = eta.fit().unwrap();
        assert!((fixed - 0.010).abs() < 1e-9 && (per_pixel - 0.0001).abs() < 1e-9);
        // One octave timed, the second not enough yet: no estimate.
        eta.timed = vec![vec![0.020, 0.020], vec![0.050]];
        assert_eq!(eta.fit(), None);
        // An outlier step does not move the median.
        eta.timed = vec![vec![0.020, 0.020, 0.900], vec![0.050, 0.050]];
        assert!((eta.fit().unwrap().0 - 0.010).abs() < 1e-9);
        // All octaves the same size: the median step prices the rest.
        let mut same = DreamEta::new(&[(10, 10), (10, 10)], 3);
        same.timed = vec![vec![0.020, 0.020], Vec::new()];
        assert!((same.fit().unwrap().1 - 0.0002).abs() < 1e-12);
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
