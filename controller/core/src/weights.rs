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

/// The split of traffic between the two sites, in whole percent. Its fields are private
/// and every constructor checks, so a `Weights` always sums to 100: a split that does not
/// cannot reach a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawWeights")]
pub struct Weights {
    primary: u8,
    dr: u8,
}

/// Weights as written in a file or a state record, before they are checked. Other fields
/// are ignored, as they were before weights were checked on reading.
#[derive(Deserialize)]
struct RawWeights {
    primary: u8,
    dr: u8,
}

impl TryFrom<RawWeights> for Weights {
    type Error = BackendError;
    fn try_from(r: RawWeights) -> Result<Weights, BackendError> {
        Weights::new(r.primary, r.dr)
    }
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
    pub fn from_primary(primary: u8) -> Result<Weights, BackendError> {
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

    /// The split read as two numbers (a file, two routes' weights); they must sum to 100.
    pub fn new(primary: u8, dr: u8) -> Result<Weights, BackendError> {
        if u16::from(primary) + u16::from(dr) != 100 {
            return Err(BackendError::Invalid(format!(
                "weights primary={primary} dr={dr} do not sum to 100"
            )));
        }
        Ok(Weights { primary, dr })
    }

    /// Percent of traffic sent to the primary site (the site coming back).
    pub fn primary(self) -> u8 {
        self.primary
    }

    /// Percent of traffic sent to the DR site (the site serving now).
    pub fn dr(self) -> u8 {
        self.dr
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
    fn weights_always_sum_to_100() {
        let w = Weights::from_primary(25).unwrap();
        assert_eq!((w.primary(), w.dr()), (25, 75));
        assert_eq!(Weights::new(25, 75).unwrap(), w);
        assert!(Weights::from_primary(101).is_err());
        assert!(Weights::new(50, 40).is_err());
        assert_eq!(Weights::ALL_DR.to_string(), "primary 0% / dr 100%");
        assert_eq!(
            Weights::at(StageWeight::FULL),
            Weights::new(100, 0).unwrap()
        );
    }

    #[test]
    fn weights_that_do_not_sum_to_100_are_refused_when_read() {
        let ok: Weights = serde_json::from_str(r#"{"primary": 10, "dr": 90}"#).unwrap();
        assert_eq!(ok.primary(), 10);
        let e = serde_json::from_str::<Weights>(r#"{"primary": 50, "dr": 40}"#).unwrap_err();
        assert!(e.to_string().contains("do not sum to 100"), "{e}");
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"primary":10,"dr":90}"#
        );
    }
}
