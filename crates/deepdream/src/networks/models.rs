//! The catalogue of the networks the tool knows by name; each one's [`ModelSpec`] sits in
//! its architecture's file.

use crate::error::{Error, Result};
use crate::networks::spec::ModelSpec;
use crate::networks::{efficientnet_lite0, inception3, vgg16};

/// Every model the library can fetch and load by name.
pub const ALL: &[&ModelSpec] = &[&vgg16::SPEC, &inception3::SPEC, &efficientnet_lite0::SPEC];

/// The model used when none is named.
pub const DEFAULT: &ModelSpec = &vgg16::SPEC;

/// Looks a model up by name.
pub fn find(name: &str) -> Result<&'static ModelSpec> {
    ALL.iter()
        .copied()
        .find(|spec| spec.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        })
}
