//! `cutover validate`: checks policy files and prints every problem found.

use std::path::PathBuf;

use cutover_core::policy;

use super::EXIT_USAGE;

/// Loads every file; prints `ok` or its problems. Exit 0 if all are valid, else 2.
pub(crate) fn validate(paths: &[PathBuf]) -> u8 {
    let mut bad = 0;
    for p in paths {
        match policy::load(p) {
            Ok(_) => super::out::line(&format!("{}: ok", p.display())),
            Err(errors) => {
                bad += 1;
                super::out::err(&errors.to_string());
            }
        }
    }
    if bad == 0 { 0 } else { EXIT_USAGE }
}
