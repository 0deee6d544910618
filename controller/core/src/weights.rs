//! The domain values of a failback: the two sites, a split of traffic between them, and a
//! stage's weight.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::traffic::BackendError;

/// One of the two sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Site {
    /// The site coming back.
    Primary,
    /// The site serving now, the known-healthy baseline.
    Dr,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Site::Primary => "primary",
            Site::Dr => "dr",
        })
    }
}

/// A stage's primary weight: a whole percent from 1 to 100. Only [`StageWeight::new`] makes
/// one, when a policy is compiled, so a weight above 100 cannot exist past that point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u8")]
pub struct StageWeight(u8);

impl StageWeight {
    /// All traffic on the primary: the last stage of every plan.
    pub const FULL: StageWeight = StageWeight(100);

    /// The weight `percent`, if it is a stage weight (1 to 100).
    pub fn new(percent: u32) -> Option<StageWeight> {
        (1..=100)
            .contains(&percent)
            .then_some(StageWeight(percent as u8))
    }

    /// The percent of traffic on the primary.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u32> for StageWeight {
    type Error = String;
    fn try_from(p: u32) -> Result<StageWeight, String> {
        StageWeight::new(p).ok_or_else(|| format!("{p} is not a stage weight (1 to 100)"))
    }
}

impl From<StageWeight> for u8 {
    fn from(w: StageWeight) -> u8 {
        w.0
    }
}

impl fmt::Display for StageWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The split of traffic between the two sites, in whole percent; always sums to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Weights {
    /// Percent of traffic sent to the primary site (the site coming back).
    pub primary: u8,
    /// Percent of traffic sent to the DR site (the site serving now).
    pub dr: u8,
}

impl Weights {
    /// All traffic on the DR site: where a failback starts and where a rollback ends.
    pub const ALL_DR: Weights = Weights {
        primary: 0,
        dr: 100,
    };

    /// The split of a stage: its weight on the primary, the rest on DR. Infallible: the
    /// stage weight was checked when the policy was compiled.
    pub fn at(stage: StageWeight) -> Weights {
        Weights {
            primary: stage.0,
            dr: 100 - stage.0,
        }
    }

    /// The split that sends `primary` percent to the primary site and the rest to DR, for
    /// numbers read from outside (a backend, an operator's flag).
    ///
    /// Values above 100 are an error, never clamped: a wrong weight must not reach traffic.
    pub fn primary(primary: u8) -> Result<Weights, BackendError> {
        if primary > 100 {
            return Err(BackendError::Invalid(format!(
                "primary weight {primary} is above 100; weights are percent of traffic"
            )));
        }
        Ok(Weights {
            primary,
            dr: 100 - primary,
        })
    }

    /// Checks that the two weights sum to 100.
    pub fn validate(&self) -> Result<(), BackendError> {
        if u16::from(self.primary) + u16::from(self.dr) != 100 {
            return Err(BackendError::Invalid(format!(
                "weights primary={} dr={} do not sum to 100",
                self.primary, self.dr
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "primary {}% / dr {}%", self.primary, self.dr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_from_primary() {
        assert_eq!(
            Weights::primary(25).unwrap(),
            Weights {
                primary: 25,
                dr: 75
            }
        );
        assert!(Weights::primary(101).is_err());
        assert!(
            Weights {
                primary: 50,
                dr: 40
            }
            .validate()
            .is_err()
        );
        assert_eq!(Weights::ALL_DR.to_string(), "primary 0% / dr 100%");
    }
}
