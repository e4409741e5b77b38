//! The dream time estimate on real dreams, replayed: `fixtures/step_times.txt` holds the
//! duration of every step of real dreams recorded on the 2-core development machine (VGG16
//! on the README photo with the defaults; Inception v3 on the coffee photo with 20
//! iterations), and the estimate `DreamEta` would have printed (at the moment it is first
//! given) must be within 30 % of the recorded total. Replaying keeps the check free of
//! whatever else the machine is doing; the CLI's printed estimate against a live dream is
//! `crates/deepdream-cli/tests/estimate.rs` (with `DEEPDREAM_TIMED_TESTS=1`).
//!
//! Recording the fixture again (on a quiet machine):
//! `DEEPDREAM_RECORD_STEP_TIMES=1 cargo test --release -p deepdream --test eta -- --nocapture`

mod common;

use std::time::Instant;

use deepdream::jobs::eta::DreamEta;
use deepdream::{DreamParams, Dreamer, Progress, media::image_io};

/// One recorded step: the progress it reported and how long it took since the step before
/// (`None` for the first).
struct Step {
    progress: Progress,
    seconds: Option<f64>,
}

fn dream_steps(
    model: &str,
    photo: &str,
    iterations: Option<usize>,
) -> (Vec<(usize, usize)>, Vec<Step>) {
    let device = deepdream::backend::device::by_name("cpu").unwrap();
    let network = common::model(model, &device);
    let mut params = DreamParams {
        seed: 1,
        ..DreamParams::default()
    };
    if let Some(iterations) = iterations {
        params.iterations = iterations;
    }
    let dreamer = Dreamer::new(network.as_ref(), params, &device).unwrap();
    let image = image_io::load(&common::fixture(photo)).unwrap().to_rgb8();
    let sizes = dreamer.octave_sizes(image.width(), image.height()).unwrap();
    let mut steps = Vec::new();
    let mut last: Option<Instant> = None;
    dreamer
        .dream_watched(&image, 1, |snapshot| {
            let now = Instant::now();
            steps.push(Step {
                progress: snapshot.progress,
                seconds: last
                    .replace(now)
                    .map(|t| now.duration_since(t).as_secs_f64()),
            });
            Ok(())
        })
        .unwrap();
    (sizes, steps)
}

const DREAMS: [(&str, &str, Option<usize>); 2] = [
    ("vgg16", "chelsea.png", None),
    ("inception3", "coffee.png", Some(20)),
];

fn record() {
    let mut text = String::from(
        "# dream MODEL ITERATIONS OCTAVE-SIZES (HxW), then per step: octave iteration width height seconds since the step before (- for the first)\n",
    );
    for (model, photo, iterations) in DREAMS {
        let (sizes, steps) = dream_steps(model, photo, iterations);
        let iterations = steps[0].progress.iterations;
        text.push_str(&format!("dream {model} {iterations}"));
        for (h, w) in &sizes {
            text.push_str(&format!(" {h}x{w}"));
        }
        text.push('\n');
        for step in steps {
            let p = step.progress;
            let seconds = step.seconds.map_or("-".to_string(), |s| format!("{s:.6}"));
            text.push_str(&format!(
                "{} {} {} {} {seconds}\n",
                p.octave, p.iteration, p.width, p.height
            ));
        }
    }
    std::fs::write(common::fixture("step_times.txt"), text).unwrap();
}

/// A recorded dream.
struct Recorded {
    model: String,
    sizes: Vec<(usize, usize)>,
    iterations: usize,
    steps: Vec<Step>,
}

fn recorded() -> Vec<Recorded> {
    let text = std::fs::read_to_string(common::fixture("step_times.txt")).unwrap();
    let mut dreams: Vec<Recorded> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "dream" {
            let sizes = words[3..]
                .iter()
                .map(|s| {
                    let (h, w) = s.split_once('x').unwrap();
                    (h.parse().unwrap(), w.parse().unwrap())
                })
                .collect();
            dreams.push(Recorded {
                model: words[1].to_string(),
                sizes,
                iterations: words[2].parse().unwrap(),
                steps: Vec::new(),
            });
            continue;
        }
        let Recorded {
            sizes,
            iterations,
            steps,
            ..
        } = dreams.last_mut().unwrap();
        let number = |i: usize| words[i].parse::<usize>().unwrap();
        steps.push(Step {
            progress: Progress {
                octave: number(0),
                octaves: sizes.len(),
                iteration: number(1),
                iterations: *iterations,
                width: number(2),
                height: number(3),
            },
            seconds: words[4].parse().ok(),
        });
    }
    dreams
}

#[test]
fn real_dreams_replayed_are_estimated_within_30_percent() {
    if std::env::var_os("DEEPDREAM_RECORD_STEP_TIMES").is_some() {
        record();
    }
    let dreams = recorded();
    assert_eq!(dreams.len(), DREAMS.len());
    for Recorded {
        model,
        sizes,
        iterations,
        steps,
    } in dreams
    {
        assert_eq!(steps.len(), sizes.len() * iterations, "{model}");
        let total: f64 = steps.iter().filter_map(|s| s.seconds).sum();
        let mut eta = DreamEta::new(&sizes, iterations);
        let mut elapsed = 0.0;
        let mut estimate = None;
        for (k, step) in steps.iter().enumerate() {
            elapsed += step.seconds.unwrap_or(0.0);
            if let Some(left) = eta.step_took(&step.progress, step.seconds) {
                estimate = Some((k, elapsed, elapsed + left));
                break;
            }
        }
        let (at, elapsed, estimate) = estimate.unwrap_or_else(|| panic!("{model}: no estimate"));
        let error = (estimate / total - 1.0).abs();
        eprintln!(
            "{model}: estimated {estimate:.2} s after step {} of {}, took {total:.2} s ({:.0} %)",
            at + 1,
            steps.len(),
            error * 100.0
        );
        assert!(
            error <= 0.3,
            "{model}: estimated {estimate} s, took {total} s"
        );
        // The estimate comes early: within the first fifth of the time.
        assert!(
            elapsed < total / 5.0,
            "{model}: first estimate after {elapsed} s"
        );
    }
}
