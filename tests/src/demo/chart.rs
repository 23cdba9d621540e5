//! The demo's timeline chart as plain SVG text: three panels over the same
//! time axis (canary weight; each version's error rate; each version's
//! p99 time to first byte), with the rollout's decisions as vertical lines.

use std::fmt::Write as _;

use super::timeline::{Mark, Point};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 75.0;
const PANEL_H: f64 = 130.0;
const GAP: f64 = 45.0;
const BOTTOM: f64 = 45.0;
const STABLE: &str = "#2b7bb9";
const CANARY: &str = "#e8853d";
const WEIGHT: &str = "#4aa564";

/// One panel: a title, a unit, and up to two series (stable, canary) or one
/// (the weight).
struct Panel<'a> {
    title: &'a str,
    series: Vec<Series<'a>>,
    /// The check's threshold, drawn as a dashed line.
    limit: Option<f64>,
    /// Drawn as steps (the weight changes at once), not as a slope.
    steps: bool,
}

/// One line: its color and its (time, value) points; None leaves a gap.
type Series<'a> = (&'a str, Vec<(f64, Option<f64>)>);

/// The thresholds the checks judge against, for the chart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
}

pub fn svg(title: &str, points: &[Point], marks: &[Mark], limits: Limits) -> String {
    let t_max = points
        .iter()
        .map(|p| p.t)
        .chain(marks.iter().map(|m| m.t))
        .fold(1.0_f64, f64::max)
        .ceil();
    let version_series = |f: &dyn Fn(&Point, usize) -> Option<f64>| {
        vec![
            (STABLE, points.iter().map(|p| (p.t, f(p, 0))).collect()),
            (CANARY, points.iter().map(|p| (p.t, f(p, 1))).collect()),
        ]
    };
    let panels = [
        Panel {
            title: "canary weight (%)",
            series: vec![(
                WEIGHT,
                points
                    .iter()
                    .map(|p| (p.t, Some(p.weight_percent)))
                    .collect(),
            )],
            limit: None,
            steps: true,
        },
        Panel {
            title: "error rate (%): 5xx, resets, refused over requests",
            series: version_series(&|p, v| p.error_rate[v].map(|r| r * 100.0)),
            limit: limits.max_error_rate.map(|r| r * 100.0),
            steps: false,
        },
        Panel {
            title: "p99 time to first byte (ms)",
            series: version_series(&|p, v| p.p99_ms[v]),
            limit: limits.max_p99_ms,
            steps: false,
        },
    ];
    let h = TOP + panels.len() as f64 * (PANEL_H + GAP) - GAP + BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_w * t / t_max;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{WIDTH}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        esc(title)
    );
    legend(&mut s);
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP);
        draw_panel(&mut s, panel, top, &x);
    }
    let bottom = TOP + panels.len() as f64 * (PANEL_H + GAP) - GAP;
    // Time axis ticks under the last panel.
    let step = nice_step(t_max / 8.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{t:.0}</text>"##,
            x(t),
            bottom + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the rollout started</text>"#,
        LEFT + plot_w / 2.0,
        bottom + 36.0
    );
    // Decisions across every panel.
    for m in marks {
        let color = if m.rollback { "#c44e52" } else { "#555" };
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{bottom:.1}" stroke="{color}" stroke-dasharray="4 3"/>"#,
            x(m.t)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}" font-size="11">{}</text>"#,
            x(m.t) + 3.0,
            TOP + 11.0,
            esc(&m.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn legend(s: &mut String) {
    let mut lx = LEFT;
    for (name, color) in [("stable", STABLE), ("canary", CANARY), ("weight", WEIGHT)] {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="40" width="14" height="4" fill="{color}"/><text x="{}" y="46">{name}</text>"#,
            lx + 18.0
        );
        lx += 90.0;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="42" x2="{}" y2="42" stroke="#555" stroke-dasharray="4 3"/><text x="{}" y="46">decision</text>"##,
        lx + 14.0,
        lx + 18.0
    );
    lx += 90.0;
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="42" x2="{}" y2="42" stroke="#c44e52" stroke-dasharray="1 2" stroke-width="2"/><text x="{}" y="46">check threshold</text>"##,
        lx + 14.0,
        lx + 18.0
    );
}

