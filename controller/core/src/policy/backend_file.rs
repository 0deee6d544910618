//! `backend.file`: weights in a local JSON file (demos, tests, custom integrations).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Policy settings of the `file` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBackendConfig {
    /// Path of the JSON weights file, e.g. `/var/run/cutover/checkout-weights.json`.
    pub path: PathBuf,
    /// Create the file with all traffic on DR when it does not exist (demos); default false,
    /// so that a typo in the path is an error rather than a fresh file.
    #[serde(default)]
    pub create: bool,
}
