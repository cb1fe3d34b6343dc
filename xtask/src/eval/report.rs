//! The readable tables `eval-router` prints without `--json`.

use std::fmt::Write;

use super::{BOOTSTRAP_RESAMPLES, Comparison, EvalReport, RunInfo, TierCost, head_name};

pub fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

pub fn signed_points(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{:+.1}", v * 100.0))
}

pub fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

/// `[0.512, 0.561]`.
pub fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(|| "n/a".to_owned(), |[low, high]| format!("[{low:.3}, {high:.3}]"))
}

/// `+0.046 [+0.012, +0.081] yes`: a learned-minus-baseline difference, its interval and
/// whether the learned router is clearly better.
pub fn comparison(c: &Comparison) -> String {
    let signed = |v: f64| format!("{v:+.3}");
    let ci = c.ci95.map_or_else(|| "n/a".to_owned(), |[low, high]| format!("[{}, {}]", signed(low), signed(high)));
    let verdict = if c.clearly_better { "yes" } else { "no" };
    format!("{} {ci} {verdict}", c.difference.map_or_else(|| "n/a".to_owned(), signed))
}

fn tier_line(out: &mut String, role: &str, column: &str, quality: f64, cost: &TierCost) {
    let _ = writeln!(
        out,
        "{role:<7} {column}: mean outcome {quality:.3}; priced as {} ({}), ${:.5} per call",
        cost.tier, cost.model, cost.cost_per_call
    );
}

/// Summary, router metrics, the tolerance check and (with a mid column) the three-tier table.
pub fn render_text(report: &EvalReport, info: &RunInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "eval-router: {} (split {}), model {}", info.data, info.split, report.model_version);
    let _ = writeln!(
        out,
        "rows    {} used of {} read; {} outside the split; skipped {} rows with missing outcomes{}",
        report.rows,
        info.read,
        info.outside_split,
        info.skipped,
        if info.skipped_empty_prompt > 0 {
            format!(", {} with an empty prompt", info.skipped_empty_prompt)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "costs   every tier priced with the same tokens per row (prompt estimate; strong answer length / 4, \
         else 512 output tokens)"
    );
    let cheaper = if report.head == gateway_core::routing::Head::Weak { "weak" } else { "cheaper" };
    tier_line(&mut out, cheaper, &info.columns.weak, report.weak_quality, &report.tiers.weak);
    if let (Some(column), Some(quality), Some(cost)) =
        (info.columns.mid.as_deref(), report.mid_quality, report.tiers.mid.as_ref())
    {
        tier_line(&mut out, "mid", column, quality, cost);
    }
    tier_line(&mut out, "strong", &info.columns.strong, report.strong_quality, &report.tiers.strong);

    let head = head_name(report.head);
    let _ = writeln!(
        out,
        "\nRouters, {cheaper} vs strong, learned with the {head} head (CPT = share of strong calls to recover that \
         share of the gap)"
    );
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>16} {:>9} {:>9} {:>15} {:>21}",
        "router", "APGR", "95% interval", "CPT(50%)", "CPT(80%)", "parity at share", "cost saved at parity"
    );
    for (name, m) in report.routers.all() {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>16} {:>9} {:>9} {:>15} {:>21}",
            name,
            number(m.apgr),
            interval(m.apgr_ci95),
            pct(m.cpt50),
            pct(m.cpt80),
            pct(m.parity_share),
            pct(Some(m.cost_saved_at_parity))
        );
    }

    let _ = writeln!(
        out,
        "\nLearned minus baseline APGR, 95% paired-bootstrap interval ({BOOTSTRAP_RESAMPLES} resamples), clearly \
         better when the whole interval is above 0"
    );
    for c in &report.learned_vs {
        let _ = writeln!(out, "vs {:<10} {}", c.baseline, comparison(c));
    }

    let _ = writeln!(
        out,
        "\nTolerance, learned router, two tiers ({cheaper} when the {head} head's adequacy >= threshold)"
    );
    let _ = writeln!(
        out,
        "{:>8} {:>9} {:>11} {:>9} {:>13} {:>7} {:>14}",
        "promised", "threshold", "cheap share", "quality", "observed drop", "excess", "cost vs strong"
    );
    for t in &report.tolerance {
        let _ = writeln!(
            out,
            "{:>8} {:>9.3} {:>11} {:>9.3} {:>13} {:>7} {:>14}",
            pct(Some(t.promised)),
            t.threshold,
            pct(Some(t.weak_share)),
            t.quality,
            pct(t.observed),
            signed_points(t.excess),
            pct(t.cost_relative)
        );
    }
    let _ = writeln!(out, "max excess (observed - promised): {} points", signed_points(report.tolerance_max_excess));

    if let Some(table) = &report.three_tier {
        let _ = writeln!(out, "\nThree tiers (drop and cost against always-strong)");
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>7} {:>7} {:>7} {:>9} {:>7} {:>14}",
            "router", "promised", "weak", "mid", "strong", "quality", "drop", "cost vs strong"
        );
        for r in table {
            let _ = writeln!(
                out,
                "{:<14} {:>8} {:>7} {:>7} {:>7} {:>9.3} {:>7} {:>14}",
                r.router,
                r.promised.map_or_else(|| "-".to_owned(), |p| pct(Some(p))),
                pct(Some(r.weak_share)),
                pct(Some(r.mid_share)),
                pct(Some(r.strong_share)),
                r.quality,
                pct(r.drop),
                pct(r.cost_relative)
            );
        }
    }
    out
}
