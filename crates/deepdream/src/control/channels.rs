//! Channels chosen for the user: the strongest, weakest or random channels of a layer, by
//! their mean activation on the picture being dreamed (neural-dream's idea).

use rand::Rng;
use rand::seq::index;

use crate::error::{Error, Result};

/// Which channels to pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Those with the highest mean activation: what the picture already shows.
    Strongest,
    /// Those with the lowest: what the picture does not show yet.
    Weakest,
    /// Any, at random (from the dream's seed).
    Random,
}

/// `count` channels of each layer picked by `pick`, once per dream or again each octave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoChannels {
    /// How they are picked.
    pub pick: Pick,
    /// How many per layer.
    pub count: usize,
    /// Pick again at each octave, on the picture as it is then.
    pub each_octave: bool,
}

impl AutoChannels {
    /// Parses `auto:strongest:N`, `auto:weakest:N` or `auto:random:N`, with `:octave`
    /// after it to pick again each octave.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidParameter(format!(
                "'{text}' is not auto:strongest:N, auto:weakest:N or auto:random:N (add :octave to pick again each octave)"
            ))
        };
        let parts: Vec<&str> = text.trim().split(':').map(str::trim).collect();
        let (pick, count, each_octave) = match parts[..] {
            ["auto", pick, count] => (pick, count, false),
            ["auto", pick, count, "octave"] => (pick, count, true),
            _ => return Err(invalid()),
        };
        let pick = match pick {
            "strongest" => Pick::Strongest,
            "weakest" => Pick::Weakest,
            "random" => Pick::Random,
            _ => return Err(invalid()),
        };
        let count = count.parse().ok().filter(|&n| n > 0).ok_or_else(invalid)?;
        Ok(AutoChannels {
            pick,
            count,
            each_octave,
        })
    }

    /// The channels picked from a layer whose channels have mean activations `means`, in
    /// increasing order (`rng` draws the random ones).
    pub fn choose(&self, means: &[f32], rng: &mut impl Rng) -> Vec<usize> {
        let count = self.count.min(means.len());
        let mut chosen: Vec<usize> = match self.pick {
            Pick::Random => index::sample(rng, means.len(), count).into_vec(),
            Pick::Strongest | Pick::Weakest => {
                let mut order: Vec<usize> = (0..means.len()).collect();
                order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
                if self.pick == Pick::Weakest {
                    order.reverse();
                }
                order.truncate(count);
                order
            }
        };
        chosen.sort_unstable();
        chosen
    }
}

impl std::fmt::Display for AutoChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pick = match self.pick {
            Pick::Strongest => "strongest",
            Pick::Weakest => "weakest",
            Pick::Random => "random",
        };
        let octave = if self.each_octave { ":octave" } else { "" };
        write!(f, "auto:{pick}:{}{octave}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn picks_by_mean_activation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let means = [0.5, 3.0, -1.0, 2.0, 0.0];
        let strongest = AutoChannels::parse("auto:strongest:2").unwrap();
        assert_eq!(strongest.choose(&means, &mut rng), vec![1, 3]);
        let weakest = AutoChannels::parse("auto:weakest:2:octave").unwrap();
        assert!(weakest.each_octave);
        assert_eq!(weakest.choose(&means, &mut rng), vec![2, 4]);
        let random = AutoChannels::parse("auto:random:9").unwrap();
        assert_eq!(random.choose(&means, &mut rng), vec![0, 1, 2, 3, 4]);
        assert_eq!(random.to_string(), "auto:random:9");
        for bad in [
            "auto",
            "auto:loudest:3",
            "auto:strongest:0",
            "auto:strongest:x",
            "strongest:3",
        ] {
            assert!(AutoChannels::parse(bad).is_err(), "{bad}");
        }
    }
}
