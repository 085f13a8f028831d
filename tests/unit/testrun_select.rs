//! Selection and ordering (pure): filters, priority among ready tests,
//! depends-on ordering and skipping, dependencies outside the selection,
//! cycles.

use std::path::PathBuf;

use cc_ci_run::cli::TestOptions;
use cc_ci_run::testrun::meta::{parse_header, Level, Tier};
use cc_ci_run::testrun::select::{select, Filter, Item, LeftOut, Scheduler, State};
use cc_ci_run::testrun::{filter_for, workers_for, TestCase};

fn case(name: &str, header: &str) -> TestCase {
    TestCase {
        name: name.into(),
        path: PathBuf::from(format!("/t/{name}")),
        file: format!("tests/{name}"),
        meta: parse_header(header).unwrap(),
    }
}

fn item(name: &str, priority: i64, deps: &[&str]) -> Item {
    Item {
        name: name.into(),
        priority,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

fn names(s: &Scheduler, order: &[usize]) -> Vec<String> {
    order.iter().map(|&i| s.name(i).to_string()).collect()
}

#[test]
fn slow_tests_are_left_out_unless_asked_for() {
    let tests = vec![case("a", ""), case("b", "# tags: slow, http\n")];
    let sel = select(&tests, &Filter::default());
    assert_eq!(sel.chosen, vec![0]);
    assert_eq!(sel.left_out, vec![(1, LeftOut::Slow)]);
    let slow = Filter {
        slow: true,
        ..Filter::default()
    };
    assert_eq!(select(&tests, &slow).chosen, vec![0, 1]);
    let by_tag = Filter {
        tags: vec!["slow".into()],
        ..Filter::default()
    };
    assert_eq!(select(&tests, &by_tag).chosen, vec![1]);
}

#[test]
fn tier_level_and_tag_filters() {
    let tests = vec![
        case("any", "# level: unit\n"),
        case(
            "install",
            "# tier: install\n# level: system\n# tags: http\n",
        ),
        case("restore", "# tier: restore\n# tags: db\n"),
    ];
    let f = |tier, level, tags: &[&str]| Filter {
        tier,
        level,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        slow: false,
    };
    assert_eq!(
        select(&tests, &f(Some(Tier::Install), None, &[])).chosen,
        vec![0, 1]
    );
    assert_eq!(
        select(&tests, &f(Some(Tier::Upgrade), None, &[])).chosen,
        vec![0]
    );
    assert_eq!(
        select(&tests, &f(None, Some(Level::System), &[])).chosen,
        vec![1]
    );
    assert_eq!(
        select(&tests, &f(None, None, &["db", "http"])).chosen,
        vec![1, 2]
    );
    let sel = select(&tests, &f(Some(Tier::Restore), Some(Level::Unit), &[]));
    assert_eq!(sel.chosen, vec![0]);
    assert_eq!(sel.left_out[0], (1, LeftOut::Tier(Tier::Restore)));
    assert_eq!(sel.left_out[1], (2, LeftOut::Level(Level::Unit)));
}

#[test]
fn higher_priority_first_among_ready_then_discovery_order() {
    let s = Scheduler::new(&[
        item("a", 0, &[]),
        item("b", 5, &[]),
        item("c", 0, &[]),
        item("d", 5, &[]),
    ])
    .unwrap();
    assert_eq!(names(&s, &s.planned_order()), ["b", "d", "a", "c"]);
}

#[test]
fn depends_on_orders_before_priority() {
    // `late` has the top priority but waits for `setup`, which waits for `base`.
    let s = Scheduler::new(&[
        item("late", 9, &["setup"]),
        item("setup", 0, &["base"]),
        item("base", 0, &[]),
        item("other", 1, &[]),
    ])
    .unwrap();
    assert_eq!(
        names(&s, &s.planned_order()),
        ["other", "base", "setup", "late"]
    );
}

#[test]
fn a_failed_dependency_skips_its_dependents_transitively_with_reasons() {
    let mut s = Scheduler::new(&[
        item("a", 0, &[]),
        item("b", 0, &["a"]),
        item("c", 0, &["b"]),
        item("d", 0, &[]),
    ])
    .unwrap();
    assert_eq!(s.next_ready(), Some(0));
    let skipped = s.finish(0, false);
    assert_eq!(
        skipped,
        vec![
            (1, "depends on `a`, which failed".to_string()),
            (2, "depends on `b`, which was skipped".to_string()),
        ]
    );
    assert_eq!(s.next_ready(), Some(3));
    assert_eq!(s.next_ready(), None);
    s.finish(3, true);
    assert!(s.is_done());
    assert_eq!(s.state(2), State::Skipped);
}

#[test]
fn a_dependency_outside_the_selection_orders_nothing_and_skips_nothing() {
    let mut s = Scheduler::new(&[item("x", 0, &["not-selected"]), item("y", 0, &[])]).unwrap();
    assert_eq!(s.next_ready(), Some(0));
    assert_eq!(s.next_ready(), Some(1));
    assert!(s.finish(0, false).is_empty());
}

#[test]
fn parallel_scheduling_hands_out_every_ready_test() {
    let mut s = Scheduler::new(&[
        item("a", 0, &[]),
        item("b", 0, &[]),
        item("c", 0, &["a", "b"]),
    ])
    .unwrap();
    assert_eq!(
        (s.next_ready(), s.next_ready(), s.next_ready()),
        (Some(0), Some(1), None)
    );
    s.finish(1, true);
    assert_eq!(s.next_ready(), None, "c still waits for a");
    s.finish(0, true);
    assert_eq!(s.next_ready(), Some(2));
}

#[test]
fn passed_earlier_satisfies_dependents_and_is_not_run() {
    let mut s = Scheduler::new(&[item("a", 0, &[]), item("b", 0, &["a"])]).unwrap();
    s.passed_earlier(0);
    assert_eq!(s.next_ready(), Some(1));
    assert_eq!(s.next_ready(), None);
}

#[test]
fn skip_pending_stops_everything_not_started() {
    let mut s = Scheduler::new(&[item("a", 0, &[]), item("b", 0, &[]), item("c", 0, &[])]).unwrap();
    assert_eq!(s.next_ready(), Some(0));
    assert_eq!(s.skip_pending(), vec![1, 2]);
    assert!(!s.is_done());
    s.finish(0, true);
    assert!(s.is_done());
}

#[test]
fn dependency_cycle_is_an_error_that_names_it() {
    let e = Scheduler::new(&[
        item("a", 0, &["c"]),
        item("b", 0, &["a"]),
        item("c", 0, &["b"]),
        item("d", 0, &[]),
    ])
    .unwrap_err();
    assert_eq!(e.cycle.len(), 4, "{e}");
    assert_eq!(e.cycle.first(), e.cycle.last());
    assert!(e.to_string().starts_with("depends-on cycle: "));
    let self_dep = Scheduler::new(&[item("a", 0, &["a"])]).unwrap_err();
    assert_eq!(self_dep.cycle, vec!["a".to_string(), "a".to_string()]);
}

#[test]
fn options_are_validated_into_a_filter() {
    let mut o = TestOptions {
        level: Some("integration".into()),
        tags: vec!["http".into(), " ".into()],
        ..TestOptions::default()
    };
    let f = filter_for(Some("upgrade"), &o).unwrap();
    assert_eq!(f.tier, Some(Tier::Upgrade));
    assert_eq!(f.level, Some(Level::Integration));
    assert_eq!(f.tags, vec!["http".to_string()]);
    let e = filter_for(Some("deploy"), &o).unwrap_err();
    assert_eq!(cc_ci_run::exit::code_for(&e), 2);
    o.level = Some("big".into());
    assert_eq!(
        cc_ci_run::exit::code_for(&filter_for(None, &o).unwrap_err()),
        2
    );
}

#[test]
fn workers_default_to_cores_minus_one_and_at_least_one() {
    let mut o = TestOptions::default();
    assert_eq!(
        workers_for(&o, 8).unwrap(),
        1,
        "sequential unless --parallel"
    );
    o.parallel = true;
    assert_eq!(workers_for(&o, 8).unwrap(), 7);
    assert_eq!(workers_for(&o, 1).unwrap(), 1);
    o.max_workers = Some(3);
    assert_eq!(workers_for(&o, 2).unwrap(), 3);
    o.max_workers = Some(0);
    assert!(workers_for(&o, 2).is_err());
}
