//! `cutover tune`: suggest a policy's bounds and settings from the service's own history;
//! print them as a diff with the false-rollback rate of each on that history; write them
//! into the policy file (comments kept) only with `--write`.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context as _;
use cutover::backtest::time::{parse_span, parse_time};
use cutover::tune::{self, Options};

use super::EXIT_USAGE;
use super::out::{chatter, err, line};

/// `cutover tune POLICY --lookback 7d`.
#[derive(clap::Args)]
pub(crate) struct TuneArgs {
    /// The policy file.
    policy: PathBuf,
    /// How much history to learn from, ending at --to.
    #[arg(long, default_value = "7d")]
    lookback: String,
    /// The end of the history: RFC 3339 or relative to now (-1d); default now.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// Bounds are the largest value seen times this (at least 1).
    #[arg(long, default_value_t = 1.25)]
    headroom: f64,
    /// The Prometheus server's --query.max-samples: range queries are chunked under it.
    #[arg(long, default_value_t = 50_000_000)]
    max_samples: usize,
    /// Write the suggested values into the policy file (its comments and layout kept).
    #[arg(long)]
    write: bool,
}

/// Runs the command.
pub(crate) async fn tune(args: TuneArgs) -> anyhow::Result<u8> {
    let Some(policy) = super::load_or_report(&args.policy) else {
        return Ok(EXIT_USAGE);
    };
    let usage = |e: String| {
        err(&format!("error: {e}"));
        Ok(EXIT_USAGE)
    };
    let to = match parse_time("--to", &args.to, SystemTime::now()) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let lookback = match parse_span("--lookback", &args.lookback) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return usage("--lookback 0: the history must not be empty; write e.g. 7d".into()),
        Err(e) => return usage(e),
    };
    if !(args.headroom.is_finite() && args.headroom >= 1.0) {
        return usage(format!(
            "--headroom {}: must be at least 1 (bounds at or above what was seen)",
            args.headroom
        ));
    }
    if args.max_samples == 0 {
        return usage(
            "--max-samples 0: must be at least 1 (the server's --query.max-samples)".into(),
        );
    }
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let opts = Options {
        from: to.checked_sub(lookback).unwrap_or(SystemTime::UNIX_EPOCH),
        to,
        headroom: args.headroom,
        max_samples: args.max_samples,
    };
    chatter(&format!(
        "cutover tune {}: {} of history to {}, headroom x{}",
        policy.plan.service,
        cutover_core::run::fmt_d(lookback),
        humantime::format_rfc3339_seconds(to),
        args.headroom
    ));
    let started = std::time::Instant::now();
    let t = match tune::tune(&policy, &text, &opts).await {
        Ok(t) => t,
        Err(e) => {
            err(&format!("error: {e:#}"));
            return Ok(3);
        }
    };
    let path = args.policy.display().to_string();
    line(&format!("--- {path} (current: {})", t.current));
    line(&format!("+++ {path} (suggested: {})", t.suggested));
    for s in &t.suggestions {
        line(&format!("@@ {}", s.edit));
        line(&format!(
            "- {}",
            s.current.clone().unwrap_or_else(|| "(not set)".into())
        ));
        line(&format!("+ {}", s.edit.value));
        line(&format!("  # {}", s.why));
        if let Some((a, b)) = s.rates {
            line(&format!(
                "  # this gate alone on the history: now {a}; suggested {b}"
            ));
        }
    }
    if t.suggestions.is_empty() {
        line("(nothing to suggest)");
    }
    for n in &t.notes {
        line(&format!("note: {n}"));
    }
    if t.text != text {
        line("");
        line(&format!("--- a/{path}\n+++ b/{path}"));
        for l in diff(&text, &t.text) {
            line(&l);
        }
    }
    chatter(&format!(
        "{} intervals of history read; {} replays in {:.1}s",
        t.intervals,
        2 + 2 * t.suggestions.iter().filter(|s| s.rates.is_some()).count(),
        started.elapsed().as_secs_f64()
    ));
    if args.write {
        let tmp = args.policy.with_extension("yaml.cutover-tune");
        std::fs::write(&tmp, &t.text)
            .and_then(|()| std::fs::rename(&tmp, &args.policy))
            .with_context(|| format!("cannot write {}", args.policy.display()))?;
        line(&format!("written: {path}"));
    } else if !t.suggestions.is_empty() {
        chatter("nothing written; --write writes these values into the policy file");
    }
    Ok(0)
}

/// The changed lines of `new` against `old`, each with the line before it as context
/// (`-`, `+`, ` `): a longest-common-subsequence diff, policies being short.
fn diff(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, (op, l)) in ops.iter().enumerate() {
        let next_changed = ops.get(k + 1).is_some_and(|o| o.0 != ' ');
        if *op != ' ' || next_changed {
            out.push(format!("{op}{l}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_diff_shows_changed_lines_with_the_line_before() {
        let d = super::diff("a\nb: 1\nc\nd\n", "a\nb: 2\nc\nd\ne: 3\n");
        assert_eq!(d, [" a", "-b: 1", "+b: 2", " d", "+e: 3"]);
    }
}
