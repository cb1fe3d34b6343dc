use std::io::Write as _;

use gateway_core::catalog::Tier;
use gateway_core::routing::RouterModel;
use serde_json::Value;

use super::*;

const TIERS: [Tier; 3] = [Tier::Haiku, Tier::Sonnet, Tier::Opus];

fn columns(mid: Option<&str>) -> Columns {
    Columns {
        prompt: "prompt".to_owned(),
        weak: "small__correct".to_owned(),
        strong: "big__score".to_owned(),
        mid: mid.map(str::to_owned),
    }
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().write_all(contents).unwrap();
    path
}

const CSV: &str = "\
id,prompt,small__correct,small__out_chars,mid__win,big__score,big__out_chars
1,What is 2+2?,true,40,0,7,400
2,\"[\"\"Hi\"\", \"\"Hello! How can I help?\"\", \"\"Compare A and B\"\"]\",false,,1,9,
3,Explain entropy.,1,100,0.5,NaN,100
4,Write a poem.,0,8,,3,
5,,1,1,1,1,1
";

#[test]
fn csv_loading_reads_every_outcome_form_and_counts_skips() {
    let path = temp_file("mixed.csv", CSV.as_bytes());
    let loaded = load_rows(&path, &columns(None), SplitFilter::All).unwrap();
    assert_eq!(loaded.read, 5);
    assert_eq!(loaded.skipped_missing, 1, "row 3 has NaN for big");
    assert_eq!(loaded.skipped_empty_prompt, 1);
    assert_eq!(loaded.rows.len(), 3);
    let first = &loaded.rows[0];
    assert_eq!((first.weak, first.strong, first.mid), (1.0, 7.0, None));
    // Every tier is priced with the strong model's answer length (400 characters), not the
    // weak model's own (40).
    assert_eq!(first.output_tokens, 100);
    // A JSON list of turns is kept as the cell; an empty answer length falls back.
    assert!(loaded.rows[1].prompt.starts_with("[\"Hi\""));
    assert_eq!(loaded.rows[1].output_tokens, DEFAULT_OUTPUT_TOKENS);
    assert_eq!(loaded.out_chars_column.as_deref(), Some("big__out_chars"));

    // With a mid column, row 4 (no mid outcome) is skipped too.
    let with_mid = Columns { mid: Some("mid__win".to_owned()), ..columns(None) };
    let loaded = load_rows(&path, &with_mid, SplitFilter::All).unwrap();
    assert_eq!(loaded.rows.len(), 2);
    assert_eq!(loaded.skipped_missing, 2);
    assert_eq!(loaded.rows[1].mid, Some(1.0));

    // The JSON-list prompt is three turns; the heuristic sees their joined text.
    let conversation = Conversation::from_prompt_cell(&loaded.rows[1].prompt);
    assert_eq!(conversation.turns().len(), 3);
    assert_eq!(routers::heuristic_level(&conversation.joined_text()), 1);
}

#[test]
fn gzipped_csv_and_splits() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(CSV.as_bytes()).unwrap();
    let path = temp_file("mixed.csv.gz", &encoder.finish().unwrap());
    let all = load_rows(&path, &columns(None), SplitFilter::All).unwrap();
    assert_eq!(all.rows.len(), 3);
    let parts: usize = [SplitFilter::Train, SplitFilter::Validation, SplitFilter::Test]
        .into_iter()
        .map(|split| load_rows(&path, &columns(None), split).unwrap().rows.len())
        .sum();
    assert_eq!(parts, 3);
}

#[test]
fn clear_errors() {
    let path = temp_file("errors.csv", CSV.as_bytes());
    let missing = load_rows(&path, &Columns { weak: "nope".to_owned(), ..columns(None) }, SplitFilter::All);
    let message = missing.unwrap_err().to_string();
    assert!(message.contains("no column `nope`"), "{message}");
    assert!(message.contains("available columns: id, prompt, small__correct"), "{message}");

    let absent = load_rows(Path::new("/nonexistent/file.csv"), &columns(None), SplitFilter::All);
    assert!(absent.unwrap_err().to_string().contains("cannot read /nonexistent/file.csv"));

    let bad = temp_file("bad.csv", b"prompt,small__correct,big__score\nhi,yes,3\n");
    let message = load_rows(&bad, &columns(None), SplitFilter::All).unwrap_err().to_string();
    assert!(message.contains("line 2, column `small__correct`: `yes` is not an outcome"), "{message}");
}

