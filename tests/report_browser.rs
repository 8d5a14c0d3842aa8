//! The HTML reports in a real browser: real outcomes from the fast engine (scaled-down fleets),
//! `edgeproof report` run as a user runs it, and each page loaded from a file:// URL in headless
//! Chromium (Debian's `chromium`, which `scripts/test` installs).
//!
//! Chromium is driven through its own command line (`--dump-dom`, `--screenshot`) rather than a
//! WebDriver or DevTools crate: nothing to install beyond the browser, no driver version to keep
//! in step, and no async runtime in the test. What a driver would observe the page records itself
//! on `<body>` (charts drawn and their ink, script errors, fetches the CSP blocked, resources
//! loaded, whether the verdict is above the fold), and the dumped DOM carries it out. Screenshots
//! of every report stay in `target/tmp/report-artifacts/`. Takes about 10 s on 2 cores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgeproof_scenarios::catalog;
use edgeproof_scenarios::spec::Scenario;
use edgeproof_sim::fast::world::{FastOptions, run_fast};

fn artifacts() -> PathBuf {
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artifacts");
    std::fs::create_dir_all(&directory).expect("artifact directory");
    directory
}

fn small(name: &str, devices: u32) -> Scenario {
    let mut scenario = catalog::get(name).expect("catalogue scenario");
    for fleet in &mut scenario.fleets {
        fleet.count = devices;
    }
    scenario
}

/// Runs a scenario in the fast engine and writes `<dir>/<label>/outcome.json`.
fn write_outcome(dir: &Path, label: &str, scenario: &Scenario, seed: u64) -> PathBuf {
    let outcome = run_fast(scenario, seed, FastOptions::default()).expect("scenario runs");
    let directory = dir.join(label);
    std::fs::create_dir_all(&directory).expect("outcome directory");
    let path = directory.join("outcome.json");
    std::fs::write(&path, outcome.to_json()).expect("outcome written");
    path
}

fn edgeproof_report(arguments: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgeproof"));
    command.arg("report").args(arguments).arg("-o").arg(out).args(extra);
    command.output().expect("edgeproof runs")
}

fn chromium() -> String {
    let candidate = std::env::var("EDGEPROOF_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let found = Command::new(&candidate).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|output| output.status.success()),
        "headless Chromium ({candidate}) is needed: scripts/test installs Debian's `chromium`"
    );
    candidate
}

/// Chromium with the flags that keep it offline and quiet, in a fresh profile.
fn browser(page: &Path, size: &str, action: &str) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile directory");
    let url = format!("file://{}", page.canonicalize().expect("page exists").display());
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={size}"))
        .arg(action)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// What the page recorded about itself, from the `<body>` attributes of the dumped DOM.
#[derive(Debug)]
struct Observed {
    attributes: BTreeMap<String, String>,
    console_errors: Vec<String>,
}

impl Observed {
    fn get(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }

    fn number(&self, key: &str) -> usize {
        self.get(key).parse().unwrap_or_else(|_| panic!("{key} is not a number: {self:?}"))
    }
}

fn observe(page: &Path) -> Observed {
    let output = browser(page, "1280,900", "--dump-dom");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    let dom = String::from_utf8_lossy(&output.stdout);
    let start = dom.find("<body").expect("a body in the DOM");
    let tag = &dom[start..start + dom[start..].find('>').expect("body tag ends")];
    let mut attributes = BTreeMap::new();
    let mut rest = tag;
    while let Some(equals) = rest.find("=\"") {
        let name = rest[..equals].rsplit(' ').next().unwrap_or("").to_string();
        let value_start = equals + 2;
        let value_end = value_start + rest[value_start..].find('"').expect("attribute ends");
        let value = rest[value_start..value_end].replace("&quot;", "\"").replace("&amp;", "&");
        attributes.insert(name, value);
        rest = &rest[value_end + 1..];
    }
    // Chromium logs console messages as `CONSOLE(line)` or `Uncaught ...` lines on stderr.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let console_errors = stderr
        .lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    Observed { attributes, console_errors }
}

