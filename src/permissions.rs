//! `trailsetup permissions`: the least-privilege IAM policy a caller needs for one command, assembled from the
//! declarations beside the code that makes the calls (`PERMISSIONS` in each module of [`all`]), never from a
//! second hand-kept list. A unit test below reads the sources and keeps both sides in step: every action a call
//! site names (`explain(e, what, "svc:Action")`, `hint_for`, `lock::ACTIONS`) is declared, and every declared
//! action is named at a call site or listed in [`NOT_AT_A_CALL_SITE`] with the reason.
//!
//! Resources are as narrow as the stack's derived names allow (`--name`, default `trailsetup`). Where AWS has no
//! resource-level permission for an action (the action's "Resource types" column is empty in the Service
//! Authorization Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/), the resource is
//! `*` ([`Res::Any`]); each such declaration names its page.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// The commands a policy can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Cmd {
    Init,
    Status,
    Backfill,
    Ingest,
    Destroy,
    Search,
    Dashboards,
}

/// Choices of `init` that need more than the default stack (`--opensearch-url`, no KMS key, no secret, a trail
/// of our own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Feature {
    /// an Amazon OpenSearch Service domain (no `--opensearch-url`): its control plane and its `es:ESHttp*` API
    Domain,
    /// `--kms-key`: key policies, and encryption with the key
    Kms,
    /// `--opensearch-auth basic`: the forwarder's Secrets Manager secret
    BasicAuth,
    /// `--use-trail`: an existing trail, its bucket's notifications, its organization
    UseTrail,
    /// `backfill --enqueue`: the files are sent to the stack's queue for `ingest` workers instead of loaded here
    Enqueue,
}

/// What a permission applies to; rendered by [`Names::arns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Res {
    /// `*`: the action has no resource-level permissions (the declaration names the AWS page)
    Any,
    /// another trail (`--use-trail`), not known before discovery: any trail (an organization trail's ARN names
    /// the management account)
    OtherTrail,
    /// the bucket of another trail (`--use-trail`): any bucket
    OtherBucket,
    /// the log group of another trail (`--use-trail`): any log group of the account
    OtherLogGroup,
    /// users, groups and roles other than the stack's that hold the ingest-worker policy (`destroy` detaches it)
    PolicyHolders,
    /// every KMS key of the account in any region (`--kms-key` names one; the policy is printed before)
    Keys,
    Bucket,
    BucketObjects,
    /// the notification queue and its dead-letter queue (home region)
    Queues,
    /// the forwarder's dead-letter queue (each forwarder region)
    ForwarderDlq,
    Topic,
    TrailLogGroup,
    ForwarderLogGroup,
    Trail,
    Function,
    /// `<name>-cloudtrail-logs` and `<name>-forwarder`
    Roles,
    /// `<name>-ingest-worker` and `<name>-forwarder`
    Policies,
    /// `<name>-ingest-worker`, which holds the stack's record
    RecordPolicy,
    Domain,
    Secret,
    LockParameter,
}

impl Res {
    /// A resource of the stack itself (`--stack-only` keeps only these).
    pub fn stack_own(self) -> bool {
        !matches!(self, Res::Any | Res::OtherTrail | Res::OtherBucket | Res::OtherLogGroup | Res::PolicyHolders | Res::Keys)
    }
    /// The statement id for this resource group.
    fn sid(self) -> String {
        format!("{self:?}")
    }
}

/// One IAM action a call site needs, on what, for which commands, and only with which choices (all of them).
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub action: &'static str,
    pub on: Res,
    pub cmds: &'static [Cmd],
    pub only: &'static [Feature],
}

/// Shorthand for the declarations: `p("s3:CreateBucket", Res::Bucket, INIT)`.
pub const fn p(action: &'static str, on: Res, cmds: &'static [Cmd]) -> Permission {
    Permission { action, on, cmds, only: &[] }
}
/// A permission needed only with `feature`.
pub const fn with(feature: &'static [Feature], action: &'static str, on: Res, cmds: &'static [Cmd]) -> Permission {
    Permission { action, on, cmds, only: feature }
}

