//! Checkpoint write cost for scripts/bench-testrun.sh: N atomic writes
//! (one write of a temporary file, fdatasync, rename) of a checkpoint
//! that grows by one test name each time, as during a suite. Prints the mean
//! and the median in microseconds.

use std::time::Instant;

use cc_ci_run::testrun::checkpoint::{self, Checkpoint};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let n: usize = args.next().unwrap_or_else(|| "200".into()).parse()?;
    std::fs::create_dir_all(&dir)?;
    let path = checkpoint::path(&dir, None);
    let mut cp = Checkpoint {
        run_id: "bench".into(),
        git_ref: "0123456789abcdef0123456789abcdef01234567".into(),
        tier: None,
        passed: Vec::new(),
        updated: String::new(),
    };
    let mut micros = Vec::with_capacity(n);
    for i in 0..n {
        cp.passed.push(format!("test-{i:04}"));
        let t = Instant::now();
        checkpoint::save(&path, &cp)?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mean = micros.iter().sum::<f64>() / n.max(1) as f64;
    micros.sort_by(f64::total_cmp);
    let median = micros.get(n / 2).copied().unwrap_or(0.0);
    println!("{mean:.0} {median:.0}");
    Ok(())
}
