//! AWS's documented rules, checked over a plan before it is shown or applied.
//!
//! moto (and the SDK) accept values and policies that AWS refuses or that silently lose events; these rules
//! encode what AWS's documentation says, each naming the page it comes from. `init` refuses a plan that breaks
//! one (an internal error: nothing is changed), and the test suite runs every rule over plans for many
//! account shapes (both trail modes, home regions, KMS, opt-in regions, assumed-role callers, adopted
//! resources), requiring each rule to find something to check in every plan, so that none passes vacuously.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cli::TrailMode;
use crate::plan::{Action, Change, Plan};
use crate::resources::{global_events_region, kms, opensearch, Ctx, OpenSearchTarget};

/// One rule: its name, the AWS documentation page it encodes, and its check.
pub struct Rule {
    pub name: &'static str,
    pub doc: &'static str,
    pub check: fn(&Ctx, &Plan, &mut Checker),
}

/// What a rule saw: how many things it checked, and what was wrong.
#[derive(Default)]
pub struct Checker {
    pub checked: usize,
    pub violations: Vec<String>,
}

impl Checker {
    /// Count one check; record `msg` when `ok` is false.
    pub fn ok(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations.push(msg());
        }
    }
}

#[derive(Default)]
pub struct Report {
    /// rule name → number of things checked
    pub checked: BTreeMap<&'static str, usize>,
    /// "<rule> (<doc>): <what is wrong>"
    pub violations: Vec<String>,
}

pub fn check(ctx: &Ctx, plan: &Plan) -> Report {
    let mut r = Report::default();
    for rule in RULES {
        let mut c = Checker::default();
        (rule.check)(ctx, plan, &mut c);
        r.checked.insert(rule.name, c.checked);
        r.violations.extend(c.violations.into_iter().map(|v| format!("{} ({}): {v}", rule.name, rule.doc)));
    }
    r
}

// --- helpers over plans and policies ---

fn of_kind<'a>(plan: &'a Plan, kind: &'a str) -> impl Iterator<Item = &'a Change> + 'a {
    plan.changes.iter().filter(move |c| c.kind == kind)
}

/// The plan's domain changes; none is right only when the sink is a URL, not a domain.
fn domain_changes<'a>(ctx: &Ctx, plan: &'a Plan, c: &mut Checker) -> Vec<&'a Change> {
    let domains: Vec<&Change> = of_kind(plan, "opensearch-domain").collect();
    if domains.is_empty() {
        c.ok(matches!(ctx.opensearch, OpenSearchTarget::Url(_)), || "a domain target without a domain change".into());
    }
    domains
}

fn named<'a>(plan: &'a Plan, kind: &str, name: &str) -> Option<&'a Change> {
    plan.changes.iter().find(|c| c.kind == kind && c.name == name)
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn strings(v: &Value) -> Vec<String> {
    list(v).into_iter().filter_map(|x| x.as_str().map(String::from)).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn statements(policy: &Value) -> Vec<Value> {
    crate::resources::statements(policy)
}

fn statement<'a>(sts: &'a [Value], sid: &str) -> Option<&'a Value> {
    sts.iter().find(|s| s["Sid"] == sid)
}

/// A condition value, whatever the operator's case (`StringEquals`/`ArnEquals`/…), by key (case-insensitive).
fn condition(st: &Value, op: &str, key: &str) -> Vec<String> {
    st["Condition"][op]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| strings(v)))
        .unwrap_or_default()
}

/// Every policy document in a change's details (a policy is an object with `Statement`).
fn policies_in(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("Statement") {
                out.push(v.clone());
            }
            for x in m.values() {
                policies_in(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| policies_in(x, out)),
        _ => {}
    }
}

/// Every string in a JSON value.
fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings_in(x, out)
        }),
        _ => {}
    }
}

fn key_region(arn: &str) -> Option<String> {
    arn.starts_with("arn:").then(|| arn.split(':').nth(3).unwrap_or_default().to_string())
}

fn is_key_arn(arn: &str) -> bool {
    kms::parse_key_arn(arn).is_some()
}

/// `placeholders` offline: an alias that could not be resolved is allowed, and said.
fn unresolved(ctx: &Ctx) -> bool {
    ctx.kms.as_ref().is_some_and(|k| !k.resolved)
}

// --- the rules ---

