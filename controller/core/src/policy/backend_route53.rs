//! `backend.route53`: two weighted records of one name.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `backend.route53`: two weighted records of one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route53Config {
    /// The hosted zone id, e.g. `Z0123456789ABC` (a `/hostedzone/` prefix is accepted).
    pub hosted_zone_id: String,
    /// The record name, with or without the trailing dot.
    pub record_name: String,
    /// The record type, e.g. `CNAME`, `A`, `AAAA`.
    pub record_type: String,
    /// `SetIdentifier` of the primary's weighted record.
    pub primary_set_identifier: String,
    /// `SetIdentifier` of DR's weighted record.
    pub dr_set_identifier: String,
    /// An endpoint override for emulators (else `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// How long to wait for a change to be `INSYNC`. Default `5m`.
    #[serde(default = "d_insync_timeout", with = "humantime_secs")]
    #[schemars(with = "String")]
    pub insync_timeout: Duration,
    /// Attempts of one API call before giving up (throttling, 5xx). Default 8.
    #[serde(default = "d_max_attempts")]
    pub max_attempts: u32,
}

fn d_insync_timeout() -> Duration {
    Duration::from_secs(300)
}
fn d_max_attempts() -> u32 {
    8
}

mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration ({e}); write e.g. 5m"))
        })
    }
}
