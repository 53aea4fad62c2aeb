//! One file per AWS service: observe → diff → apply → verify. This module holds what they share: the
//! context (deterministic names and ARNs from the stack name and account), the policy templates, and the
//! plan builder that walks every resource in dependency order.

pub mod cloudtrail;
pub mod iam;
pub mod lambda;
pub mod logs;
pub mod opensearch;
pub mod s3;
pub mod sns;
pub mod sqs;

use anyhow::Context as _;
use aws_config::SdkConfig;
use serde_json::{json, Value};

use crate::cli::{OpenSearchAuth, TrailMode};
use crate::plan::{Change, Plan};

pub const TAG_KEY: &str = "trailsetup:stack";

/// Where documents go: a domain we create or adopt, or an existing endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenSearchTarget {
    Domain(String),
    Url(String),
}

/// Everything a resource needs to know to compute its desired state; no AWS calls.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub stack: String,
    pub account: String,
    pub partition: String,
    pub caller_arn: String,
    pub home: String,
    pub regions: Vec<String>,
    pub trail_mode: TrailMode,
    pub bucket: String,
    pub kms_key: Option<String>,
    pub retention_days: i32,
    pub opensearch: OpenSearchTarget,
    /// `--opensearch-auth` as given; `None` = sigv4 for AWS endpoints and domains, else none
    pub opensearch_auth: Option<OpenSearchAuth>,
    pub index_prefix: String,
}

