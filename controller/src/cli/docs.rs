//! `cutover completions SHELL` and `cutover man`: generated from the command line's own
//! definition, so they never go stale.

use clap_complete::Shell;

/// Prints the completion script of `shell`; exit 0.
pub(crate) fn completions(shell: Shell, cmd: &mut clap::Command) -> u8 {
    let mut buf = Vec::new();
    clap_complete::generate(shell, cmd, "cutover", &mut buf);
    super::out::print(&String::from_utf8_lossy(&buf));
    0
}

/// Prints the man page (roff); exit 0, or 2 if it cannot be rendered.
pub(crate) fn man(cmd: clap::Command) -> u8 {
    let mut buf = Vec::new();
    match clap_mangen::Man::new(cmd).render(&mut buf) {
        Ok(()) => {
            super::out::print(&String::from_utf8_lossy(&buf));
            0
        }
        Err(e) => {
            super::out::err(&format!("cutover: cannot render the man page: {e}"));
            super::EXIT_USAGE
        }
    }
}
