//! A test's output: two reader threads per test copy its stdout and stderr
//! to `output/<name>.stdout|.stderr` and log each line with the test's name
//! as prefix; the tail of each goes into the failure report.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::say;

/// How long the output readers may take to see end-of-file after a test
/// and its leftovers are gone (only a process outside our reach can hold a
/// pipe open longer).
pub(super) const READER_BOUND: Duration = Duration::from_secs(2);

/// How much of each output file goes into the JUnit report of a failure.
pub(super) const TAIL_BYTES: u64 = 16 * 1024;

/// The last [`TAIL_BYTES`] of a file, lossily decoded.
pub(super) fn tail(path: &Path) -> String {
    use std::io::Seek;
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > TAIL_BYTES {
        let _ = f.seek(std::io::SeekFrom::Start(len - TAIL_BYTES));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// How a failed write of the captured output is named (one name for the
/// whole directory, so a full disk is said once, not twice per test).
pub(super) fn output_files(out_dir: &Path) -> String {
    format!(
        "the test output files in {} (the tests run; their output is in the log)",
        out_dir.display()
    )
}

/// The file a test's output is copied to. One that cannot be created (a
/// full disk) is said once and replaced by /dev/null: the output still
/// reaches the log line by line, and a test never fails for want of a
/// place to copy its output to.
pub(super) fn create_output(out_dir: &Path, name: &str) -> Result<File> {
    // std opens with O_CLOEXEC: the file never reaches a test by inheritance.
    let path = out_dir.join(name);
    match File::create(&path) {
        Ok(f) => Ok(f),
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!("failed to create {}", path.display()));
            crate::log::write_failed(&output_files(out_dir), &e);
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .context("failed to open /dev/null for a test's output")
        }
    }
}

/// Copies a test's output pipe to its file and to the log, line by line.
pub(super) fn spawn_reader(
    fd: OwnedFd,
    mut file: File,
    prefix: String,
    done: mpsc::Sender<()>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("test-output".into())
        .spawn(move || {
            let mut pipe = File::from(fd);
            let mut chunk = [0u8; 8192];
            let mut pending: Vec<u8> = Vec::new();
            let show = |bytes: &[u8]| {
                let text = String::from_utf8_lossy(bytes);
                say!("{prefix}{}", text.trim_end_matches(['\n', '\r']));
            };
            loop {
                let n = match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let _ = file.write_all(&chunk[..n]);
                pending.extend_from_slice(&chunk[..n]);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    show(&line);
                }
                // A very long line is shown in pieces rather than held.
                if pending.len() >= chunk.len() {
                    show(&pending);
                    pending.clear();
                }
            }
            if !pending.is_empty() {
                show(&pending);
            }
            let _ = done.send(());
        })
        .context("failed to start an output reader thread")?;
    Ok(())
}
