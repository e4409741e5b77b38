//! Requests for jobs as the page sends them (JSON), each checked against its model and
//! pictures before it is queued, with the command line that makes the same picture.

mod dream;
mod style;
mod video;
mod visualize;
mod zoom;

pub use dream::{DreamRequest, DreamSettings};
pub use style::{StyleRequest, WeightedImage};
pub use video::VideoRequest;
pub use visualize::VisualizeRequest;
pub use zoom::ZoomRequest;

use std::ops::RangeInclusive;

use crate::error::{ApiError, ApiResult};

/// The decimal number an `f32` default was written as (`1.4`, not `1.399999976158142`).
fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// A 422 unless `value` is within `range`.
fn bounded<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: RangeInclusive<T>,
) -> ApiResult<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "{name} must be from {} to {} (got {value})",
            range.start(),
            range.end()
        )))
    }
}

/// How an animation's frames after the first are dreamed, checked against the dream's
/// bounds.
fn frame_settings(octaves: usize, iterations: usize) -> ApiResult<deepdream::modes::FrameSettings> {
    bounded("octaves per frame", octaves, 1..=dream::MAX_OCTAVES)?;
    bounded(
        "iterations per frame",
        iterations,
        1..=dream::MAX_ITERATIONS,
    )?;
    Ok(deepdream::modes::FrameSettings {
        octaves,
        iterations,
    })
}

/// The PNG text entries every result starts with.
fn software_metadata(mode: &str, model: &str) -> Vec<(String, String)> {
    vec![
        (
            "Software".to_string(),
            format!("deepdream {}", env!("CARGO_PKG_VERSION")),
        ),
        ("deepdream:mode".to_string(), mode.to_string()),
        ("deepdream:model".to_string(), model.to_string()),
    ]
}

/// `text` quoted for a POSIX shell when it needs quoting.
fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The request as JSON, for the job listing.
fn as_json(request: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(request).unwrap_or(serde_json::Value::Null)
}
