//! Saved plans, for review in CI (Terraform's saved plans): `--dry-run --plan-out FILE` writes the plan a run
//! computed; `init --yes --plan FILE` recomputes the plan from the account and the settings it is given, and
//! applies only when it equals the saved one, change for change — otherwise it changes nothing and says what
//! moved. A saved plan is an approval of exact changes, not a script: nothing in it is executed blindly.

use std::path::Path;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{normalize, Plan};
use crate::error::usage;

/// The file's format marker.
const FORMAT: &str = "trailsetup-saved-plan/1";

/// Write `plan` for stack `stack` of `account` to `path` (0600: it holds the account's resource names).
pub fn save(path: &Path, stack: &str, account: &str, plan: &Plan) -> anyhow::Result<()> {
    let doc = json!({
        "format": FORMAT,
        "trailsetup": env!("CARGO_PKG_VERSION"),
        "stack": stack,
        "account": account,
        "saved_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "plan": plan,
    });
    crate::fsutil::write_atomic(path, &serde_json::to_vec_pretty(&doc)?).with_context(|| format!("saving the plan to {}", path.display()))
}

/// A saved plan, as read back.
#[derive(Debug)]
pub struct Saved {
    pub stack: String,
    pub account: String,
    pub changes: Vec<Value>,
}

pub fn load(path: &Path) -> anyhow::Result<Saved> {
    let bytes = std::fs::read(path).map_err(|e| usage(format!("--plan {}: {e}", path.display())))?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| usage(format!("--plan {}: not a saved plan ({e})", path.display())))?;
    if doc["format"] != FORMAT {
        return Err(usage(format!(
            "--plan {}: not a plan saved by `trailsetup --dry-run --plan-out` (format {}, expected {FORMAT})",
            path.display(),
            doc["format"]
        )));
    }
    Ok(Saved {
        stack: doc["stack"].as_str().unwrap_or_default().to_string(),
        account: doc["account"].as_str().unwrap_or_default().to_string(),
        changes: doc["plan"]["changes"].as_array().cloned().unwrap_or_default(),
    })
}

/// `kind name [region]: action` of one change.
fn key(c: &Value) -> String {
    format!(
        "{} {} [{}]",
        c["kind"].as_str().unwrap_or_default(),
        c["name"].as_str().unwrap_or_default(),
        c["region"].as_str().unwrap_or_default()
    )
}

/// How the plan computed now differs from the saved one, one line per difference (empty: the same plan).
/// Changes are compared whole (action and details, policies as parsed JSON, arrays in any order), in any order.
pub fn differences(saved: &[Value], now: &Plan) -> Vec<String> {
    let now: Vec<Value> = now.changes.iter().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect();
    let index = |v: &[Value]| -> std::collections::BTreeMap<String, Value> { v.iter().map(|c| (key(c), normalize(c))).collect() };
    let (a, b) = (index(saved), index(&now));
    let mut out = Vec::new();
    for (k, was) in &a {
        match b.get(k) {
            None => out.push(format!("{k}: in the saved plan, not planned now")),
            Some(is) if is["action"] != was["action"] => {
                out.push(format!("{k}: saved as {}, now {}", was["action"].as_str().unwrap_or("?"), is["action"].as_str().unwrap_or("?")))
            }
            Some(is) if is != was => out.push(format!("{k}: {} with other details than saved", is["action"].as_str().unwrap_or("?"))),
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!("{k}: planned now, not in the saved plan"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Change, Kind};

    fn change(action: Action, name: &str, details: Value) -> Change {
        Change { action, kind: Kind::SqsQueue, name: name.into(), region: "us-east-1".into(), details, current: None }
    }

    #[test]
    fn a_saved_plan_round_trips_and_only_the_same_plan_matches() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("plan.json");
        let plan = Plan::new(vec![change(Action::Create, "q", json!({"a": [1, 2]})), change(Action::NoOp, "d", json!({}))]);
        save(&p, "s", "123456789012", &plan).unwrap();
        let s = load(&p).unwrap();
        assert_eq!((s.stack.as_str(), s.account.as_str()), ("s", "123456789012"));
        assert!(differences(&s.changes, &plan).is_empty());
        // arrays in another order are the same plan
        let same = Plan::new(vec![change(Action::NoOp, "d", json!({})), change(Action::Create, "q", json!({"a": [2, 1]}))]);
        assert!(differences(&s.changes, &same).is_empty());
        // the queue appeared meanwhile: its create became a no-op
        let moved = Plan::new(vec![change(Action::NoOp, "q", json!({"a": [1, 2]})), change(Action::NoOp, "d", json!({}))]);
        assert_eq!(differences(&s.changes, &moved), ["sqs-queue q [us-east-1]: saved as create, now no-op"]);
        // other details, a change more
        let other = Plan::new(vec![change(Action::Create, "q", json!({"a": [3]})), change(Action::NoOp, "d", json!({})), change(Action::Create, "x", json!({}))]);
        assert_eq!(differences(&s.changes, &other).len(), 2);
        // not a saved plan
        std::fs::write(&p, b"{}").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("not a plan saved"));
    }
}
