//! The split of traffic between the two sites.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::traffic::BackendError;

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

    /// The split that sends `primary` percent to the primary site and the rest to DR.
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