impl Ctx {
    /// (region, trail name) of every trail.
    pub fn trails(&self) -> Vec<(String, String)> {
        match self.trail_mode {
            TrailMode::MultiRegion => vec![(self.home.clone(), self.stack.clone())],
            TrailMode::PerRegion => self.regions.iter().map(|r| (r.clone(), format!("{}-{r}", self.stack))).collect(),
        }
    }
    /// Regions that hold a trail (and its topic and log group).
    pub fn trail_regions(&self) -> Vec<String> {
        self.trails().into_iter().map(|t| t.0).collect()
    }
    pub fn trail_arn(&self, region: &str, name: &str) -> String {
        format!("arn:{}:cloudtrail:{region}:{}:trail/{name}", self.partition, self.account)
    }
    pub fn trail_arns(&self) -> Vec<String> {
        self.trails().iter().map(|(r, n)| self.trail_arn(r, n)).collect()
    }
    pub fn topic_name(&self) -> String {
        format!("{}-cloudtrail", self.stack)
    }
    pub fn topic_arn(&self, region: &str) -> String {
        format!("arn:{}:sns:{region}:{}:{}", self.partition, self.account, self.topic_name())
    }
    pub fn topic_arns(&self) -> Vec<String> {
        self.trail_regions().iter().map(|r| self.topic_arn(r)).collect()
    }
    pub fn queue_name(&self) -> String {
        format!("{}-notifications", self.stack)
    }
    pub fn dlq_name(&self) -> String {
        format!("{}-notifications-dlq", self.stack)
    }
    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:{}:sqs:{}:{}:{name}", self.partition, self.home, self.account)
    }
    pub fn log_group(&self) -> String {
        format!("/aws/cloudtrail/{}", self.stack)
    }
    pub fn log_group_arn(&self, region: &str) -> String {
        format!("arn:{}:logs:{region}:{}:log-group:{}:*", self.partition, self.account, self.log_group())
    }
    pub fn logs_role(&self) -> String {
        format!("{}-cloudtrail-logs", self.stack)
    }
    pub fn logs_role_arn(&self) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account, self.logs_role())
    }
    pub fn ingest_policy(&self) -> String {
        format!("{}-ingest-worker", self.stack)
    }
    pub fn ingest_policy_arn(&self) -> String {
        format!("arn:{}:iam::{}:policy/{}", self.partition, self.account, self.ingest_policy())
    }
    pub fn tags(&self) -> Value {
        json!({ TAG_KEY: self.stack })
    }

    // --- the CloudWatch Logs → OpenSearch forwarder (one function per region whose trail writes to CloudWatch Logs) ---

    /// Regions with a trail log group, hence a forwarder: the home region (multi-region) or every trail region.
    pub fn forwarder_regions(&self) -> Vec<String> {
        self.trail_regions()
    }
    /// Name of the function (in each region), of its role and of its managed policy.
    pub fn forwarder_name(&self) -> String {
        format!("{}-forwarder", self.stack)
    }
    pub fn forwarder_role_arn(&self) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account, self.forwarder_name())
    }
    pub fn forwarder_policy_arn(&self) -> String {
        format!("arn:{}:iam::{}:policy/{}", self.partition, self.account, self.forwarder_name())
    }
    pub fn forwarder_dlq_name(&self) -> String {
        format!("{}-forwarder-dlq", self.stack)
    }
    pub fn queue_arn_in(&self, region: &str, name: &str) -> String {
        format!("arn:{}:sqs:{region}:{}:{name}", self.partition, self.account)
    }
    pub fn forwarder_function_arn(&self, region: &str) -> String {
        format!("arn:{}:lambda:{region}:{}:function:{}", self.partition, self.account, self.forwarder_name())
    }
    /// The function's own log group (`/aws/lambda/<function>`), as an ARN covering its streams.
    pub fn forwarder_log_group_arn(&self, region: &str) -> String {
        format!("arn:{}:logs:{region}:{}:log-group:/aws/lambda/{}:*", self.partition, self.account, self.forwarder_name())
    }
    /// `OPENSEARCH_AUTH` of the forwarder: as given, else sigv4 for a domain or an AWS endpoint, else none.
    pub fn forwarder_auth(&self) -> &'static str {
        match self.opensearch_auth {
            Some(OpenSearchAuth::Sigv4) => "sigv4",
            Some(OpenSearchAuth::Basic) => "basic",
            Some(OpenSearchAuth::None) => "none",
            None => match &self.opensearch {
                OpenSearchTarget::Domain(_) => "sigv4",
                OpenSearchTarget::Url(u) if aws_endpoint(u).is_some() => "sigv4",
                OpenSearchTarget::Url(_) => "none",
            },
        }
    }
    /// The `es:` resource our documents go to: `domain/<domain>/<prefix>*`; `None` when the sink is not an
    /// Amazon OpenSearch Service domain signed with SigV4 (no `es:` statement then).
    pub fn forwarder_index_arn(&self) -> Option<String> {
        if self.forwarder_auth() != "sigv4" {
            return None;
        }
        let (region, domain) = match &self.opensearch {
            OpenSearchTarget::Domain(d) => (self.home.clone(), d.clone()),
            OpenSearchTarget::Url(u) => {
                let (svc, region, domain) = aws_endpoint(u)?;
                if svc != "es" {
                    return None;
                }
                (region, domain.unwrap_or_else(|| "*".into()))
            }
        };
        Some(format!("arn:{}:es:{region}:{}:domain/{domain}/{}*", self.partition, self.account, self.index_prefix))
    }
    pub fn forwarder_trust_policy(&self) -> Value {
        render(FORWARDER_TRUST, &self.vars(&[]))
    }
    pub fn forwarder_policy(&self) -> Value {
        let regions = self.forwarder_regions();
        let logs: Vec<String> = regions.iter().map(|r| self.forwarder_log_group_arn(r)).collect();
        let dlqs: Vec<String> = regions.iter().map(|r| self.queue_arn_in(r, &self.forwarder_dlq_name())).collect();
        let index = self.forwarder_index_arn();
        let mut p = render(
            FORWARDER_POLICY,
            &self.vars(&[
                ("FunctionLogGroupArns", json!(logs)),
                ("ForwarderDlqArns", json!(dlqs)),
                ("IndexArn", json!(index.clone().unwrap_or_default())),
            ]),
        );
        if let Some(st) = p["Statement"].as_array_mut() {
            if index.is_none() {
                st.retain(|s| s["Sid"] != "IndexDocuments");
            }
            // the dead-letter queues are encrypted with the key: sending needs it
            if let Some(k) = &self.kms_key {
                st.push(self.kms_statement("EncryptDeadLetters", json!(["kms:GenerateDataKey", "kms:Decrypt"]), k));
            }
        }
        p
    }

    /// A statement allowing `actions` on the key; an alias is named by condition (an alias ARN cannot be the
    /// Resource of a kms: data-plane action).
    fn kms_statement(&self, sid: &str, actions: Value, k: &str) -> Value {
        let key_arn = self.kms_key_arn(k);
        match key_arn.split_once(":alias/") {
            Some((prefix, alias)) => json!({"Sid": sid, "Effect": "Allow", "Action": actions,
                "Resource": format!("{prefix}:key/*"),
                "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": format!("alias/{alias}")}}}),
            None => json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": key_arn}),
        }
    }

    // --- policies (policies/*.json, placeholders filled) ---

    pub fn bucket_policy(&self) -> Value {
        render(BUCKET_POLICY, &self.vars(&[]))
    }
    pub fn topic_policy(&self, region: &str) -> Value {
        // only the trail(s) of this region publish here
        let arns: Vec<String> =
            self.trails().iter().filter(|(r, _)| r == region).map(|(r, n)| self.trail_arn(r, n)).collect();
        render(TOPIC_POLICY, &self.vars(&[("TopicArn", json!(self.topic_arn(region))), ("TrailArns", json!(arns))]))
    }
    pub fn queue_policy(&self) -> Value {
        render(QUEUE_POLICY, &self.vars(&[]))
    }
    pub fn ingest_worker_policy(&self) -> Value {
        let mut p = render(INGEST_POLICY, &self.vars(&[]));
        if let Some(k) = &self.kms_key {
            if let Some(st) = p["Statement"].as_array_mut() {
                let key_arn = self.kms_key_arn(k);
                // kms:Decrypt is authorised on the key, never on an alias ARN: name an alias by condition
                let st_json = match key_arn.split_once(":alias/") {
                    Some((prefix, _)) => json!({"Sid": "DecryptLogs", "Effect": "Allow", "Action": "kms:Decrypt",
                        "Resource": format!("{prefix}:key/*"),
                        "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": format!("alias/{}", key_arn.split_once(":alias/").map(|x| x.1).unwrap_or_default())}}}),
                    None => json!({"Sid": "DecryptLogs", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn}),
                };
                st.push(st_json);
            }
        }
        p
    }
    pub fn logs_trust_policy(&self) -> Value {
        render(LOGS_TRUST, &self.vars(&[]))
    }
    pub fn logs_permissions_policy(&self) -> Value {
        let arns: Vec<String> = self
            .trail_regions()
            .iter()
            .map(|r| format!("arn:{}:logs:{r}:{}:log-group:{}:log-stream:*", self.partition, self.account, self.log_group()))
            .collect();
        render(LOGS_PERMISSIONS, &self.vars(&[("LogStreamArns", json!(arns))]))
    }
    pub fn opensearch_access_policy(&self, domain: &str) -> Value {
        render(
            OPENSEARCH_POLICY,
            &self.vars(&[
                // The caller (IAM master user) and the forwarder, which writes documents; nobody else.
                ("Principals", json!([self.caller_arn.clone(), self.forwarder_role_arn()])),
                ("Domain", json!(domain)),
                ("Region", json!(self.home)),
            ]),
        )
    }

    /// A key id/alias as an ARN for policies (`alias/x` → `arn:…:alias/x`, a bare id → `arn:…:key/id`).
    pub fn kms_key_arn(&self, k: &str) -> String {
        if k.starts_with("arn:") {
            k.to_string()
        } else if k.starts_with("alias/") {
            format!("arn:{}:kms:{}:{}:{k}", self.partition, self.home, self.account)
        } else {
            format!("arn:{}:kms:{}:{}:key/{k}", self.partition, self.home, self.account)
        }
    }

    fn vars(&self, extra: &[(&str, Value)]) -> Vec<(String, Value)> {
        let mut v = vec![
            ("Partition".to_string(), json!(self.partition)),
            ("Account".to_string(), json!(self.account)),
            ("Bucket".to_string(), json!(self.bucket)),
            ("TrailArns".to_string(), json!(self.trail_arns())),
            ("TopicArns".to_string(), json!(self.topic_arns())),
            ("QueueArn".to_string(), json!(self.queue_arn(&self.queue_name()))),
            ("DlqArn".to_string(), json!(self.queue_arn(&self.dlq_name()))),
        ];
        for (k, val) in extra {
            v.retain(|(n, _)| n != k);
            v.push((k.to_string(), val.clone()));
        }
        v
    }
}