pub const INIT: &[Cmd] = &[Cmd::Init];
pub const DESTROY: &[Cmd] = &[Cmd::Destroy];
pub const INIT_DESTROY: &[Cmd] = &[Cmd::Init, Cmd::Destroy];
/// `resources::observe`: init's plan, status, destroy.
pub const OBSERVE: &[Cmd] = &[Cmd::Init, Cmd::Status, Cmd::Destroy];
pub const ALL: &[Cmd] = &[Cmd::Init, Cmd::Status, Cmd::Backfill, Cmd::Ingest, Cmd::Destroy, Cmd::Search, Cmd::Dashboards];

/// Every declaration, module by module.
pub fn all() -> Vec<(&'static str, &'static [Permission])> {
    use crate::resources as r;
    vec![
        ("aws", crate::aws::PERMISSIONS),
        ("lock", crate::lock::PERMISSIONS),
        ("stack", crate::stack::PERMISSIONS),
        ("ingest", crate::ingest::PERMISSIONS),
        ("status", crate::status::PERMISSIONS),
        ("resources::s3", r::s3::PERMISSIONS),
        ("resources::sqs", r::sqs::PERMISSIONS),
        ("resources::sns", r::sns::PERMISSIONS),
        ("resources::iam", r::iam::PERMISSIONS),
        ("resources::logs", r::logs::PERMISSIONS),
        ("resources::lambda", r::lambda::PERMISSIONS),
        ("resources::cloudtrail", r::cloudtrail::PERMISSIONS),
        ("resources::cloudwatch", r::cloudwatch::PERMISSIONS),
        ("resources::kms", r::kms::PERMISSIONS),
        ("resources::secretsmanager", r::secretsmanager::PERMISSIONS),
        ("resources::opensearch", r::opensearch::PERMISSIONS),
        ("resources::reuse", r::reuse::PERMISSIONS),
    ]
}

/// Declared actions that no `explain`/`hint_for` call names, and why they are needed anyway.
pub const NOT_AT_A_CALL_SITE: &[(&str, &str)] = &[
    ("iam:PassRole", "CreateTrail/UpdateTrail pass the CloudWatch Logs role, CreateFunction/UpdateFunctionConfiguration the \
      forwarder's role (IAM User Guide, \"Granting a user permissions to pass a role to an AWS service\")"),
    ("organizations:DescribeOrganization", "reuse::organization_id: a refusal is not an error (the organization id stays unknown)"),
    ("cloudtrail:GetEventSelectors", "reuse: a refusal is not an error (the trail's selectors stay unknown)"),
    ("secretsmanager:GetSecretValue", "secretsmanager::observe names it in a computed string (with kms:Decrypt on a key)"),
    ("kms:Decrypt", "secretsmanager: reading and writing a secret encrypted with --kms-key (computed string)"),
    ("kms:GenerateDataKey", "secretsmanager: writing a secret encrypted with --kms-key (computed string)"),
    ("es:ESHttpGet", "the OpenSearch client signs HTTP calls to a domain (opensearch::client names es:ESHttp* on 403)"),
    ("es:ESHttpHead", "the OpenSearch client signs HTTP calls to a domain"),
    ("es:ESHttpPut", "the OpenSearch client signs HTTP calls to a domain"),
    ("es:ESHttpPost", "the OpenSearch client signs HTTP calls to a domain"),
    ("es:ESHttpDelete", "destroy removes the writer role and its mapping through the domain's security API"),
];

/// The names a policy is rendered with.
#[derive(Debug, Clone)]
pub struct Names {
    pub partition: String,
    /// `*` when unknown (offline)
    pub account: String,
    /// the home region; `*` when unknown
    pub home: String,
    pub stack: String,
    pub bucket: Option<String>,
    pub domain: Option<String>,
}

