//! The page: static HTML around the data as JSON; the inline script draws the charts as
//! SVG. Nothing is loaded from anywhere, so the file opens offline and from `file://`.

use super::Dashboard;
use crate::Result;
use crate::eval::svg::escape;

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A file: its data is as old as the command that wrote it.
    File,
    /// Served by `--serve`: a reload fetches the data again.
    Served,
}

pub fn render(dashboard: &Dashboard, mode: Mode) -> Result<String> {
    let data = script_safe_json(&serde_json::to_string(dashboard)?);
    let freshness = match mode {
        Mode::File => "Written once; run <code>cargo xtask dashboard</code> again for newer data.",
        Mode::Served => "Reload the page for newer data.",
    };
    Ok(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bedrock gateway: local dashboard</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body data-ready="false" data-errors="0">
<header>
<h1>Bedrock gateway: local dashboard</h1>
<p id="window">The charts of <code>GatewayDashboard</code> (template.yaml), from {source}. {freshness}</p>
</header>
<main id="charts"></main>
<noscript><p class="empty">The charts are drawn by the page's script; enable JavaScript.</p></noscript>
<script type="application/json" id="dashboard-data">{data}</script>
<script>{SCRIPT}</script>
</body>
</html>
"#,
        source = escape(&dashboard.source),
    ))
}

/// A page for `--serve` to answer with when the data cannot be fetched.
pub fn error_page(message: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dashboard error</title>\
         <link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\
         <body data-ready=\"false\" data-errors=\"1\"><header><h1>The dashboard could not be drawn</h1></header>\
         <p class=\"empty\">{}</p></body></html>\n",
        escape(message)
    )
}

/// JSON inside `<script>` must not contain `</script>` or `<!--`; `<` only occurs inside
/// JSON strings, where `\u003c` means the same character.
fn script_safe_json(json: &str) -> String {
    json.replace('<', "\\u003c")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_cannot_close_its_script_element() {
        let dashboard = Dashboard {
            source: "http://127.0.0.1:1/<x>".into(),
            region: "us-east-1".into(),
            start_ms: 0,
            end_ms: 60_000,
            charts: vec![super::super::Chart {
                title: "</script><script>alert(1)</script>".into(),
                x: 0,
                y: 0,
                width: 12,
                y_min: None,
                y_max: None,
                series: vec![],
                notes: vec![],
                aws_only: false,
            }],
        };
        let html = render(&dashboard, Mode::File).unwrap();
        assert_eq!(html.matches("</script>").count(), 2, "only the page's own two scripts close");
        assert!(html.contains("http://127.0.0.1:1/&lt;x&gt;"));
        let start = html.find("id=\"dashboard-data\">").unwrap() + "id=\"dashboard-data\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        let data: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(data["charts"][0]["title"], "</script><script>alert(1)</script>");
        assert!(!html.contains("src=") && !html.contains("href=\"http"), "nothing is loaded from elsewhere");
    }
}
