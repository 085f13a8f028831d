//! `timeline` over a state directory built by real runs: two runs on one
//! app domain (the second waiting behind the first, which is cancelled),
//! one failing on another domain. The page is parsed back: one bar per run
//! in time order, the waiting run's bar starting at its lock request and
//! its held part after the first run's release; CCCI_TIMELINE_FILE is
//! refreshed by every run.

use std::path::Path;

use crate::support::*;
use crate::timeline_page::parse;

/// The verdict colours the page draws bars in (src/views/timeline.rs).
const PASSED: [u8; 3] = [0x00, 0x9E, 0x73];
const FAILED: [u8; 3] = [0xD5, 0x5E, 0x00];
const CANCELLED: [u8; 3] = [0x56, 0xB4, 0xE9];

/// Takes a screenshot of `page` in headless Chromium (Debian's
/// `chromium`, which `.ci/run` installs and asks for by setting
/// `CCCI_DEV_TIMELINE_SCREENSHOT` to the PNG to write) in a 1280 px wide
/// window, keeps the page beside it, and decodes the PNG: as wide as the
/// window, and each verdict's bar drawn in its colour.
fn screenshot(page: &Path, png: &Path) {
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    std::fs::copy(page, png.with_extension("html")).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,720",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian's chromium package) runs");
    assert!(
        out.status.success() && png.is_file(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width, 1280, "the window's width");
    let step = info.color_type.samples();
    assert!(step >= 3, "an RGB screenshot: {:?}", info.color_type);
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks_exact(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    for (verdict, colour) in [
        ("passed", PASSED),
        ("failed", FAILED),
        ("cancelled", CANCELLED),
    ] {
        let n = pixels.iter().filter(|p| **p == colour).count();
        // A bar is at least a few pixels high and wide; the legend's
        // swatch alone is 28x14.
        assert!(
            n > 28 * 14,
            "{verdict}'s colour covers {n} px of {}",
            png.display()
        );
    }
}

#[test]
fn timeline_of_real_runs_shows_the_wait_behind_the_holder() {
    let f = Fixture::new();
    let page = f.tmp.path().join("www/timeline.html");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    let run = |id: &str, extra: &[&str]| {
        let mut args = vec!["--pr", "1", "--quick"];
        args.extend(extra);
        let mut c = f.run_cmd(&args);
        c.env("CCCI_RUN_ID", id)
            .env("CCCI_TIMELINE_FILE", &page)
            .stderr(std::process::Stdio::null());
        c
    };
    // A holds the domain, paused in its tests; B asks for it and waits.
    let mut a = run("tl-a", &[])
        .env("CCCI_EXAMPLE_HANG", "install")
        .spawn()
        .unwrap();
    let mut guard = KillOnPanic(vec![a.id() as i32]);
    wait_for_file(&f.ready.join("test-install"));
    let mut b = run("tl-b", &[]).spawn().unwrap();
    guard.add(b.id() as i32);
    wait_until("run B waiting for the app lock", || {
        std::fs::read_to_string(f.state.join("runs/tl-b/run.json"))
            .is_ok_and(|t| t.contains("\"phase\": \"lock\""))
    });
    send(a.id() as i32, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(wait_exit(&mut a), 143);
    // A's refresh already drew B, still waiting.
    let mid = parse(&std::fs::read_to_string(&page).unwrap());
    assert!(mid.runs.contains(&"tl-a".to_string()), "{:?}", mid.runs);
    assert_eq!(wait_exit(&mut b), 0);
    let mut c = run("tl-c", &["--domain", "example-tlc.ci.localhost"])
        .env("CCCI_EXAMPLE_FAIL", "install")
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut c), 1);
    guard.0.clear();

    // `timeline ARGS --out NAME` in the fixture's directory: its exit code
    // and stderr, and the page's path.
    let timeline = |args: &[&str], name: &str| {
        let out = f.tmp.path().join(name);
        let w = f
            .cmd()
            .arg("timeline")
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (
            code(w.status),
            String::from_utf8_lossy(&w.stderr).into_owned(),
            out,
        )
    };
    // The page every run refreshed, and the one `timeline --out` writes.
    let (c, err, out) = timeline(&["--since", "1h"], "t.html");
    assert_eq!(c, 0, "{err}");
    for html in [
        std::fs::read_to_string(&page).unwrap(),
        std::fs::read_to_string(&out).unwrap(),
    ] {
        let p = parse(&html);
        assert_eq!(
            p.runs,
            ["tl-a", "tl-b", "tl-c"],
            "one bar per run, by start"
        );
        assert!(
            p.first_x.windows(2).all(|w| w[0] <= w[1]),
            "{:?}",
            p.first_x
        );
        assert!(p.has_wait[1], "B waited");
        let (a_end, b_start, b_held) = (p.end_x[0], p.first_x[1], p.held_x[1].unwrap());
        assert!(
            b_start < a_end,
            "B asked while A held: {b_start} vs {a_end}"
        );
        assert!(
            b_held >= a_end - 0.2,
            "B held from {b_held}, A released at {a_end}"
        );
        assert!(p.titles[0].contains("verdict cancelled"), "{}", p.titles[0]);
        assert!(p.titles[1].contains("verdict passed"));
        assert!(
            p.titles[2].contains("verdict failed")
                && p.titles[2].contains("failed phase test-install")
        );
        assert!(!html.contains("<script"));
    }
    if let Some(png) = std::env::var_os("CCCI_DEV_TIMELINE_SCREENSHOT") {
        screenshot(&out, std::path::Path::new(&png));
    }
    // `--limit 2` draws the newest two and counts A on its domain.
    let (c, err, limited) = timeline(&["--since", "1h", "--limit", "2"], "limited.html");
    assert_eq!(c, 0, "{err}");
    let html = std::fs::read_to_string(&limited).unwrap();
    assert_eq!(parse(&html).runs, ["tl-b", "tl-c"]);
    let older = html.split_once(r#"<table class="older">"#).unwrap().1;
    assert!(
        older.contains("<tr><td>example-pr1.ci.localhost</td><td>1</td><td>1 cancelled</td>"),
        "{older}"
    );
    // `--limit 0` is exit 2 naming the flag and its range, and writes nothing.
    let (c, err, zero) = timeline(&["--limit", "0"], "zero.html");
    assert_eq!(c, 2);
    assert!(err.contains("--limit") && err.contains("1..="), "{err}");
    assert!(!zero.exists());
    // A bad page setting is exit 2 naming the variable.
    let bad = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_TIMELINE_FILE", "relative.html")
        .output()
        .unwrap();
    assert_eq!(code(bad.status), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CCCI_TIMELINE_FILE"));
}

/// A record of a finished run on `domain` that held its lock from `start`
/// to `end`, as `run` writes it.
fn write_record(state: &Path, id: &str, domain: &str, start: &str, end: &str) {
    let rec = cc_ci_run::rundir::RunRecord {
        run_id: id.into(),
        recipe: "example".into(),
        git_ref: "main".into(),
        domain: domain.into(),
        started: start.into(),
        finished: Some(end.into()),
        exit_code: Some(0),
        verdict: Some(cc_ci_run::verdict::Verdict::Passed),
        lock: Some(cc_ci_run::rundir::LockTimes {
            domain: domain.into(),
            backend: "flock".into(),
            requested: start.into(),
            acquired: Some(start.into()),
            released: Some(end.into()),
            wait_ms: Some(0),
        }),
        ..Default::default()
    };
    let dir = state.join("runs").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
}

#[test]
fn a_page_over_a_daylight_saving_change_writes_each_time_in_its_own_offset() {
    // The process's zone from TZ, a POSIX rule (no zoneinfo files needed):
    // CET, with CEST from the last Sunday of March to that of October. One
    // run in July, one in December, and a window that holds both.
    let tmp = tempdir();
    let state = tmp.path().join("state");
    write_record(
        &state,
        "summer-1",
        "example-a.ci.localhost",
        "2026-07-01T12:00:00.000Z",
        "2026-07-01T12:10:00.000Z",
    );
    write_record(
        &state,
        "winter-1",
        "example-a.ci.localhost",
        "2026-12-01T12:00:00.000Z",
        "2026-12-01T12:10:00.000Z",
    );
    let since_july = std::time::SystemTime::now()
        .duration_since(cc_ci_run::log::parse_timestamp("2026-06-30T00:00:00.000Z").unwrap())
        .unwrap()
        .as_secs()
        / 86_400
        + 1;
    let out = tmp.path().join("t.html");
    let w = ccci()
        .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
        .arg("--state-dir")
        .arg(&state)
        .args(["timeline", "--since", &format!("{since_july}d"), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(code(w.status), 0, "{}", String::from_utf8_lossy(&w.stderr));
    let p = parse(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(p.runs, ["summer-1", "winter-1"]);
    // 12:00 UTC is 14:00 in July (CEST) and 13:00 in December (CET).
    for want in ["2026-07-01 14:00:00", "2026-12-01 13:00:00"] {
        assert!(
            p.texts.iter().any(|t| t == want),
            "{want} not in {:?}",
            p.texts
        );
    }
    let zone_line = p
        .texts
        .iter()
        .find(|t| t.starts_with("time: "))
        .expect("the axis names its zone");
    assert_eq!(
        zone_line,
        "time: CEST (UTC+02:00), CET (UTC+01:00) from 10-25 02:00"
    );
}
