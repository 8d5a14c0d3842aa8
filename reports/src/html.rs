//! The report pages: a run, a comparison and a sweep, each one self-contained HTML document.
//!
//! It owns the page layout (verdicts first, then delivery, latency, time series), escaping, and
//! embedding uPlot, the styles and the chart data inline. It must never emit a reference to
//! anything outside the document: no `src=`/`href=` to a URL, and a Content-Security-Policy that
//! forbids every fetch, so the report works offline and leaks nothing when opened.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use edgeproof_scenarios::outcome::{Outcome, Verdict};
use hdrhistogram::Histogram;

use crate::load::{LoadError, LoadedOutcome};
use crate::svg;
use crate::view::{self, Chart};

const UPLOT_JS: &str = include_str!("../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uPlot.min.css");
const REPORT_JS: &str = include_str!("../assets/report.js");
const REPORT_CSS: &str = include_str!("../assets/report.css");
/// Installed before anything else runs: records script errors and blocked fetches so the page
/// (and the browser test) can tell a broken report from a good one.
const PROBE_JS: &str = "window.__edgeproof={errors:[],blocked:[]};\
window.addEventListener('error',function(e){window.__edgeproof.errors.push(String(e.message||e.type))},true);\
window.addEventListener('unhandledrejection',function(e){window.__edgeproof.errors.push(String(e.reason))});\
document.addEventListener('securitypolicyviolation',function(e){window.__edgeproof.blocked.push(e.blockedURI+' ('+e.violatedDirective+')')});";
/// Nothing may be fetched: scripts and styles are inline, images are data: URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'";
/// Most rows of a per-seed or per-observer table; the rest are counted, not shown.
pub const TABLE_ROWS_LIMIT: usize = 1_000;
/// Most items of one witness list shown.
pub const WITNESS_ITEMS_LIMIT: usize = 20;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time (the civil-from-days algorithm of H. Hinnant).
pub fn utc_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let seconds_of_day = unix_secs % 86_400;
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        seconds_of_day / 3_600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    }
}

fn verdict_class(passed: bool) -> &'static str {
    if passed { "pass" } else { "fail" }
}

fn is_simulated(engine: &str) -> bool {
    matches!(engine, "fast" | "turmoil")
}

/// The command that replays a simulated run, as recorded or else rebuilt from its name.
pub fn replay_command(outcome: &Outcome) -> Option<String> {
    if let Some(command) = &outcome.replay_command {
        return Some(command.clone());
    }
    is_simulated(&outcome.engine).then(|| {
        format!(
            "cargo run --release -- run {} --seed {} --engine {}",
            outcome.scenario, outcome.seed, outcome.engine
        )
    })
}

fn number(value: f64) -> String {
    if value == 0.0 {
        "0".to_string()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The pieces of one page under construction.
struct Page {
    title: String,
    body: String,
    charts: Vec<Chart>,
}

impl Page {
    fn new(title: String) -> Page {
        Page { title, body: String::new(), charts: Vec::new() }
    }

    fn chart(&mut self, chart: Chart) {
        chart.assert_valid();
        let empty = if chart.has_data() { "" } else { " data-empty=\"true\"" };
        let _ = write!(
            self.body,
            "<figure class=\"chart\" id=\"chart-{id}\" data-chart=\"{id}\"{empty}><figcaption>{title}</figcaption>\
             <div class=\"plot\"></div><div class=\"fallback\">{svg}</div></figure>",
            id = escape(&chart.id),
            title = escape(&chart.title),
            svg = svg::render(&chart),
        );
        self.charts.push(chart);
    }

    fn finish(self) -> String {
        let ids: Vec<&str> = self.charts.iter().map(|chart| chart.id.as_str()).collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "chart ids repeat: {ids:?}");
        let data = serde_json::json!({ "charts": self.charts });
        // `<` escaped as \u003c keeps `</script>` in any label from ending the data block.
        let data = serde_json::to_string(&data).expect("chart data serializes").replace('<', "\\u003c");
        let mut page = String::with_capacity(self.body.len() + UPLOT_JS.len() + data.len() + 8_192);
        let _ = write!(
            page,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"generator\" content=\"edgeproof {version}\">\
             <title>{title}</title><script>{PROBE_JS}</script><style>{UPLOT_CSS}\n{REPORT_CSS}</style></head>\
             <body data-render=\"static\">{body}\
             <footer>edgeproof {version} report. Self-contained: charts by uPlot (MIT) with the data inline; \
             the static charts show without JavaScript.</footer>\
             <script type=\"application/json\" id=\"edgeproof-data\">{data}</script>\
             <script>{UPLOT_JS}</script><script>{REPORT_JS}</script></body></html>\n",
            version = env!("CARGO_PKG_VERSION"),
            title = escape(&self.title),
            body = self.body,
        );
        page
    }
}

fn header_rows(outcome: &Outcome) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("scenario", format!("{} ({})", outcome.scenario, outcome.scenario_hash)),
        ("seed", outcome.seed.to_string()),
        (
            "engine",
            format!(
                "{} ({})",
                outcome.engine,
                if is_simulated(&outcome.engine) { "simulated" } else { "real" }
            ),
        ),
        ("commit", outcome.commit.clone().unwrap_or_else(|| "unknown".to_string())),
        ("target", outcome.target.clone().unwrap_or_else(|| default_target(outcome))),
        ("machine", outcome.machine.clone().unwrap_or_else(|| "not recorded".to_string())),
        ("date", outcome.started_unix_secs.map_or_else(|| "not recorded".to_string(), utc_date)),
        (
            "run",
            format!(
                "{} s covered in {} wall s, {} events, edgeproof {}, trace {}",
                number(outcome.sim_seconds),
                number(outcome.wall_seconds),
                outcome.events,
                outcome.edgeproof_version,
                outcome.trace_hash
            ),
        ),
    ];
    rows.retain(|(_, value)| !value.is_empty());
    rows
}