fn draw_panel(s: &mut String, panel: &Panel, top: f64, x: &dyn Fn(f64) -> f64) {
    let max = panel
        .series
        .iter()
        .flat_map(|(_, pts)| pts.iter().filter_map(|(_, v)| *v))
        .chain(panel.limit)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top_value = nice_ceiling(max);
    let y = |v: f64| top + PANEL_H * (1.0 - v / top_value);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#,
        top - 6.0,
        esc(panel.title)
    );
    for k in 0..=5 {
        let v = top_value * f64::from(k) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end" fill="#444">{4}</text>"##,
            y(v),
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            tick(v)
        );
    }
    if let Some(limit) = panel.limit {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#c44e52" stroke-dasharray="1 2" stroke-width="2"/>"##,
            y(limit),
            WIDTH - RIGHT
        );
    }
    for (color, pts) in &panel.series {
        // A gap (no data in a window) breaks the line.
        let mut d = String::new();
        let mut last: Option<f64> = None;
        for (t, v) in pts {
            match v {
                Some(v) if v.is_finite() => {
                    match last {
                        None => {
                            let _ = write!(d, "M{:.1},{:.1} ", x(*t), y(*v));
                        }
                        Some(prev) if panel.steps && prev != *v => {
                            let _ = write!(
                                d,
                                "L{:.1},{:.1} L{:.1},{:.1} ",
                                x(*t),
                                y(prev),
                                x(*t),
                                y(*v)
                            );
                        }
                        Some(_) => {
                            let _ = write!(d, "L{:.1},{:.1} ", x(*t), y(*v));
                        }
                    }
                    last = Some(*v);
                }
                _ => last = None,
            }
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                d.trim_end()
            );
        }
    }
}

/// 1, 2 or 5 × 10^k at or above `v` (at least 1, so an empty panel has an
/// axis).
fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

fn nice_step(v: f64) -> f64 {
    nice_ceiling(v.max(1.0))
}

fn tick(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_and_each_decision() {
        let points: Vec<Point> = (1..=10)
            .map(|i| Point {
                t: f64::from(i),
                weight_percent: if i < 6 { 5.0 } else { 0.0 },
                requests_per_s: [900.0, 50.0],
                error_rate: [Some(0.0), if i < 6 { Some(0.2) } else { None }],
                p99_ms: [Some(1.5), Some(2.0)],
            })
            .collect();
        let marks = vec![
            Mark {
                t: 0.0,
                label: "step 5%".into(),
                rollback: false,
            },
            Mark {
                t: 6.0,
                label: "rollback".into(),
                rollback: true,
            },
        ];
        let limits = Limits {
            max_error_rate: Some(0.02),
            max_p99_ms: Some(32.768),
        };
        let svg = svg("demo <errors>", &points, &marks, limits);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("demo &lt;errors&gt;"));
        // weight, 2 error-rate and 2 p99 lines.
        assert_eq!(svg.matches("<path ").count(), 5);
        assert!(svg.contains(">rollback</text>") && svg.contains(">step 5%</text>"));
        // Both thresholds, as dashed lines (plus the legend's swatch).
        assert_eq!(svg.matches("stroke-dasharray=\"1 2\"").count(), 3);
        // At t = 6: the weight drops as a step (two segments), stable's error
        // line and both p99 lines go on; the canary's error line has ended.
        let x6 = format!("L{:.1},", LEFT + (WIDTH - LEFT - RIGHT) * 6.0 / 10.0);
        assert_eq!(svg.matches(&x6).count(), 2 + 1 + 2, "{svg}");
    }

    #[test]
    fn axis_tops_are_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