fn pair(weak: &[f64], strong: &[f64], cost_weak: f64, cost_strong: f64) -> PairColumns {
    PairColumns {
        weak: weak.to_vec(),
        strong: strong.to_vec(),
        cost_weak: vec![cost_weak; weak.len()],
        cost_strong: vec![cost_strong; weak.len()],
    }
}

#[test]
fn cost_saved_at_parity() {
    // Only row 1 needs the strong model.
    let columns = pair(&[1.0, 0.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0], 1.0, 5.0);
    let oracle = metrics(&[0.0, 1.0, 0.0, 0.0], &columns);
    assert_eq!(oracle.parity_share, Some(0.25));
    // One strong call in four: (5 + 3 × 1) / 4 = 2 per call against 5.
    assert!((oracle.cost_saved_at_parity - 0.6).abs() < 1e-12);
    assert_eq!(oracle.apgr.map(|a| a > 0.8), Some(true));

    let random = metrics(&[0.0; 4], &columns);
    assert!((random.apgr.unwrap() - 0.5).abs() < 1e-12);
    assert!((random.cpt50.unwrap() - 0.5).abs() < 1e-12);
    assert!((random.cpt80.unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(random.parity_share, Some(1.0));
    assert!(random.cost_saved_at_parity.abs() < 1e-12);

    // A weak model as good as the strong one is at parity without any strong call.
    let equal = metrics(&[0.0, 1.0], &pair(&[1.0, 0.0], &[1.0, 0.0], 1.0, 4.0));
    assert_eq!(equal.apgr, None);
    assert_eq!(equal.parity_share, Some(0.0));
    assert!((equal.cost_saved_at_parity - 0.75).abs() < 1e-12);
}

fn sample_rows() -> Vec<EvalRow> {
    let mut rows: Vec<EvalRow> = (0..40)
        .map(|i| {
            let prompt =
                if i % 2 == 0 { format!("short question {i}?") } else { format!("analyze {}", "word ".repeat(i * 6)) };
            let hard = i % 2 == 1;
            EvalRow::new(prompt, if hard { 0.0 } else { 1.0 }, Some(if i % 4 == 1 { 1.0 } else { 0.5 }), 1.0)
        })
        .collect();
    rows.push(EvalRow::new(r#"["Hello", "Hi!", "Compare the two"]"#, 1.0, Some(1.0), 1.0));
    rows
}

fn zeroed() -> RouterModel {
    RouterModel::zeroed("test".to_owned()).with_computed_version()
}

#[test]
fn evaluation_json_has_the_promised_shape() {
    let model = zeroed();
    let opts = EvalOptions::new(&model, TIERS).unwrap();
    let rows = sample_rows();
    let report = evaluate(&rows, &opts);
    assert_eq!(report.rows, 41);
    // The heuristic puts the hard rows first here, nearly as well as an oracle (1 − 20/41/2
    // ≈ 0.756: with half the rows needing the strong model even a perfect router is below 1).
    let heuristic = report.routers.heuristic.apgr.unwrap();
    assert!(heuristic > 0.74 && heuristic < 0.757, "{heuristic}");
    assert!((report.routers.random.apgr.unwrap() - 0.5).abs() < 1e-12);
    // An untrained model scores every prompt the same: exactly random.
    assert!((report.routers.learned.apgr.unwrap() - 0.5).abs() < 1e-12);

    let info = RunInfo {
        data: "x.csv".to_owned(),
        split: "all",
        columns: columns(Some("mid__win")),
        read: 41,
        outside_split: 0,
        skipped: 0,
        skipped_empty_prompt: 0,
        svg: "x.svg".to_owned(),
    };
    let json: Value = serde_json::to_value(JsonOutput { report: &report, info: &info }).unwrap();
    assert_eq!(json["rows"], 41);
    for router in ["random", "heuristic", "length", "learned"] {
        for key in ["apgr", "cpt50", "cpt80", "costSavedAtParity"] {
            assert!(json["routers"][router].get(key).is_some(), "{router}.{key} in {json}");
        }
    }
    assert!(json["routers"]["random"]["curve"].is_null());
    assert_eq!(json["tolerance"].as_array().unwrap().len(), TOLERANCES_PERCENT.len());
    assert_eq!(json["tolerance"][3]["promised"], 0.05);
    // Thresholds of 1.0 never reach the weak tier: no drop at all.
    assert_eq!(json["tolerance"][3]["weakShare"], 0.0);
    assert_eq!(json["tolerance"][3]["observed"], 0.0);
    assert_eq!(json["threeTier"].as_array().unwrap().len(), 4 + TOLERANCES_PERCENT.len());
    assert_eq!(json["threeTier"][0]["router"], "always-weak");
    assert_eq!(json["split"], "all");
    assert_eq!(json["modelVersion"], model.version());
    assert!(json["weakQuality"].is_number() && json["strongQuality"].is_number() && json["midQuality"].is_number());
    assert_eq!(json["tiers"]["strong"]["tier"], "opus");

    // The text tables mention every router.
    let text = report::render_text(&report, &info);
    for router in ["random", "heuristic", "length", "learned", "always-mid"] {
        assert!(text.contains(router), "{router} in {text}");
    }
}

#[test]
fn tolerance_and_three_tier_follow_the_calibration() {
    let mut model = zeroed();
    // Every prompt scores 0.5: a threshold of 0.4 sends all to weak, 0.6 none.
    model.calibration.two_tier[0] = (0..101).map(|p| if p >= 5 { 0.4 } else { 0.6 }).collect();
    model.calibration.three_tier = (0..101).map(|p| if p >= 5 { [0.6, 0.4] } else { [0.6, 0.6] }).collect();
    let opts = EvalOptions::new(&model, TIERS).unwrap();
    let rows = sample_rows();
    let report = evaluate(&rows, &opts);
    let at = |promised: f64| report.tolerance.iter().find(|t| (t.promised - promised).abs() < 1e-9).unwrap();
    assert_eq!(at(0.02).weak_share, 0.0);
    assert_eq!(at(0.05).weak_share, 1.0);
    // Half the rows fail on weak: mean quality 21/41 against 1.
    assert!((at(0.05).observed.unwrap() - 20.0 / 41.0).abs() < 1e-12);
    assert!((report.tolerance_max_excess.unwrap() - (20.0 / 41.0 - 0.05)).abs() < 1e-12);
    assert!(at(0.05).cost_relative.unwrap() < 0.5);

    let three = report.three_tier.as_ref().unwrap();
    let learned_5 = three.iter().find(|r| r.router == "learned" && r.promised == Some(0.05)).unwrap();
    assert_eq!((learned_5.weak_share, learned_5.mid_share, learned_5.strong_share), (0.0, 1.0, 0.0));
    let always_strong = three.iter().find(|r| r.router == "always-strong").unwrap();
    assert_eq!(always_strong.drop, Some(0.0));
    assert_eq!(always_strong.cost_relative, Some(1.0));
    let heuristic = three.iter().find(|r| r.router == "heuristic").unwrap();
    assert!((heuristic.weak_share + heuristic.mid_share + heuristic.strong_share - 1.0).abs() < 1e-12);
}

#[test]
fn svg_is_well_formed() {
    let model = zeroed();
    let opts = EvalOptions::new(&model, TIERS).unwrap();
    let report = evaluate(&sample_rows(), &opts);
    let text = svg::render(&report, "data <&> \"x\": a vs b");
    assert!(text.starts_with("<svg"));
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<polyline").count(), 4);
    assert!(text.contains("data &lt;&amp;&gt; &quot;x&quot;: a vs b"));
    // Every element opened is closed, in order.
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').unwrap() + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "closing {name}");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_owned());
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "{stack:?}");
    assert!(!text.contains("NaN") && !text.contains("inf"));
}

#[test]
fn default_chart_path_is_sanitized() {
    let path = default_svg_path(Path::new("data/x/mmlu pro.csv.gz"), "Llama 8B/x__correct", "big__score");
    assert_eq!(path.file_name().unwrap(), "mmlu_pro-Llama_8B_x__correct-vs-big__score.svg");
    assert!(path.parent().unwrap().ends_with("eval-router"));
}

#[test]
fn every_tier_is_priced_with_the_same_tokens() {
    let model = zeroed();
    let opts = EvalOptions::new(&model, TIERS).unwrap();
    let rows: Vec<EvalRow> = (0..10)
        .map(|i| EvalRow { output_tokens: 40 * i + 1, ..EvalRow::new(format!("question {i}?"), 1.0, Some(1.0), 1.0) })
        .collect();
    let report = evaluate(&rows, &opts);
    // Claude's output price is five times its input price in every tier, so whatever the
    // token counts, the cost of a tier against another is the ratio of their prices.
    let (input, output) = (1_000_000, 1_000_000);
    let price = |t: usize| opts.prices[t].cost(input, output);
    let weak_vs_strong = report.tiers.weak.cost_per_call / report.tiers.strong.cost_per_call;
    assert!((weak_vs_strong - price(0) / price(2)).abs() < 1e-9, "{weak_vs_strong}");
    let three = report.three_tier.as_ref().unwrap();
    let always = |name: &str| three.iter().find(|r| r.router == name).unwrap().cost_relative.unwrap();
    assert!((always("always-weak") - price(0) / price(2)).abs() < 1e-9);
    assert!((always("always-mid") - price(1) / price(2)).abs() < 1e-9);
}

#[test]
fn the_mid_head_scores_and_routes_the_cheaper_column() {
    let mut model = zeroed();
    // Every prompt scores 0.5: the mid head's threshold of 0.4 sends all to the cheaper
    // model from 5 %, the weak head's (1.0) never does.
    model.calibration.two_tier[1] = (0..101).map(|p| if p >= 5 { 0.4 } else { 0.6 }).collect();
    let rows: Vec<EvalRow> = sample_rows().into_iter().map(|r| EvalRow { mid: None, ..r }).collect();
    let at = |report: &EvalReport, promised: f64| {
        report.tolerance.iter().find(|t| (t.promised - promised).abs() < 1e-9).unwrap().weak_share
    };
    let weak = evaluate(&rows, &EvalOptions::new(&model, TIERS).unwrap());
    assert_eq!((weak.head, at(&weak, 0.05)), (Head::Weak, 0.0));
    let opts = EvalOptions::new(&model, [Tier::Sonnet, Tier::Sonnet, Tier::Opus]).unwrap().with_head(Head::Mid);
    let mid = evaluate(&rows, &opts);
    assert_eq!((mid.head, at(&mid, 0.02), at(&mid, 0.05)), (Head::Mid, 0.0, 1.0));
    assert!((mid.tolerance[3].threshold - f64::from(0.4f32)).abs() < 1e-12);
    assert_eq!(mid.tiers.weak.tier, Tier::Sonnet);
    assert!(mid.three_tier.is_none());
    let json = serde_json::to_value(&mid).unwrap();
    assert_eq!(json["head"], "mid");
}

fn parse_args(args: &[&str]) -> std::result::Result<EvalArgs, clap::Error> {
    use clap::{Args as _, FromArgMatches as _};
    let command = EvalArgs::augment_args(clap::Command::new("eval-router").no_binary_name(true));
    let matches = command.try_get_matches_from(args)?;
    EvalArgs::from_arg_matches(&matches)
}

#[test]
fn the_command_line_takes_either_form() {
    let shipped = parse_args(&["--shipped", "--json"]).unwrap();
    assert!(shipped.shipped && shipped.json && shipped.data.is_none() && shipped.split.is_none());
    let shipped = parse_args(&["--shipped", "--split", "validation"]).unwrap();
    assert_eq!(shipped.split, Some(SplitFilter::Validation));

    let csv =
        parse_args(&["--data", "x.csv", "--prompt", "p", "--weak", "w", "--strong", "s", "--head", "mid"]).unwrap();
    assert!(!csv.shipped);
    assert_eq!((csv.data.as_deref(), csv.head), (Some(Path::new("x.csv")), Head::Mid));
    assert_eq!(tiers_of(&csv, csv.head), [Tier::Sonnet, Tier::Sonnet, Tier::Opus]);
    let csv = parse_args(&["--data", "x.csv", "--prompt", "p", "--weak", "w", "--strong", "s"]).unwrap();
    assert_eq!((csv.head, csv.split), (Head::Weak, None));
    assert_eq!(tiers_of(&csv, csv.head), TIERS);

    let neither = parse_args(&[]).unwrap_err().to_string();
    assert!(neither.contains("--data") && neither.contains("--shipped"), "{neither}");
    let incomplete = parse_args(&["--data", "x.csv", "--prompt", "p"]).unwrap_err().to_string();
    assert!(incomplete.contains("--weak") && incomplete.contains("--strong"), "{incomplete}");
    assert!(parse_args(&["--shipped", "--data", "x.csv", "--prompt", "p", "--weak", "w", "--strong", "s"]).is_err());
    assert!(parse_args(&["--shipped", "--prompt", "p"]).is_err());
    assert!(parse_args(&["--shipped", "--head", "mid"]).is_err());
    let head = parse_args(&["--data", "x", "--prompt", "p", "--weak", "w", "--strong", "s", "--head", "x"]);
    assert!(head.unwrap_err().to_string().contains("expected weak or mid"));
}

#[test]
fn shipped_tables_render() {
    let model = zeroed();
    let rows = sample_rows();
    let pair_rows: Vec<EvalRow> = rows.iter().cloned().map(|r| EvalRow { mid: None, ..r }).collect();
    let report =
        |head: Head, rows: &[EvalRow]| evaluate(rows, &EvalOptions::new(&model, TIERS).unwrap().with_head(head));
    let mut results = shipped::Shipped {
        model_version: model.version().to_owned(),
        split: "test",
        tiers: TIERS,
        datasets: Vec::new(),
        three_tier: Vec::new(),
    };
    for slice in [shipped::Slice::All, shipped::Slice::OriMmlu] {
        for head in [Head::Weak, Head::Mid] {
            results.datasets.push(shipped::PairResult {
                name: "mmlu_pro",
                slice,
                pair: head,
                cheap: "small",
                strong: "big",
                svg: shipped::svg_path("mmlu_pro", slice, head).display().to_string(),
                report: report(head, &pair_rows),
            });
        }
        results.three_tier.push(shipped::ThreeTierResult {
            name: "mmlu_pro",
            slice,
            rows: rows.len(),
            ladder: ["small", "mid", "big"],
            table: report(Head::Weak, &rows).three_tier.unwrap(),
        });
    }
    let text = shipped::render_markdown(&results);
    assert!(text.contains("| mmlu_pro | 41 | weak→strong | 0.500 |"), "{text}");
    assert!(text.contains("| mmlu_pro (ori_mmlu, never trained on) | mid→strong | 5.0% |"), "{text}");
    assert!(text.contains("| mmlu_pro | 41 | learned @ 20% |"), "{text}");
    assert!(text.contains("| mmlu_pro | 41 | always-mid |"), "{text}");
    assert!(text.contains("max excess (observed − promised), two tiers"), "{text}");
    // A zeroed model ranks like random: no difference, and never "clearly better".
    assert!(text.contains("| mmlu_pro | weak→strong | 0.500 [0.500, 0.500] | +0.000 [+0.000, +0.000] no |"), "{text}");
    // Four pair rows in the routers and comparison tables, four tolerances each, eight
    // three-tier rows per slice.
    assert_eq!(text.lines().filter(|l| l.contains("→strong |")).count(), 4 + 4 + 4 * 4);
    assert_eq!(text.lines().filter(|l| l.contains("| always-") || l.contains("| learned @")).count(), 2 * 7);

    let json: Value = serde_json::to_value(&results).unwrap();
    assert_eq!(json["datasets"][1]["pair"], "mid");
    assert_eq!(json["datasets"][2]["slice"], "ori_mmlu");
    assert_eq!(json["datasets"][0]["report"]["routers"]["learned"]["apgr"], 0.5);
    assert_eq!(json["datasets"][0]["report"]["learnedVs"][2]["baseline"], "length");
    assert_eq!(json["datasets"][0]["report"]["learnedVs"][0]["clearlyBetter"], false);
    assert_eq!(json["datasets"][0]["report"]["bootstrapResamples"], 1000);
    assert!(json["modelVersion"].is_string() && json["threeTier"][0]["table"].is_array());
    assert!(results.datasets[1].svg.ends_with("eval-router/shipped-mmlu_pro-mid.svg"));
    assert!(results.datasets[2].svg.ends_with("eval-router/shipped-mmlu_pro_ori_mmlu-weak.svg"));
}

/// The shipped datasets' test splits, both pairs of each ladder and three tiers, with the
/// embedded model, as `cargo xtask eval-router --shipped` prints them:
/// `cargo test -p xtask shipped_test_splits -- --ignored --nocapture`.
#[test]
#[ignore = "reads every shipped dataset; run on demand"]
fn shipped_test_splits() {
    use gateway_core::routing::dataset;

    let model = RouterModel::embedded().unwrap();
    let results = shipped::evaluate_shipped(model, TIERS, SplitFilter::Test, &dataset::default_dir()).unwrap();
    // Three MMLU-Pro slices and two other datasets, on two pairs each.
    assert_eq!(results.datasets.len(), 10);
    assert_eq!(results.three_tier.len(), 5);
    assert!(results.datasets.iter().all(|p| p.report.rows > 0));
    assert!(results.three_tier.iter().all(|t| t.rows > 0 && t.table.len() == 4 + TOLERANCES_PERCENT.len()));
    println!("{}", shipped::render_markdown(&results));
}
