//! `cc-ci-run __run-tree` (hidden): a run's tree of a recipe, written by
//! the run's own fetch code ([`crate::run::fetch`]) alone, for the bench
//! and the tests; prints the tested commit and how the tree was made.

use anyhow::{Context, Result};

use crate::cli::RunTreeArgs;
use crate::ext::Bound;
use crate::run::fetch::{fetch, Request};

/// `__run-tree`: see [`RunTreeArgs`].
pub(crate) fn run_tree(args: &RunTreeArgs) -> Result<i32> {
    crate::log::set_tag("run-tree");
    if let Some(r) = &args.git_ref {
        crate::config::names::check_ref("ref", r)?;
    }
    let tools = crate::ext::Tools::from_env(&crate::config::process_env());
    let root = args
        .dest
        .parent()
        .context("--dest must name a directory inside another")?;
    let abra_dir = root.join("abra");
    let shown = args.git_ref.clone().unwrap_or_default();
    let fetched = fetch(
        &Request {
            git: &tools.git,
            canonical: &args.canonical,
            dest: &args.dest,
            abra_dir: &abra_dir,
            root,
            skip_fetch: args.skip_fetch,
            pr: args.pr,
            git_ref: args.git_ref.as_deref(),
            shown_ref: &shown,
            git_only: args.git_only,
        },
        &Bound {
            cancel: None,
            deadline: None,
            grace: std::time::Duration::from_secs(1),
        },
    )?;
    let line = serde_json::json!({
        "sha": fetched.sha,
        "in_process": fetched.in_process,
        "merged": fetched.tags.0,
        "at": fetched.tags.1,
    });
    println!("{line}");
    Ok(crate::exit::OK)
}
