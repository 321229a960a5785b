//! Latency against throughput as a hand-written SVG: achieved answers a
//! second on x (linear), p50 and p99 latency on y (log scale), one point a
//! sweep step, so an operator sees where the knee is.

use crate::report::human_us;
use std::fmt::Write;

/// One step of a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Queries a second the step offered.
    pub offered: f64,
    /// Answers a second it got.
    pub achieved: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Share of the step's requests that timed out or failed (0..=1);
    /// their latency is not in the percentiles.
    pub lost: f64,
}

/// Steps losing more than this share are drawn hollow.
const LOST_MARK: f64 = 0.01;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const P50_COLOR: &str = "#1f77b4";
const P99_COLOR: &str = "#d62728";

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// A decade of microseconds as a short label: `10 us`, `1 ms`, `1 s`.
fn decade_label(us: f64) -> String {
    if us < 1.0 {
        format!("{us} us")
    } else if us < 1e3 {
        format!("{us:.0} us")
    } else if us < 1e6 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{:.0} s", us / 1e6)
    }
}

fn rate_label(qps: f64) -> String {
    if qps >= 1e6 {
        format!("{}M", qps / 1e6)
    } else if qps >= 1e3 {
        format!("{}k", qps / 1e3)
    } else {
        format!("{qps}")
    }
}

/// `open-loop steps at 10k, 20k queries/s offered`.
fn subtitle(points: &[Point]) -> String {
    let rates: Vec<String> = points.iter().map(|p| rate_label(p.offered)).collect();
    format!(
        "open-loop steps at {} queries/s offered",
        if rates.is_empty() {
            "no".to_owned()
        } else {
            rates.join(", ")
        }
    )
}

