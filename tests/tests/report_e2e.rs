//! The post-mortem report as a person reads it: `report.md` links `chart.svg` (viewers strip
//! inline SVG), and the chart renders with a real SVG renderer (librsvg's `rsvg-convert`,
//! installed by tests/setup.sh) at 1200 px wide, showing the stages, the gate crossing its
//! bound and the rollback on a wall-clock axis.

use std::process::Command;

use cutover_tests::cli::cutover;
use cutover_tests::{TempDir, require_program};

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn the_error_spike_report_links_a_chart_that_renders_readably() {
    let rsvg = require_program("rsvg-convert");
    let dir = TempDir::new("report");
    let report = dir.path().join("report");
    let (code, out) = cutover(&[
        "demo",
        "--scenario",
        "error-spike",
        "--speed",
        "0",
        "--dir",
        dir.path().join("run").to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");

    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("![weights and gates over time](chart.svg)"),
        "{md}"
    );
    assert!(!md.contains("<svg"), "report.md inlines the SVG");
    assert!(md.contains("linked rather than inlined"), "{md}");

    let svg = std::fs::read_to_string(report.join("chart.svg")).unwrap();
    for text in [
        "stage 1 · 10%",
        "stage 2 · 25%",
        "rollback · 0%",
        "bound (100 %)",
        "error-rate (primary)",
        "error-rate (DR)",
        "gate value, % of its bound",
        "time (UTC)",
    ] {
        assert!(svg.contains(text), "chart.svg lacks `{text}`");
    }
    // A wall-clock axis: HH:MM:SS labels, not seconds since start.
    let clock_labels = svg
        .split(['>', '<'])
        .filter(|t| {
            let b = t.trim().as_bytes();
            b.len() == 8
                && b[2] == b':'
                && b[5] == b':'
                && t.trim()
                    .replace(':', "")
                    .bytes()
                    .all(|c| c.is_ascii_digit())
        })
        .count();
    assert!(clock_labels >= 6, "{clock_labels} HH:MM:SS labels");

    let png = dir.path().join("chart.png");
    let status = Command::new(rsvg)
        .args(["-w", "1200"])
        .arg(report.join("chart.svg"))
        .arg("-o")
        .arg(&png)
        .status()
        .expect("rsvg-convert runs");
    assert!(status.success(), "rsvg-convert could not render chart.svg");
    let bytes = std::fs::read(&png).unwrap();
    let (w, h) = png_size(&bytes);
    assert_eq!(w, 1200);
    assert!(h >= 600, "{w}x{h}");
    // A blank or near-blank image compresses to a few KB; this chart is tens of KB.
    assert!(
        bytes.len() > 30_000,
        "chart.png is only {} bytes",
        bytes.len()
    );
}
