//! The quality-vs-strong-call-share chart as a self-contained SVG, written by hand.

use std::fmt::Write;

use gateway_core::routing::eval::Curve;

use super::{EvalReport, head_name};

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 620.0;
const TOP: f64 = 80.0;
const BOTTOM: f64 = 490.0;
/// Curves with more points than this are drawn from evenly spaced samples.
const MAX_POINTS: usize = 1_000;

const STYLES: [(&str, &str, &str); 4] = [
    ("random", "#888888", "stroke-dasharray=\"6 4\" stroke-width=\"1.5\""),
    ("heuristic", "#e69f00", "stroke-width=\"2\""),
    ("length", "#0072b2", "stroke-width=\"2\""),
    ("learned", "#d55e00", "stroke-width=\"3\""),
];

/// Text for SVG and HTML alike: markup characters as entities, control characters as spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A round step giving about five ticks over `span`.
fn tick_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalised = raw / magnitude;
    let nice = if normalised <= 1.0 {
        1.0
    } else if normalised <= 2.0 {
        2.0
    } else if normalised <= 2.5 {
        2.5
    } else if normalised <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn decimals(step: f64) -> usize {
    let mut d = 0;
    while d < 6 && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-9 {
        d += 1;
    }
    d
}

fn sampled(curve: &Curve) -> Vec<(f64, f64)> {
    if curve.points.len() <= MAX_POINTS {
        return curve.points.clone();
    }
    (0..=MAX_POINTS)
        .map(|i| {
            let share = i as f64 / MAX_POINTS as f64;
            (share, curve.quality_at(share))
        })
        .collect()
}

