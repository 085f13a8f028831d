//! `/proc/PID/stat` parsing: the command name sits in parentheses and may
//! itself hold spaces and parentheses, so the fields after it are only found
//! from the *last* `)`. A wrong split here makes the leak sweep miss a
//! descendant or kill a stranger.

use cc_ci_run::sys::procfs::parse_stat;

/// The fields after the command name of a real line (`cat /proc/self/stat`),
/// from the state on; `{state}` is substituted per fixture.
const TAIL: &str = "14486 14486 5537 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 93241 \
                    3133440 378 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";

fn line(pid: i32, comm: &str, state: &str) -> String {
    format!("{pid} ({comm}) {state} {TAIL}")
}

#[test]
fn plain_command_name() {
    let p = parse_stat(&line(14489, "cat", "R")).expect("parses");
    assert_eq!(
        (p.pid, p.ppid, p.pgid, p.zombie),
        (14489, 14486, 14486, false)
    );
}

#[test]
fn command_names_with_spaces_and_parentheses() {
    for comm in [
        "tmux: server",
        "my (weird) name",
        "a) b",
        "x)",
        "(",
        ")",
        ") S 1 2 3",
        "((()))",
        " ",
        "",
    ] {
        let p = parse_stat(&line(77, comm, "S"))
            .unwrap_or_else(|| panic!("command name {comm:?} must parse"));
        assert_eq!(p.pid, 77, "pid for {comm:?}");
        assert_eq!(p.ppid, 14486, "ppid for {comm:?}");
        assert_eq!(p.pgid, 14486, "pgid for {comm:?}");
        assert!(!p.zombie, "state for {comm:?}");
    }
}

#[test]
fn zombies_and_dead_processes_are_marked() {
    for (state, zombie) in [
        ("Z", true),
        ("X", true),
        ("R", false),
        ("S", false),
        ("D", false),
        ("T", false),
        ("t", false),
        ("I", false),
    ] {
        let p = parse_stat(&line(5, "sh", state)).expect("parses");
        assert_eq!(p.zombie, zombie, "state {state}");
    }
}

#[test]
fn malformed_lines_are_rejected_not_misread() {
    for bad in [
        "",
        "\n",
        "abc (sh) S 1 1 1",
        "12 sh S 1 1 1",
        "12 (sh)",
        "12 (sh) S",
        "12 (sh) S x 1 1",
        "12 (sh) S 1 y 1",
        "12 (sh) S 1",
    ] {
        assert!(parse_stat(bad).is_none(), "{bad:?} must be rejected");
    }
}
