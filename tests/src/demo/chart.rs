//! The demo's timeline charts as plain SVG text: panels over one time axis,
//! each with its lines (and a check's threshold), and what happened (the
//! rollout's decisions, a fleet's leader killed) as vertical lines across
//! them. `svg` is the single host's chart (canary weight; each version's
//! error rate; each version's p99 time to first byte); `render` draws any
//! `Chart` (the fleet's, `fleet_chart`).

use std::fmt::Write as _;

use super::timeline::{Mark, MarkKind, Point};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
/// The first panel's top with one row of legend; each more row adds
/// `LEGEND_ROW`.
const TOP: f64 = 75.0;
const LEGEND_Y: f64 = 40.0;
const LEGEND_ROW: f64 = 18.0;
/// A legend entry's width at least; longer names take more.
const LEGEND_ENTRY: f64 = 90.0;
const PANEL_H: f64 = 130.0;
const GAP: f64 = 45.0;
const BOTTOM: f64 = 45.0;
/// A mark's label row: labels that would overlap go one row down.
const MARK_ROW: f64 = 12.0;
/// Rough width of one character of an 11 px label, to keep labels apart.
const CHAR_W: f64 = 6.0;
pub const STABLE: &str = "#2b7bb9";
pub const CANARY: &str = "#e8853d";
const WEIGHT: &str = "#4aa564";
const DECISION: &str = "#555";
const ROLLBACK: &str = "#c44e52";
const FLEET_EVENT: &str = "#8e44ad";

/// One panel: a title (with its unit) and its lines.
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
    /// The check's threshold, drawn as a dashed line.
    pub limit: Option<f64>,
    /// Drawn as steps (a weight changes at once), not as a slope.
    pub steps: bool,
    /// Pixels kept free inside the panel's top and bottom, so that lines
    /// drawn apart (`Series::dy`) at the axis' ends stay inside it.
    pub pad: f64,
}

/// One line: its colour and its (time, value) points; None leaves a gap.
pub struct Series {
    pub color: &'static str,
    pub points: Vec<(f64, Option<f64>)>,
    /// The path's `id`, so a reader (or a test) can tell the lines apart.
    pub id: Option<String>,
    /// Why the line ends where it does, drawn with a cross at its last
    /// point (a host whose canaryd was killed).
    pub end_label: Option<String>,
    /// Drawn this many pixels lower (negative: higher), so that lines with
    /// the same values (hosts at one weight) stay visible side by side.
    pub dy: f64,
}

impl Series {
    pub fn new(color: &'static str, points: Vec<(f64, Option<f64>)>) -> Series {
        Series {
            color,
            points,
            id: None,
            end_label: None,
            dy: 0.0,
        }
    }
}

/// One legend entry.
pub enum Key {
    /// A line's colour.
    Line(String, &'static str),
    /// A kind of mark.
    Mark(String, MarkKind),
    /// The checks' thresholds.
    Threshold,
}

/// A whole chart: what `render` draws.
pub struct Chart<'a> {
    pub title: &'a str,
    pub keys: Vec<Key>,
    pub panels: Vec<Panel>,
    pub marks: &'a [Mark],
    pub x_label: &'a str,
}

/// The thresholds the checks judge against, for the chart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
}

/// The single host's chart: its weight, and each version's error rate and
/// p99.
pub fn svg(title: &str, points: &[Point], marks: &[Mark], limits: Limits) -> String {
    let version_series = |f: &dyn Fn(&Point, usize) -> Option<f64>| {
        vec![
            Series::new(STABLE, points.iter().map(|p| (p.t, f(p, 0))).collect()),
            Series::new(CANARY, points.iter().map(|p| (p.t, f(p, 1))).collect()),
        ]
    };
    let panels = vec![
        Panel {
            title: "canary weight (%)".into(),
            series: vec![Series::new(
                WEIGHT,
                points
                    .iter()
                    .map(|p| (p.t, Some(p.weight_percent)))
                    .collect(),
            )],
            limit: None,
            steps: true,
            pad: 0.0,
        },
        Panel {
            title: "error rate (%): 5xx, resets, refused over requests".into(),
            series: version_series(&|p, v| p.error_rate[v].map(|r| r * 100.0)),
            limit: limits.max_error_rate.map(|r| r * 100.0),
            steps: false,
            pad: 0.0,
        },
        Panel {
            title: "p99 time to first byte (ms)".into(),
            series: version_series(&|p, v| p.p99_ms[v]),
            limit: limits.max_p99_ms,
            steps: false,
            pad: 0.0,
        },
    ];
    render(&Chart {
        title,
        keys: vec![
            Key::Line("stable".into(), STABLE),
            Key::Line("canary".into(), CANARY),
            Key::Line("weight".into(), WEIGHT),
            Key::Mark("decision".into(), MarkKind::Decision),
            Key::Threshold,
        ],
        panels,
        marks,
        x_label: "seconds since the rollout started",
    })
}

/// A mark's colour.
fn mark_color(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Decision => DECISION,
        MarkKind::Rollback => ROLLBACK,
        MarkKind::Fleet => FLEET_EVENT,
    }
}

pub fn render(chart: &Chart) -> String {
    let t_max = chart
        .panels
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| s.points.iter().map(|(t, _)| *t))
        .chain(chart.marks.iter().map(|m| m.t))
        .fold(1.0_f64, f64::max)
        .ceil();
    let mut legend = String::new();
    let rows = draw_legend(&mut legend, &chart.keys);
    let top = TOP + (rows - 1) as f64 * LEGEND_ROW;
    let n = chart.panels.len() as f64;
    let h = top + n * (PANEL_H + GAP) - GAP + BOTTOM;
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
        esc(chart.title)
    );
    s.push_str(&legend);
    for (i, panel) in chart.panels.iter().enumerate() {
        let panel_top = top + i as f64 * (PANEL_H + GAP);
        draw_panel(&mut s, panel, panel_top, &x);
    }
    let bottom = top + n * (PANEL_H + GAP) - GAP;
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
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        bottom + 36.0,
        esc(chart.x_label)
    );
    draw_marks(&mut s, chart.marks, top, bottom, &x);
    s.push_str("</svg>\n");
    s
}

