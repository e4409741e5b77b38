//! Regions: parts of the picture (given by a mask), each dreamed with its own layers and
//! channels, all in the same gradient.

use std::path::Path;

use crate::control::mask::Mask;
use crate::engine::objective::LayerWeight;
use crate::error::{Error, Result};

/// A part of the picture with its own objective.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Where the region is; `None` for the whole picture.
    pub mask: Option<Mask>,
    /// Its layers and their weights; empty means the model's default layers.
    pub layers: Vec<LayerWeight>,
    /// Amplify only these channels of its layers (all when `None`).
    pub channels: Option<Vec<usize>>,
}

impl Region {
    /// Parses `MASK:OPTIONS` as the CLI's `--region` takes it, reading the mask picture:
    /// `sky.png:layers=block5_conv3` or `ground.png:channels=12,57` or both,
    /// `sky.png:layers=block4_conv3:0.5,block5_conv1,channels=3,9` (a part without `=`
    /// continues the option before it; `;` separates options too).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |what: String| Error::InvalidParameter(format!("--region '{text}': {what}"));
        let (path, options) = text.split_once(':').ok_or_else(|| {
            invalid("give a mask and what to dream there, MASK:layers=…,channels=…".into())
        })?;
        if path.trim().is_empty() {
            return Err(invalid("no mask picture".into()));
        }
        let mut values: Vec<(String, Vec<String>)> = Vec::new();
        for part in options.split([',', ';']).map(str::trim) {
            match part.split_once('=') {
                Some((key, value)) => values.push((key.trim().to_string(), vec![value.into()])),
                None if part.is_empty() => {}
                None => match values.last_mut() {
                    Some((_, list)) => list.push(part.to_string()),
                    None => return Err(invalid(format!("'{part}' is not KEY=VALUE"))),
                },
            }
        }
        if values.is_empty() {
            return Err(invalid(
                "say what to dream there: layers=… and/or channels=…".into(),
            ));
        }
        let mut region = Region {
            mask: None,
            layers: Vec::new(),
            channels: None,
        };
        for (key, list) in values {
            match key.as_str() {
                "layers" => {
                    region.layers = list
                        .iter()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.parse())
                        .collect::<Result<_>>()?;
                    if region.layers.is_empty() {
                        return Err(invalid("layers= names no layer".into()));
                    }
                }
                "channels" => {
                    let channels = list
                        .iter()
                        .map(|c| c.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| invalid("channels= takes channel numbers, 12,57".into()))?;
                    region.channels = Some(channels);
                }
                other => {
                    return Err(invalid(format!(
                        "unknown option '{other}' (use layers= and channels=)"
                    )));
                }
            }
        }
        region.mask = Some(Mask::load(Path::new(path.trim()))?);
        Ok(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        image::GrayImage::new(4, 4).save(&path).unwrap();
        let p = path.display();
        let region = Region::parse(&format!("{p}:layers=a:0.5,b,channels=3,9")).unwrap();
        assert_eq!(region.layers.len(), 2);
        assert_eq!(region.layers[0].weight, 0.5);
        assert_eq!(region.channels, Some(vec![3, 9]));
        assert!(region.mask.is_some());
        for bad in [
            "{p}",
            "{p}:colour=red",
            "{p}:channels=x",
            ":layers=a",
            "{p}:b",
        ] {
            let text = bad.replace("{p}", &p.to_string());
            assert!(Region::parse(&text).is_err(), "{text}");
        }
        let missing = Region::parse("nope.png:layers=a").unwrap_err();
        assert!(missing.to_string().contains("nope.png"), "{missing}");
    }
}
