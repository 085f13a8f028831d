//! The timeline page, parsed back as XML: bars per run, the wait segment,
//! hover titles, escaping, time order, and nothing fetched or scripted.

use std::time::{Duration, SystemTime};

use cc_ci_run::log::parse_timestamp;
use cc_ci_run::phase::Phase;
use cc_ci_run::rundir::{LockTimes, PhaseSpan, RunRecord};
use cc_ci_run::testrun::meta::Tier;
use cc_ci_run::verdict::Verdict;
use cc_ci_run::views::timeline::{render, Zone};

use crate::timeline_page::parse;

fn t(s: u32) -> String {
    format!("2026-12-01T10:{:02}:{:02}.000Z", s / 60, s % 60)
}

/// A finished run: lock asked at `req`, got at `acq`, given back at `rel`
/// (seconds after 10:00 UTC); two phases inside the hold.
fn run(
    id: &str,
    recipe: &str,
    domain: &str,
    verdict: &str,
    req: u32,
    acq: u32,
    rel: u32,
) -> RunRecord {
    let mid = (acq + rel) / 2;
    RunRecord {
        run_id: id.into(),
        recipe: recipe.into(),
        git_ref: "main".into(),
        domain: domain.into(),
        started: t(req.saturating_sub(1)),
        finished: Some(t(rel + 1)),
        exit_code: Some(if verdict == "passed" { 0 } else { 1 }),
        verdict: Some(Verdict::parse(verdict).unwrap()),
        failed_phase: (verdict != "passed").then_some(Phase::Test(Tier::Install)),
        phases: vec![
            PhaseSpan {
                name: Phase::Install,
                started: t(acq),
                ended: Some(t(mid)),
                duration_ms: Some(u64::from(mid - acq) * 1000),
            },
            PhaseSpan {
                name: Phase::Test(Tier::Install),
                started: t(mid),
                ended: Some(t(rel)),
                duration_ms: Some(u64::from(rel - mid) * 1000),
            },
        ],
        lock: Some(LockTimes {
            domain: domain.into(),
            backend: "flock".into(),
            requested: t(req),
            acquired: Some(t(acq)),
            released: Some(t(rel)),
            wait_ms: Some(u64::from(acq - req) * 1000),
        }),
        ..RunRecord::default()
    }
}

fn now() -> SystemTime {
    parse_timestamp("2026-12-01T11:00:00.000Z").unwrap()
}

fn zone() -> Zone {
    Zone::fixed("CET", 3600)
}

#[test]
fn one_bar_per_run_in_time_order_with_the_wait_before_the_hold() {
    // b waits behind a on the same domain; c on another domain, no wait.
    let records = vec![
        run("b-2", "gitea", "gitea.ci.localhost", "failed", 30, 100, 160),
        run("a-1", "gitea", "gitea.ci.localhost", "passed", 10, 10, 100),
        run("c-1", "wiki", "wiki.ci.localhost", "passed", 40, 40, 90),
    ];
    let html = render(&records, now(), &zone(), Duration::from_secs(24 * 3600));
    let p = parse(&html);
    assert_eq!(p.runs, ["a-1", "b-2", "c-1"], "one group per run, by start");
    assert!(
        p.first_x.windows(2).all(|w| w[0] <= w[1]),
        "{:?}",
        p.first_x
    );
    assert_eq!(p.has_wait, [false, true, false]);
    // b's held part starts where a's bar ends (a's release), after its wait.
    let a_end = p.held_x[0].unwrap();
    let b_wait_end = p.wait_x_end[1].unwrap();
    let b_held = p.held_x[1].unwrap();
    assert!(
        (b_wait_end - b_held).abs() < 0.2,
        "{b_wait_end} vs {b_held}"
    );
    assert!(b_held > a_end);
    assert!(p.first_x[1] < b_held, "b's bar starts at its request");
}

