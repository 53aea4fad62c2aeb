//! `--help` headings, `completions <SHELL>` and `completions --man`, run through the built binary with a bare
//! environment (no AWS credentials, no state, no TTY on stdin).

use std::process::{Command, Stdio};

struct Run {
    code: i32,
    out: String,
    err: String,
    /// The empty HOME the command ran with: nothing may be written there.
    home: tempfile::TempDir,
}

fn run(args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trailsetup"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into(),
        err: String::from_utf8_lossy(&out.stderr).into(),
        home,
    }
}

/// The lines under `heading:` in clap's help, up to the next heading.
fn section(help: &str, heading: &str) -> String {
    let title = format!("{heading}:");
    let mut lines = help.lines().skip_while(|l| *l != title);
    assert!(lines.next().is_some(), "no `{title}` heading in:\n{help}");
    lines.take_while(|l| l.is_empty() || l.starts_with(' ')).collect::<Vec<_>>().join("\n")
}

/// Whether `section` lists the option `flag` (as an option, not merely mentioned in another's help).
fn lists(section: &str, flag: &str) -> bool {
    section.lines().any(|l| {
        let l = l.trim_start();
        // `-y, --yes ...` → `--yes ...`
        let l = match l.as_bytes() {
            [b'-', c, b',', b' ', ..] if *c != b'-' => &l[4..],
            _ => l,
        };
        l.split([' ', '.', '=']).next() == Some(flag)
    })
}

#[test]
fn top_level_help_groups_options_under_headings() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let global = section(&r.out, "Global options");
    for flag in ["--dry-run", "--offline", "--yes", "--config", "--output", "--state-dir", "--verbose", "--quiet"] {
        assert!(lists(&global, flag), "{flag} not under Global options:\n{global}");
    }
    let aws = section(&r.out, "AWS");
    for flag in ["--profile", "--region", "--endpoint-url"] {
        assert!(lists(&aws, flag), "{flag} not under AWS:\n{aws}");
        assert!(!lists(&global, flag), "{flag} also under Global options:\n{global}");
    }
    let init = section(&r.out, "Setup (init)");
    for flag in ["--name", "--regions", "--trail-mode", "--use-trail", "--opensearch-url", "--backfill"] {
        assert!(lists(&init, flag), "{flag} not under Setup (init):\n{init}");
    }
    // every flag still there, with its env var
    for s in ["--use-trail", "--dry-run", "--endpoint-url", "TRAILSETUP_USE_TRAIL", "TRAILSETUP_DRY_RUN"] {
        assert!(r.out.contains(s), "{s} missing from --help:\n{}", r.out);
    }
    assert!(r.out.lines().any(|l| l.trim_start().starts_with("completions ")), "no completions command:\n{}", r.out);
}