/// Marks across every panel; a label that would run into the one before
/// it goes a row lower.
fn draw_marks(s: &mut String, marks: &[Mark], top: f64, bottom: f64, x: &dyn Fn(f64) -> f64) {
    // Where each label row is free again (x).
    let mut rows: Vec<f64> = vec![];
    let mut sorted: Vec<&Mark> = marks.iter().collect();
    sorted.sort_by(|a, b| a.t.total_cmp(&b.t));
    for m in sorted {
        let color = mark_color(m.kind);
        let at = x(m.t);
        let _ = writeln!(
            s,
            r#"<line x1="{at:.1}" y1="{top}" x2="{at:.1}" y2="{bottom:.1}" stroke="{color}" stroke-dasharray="4 3"/>"#
        );
        let row = match rows.iter().position(|free| *free <= at) {
            Some(r) => r,
            None => {
                rows.push(0.0);
                rows.len() - 1
            }
        };
        rows[row] = at + 3.0 + CHAR_W * m.label.chars().count() as f64 + 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}" font-size="11">{}</text>"#,
            at + 3.0,
            top + 11.0 + row as f64 * MARK_ROW,
            esc(&m.label)
        );
    }
}

/// The legend, wrapped to the chart's width; how many rows it took.
fn draw_legend(s: &mut String, keys: &[Key]) -> usize {
    let (mut lx, mut row) = (LEFT, 0usize);
    for key in keys {
        let name = match key {
            Key::Line(name, _) | Key::Mark(name, _) => name.as_str(),
            Key::Threshold => "check threshold",
        };
        let w = LEGEND_ENTRY.max(18.0 + 7.0 * name.chars().count() as f64 + 12.0);
        if lx + w > WIDTH - RIGHT && lx > LEFT {
            lx = LEFT;
            row += 1;
        }
        let y = LEGEND_Y + row as f64 * LEGEND_ROW;
        match key {
            Key::Line(_, color) => {
                let _ = writeln!(
                    s,
                    r#"<rect x="{lx}" y="{y}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
                    lx + 18.0,
                    y + 6.0,
                    esc(name)
                );
            }
            Key::Mark(_, kind) => {
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-dasharray="4 3"/><text x="{}" y="{}">{}</text>"#,
                    y + 2.0,
                    lx + 14.0,
                    y + 2.0,
                    mark_color(*kind),
                    lx + 18.0,
                    y + 6.0,
                    esc(name)
                );
            }
            Key::Threshold => {
                let _ = writeln!(
                    s,
                    r##"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{ROLLBACK}" stroke-dasharray="1 2" stroke-width="2"/><text x="{}" y="{}">{name}</text>"##,
                    y + 2.0,
                    lx + 14.0,
                    y + 2.0,
                    lx + 18.0,
                    y + 6.0
                );
            }
        }
        lx += w;
    }
    row + 1
}

fn draw_panel(s: &mut String, panel: &Panel, top: f64, x: &dyn Fn(f64) -> f64) {
    let max = panel
        .series
        .iter()
        .flat_map(|series| series.points.iter().filter_map(|(_, v)| *v))
        .chain(panel.limit)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top_value = nice_ceiling(max);
    let y = |v: f64| top + panel.pad + (PANEL_H - 2.0 * panel.pad) * (1.0 - v / top_value);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#,
        top - 6.0,
        esc(&panel.title)
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
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{ROLLBACK}" stroke-dasharray="1 2" stroke-width="2"/>"##,
            y(limit),
            WIDTH - RIGHT
        );
    }
    for series in &panel.series {
        draw_series(s, series, panel.steps, x, &y);
    }
}

fn draw_series(
    s: &mut String,
    series: &Series,
    steps: bool,
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let y = |v: f64| y(v) + series.dy;
    // A gap (no data in a window) breaks the line.
    let mut d = String::new();
    let mut last: Option<f64> = None;
    let mut end: Option<(f64, f64)> = None;
    for (t, v) in &series.points {
        match v {
            Some(v) if v.is_finite() => {
                match last {
                    None => {
                        let _ = write!(d, "M{:.1},{:.1} ", x(*t), y(*v));
                    }
                    Some(prev) if steps && prev != *v => {
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
                end = Some((x(*t), y(*v)));
            }
            _ => last = None,
        }
    }
    if d.is_empty() {
        return;
    }
    let color = series.color;
    let id = series
        .id
        .as_ref()
        .map(|id| format!(r#" id="{}""#, esc(id)))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        r#"<path{id} d="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
        d.trim_end()
    );
    // The label below and right of the cross: above it, a line at the
    // panel's top would put it on the panel's title.
    if let (Some(label), Some((ex, ey))) = (&series.end_label, end) {
        let _ = writeln!(
            s,
            r#"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="{color}" stroke-width="2.5"/><text x="{:.1}" y="{:.1}" fill="{color}" font-size="11" font-weight="bold">{}</text>"#,
            ex - 5.0,
            ey - 5.0,
            ex + 5.0,
            ey + 5.0,
            ex - 5.0,
            ey + 5.0,
            ex + 5.0,
            ey - 5.0,
            ex + 7.0,
            ey + 16.0,
            esc(label)
        );
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
                kind: MarkKind::Decision,
            },
            Mark {
                t: 6.0,
                label: "rollback".into(),
                kind: MarkKind::Rollback,
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
