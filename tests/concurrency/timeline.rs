//! `timeline` over a state directory built by real runs: two runs on one
//! app domain (the second waiting behind the first, which is cancelled),
//! one failing on another domain. The page is parsed back: one bar per run
//! in time order, the waiting run's bar starting at its lock request and
//! its held part after the first run's release; CCCI_TIMELINE_FILE is
//! refreshed by every run.

use crate::support::*;
use crate::timeline_page::parse;

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

    // The page every run refreshed, and the one `timeline --out` writes.
    let out = f.tmp.path().join("t.html");
    let w = f
        .cmd()
        .args(["timeline", "--since", "1h", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(code(w.status), 0, "{}", String::from_utf8_lossy(&w.stderr));
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
    // A bad page setting is exit 2 naming the variable.
    let bad = f
        .run_cmd(&["--pr", "1", "--quick"])
        .env("CCCI_TIMELINE_FILE", "relative.html")
        .output()
        .unwrap();
    assert_eq!(code(bad.status), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("CCCI_TIMELINE_FILE"));
}
