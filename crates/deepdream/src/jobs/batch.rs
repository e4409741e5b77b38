//! Many images in one run: finding the inputs (files, folders, manifests), naming the
//! outputs after them, and splitting the work into shards so that N workers on N machines
//! each take a fixed share with no coordinator.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::media::image_io;

/// Extensions of the image files taken from folders.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// Extensions of manifest files: one image path per line, optionally followed by options.
pub const MANIFEST_EXTENSIONS: &[&str] = &["txt", "list"];

/// One image to process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// The image file.
    pub input: PathBuf,
    /// Where its result goes, relative to the output folder (the input's path relative to
    /// the folder or manifest it came from, with the output extension).
    pub output: PathBuf,
    /// Options for this image alone, from its manifest line (already split into words).
    pub options: Vec<String>,
}

impl BatchItem {
    /// A seed for this item that does not change between runs or machines: from its output
    /// path.
    pub fn seed(&self) -> u64 {
        let digest = Sha256::digest(self.output.to_string_lossy().as_bytes());
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % 1_000_000_000
    }
}

/// An input that cannot be processed, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The path as given or found.
    pub path: PathBuf,
    /// Why it is skipped.
    pub reason: String,
}

/// The images named by `inputs` (image files, folders searched recursively for image files,
/// manifests), each with its output path ending in `extension`, sorted by output path; and
/// the inputs that cannot be used. Two inputs that would write the same output keep the
/// first.
pub fn collect(inputs: &[PathBuf], extension: &str) -> Result<(Vec<BatchItem>, Vec<Skipped>)> {
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for input in inputs {
        let ext = image_io::extension(input);
        if input.is_dir() {
            let mut files = Vec::new();
            walk(input, &mut files)?;
            for file in files {
                let relative = file.strip_prefix(input).unwrap_or(&file).to_path_buf();
                items.push(item(file, &relative, extension, Vec::new()));
            }
        } else if !input.exists() {
            skipped.push(Skipped {
                path: input.clone(),
                reason: "no such file or folder".into(),
            });
        } else if MANIFEST_EXTENSIONS.contains(&ext.as_str()) {
            read_manifest(input, extension, &mut items, &mut skipped)?;
        } else if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            let name = PathBuf::from(input.file_name().unwrap_or_default());
            items.push(item(input.clone(), &name, extension, Vec::new()));
        } else {
            skipped.push(Skipped {
                path: input.clone(),
                reason: format!(
                    "not an image ({}), a folder or a manifest ({})",
                    IMAGE_EXTENSIONS.join(", "),
                    MANIFEST_EXTENSIONS.join(", ")
                ),
            });
        }
    }
    items.sort_by(|a, b| a.output.cmp(&b.output));
    let mut unique: Vec<BatchItem> = Vec::with_capacity(items.len());
    for item in items {
        match unique.last() {
            Some(last) if last.output == item.output => skipped.push(Skipped {
                reason: format!(
                    "{} would also be written from {}",
                    item.output.display(),
                    last.input.display()
                ),
                path: item.input,
            }),
            _ => unique.push(item),
        }
    }
    Ok((unique, skipped))
}

fn item(input: PathBuf, relative: &Path, extension: &str, options: Vec<String>) -> BatchItem {
    BatchItem {
        output: relative.with_extension(extension),
        input,
        options,
    }
}

/// The image files under `dir`, recursively, in name order (hidden files skipped).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if IMAGE_EXTENSIONS.contains(&image_io::extension(&path).as_str()) {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads a manifest: one image per line, a path (relative to the manifest's folder) then
/// options; blank lines and lines starting with `#` are ignored.
fn read_manifest(
    manifest: &Path,
    extension: &str,
    items: &mut Vec<BatchItem>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    let text = std::fs::read_to_string(manifest).map_err(|e| Error::io(manifest, e))?;
    let base = manifest.parent().unwrap_or(Path::new(""));
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = match split_words(line) {
            Ok(words) => words,
            Err(reason) => {
                skipped.push(Skipped {
                    path: manifest.to_path_buf(),
                    reason: format!("line {}: {reason}", number + 1),
                });
                continue;
            }
        };
        let Some((path, options)) = words.split_first() else {
            continue;
        };
        let path = Path::new(path);
        let input = base.join(path);
        if !input.is_file() {
            skipped.push(Skipped {
                path: input,
                reason: format!(
                    "line {} of {}: no such file",
                    number + 1,
                    manifest.display()
                ),
            });
            continue;
        }
        let relative = if path.is_absolute() {
            PathBuf::from(path.file_name().unwrap_or_default())
        } else {
            path.components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect()
        };
        items.push(item(input, &relative, extension, options.to_vec()));
    }
    Ok(())
}

/// Splits a manifest line into words at spaces; single or double quotes keep spaces in a
/// word.
fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_manifests_give_sorted_mirrored_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("photos/trip")).unwrap();
        for file in [
            "photos/b.jpg",
            "photos/trip/a.PNG",
            "photos/notes.md",
            "photos/.hidden.png",
            "x.doc",
        ] {
            std::fs::write(root.join(file), b"x").unwrap();
        }
        std::fs::write(
            root.join("list.txt"),
            "# a manifest\n\nphotos/b.jpg --seed 3 --class 'tiger shark'\nmissing.png\n",
        )
        .unwrap();
        let (items, skipped) = collect(
            &[
                root.join("photos"),
                root.join("list.txt"),
                root.join("x.doc"),
            ],
            "png",
        )
        .unwrap();
        let outputs: Vec<_> = items.iter().map(|i| i.output.clone()).collect();
        assert_eq!(
            outputs,
            [
                PathBuf::from("b.png"),
                PathBuf::from("photos/b.png"),
                PathBuf::from("trip/a.png")
            ]
        );
        assert_eq!(items[1].options, ["--seed", "3", "--class", "tiger shark"]);
        let reasons: Vec<_> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("no such file"), "{reasons:?}");
        assert!(reasons[1].contains("not an image"), "{reasons:?}");
    }

    #[test]
    fn the_same_output_twice_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jpg");
        let b = dir.path().join("a.png");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        let (items, skipped) = collect(&[a, b], "png").unwrap();
        assert_eq!(items.len(), 1);
        assert!(
            skipped[0].reason.contains("would also be written"),
            "{skipped:?}"
        );
    }

    #[test]
    fn manifest_words_keep_quoted_spaces() {
        assert_eq!(
            split_words(r#"a.jpg --class "tiger shark"  --seed 1"#).unwrap(),
            ["a.jpg", "--class", "tiger shark", "--seed", "1"]
        );
        assert!(split_words("a.jpg --class 'open").is_err());
    }
}
