//! What the commands print while they work: progress bars, plans, durations, output.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use deepdream::Progress;
use deepdream::engine::tiling::Plan;
use indicatif::{ProgressBar, ProgressStyle};

/// Tells how the gradient of a `width`x`height` picture will be computed.
pub fn print_plan(plan: &Plan, width: u32, height: u32, model: &str) {
    let memory = deepdream::error::format_bytes(plan.gradient_bytes);
    match plan.tile {
        None => {
            note!("Dreaming {width}x{height} with {model} (about {memory} for the gradient)")
        }
        Some(tile) => note!(
            "Dreaming {width}x{height} with {model} in tiles of {tile} pixels (about {memory} per tile)"
        ),
    }
}

/// A progress bar over `total` units, drawn only on a terminal.
pub fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  ETA {{eta}}"
        ))
        .expect("valid template"),
    );
    bar
}

/// Where a dream is, for the progress bar.
pub fn step_message(p: &Progress) -> String {
    format!(
        "octave {}/{} ({}x{}), iteration {}/{}",
        p.octave + 1,
        p.octaves,
        p.width,
        p.height,
        p.iteration,
        p.iterations
    )
}

/// Seconds as a short, readable duration.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Writes a command's output to stdout. A reader that went away (`deepdream models list |
/// head -1`) is not an error: the output was not wanted any more.
pub fn print(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write the output")
        }
        _ => Ok(()),
    }
}
