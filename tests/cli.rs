//! The `oomlab` command line as a user meets it: help, exit statuses, one-line errors.

use std::process::{Command, Output};

fn oomlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oomlab"))
        .args(args)
        .output()
        .expect("spawning oomlab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("oomlab wrote non-UTF-8")
}

/// Runs `oomlab args`, expects exit status 2, nothing on stdout and exactly one line on stderr
/// containing every one of `needles`; returns that line.
fn check_usage_error(args: &[&str], needles: &[&str]) -> String {
    let out = oomlab(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    assert_eq!(stdout, "", "{args:?}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("oomlab: "), "{args:?}: {stderr:?}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: {stderr:?} lacks {n:?}");
    }
    stderr
}

#[test]
fn help_shows_the_subcommands() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = oomlab(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        for sub in ["run", "scenario", "bench"] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(sub)),
                "{args:?}: no {sub} in {help}"
            );
        }
    }
}

#[test]
fn subcommand_help_shows_the_planned_flags() {
    for (sub, flags) in [
        (
            "run",
            &[
                "--threads",
                "--memory",
                "--executor",
                "--seed",
                "--write-lock",
                "--read-lock",
                "--reaper",
                "--reaper-delay",
                "--duration",
            ][..],
        ),
        (
            "scenario",
            &[
                "[NAME]",
                "--list",
                "--json",
                "--seed",
                "--write-lock",
                "--reaper",
                "--reaper-delay",
            ],
        ),
        ("bench", &["rwsem", "sim-switch", "livelock-rate"]),
    ] {
        let out = oomlab(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        let help = text(&out.stdout);
        for f in flags {
            assert!(help.contains(f), "{sub} --help lacks {f}:\n{help}");
        }
    }
}

#[test]
fn version_succeeds() {
    let out = oomlab(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("oomlab "));
}

#[test]
fn unimplemented_subcommands_exit_2_naming_the_issue() {
    for (args, line) in [
        (
            &["scenario", "remote-reader"][..],
            "oomlab: 'scenario' is not implemented yet (see issue 4)\n",
        ),
        (
            &["scenario", "--list"],
            "oomlab: 'scenario' is not implemented yet (see issue 4)\n",
        ),
        (
            &["bench"],
            "oomlab: 'bench' is not implemented yet (see issue 2)\n",
        ),
        (
            &["bench", "rwsem"],
            "oomlab: 'bench rwsem' is not implemented yet (see issue 2)\n",
        ),
        (
            &["bench", "livelock-rate"],
            "oomlab: 'bench livelock-rate' is not implemented yet (see issue 4)\n",
        ),
        (
            &["run", "--memory", "1GiB"],
            "oomlab: 'run --memory' is not implemented yet (see issue 3)\n",
        ),
        (
            &["run", "--write-lock", "uninterruptible"],
            "oomlab: 'run --write-lock' is not implemented yet (see issue 3)\n",
        ),
        (
            &["run", "--reaper", "off"],
            "oomlab: 'run --reaper' is not implemented yet (see issue 4)\n",
        ),
    ] {
        assert_eq!(check_usage_error(args, &[]), line, "{args:?}");
    }
}

#[test]
fn bad_input_is_one_line_naming_what_was_wrong() {
    for (args, needles) in [
        (&[][..], &["subcommand"][..]),
        (&["frob"], &["frob"]),
        (&["--frob"], &["--frob"]),
        (&["run", "--thread", "3"], &["--thread"]),
        (&["run", "--threads", "0"], &["--threads", "'0'"]),
        (&["run", "--threads", "many"], &["--threads", "many"]),
        (&["run", "--memory", "1.5G"], &["--memory", "1.5G"]),
        (&["run", "--memory", "4097"], &["--memory", "4097"]),
        (&["run", "--executor", "fibers"], &["--executor", "fibers"]),
        (&["run", "--seed"], &["--seed"]),
        (&["run", "--seed", "-1"], &["-1"]),
        (&["run", "--reaper-delay", "2"], &["--reaper-delay", "unit"]),
        (&["run", "--duration", "soon"], &["--duration", "soon"]),
        (&["run", "extra"], &["extra"]),
        (&["scenario"], &["<NAME>"]),
        (&["scenario", "x", "--list"], &["--list"]),
        (
            &["scenario", "x", "--write-lock", "maybe"],
            &["--write-lock", "maybe", "killable"],
        ),
        (&["scenario", "x", "--reaper", "yes"], &["--reaper", "yes"]),
        (&["bench", "nope"], &["nope", "rwsem"]),
    ] {
        check_usage_error(args, needles);
    }
}

#[test]
fn interim_run_is_a_deterministic_sim_demo() {
    let run = |seed: &str| {
        let out = oomlab(&["run", "--seed", seed]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "");
        text(&out.stdout)
    };
    let a = run("7");
    assert!(a.contains("interim"), "{a}");
    assert!(a.contains("all tasks exited"), "{a}");
    assert!(a.contains("trace hash"), "{a}");
    assert_eq!(a, run("7"), "same seed, different output");
    let hash = |s: &str| {
        s.lines()
            .find(|l| l.contains("trace hash"))
            .map(str::to_owned)
    };
    assert_ne!(hash(&a), hash(&run("8")), "seeds 7 and 8 interleaved alike");

    // The README's first command: `run` on its defaults succeeds, as does an explicit default.
    for args in [
        &["run"][..],
        &["run", "--threads", "256", "--executor", "sim"],
    ] {
        let out = oomlab(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
