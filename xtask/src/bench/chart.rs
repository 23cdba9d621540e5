//! docs/bench.svg and docs/bench-scaling.svg: grouped bars of ratios to a
//! reference (direct; the scaling sweep's baseline), drawn as plain SVG
//! text (no plotting dependency).

use std::fmt::Write as _;

/// One group of bars: a metric, and each path's ratio to direct.
pub struct Group {
    pub title: String,
    /// "higher is better" or "lower is better".
    pub hint: &'static str,
    pub ratios: Vec<f64>,
}

const COLORS: [&str; 7] = [
    "#2b7bb9", "#e8853d", "#f4b183", "#4aa564", "#c44e52", "#8172b2", "#937860",
];

/// Legend space per series name: swatch and gap, plus this per character.
const LEGEND_GAP: f64 = 30.0;
const LEGEND_CHAR: f64 = 7.0;
/// Legend space of the reference's entry ("direct = 1.0") after the series.
const LEGEND_DIRECT: f64 = 110.0;

/// `series` names the bars of every group, in order; ratios are to direct.
pub fn svg(title: &str, series: &[&str], groups: &[Group]) -> String {
    svg_against(title, series, groups, "direct = 1.0")
}

/// `svg` with ratios to another reference, named in the legend by
/// `reference` (e.g. "baseline = 1.0"). A ratio that is not finite (not
/// measured) is drawn as an empty bar labelled "–".
pub fn svg_against(title: &str, series: &[&str], groups: &[Group], reference: &str) -> String {
    let (left, right, top, bottom) = (60.0, 20.0, 70.0, 70.0);
    // As wide as the one-line legend needs.
    let legend_w: f64 = series
        .iter()
        .map(|n| LEGEND_GAP + LEGEND_CHAR * n.len() as f64)
        .sum::<f64>()
        + LEGEND_DIRECT;
    let (w, h) = ((left + legend_w + right).max(860.0), 420.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = groups
        .iter()
        .flat_map(|g| g.ratios.iter().copied())
        .filter(|r| r.is_finite())
        .fold(1.2_f64, f64::max);
    let top_value = (max * 5.0).ceil() / 5.0;
    let y = |v: f64| top + plot_h * (1.0 - v / top_value);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    // Legend.
    let mut lx = left;
    for (i, name) in series.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="36" width="12" height="12" fill="{}"/><text x="{}" y="46">{}</text>"#,
            COLORS[i % COLORS.len()],
            lx + 16.0,
            esc(name)
        );
        lx += LEGEND_GAP + LEGEND_CHAR * name.len() as f64;
    }
    // Grid and axis labels every 0.2.
    let mut v = 0.0;
    while v <= top_value + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}×</text>"##,
            w - right,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
        v += 0.2;
    }
    // The reference = 1.0, explained in the legend.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#333" stroke-dasharray="6 4"/><line x1="{lx}" x2="{}" y1="42" y2="42" stroke="#333" stroke-dasharray="6 4"/><text x="{}" y="46">{}</text>"##,
        w - right,
        lx + 24.0,
        lx + 28.0,
        esc(reference),
        y1 = y(1.0)
    );
    let group_w = plot_w / groups.len().max(1) as f64;
    for (g, group) in groups.iter().enumerate() {
        let n = group.ratios.len().max(1) as f64;
        let bar_w = (group_w * 0.75 / n).min(44.0);
        let x0 = left + group_w * g as f64 + (group_w - bar_w * n) / 2.0;
        for (i, r) in group.ratios.iter().enumerate() {
            let (r, label) = if r.is_finite() {
                (*r, format!("{r:.2}"))
            } else {
                (0.0, "–".to_owned())
            };
            let x = x0 + bar_w * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {label}×</title></rect>"#,
                y(r),
                bar_w - 3.0,
                (y(0.0) - y(r)).max(0.0),
                COLORS[i % COLORS.len()],
                esc(series.get(i).copied().unwrap_or(""))
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{label}</text>"#,
                x + (bar_w - 3.0) / 2.0,
                y(r) - 3.0
            );
        }
        let cx = left + group_w * (g as f64 + 0.5);
        let _ = writeln!(
            s,
            r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#666" font-size="11">({})</text>"##,
            h - bottom + 20.0,
            esc(&group.title),
            h - bottom + 36.0,
            group.hint
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#333"/>"##,
        w - right,
        y0 = y(0.0)
    );
    s.push_str("</svg>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_bars() {
        let out = svg(
            "t <1>",
            &["a", "b"],
            &[Group {
                title: "rps".into(),
                hint: "higher is better",
                ratios: vec![0.5, f64::NAN],
            }],
        );
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert!(out.contains("t &lt;1&gt;"));
        assert_eq!(out.matches("<title>").count(), 2);
        assert!(out.contains("b: –×") && out.contains("direct = 1.0"));
    }
}
