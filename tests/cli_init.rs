//! Snapshots of the `init --offline --dry-run` plan (human with -v, and JSON): every resource and rendered
//! policy. Offline, so no network and nothing volatile beyond the state dir, which is filtered.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailsetup"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("HOME", dir.path()).env("NO_COLOR", "1");
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

const ARGS: &[&str] = &[
    "init", "--offline", "--dry-run", "--yes", "--account", "123456789012", "--region", "us-east-1",
    "--regions", "us-east-1,eu-west-1", "--trail-mode", "per-region",
    "--kms-key", "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd5678ef90",
];

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"/tmp/[^\s\x22]+", "[TMP]");
    // the forwarder zip's hash changes with every edit of templates/forwarder/; a unit test covers it
    s.add_filter(r#""code_sha256": "[A-Za-z0-9+/=]{44}""#, r#""code_sha256": "[CODE_SHA256]""#);
    s
}

#[test]
fn offline_plan_human_verbose() {
    let mut a = ARGS.to_vec();
    a.push("-v");
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    settings().bind(|| insta::assert_snapshot!(out));
}

#[test]
fn offline_plan_json() {
    let mut a = ARGS.to_vec();
    a.extend(["--output", "json"]);
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    settings().bind(|| insta::assert_json_snapshot!(v));
}

#[test]
fn offline_plan_multi_region_placeholders() {
    let (code, out, err) = run(&["init", "--offline", "--dry-run", "--yes", "--opensearch-url", "http://127.0.0.1:9200"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("<account> (placeholder)"), "{out}");
    settings().bind(|| insta::assert_snapshot!(out));
}

#[test]
fn no_tty_without_yes_names_what_to_pass() {
    let (code, out, err) = run(&["init", "--offline", "--dry-run"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    settings().bind(|| insta::assert_snapshot!(err));
}

#[test]
fn single_region_key_for_per_region_trails_is_refused() {
    let (code, out, err) = run(&[
        "init", "--offline", "--dry-run", "--yes", "--account", "123456789012", "--region", "us-east-1", "--regions",
        "us-east-1,eu-west-1", "--trail-mode", "per-region", "--kms-key", "arn:aws:kms:us-east-1:123456789012:key/1234abcd",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    settings().bind(|| insta::assert_snapshot!(err));
}

/// A bare alias is a regional name ("Aliases in AWS KMS"): the same alias in each region is each region's key.
#[test]
fn bare_alias_is_resolved_in_each_region() {
    let (code, out, err) = run(&[
        "init", "--offline", "--dry-run", "--yes", "--account", "123456789012", "--region", "us-east-1", "--regions",
        "us-east-1,eu-west-1", "--trail-mode", "per-region", "--kms-key", "alias/cloudtrail", "--output", "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let groups: Vec<(String, String)> = plan["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "logs-log-group" && c["name"] == "/aws/cloudtrail/trailsetup")
        .map(|c| (c["region"].as_str().unwrap().to_string(), c["details"]["kms_key"].as_str().unwrap_or_default().to_string()))
        .collect();
    let mut groups = groups;
    groups.sort();
    assert_eq!(
        groups,
        [
            ("eu-west-1".to_string(), "arn:aws:kms:eu-west-1:123456789012:alias/cloudtrail".to_string()),
            ("us-east-1".to_string(), "arn:aws:kms:us-east-1:123456789012:alias/cloudtrail".to_string())
        ]
    );
}
