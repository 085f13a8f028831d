//! Entry point: parse, run, map the result to an exit code.

use clap::Parser;

fn main() {
    // The parent as it is before anything else happens: the wrapper compares
    // against it after setting PDEATHSIG to detect a parent that died first.
    let start_ppid = nix::unistd::getppid();
    // `exec CMD`, the wrapper of every guarded command, starts without
    // building clap's command tree when its line is one of the common forms.
    if let Some(code) = cc_ci_run::cmd::exec_fast(start_ppid) {
        std::process::exit(code);
    }
    let mut cli = parse();
    // The host's settings before anything reads the environment: a
    // host-owned setting the environment changes is exit 2 here, with
    // nothing touched; the host's values the environment lacks are set,
    // and the command line parsed again to see them.
    match cc_ci_run::host::apply(cli.host_settings.as_deref()) {
        Ok(false) => {}
        Ok(true) => cli = parse(),
        Err(e) => {
            cc_ci_run::say!("error: {e:#}");
            std::process::exit(cc_ci_run::exit::code_for(&e));
        }
    }
    std::process::exit(cc_ci_run::cmd::exit_code(cc_ci_run::cmd::dispatch(
        cli, start_ppid,
    )));
}

/// The command line, or the exit clap gives (usage 2; `--help` 0).
fn parse() -> cc_ci_run::cli::Cli {
    match cc_ci_run::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                cc_ci_run::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    }
}
