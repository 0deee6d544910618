//! `cutover schema`: prints the policy JSON Schema (`policies/policy.schema.json`).

use cutover_core::policy;

/// Prints the schema; exit 0.
pub(crate) fn schema() -> u8 {
    super::out::print(&policy::json_schema());
    0
}