pub const BUCKET_POLICY: &str = include_str!("../../policies/bucket-policy.json");
pub const TOPIC_POLICY: &str = include_str!("../../policies/topic-policy.json");
pub const QUEUE_POLICY: &str = include_str!("../../policies/queue-policy.json");
pub const INGEST_POLICY: &str = include_str!("../../policies/ingest-worker-policy.json");
pub const LOGS_TRUST: &str = include_str!("../../policies/cloudtrail-logs-trust.json");
pub const LOGS_PERMISSIONS: &str = include_str!("../../policies/cloudtrail-logs-permissions.json");
pub const OPENSEARCH_POLICY: &str = include_str!("../../policies/opensearch-access-policy.json");
pub const FORWARDER_TRUST: &str = include_str!("../../policies/forwarder-trust.json");
pub const FORWARDER_POLICY: &str = include_str!("../../policies/forwarder-policy.json");

/// An Amazon OpenSearch endpoint URL → (service `es`/`aoss`, region, domain name when the host says it:
/// `search-<domain>-<id>.<region>.es.amazonaws.com`).
pub fn aws_endpoint(url: &str) -> Option<(&'static str, String, Option<String>)> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.to_string();
    let (svc, region) = crate::ingest::opensearch::aws_host_hint(&host)?;
    let first = host.split('.').next().unwrap_or_default();
    let domain = first
        .strip_prefix("search-")
        .or_else(|| first.strip_prefix("vpc-"))
        .and_then(|rest| rest.rsplit_once('-').map(|(d, _id)| d.to_string()))
        .filter(|d| !d.is_empty());
    Some((svc, region, domain))
}