#[test]
fn init_help_has_the_setup_heading() {
    let r = run(&["init", "--help"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(lists(&section(&r.out, "Setup (init)"), "--use-trail"), "{}", r.out);
    assert!(lists(&section(&r.out, "Global options"), "--dry-run"), "{}", r.out);
}

#[test]
fn init_and_destroy_list_the_lock_options() {
    for cmd in [&["init", "--help"][..], &["destroy", "--help"], &["--help"]] {
        let r = run(cmd);
        assert_eq!(r.code, 0, "{}", r.err);
        let lock = section(&r.out, "Lock (init, destroy)");
        assert!(lists(&lock, "--lock-timeout") && lists(&lock, "--force-unlock"), "{cmd:?}:\n{}", r.out);
        assert!(lock.contains("TRAILSETUP_LOCK_TIMEOUT"), "{cmd:?}:\n{lock}");
    }
}

#[test]
fn backfill_help_groups_source_selection_and_sink() {
    let r = run(&["backfill", "--help"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let source = section(&r.out, "Source");
    for flag in ["--bucket", "--prefix", "--source-dir", "--source-role"] {
        assert!(lists(&source, flag), "{flag} not under Source:\n{source}");
    }
    let select = section(&r.out, "Selection");
    for flag in ["--from", "--to", "--accounts", "--regions"] {
        assert!(lists(&select, flag), "{flag} not under Selection:\n{select}");
    }
    let sink = section(&r.out, "OpenSearch sink");
    for flag in ["--opensearch-url", "--opensearch-auth", "--index-prefix", "--concurrency", "--quarantine"] {
        assert!(lists(&sink, flag), "{flag} not under OpenSearch sink:\n{sink}");
    }
    // backfill's own options are not swept into the sink group
    let options = section(&r.out, "Options");
    for flag in ["--checkpoint", "--restart", "--enqueue", "--replay-quarantine"] {
        assert!(lists(&options, flag), "{flag} not under Options:\n{options}");
        assert!(!lists(&sink, flag), "{flag} under OpenSearch sink:\n{sink}");
    }
    assert!(lists(&section(&r.out, "AWS"), "--endpoint-url"), "{}", r.out);
}

#[test]
fn ingest_help_groups_source_selection_and_sink() {
    let r = run(&["ingest", "--help"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let source = section(&r.out, "Source");
    assert!(lists(&source, "--queue-url") && lists(&source, "--source-role"), "{source}");
    assert!(lists(&section(&r.out, "Selection"), "--from"), "{}", r.out);
    assert!(lists(&section(&r.out, "OpenSearch sink"), "--opensearch-url"), "{}", r.out);
    assert!(lists(&section(&r.out, "Options"), "--drain"), "{}", r.out);
}

#[test]
fn completions_bash_prints_a_script_for_trailsetup() {
    let r = run(&["completions", "bash"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("trailsetup"), "{}", r.out);
    assert!(r.out.contains("--use-trail"), "{}", r.out);
    assert!(r.out.contains("complete -F"), "not a bash completion script:\n{}", r.out);
    // subcommands, and completions itself, are completed
    assert!(r.out.contains("backfill") && r.out.contains("completions"), "{}", r.out);
    assert!(r.err.is_empty(), "{}", r.err);
}

#[test]
fn completions_zsh_prints_a_compdef() {
    let r = run(&["completions", "zsh"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("#compdef trailsetup"), "{}", r.out);
    assert!(r.out.contains("--endpoint-url"), "{}", r.out);
}

#[test]
fn completions_for_every_supported_shell() {
    for shell in ["fish", "elvish", "powershell"] {
        let r = run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.err);
        assert!(r.out.contains("trailsetup") && r.out.contains("use-trail"), "{shell}: {}", r.out);
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let r = run(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.out.is_empty(), "{}", r.out);
    assert!(r.err.contains("tcsh") && r.err.contains("bash"), "{}", r.err);
}

#[test]
fn completions_without_a_shell_is_a_usage_error() {
    let r = run(&["completions"]);
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.out.is_empty(), "{}", r.out);
}

#[test]
fn completions_need_no_credentials_state_or_prompt() {
    // no AWS credentials or region (bare environment), stdin not a TTY, no --yes; a state dir that does not exist
    let r = run(&["completions", "bash", "--state-dir", "/nonexistent/trailsetup-state"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!r.out.is_empty());
    assert!(r.err.is_empty(), "{}", r.err);
    assert_eq!(std::fs::read_dir(r.home.path()).unwrap().count(), 0, "completions wrote under HOME");
}

#[test]
fn man_page_is_roff_for_trailsetup() {
    let r = run(&["completions", "--man"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.lines().any(|l| l.starts_with(".TH trailsetup")), "{}", r.out);
    assert!(r.out.contains(".SH NAME") && r.out.contains(".SH SYNOPSIS"), "{}", r.out);
    assert!(r.out.contains("use\\-trail"), "{}", r.out);
    assert!(r.out.contains("backfill"), "subcommands not listed:\n{}", r.out);
}

#[test]
fn man_and_a_shell_together_are_refused() {
    let r = run(&["completions", "--man", "bash"]);
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.out.is_empty(), "{}", r.out);
}

#[test]
fn permissions_help_lists_its_options_and_prints_a_policy_without_credentials() {
    let r = run(&["--help"]);
    assert!(r.out.lines().any(|l| l.trim_start().starts_with("permissions ")), "no `permissions` subcommand in:\n{}", r.out);
    let r = run(&["permissions", "--help"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let opts = section(&r.out, "Options");
    for flag in ["--for", "--with", "--stack-only", "--name", "--account", "--partition"] {
        assert!(lists(&opts, flag), "{flag} not under Options:\n{opts}");
    }
    // --account given: no AWS call, nothing written
    let r = run(&["permissions", "--for", "ingest", "--account", "123456789012", "--region", "us-east-1"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let p: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(p["Version"], "2012-10-17");
    assert!(r.out.contains("\"s3:GetObject\"") && !r.out.contains("s3:PutObject"), "{}", r.out);
    assert_eq!(std::fs::read_dir(r.home.path()).unwrap().count(), 0, "permissions wrote to HOME");
}
