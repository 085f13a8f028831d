//! The metrics file's size for scripts/bench-views.sh: the file rendered
//! from N finished runs over R recipes (every verdict in turn, each with a
//! lock wait) and a sweep, as the tally would hold them. Prints the bytes,
//! the lines and the samples.

use cc_ci_run::rundir::{LockTimes, RunRecord};
use cc_ci_run::verdict::Verdict;
use cc_ci_run::views::metrics::{render, HeldLocks, Tally};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    let recipes: usize = args.next().unwrap_or_else(|| "20".into()).parse()?;
    let records: Vec<RunRecord> = (0..n)
        .map(|i| {
            let recipe = format!("recipe{:02}", i % recipes.max(1));
            let domain = format!("{recipe}.ci.example.org");
            RunRecord {
                run_id: format!("drone-coop-cloud-{recipe}-{i}"),
                recipe,
                started: "2026-12-01T10:00:00.000Z".into(),
                finished: Some("2026-12-01T10:05:00.000Z".into()),
                verdict: Some(Verdict::ALL[i % Verdict::ALL.len()]),
                lock: Some(LockTimes {
                    domain: domain.clone(),
                    backend: "flock".into(),
                    requested: "2026-12-01T10:00:00.000Z".into(),
                    wait_ms: Some((i as u64 % 7) * 1000),
                    ..LockTimes::default()
                }),
                domain,
                ..RunRecord::default()
            }
        })
        .collect();
    let mut tally = Tally::seed(&records);
    tally.add_sweep(3, 0, std::time::SystemTime::now());
    let text = render(&tally, HeldLocks::default());
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "metrics file after {n} runs over {recipes} recipes: {} bytes, {} lines, {samples} samples",
        text.len(),
        text.lines().count()
    );
    Ok(())
}
