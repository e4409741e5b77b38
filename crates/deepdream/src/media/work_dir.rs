//! The work folder that makes long animations resumable.

use std::fs;
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};

use crate::error::{Error, Result};
use crate::media::frames::FrameSink;
use crate::media::image_io;

fn frame_name(index: usize) -> String {
    format!("frame_{index:06}.png")
}

/// The folder where an animation's finished frames are kept while it runs, so that an
/// interrupted run picks up where it stopped. It records which job it belongs to; a run of
/// a different job refuses it rather than mixing frames.
pub struct WorkDir {
    path: PathBuf,
}

/// The file in a work folder that names its job.
const JOB_FILE: &str = "job.txt";

impl WorkDir {
    /// The default work folder for `output`: `OUTPUT.deepdream-work` beside it.
    pub fn default_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".deepdream-work");
        output.with_file_name(name)
    }

    /// The value of `key` in the job file of the work folder at `path` (a job text holds
    /// `key value` lines), if there is such a folder and line.
    pub fn recorded(path: &Path, key: &str) -> Option<String> {
        let job = fs::read_to_string(path.join(JOB_FILE)).ok()?;
        job.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .map(str::to_string)
    }

    /// Opens (or creates) the work folder at `path` for the job described by `job` (every
    /// parameter that changes the frames, one per line).
    pub fn open(path: &Path, job: &str) -> Result<Self> {
        let job_file = path.join(JOB_FILE);
        if path.exists() {
            if !path.is_dir() {
                return Err(Error::WorkDirConflict {
                    path: path.to_path_buf(),
                    reason: "it is a file".into(),
                });
            }
            match fs::read_to_string(&job_file) {
                Ok(existing) if existing == job => {}
                Ok(existing) => {
                    let differs = existing
                        .lines()
                        .zip(job.lines())
                        .find(|(a, b)| a != b)
                        .map(|(a, b)| format!("it has {a}, this run {b}"))
                        .unwrap_or_else(|| "its parameters differ".into());
                    return Err(Error::WorkDirConflict {
                        path: path.to_path_buf(),
                        reason: differs,
                    });
                }
                Err(_)
                    if fs::read_dir(path)
                        .map_err(|e| Error::io(path, e))?
                        .next()
                        .is_some() =>
                {
                    return Err(Error::WorkDirConflict {
                        path: path.to_path_buf(),
                        reason: "it is not empty and has no job file".into(),
                    });
                }
                Err(_) => write_atomically(&job_file, job)?,
            }
        } else {
            fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
            write_atomically(&job_file, job)?;
        }
        Ok(WorkDir {
            path: path.to_path_buf(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file of frame `index`.
    pub fn frame_path(&self, index: usize) -> PathBuf {
        self.path.join(frame_name(index))
    }

    /// Frame `index` if it was finished before (frames are written atomically, so a file
    /// that exists is complete).
    pub fn load(&self, index: usize) -> Result<Option<RgbImage>> {
        let path = self.frame_path(index);
        if !path.is_file() {
            return Ok(None);
        }
        Ok(Some(image_io::load(&path)?.to_rgb8()))
    }

    /// Frame `index`, which must have been finished (an error if it is missing).
    pub fn finished_frame(&self, index: usize) -> Result<RgbImage> {
        self.load(index)?.ok_or_else(|| {
            Error::ImageData(format!(
                "frame {index} is missing from {}",
                self.path.display()
            ))
        })
    }

    /// Stores frame `index`.
    pub fn save(&self, index: usize, frame: &RgbImage) -> Result<()> {
        image_io::save(
            &DynamicImage::ImageRgb8(frame.clone()),
            &self.frame_path(index),
            &[],
        )
    }

    /// How many frames, from the first, are finished.
    pub fn finished(&self) -> usize {
        (0..).take_while(|&i| self.frame_path(i).is_file()).count()
    }

    /// Writes the finished frames `0..frames` to `sink` and completes it.
    pub fn encode(&self, frames: usize, mut sink: Box<dyn FrameSink>) -> Result<()> {
        for index in 0..frames {
            sink.write(&self.finished_frame(index)?)?;
        }
        sink.finish()
    }

    /// Deletes the folder and everything in it.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let temp = image_io::temp_file_beside(path, ".txt").map_err(|e| Error::io(path, e))?;
    fs::write(temp.path(), text).map_err(|e| Error::io(path, e))?;
    temp.persist(path)
        .map(drop)
        .map_err(|e| Error::io(path, e.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_folder_refuses_another_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("work");
        let work = WorkDir::open(&path, "model vgg16\nzoom 1.05\n").unwrap();
        assert_eq!(work.finished(), 0);
        work.save(0, &RgbImage::new(4, 3)).unwrap();
        work.save(1, &RgbImage::new(4, 3)).unwrap();
        work.save(3, &RgbImage::new(4, 3)).unwrap();
        assert_eq!(work.finished(), 2);
        let again = WorkDir::open(&path, "model vgg16\nzoom 1.05\n").unwrap();
        assert_eq!(WorkDir::recorded(&path, "zoom").as_deref(), Some("1.05"));
        assert_eq!(WorkDir::recorded(&path, "zo"), None);
        assert_eq!(again.load(1).unwrap().unwrap().dimensions(), (4, 3));
        assert!(again.load(2).unwrap().is_none());
        let error = WorkDir::open(&path, "model vgg16\nzoom 1.1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("zoom 1.05") && error.contains("zoom 1.1"),
            "{error}"
        );
    }

    #[test]
    fn the_default_work_folder_sits_beside_the_output() {
        assert_eq!(
            WorkDir::default_for(Path::new("out/dream.mp4")),
            PathBuf::from("out/dream.mp4.deepdream-work")
        );
    }
}
