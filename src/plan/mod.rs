//! The plan: an ordered list of changes, computed whole before anything changes. `--dry-run` prints this very
//! struct; `apply` executes it. Human and JSON rendering of the same data.

pub mod check;
pub mod saved;

use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    NoOp,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+ create   ",
            Action::Update => "~ update   ",
            Action::Delete => "- delete   ",
            Action::NoOp => "  unchanged",
        }
    }
}

/// The kind of a resource: the contract's strings, as an enum so that the compiler finds every place a new kind
/// (or a new verb) must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    S3BucketPolicy,
    S3Bucket,
    S3BucketNotification,
    CloudTrailTrail,
    SnsTopicPolicy,
    SnsTopic,
    SnsSubscription,
    SqsQueuePolicy,
    SqsQueue,
    IamPolicy,
    IamRole,
    LogsLogGroup,
    LogsSubscriptionFilter,
    LambdaFunction,
    LambdaPermission,
    OpenSearchDomain,
    OpenSearchIndexTemplate,
    OpenSearchRoleMapping,
    OpenSearchDashboardsObjects,
    KmsKeyPolicy,
    SecretsManagerSecret,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[Kind::S3BucketPolicy, Kind::S3Bucket, Kind::S3BucketNotification, Kind::CloudTrailTrail, Kind::SnsTopicPolicy, Kind::SnsTopic, Kind::SnsSubscription, Kind::SqsQueuePolicy, Kind::SqsQueue, Kind::IamPolicy, Kind::IamRole, Kind::LogsLogGroup, Kind::LogsSubscriptionFilter, Kind::LambdaFunction, Kind::LambdaPermission, Kind::OpenSearchDomain, Kind::OpenSearchIndexTemplate, Kind::OpenSearchRoleMapping, Kind::OpenSearchDashboardsObjects, Kind::KmsKeyPolicy, Kind::SecretsManagerSecret];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::S3BucketPolicy => "s3-bucket-policy",
            Kind::S3Bucket => "s3-bucket",
            Kind::S3BucketNotification => "s3-bucket-notification",
            Kind::CloudTrailTrail => "cloudtrail-trail",
            Kind::SnsTopicPolicy => "sns-topic-policy",
            Kind::SnsTopic => "sns-topic",
            Kind::SnsSubscription => "sns-subscription",
            Kind::SqsQueuePolicy => "sqs-queue-policy",
            Kind::SqsQueue => "sqs-queue",
            Kind::IamPolicy => "iam-policy",
            Kind::IamRole => "iam-role",
            Kind::LogsLogGroup => "logs-log-group",
            Kind::LogsSubscriptionFilter => "logs-subscription-filter",
            Kind::LambdaFunction => "lambda-function",
            Kind::LambdaPermission => "lambda-permission",
            Kind::OpenSearchDomain => "opensearch-domain",
            Kind::OpenSearchIndexTemplate => "opensearch-index-template",
            Kind::OpenSearchRoleMapping => "opensearch-role-mapping",
            Kind::OpenSearchDashboardsObjects => "opensearch-dashboards-objects",
            Kind::KmsKeyPolicy => "kms-key-policy",
            Kind::SecretsManagerSecret => "secretsmanager-secret",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One resource and what to do about it. `details` is the desired configuration (policies in full, as JSON);
/// `current` what was observed (for an update's diff; not part of the JSON plan).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub name: String,
    pub region: String,
    pub details: Value,
    #[serde(skip)]
    pub current: Option<Value>,
}

impl Change {
    /// diff: pure; compares parsed JSON after normalising order (see [`normalize`]).
    pub fn diff(kind: Kind, name: impl Into<String>, region: impl Into<String>, desired: Value, current: Option<Value>) -> Change {
        let action = match &current {
            None => Action::Create,
            Some(c) if normalize(c) == normalize(&desired) => Action::NoOp,
            Some(_) => Action::Update,
        };
        Change { action, kind, name: name.into(), region: region.into(), details: desired, current }
    }
}