impl Names {
    fn arn(&self, svc: &str, region: &str, rest: &str) -> String {
        format!("arn:{}:{svc}:{region}:{}:{rest}", self.partition, self.account)
    }
    pub fn bucket(&self) -> String {
        self.bucket.clone().unwrap_or_else(|| format!("{}-{}-{}", self.stack, self.account, self.home))
    }
    /// The ARNs of `res`, sorted.
    pub fn arns(&self, res: Res) -> Vec<String> {
        let (n, p, h) = (&self.stack, &self.partition, &self.home);
        let mut v = match res {
            Res::Any => vec!["*".to_string()],
            Res::OtherTrail => vec![format!("arn:{p}:cloudtrail:*:*:trail/*")],
            Res::OtherBucket => vec![format!("arn:{p}:s3:::*")],
            Res::OtherLogGroup => vec![self.arn("logs", "*", "log-group:*")],
            Res::PolicyHolders => vec![self.arn("iam", "", "user/*"), self.arn("iam", "", "group/*"), self.arn("iam", "", "role/*")],
            Res::Keys => vec![self.arn("kms", "*", "key/*")],
            Res::Bucket => vec![format!("arn:{p}:s3:::{}", self.bucket())],
            Res::BucketObjects => vec![format!("arn:{p}:s3:::{}/*", self.bucket())],
            Res::Queues => vec![self.arn("sqs", h, &format!("{n}-notifications")), self.arn("sqs", h, &format!("{n}-notifications-dlq"))],
            Res::ForwarderDlq => vec![self.arn("sqs", "*", &format!("{n}-forwarder-dlq"))],
            Res::Topic => vec![self.arn("sns", "*", &format!("{n}-cloudtrail"))],
            Res::TrailLogGroup => vec![
                self.arn("logs", "*", &format!("log-group:/aws/cloudtrail/{n}")),
                self.arn("logs", "*", &format!("log-group:/aws/cloudtrail/{n}:*")),
            ],
            Res::ForwarderLogGroup => vec![
                self.arn("logs", "*", &format!("log-group:/aws/lambda/{n}-forwarder")),
                self.arn("logs", "*", &format!("log-group:/aws/lambda/{n}-forwarder:*")),
            ],
            // a multi-region trail is `<name>`; per-region trails are `<name>-<region>`
            Res::Trail => vec![self.arn("cloudtrail", "*", &format!("trail/{n}")), self.arn("cloudtrail", "*", &format!("trail/{n}-*"))],
            Res::Function => vec![self.arn("lambda", "*", &format!("function:{n}-forwarder"))],
            Res::Roles => vec![self.arn("iam", "", &format!("role/{n}-cloudtrail-logs")), self.arn("iam", "", &format!("role/{n}-forwarder"))],
            Res::Policies => vec![self.arn("iam", "", &format!("policy/{n}-ingest-worker")), self.arn("iam", "", &format!("policy/{n}-forwarder"))],
            Res::RecordPolicy => vec![crate::stack::record_policy_arn(p, &self.account, n)],
            Res::Domain => {
                let d = self.domain.clone().unwrap_or_else(|| n.clone());
                vec![self.arn("es", h, &format!("domain/{d}")), self.arn("es", h, &format!("domain/{d}/*"))]
            }
            // Secrets Manager appends `-` and six characters to the name (Ctx::secret_arn_pattern)
            Res::Secret => vec![self.arn("secretsmanager", h, &format!("secret:{n}/opensearch-basic-auth-??????"))],
            Res::LockParameter => vec![crate::lock::parameter_arn(p, h, &self.account, n)],
        };
        v.sort();
        v
    }
}

/// The declarations that apply to `cmd` with `features`.
pub fn applicable(cmd: Cmd, features: &[Feature], stack_only: bool) -> Vec<Permission> {
    all()
        .into_iter()
        .flat_map(|(_, ps)| ps.iter().copied())
        .filter(|p| p.cmds.contains(&cmd) && p.only.iter().all(|f| features.contains(f)) && (!stack_only || p.on.stack_own()))
        .collect()
}

