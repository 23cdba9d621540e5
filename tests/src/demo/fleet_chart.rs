//! The fleet demo's chart: one weight line per host (a host whose canaryd
//! was killed ends in a cross), then the fleet's evidence, each version's
//! requests/s, error rate and p99 summed over the hosts that answered
//! (`FleetTimeline::evidence`), with the decisions, the kill and the
//! takeover across every panel.

use super::{
    chart::{self, CANARY, Chart, Key, Limits, Panel, STABLE, Series},
    fleet_timeline::FleetTimeline,
    timeline::{Mark, MarkKind, Point},
};

/// Pixels between two hosts' weight lines: hosts at one weight (the
/// point of a fleet) would otherwise draw one line over the other.
const HOST_SPREAD: f64 = 3.0;
/// One colour per host, as far as the demo goes (`--fleet` at most 8).
const HOSTS: [&str; 8] = [
    "#4aa564", "#8e6c8a", "#17becf", "#b8860b", "#d6616b", "#5254a3", "#8c564b", "#7f7f7f",
];

/// What the chart says of a host.
pub struct HostLine {
    pub name: String,
    /// Why its line ends early (its canaryd killed), if it does.
    pub ended: Option<String>,
}

/// `points`: the fleet's evidence (`FleetTimeline::evidence`); `marks`:
/// decisions and fleet events (`FleetTimeline::marks`).
pub fn svg(
    title: &str,
    timeline: &FleetTimeline,
    hosts: &[HostLine],
    points: &[Point],
    marks: &[Mark],
    limits: Limits,
) -> String {
    let color = |i: usize| HOSTS[i % HOSTS.len()];
    let middle = (hosts.len() as f64 - 1.0) / 2.0;
    let weights = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Series {
            id: Some(format!("weight-{}", h.name)),
            end_label: h.ended.clone(),
            dy: (i as f64 - middle) * HOST_SPREAD,
            ..Series::new(color(i), timeline.weights(i))
        })
        .collect();
    let version_series = |f: &dyn Fn(&Point, usize) -> Option<f64>| {
        vec![
            Series::new(STABLE, points.iter().map(|p| (p.t, f(p, 0))).collect()),
            Series::new(CANARY, points.iter().map(|p| (p.t, f(p, 1))).collect()),
        ]
    };
    let panels = vec![
        Panel {
            title: "canary weight on each host (%), lines drawn 3 px apart".into(),
            series: weights,
            limit: None,
            steps: true,
            pad: middle * HOST_SPREAD + 2.0,
        },
        Panel {
            title: "fleet requests/s, summed over the hosts canaryd answers on".into(),
            series: version_series(&|p, v| Some(p.requests_per_s[v])),
            limit: None,
            steps: false,
            pad: 0.0,
        },
        Panel {
            title: "fleet error rate (%): 5xx, resets, refused over requests".into(),
            series: version_series(&|p, v| p.error_rate[v].map(|r| r * 100.0)),
            limit: limits.max_error_rate.map(|r| r * 100.0),
            steps: false,
            pad: 0.0,
        },
        Panel {
            title: "fleet p99 time to first byte (ms), histograms added bucket by bucket".into(),
            series: version_series(&|p, v| p.p99_ms[v]),
            limit: limits.max_p99_ms,
            steps: false,
            pad: 0.0,
        },
    ];
    let mut keys: Vec<Key> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Key::Line(h.name.clone(), color(i)))
        .collect();
    keys.extend([
        Key::Line("stable".into(), STABLE),
        Key::Line("canary".into(), CANARY),
        Key::Mark("decision".into(), MarkKind::Decision),
        Key::Mark("leader killed, taken over".into(), MarkKind::Fleet),
        Key::Threshold,
    ]);
    chart::render(&Chart {
        title,
        keys,
        panels,
        marks,
        x_label: "seconds since the rollout started",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{fleet_timeline::FleetSample, timeline::Sample};
    use canary_userspace::model::{signals::VersionSignals, weight::Weight};

    #[test]
    fn one_line_per_host_and_the_killed_one_ends_in_a_labelled_cross() {
        let sample = |at_unix_ms, bp| {
            Some(Sample {
                at_unix_ms,
                weight: Weight::from_bp(bp).unwrap(),
                signals: [VersionSignals::default(), VersionSignals::default()],
            })
        };
        let timeline = FleetTimeline {
            start_unix_ms: 0,
            samples: (0..10u64)
                .map(|k| FleetSample {
                    at_unix_ms: k * 1_000,
                    hosts: vec![
                        sample(k * 1_000, 2500),
                        (k < 5).then(|| sample(k * 1_000, 2500)).flatten(),
                        sample(k * 1_000, if k < 7 { 2500 } else { 5000 }),
                    ],
                })
                .collect(),
            decisions: vec![],
            events: vec![
                Mark {
                    t: 4.5,
                    label: "host-1 killed".into(),
                    kind: MarkKind::Fleet,
                },
                Mark {
                    t: 6.8,
                    label: "host-2 leads".into(),
                    kind: MarkKind::Fleet,
                },
            ],
        };
        let hosts: Vec<HostLine> = (0..3)
            .map(|i| HostLine {
                name: format!("host-{i}"),
                ended: (i == 1).then(|| "killed".to_owned()),
            })
            .collect();
        let points = timeline.evidence(2);
        let marks = timeline.marks(&[]);
        let svg = svg(
            "fleet",
            &timeline,
            &hosts,
            &points,
            &marks,
            Limits::default(),
        );
        assert_eq!(svg.matches(r#"id="weight-host-"#).count(), 3, "{svg}");
        assert_eq!(svg.matches(">killed</text>").count(), 1, "{svg}");
        assert!(svg.contains(">host-1 killed</text>") && svg.contains(">host-2 leads</text>"));
        assert!(svg.contains(">host-2</text>"), "the legend names each host");
    }
}