/// Sort arrays of objects/strings so that order AWS does not keep does not count as a change, and turn
/// single-element arrays into their element (IAM returns `"Action": "x"` for `["x"]`).
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(normalize).collect();
            items.sort_by_key(|x| x.to_string());
            items.dedup();
            if items.len() == 1 {
                items.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(items)
            }
        }
        other => other.clone(),
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub summary: Summary,
}

/// Facts printed above the plan.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub stack: String,
    pub account: String,
    pub partition: String,
    pub home_region: String,
    pub regions: Vec<String>,
    pub trail_mode: String,
    /// values that are placeholders (offline), e.g. "account"
    pub placeholders: Vec<String>,
    pub warnings: Vec<String>,
    /// trails that already record this account (discovery), one line each
    pub existing_trails: Vec<String>,
    /// the trail the pipeline hangs from (`--use-trail`), if any
    pub reused_trail: Option<String>,
    /// what the owner of a bucket, topic or key in another account must add (statements to paste)
    pub owner_actions: Vec<Value>,
}

impl Plan {
    pub fn new(changes: Vec<Change>) -> Plan {
        let mut s = Summary::default();
        for c in &changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::NoOp => s.unchanged += 1,
            }
        }
        Plan { changes, summary: s }
    }

    pub fn has_changes(&self) -> bool {
        self.summary.create + self.summary.update + self.summary.delete > 0
    }

    /// The JSON document of CONTRACT.md (plus `placeholders`/`warnings` when there are any).
    pub fn to_json(&self, header: &Header, applied: bool) -> Value {
        let mut v = json!({ "plan": self, "applied": applied });
        if !header.placeholders.is_empty() {
            v["placeholders"] = json!(header.placeholders);
        }
        if !header.warnings.is_empty() {
            v["warnings"] = json!(header.warnings);
        }
        if !header.existing_trails.is_empty() {
            v["existing_trails"] = json!(header.existing_trails);
        }
        if let Some(t) = &header.reused_trail {
            v["reused_trail"] = json!(t);
        }
        if !header.owner_actions.is_empty() {
            v["owner_actions"] = json!(header.owner_actions);
        }
        v
    }

    /// Plan-tool style text: one line per resource; updates as a diff; with `verbose`, the full desired
    /// configuration (policies in full) of every create and update.
    pub fn render_human(&self, header: &Header, verbose: bool) -> String {
        let mut o = String::new();
        let ph = |what: &str| if header.placeholders.iter().any(|p| p == what) { " (placeholder)" } else { "" };
        o.push_str(&format!(
            "Stack {} · account {}{} ({}) · home region {} · trail mode {}\nRegions{}: {}\n\n",
            header.stack,
            header.account,
            ph("account"),
            header.partition,
            header.home_region,
            header.trail_mode,
            ph("regions"),
            header.regions.join(", ")
        ));
        if !header.existing_trails.is_empty() {
            o.push_str("Trails already recording this account:\n");
            for t in &header.existing_trails {
                o.push_str(&format!("  · {t}\n"));
            }
            o.push('\n');
        }
        if let Some(t) = &header.reused_trail {
            o.push_str(&format!("Reusing trail {t}: no trail and no bucket are created; it is never modified.\n\n"));
        }
        for w in &header.warnings {
            o.push_str(&format!("warning: {w}\n"));
        }
        if !header.warnings.is_empty() {
            o.push('\n');
        }
        let kind_w = self.changes.iter().map(|c| c.kind.as_str().len()).max().unwrap_or(0);
        for c in &self.changes {
            o.push_str(&format!("  {} {:kind_w$}  {}  [{}]\n", c.action.symbol(), c.kind, c.name, c.region));
            // a domain to be created: its data nodes and what they cost a month, even without -v
            if let (Action::Create, Some(est)) = (c.action, c.details["monthly_estimate"]["text"].as_str()) {
                let d = &c.details;
                let zones = match d["availability_zone_count"].as_i64() {
                    Some(z) if d["zone_awareness_enabled"] == true => format!("{z} Availability Zones"),
                    _ => "one Availability Zone".to_string(),
                };
                o.push_str(&format!(
                    "        data nodes: {} × {}, {} GiB gp3 each, {zones}\n        {est}\n",
                    d["instance_count"],
                    d["instance_type"].as_str().unwrap_or("?"),
                    d["ebs_gib"]
                ));
            }
            match c.action {
                // an update of something that could not be read (offline): what it will hold
                Action::Update if c.current.is_none() && verbose => {
                    for line in pretty(&c.details).lines() {
                        o.push_str(&format!("        {line}\n"));
                    }
                }
                Action::Update if c.current.is_none() => {}
                Action::Update => {
                    let cur = pretty(c.current.as_ref().unwrap_or(&Value::Null));
                    let want = pretty(&c.details);
                    let diff = similar::TextDiff::from_lines(&cur, &want);
                    for change in diff.iter_all_changes() {
                        let sign = match change.tag() {
                            similar::ChangeTag::Delete => "-",
                            similar::ChangeTag::Insert => "+",
                            similar::ChangeTag::Equal => " ",
                        };
                        if verbose || change.tag() != similar::ChangeTag::Equal {
                            o.push_str(&format!("        {sign} {}", change.value()));
                            if !change.value().ends_with('\n') {
                                o.push('\n');
                            }
                        }
                    }
                }
                Action::Create if verbose => {
                    for line in pretty(&c.details).lines() {
                        o.push_str(&format!("        {line}\n"));
                    }
                }
                _ => {}
            }
        }
        if !header.owner_actions.is_empty() {
            o.push_str("\nTo be done by the owners of resources in other accounts (nothing is planned there):\n");
            for a in &header.owner_actions {
                o.push_str(&format!("\n  {} of {}: {}\n", a["owner"].as_str().unwrap_or_default(), a["resource"].as_str().unwrap_or_default(), a["what"].as_str().unwrap_or_default()));
                let doc = a.get("statements").or(a.get("notification")).cloned().unwrap_or(Value::Null);
                for line in pretty(&doc).lines() {
                    o.push_str(&format!("      {line}\n"));
                }
            }
        }
        let s = &self.summary;
        o.push_str(&format!(
            "\nPlan: {} to create, {} to update, {} to delete, {} unchanged.\n",
            s.create, s.update, s.delete, s.unchanged
        ));
        if !verbose && s.create + s.update > 0 {
            o.push_str("(-v shows every setting and policy in full)\n");
        }
        o
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_ignores_order_and_singletons() {
        let want = json!({"Statement": [{"Action": ["a"], "Resource": ["x", "y"]}]});
        let have = json!({"Statement": {"Action": "a", "Resource": ["y", "x"]}});
        assert_eq!(Change::diff(Kind::SqsQueue, "n", "r", want.clone(), Some(have)).action, Action::NoOp);
        assert_eq!(Change::diff(Kind::SqsQueue, "n", "r", want.clone(), None).action, Action::Create);
        assert_eq!(Change::diff(Kind::SqsQueue, "n", "r", want, Some(json!({}))).action, Action::Update);
    }

    #[test]
    fn summary_counts() {
        let p = Plan::new(vec![
            Change::diff(Kind::SqsQueue, "1", "r", json!(1), None),
            Change::diff(Kind::SqsQueue, "2", "r", json!(1), Some(json!(1))),
        ]);
        assert_eq!(p.summary, Summary { create: 1, update: 0, delete: 0, unchanged: 1 });
        let j = p.to_json(&Header::default(), false);
        assert_eq!(j["plan"]["changes"][0]["action"], "create");
        assert_eq!(j["plan"]["changes"][1]["action"], "no-op");
        assert_eq!(j["applied"], false);
    }
}