#[test]
fn titles_name_run_recipe_ref_verdict_failed_phase_and_durations() {
    let records = vec![run(
        "b-2",
        "gitea",
        "gitea.ci.localhost",
        "failed",
        30,
        100,
        160,
    )];
    let p = parse(&render(
        &records,
        now(),
        &zone(),
        Duration::from_secs(86_400),
    ));
    let title = &p.titles[0];
    for part in [
        "run b-2",
        "recipe gitea at main",
        "verdict failed",
        "failed phase test-install",
        "waited 1m10s",
        "held it 1m00s",
        "install 30.0s",
    ] {
        assert!(title.contains(part), "{part:?} missing from {title:?}");
    }
    // The verdict is also written out, not only coloured.
    assert!(p.texts.iter().any(|t| t == "failed"));
}

#[test]
fn recipe_and_ref_are_escaped() {
    let mut r = run("x-1", "a<b&c\"d", "x.ci.localhost", "passed", 10, 10, 50);
    r.git_ref = "refs/<pull>&\"1\"".into();
    let html = render(&[r], now(), &zone(), Duration::from_secs(86_400));
    assert!(!html.contains("a<b"), "raw < in the page");
    let p = parse(&html);
    assert!(
        p.titles[0].contains("recipe a<b&c\"d at refs/<pull>&\"1\""),
        "{:?}",
        p.titles[0]
    );
    assert!(p.texts.iter().any(|t| t == "a<b&c\"d") || p.texts.join("").contains("a<b&c\"d"));
}

#[test]
fn no_script_and_no_url_but_the_svg_namespace() {
    let records = vec![run("a-1", "gitea", "g.ci.localhost", "passed", 10, 10, 100)];
    let html = render(&records, now(), &zone(), Duration::from_secs(86_400));
    assert!(!html.to_lowercase().contains("<script"));
    assert!(!html.contains("@import") && !html.contains("url(http"));
    let rest = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !rest.contains("http:") && !rest.contains("https:"),
        "a URL in the page"
    );
    assert!(!rest.contains("//"), "a protocol-relative URL in the page");
}

#[test]
fn the_axis_names_the_time_zone_and_ticks_in_local_time() {
    let records = vec![run("a-1", "gitea", "g.ci.localhost", "passed", 0, 0, 600)];
    let p = parse(&render(
        &records,
        now(),
        &zone(),
        Duration::from_secs(86_400),
    ));
    assert!(p.texts.iter().any(|t| t.contains("CET (UTC+01:00)")));
    // 10:00 UTC is 11:00 CET: a tick at 11:05 (5 min step) exists.
    assert!(p.texts.iter().any(|t| t == "11:05"), "{:?}", p.texts);
}

/// The ticks of the page's top axis: (x, label), in document order.
fn ticks(html: &str) -> Vec<(f64, String)> {
    let re = regex::Regex::new(r#"<text class="tick" x="([0-9.]+)" y="([0-9.]+)">([^<]*)</text>"#)
        .unwrap();
    let mut out: Vec<(f64, f64, String)> = re
        .captures_iter(html)
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c[3].to_string(),
            )
        })
        .collect();
    // Each tick is written above and below the rows: keep the top one.
    let top = out.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    out.retain(|t| t.1 == top);
    out.into_iter().map(|(x, _, l)| (x, l)).collect()
}

