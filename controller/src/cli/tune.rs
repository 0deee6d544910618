//! `cutover tune` (being written).

/// `cutover tune POLICY --lookback 7d`.
#[derive(clap::Args)]
pub(crate) struct TuneArgs {
    /// The policy file.
    policy: std::path::PathBuf,
}

/// Runs the command.
pub(crate) async fn tune(args: TuneArgs) -> anyhow::Result<u8> {
    let _ = args.policy;
    Ok(0)
}
