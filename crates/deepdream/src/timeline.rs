//! A run's timeline: with `DEEPDREAM_TIMELINE=1`, the moments a run passes its stages (the
//! GPU's libraries found, its context, its handles and kernels ready, the network read, each
//! octave finished, …) are printed to standard error in seconds since [`start`], so that a
//! slow start can be taken apart. Off, a mark costs one check of a flag.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that prints the timeline when `1`.
pub const TIMELINE_VARIABLE: &str = "DEEPDREAM_TIMELINE";

static START: OnceLock<Instant> = OnceLock::new();
static ON: OnceLock<bool> = OnceLock::new();

/// Starts the timeline's clock (a program does first thing); without it, the first mark
/// starts it.
pub fn start() {
    START.get_or_init(Instant::now);
}

/// Whether the timeline is printed.
pub fn on() -> bool {
    *ON.get_or_init(|| std::env::var(TIMELINE_VARIABLE).is_ok_and(|v| v == "1"))
}

/// Prints the stage `what` says was reached, with the time since [`start`], when the timeline
/// is on (`what` is only called then).
pub fn mark(what: impl FnOnce() -> String) {
    if on() {
        let seconds = START.get_or_init(Instant::now).elapsed().as_secs_f64();
        eprintln!("deepdream: {seconds:8.3} s {}", what());
    }
}
