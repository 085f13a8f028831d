//! `cc-ci-run timeline`: the page of recent runs ([`crate::views::timeline`]
//! draws it), to stdout or to a file replaced atomically.

use std::path::Path;

use anyhow::{Context, Result};

use crate::exit;
use crate::views::timeline::{check_out, page, Window, DEFAULT_LIMIT, DEFAULT_SINCE};

/// `cc-ci-run timeline`.
pub fn timeline(state_dir: &Path, args: &crate::cli::TimelineArgs) -> Result<i32> {
    if let Some(out) = &args.out {
        check_out("--out", out, false)?;
    }
    let window = Window::new(
        args.since.unwrap_or(DEFAULT_SINCE),
        args.limit
            .map_or(DEFAULT_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    );
    let html = page(state_dir, window, args.out.as_deref())?;
    match &args.out {
        Some(out) => crate::rundir::write_atomic(out, html.as_bytes())?,
        None => {
            use std::io::Write;
            let mut o = std::io::stdout().lock();
            o.write_all(html.as_bytes())
                .and_then(|()| o.flush())
                .context("failed to write the timeline to stdout")?;
        }
    }
    Ok(exit::OK)
}