/// The four routers' curves, always-weak and always-strong, the learned router's
/// operating points at the checked tolerances, and the parity line.
pub fn render(report: &EvalReport, title: &str) -> String {
    // (router, points, APGR)
    type Drawn<'a> = (&'a str, Vec<(f64, f64)>, Option<f64>);
    let curves: Vec<Drawn<'_>> =
        report.routers.all().iter().map(|(name, m)| (*name, sampled(&m.curve), m.apgr)).collect();
    let operating: Vec<(f64, f64, f64)> =
        report.tolerance.iter().map(|t| (1.0 - t.weak_share, t.quality, t.promised)).collect();

    let values = curves
        .iter()
        .flat_map(|(_, points, _)| points.iter().map(|p| p.1))
        .chain([report.weak_quality, report.strong_quality])
        .chain(operating.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = if hi - lo > 1e-12 { (hi - lo) * 0.06 } else { lo.abs().max(1.0) * 0.1 };
    let step = tick_step(hi - lo + 2.0 * pad);
    let (y_min, y_max) = (((lo - pad) / step).floor() * step, ((hi + pad) / step).ceil() * step);
    let x = |share: f64| LEFT + share.clamp(0.0, 1.0) * (RIGHT - LEFT);
    let y = |quality: f64| BOTTOM - (quality - y_min) / (y_max - y_min) * (BOTTOM - TOP);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(svg, "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>");
    // The title is "<file>: <pair>"; long ones take two lines.
    let title_lines: Vec<&str> = match title.split_once(": ") {
        Some((file, pair)) if title.chars().count() > 70 => vec![file, pair],
        _ => vec![title],
    };
    for (i, line) in title_lines.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\" font-weight=\"bold\">{}</text>",
            WIDTH / 2.0,
            22.0 + 18.0 * i as f64,
            if i == 0 { 15 } else { 13 },
            escape(line)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555555\">{} rows, model {}</text>",
        WIDTH / 2.0,
        TOP - 12.0,
        report.rows,
        escape(&report.model_version)
    );

    // Grid, ticks and labels.
    for i in 0..=5 {
        let share = f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{BOTTOM}\" stroke=\"#eeeeee\"/>\
             <line x1=\"{0:.1}\" y1=\"{BOTTOM}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"black\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{3}%</text>",
            x(share),
            BOTTOM + 5.0,
            BOTTOM + 19.0,
            i * 20
        );
    }
    let places = decimals(step);
    let ticks = ((y_max - y_min) / step).round() as i64;
    for i in 0..=ticks {
        let value = y_min + i as f64 * step;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{RIGHT}\" y2=\"{0:.1}\" stroke=\"#eeeeee\"/>\
             <line x1=\"{1}\" y1=\"{0:.1}\" x2=\"{LEFT}\" y2=\"{0:.1}\" stroke=\"black\"/>\
             <text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{value:.places$}</text>",
            y(value),
            LEFT - 5.0,
            LEFT - 8.0,
            y(value) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>",
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">share of calls sent to the strong model</text>",
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 40.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"22\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 22 {0})\">mean quality (outcome)</text>",
        (TOP + BOTTOM) / 2.0
    );

    // Parity with always-strong.
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{RIGHT}\" y2=\"{0:.1}\" stroke=\"#2ca02c\" stroke-dasharray=\"2 3\"/>",
        y(report.strong_quality)
    );

    for ((name, points, _), (_, color, style)) in curves.iter().zip(STYLES) {
        let coords: Vec<String> = points.iter().map(|(s, q)| format!("{:.1},{:.1}", x(*s), y(*q))).collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" {style} points=\"{}\"><title>{name}</title></polyline>",
            coords.join(" ")
        );
    }
    for (share, quality, promised) in &operating {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"white\" stroke=\"#d55e00\" stroke-width=\"1.5\">\
             <title>learned at tolerance {:.0}%: {:.1}% strong calls, quality {:.3}</title></circle>",
            x(*share),
            y(*quality),
            promised * 100.0,
            share * 100.0,
            quality
        );
    }
    for (share, quality, label, anchor, dx) in [
        (
            0.0,
            report.weak_quality,
            format!("always {} ({})", head_name(report.head), report.tiers.weak.tier),
            "start",
            8.0,
        ),
        (1.0, report.strong_quality, format!("always strong ({})", report.tiers.strong.tier), "end", -8.0),
    ] {
        let _ = writeln!(
            svg,
            "<circle cx=\"{0:.1}\" cy=\"{1:.1}\" r=\"5\" fill=\"black\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"{anchor}\">{4}</text>",
            x(share),
            y(quality),
            x(share) + dx,
            y(quality) + if quality >= report.strong_quality.max(report.weak_quality) { -8.0 } else { 16.0 },
            escape(&label)
        );
    }

    // Legend, right of the plot.
    let legend_x = RIGHT + 20.0;
    let _ = writeln!(svg, "<text x=\"{legend_x}\" y=\"{}\" font-weight=\"bold\">router (APGR)</text>", TOP + 10.0);
    for (i, ((name, _, apgr), (_, color, style))) in curves.iter().zip(STYLES).enumerate() {
        let row_y = TOP + 32.0 + i as f64 * 22.0;
        let apgr = apgr.map_or_else(|| "n/a".to_owned(), |a| format!("{a:.3}"));
        let _ = writeln!(
            svg,
            "<line x1=\"{legend_x}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"{color}\" {style}/>\
             <text x=\"{2}\" y=\"{3:.1}\">{name} ({apgr})</text>",
            row_y,
            legend_x + 28.0,
            legend_x + 36.0,
            row_y + 4.0
        );
    }
    let extra_y = TOP + 32.0 + 4.0 * 22.0;
    let _ = writeln!(
        svg,
        "<circle cx=\"{0}\" cy=\"{1:.1}\" r=\"3.5\" fill=\"white\" stroke=\"#d55e00\" stroke-width=\"1.5\"/>\
         <text x=\"{2}\" y=\"{3:.1}\">learned at tolerances</text>\
         <line x1=\"{legend_x}\" y1=\"{4:.1}\" x2=\"{5}\" y2=\"{4:.1}\" stroke=\"#2ca02c\" stroke-dasharray=\"2 3\"/>\
         <text x=\"{2}\" y=\"{6:.1}\">always-strong quality</text>",
        legend_x + 14.0,
        extra_y,
        legend_x + 36.0,
        extra_y + 4.0,
        extra_y + 22.0,
        legend_x + 28.0,
        extra_y + 26.0
    );
    svg.push_str("</svg>\n");
    svg
}