#[test]
fn a_daylight_saving_change_inside_the_window_moves_the_axis_with_it() {
    // Europe's autumn change: 2026-10-25 01:00 UTC, 03:00 CEST becomes
    // 02:00 CET. Two runs of six hours around it, drawn the next day.
    let at = |s: &str| parse_timestamp(s).unwrap();
    let zone = Zone::fixed("CEST", 7200).then(at("2026-10-25T01:00:00.000Z"), "CET", 3600);
    let mut before = run("before-1", "gitea", "g.ci.localhost", "passed", 0, 0, 60);
    let mut after = run("after-1", "gitea", "g.ci.localhost", "passed", 0, 0, 60);
    for (r, start, end) in [
        (
            &mut before,
            "2026-10-24T22:30:00.000Z",
            "2026-10-24T23:30:00.000Z",
        ),
        (
            &mut after,
            "2026-10-25T02:30:00.000Z",
            "2026-10-25T04:00:00.000Z",
        ),
    ] {
        r.started = start.into();
        r.finished = Some(end.into());
        r.phases.clear();
        let l = r.lock.as_mut().unwrap();
        l.requested = start.into();
        l.acquired = Some(start.into());
        l.released = Some(end.into());
        l.wait_ms = Some(0);
    }
    let html = render(
        &[before, after],
        at("2026-10-25T12:00:00.000Z"),
        &zone,
        Duration::from_secs(86_400),
    );
    let p = parse(&html);
    // Each start in the offset of its own moment.
    assert!(
        p.texts.iter().any(|t| t == "2026-10-25 00:30:00"),
        "{:?}",
        p.texts
    );
    assert!(
        p.texts.iter().any(|t| t == "2026-10-25 03:30:00"),
        "{:?}",
        p.texts
    );
    // The axis names both offsets and when the second begins.
    assert!(
        p.texts
            .iter()
            .any(|t| t == "time: CEST (UTC+02:00), CET (UTC+01:00) from 10-25 02:00"),
        "{:?}",
        p.texts
    );
    // Hourly ticks on local hours (all on the 25th, so no date): 01:00 and
    // 02:00 CEST, then 02:00 CET
    // again (the repeated hour) and on; one hour apart in UTC throughout.
    let ticks = ticks(&html);
    let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
    let i = labels
        .iter()
        .position(|l| *l == "01:00")
        .unwrap_or_else(|| panic!("{labels:?}"));
    assert_eq!(
        labels[i..i + 4],
        ["01:00", "02:00", "02:00", "03:00"],
        "{labels:?}"
    );
    let gaps: Vec<f64> = ticks.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().all(|g| (g - gaps[0]).abs() < 0.5),
        "ticks not evenly spaced in UTC: {ticks:?}"
    );
}

#[test]
fn a_fixed_zone_has_one_label_and_no_change() {
    let zone = Zone::fixed("CET", 3600);
    let t = parse_timestamp("2026-12-01T10:00:00.000Z").unwrap();
    assert_eq!(
        zone.label_between(t, t + Duration::from_secs(86_400)),
        "CET (UTC+01:00)"
    );
    assert_eq!(
        Zone::utc().label_between(t, t + Duration::from_secs(60)),
        "UTC (UTC+00:00)"
    );
}

#[test]
fn runs_outside_the_window_are_left_out_and_a_running_one_reaches_now() {
    let old = run("old-1", "gitea", "g.ci.localhost", "passed", 0, 0, 60);
    let mut live = run("live-1", "gitea", "g.ci.localhost", "passed", 100, 100, 200);
    live.finished = None;
    live.verdict = None;
    live.lock.as_mut().unwrap().released = None;
    let p = parse(&render(
        &[old, live],
        now(),
        &zone(),
        Duration::from_secs(30 * 60),
    ));
    assert_eq!(p.runs, ["live-1"]);
    assert!(p.titles[0].contains("verdict running"));
}

#[test]
fn a_run_that_never_got_the_lock_is_all_wait() {
    let mut r = run("w-1", "gitea", "g.ci.localhost", "deadline", 10, 10, 100);
    let l = r.lock.as_mut().unwrap();
    l.acquired = None;
    l.released = None;
    r.phases.clear();
    let p = parse(&render(&[r], now(), &zone(), Duration::from_secs(86_400)));
    assert_eq!(p.has_wait, [true]);
    assert_eq!(p.held_x, [None]);
    assert!(p.titles[0].contains("never got the lock"));
}