pub const RULES: &[Rule] = &[
    Rule {
        name: "cloudtrail-logs-role-trust",
        doc: "CloudTrail User Guide, \"Role policy document for CloudTrail to use CloudWatch Logs for monitoring\"",
        check: |ctx, plan, c| {
            // confused-deputy conditions are not supported on this role's trust: CloudTrail's delivery breaks with them
            if ctx.reuse.is_some() {
                return c.ok(named(plan, "iam-role", &ctx.logs_role()).is_none(), || "a reused trail delivers with its own role: no logs role".into());
            }
            let Some(role) = named(plan, "iam-role", &ctx.logs_role()) else { return c.ok(false, || "no CloudTrail → CloudWatch Logs role".into()) };
            for st in statements(&role.details["assume_role_policy"]) {
                c.ok(st["Principal"]["Service"] == "cloudtrail.amazonaws.com" && strings(&st["Action"]) == ["sts:AssumeRole"], || {
                    format!("trust statement must let cloudtrail.amazonaws.com sts:AssumeRole: {st}")
                });
                c.ok(st.get("Condition").is_none(), || format!("the trust statement must carry no condition (aws:SourceArn/aws:SourceAccount are not supported here): {st}"));
            }
        },
    },
    Rule {
        name: "cloudtrail-logs-role-permissions",
        doc: "CloudTrail User Guide, \"Role policy document for CloudTrail to use CloudWatch Logs for monitoring\"",
        check: |ctx, plan, c| {
            if ctx.reuse.is_some() {
                return c.ok(named(plan, "iam-role", &ctx.logs_role()).is_none(), || "a reused trail delivers with its own role: no logs role".into());
            }
            let Some(role) = named(plan, "iam-role", &ctx.logs_role()) else { return c.ok(false, || "no CloudTrail → CloudWatch Logs role".into()) };
            let policy = &role.details["inline_policies"][crate::resources::iam::INLINE_NAME];
            let mut resources = Vec::new();
            for st in statements(policy) {
                c.ok(sorted(strings(&st["Action"])) == ["logs:CreateLogStream", "logs:PutLogEvents"], || format!("only logs:CreateLogStream and logs:PutLogEvents: {st}"));
                resources.extend(strings(&st["Resource"]));
            }
            for r in ctx.trail_regions() {
                let stream = match ctx.trail_mode {
                    TrailMode::MultiRegion => format!("{}_CloudTrail_", ctx.account),
                    TrailMode::PerRegion => format!("{}_CloudTrail_{r}", ctx.account),
                };
                let want = format!("{}:log-stream:{stream}", ctx.log_group_arn_bare(&r));
                c.ok(resources.iter().any(|x| x.starts_with(&want) && x.ends_with('*')), || {
                    format!("the log streams of {r} must be named by CloudTrail's prefix {want}*: {resources:?}")
                });
            }
            c.ok(resources.iter().all(|x| x.contains(":log-stream:") && x.contains("_CloudTrail_")), || format!("resources wider than CloudTrail's streams: {resources:?}"));
        },
    },
    Rule {
        name: "global-service-events",
        doc: "CloudTrail User Guide, \"CloudTrail concepts\" → \"Global service events\" (delivered to trails in US East (N. Virginia))",
        check: |ctx, plan, c| {
            let g = global_events_region(&ctx.partition);
            if ctx.reuse.is_some() {
                // what a reused trail records is its owner's choice; the plan lists it
                return c.ok(of_kind(plan, "cloudtrail-trail").all(|t| t.details["reused"] == true), || "a trail of ours beside a reused one".into());
            }
            for t in of_kind(plan, "cloudtrail-trail") {
                let want = ctx.trail_mode == TrailMode::MultiRegion || t.region == g;
                c.ok(t.details["include_global_service_events"] == want, || {
                    format!("trail {} in {}: IncludeGlobalServiceEvents must be {want} (global events reach {g} only)", t.name, t.region)
                });
            }
            let any = of_kind(plan, "cloudtrail-trail").any(|t| t.details["include_global_service_events"] == true);
            c.ok(any || ctx.global_events_warning().is_some(), || "no trail records global service events and the plan does not warn".into());
        },
    },
    Rule {
        name: "forwarder-signs-for-domain-region",
        doc: "OpenSearch Service Developer Guide, \"Signing HTTP requests to Amazon OpenSearch Service\" (SigV4 credential scope = the domain's region)",
        check: |ctx, plan, c| {
            c.ok(of_kind(plan, "lambda-function").count() == ctx.forwarder_regions().len(), || "one forwarder per region with a log group to forward".into());
            for f in of_kind(plan, "lambda-function") {
                let env = &f.details["environment"];
                if env["OPENSEARCH_AUTH"] == "sigv4" {
                    let want = ctx.opensearch_region();
                    let host_region = env["OPENSEARCH_URL"].as_str().and_then(crate::resources::aws_endpoint).map(|x| x.1);
                    c.ok(env["OPENSEARCH_REGION"] == want.as_str() && host_region.is_none_or(|h| h == want), || {
                        format!("forwarder in {} signs for {} but the domain is in {want}", f.region, env["OPENSEARCH_REGION"])
                    });
                } else {
                    c.ok(env.get("OPENSEARCH_REGION").is_none(), || format!("forwarder in {}: OPENSEARCH_REGION without sigv4", f.region));
                }
            }
        },
    },
    Rule {
        name: "fgac-role-mapping",
        doc: "OpenSearch Service Developer Guide, \"Fine-grained access control in Amazon OpenSearch Service\" → mapping roles; OpenSearch \"Security plugin REST API\" (roles, rolesmapping)",
        check: |ctx, plan, c| {
            let fgac = of_kind(plan, "opensearch-domain").any(|d| d.details["fine_grained_access_control"] == true);
            let mappings: Vec<&Change> = of_kind(plan, "opensearch-role-mapping").collect();
            if fgac {
                c.ok(mappings.len() == 1, || format!("fine-grained access control is on: one role mapping must be planned, found {}", mappings.len()));
            }
            if matches!(ctx.opensearch, OpenSearchTarget::Domain(_)) && !fgac {
                c.ok(mappings.is_empty(), || "a role mapping on a domain without fine-grained access control".into());
            }
            if !fgac && mappings.is_empty() {
                c.ok(true, String::new);
            }
            for m in mappings {
                let reqs = list(&m.details["requests"]);
                let role = ctx.writer_role();
                c.ok(reqs.len() == 2 && reqs.iter().all(|r| r["method"] == "PUT"), || format!("two PUT requests expected: {reqs:?}"));
                c.ok(reqs.first().is_some_and(|r| r["path"] == format!("_plugins/_security/api/roles/{role}")), || format!("first request must create the role: {reqs:?}"));
                c.ok(reqs.get(1).is_some_and(|r| r["path"] == format!("_plugins/_security/api/rolesmapping/{role}")), || format!("second request must map it: {reqs:?}"));
                let body = reqs.get(1).map(|r| r["body"].clone()).unwrap_or_default();
                let backend = strings(&body["backend_roles"]);
                let need = ctx.writer_roles();
                c.ok(need.iter().all(|n| backend.contains(n)), || format!("backend_roles {backend:?} must hold {need:?}"));
                c.ok(body["hosts"].is_array() && body["users"].is_array(), || format!("rolesmapping body needs backend_roles, hosts, users: {body}"));
                let rb = reqs.first().map(|r| r["body"].clone()).unwrap_or_default();
                let ip = list(&rb["index_permissions"]);
                c.ok(
                    ip.iter().any(|p| strings(&p["index_patterns"]).contains(&format!("{}-*", ctx.index_prefix))
                        && ["crud", "create_index"].iter().all(|a| strings(&p["allowed_actions"]).iter().any(|x| x == a))),
                    || format!("the role must write and create {}-*: {rb}", ctx.index_prefix),
                );
                let cp = strings(&rb["cluster_permissions"]);
                c.ok(cp.iter().any(|p| p == "cluster_composite_ops" || p == "indices:data/write/bulk"), || format!("the role must allow _bulk: {cp:?}"));
                c.ok(cp.iter().any(|p| p == "cluster_manage_index_templates" || p == "indices:admin/index_template/put"), || format!("the role must allow the index template: {cp:?}"));
            }
        },
    },
    Rule {
        name: "ingest-worker-es-actions",
        doc: "OpenSearch Service Developer Guide, \"Identity and Access Management in Amazon OpenSearch Service\" (es:ESHttp* on domain/<name>/<path>)",
        check: |ctx, plan, c| {
            let Some(p) = named(plan, "iam-policy", &ctx.ingest_policy()) else { return c.ok(false, || "no ingest-worker policy".into()) };
            let sts = statements(&p.details["policy"]);
            match ctx.forwarder_index_arn() {
                Some(index) => {
                    let st = statement(&sts, "IndexDocuments");
                    c.ok(st.is_some_and(|s| sorted(strings(&s["Action"])) == ["es:ESHttpPost", "es:ESHttpPut"] && strings(&s["Resource"]) == [index.clone()]),
                        || format!("the ingest worker must post/put to {index} only: {st:?}"));
                    c.ok(sts.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("es:")))
                        .all(|s| strings(&s["Resource"]).iter().all(|r| r.contains(":domain/"))), || "es: actions on something else than a domain path".into());
                }
                None => c.ok(!sts.iter().any(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("es:"))), || "es: actions for a sink that is not an AWS domain".into()),
            }
        },
    },
    Rule {
        name: "principals-are-iam-users-or-roles",
        doc: "IAM User Guide, \"AWS JSON policy elements: Principal\" (role sessions vs roles); OpenSearch Service \"Fine-grained access control\" (master user ARN)",
        check: |ctx, plan, c| {
            if matches!(ctx.opensearch, OpenSearchTarget::Domain(_)) {
                c.ok(!ctx.principal_arn.contains(":sts::"), || format!("the caller principal {} is a session, not a user or role", ctx.principal_arn));
            }
            for d in of_kind(plan, "opensearch-domain") {
                if let Some(m) = d.details["master_user_arn"].as_str() {
                    c.ok(m.contains(":iam::") && (m.contains(":role/") || m.contains(":user/")), || format!("MasterUserARN {m} must be an IAM user or role"));
                }
            }
            for r in of_kind(plan, "iam-role") {
                for st in statements(&r.details["assume_role_policy"]) {
                    let svc = strings(&st["Principal"]["Service"]);
                    c.ok(!svc.is_empty() && svc.iter().all(|s| s.ends_with(".amazonaws.com")), || format!("role {} is assumed by {st}", r.name));
                }
            }
            for b in of_kind(plan, "opensearch-role-mapping") {
                for a in strings(&b.details["mapping_body"]["backend_roles"]) {
                    c.ok(a.contains(":iam::") && a.contains(":role/"), || format!("backend role {a} is not an IAM role ARN"));
                }
            }
            let mut all = Vec::new();
            for ch in &plan.changes {
                policies_in(&ch.details, &mut all);
            }
            // and the statements printed for the owners of resources in other accounts
            for a in crate::resources::reuse::owner_actions(ctx) {
                all.push(json!({"Statement": a["statements"].clone()}));
            }
            for p in all {
                for st in statements(&p) {
                    for a in strings(&st["Principal"]["AWS"]) {
                        c.ok(!a.contains(":sts::") && !a.contains(":assumed-role/"), || format!("policy principal {a} is a session ARN"));
                    }
                    for svc in strings(&st["Principal"]["Service"]) {
                        c.ok(svc.ends_with(".amazonaws.com") || svc.ends_with(".amazonaws.com.cn"), || format!("service principal {svc} is not a service"));
                    }
                }
            }
        },
    },
    Rule {
        name: "kms-key-policies",
        doc: "CloudTrail \"Configure AWS KMS key policies for CloudTrail\"; SNS \"Enable compatibility between event sources from AWS services and encrypted topics\"; SQS \"Key management\"; CloudWatch Logs \"Encrypt log data in CloudWatch Logs using AWS Key Management Service\"",
        check: |ctx, plan, c| {
            let Some(k) = &ctx.kms else {
                c.ok(of_kind(plan, "kms-key-policy").next().is_none(), || "key policy changes without a key".into());
                return;
            };
            for (region, arn) in &k.keys {
                if kms::required_statements(ctx, region).is_empty() {
                    c.ok(of_kind(plan, "kms-key-policy").all(|x| &x.name != arn), || format!("key {arn} needs no statement of ours, yet its policy is planned"));
                    continue;
                }
                let ch = of_kind(plan, "kms-key-policy").find(|x| &x.name == arn);
                c.ok(ch.is_some(), || format!("no kms-key-policy change for {arn}"));
                let Some(ch) = ch else { continue };
                let sts = if ch.details.get("policy").is_some() { statements(&ch.details["policy"]) } else { statements(&ch.details["policy_statements"]) };
                for want in kms::required_statements(ctx, region) {
                    let sid = want["Sid"].as_str().unwrap_or_default();
                    let have = statement(&sts, sid);
                    c.ok(have == Some(&want), || format!("key {arn}: statement {sid} missing or different"));
                    c.ok(want.get("Condition").is_some() && want["Principal"]["Service"] != Value::Null, || format!("key {arn}: {sid} must name a service and a condition"));
                }
                let mut need: Vec<String> = Vec::new();
                if *region == ctx.home && !ctx.trail_arns().is_empty() {
                    need.push(ctx.sid("CloudTrailEncryptLogs"));
                }
                if *region == ctx.home && !ctx.topic_arns().is_empty() {
                    need.push(ctx.sid("SnsToQueue"));
                }
                if *region == ctx.home && ctx.notification_bucket().is_some() {
                    need.push(ctx.sid("BucketToQueue"));
                }
                for sid in need {
                    c.ok(statement(&sts, &sid).is_some(), || format!("key {arn} in the home region needs {sid}"));
                }
                if ctx.trail_regions().contains(region) {
                    c.ok(statement(&sts, &ctx.sid("CloudWatchLogs")).is_some_and(|s| s["Principal"]["Service"].as_str().is_some_and(|p| p.starts_with(&format!("logs.{region}.")))),
                        || format!("key {arn}: CloudWatch Logs of {region} must be the regional principal logs.{region}.amazonaws.com"));
                }
            }
        },
    },
    Rule {
        name: "kms-keys-are-regional",
        doc: "AWS KMS Developer Guide, \"Multi-Region keys in AWS KMS\"; CloudTrail \"Encrypting CloudTrail log files with AWS KMS keys\" (the key and the bucket in the same Region)",
        check: |ctx, plan, c| {
            let refs = key_refs(plan);
            if ctx.kms.is_none() {
                c.ok(refs.is_empty(), || format!("resources name KMS keys without --kms-key: {refs:?}"));
                for b in of_kind(plan, "s3-bucket").filter(|b| b.details["reused"] != true) {
                    c.ok(b.details["encryption"]["algorithm"] == "AES256", || "the bucket must default to SSE-S3".into());
                }
                return;
            }
            for (kind, region, key) in refs {
                let want = if kind == "cloudtrail-trail" { ctx.home.clone() } else { region.clone() };
                c.ok(key_region(&key).as_deref() == Some(want.as_str()), || format!("{kind} in {region} uses key {key}, which is not in {want}"));
            }
            for p in of_kind(plan, "iam-policy") {
                for st in statements(&p.details["policy"]) {
                    if strings(&st["Action"]).iter().any(|a| a.starts_with("kms:")) {
                        let keys = strings(&st["Resource"]);
                        c.ok(keys.iter().all(|k| is_key_arn(k) || (unresolved(ctx) && k.ends_with(":key/*"))), || format!("policy {} names keys that are not key ARNs: {keys:?}", p.name));
                    }
                }
            }
        },
    },
    Rule {
        name: "kms-key-arns-not-aliases",
        doc: "CloudWatch Logs API Reference, \"CreateLogGroup\"/\"AssociateKmsKey\" (kmsKeyId: the ARN of the key); CloudTrail API Reference, \"GetTrail\" (KmsKeyId is reported as the key ARN)",
        check: |ctx, plan, c| {
            let refs = key_refs(plan);
            if refs.is_empty() {
                c.ok(ctx.kms.is_none(), || "a key was given but no resource uses it".into());
            }
            for (kind, region, key) in refs {
                c.ok(is_key_arn(&key) || unresolved(ctx), || format!("{kind} in {region} names {key}: resolve it to a key ARN (kms:DescribeKey)"));
            }
        },
    },
    Rule {
        name: "sns-cross-region-opt-in",
        doc: "Amazon SNS Developer Guide, \"Sending Amazon SNS messages to an Amazon SQS queue or AWS Lambda function in a different Region\" (opt-in Region topics: principal sns.<region>.amazonaws.com)",
        check: |ctx, plan, c| {
            let Some(q) = named(plan, "sqs-queue-policy", &ctx.queue_name()) else { return c.ok(false, || "no queue policy".into()) };
            let sts = statements(&q.details["policy"]);
            let sns_statements = sts.iter().filter(|s| strings(&s["Principal"]["Service"]).iter().any(|p| p.starts_with("sns."))).count();
            c.ok(sns_statements == ctx.notification_topics().len(), || format!("{sns_statements} SNS statements for {} topics", ctx.notification_topics().len()));
            for (r, topic) in ctx.notification_topics() {
                let st = sts.iter().find(|s| condition(s, "ArnEquals", "aws:SourceArn") == [topic.clone()]);
                let want = if r != ctx.home && ctx.is_opt_in(&r) { format!("sns.{r}.amazonaws.com") } else { "sns.amazonaws.com".into() };
                c.ok(st.is_some_and(|s| strings(&s["Principal"]["Service"]) == [want.clone()]), || {
                    format!("the topic of {r} delivers to the queue only if its statement names the principal {want}: {st:?}")
                });
            }
        },
    },
    Rule {
        name: "adopted-policies-keep-their-statements",
        doc: "Amazon OpenSearch Service Developer Guide, \"Identity and Access Management\" (resource-based policies); Amazon S3 User Guide, \"Bucket policies\" (one policy per bucket: writing it replaces it)",
        check: |ctx, plan, c| {
            let mut pairs: Vec<(&Change, &str)> = Vec::new();
            for b in of_kind(plan, "s3-bucket-policy") {
                pairs.push((b, "policy"));
            }
            for d in of_kind(plan, "opensearch-domain") {
                pairs.push((d, "access_policy"));
            }
            for k in of_kind(plan, "kms-key-policy").filter(|k| k.details.get("policy").is_some()) {
                pairs.push((k, "policy"));
            }
            if pairs.is_empty() {
                c.ok(matches!(ctx.opensearch, OpenSearchTarget::Url(_)), || "no bucket or domain policy planned".into());
            }
            for (ch, field) in pairs {
                let want = statements(&ch.details[field]);
                let have = ch.current.as_ref().map(|cur| statements(&cur[field])).unwrap_or_default();
                // everything that is not this stack's own (a person's, another stack's on a shared resource) stays
                for st in have.iter().filter(|s| !s["Sid"].as_str().is_some_and(|x| ctx.owns_sid(x))) {
                    c.ok(want.contains(st), || format!("{} {}: the existing statement {st} would be dropped", ch.kind, ch.name));
                }
                c.ok(want.iter().any(|s| s["Sid"].as_str().is_some_and(|x| ctx.owns_sid(x))), || format!("{} {}: our statements are missing", ch.kind, ch.name));
                // two stacks on one key, domain or bucket: each statement of ours names this stack
                for st in want.iter().filter(|s| s["Sid"].as_str().is_some_and(|x| x.starts_with("Trailsetup") && ctx.owns_sid(x))) {
                    c.ok(st["Sid"].as_str().is_some_and(|x| x.ends_with(&ctx.stack_sid())), || format!("{} {}: statement {} does not name stack {}", ch.kind, ch.name, st["Sid"], ctx.stack));
                }
            }
        },
    },
    Rule {
        name: "opensearch-domain-settings",
        doc: "Amazon OpenSearch Service API Reference, \"CreateDomain\"/\"DomainEndpointOptions\" (TLSSecurityPolicy values, EngineVersion format); Developer Guide, \"Encryption of data at rest\" (cannot be disabled once on)",
        check: |ctx, plan, c| {
            for d in domain_changes(ctx, plan, c) {
                let tls = d.details["tls_security_policy"].as_str().unwrap_or_default();
                c.ok(tls == opensearch::TLS_POLICY && opensearch::TLS_POLICIES.contains(&tls), || format!("TLS policy {tls:?}: use {}", opensearch::TLS_POLICY));
                let v = d.details["engine_version"].as_str().unwrap_or_default();
                c.ok(engine_version_ok(v), || format!("engine version {v:?} is not OpenSearch_<major>.<minor>"));
                c.ok(d.details["encryption_at_rest"] == true && d.details["node_to_node_encryption"] == true && d.details["enforce_https"] == true, || "domain must encrypt at rest, node to node, and require HTTPS".into());
                if let Some(cur) = &d.current {
                    for k in ["engine_version", "instance_type", "instance_count", "fine_grained_access_control"] {
                        c.ok(cur[k] == d.details[k], || format!("adopted domain {}: {k} must be kept as it is", d.name));
                    }
                    c.ok(d.details.get("master_user_arn").is_none(), || format!("adopted domain {}: the master user is never changed", d.name));
                }
            }
        },
    },
    Rule {
        name: "opensearch-zone-awareness",
        doc: "Amazon OpenSearch Service Developer Guide, \"Configuring a multi-AZ domain in Amazon OpenSearch Service\" \
              (https://docs.aws.amazon.com/opensearch-service/latest/developerguide/managedomains-multiaz.html: nodes spread over two or \
              three zones, three zones with a multiple of three data nodes); Amazon Elasticsearch Service Developer Guide, \"Enabling zone \
              awareness\" (\"Zone awareness requires an even number of instances\"; CreateDomain: \"You must choose an even number of data \
              nodes for a two Availability Zone deployment\"); API Reference, \"ZoneAwarenessConfig\" \
              (https://docs.aws.amazon.com/opensearch-service/latest/APIReference/API_ZoneAwarenessConfig.html: AvailabilityZoneCount 2 or 3)",
        check: |ctx, plan, c| {
            for d in domain_changes(ctx, plan, c) {
                if let Some(cur) = &d.current {
                    // an adopted domain keeps its layout
                    for k in ["zone_awareness_enabled", "availability_zone_count"] {
                        c.ok(cur[k] == d.details[k], || format!("adopted domain {}: {k} must be kept as it is", d.name));
                    }
                    continue;
                }
                let n = d.details["instance_count"].as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0);
                let enabled = d.details["zone_awareness_enabled"] == true;
                let azs = d.details["availability_zone_count"].as_i64();
                match opensearch::availability_zones(n) {
                    None => c.ok(false, || format!("domain {}: {n} data nodes spread evenly over neither 2 zones (even) nor 3 (multiple of 3)", d.name)),
                    Some(1) => c.ok(!enabled && azs.is_none(), || format!("domain {}: one data node, one zone: zone awareness off, got {enabled} / {azs:?}", d.name)),
                    Some(z) => {
                        c.ok(enabled && azs == Some(i64::from(z)), || format!("domain {}: {n} data nodes go over {z} zones: ZoneAwarenessEnabled and AvailabilityZoneCount {z}, got {enabled} / {azs:?}", d.name));
                        c.ok(n % z == 0, || format!("domain {}: {n} data nodes do not divide over {z} zones", d.name));
                    }
                }
            }
        },
    },
    Rule {
        name: "opensearch-instance-type-limits",
        doc: "Amazon OpenSearch Service Developer Guide, \"Supported instance types in Amazon OpenSearch Service\" \
              (https://docs.aws.amazon.com/opensearch-service/latest/developerguide/supported-instance-types.html: current generation types); \
              \"Amazon OpenSearch Service quotas\" (https://docs.aws.amazon.com/opensearch-service/latest/developerguide/limits.html: 80 \
              instances per domain, T2/T3 at most 10 data nodes, the EBS volume size each type takes); \"Configuring a multi-AZ domain\" \
              (Multi-AZ with Standby only on m5, c5, r5, r6g, c6g, m6g, r6gd and i3, with dedicated master nodes); \"UltraWarm storage\" and \
              \"Cold storage\" (not with T2 or T3 data nodes)",
        check: |ctx, plan, c| {
            for d in domain_changes(ctx, plan, c) {
                if let Some(cur) = &d.current {
                    // an adopted domain keeps its size; nothing of ours to judge
                    c.ok(cur["instance_type"] == d.details["instance_type"] && d.details.get("monthly_estimate").is_none(),
                        || format!("adopted domain {}: its instance type is kept and not estimated", d.name));
                    continue;
                }
                let ty = d.details["instance_type"].as_str().unwrap_or_default();
                let Some(t) = crate::resources::pricing::lookup(ty) else {
                    c.ok(false, || format!("domain {}: {ty:?} is not a current-generation type trailsetup offers", d.name));
                    continue;
                };
                let n = d.details["instance_count"].as_i64().unwrap_or(0);
                let max = if t.burstable() { opensearch::MAX_BURSTABLE_INSTANCES } else { opensearch::MAX_INSTANCES };
                c.ok((1..=i64::from(max)).contains(&n), || format!("domain {}: {n} data nodes of {ty}: 1 to {max}", d.name));
                let gib = d.details["ebs_gib"].as_i64().unwrap_or(0);
                c.ok((i64::from(t.min_ebs_gib)..=i64::from(t.max_gp3_gib)).contains(&gib),
                    || format!("domain {}: {gib} GiB of gp3 per {ty} node: {} to {} GiB", d.name, t.min_ebs_gib, t.max_gp3_gib));
                // no standby: T3 cannot have it, and it needs three dedicated master nodes we do not create
                c.ok(d.details["multi_az_with_standby"] == false, || format!("domain {}: Multi-AZ with Standby needs dedicated master nodes (and no T3)", d.name));
                c.ok(d.details.get("warm_enabled").is_none() && d.details.get("cold_storage").is_none(), || format!("domain {}: no UltraWarm or cold storage", d.name));
            }
        },
    },
    Rule {
        name: "unreachable-endpoint-is-not-a-change",
        doc: "Amazon OpenSearch Service Developer Guide, \"Launching your Amazon OpenSearch Service domains within a VPC\" (a VPC domain's endpoint is reachable only from the VPC)",
        check: |_ctx, plan, c| {
            let t: Vec<&Change> = of_kind(plan, "opensearch-index-template").collect();
            c.ok(t.len() == 1, || format!("one index template change expected, found {}", t.len()));
            for ch in plan.changes.iter().filter(|x| x.details["unreachable"] == true) {
                c.ok(ch.action == Action::NoOp, || format!("{} {} is unreachable from here and must not be planned as a change", ch.kind, ch.name));
            }
        },
    },
    Rule {
        name: "bucket-policy-for-cloudtrail",
        doc: "CloudTrail User Guide, \"Amazon S3 bucket policy for CloudTrail\"; Amazon S3 User Guide, \"Enforce encryption in transit\" (aws:SecureTransport)",
        check: |ctx, plan, c| {
            if ctx.reuse.is_some() {
                // a reused trail's bucket already admits it; its policy is not ours to write
                return c.ok(of_kind(plan, "s3-bucket-policy").next().is_none(), || "a bucket policy change on a reused trail's bucket".into());
            }
            let Some(b) = named(plan, "s3-bucket-policy", &ctx.bucket) else { return c.ok(false, || "no bucket policy".into()) };
            let sts = statements(&b.details["policy"]);
            let trails = sorted(ctx.trail_arns());
            let acl = statement(&sts, &ctx.sid("CloudTrailAclCheck"));
            c.ok(acl.is_some_and(|s| s["Action"] == "s3:GetBucketAcl" && sorted(condition(s, "StringEquals", "aws:SourceArn")) == trails), || format!("ACL check limited to {trails:?}: {acl:?}"));
            let w = statement(&sts, &ctx.sid("CloudTrailWrite"));
            c.ok(
                w.is_some_and(|s| s["Resource"] == format!("arn:{}:s3:::{}/AWSLogs/{}/*", ctx.partition, ctx.bucket, ctx.account)
                    && condition(s, "StringEquals", "s3:x-amz-acl") == ["bucket-owner-full-control"]
                    && sorted(condition(s, "StringEquals", "aws:SourceArn")) == trails),
                || format!("write statement (AWSLogs/<account>/*, bucket-owner-full-control, aws:SourceArn): {w:?}"),
            );
            let d = statement(&sts, &ctx.sid("DenyInsecureTransport"));
            c.ok(d.is_some_and(|s| s["Effect"] == "Deny" && condition(s, "Bool", "aws:SecureTransport") == ["false"]), || "TLS-only deny missing".into());
        },
    },
    Rule {
        name: "topic-and-queue-policies-limited-by-source-arn",
        doc: "CloudTrail User Guide, \"Amazon SNS topic policy for CloudTrail\"; Amazon SNS Developer Guide, \"Fanout to Amazon SQS queues\" (queue policy with aws:SourceArn)",
        check: |ctx, plan, c| {
            for t in of_kind(plan, "sns-topic-policy") {
                let st = statement(&statements(&t.details["policy"]), &ctx.sid("CloudTrailPublish")).cloned().unwrap_or_default();
                c.ok(st["Principal"]["Service"] == "cloudtrail.amazonaws.com" && st["Action"] == "SNS:Publish"
                    && sorted(condition(&st, "StringEquals", "aws:SourceArn")) == sorted(ctx.trail_arns_in(&t.region)),
                    || format!("topic {} in {}: only the trail(s) of that region may publish: {st}", t.name, t.region));
            }
            if let Some(q) = named(plan, "sqs-queue-policy", &ctx.queue_name()) {
                // one statement per topic ("Subscribing an Amazon SQS queue to an Amazon SNS topic")
                let sts = statements(&q.details["policy"]);
                let sns: Vec<&Value> = sts.iter().filter(|s| strings(&s["Principal"]["Service"]).iter().any(|p| p.starts_with("sns."))).collect();
                let sources: Vec<Vec<String>> = sns.iter().map(|s| condition(s, "ArnEquals", "aws:SourceArn")).collect();
                c.ok(sources.iter().all(|s| s.len() == 1) && sorted(sources.concat()) == sorted(ctx.topic_arns()),
                    || format!("queue policy: one statement per topic, each limited to it: {sources:?}"));
                // S3 User Guide, "Walkthrough: Configuring a bucket for notifications (SNS topic or SQS queue)":
                // s3.amazonaws.com, aws:SourceArn of the bucket and aws:SourceAccount of its owner
                let s3: Vec<&Value> = sts.iter().filter(|s| s["Principal"]["Service"] == "s3.amazonaws.com").collect();
                match ctx.notification_bucket() {
                    None => c.ok(s3.is_empty(), || format!("queue policy admits S3 without a bucket notification: {s3:?}")),
                    Some((arn, owner)) => c.ok(
                        s3.len() == 1 && condition(s3[0], "ArnLike", "aws:SourceArn") == [arn.clone()]
                            && owner.is_none_or(|a| condition(s3[0], "StringEquals", "aws:SourceAccount") == [a]),
                        || format!("queue policy: one statement for bucket {arn}, limited by aws:SourceArn and aws:SourceAccount: {s3:?}"),
                    ),
                }
            }
        },
    },
    Rule {
        name: "no-public-principal",
        doc: "IAM User Guide, \"AWS JSON policy elements: Principal\" (Principal \"*\" is anyone)",
        check: |_ctx, plan, c| {
            for ch in &plan.changes {
                let (mut want, mut had) = (Vec::new(), Vec::new());
                policies_in(&ch.details, &mut want);
                if let Some(cur) = &ch.current {
                    policies_in(cur, &mut had);
                }
                let theirs: Vec<Value> = had.iter().flat_map(statements).collect();
                // statements someone else wrote into an adopted resource are theirs to judge
                for st in want.iter().flat_map(statements).filter(|s| !theirs.contains(s)) {
                    let star = st["Principal"] == "*" || strings(&st["Principal"]["AWS"]).iter().any(|a| a == "*");
                    c.ok(!(star && st["Effect"] == "Allow"), || format!("{} {}: an Allow to Principal \"*\": {st}", ch.kind, ch.name));
                }
            }
        },
    },
    Rule {
        name: "service-value-ranges",
        doc: "CloudWatch Logs API Reference, \"PutRetentionPolicy\"; Amazon SQS API Reference, \"SetQueueAttributes\" (VisibilityTimeout 0-43200, MessageRetentionPeriod 60-1209600, maxReceiveCount 1-1000); AWS Lambda \"Lambda quotas\" (timeout ≤ 900 s, memory 128-10240 MB)",
        check: |_ctx, plan, c| {
            for g in of_kind(plan, "logs-log-group").filter(|g| g.details["reused"] != true) {
                let d = g.details["retention_days"].as_i64().unwrap_or(-1);
                c.ok(RETENTIONS.contains(&d), || format!("log retention {d} is not one CloudWatch Logs accepts"));
            }
            for q in of_kind(plan, "sqs-queue") {
                let a = &q.details["attributes"];
                let n = |k: &str| a[k].as_str().and_then(|s| s.parse::<i64>().ok());
                if let Some(v) = n("VisibilityTimeout") {
                    c.ok((0..=43_200).contains(&v), || format!("queue {}: VisibilityTimeout {v}", q.name));
                }
                let r = n("MessageRetentionPeriod");
                c.ok(r.is_some_and(|v| (60..=1_209_600).contains(&v)), || format!("queue {}: MessageRetentionPeriod {r:?}", q.name));
                if let Some(m) = a["RedrivePolicy"]["maxReceiveCount"].as_str().and_then(|s| s.parse::<i64>().ok()) {
                    c.ok((1..=1000).contains(&m), || format!("queue {}: maxReceiveCount {m}", q.name));
                }
            }
            for f in of_kind(plan, "lambda-function") {
                let t = f.details["timeout"].as_i64().unwrap_or(0);
                let m = f.details["memory_mb"].as_i64().unwrap_or(0);
                c.ok((1..=900).contains(&t) && (128..=10_240).contains(&m), || format!("function {}: timeout {t}, memory {m}", f.name));
            }
        },
    },
    Rule {
        name: "forwarder-password-in-secrets-manager",
        doc: "AWS Lambda Developer Guide, \"Working with Lambda environment variables\" (use AWS Secrets Manager instead of environment variables for credentials) and \"Use Secrets Manager secrets in Lambda functions\"; Secrets Manager User Guide, \"Permissions reference for Secrets Manager\" (the ARN's random suffix) and \"Secret encryption and decryption in AWS Secrets Manager\" (kms:ViaService)",
        check: |ctx, plan, c| {
            let secrets: Vec<&Change> = of_kind(plan, "secretsmanager-secret").collect();
            let policies: Vec<(String, Value)> = plan
                .changes
                .iter()
                .filter(|ch| matches!(ch.kind.as_str(), "iam-policy" | "iam-role"))
                .flat_map(|ch| {
                    let mut ps = Vec::new();
                    policies_in(&ch.details, &mut ps);
                    ps.into_iter().map(move |p| (ch.name.clone(), p))
                })
                .collect();
            // of the roles and policies we write, only the forwarder's grants anything of Secrets Manager
            let sm = |st: &Value| strings(&st["Action"]).iter().any(|a| a.to_ascii_lowercase().starts_with("secretsmanager:"));
            for (name, p) in &policies {
                for st in statements(p).iter().filter(|s| sm(s)) {
                    c.ok(*name == ctx.forwarder_name() && ctx.uses_secret(), || format!("policy {name} grants Secrets Manager actions: {st}"));
                }
            }
            // no password (nor user) in any function's environment; the secret's ARN with basic auth only
            for f in of_kind(plan, "lambda-function") {
                let env = f.details["environment"].as_object().cloned().unwrap_or_default();
                c.ok(!env.keys().any(|k| k.to_ascii_uppercase().contains("PASSWORD")) && !env.contains_key("OPENSEARCH_USER"),
                    || format!("forwarder in {}: a password in its environment: {:?}", f.region, env.keys().collect::<Vec<_>>()));
                if env.get("OPENSEARCH_AUTH").and_then(|v| v.as_str()) != Some("basic") {
                    c.ok(!env.contains_key("OPENSEARCH_SECRET_ARN"), || format!("forwarder in {}: OPENSEARCH_SECRET_ARN without basic auth", f.region));
                }
            }
            // the password itself nowhere in the plan (nor in any hash of it: the plan holds none)
            if let Some(auth) = &ctx.basic_auth {
                let mut texts = Vec::new();
                for ch in &plan.changes {
                    strings_in(&ch.details, &mut texts);
                }
                c.ok(!texts.iter().any(|t| auth.leaks_into(t)), || "the OpenSearch password is in the plan".into());
            }
            if !ctx.uses_secret() {
                c.ok(secrets.is_empty(), || format!("a secret without a basic-auth forwarder: {secrets:?}"));
                return;
            }
            let [secret] = secrets.as_slice() else { return c.ok(false, || format!("one secret {} expected, found {}", ctx.secret_name(), secrets.len())) };
            let d = &secret.details;
            c.ok(secret.name == ctx.secret_name() && secret.region == ctx.home && d["tags"] == ctx.tags(),
                || format!("the secret is {} in the home region {}, tagged {}: {} [{}] {}", ctx.secret_name(), ctx.home, ctx.tags(), secret.name, secret.region, d["tags"]));
            c.ok(matches!(d["value"].as_str(), Some("new" | "changed" | "unchanged" | "not compared")), || format!("the secret's value is shown as new/changed/unchanged only: {}", d["value"]));
            let arn = d["arn"].as_str().unwrap_or_default();
            let known = arn.starts_with("arn:");
            for f in of_kind(plan, "lambda-function") {
                c.ok(f.details["environment"]["OPENSEARCH_SECRET_ARN"] == arn, || format!("forwarder in {} must read OPENSEARCH_SECRET_ARN = {arn}: {}", f.region, f.details["environment"]));
            }
            // GetSecretValue on that one secret: its ARN, or before it exists the name and exactly six characters
            let want = if known { arn.to_string() } else { ctx.secret_arn_pattern() };
            let fwd: Vec<&Value> = policies.iter().filter(|(n, _)| *n == ctx.forwarder_name()).map(|x| &x.1).collect();
            let reads: Vec<Value> = fwd.iter().flat_map(|p| statements(p)).filter(|s| sm(s)).collect();
            c.ok(reads.len() == 1 && reads[0]["Effect"] == "Allow" && strings(&reads[0]["Action"]) == ["secretsmanager:GetSecretValue"]
                && strings(&reads[0]["Resource"]) == [want.clone()] && reads[0].get("NotResource").is_none(),
                || format!("the forwarder's policy must allow secretsmanager:GetSecretValue on {want} only: {reads:?}"));
            // encrypted with the home region's key: the forwarder decrypts through Secrets Manager only
            let key = ctx.kms_key_for(&ctx.home);
            c.ok(d["kms_key"].as_str().map(String::from) == key, || format!("the secret's key must be the home region's: {} vs {key:?}", d["kms_key"]));
            if let Some(k) = key {
                let via = format!("secretsmanager.{}.amazonaws.com", ctx.home);
                let dec = fwd.iter().flat_map(|p| statements(p)).find(|s| s["Sid"] == "DecryptOpenSearchSecret");
                c.ok(dec.as_ref().is_some_and(|s| strings(&s["Action"]) == ["kms:Decrypt"] && condition(s, "StringEquals", "kms:ViaService") == [via.clone()]
                    && (strings(&s["Resource"]) == [k.clone()] || unresolved(ctx))),
                    || format!("the forwarder must decrypt with {k} through {via} only: {dec:?}"));
            }
        },
    },
    Rule {
        name: "logs-invoke-permission-scoped",
        doc: "CloudWatch Logs User Guide, \"Subscription filters with AWS Lambda\" (lambda add-permission with --source-arn and --source-account)",
        check: |ctx, plan, c| {
            c.ok(of_kind(plan, "lambda-permission").count() == ctx.forwarder_regions().len(), || "one invoke permission per forwarder".into());
            for p in of_kind(plan, "lambda-permission") {
                c.ok(p.details["principal"] == "logs.amazonaws.com" && p.details["source_arn"] == ctx.log_group_arn(&p.region) && p.details["source_account"] == ctx.account.as_str(),
                    || format!("invoke permission in {} must be limited to our log group and account: {}", p.region, p.details));
            }
        },
    },
    Rule {
        name: "reused-trail-untouched",
        doc: "CloudTrail User Guide, \"Organization trails\" (member accounts cannot change an organization trail); issue: a reused trail is never modified",
        check: |ctx, plan, c| {
            let Some(r) = &ctx.reuse else { return c.ok(true, String::new) };
            let trails: Vec<&Change> = of_kind(plan, "cloudtrail-trail").collect();
            c.ok(trails.len() == 1 && trails[0].action == crate::plan::Action::NoOp && trails[0].details["reused"] == true && trails[0].name == r.name,
                || format!("the reused trail must be one unchanged entry with reused: true: {trails:?}"));
            for ch in &plan.changes {
                // the forwarder's own log group is ours (the forwarder is), not the trail's
                let ours = ch.name == crate::resources::logs::forwarder_log_group(ctx);
                let theirs = !ours && matches!(ch.kind.as_str(), "s3-bucket" | "s3-bucket-policy" | "sns-topic" | "sns-topic-policy" | "logs-log-group" | "cloudtrail-trail");
                if theirs {
                    c.ok(ch.action == crate::plan::Action::NoOp && ch.details["reused"] == true, || format!("{} {} of the reused trail would be changed", ch.kind, ch.name));
                }
            }
        },
    },
    Rule {
        name: "s3-notification-to-same-region-queue",
        doc: "Amazon S3 User Guide, \"Amazon S3 Event Notifications\" → supported destinations (the queue in the bucket's Region); \"Configuring event notifications using object key name filtering\" (no overlapping prefixes and suffixes)",
        check: |ctx, plan, c| {
            let notes: Vec<&Change> = of_kind(plan, "s3-bucket-notification").collect();
            let want = ctx.reuse.as_ref().is_some_and(|r| r.uses_bucket_notification());
            c.ok(notes.len() == usize::from(want), || format!("expected {} bucket notification(s): {notes:?}", usize::from(want)));
            for n in notes {
                let queue_region = n.details["queue_arn"].as_str().and_then(crate::resources::reuse::arn_parts).map(|x| x.0);
                c.ok(queue_region.as_deref() == Some(n.region.as_str()), || format!("bucket in {} notifies a queue in {queue_region:?}", n.region));
                c.ok(n.details["events"] == json!(["s3:ObjectCreated:*"]) && n.details["suffix"] == ".json.gz"
                    && n.details["prefix"].as_str().is_some_and(|p| p == ctx.read_prefix()),
                    || format!("notification must be ObjectCreated on {}*.json.gz: {}", ctx.read_prefix(), n.details));
                c.ok(n.name == crate::resources::reuse::notification_id(ctx), || format!("our entry must be named by its id for exact removal: {}", n.name));
            }
        },
    },
    Rule {
        name: "queue-subscribed-to-reused-topic",
        doc: "Amazon SNS Developer Guide, \"Fanout to Amazon SQS queues\"; \"Sending Amazon SNS messages to an Amazon SQS queue in a different account\" (a topic of another account must first allow sns:Subscribe)",
        check: |ctx, plan, c| {
            let Some(r) = &ctx.reuse else { return c.ok(true, String::new) };
            let subs: Vec<&Change> = of_kind(plan, "sns-subscription").collect();
            match (r.own_topic(&ctx.account), &r.topic_arn) {
                (Some(t), _) => c.ok(subs.len() == 1 && subs[0].details["topic_arn"] == t.as_str() && subs[0].details["endpoint"] == ctx.queue_arn(&ctx.queue_name()).as_str()
                    && r.topic_region().as_deref() == Some(subs[0].region.as_str()),
                    || format!("one subscription of our queue to {t}, in the topic's region: {subs:?}")),
                (None, Some(t)) => c.ok(subs.is_empty() && crate::resources::reuse::owner_actions(ctx).iter().any(|a| a["resource"] == t.as_str()),
                    || format!("topic {t} is another account's: nothing is planned there, its owner is told what to add")),
                (None, None) => c.ok(subs.is_empty(), || "a subscription without a topic".into()),
            }
        },
    },
];

/// `retentionInDays` values PutRetentionPolicy accepts.
pub const RETENTIONS: &[i64] = &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

fn engine_version_ok(v: &str) -> bool {
    let Some((engine, ver)) = v.split_once('_') else { return false };
    let mut parts = ver.split('.');
    let num = |p: Option<&str>| p.is_some_and(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()));
    matches!(engine, "OpenSearch" | "Elasticsearch") && num(parts.next()) && num(parts.next()) && parts.next().is_none()
}

/// (kind, region, key) of every KMS key a resource (not a policy) names.
fn key_refs(plan: &Plan) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for ch in &plan.changes {
        let k = match ch.kind.as_str() {
            "cloudtrail-trail" | "sns-topic" | "logs-log-group" | "secretsmanager-secret" => ch.details["kms_key"].as_str().map(String::from),
            "s3-bucket" => ch.details["encryption"]["kms_key"].as_str().map(String::from),
            "sqs-queue" => ch.details["attributes"]["KmsMasterKeyId"].as_str().map(String::from),
            _ => None,
        };
        if let Some(k) = k {
            v.push((ch.kind.as_str().to_string(), ch.region.clone(), k));
        }
    }
    v
}
