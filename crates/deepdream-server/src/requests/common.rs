//! Checks and text shared by the requests.

use std::ops::RangeInclusive;

use crate::error::{ApiError, ApiResult};

/// The decimal number an `f32` default was written as (`1.4`, not `1.399999976158142`).
pub fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// A 422 unless `value` is within `range`.
pub fn bounded<T: PartialOrd + std::fmt::Display>(
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

/// The PNG text entries every result starts with.
pub fn software_metadata(mode: &str, model: &str) -> Vec<(String, String)> {
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
pub fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The request as JSON, for the job listing.
pub fn as_json(request: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(request).unwrap_or(serde_json::Value::Null)
}

/// The direction of an animation whose keyframes came as JSON (the shape of the CLI's
/// `--keyframes` file), placed on `frames` frames at `fps`.
pub fn direction(
    keyframes: &Option<serde_json::Value>,
    fps: f64,
    frames: usize,
) -> crate::error::ApiResult<deepdream::control::Direction> {
    let schedule = match keyframes {
        None => None,
        Some(value) => Some(
            deepdream::control::keyframes::Keyframes::parse(&value.to_string(), true)?
                .place(fps, Some(frames))?,
        ),
    };
    Ok(deepdream::control::Direction {
        schedule,
        fps,
        ..Default::default()
    })
}