#[test]
fn two_hundred_runs_over_twenty_domains_fit_1280_px() {
    let mut records = Vec::new();
    for i in 0..200u32 {
        let d = format!("recipe{:02}-lane.ci.localhost", i % 20);
        let base = (i / 20) * 300;
        records.push(run(
            &format!("r-{i}"),
            "r",
            &d,
            "passed",
            base,
            base + i % 3,
            base + 200,
        ));
    }
    let html = render(&records, now(), &zone(), Duration::from_secs(86_400));
    let p = parse(&html);
    assert_eq!(p.runs.len(), 200);
    assert!(html.contains(r#"width="1280""#));
    for x in &p.first_x {
        assert!((0.0..=1280.0).contains(x));
    }
}

#[test]
fn artifact_links_are_relative_to_the_pages_directory_and_percent_encoded() {
    use cc_ci_run::views::timeline::{href, relative_to};
    use std::path::Path;
    let table = [
        (
            "/state",
            "/state/runs/r/report/artifacts/install/a.png",
            "runs/r/report/artifacts/install/a.png",
        ),
        (
            "/var/www",
            "/state/runs/r/a.png",
            "../../state/runs/r/a.png",
        ),
        ("/state/./x/..", "/state/runs/a.png", "runs/a.png"),
        ("/", "/state/a.png", "state/a.png"),
    ];
    for (base, target, want) in table {
        assert_eq!(
            relative_to(Path::new(base), Path::new(target)),
            Path::new(want),
            "{base} {target}"
        );
    }
    assert_eq!(href(Path::new("a b/#1?%.png")), "a%20b/%231%3F%25.png");
    assert_eq!(href(Path::new("../x/ü.png")), "../x/%C3%BC.png");
}

/// The rows of the older runs' table: (domain, runs, verdicts).
fn older_rows(html: &str) -> Vec<(String, usize, String)> {
    let Some((_, rest)) = html.split_once(r#"<table class="older">"#) else {
        return Vec::new();
    };
    let body = rest.split("</table>").next().unwrap();
    body.split("<tr><td>")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split("</td><td>").collect();
            (
                cells[0].to_string(),
                cells[1].parse().unwrap(),
                cells[2].to_string(),
            )
        })
        .collect()
}

/// A busy host's day: 10,000 runs over 20 domains, every 7th failed.
fn ten_thousand() -> Vec<RunRecord> {
    (0..10_000u32)
        .map(|i| {
            let req = i * 359 / 1000;
            let verdict = if i % 7 == 0 { "failed" } else { "passed" };
            run(
                &format!("r-{i:05}"),
                "r",
                &format!("recipe{:02}-lane.ci.localhost", i % 20),
                verdict,
                req,
                req,
                req + 5,
            )
        })
        .collect()
}

#[test]
fn ten_thousand_runs_draw_the_newest_limit_and_count_the_rest_per_domain_under_1_mb() {
    use cc_ci_run::views::timeline::DEFAULT_LIMIT;
    let records = ten_thousand();
    let html = render(&records, now(), &zone(), Duration::from_secs(86_400));
    assert!(html.len() < 1_000_000, "page of {} bytes", html.len());
    let p = parse(&html);
    let newest: Vec<String> = (10_000 - DEFAULT_LIMIT as u32..10_000)
        .map(|i| format!("r-{i:05}"))
        .collect();
    assert_eq!(p.runs, newest, "the newest {DEFAULT_LIMIT}, in time order");
    let rows = older_rows(&html);
    assert_eq!(rows.len(), 20, "one row per domain");
    assert_eq!(
        rows.iter().map(|r| r.1).sum::<usize>(),
        10_000 - DEFAULT_LIMIT
    );
    // Domain 00 holds i = 0, 20, 40, ...: its older runs are i < 9500.
    let (domain, n, verdicts) = &rows[0];
    assert_eq!(domain, "recipe00-lane.ci.localhost");
    let older: Vec<u32> = (0..10_000 - DEFAULT_LIMIT as u32)
        .filter(|i| i % 20 == 0)
        .collect();
    let failed = older.iter().filter(|i| *i % 7 == 0).count();
    assert_eq!(*n, older.len());
    assert_eq!(
        verdicts,
        &format!("{} passed, {failed} failed", older.len() - failed)
    );
    assert!(html.contains(&format!(
        "The newest {DEFAULT_LIMIT} are drawn; {} older run(s)",
        10_000 - DEFAULT_LIMIT
    )));
}

#[test]
fn a_window_within_the_limit_draws_every_run_and_counts_none() {
    use cc_ci_run::views::timeline::{render_in, Window};
    let records: Vec<RunRecord> = ten_thousand().into_iter().take(300).collect();
    let page = |limit| {
        let window = Window::new(Duration::from_secs(86_400), limit);
        render_in(&records, now(), &zone(), window, None)
    };
    let html = page(300);
    assert_eq!(parse(&html).runs.len(), 300);
    assert!(older_rows(&html).is_empty());
    assert!(!html.contains("older run(s)"));
    let html = page(299);
    assert_eq!(parse(&html).runs.len(), 299);
    assert_eq!(
        older_rows(&html),
        vec![(
            "recipe00-lane.ci.localhost".to_string(),
            1,
            "1 failed".to_string()
        )]
    );
}