fn screenshot(page: &Path) -> PathBuf {
    let png = page.with_extension("png");
    let _ = std::fs::remove_file(&png);
    let output = browser(page, "1280,2400", &format!("--screenshot={}", png.display()));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "screenshot {} looks empty",
        png.display()
    );
    png
}

/// Everything a good report shows in the browser.
fn assert_good(page: &Path, charts_expected: usize) {
    let observed = observe(page);
    assert_eq!(observed.get("data-render"), "interactive", "{}: {observed:?}", page.display());
    assert_eq!(observed.get("data-errors"), "[]", "{}: {observed:?}", page.display());
    assert!(observed.console_errors.is_empty(), "{}: {observed:?}", page.display());
    assert_eq!(observed.get("data-blocked"), "[]", "{}: a fetch was attempted: {observed:?}", page.display());
    assert_eq!(observed.number("data-resources"), 0, "{}: {observed:?}", page.display());
    assert_eq!(observed.number("data-charts-expected"), charts_expected, "{}: {observed:?}", page.display());
    assert_eq!(observed.number("data-charts-rendered"), charts_expected, "{}: {observed:?}", page.display());
    assert_eq!(
        observed.number("data-charts-drawn"),
        charts_expected,
        "{}: a chart is empty: {observed:?}",
        page.display()
    );
    assert_eq!(observed.get("data-verdict-visible"), "true", "{}: {observed:?}", page.display());
    screenshot(page);
}

/// The static file itself: one document, every chart also as SVG, nothing referenced outside.
fn assert_self_contained(page: &Path) -> String {
    let html = std::fs::read_to_string(page).expect("report written");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("Content-Security-Policy"));
    for forbidden in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url(http"] {
        assert!(!html.contains(forbidden), "{} references the network: {forbidden}", page.display());
    }
    let figures = html.matches("<figure class=\"chart\"").count();
    assert!(figures > 0);
    assert!(html.matches("<svg").count() >= figures, "every chart has its static SVG");
    html
}

