//! Ctrl-C (SIGINT) and SIGTERM: the first asks the running job to stop after its current
//! step (outputs are only ever written complete, so nothing partial is left, and the
//! animations' work folders keep the finished frames for a rerun); a second one ends the
//! process at once. The exit status is 130 for SIGINT and 143 for SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The signal received (0: none), set by the handlers.
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Installs the handlers (`serve` stops on its own signal handling instead).
pub fn install() -> Result<()> {
    let received = RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    let armed = Arc::new(AtomicBool::new(false));
    for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
        // A second signal ends the process; the first only arms that.
        flag::register_conditional_shutdown(signal, status, armed.clone())
            .and_then(|_| flag::register(signal, armed.clone()))
            .and_then(|_| flag::register_usize(signal, received.clone(), signal as usize))
            .context("cannot install the signal handlers")?;
    }
    Ok(())
}

fn received() -> usize {
    RECEIVED.get().map_or(0, |r| r.load(Ordering::SeqCst))
}

/// An error that stops the running job once a signal came (for the jobs' observers).
pub fn check() -> deepdream::Result<()> {
    if received() == 0 {
        Ok(())
    } else {
        Err(deepdream::Error::Cancelled)
    }
}

/// The exit status for the signal received, if one was.
pub fn exit_status() -> Option<u8> {
    match received() as i32 {
        0 => None,
        SIGINT => Some(130),
        _ => Some(143),
    }
}
