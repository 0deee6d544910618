//! Reading a policy: the file, its screening, YAML with environment overrides, serde with
//! the field path of every error, then [`super::compile`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::PromqlBuilder;
use crate::policy::backend::Backend;
use crate::policy::model::Policy;
use crate::policy::plan::{Compiled, Plan, compile};
use crate::policy::screen;

/// One problem in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// The field path, e.g. `stages[2].weight`; empty for the whole file.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Every problem found in a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// A policy that passed every check: the model as written (for what needs no conversion:
/// `prometheus`, `preflight`, `notify`) and its compiled, typed values.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The file.
    pub path: PathBuf,
    /// The model, as read.
    pub policy: Policy,
    /// The routed object, of exactly one kind.
    pub backend: Backend,
    /// The PromQL of this service's traffic at each site.
    pub promql: PromqlBuilder,
    /// What the state machine runs.
    pub plan: Plan,
}

/// Environment variables that override policy fields: `CUTOVER_PROMETHEUS__URL` sets
/// `prometheus.url`. Only names with a `__` count, so other `CUTOVER_*` settings never
/// become unknown policy fields.
pub fn env_overrides() -> config::Map<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.strip_prefix("CUTOVER_")
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect()
}

/// Loads and validates a policy file, with environment overrides applied. Reads at most
/// [`screen::MAX_POLICY_BYTES`] (and one more byte, to tell that a file is too large).
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyErrors> {
    use std::io::Read as _;
    let file = path.display().to_string();
    let one = |message: String| {
        PolicyErrors(vec![PolicyError {
            file: file.clone(),
            field: String::new(),
            message,
        }])
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(screen::MAX_POLICY_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| one(format!("cannot read the policy: {e}")))?;
    if bytes.len() > screen::MAX_POLICY_BYTES {
        return Err(one(format!(
            "the policy is larger than {} bytes; a policy is a few KB: is this the right file?",
            screen::MAX_POLICY_BYTES
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or_default();
        let (line, col) = screen::line_col(valid, at);
        one(format!(
            "line {line}, column {col}: not UTF-8 (byte 0x{:02X}); save the policy as UTF-8",
            e.as_bytes()[at]
        ))
    })?;
    let mut loaded = parse(&file, &text, env_overrides())?;
    loaded.path = path.to_path_buf();
    Ok(loaded)
}

/// Parses, checks and compiles policy text; `file` names it in errors (and is the
/// result's `path`). The text is screened first
/// (see [`screen`]): a leading byte-order mark is dropped; control characters, oversized
/// documents and alias bombs are refused before the YAML loader sees them.
pub fn parse(
    file: &str,
    text: &str,
    env: config::Map<String, String>,
) -> Result<LoadedPolicy, PolicyErrors> {
    let one = |field: String, message: String| {
        PolicyErrors(vec![PolicyError {
            file: file.to_string(),
            field,
            message,
        }])
    };
    let text = screen::screen(text).map_err(|(field, message)| one(field, message))?;
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .add_source(
            config::Environment::with_prefix("CUTOVER")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .map_err(|e| one(String::new(), format!("not valid YAML: {e}")))?;
    let value: serde_json::Value = built
        .try_deserialize()
        .map_err(|e| one(String::new(), format!("cannot read the policy: {e}")))?;
    if !value.is_object() || value.as_object().is_some_and(|o| o.is_empty()) {
        return Err(one(
            String::new(),
            "the policy is empty; see policies/checkout.yaml for a complete example".into(),
        ));
    }
    let policy: Policy = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        one(field, explain_serde(&e.into_inner().to_string()))
    })?;
    from_model(file, policy)
}

/// Compiles a policy model (read from `file`, or edited after reading, as the demo moves its
/// weights file) into a [`LoadedPolicy`], or every problem it has.
pub fn from_model(file: &str, policy: Policy) -> Result<LoadedPolicy, PolicyErrors> {
    match compile(&policy) {
        Ok(Compiled {
            backend,
            promql,
            plan,
        }) => Ok(LoadedPolicy {
            path: PathBuf::from(file),
            policy,
            backend,
            promql,
            plan,
        }),
        Err(problems) => Err(PolicyErrors(
            problems
                .0
                .into_iter()
                .map(|(field, message)| PolicyError {
                    file: file.to_string(),
                    field,
                    message,
                })
                .collect(),
        )),
    }
}

fn explain_serde(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        format!(
            "{msg}; remove it or fix its spelling (policies/policy.schema.json lists every field)"
        )
    } else if msg.starts_with("missing field") {
        format!("{msg}; it is required")
    } else {
        msg.to_string()
    }
}