/// Draws `points` (steps without a latency left out by the caller) under
/// `title`. Each point is a `<circle class="p50">` or `class="p99"` with a
/// `<title>` tooltip giving its numbers.
pub fn latency_chart(title: &str, points: &[Point]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_x = points.iter().map(|p| p.achieved).fold(0.0, f64::max);
    let x_step = nice_step(max_x.max(1.0) / 6.0);
    let x_max = (max_x / x_step).ceil().max(1.0) * x_step;
    let latencies = points.iter().flat_map(|p| [p.p50_us, p.p99_us]);
    let (mut lo, mut hi) = (
        latencies.clone().fold(f64::INFINITY, f64::min),
        latencies.fold(0.0, f64::max),
    );
    if !lo.is_finite() || !hi.is_finite() {
        // No points (or nonsense): draw an empty 1 us .. 1 ms frame.
        (lo, hi) = (1.0, 1000.0);
    }
    lo = lo.max(0.1);
    hi = hi.max(lo);
    let (lo_decade, mut hi_decade) = (lo.log10().floor(), hi.log10().ceil());
    if hi_decade <= lo_decade {
        hi_decade = lo_decade + 1.0;
    }
    let x = |qps: f64| LEFT + plot_w * qps / x_max;
    let y = |us: f64| {
        let us = us.max(0.1);
        TOP + plot_h * (1.0 - (us.log10() - lo_decade) / (hi_decade - lo_decade))
    };

    let mut s = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>
<text x="{}" y="42" text-anchor="middle" fill="dimgray">{}</text>"#,
        WIDTH / 2.0,
        escape(title),
        WIDTH / 2.0,
        escape(&subtitle(points))
    );
    // Horizontal grid: every decade labelled, 2..9 times it faint.
    let _ = writeln!(s, r#"<g class="y-axis" stroke-width="1">"#);
    let mut decade = lo_decade;
    while decade <= hi_decade {
        let base = 10f64.powf(decade);
        let yy = y(base);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#bbb\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            decade_label(base)
        );
        if decade < hi_decade {
            for m in 2..10 {
                let yy = y(base * f64::from(m));
                let _ = writeln!(
                    s,
                    "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/>",
                    LEFT + plot_w
                );
            }
        }
        decade += 1.0;
    }
    let _ = writeln!(s, "</g>");
    // Vertical grid and x labels.
    let _ = writeln!(s, r#"<g class="x-axis" stroke-width="1">"#);
    let mut tick = 0.0;
    while tick <= x_max + x_step / 2.0 {
        let xx = x(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" y1=\"{TOP}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\n<text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 18.0,
            rate_label(tick)
        );
        tick += x_step;
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">answers per second (achieved)</text>\n<text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">latency (log scale)</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        TOP + plot_h / 2.0
    );
    for (class, color, pick) in [
        (
            "p50",
            P50_COLOR,
            (|p: &Point| p.p50_us) as fn(&Point) -> f64,
        ),
        ("p99", P99_COLOR, |p: &Point| p.p99_us),
    ] {
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.achieved), y(pick(p))))
            .collect();
        let _ = writeln!(
            s,
            "<polyline class=\"{class}-line\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for p in points {
            let fill = if p.lost > LOST_MARK { "white" } else { color };
            let _ = writeln!(
                s,
                "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\" stroke=\"{color}\" stroke-width=\"1.5\"><title>offered {:.0}/s, achieved {:.0}/s, {class} {}, {:.1}% timed out or failed</title></circle>",
                x(p.achieved),
                y(pick(p)),
                p.offered,
                p.achieved,
                escape(&human_us(pick(p))),
                100.0 * p.lost
            );
        }
    }
    let legend_x = LEFT + 14.0;
    let _ = writeln!(
        s,
        "<g class=\"legend\">\n<rect x=\"{:.1}\" y=\"{:.1}\" width=\"200\" height=\"62\" fill=\"white\" stroke=\"#999\"/>\n<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{P50_COLOR}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">p50</text>\n<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{P99_COLOR}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">p99</text>\n<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"white\" stroke=\"#555\" stroke-width=\"1.5\"/><text x=\"{:.1}\" y=\"{:.1}\">over 1% timed out or failed</text>\n</g>\n</svg>",
        legend_x - 6.0,
        TOP + 8.0,
        legend_x,
        TOP + 22.0,
        legend_x + 24.0,
        TOP + 22.0,
        legend_x + 30.0,
        TOP + 26.0,
        legend_x,
        TOP + 40.0,
        legend_x + 24.0,
        TOP + 40.0,
        legend_x + 30.0,
        TOP + 44.0,
        legend_x + 12.0,
        TOP + 56.0,
        legend_x + 30.0,
        TOP + 60.0,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(1700.0), 2000.0);
        assert_eq!(nice_step(6000.0), 10000.0);
        assert_eq!(rate_label(20000.0), "20k");
        assert_eq!(rate_label(1_500_000.0), "1.5M");
        assert_eq!(decade_label(100.0), "100 us");
        assert_eq!(decade_label(1000.0), "1 ms");
        assert_eq!(decade_label(1e6), "1 s");
        assert_eq!(decade_label(0.1), "0.1 us");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn points_land_inside_the_plot() {
        let points = [
            Point {
                offered: 1000.0,
                achieved: 1000.0,
                p50_us: 30.0,
                p99_us: 90.0,
                lost: 0.0,
            },
            Point {
                offered: 2000.0,
                achieved: 1990.0,
                p50_us: 45.0,
                p99_us: 4000.0,
                lost: 0.5,
            },
        ];
        let svg = latency_chart("t", &points);
        for part in svg.split("<circle ").skip(1) {
            let num = |name: &str| -> f64 {
                let at = part.find(name).map(|i| i + name.len()).unwrap_or(0);
                part[at..]
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(-1.0)
            };
            let (cx, cy) = (num("cx=\""), num("cy=\""));
            assert!((LEFT..=WIDTH - RIGHT).contains(&cx), "{cx}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(&cy), "{cy}");
        }
        assert_eq!(svg.matches("fill=\"white\" stroke=\"#d62728\"").count(), 1);
        assert!(svg.contains("open-loop steps at 1k, 2k queries/s offered"));
        // An empty chart still draws.
        assert!(latency_chart("none", &[]).trim_end().ends_with("</svg>"));
    }
}
