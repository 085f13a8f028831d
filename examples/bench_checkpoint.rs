//! Checkpoint write cost per passed test, for scripts/bench-testrun.sh.
//!
//! `bench_checkpoint DIR [N]` prints the mean and the median, in
//! microseconds, of N journal appends (what the runner does on its own
//! thread when a test passes: one `write(2)` of a line to an `O_APPEND`
//! file).
//!
//! `bench_checkpoint DIR [N] compare` measures, side by side in one
//! process on the same disk, the journal against the checkpoint of the
//! earlier release (the whole JSON rewritten per pass: one write of a
//! temporary file, fdatasync, rename; done on a writer thread, at most
//! every 50 ms) and prints a table: per pass, the write of each, and the
//! fdatasync the journal pays once at the end of a tier.

use std::time::Instant;

use cc_ci_run::rundir::{replace, Durability};
use cc_ci_run::testrun::checkpoint::{self, Checkpoint, Journal};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let n: usize = args.next().unwrap_or_else(|| "200".into()).parse()?;
    let compare = args.next().is_some_and(|a| a == "compare");
    std::fs::create_dir_all(&dir)?;
    let cp = Checkpoint {
        run_id: "bench".into(),
        git_ref: "0123456789abcdef0123456789abcdef01234567".into(),
        tier: Some("install".into()),
        passed: Vec::new(),
        updated: String::new(),
    };
    let names: Vec<String> = (0..n).map(|i| format!("{i:02}-test-{i:04}.sh")).collect();

    let (journal, sync_us) = bench_journal(&dir, &cp, &names)?;
    if !compare {
        let (mean, median) = stats(journal);
        println!("{mean:.1} {median:.1}");
        return Ok(());
    }
    let old = bench_old(&dir, &cp, &names)?;
    let (j_mean, j_median) = stats(journal);
    let (o_mean, o_median) = stats(old);
    println!(
        "checkpoint per passed test, {n} tests, in {}",
        dir.display()
    );
    println!("{:<44} {:>10} {:>10}", "", "mean us", "median us");
    println!(
        "{:<44} {o_mean:>10.1} {o_median:>10.1}",
        "old: JSON rewrite (write, fdatasync, rename)"
    );
    println!(
        "{:<44} {j_mean:>10.1} {j_median:>10.1}",
        "new: journal append (one write)"
    );
    println!(
        "{:<44} {sync_us:>10.1} {:>10}",
        "new: fdatasync at the end of the tier", "(once)"
    );
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "old / new",
        o_mean / j_mean.max(f64::MIN_POSITIVE),
        o_median / j_median.max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// Each append's time in microseconds, and the closing fdatasync's.
fn bench_journal(
    dir: &std::path::Path,
    cp: &Checkpoint,
    names: &[String],
) -> anyhow::Result<(Vec<f64>, f64)> {
    let mut j = Journal::create(dir, cp)?;
    let mut micros = Vec::with_capacity(names.len());
    for name in names {
        let t = Instant::now();
        j.passed(name)?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let t = Instant::now();
    j.sync()?;
    let sync_us = t.elapsed().as_secs_f64() * 1e6;
    // Read back: every line is there.
    let loaded = checkpoint::load(dir, cp.tier.as_deref())?;
    anyhow::ensure!(
        loaded.is_some_and(|l| l.checkpoint.passed.len() == names.len()),
        "the journal does not list every test"
    );
    Ok((micros, sync_us))
}

/// The earlier release's write, as its `checkpoint::save` did it: the
/// whole checkpoint, pretty JSON, replaced with `Durability::Data`.
fn bench_old(dir: &std::path::Path, cp: &Checkpoint, names: &[String]) -> anyhow::Result<Vec<f64>> {
    let path = checkpoint::legacy_path(dir, cp.tier.as_deref());
    let mut cp = cp.clone();
    let mut micros = Vec::with_capacity(names.len());
    for name in names {
        cp.passed.push(name.clone());
        let t = Instant::now();
        let mut text = serde_json::to_vec_pretty(&cp)?;
        text.push(b'\n');
        replace(&path, &text, Durability::Data)?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    std::fs::remove_file(&path)?;
    Ok(micros)
}

fn stats(mut micros: Vec<f64>) -> (f64, f64) {
    let n = micros.len();
    let mean = micros.iter().sum::<f64>() / n.max(1) as f64;
    micros.sort_by(f64::total_cmp);
    let median = micros.get(n / 2).copied().unwrap_or(0.0);
    (mean, median)
}
