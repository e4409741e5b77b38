//! Splitting work over workers that share nothing but their number: `--shard I/N`, or the
//! index a scheduler (Kubernetes Indexed Jobs, Slurm job arrays) puts in the environment.

use crate::error::{Error, Result};

/// A worker's share of a job split over several processes or machines with no coordinator:
/// the batch items whose position modulo `count` is `index`, or the `index`-th part of a
/// video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This worker's number, from 0.
    pub index: usize,
    /// Number of workers.
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` (worker I of N, I from 0).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidParameter(format!(
                "shard '{text}' is not I/N with 0 <= I < N (e.g. 0/4)"
            ))
        };
        let (index, count) = text.split_once('/').ok_or_else(invalid)?;
        let index: usize = index.trim().parse().map_err(|_| invalid())?;
        let count: usize = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 || index >= count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }

    /// The shard a scheduler gives this process through the environment (`env` looks a
    /// variable up): a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` with `shards`
    /// workers, or a Slurm job array's `SLURM_ARRAY_TASK_ID` (less `SLURM_ARRAY_TASK_MIN`)
    /// of `SLURM_ARRAY_TASK_COUNT`. `None` when neither is there.
    pub fn from_environment(
        shards: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|value| {
                    value.trim().parse().map_err(|_| {
                        Error::InvalidParameter(format!("{name}={value} is not a number"))
                    })
                })
                .transpose()
        };
        let shard = |index: usize, count: usize, source: &str| {
            if count == 0 || index >= count {
                Err(Error::InvalidParameter(format!(
                    "{source} gives worker {index} of {count}"
                )))
            } else {
                Ok(Some(Shard { index, count }))
            }
        };
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or_else(|| {
                Error::InvalidParameter(
                    "JOB_COMPLETION_INDEX is set: say how many workers there are with --shards N (the Job's completions)".into(),
                )
            })?;
            return shard(index, count, "JOB_COMPLETION_INDEX with --shards");
        }
        if let (Some(id), Some(count)) = (
            number("SLURM_ARRAY_TASK_ID")?,
            number("SLURM_ARRAY_TASK_COUNT")?,
        ) {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?;
            return shard(index, count, "the Slurm job array");
        }
        match shards {
            Some(_) => Err(Error::InvalidParameter(
                "--shards needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); elsewhere use --shard I/N".into(),
            )),
            None => Ok(None),
        }
    }

    /// Whether the batch item at `position` (in the sorted list) is this worker's.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_work_exactly_once() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for position in 0..30 {
            assert_eq!(shards.iter().filter(|s| s.takes(position)).count(), 1);
        }
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedulers_give_the_shard_through_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let k8s = Shard::from_environment(Some(4), env(&[("JOB_COMPLETION_INDEX", "2")]));
        assert_eq!(k8s.unwrap(), Some(Shard { index: 2, count: 4 }));
        let slurm = Shard::from_environment(
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "8"),
            ]),
        );
        assert_eq!(slurm.unwrap(), Some(Shard { index: 4, count: 8 }));
        assert_eq!(Shard::from_environment(None, env(&[])).unwrap(), None);
        assert!(Shard::from_environment(None, env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert!(Shard::from_environment(Some(2), env(&[("JOB_COMPLETION_INDEX", "2")])).is_err());
        assert!(Shard::from_environment(Some(2), env(&[])).is_err());
    }
}
