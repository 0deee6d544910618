//! The report's chart (`chart.svg`): two panels on one wall-clock time axis (HH:MM:SS UTC).
//!
//! * top: the target weight and the observed primary share, 0–100 %;
//! * bottom: each gate's primary value as a share of its bound (solid) and DR's value
//!   against the same bound (dashed), with the 100 % line: a line above it is a breach.
//!
//! Stages are shaded and labelled in both panels, a rollback is marked across both, and
//! the legend sits in a column of its own beside the plot, never over the data.

use std::time::{Duration, SystemTime};

use cutover_core::run::{Event, EventKind, RunState};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 720;
const LEGEND_WIDTH: u32 = 270;
/// The bottom panel's top: at least 150 % of the bound, at most this.
const GATE_CAP: f64 = 400.0;

/// Colours of the gates, in order (the target and share have their own).
/// No red among them: red is the rollback.
const GATE_COLOURS: [RGBColor; 6] = [
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
];
const TARGET: RGBColor = RGBColor(31, 119, 180);
const SHARE: RGBColor = RGBColor(44, 160, 44);
const ROLLBACK: RGBColor = RGBColor(200, 0, 0);

/// One gate's series: primary and DR as % of its bound, over seconds since start.
struct GateSeries {
    name: String,
    primary: Vec<(f64, f64)>,
    dr: Vec<(f64, f64)>,
}

/// A shaded span: from, to (seconds), label, whether it is a rollback.
struct Span {
    from: f64,
    to: f64,
    label: String,
    rollback: bool,
}