#[test]
fn run_comparison_and_sweep_reports_render_in_chromium() {
    let dir = tempfile::tempdir().expect("outcome directory");
    let out = artifacts();
    // A failing run with a crash and restart: the verdict, witnesses, replay command and shaded
    // fault spans.
    let crash = small("broker-crash", 100);
    let failing = write_outcome(dir.path(), "broker-crash-seed1", &crash, 1);
    let run_page = out.join("run.html");
    let output = edgeproof_report(&[&failing], &run_page, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Run of 1 outcome"));
    let html = assert_self_contained(&run_page);
    assert!(html.contains("<span class=\"word\">FAIL</span>"));
    assert!(html.contains("cargo run --release -- run broker-crash --seed 1 --engine fast"));
    assert!(html.contains("total-queue"));
    assert!(html.contains("data-chart=\"connections-over-time\""), "the fast engine records connections");
    assert_good(&run_page, 4);

    // A/B: the same fleet over a slower network.
    let fast_network = small("smoke", 100);
    let mut slow_network = fast_network.clone();
    slow_network.network.latency_ms.min = 20.0;
    slow_network.network.latency_ms.max = 40.0;
    let baseline = write_outcome(dir.path(), "smoke-lan", &fast_network, 1);
    let candidate = write_outcome(dir.path(), "smoke-wan", &slow_network, 1);
    let compare_page = out.join("compare.html");
    let output =
        edgeproof_report(&[&candidate], &compare_page, &["--baseline", baseline.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let html = assert_self_contained(&compare_page);
    assert!(html.contains("smoke-lan (baseline)"));
    assert!(html.contains("<span class=\"mark\">worse</span>"), "slower network, worse latency");
    assert_good(&compare_page, 1);

    // A sweep: a directory of seeds of one scenario.
    let sweep_dir = dir.path().join("sweep");
    for seed in 1..=4 {
        write_outcome(&sweep_dir, &format!("broker-crash-seed{seed}"), &crash, seed);
    }
    let sweep_page = out.join("sweep.html");
    let output = edgeproof_report(&[&sweep_dir], &sweep_page, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Sweep of 4 outcomes"));
    let html = assert_self_contained(&sweep_page);
    assert!(html.contains("of 4 seeds passed"));
    assert!(html.contains("--seed 4 --engine fast"));
    assert_good(&sweep_page, 3);
}

/// The browser checks catch what they exist to catch: a script error, a fetch, a chart that
/// drew nothing and a verdict below the fold, each planted in an otherwise good report.
#[test]
fn the_browser_checks_catch_planted_breakage() {
    let dir = tempfile::tempdir().expect("outcome directory");
    let out = artifacts();
    let outcome = write_outcome(dir.path(), "smoke", &small("smoke", 20), 1);
    let good = out.join("planted-base.html");
    assert!(edgeproof_report(&[&outcome], &good, &[]).status.success());
    let html = std::fs::read_to_string(&good).expect("report");

    // An error, an attempted fetch and a tall block that pushes the verdict off the screen.
    let planted = html.replacen(
        "<body data-render=\"static\">",
        "<body data-render=\"static\"><div style=\"height:2000px\"></div>\
         <img src=\"https://example.invalid/pixel.png\"><script>throw new Error('planted failure')</script>",
        1,
    );
    assert_ne!(planted, html);
    let broken = out.join("planted-broken.html");
    std::fs::write(&broken, planted).expect("planted page");
    let observed = observe(&broken);
    assert!(observed.get("data-errors").contains("planted failure"), "{observed:?}");
    assert_eq!(observed.get("data-render"), "error", "{observed:?}");
    assert!(observed.get("data-blocked").contains("example.invalid"), "{observed:?}");
    assert!(!observed.console_errors.is_empty(), "{observed:?}");
    assert_eq!(observed.get("data-verdict-visible"), "false", "{observed:?}");

    // A chart whose data is all gaps draws no ink: counted as rendered but not drawn.
    let data_start = html.find("\"values\":[").expect("chart data");
    let data_end = data_start + html[data_start..].find(']').expect("values end");
    let count = html[data_start + 10..data_end].split(',').count();
    let blank = vec!["null"; count].join(",");
    let mut emptied = html.clone();
    emptied.replace_range(data_start + 10..data_end, &blank);
    // The spectrum's second line too, so the chart has no line at all.
    let second_start = data_end + emptied[data_end..].find("\"values\":[").expect("second line");
    let second_end = second_start + emptied[second_start..].find(']').expect("values end");
    let second_count = emptied[second_start + 10..second_end].split(',').count();
    emptied.replace_range(second_start + 10..second_end, &vec!["null"; second_count].join(","));
    let empty = out.join("planted-empty.html");
    std::fs::write(&empty, emptied).expect("planted page");
    let observed = observe(&empty);
    assert_eq!(observed.get("data-errors"), "[]", "{observed:?}");
    assert_eq!(observed.number("data-charts-rendered"), 4, "{observed:?}");
    assert_eq!(observed.number("data-charts-drawn"), 3, "the emptied spectrum drew nothing: {observed:?}");
}

#[test]
fn a_truncated_outcome_is_a_clear_error_and_leaves_no_report() {
    let dir = tempfile::tempdir().expect("outcome directory");
    let outcome = write_outcome(dir.path(), "smoke", &small("smoke", 10), 1);
    let text = std::fs::read_to_string(&outcome).expect("outcome");
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("truncated copy");
    let report = dir.path().join("report.html");
    let output = edgeproof_report(&[&truncated], &report, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("truncated.json:") && stderr.contains("field `"), "{stderr}");
    assert!(!report.exists(), "no half-written report");
    // A wrong type names the field.
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, text.replacen("\"seed\": 1,", "\"seed\": \"one\",", 1)).expect("wrong copy");
    let output = edgeproof_report(&[&wrong], &report, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong.json:") && stderr.contains("field `seed`"), "{stderr}");
    assert!(!report.exists());
    // No stray temporary file beside the report either.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listing")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".report-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