fn default_target(outcome: &Outcome) -> String {
    if is_simulated(&outcome.engine) {
        "edgeproof broker (simulated)".to_string()
    } else {
        "not recorded".to_string()
    }
}

/// A JSON value of a check's extra field as HTML: lists (witnesses) as capped lists.
fn value_html(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => escape(text),
        serde_json::Value::Array(items) => {
            let mut html = String::from("<ul class=\"witnesses\">");
            for item in items.iter().take(WITNESS_ITEMS_LIMIT) {
                let _ = write!(html, "<li>{}</li>", value_html(item));
            }
            if items.len() > WITNESS_ITEMS_LIMIT {
                let _ =
                    write!(html, "<li>and {} more (in outcome.json)</li>", items.len() - WITNESS_ITEMS_LIMIT);
            }
            html.push_str("</ul>");
            html
        }
        serde_json::Value::Object(fields) => {
            let parts: Vec<String> =
                fields.iter().map(|(key, value)| format!("{}: {}", escape(key), value_html(value))).collect();
            parts.join(", ")
        }
        other => escape(&other.to_string()),
    }
}

/// Every check with its verdict, detail and whatever else the oracle wrote for it (witnesses,
/// failure kinds), failed checks first.
fn checks_table(loaded: &LoadedOutcome) -> String {
    let mut html = String::from(
        "<table class=\"checks\"><thead><tr><th>check</th><th>verdict</th><th>detail and witnesses</th></tr></thead><tbody>",
    );
    let mut order: Vec<usize> = (0..loaded.outcome.checks.len()).collect();
    order.sort_by_key(|&index| loaded.outcome.checks[index].passed);
    for index in order {
        let check = &loaded.outcome.checks[index];
        let mut extra = String::new();
        if let Some(fields) = loaded.checks_raw.get(index).and_then(serde_json::Value::as_object) {
            for (key, value) in fields {
                if matches!(key.as_str(), "name" | "passed" | "detail") || value.is_null() {
                    continue;
                }
                if value.as_array().is_some_and(Vec::is_empty) {
                    continue;
                }
                let _ = write!(
                    extra,
                    "<div class=\"extra\"><span class=\"key\">{}</span> {}</div>",
                    escape(key),
                    value_html(value)
                );
            }
        }
        let _ = write!(
            html,
            "<tr class=\"{class}\"><td>{name}</td><td><span class=\"badge {class}\">{word}</span></td><td>{detail}{extra}</td></tr>",
            class = verdict_class(check.passed),
            name = escape(&check.name),
            word = if check.passed { "pass" } else { "FAIL" },
            detail = escape(&check.detail),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn verdict_banner(outcome: &Outcome) -> String {
    let failed = outcome.checks.iter().filter(|check| !check.passed).count();
    let summary = if failed == 0 {
        format!("all {} checks passed", outcome.checks.len())
    } else {
        format!("{failed} of {} checks failed", outcome.checks.len())
    };
    let mut html = format!(
        "<div class=\"verdict {class}\" id=\"verdict\"><span class=\"word\">{word}</span> \
         <span class=\"what\">{scenario}, seed {seed}, {engine}: {summary}</span></div>",
        class = verdict_class(outcome.passed()),
        word = verdict_word(outcome.verdict),
        scenario = escape(&outcome.scenario),
        seed = outcome.seed,
        engine = escape(&outcome.engine),
    );
    if !outcome.passed()
        && let Some(command) = replay_command(outcome)
    {
        let _ = write!(
            html,
            "<p class=\"replay\">Replay this failure bit for bit: <code>{}</code></p>",
            escape(&command)
        );
    }
    html
}

fn header_table(outcome: &Outcome) -> String {
    let mut html = String::from("<table class=\"header\"><tbody>");
    for (key, value) in header_rows(outcome) {
        let _ = write!(html, "<tr><th>{key}</th><td>{}</td></tr>", escape(&value));
    }
    html.push_str("</tbody></table>");
    html
}

fn delivery_section(outcome: &Outcome) -> String {
    let counters = &outcome.counters;
    let mut html = format!(
        "<section id=\"delivery\"><h2>Delivery</h2><p class=\"totals\">published {} &middot; acked {} &middot; \
         failed {} &middot; indeterminate {} &middot; deliveries {} &middot; out of order {}</p>",
        counters.published,
        counters.acked,
        counters.failed,
        counters.indeterminate,
        counters.deliveries,
        counters.out_of_order
    );
    html.push_str(
        "<table class=\"numbers\"><thead><tr><th>observer</th><th>expected</th><th>expected acked</th><th>delivered</th>\
         <th>lost</th><th>duplicated</th><th>unexpected</th><th>recovered</th><th>dropped (allowed)</th><th>out of order</th>\
         </tr></thead><tbody>",
    );
    for observer in outcome.observers.iter().take(TABLE_ROWS_LIMIT) {
        let bad = |count: u64| if count > 0 { " class=\"bad\"" } else { "" };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            escape(&observer.observer),
            observer.expected,
            observer.expected_acked,
            observer.delivered,
            bad(observer.lost),
            observer.lost,
            bad(observer.duplicated),
            observer.duplicated,
            bad(observer.unexpected),
            observer.unexpected,
            observer.recovered,
            observer.dropped_excused,
            bad(observer.order_violations),
            observer.order_violations,
        );
    }
    if outcome.observers.len() > TABLE_ROWS_LIMIT {
        let _ = write!(
            html,
            "<tr><td colspan=\"10\">and {} more observers</td></tr>",
            outcome.observers.len() - TABLE_ROWS_LIMIT
        );
    }
    let _ = write!(
        html,
        "<tr class=\"total\"><td>all observers</td><td></td><td></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td><td>{}</td></tr></tbody></table>",
        counters.delivered,
        counters.lost,
        counters.duplicated,
        counters.unexpected,
        counters.recovered,
        counters.out_of_order
    );
    html.push_str("<h3>Drops by reason</h3>");
    if counters.dropped.is_empty() {
        html.push_str("<p>No drops were declared.</p>");
    } else {
        html.push_str("<table class=\"numbers\"><thead><tr><th>reason</th><th>count</th><th>allowed by the scenario</th></tr></thead><tbody>");
        for (reason, count) in &counters.dropped {
            let allowed = outcome.allowed_drops.iter().any(|allowed| allowed == reason);
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{count}</td><td class=\"{}\">{}</td></tr>",
                escape(reason),
                if allowed { "good" } else { "bad" },
                if allowed { "yes" } else { "no" }
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</section>");
    html
}

fn latency_row(label: &str, histogram: &Histogram<u64>) -> String {
    let cells: Vec<String> = [0.5, 0.9, 0.99, 0.999]
        .iter()
        .map(|&quantile| format!("<td>{}</td>", number(view::quantile_ms(histogram, quantile))))
        .collect();
    let max = if histogram.is_empty() { 0.0 } else { histogram.max() as f64 / 1e3 };
    format!(
        "<tr><td>{}</td><td>{}</td>{}<td>{}</td></tr>",
        escape(label),
        histogram.len(),
        cells.join(""),
        number(max)
    )
}

const LATENCY_HEAD: &str = "<table class=\"numbers\"><thead><tr><th>view</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr></thead><tbody>";

/// The page of one run.
pub fn run_page(loaded: &LoadedOutcome) -> Result<String, LoadError> {
    let outcome = &loaded.outcome;
    let histograms = loaded.histograms()?;
    let mut page = Page::new(format!(
        "{} {} seed {} - edgeproof report",
        verdict_word(outcome.verdict),
        outcome.scenario,
        outcome.seed
    ));
    page.body.push_str("<header>");
    page.body.push_str(&verdict_banner(outcome));
    page.body.push_str(&checks_table(loaded));
    page.body.push_str(&header_table(outcome));
    page.body.push_str("</header>");
    page.body.push_str(&delivery_section(outcome));
    page.body.push_str("<section id=\"latency\"><h2>Latency</h2>");
    page.body.push_str(LATENCY_HEAD);
    page.body.push_str(&latency_row("planned send -> delivery", &histograms.latency_us));
    page.body.push_str(&latency_row("actual send -> delivery", &histograms.latency_raw_us));
    page.body.push_str("</tbody></table><p class=\"note\">Percentiles from the HDR histograms (3 significant digits). \
        Planned-send latency counts the time a message waited to be sent, so coordinated omission shows as a gap \
        between the two lines of the spectrum.</p>");
    page.chart(view::spectrum_chart(
        "spectrum",
        "Percentile spectrum",
        &[
            ("planned send -> delivery".to_string(), &histograms.latency_us, false),
            ("actual send -> delivery".to_string(), &histograms.latency_raw_us, true),
        ],
    ));
    page.chart(view::latency_over_time(outcome));
    page.body.push_str("</section><section id=\"throughput\"><h2>Throughput</h2>");
    page.chart(view::throughput_over_time(outcome));
    page.body.push_str("</section><section id=\"connections\"><h2>Connections</h2>");
    match view::connections_over_time(outcome) {
        Some(chart) => page.chart(chart),
        None => page.body.push_str("<p class=\"note\">This engine did not record connections over time.</p>"),
    }
    page.body.push_str("</section>");
    page.body.push_str(&faults_section(outcome));
    Ok(page.finish())
}

fn faults_section(outcome: &Outcome) -> String {
    let mut html = String::from("<section id=\"faults\"><h2>Faults</h2>");
    if outcome.faults.is_empty() {
        html.push_str("<p>The scenario injected no faults.</p>");
    } else {
        html.push_str("<table class=\"numbers\"><thead><tr><th>at s</th><th>action</th><th>target</th></tr></thead><tbody>");
        for fault in outcome.faults.iter().take(TABLE_ROWS_LIMIT) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                number(fault.at_secs),
                escape(&fault.action),
                escape(&fault.target)
            );
        }
        html.push_str("</tbody></table><p class=\"note\">Shaded on the time charts: a crash until its restart, a partition until its heal.</p>");
    }
    html.push_str("</section>");
    html
}

/// Whether a larger value of a compared metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Smaller is better (latency, losses).
    Lower,
    /// Larger is better (throughput, deliveries).
    Higher,
}

/// Relative change below which two values count as the same (no noise model from repeated runs
/// yet: one run per side).
pub const SAME_WITHIN: f64 = 0.01;

/// `better`, `worse` or `same` for `candidate` against `baseline`.
pub fn compare_mark(baseline: f64, candidate: f64, better: Better) -> &'static str {
    let scale = baseline.abs().max(candidate.abs());
    if scale == 0.0 || (candidate - baseline).abs() <= SAME_WITHIN * scale {
        return "same";
    }
    let improved = match better {
        Better::Lower => candidate < baseline,
        Better::Higher => candidate > baseline,
    };
    if improved { "better" } else { "worse" }
}