fn secs(t: SystemTime, start: SystemTime) -> f64 {
    t.duration_since(start)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `HH:MM:SS` (UTC) of `start + x` seconds.
fn clock(start: SystemTime, x: f64) -> String {
    let t = start + Duration::from_secs_f64(x.max(0.0));
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-11-25T23:50:14Z → 23:50:14
    s.get(11..19).unwrap_or(&s).to_string()
}

/// The chart of a run, as SVG text.
pub fn svg(events: &[Event], start: SystemTime, state: &RunState) -> String {
    let last = events
        .last()
        .map(|e| secs(e.at, start))
        .unwrap_or(1.0)
        .max(1.0);
    // A margin after the last event, so a final write (a rollback to 0 %) is seen to hold.
    let end = last * 1.12;
    // The target weight as steps, from the confirmed writes.
    let mut target: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    let mut spans: Vec<Span> = Vec::new();
    for (i, h) in state.history.iter().enumerate() {
        let t = secs(h.at, start);
        let last = target.last().map(|p| p.1).unwrap_or(0.0);
        target.push((t, last));
        target.push((t, f64::from(h.weights.primary())));
        let to = state
            .history
            .get(i + 1)
            .map(|n| secs(n.at, start))
            .unwrap_or(end);
        spans.push(Span {
            from: t,
            to,
            label: match h.stage {
                Some(s) => format!("stage {} · {}%", s + 1, h.weights.primary()),
                None => format!("rollback · {}%", h.weights.primary()),
            },
            rollback: h.stage.is_none(),
        });
    }
    target.push((end, target.last().map(|p| p.1).unwrap_or(0.0)));
    let mut share = Vec::new();
    let mut gates: Vec<GateSeries> = Vec::new();
    let mut rollback_at = None;
    for e in events {
        match &e.kind {
            EventKind::Analyzed {
                share: s, results, ..
            } => {
                let t = secs(e.at, start);
                if let Some(s) = s {
                    share.push((t, s * 100.0));
                }
                for r in results {
                    let Some(bound) = r.max.filter(|b| *b > 0.0) else {
                        continue;
                    };
                    let g = match gates.iter_mut().position(|g| g.name == r.name) {
                        Some(i) => &mut gates[i],
                        None => {
                            gates.push(GateSeries {
                                name: r.name.clone(),
                                primary: Vec::new(),
                                dr: Vec::new(),
                            });
                            gates.last_mut().expect("just pushed")
                        }
                    };
                    if let Some(v) = r.primary {
                        g.primary.push((t, v / bound * 100.0));
                    }
                    if let Some(v) = r.dr {
                        g.dr.push((t, v / bound * 100.0));
                    }
                }
            }
            EventKind::RollbackStarted { .. } => {
                rollback_at.get_or_insert(secs(e.at, start));
            }
            _ => {}
        }
    }
    let highest = gates
        .iter()
        .flat_map(|g| g.primary.iter().chain(g.dr.iter()))
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let top = (highest * 1.1).clamp(150.0, GATE_CAP);
    let clip = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter().map(|&(x, y)| (x, y.min(top))).collect()
    };
    let outcome = state
        .outcome
        .as_ref()
        .map(|o| format!("{:?} (exit {})", o.phase, o.exit_code()))
        .unwrap_or_else(|| "running".into());

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let root = root
            .titled(
                &format!(
                    "cutover {} — run {} — {outcome}",
                    state.service, state.run_id
                ),
                ("sans-serif", 22),
            )
            .unwrap_or(root);
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let (upper, lower) = plot.split_vertically(HEIGHT * 2 / 5);
        let x_fmt = |x: &f64| clock(start, *x);
        let shade = |i: usize, s: &Span| -> RGBAColor {
            if s.rollback {
                ROLLBACK.mix(0.10)
            } else if i.is_multiple_of(2) {
                RGBColor(120, 120, 120).mix(0.10)
            } else {
                RGBColor(120, 120, 120).mix(0.03)
            }
        };

        // Top: weights.
        if let Ok(mut chart) = ChartBuilder::on(&upper)
            .margin_left(10)
            .margin_right(20)
            .margin_top(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..105.0)
        {
            let _ = chart
                .configure_mesh()
                .disable_x_mesh()
                .y_labels(6)
                .x_labels(8)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|y| format!("{y:.0} %"))
                .y_desc("primary share of traffic")
                .light_line_style(WHITE)
                .label_style(("sans-serif", 14))
                .draw();
            for (i, s) in spans.iter().enumerate() {
                let _ = chart.draw_series(std::iter::once(Rectangle::new(
                    [(s.from, 0.0), (s.to, 105.0)],
                    shade(i, s).filled(),
                )));
                let _ = chart.draw_series(std::iter::once(Text::new(
                    s.label.clone(),
                    (s.from + (end * 0.004), 102.0),
                    ("sans-serif", 13).into_font().color(&BLACK.mix(0.75)),
                )));
            }
            let _ = chart.draw_series(LineSeries::new(target.clone(), TARGET.stroke_width(3)));
            let _ = chart.draw_series(LineSeries::new(share.clone(), SHARE.stroke_width(2)));
            let _ = chart.draw_series(share.iter().map(|&p| Circle::new(p, 3, SHARE.filled())));
            if let Some(t) = rollback_at {
                let _ = chart.draw_series(LineSeries::new(
                    vec![(t, 0.0), (t, 105.0)],
                    ROLLBACK.stroke_width(2),
                ));
            }
        }

        // Bottom: gates against their bounds.
        if let Ok(mut chart) = ChartBuilder::on(&lower)
            .margin_left(10)
            .margin_right(20)
            .margin_top(14)
            .margin_bottom(6)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..top)
        {
            let _ = chart
                .configure_mesh()
                .disable_x_mesh()
                .y_labels(6)
                .x_labels(8)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|y| format!("{y:.0} %"))
                .y_desc("gate value, % of its bound")
                .x_desc("time (UTC)")
                .light_line_style(WHITE)
                .label_style(("sans-serif", 14))
                .draw();
            for (i, s) in spans.iter().enumerate() {
                let _ = chart.draw_series(std::iter::once(Rectangle::new(
                    [(s.from, 0.0), (s.to, top)],
                    shade(i, s).filled(),
                )));
            }
            let _ = chart.draw_series(DashedLineSeries::new(
                vec![(0.0, 100.0), (end, 100.0)],
                8,
                5,
                BLACK.stroke_width(2),
            ));
            let _ = chart.draw_series(std::iter::once(Text::new(
                "bound (100 %)",
                (end * 0.005, 100.0 + top * 0.06),
                ("sans-serif", 13).into_font(),
            )));
            for (i, g) in gates.iter().enumerate() {
                let c = GATE_COLOURS[i % GATE_COLOURS.len()];
                let _ = chart.draw_series(DashedLineSeries::new(
                    clip(&g.dr),
                    4,
                    4,
                    c.mix(0.7).stroke_width(1),
                ));
                let _ = chart.draw_series(LineSeries::new(clip(&g.primary), c.stroke_width(2)));
                let _ = chart.draw_series(
                    clip(&g.primary)
                        .into_iter()
                        .map(|p| Circle::new(p, 3, c.filled())),
                );
            }
            if let Some(t) = rollback_at {
                let _ = chart.draw_series(LineSeries::new(
                    vec![(t, 0.0), (t, top)],
                    ROLLBACK.stroke_width(2),
                ));
                let _ = chart.draw_series(std::iter::once(Text::new(
                    format!("rollback {} ", clock(start, t)),
                    (t, top * 0.97),
                    ("sans-serif", 14)
                        .into_font()
                        .color(&ROLLBACK)
                        .pos(Pos::new(HPos::Right, VPos::Top)),
                )));
            }
        }

        // The legend, in its own column.
        let row = 24;
        let mut y = 40;
        let mut entry = |label: &str, style: ShapeStyle, dashed: bool| {
            let x0 = 12;
            if dashed {
                for k in 0..3 {
                    let _ = legend.draw(&PathElement::new(
                        vec![(x0 + k * 10, y), (x0 + k * 10 + 6, y)],
                        style,
                    ));
                }
            } else {
                let _ = legend.draw(&PathElement::new(vec![(x0, y), (x0 + 28, y)], style));
            }
            let _ = legend.draw(&Text::new(
                label.to_string(),
                (x0 + 38, y - 8),
                ("sans-serif", 14).into_font(),
            ));
            y += row;
        };
        entry("target weight", TARGET.stroke_width(3), false);
        entry("observed primary share", SHARE.stroke_width(2), false);
        for (i, g) in gates.iter().enumerate() {
            let c = GATE_COLOURS[i % GATE_COLOURS.len()];
            entry(&format!("{} (primary)", g.name), c.stroke_width(2), false);
            entry(
                &format!("{} (DR)", g.name),
                c.mix(0.7).stroke_width(1),
                true,
            );
        }
        entry("gate bound (100 %)", BLACK.stroke_width(2), true);
        if rollback_at.is_some() {
            entry("rollback", ROLLBACK.stroke_width(2), false);
        }
        let _ = legend.draw(&Rectangle::new(
            [(12, y - 6), (40, y + 6)],
            RGBColor(120, 120, 120).mix(0.10).filled(),
        ));
        let _ = legend.draw(&Text::new(
            "stage (shaded, labelled)",
            (50, y - 8),
            ("sans-serif", 14).into_font(),
        ));
        y += row;
        let _ = legend.draw(&Text::new(
            format!("times UTC, started {}", clock(start, 0.0)),
            (12, y),
            ("sans-serif", 12).into_font().color(&BLACK.mix(0.7)),
        ));
        let _ = root.present();
    }
    out
}