/// The IAM policy document for `cmd`: one statement per resource group, Sids stable, actions and resources sorted.
pub fn policy(cmd: Cmd, features: &[Feature], stack_only: bool, names: &Names) -> Value {
    let mut groups: BTreeMap<Res, BTreeSet<&'static str>> = BTreeMap::new();
    for p in applicable(cmd, features, stack_only) {
        groups.entry(p.on).or_default().insert(p.action);
    }
    let statements: Vec<Value> = groups
        .into_iter()
        .map(|(res, actions)| {
            let arns = names.arns(res);
            json!({
                "Sid": res.sid(),
                "Effect": "Allow",
                "Action": actions.into_iter().collect::<Vec<_>>(),
                "Resource": if arns.len() == 1 { json!(arns[0]) } else { json!(arns) },
            })
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The policy as text: per statement, its actions, then its resources.
pub fn text(policy: &Value) -> String {
    let mut out = String::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        let list = |v: &Value| match v {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "),
            other => other.as_str().unwrap_or_default().to_string(),
        };
        out.push_str(&format!("{} on {}\n", list(&st["Action"]), list(&st["Resource"])));
    }
    out
}

/// The list in docs/init.md, "IAM permissions the caller needs": `init` without and with each feature, and the
/// other commands, with placeholder names.
pub fn docs_text() -> String {
    let names = Names {
        partition: "<partition>".into(),
        account: "<account>".into(),
        home: "<home>".into(),
        stack: "<name>".into(),
        bucket: None,
        domain: None,
    };
    let mut out = String::from("init (with --opensearch-url):\n");
    let base: BTreeSet<(String, String)> = pairs(&policy(Cmd::Init, &[], false, &names));
    out.push_str(&indent(&text(&policy(Cmd::Init, &[], false, &names))));
    for (f, flag) in [
        (Feature::Domain, "an OpenSearch Service domain (no --opensearch-url)"),
        (Feature::Kms, "--kms-key"),
        (Feature::BasicAuth, "--opensearch-auth basic"),
        (Feature::UseTrail, "--use-trail"),
    ] {
        let more = policy(Cmd::Init, &[f], false, &names);
        let extra: Vec<String> = pairs(&more).difference(&base).map(|(a, r)| format!("{a} on {r}")).collect();
        out.push_str(&format!("init with {flag}, in addition (`--with {}`):\n", clap::ValueEnum::to_possible_value(&f).map(|v| v.get_name().to_string()).unwrap_or_default()));
        for e in extra {
            out.push_str(&format!("  {e}\n"));
        }
    }
    for c in [Cmd::Status, Cmd::Backfill, Cmd::Ingest, Cmd::Destroy, Cmd::Search, Cmd::Dashboards] {
        out.push_str(&format!("{} (with --opensearch-url):\n", format!("{c:?}").to_lowercase()));
        out.push_str(&indent(&text(&policy(c, &[], false, &names))));
    }
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// (action, resource) pairs of a policy.
fn pairs(policy: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        let many = |v: &Value| -> Vec<String> {
            match v {
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                other => other.as_str().map(String::from).into_iter().collect(),
            }
        };
        for a in many(&st["Action"]) {
            for r in many(&st["Resource"]) {
                out.insert((a.clone(), r));
            }
        }
    }
    out
}

/// `trailsetup permissions`: print the policy. The account comes from `--account`, else (not `--offline`) from
/// STS GetCallerIdentity, else `*`; the home region from `--region`/`AWS_REGION`, else `*`.
pub async fn run(common: &crate::settings::Common, a: &crate::cli::PermissionsArgs) -> anyhow::Result<crate::error::Exit> {
    let home = common.region.clone().or_else(|| std::env::var("AWS_REGION").ok()).or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
    let mut partition = a.partition.clone().or_else(|| home.as_deref().map(|h| crate::aws::partition_of_region(h).to_string()));
    let account = match (&a.account, common.offline) {
        (Some(acc), _) => acc.clone(),
        (None, true) => "*".to_string(),
        (None, false) => {
            let cfg = crate::aws::sdk_config(common).await;
            let (acc, part, _) = crate::aws::identity(&cfg).await?;
            partition = partition.or(Some(part));
            acc
        }
    };
    let names = Names {
        partition: partition.unwrap_or_else(|| "aws".into()),
        account,
        home: home.unwrap_or_else(|| "*".into()),
        stack: a.name.clone().unwrap_or_else(|| crate::wizard::DEFAULT_NAME.to_string()),
        bucket: a.bucket.clone(),
        domain: a.opensearch_domain.clone(),
    };
    crate::init::validate_name(&names.stack)?;
    let doc = policy(a.for_cmd, &a.with, a.stack_only, &names);
    match a.format {
        crate::cli::PolicyFormat::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        crate::cli::PolicyFormat::Text => print!("{}", text(&doc)),
    }
    Ok(crate::error::Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            partition: "aws".into(),
            account: "123456789012".into(),
            home: "us-east-1".into(),
            stack: "trailsetup".into(),
            bucket: None,
            domain: None,
        }
    }

    /// Every `"svc:Action"` literal inside the calls `explain(..)`, `explain_code(..)`, `hint_for(..)` and
    /// `kms_permission(..)` of a Rust source.
    fn named_at_call_sites(src: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for call in ["explain(", "explain_code(", "hint_for(", "kms_permission("] {
            let mut from = 0;
            while let Some(i) = src[from..].find(call) {
                let start = from + i + call.len();
                let bytes = src.as_bytes();
                let (mut depth, mut j) = (1usize, start);
                while depth > 0 && j < bytes.len() {
                    match bytes[j] {
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                let inner = &src[start..j.min(src.len())];
                for lit in inner.split('"').skip(1).step_by(2) {
                    let is_action = lit.split_once(':').is_some_and(|(svc, act)| {
                        !svc.is_empty()
                            && svc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                            && act.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                            && act.chars().all(|c| c.is_ascii_alphanumeric())
                    });
                    if is_action {
                        out.insert(lit.to_string());
                    }
                }
                from = start;
            }
        }
        out
    }

    fn sources() -> Vec<(std::path::PathBuf, String)> {
        let mut out = Vec::new();
        let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("permissions.rs") {
                    let s = std::fs::read_to_string(&p).unwrap();
                    out.push((p, s));
                }
            }
        }
        out
    }

    #[test]
    fn every_action_named_at_a_call_site_is_declared_and_every_declared_action_is_used() {
        let declared: BTreeSet<&str> = all().iter().flat_map(|(_, ps)| ps.iter().map(|p| p.action)).collect();
        let mut called = BTreeSet::new();
        for (path, src) in sources() {
            for a in named_at_call_sites(&src) {
                assert!(declared.contains(a.as_str()), "{a} is named at a call site in {} but declared in no PERMISSIONS", path.display());
                called.insert(a);
            }
        }
        for a in crate::lock::ACTIONS {
            assert!(declared.contains(a), "lock::ACTIONS names {a}, which no PERMISSIONS declares");
            called.insert(a.to_string());
        }
        let excused: BTreeSet<&str> = NOT_AT_A_CALL_SITE.iter().map(|x| x.0).collect();
        for a in &declared {
            assert!(called.contains(*a) || excused.contains(a), "{a} is declared but no call site names it (nor NOT_AT_A_CALL_SITE)");
        }
        for a in &excused {
            assert!(declared.contains(a), "NOT_AT_A_CALL_SITE lists {a}, which is not declared");
            assert!(!called.contains(*a), "{a} is named at a call site: drop it from NOT_AT_A_CALL_SITE");
        }
    }

    #[test]
    fn the_scanner_finds_actions_in_explain_calls() {
        let s = r#"x.map_err(|e| explain(e, &format!("a {b}"), "sqs:CreateQueue"))?; hint_for(code, "iam:GetRole");"#;
        assert_eq!(named_at_call_sites(s), ["iam:GetRole", "sqs:CreateQueue"].iter().map(|x| x.to_string()).collect());
    }

    #[test]
    fn init_policy_is_narrow_and_stable() {
        let p = policy(Cmd::Init, &[], false, &names());
        let sts: Vec<&Value> = p["Statement"].as_array().unwrap().iter().collect();
        let sids: Vec<&str> = sts.iter().map(|s| s["Sid"].as_str().unwrap()).collect();
        let mut sorted = sids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sids.len(), sorted.len());
        let any = sts.iter().find(|s| s["Sid"] == "Any").unwrap();
        for a in any["Action"].as_array().unwrap() {
            assert!(
                ["sts:GetCallerIdentity", "ec2:DescribeRegions", "s3:ListAllMyBuckets", "sns:ListSubscriptions", "cloudtrail:DescribeTrails", "cloudtrail:ListTrails", "logs:DescribeLogGroups"]
                    .contains(&a.as_str().unwrap()),
                "{a} on *"
            );
        }
        let bucket = sts.iter().find(|s| s["Sid"] == "Bucket").unwrap();
        assert_eq!(bucket["Resource"], "arn:aws:s3:::trailsetup-123456789012-us-east-1");
        assert!(!p.to_string().contains("es:CreateDomain"), "no domain without --with domain");
        let lock = sts.iter().find(|s| s["Sid"] == "LockParameter").unwrap();
        assert_eq!(lock["Resource"], "arn:aws:ssm:us-east-1:123456789012:parameter/trailsetup/trailsetup/lock");
    }

    /// An ARN pattern of the Service Authorization Reference (`arn:${Partition}:s3:::${BucketName}`) as tokens:
    /// literal text, and `${Variable}`s.
    fn arn_tokens(pattern: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut rest = pattern;
        while let Some(i) = rest.find("${") {
            let j = rest[i..].find('}').map(|j| i + j).expect("unclosed ${ in an ARN pattern");
            if i > 0 {
                out.push((false, &rest[..i]));
            }
            out.push((true, &rest[i + 2..j]));
            rest = &rest[j + 1..];
        }
        if !rest.is_empty() {
            out.push((false, rest));
        }
        out
    }

    /// Does `arn` (which may hold IAM wildcards) have the form of `pattern`? A variable stands for one or more
    /// characters other than `:` (and, for a bucket name, `/`, which would make it an object's ARN).
    fn arn_has_form(tokens: &[(bool, &str)], arn: &str) -> bool {
        match tokens.split_first() {
            None => arn.is_empty(),
            Some(((false, lit), rest)) => arn.strip_prefix(lit).is_some_and(|r| arn_has_form(rest, r)),
            Some(((true, var), rest)) => {
                for (i, c) in arn.char_indices() {
                    if c == ':' || (*var == "BucketName" && c == '/') {
                        return false;
                    }
                    if arn_has_form(rest, &arn[i + c.len_utf8()..]) {
                        return true;
                    }
                }
                false
            }
        }
    }

    #[test]
    fn the_arn_form_check_tells_buckets_objects_and_groups_apart() {
        let bucket = arn_tokens("arn:${Partition}:s3:::${BucketName}");
        let object = arn_tokens("arn:${Partition}:s3:::${BucketName}/${ObjectName}");
        assert!(arn_has_form(&bucket, "arn:aws:s3:::b") && !arn_has_form(&bucket, "arn:aws:s3:::b/*"));
        assert!(arn_has_form(&object, "arn:aws:s3:::b/*") && !arn_has_form(&object, "arn:aws:s3:::b"));
        let group = arn_tokens("arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}");
        assert!(arn_has_form(&group, "arn:aws:logs:*:1:log-group:/aws/x") && !arn_has_form(&group, "arn:aws:logs:*:1:log-group:/aws/x:*"));
        let key = arn_tokens("arn:${Partition}:kms:${Region}:${Account}:key/${KeyId}");
        assert!(!arn_has_form(&key, "arn:aws:kms:*:1:alias/x"));
    }

    /// tests/iam_reference.json holds, for every declared action, the resource types the Service Authorization
    /// Reference lists (and the ARN form of each), as checked when the declarations were reviewed
    /// (scripts/iam_reference.py writes it; the file names its sources and their dates). Each declaration must
    /// follow it: `*` (Res::Any) only for an action with no resource type; otherwise the statement's ARNs of that
    /// action's service each have the form of one of the service's resource types, at least one has the form of
    /// a type the action lists, and every type it requires (`*`) is covered.
    #[test]
    fn declarations_follow_the_service_authorization_reference() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iam_reference.json");
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let types = reference["resource_types"].as_object().unwrap();
        // "<prefix>:<type>" → (the ARN pattern's tokens, its service segment, the extra suffix allowed)
        type Form<'a> = (Vec<(bool, &'a str)>, &'a str, Option<&'a str>);
        let forms: BTreeMap<&str, Form> = types
            .iter()
            .map(|(k, v)| {
                let arn = v["arn"].as_str().unwrap();
                (k.as_str(), (arn_tokens(arn), arn.split(':').nth(2).unwrap(), v["suffix"].as_str()))
            })
            .collect();
        let has_form = |key: &str, arn: &str| {
            let (tokens, _, suffix) = &forms[key];
            arn_has_form(tokens, arn) || suffix.and_then(|s| arn.strip_suffix(s)).is_some_and(|a| arn_has_form(tokens, a))
        };
        let names = names();
        let mut failures = Vec::new();
        for (module, ps) in all() {
            for p in ps {
                let what = format!("{module}: {} on Res::{:?}", p.action, p.on);
                let Some(entry) = reference["actions"].get(p.action) else {
                    failures.push(format!("{what}: not in tests/iam_reference.json (no such action, or not looked up: add it from the Service Authorization Reference)"));
                    continue;
                };
                let (prefix, _) = p.action.split_once(':').unwrap();
                let listed: Vec<&str> = entry["resource_types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
                if p.on == Res::Any {
                    if !listed.is_empty() {
                        failures.push(format!("{what}: the reference lists resource types {listed:?}: narrow it to one"));
                    }
                    continue;
                }
                if listed.is_empty() {
                    failures.push(format!("{what}: the reference lists no resource type, so only `*` matches it (Res::Any)"));
                    continue;
                }
                let key = |t: &str| format!("{prefix}:{}", t.trim_end_matches('*'));
                let services: BTreeSet<&str> = listed.iter().map(|t| forms[key(t).as_str()].1).collect();
                let arns: Vec<String> = names.arns(p.on).into_iter().filter(|a| a.split(':').nth(2).is_some_and(|s| services.contains(s))).collect();
                if arns.is_empty() {
                    failures.push(format!("{what}: no ARN of the action's service ({services:?}) in {:?}", names.arns(p.on)));
                    continue;
                }
                let service_types: Vec<&str> = forms.keys().copied().filter(|k| k.starts_with(&format!("{prefix}:"))).collect();
                for a in &arns {
                    if !service_types.iter().any(|k| has_form(k, a)) {
                        failures.push(format!("{what}: {a} has the form of no resource type of {prefix} ({service_types:?})"));
                    }
                }
                if !listed.iter().any(|t| arns.iter().any(|a| has_form(&key(t), a))) {
                    failures.push(format!("{what}: none of {arns:?} has the form of {listed:?}"));
                }
                if entry.get("one_of").is_none() {
                    for t in listed.iter().filter(|t| t.ends_with('*')) {
                        if !arns.iter().any(|a| has_form(&key(t), a)) {
                            failures.push(format!("{what}: the required resource type {t} is not covered by {arns:?}"));
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "declarations against tests/iam_reference.json:\n{}", failures.join("\n"));
    }

    #[test]
    fn stack_only_drops_account_wide_reads() {
        let p = policy(Cmd::Init, &Feature::value_variants_vec(), true, &names());
        for st in p["Statement"].as_array().unwrap() {
            let r = st["Resource"].to_string();
            assert!(!r.contains("\"*\"") && !r.contains("log-group:*\"") && !r.contains("user/*"), "{st}");
        }
    }

    #[test]
    fn ingest_needs_no_write_to_the_stack() {
        let p = policy(Cmd::Ingest, &[], false, &names()).to_string();
        for bad in ["Create", "Delete\"", "Put", "Tag"] {
            assert!(!p.contains(&format!(":{bad}")), "{bad} in {p}");
        }
    }

    impl Feature {
        fn value_variants_vec() -> Vec<Feature> {
            <Feature as clap::ValueEnum>::value_variants().to_vec()
        }
    }

    /// docs/init.md's list is this text; TRAILSETUP_BLESS_DOCS=1 rewrites it.
    #[test]
    fn docs_list_is_generated() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/init.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- permissions:begin (generated by `cargo test permissions`; TRAILSETUP_BLESS_DOCS=1 rewrites) -->\n```\n", "```\n<!-- permissions:end -->");
        let i = doc.find(begin).expect("docs/init.md has no permissions:begin marker") + begin.len();
        let j = doc[i..].find(end).expect("docs/init.md has no permissions:end marker") + i;
        let want = docs_text();
        if doc[i..j] != want {
            if std::env::var_os("TRAILSETUP_BLESS_DOCS").is_some() {
                std::fs::write(&path, format!("{}{}{}", &doc[..i], want, &doc[j..])).unwrap();
            } else {
                panic!("docs/init.md's permission list is out of date; run TRAILSETUP_BLESS_DOCS=1 cargo test --release --lib permissions");
            }
        }
    }
}