/// The page comparing outcomes; the first is the baseline of the deltas.
pub fn compare_page(outcomes: &[LoadedOutcome]) -> Result<String, LoadError> {
    assert!(outcomes.len() >= 2);
    let histograms: Vec<_> = outcomes.iter().map(LoadedOutcome::histograms).collect::<Result<_, _>>()?;
    let mut page = Page::new(format!("comparison of {} outcomes - edgeproof report", outcomes.len()));
    let failed = outcomes.iter().filter(|loaded| !loaded.outcome.passed()).count();
    let all_passed = failed == 0;
    let _ = write!(
        page.body,
        "<header><div class=\"verdict {}\" id=\"verdict\"><span class=\"word\">{}</span> <span class=\"what\">comparison of {} outcomes (baseline {}): {}</span></div>",
        verdict_class(all_passed),
        if all_passed { "PASS" } else { "FAIL" },
        outcomes.len(),
        escape(&outcomes[0].label),
        if all_passed { "every outcome passed".to_string() } else { format!("{failed} failed") }
    );
    // Checks side by side: one row per check name in first-seen order, one column per outcome.
    let mut names: Vec<String> = Vec::new();
    for loaded in outcomes {
        for check in &loaded.outcome.checks {
            if !names.contains(&check.name) {
                names.push(check.name.clone());
            }
        }
    }
    page.body.push_str("<table class=\"checks side\"><thead><tr><th>check</th>");
    for loaded in outcomes {
        let _ = write!(page.body, "<th>{}</th>", escape(&loaded.label));
    }
    page.body.push_str("</tr></thead><tbody>");
    for name in &names {
        let _ = write!(page.body, "<tr><td>{}</td>", escape(name));
        for loaded in outcomes {
            match loaded.outcome.checks.iter().find(|check| &check.name == name) {
                Some(check) => {
                    let _ = write!(
                        page.body,
                        "<td title=\"{}\"><span class=\"badge {}\">{}</span> {}</td>",
                        escape(&check.detail),
                        verdict_class(check.passed),
                        if check.passed { "pass" } else { "FAIL" },
                        escape(&check.detail.chars().take(60).collect::<String>())
                    );
                }
                None => page.body.push_str("<td>not run</td>"),
            }
        }
        page.body.push_str("</tr>");
    }
    page.body.push_str("</tbody></table></header>");
    // The runs.
    page.body.push_str("<section id=\"runs\"><h2>Runs</h2><table class=\"header side\"><thead><tr><th></th>");
    for loaded in outcomes {
        let _ = write!(page.body, "<th>{}</th>", escape(&loaded.label));
    }
    page.body.push_str("</tr></thead><tbody>");
    let rows: Vec<Vec<(&str, String)>> = outcomes.iter().map(|loaded| header_rows(&loaded.outcome)).collect();
    for (row_index, (key, _)) in rows[0].iter().enumerate() {
        let _ = write!(page.body, "<tr><th>{key}</th>");
        for row in &rows {
            let value = row.get(row_index).map_or("", |(_, value)| value.as_str());
            let _ = write!(page.body, "<td>{}</td>", escape(value));
        }
        page.body.push_str("</tr>");
    }
    page.body.push_str("</tbody></table></section>");
    // Deltas against the baseline.
    let metrics: Vec<(&str, Better, Vec<f64>)> = vec![
        (
            "latency p50 ms",
            Better::Lower,
            histograms.iter().map(|h| view::quantile_ms(&h.latency_us, 0.5)).collect(),
        ),
        (
            "latency p90 ms",
            Better::Lower,
            histograms.iter().map(|h| view::quantile_ms(&h.latency_us, 0.9)).collect(),
        ),
        (
            "latency p99 ms",
            Better::Lower,
            histograms.iter().map(|h| view::quantile_ms(&h.latency_us, 0.99)).collect(),
        ),
        (
            "latency p99.9 ms",
            Better::Lower,
            histograms.iter().map(|h| view::quantile_ms(&h.latency_us, 0.999)).collect(),
        ),
        (
            "latency max ms",
            Better::Lower,
            histograms.iter().map(|h| view::quantile_ms(&h.latency_us, 1.0)).collect(),
        ),
        ("delivered", Better::Higher, outcomes.iter().map(|l| l.outcome.counters.delivered as f64).collect()),
        ("lost", Better::Lower, outcomes.iter().map(|l| l.outcome.counters.lost as f64).collect()),
        (
            "duplicated",
            Better::Lower,
            outcomes.iter().map(|l| l.outcome.counters.duplicated as f64).collect(),
        ),
        (
            "unexpected",
            Better::Lower,
            outcomes.iter().map(|l| l.outcome.counters.unexpected as f64).collect(),
        ),
        (
            "failed publishes",
            Better::Lower,
            outcomes.iter().map(|l| l.outcome.counters.failed as f64).collect(),
        ),
        (
            "checks failed",
            Better::Lower,
            outcomes.iter().map(|l| l.outcome.checks.iter().filter(|c| !c.passed).count() as f64).collect(),
        ),
    ];
    page.body.push_str("<section id=\"deltas\"><h2>Deltas against the baseline</h2><table class=\"numbers deltas\"><thead><tr><th>metric</th>");
    for (index, loaded) in outcomes.iter().enumerate() {
        let role = if index == 0 { " (baseline)" } else { "" };
        let _ = write!(page.body, "<th>{}{role}</th>", escape(&loaded.label));
    }
    page.body.push_str("</tr></thead><tbody>");
    for (name, better, values) in &metrics {
        let _ = write!(page.body, "<tr><th>{name}</th><td>{}</td>", number(values[0]));
        for &value in &values[1..] {
            let mark = compare_mark(values[0], value, *better);
            let relative = if values[0] != 0.0 {
                format!(" ({:+.1}%)", 100.0 * (value - values[0]) / values[0].abs())
            } else {
                String::new()
            };
            let _ = write!(
                page.body,
                "<td class=\"{mark}\">{}{relative} <span class=\"mark\">{mark}</span></td>",
                number(value)
            );
        }
        page.body.push_str("</tr>");
    }
    let _ = write!(
        page.body,
        "</tbody></table><p class=\"note\">Changes within {:.0}% count as the same; one run per side gives no noise band, \
         so repeat runs before calling a small change.</p></section>",
        SAME_WITHIN * 100.0
    );
    page.body.push_str("<section id=\"latency\"><h2>Latency</h2>");
    page.body.push_str(LATENCY_HEAD);
    for (loaded, histogram) in outcomes.iter().zip(&histograms) {
        page.body.push_str(&latency_row(&loaded.label, &histogram.latency_us));
    }
    page.body.push_str("</tbody></table>");
    let views: Vec<(String, &Histogram<u64>, bool)> = outcomes
        .iter()
        .zip(&histograms)
        .map(|(loaded, histogram)| (loaded.label.clone(), &histogram.latency_us, false))
        .collect();
    page.chart(view::spectrum_chart("spectrum", "Percentile spectra (planned send -> delivery)", &views));
    page.body.push_str("</section>");
    Ok(page.finish())
}