/// Fill a policy template: a string that is exactly `${Var}` becomes the variable's JSON value (so a list
/// stays a list); `${Var}` inside a longer string is replaced by the variable's text.
pub fn render(template: &str, vars: &[(String, Value)]) -> Value {
    // The templates are compiled in and covered by unit tests, so they always parse.
    let v: Value = serde_json::from_str(template).unwrap_or(Value::Null);
    fill(&v, vars)
}

fn fill(v: &Value, vars: &[(String, Value)]) -> Value {
    match v {
        Value::String(s) => {
            for (k, val) in vars {
                if *s == format!("${{{k}}}") {
                    return val.clone();
                }
            }
            let mut out = s.clone();
            for (k, val) in vars {
                let text = match val {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("${{{k}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vars)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), fill(x, vars))).collect()),
        other => other.clone(),
    }
}

/// A policy document as AWS returns it: JSON, or URL-encoded JSON (IAM).
pub fn parse_policy(s: &str) -> anyhow::Result<Value> {
    if let Ok(v) = serde_json::from_str(s) {
        return Ok(v);
    }
    let decoded: String = url::form_urlencoded::parse(format!("p={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    serde_json::from_str(&decoded).context("policy document is not JSON")
}

/// AWS clients per region, built from one shared config.
#[derive(Clone)]
pub struct Aws {
    pub cfg: SdkConfig,
    /// the OpenSearch endpoint's client, when one is known (`--opensearch-url`)
    pub search: Option<crate::ingest::opensearch::Client>,
}

impl Aws {
    pub fn at(&self, region: &str) -> SdkConfig {
        crate::aws::in_region(&self.cfg, region)
    }
}

/// Build the whole plan. With `aws`, observe each resource (read calls only); without (offline), every
/// resource is planned as a create.
pub async fn plan(ctx: &Ctx, aws: Option<&Aws>) -> anyhow::Result<Plan> {
    // Every observation is a read, independent of the others: all run at once (one round trip of latency per
    // resource chain instead of one per resource), then the changes are laid out in dependency order.
    // 1. global and home-region resources; the forwarder's dead-letter queue in each forwarder region
    let dlqs = futures::future::try_join_all(
        ctx.forwarder_regions().into_iter().map(|r| async move { sqs::plan_forwarder_dlq(ctx, aws, &r).await }),
    );
    // 2. per trail region: log group, topic (+ policy, subscription), trail
    let per_region = futures::future::try_join_all(ctx.trail_regions().into_iter().map(|r| async move {
        let (l, t, c) = futures::try_join!(logs::plan(ctx, aws, &r), sns::plan(ctx, aws, &r), cloudtrail::plan(ctx, aws, &r))?;
        anyhow::Ok([l, t, c].concat())
    }));
    // 4. per forwarder region: function → permission for CloudWatch Logs → subscription filter (applied after
    //    OpenSearch: a new domain's endpoint goes into the function's environment)
    let forwarders = async {
        let endpoint = lambda::opensearch_endpoint(ctx, aws).await?;
        futures::future::try_join_all(ctx.forwarder_regions().into_iter().map(|r| {
            let endpoint = endpoint.clone();
            async move {
                let (f, s) = futures::try_join!(lambda::plan(ctx, aws, &r, &endpoint), logs::plan_subscription(ctx, aws, &r))?;
                anyhow::Ok([f, s].concat())
            }
        }))
        .await
    };
    let (iam, s3, sqs, dlqs, per_region, search, forwarders) = futures::try_join!(
        iam::plan(ctx, aws),
        s3::plan(ctx, aws),
        sqs::plan(ctx, aws),
        dlqs,
        per_region,
        opensearch::plan(ctx, aws), // 3.
        forwarders,
    )?;
    let mut changes: Vec<Change> = Vec::new();
    changes.extend(iam);
    changes.extend(s3);
    changes.extend(sqs);
    changes.extend(dlqs.into_iter().flatten());
    changes.extend(per_region.into_iter().flatten());
    changes.extend(search);
    changes.extend(forwarders.into_iter().flatten());
    Ok(Plan::new(changes))
}

#[cfg(test)]
pub(crate) fn test_ctx(mode: TrailMode) -> Ctx {
    Ctx {
        stack: "trailsetup".into(),
        account: "123456789012".into(),
        partition: "aws".into(),
        caller_arn: "arn:aws:iam::123456789012:user/admin".into(),
        home: "us-east-1".into(),
        regions: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()],
        trail_mode: mode,
        bucket: "trailsetup-123456789012-us-east-1".into(),
        kms_key: None,
        retention_days: 90,
        opensearch: OpenSearchTarget::Url("http://127.0.0.1:9200".into()),
        opensearch_auth: None,
        index_prefix: "cloudtrail".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_fill() {
        for t in [BUCKET_POLICY, TOPIC_POLICY, QUEUE_POLICY, INGEST_POLICY, LOGS_TRUST, LOGS_PERMISSIONS, OPENSEARCH_POLICY, FORWARDER_TRUST, FORWARDER_POLICY] {
            serde_json::from_str::<Value>(t).unwrap();
        }
        let c = test_ctx(TrailMode::PerRegion);
        let p = c.bucket_policy();
        assert!(!p.to_string().contains("${"), "{p}");
        assert_eq!(p["Statement"][0]["Condition"]["StringEquals"]["aws:SourceArn"].as_array().unwrap().len(), 3);
        let t = c.topic_policy("us-west-2");
        assert_eq!(
            t["Statement"][0]["Condition"]["StringEquals"]["aws:SourceArn"],
            json!(["arn:aws:cloudtrail:us-west-2:123456789012:trail/trailsetup-us-west-2"])
        );
        for p in [c.queue_policy(), c.ingest_worker_policy(), c.logs_trust_policy(), c.logs_permissions_policy(), c.opensearch_access_policy("d"), c.forwarder_trust_policy(), c.forwarder_policy()] {
            assert!(!p.to_string().contains("${"), "{p}");
        }
    }

    #[test]
    fn forwarder_policy_names_our_indices_only() {
        let mut c = test_ctx(TrailMode::PerRegion);
        // a non-AWS endpoint: no es: statement
        assert_eq!(c.forwarder_auth(), "none");
        let p = c.forwarder_policy();
        assert!(!p.to_string().contains("es:ESHttp"), "{p}");
        assert_eq!(p["Statement"][1]["Resource"].as_array().unwrap().len(), 3);
        c.opensearch = OpenSearchTarget::Domain("logs".into());
        assert_eq!(c.forwarder_policy()["Statement"][2]["Resource"], "arn:aws:es:us-east-1:123456789012:domain/logs/cloudtrail*");
        c.opensearch = OpenSearchTarget::Url("https://search-my-logs-abc123.eu-west-1.es.amazonaws.com".into());
        assert_eq!(c.forwarder_auth(), "sigv4");
        assert_eq!(c.forwarder_index_arn().unwrap(), "arn:aws:es:eu-west-1:123456789012:domain/my-logs/cloudtrail*");
        c.opensearch_auth = Some(OpenSearchAuth::Basic);
        assert_eq!(c.forwarder_index_arn(), None);
    }

    #[test]
    fn iam_encoded_policy_parses() {
        let enc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(parse_policy(enc).unwrap()["Version"], "2012-10-17");
    }
}