/// The page of a sweep: many seeds of one scenario.
pub fn sweep_page(outcomes: &[LoadedOutcome]) -> Result<String, LoadError> {
    assert!(!outcomes.is_empty());
    let mut sorted: Vec<&LoadedOutcome> = outcomes.iter().collect();
    sorted.sort_by_key(|loaded| loaded.outcome.seed);
    let first = &sorted[0].outcome;
    let failing: Vec<&LoadedOutcome> =
        sorted.iter().copied().filter(|loaded| !loaded.outcome.passed()).collect();
    let mut merged = edgeproof_scenarios::latency::new_histogram();
    let mut merged_raw = edgeproof_scenarios::latency::new_histogram();
    let mut p99_by_seed = Vec::new();
    let mut lost_by_seed = Vec::new();
    for loaded in &sorted {
        let histograms = loaded.histograms()?;
        // Histograms add bucket by bucket: the sweep's percentiles are exact, never averaged.
        merged.add(&histograms.latency_us).expect("auto-resizing histograms always add");
        merged_raw.add(&histograms.latency_raw_us).expect("auto-resizing histograms always add");
        p99_by_seed.push((loaded.outcome.seed, view::quantile_ms(&histograms.latency_us, 0.99)));
        lost_by_seed.push((loaded.outcome.seed, loaded.outcome.counters.lost as f64));
    }
    let mut page =
        Page::new(format!("sweep of {} seeds of {} - edgeproof report", sorted.len(), first.scenario));
    let passed = failing.is_empty();
    let _ = write!(
        page.body,
        "<header><div class=\"verdict {}\" id=\"verdict\"><span class=\"word\">{}</span> <span class=\"what\">{} on {}: {} of {} seeds passed</span></div>",
        verdict_class(passed),
        if passed { "PASS" } else { "FAIL" },
        escape(&first.scenario),
        escape(&first.engine),
        sorted.len() - failing.len(),
        sorted.len()
    );
    if !failing.is_empty() {
        page.body.push_str("<h2>Failing seeds</h2><table class=\"checks\"><thead><tr><th>seed</th><th>failed checks</th><th>replay</th></tr></thead><tbody>");
        for loaded in failing.iter().take(TABLE_ROWS_LIMIT) {
            let failed: Vec<String> = loaded
                .outcome
                .checks
                .iter()
                .filter(|check| !check.passed)
                .map(|check| format!("<b>{}</b>: {}", escape(&check.name), escape(&check.detail)))
                .collect();
            let _ = write!(
                page.body,
                "<tr class=\"fail\"><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                loaded.outcome.seed,
                failed.join("<br>"),
                escape(&replay_command(&loaded.outcome).unwrap_or_default())
            );
        }
        page.body.push_str("</tbody></table>");
    }
    let _ = write!(
        page.body,
        "<table class=\"header\"><tbody><tr><th>scenario</th><td>{} ({})</td></tr><tr><th>engine</th><td>{}</td></tr>\
         <tr><th>commit</th><td>{}</td></tr><tr><th>seeds</th><td>{} .. {} ({} runs)</td></tr></tbody></table></header>",
        escape(&first.scenario),
        escape(&first.scenario_hash),
        escape(&first.engine),
        escape(first.commit.as_deref().unwrap_or("unknown")),
        first.seed,
        sorted[sorted.len() - 1].outcome.seed,
        sorted.len()
    );
    page.body.push_str("<section id=\"distributions\"><h2>Across seeds</h2>");
    page.chart(view::per_seed_chart(
        "lost-by-seed",
        "Lost acknowledged messages per seed",
        "lost",
        &lost_by_seed,
    ));
    page.chart(view::per_seed_chart(
        "p99-by-seed",
        "Latency p99 per seed (planned send)",
        "p99 ms",
        &p99_by_seed,
    ));
    page.body.push_str(LATENCY_HEAD);
    page.body.push_str(&latency_row("all seeds merged, planned send", &merged));
    page.body.push_str(&latency_row("all seeds merged, actual send", &merged_raw));
    page.body.push_str("</tbody></table>");
    page.chart(view::spectrum_chart(
        "spectrum",
        "Percentile spectrum, all seeds merged",
        &[
            ("planned send -> delivery".to_string(), &merged, false),
            ("actual send -> delivery".to_string(), &merged_raw, true),
        ],
    ));
    page.body.push_str("</section><section id=\"seeds\"><h2>Every seed</h2><table class=\"numbers\"><thead><tr><th>seed</th><th>verdict</th>\
        <th>delivered</th><th>lost</th><th>duplicated</th><th>p99 ms</th><th>max ms</th></tr></thead><tbody>");
    let p99: BTreeMap<u64, f64> = p99_by_seed.iter().copied().collect();
    for loaded in sorted.iter().take(TABLE_ROWS_LIMIT) {
        let outcome = &loaded.outcome;
        let _ = write!(
            page.body,
            "<tr class=\"{}\"><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            verdict_class(outcome.passed()),
            outcome.seed,
            verdict_class(outcome.passed()),
            verdict_word(outcome.verdict),
            outcome.counters.delivered,
            outcome.counters.lost,
            outcome.counters.duplicated,
            number(p99.get(&outcome.seed).copied().unwrap_or(0.0)),
            number(outcome.latency_ms.max)
        );
    }
    if sorted.len() > TABLE_ROWS_LIMIT {
        let _ = write!(
            page.body,
            "<tr><td colspan=\"7\">and {} more seeds</td></tr>",
            sorted.len() - TABLE_ROWS_LIMIT
        );
    }
    page.body.push_str("</tbody></table></section>");
    Ok(page.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(1_796_169_600 + 3_723), "2026-12-02 01:02:03 UTC");
    }

    #[test]
    fn comparison_marks_follow_the_direction_of_better() {
        assert_eq!(compare_mark(10.0, 12.0, Better::Lower), "worse");
        assert_eq!(compare_mark(10.0, 8.0, Better::Lower), "better");
        assert_eq!(compare_mark(10.0, 12.0, Better::Higher), "better");
        assert_eq!(compare_mark(10.0, 10.05, Better::Lower), "same");
        assert_eq!(compare_mark(0.0, 0.0, Better::Lower), "same");
        assert_eq!(compare_mark(0.0, 1.0, Better::Lower), "worse");
    }
}
