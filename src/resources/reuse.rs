//! Brownfield: an existing trail (`--use-trail NAME|ARN`) to hang the pipeline from. Nothing of the trail is
//! ever changed: no trail and no bucket are created, and the queue is fed by what the trail already has:
//!
//! - the trail's SNS topic → our queue subscribes to it (SNS developer guide, "Fanout to Amazon SQS queues":
//!   the queue policy allows the topic by `aws:SourceArn`; a topic of another account must first allow our
//!   account `sns:Subscribe`, "Sending Amazon SNS messages to an Amazon SQS queue in a different account");
//! - no topic, bucket of this account → an S3 event notification (`s3:ObjectCreated:*` on the trail's prefix)
//!   merged into the bucket's notification configuration by its `Id` (S3 user guide, "Amazon S3 Event
//!   Notifications": PutBucketNotificationConfiguration replaces the whole configuration, and configurations
//!   whose prefix and suffix overlap for the same event type are refused);
//! - bucket of another account (a log archive) → nothing is planned there; the plan prints what its owner must
//!   add, and `backfill`/`ingest` read through `--source-role`;
//! - the trail's CloudWatch Logs group in this account → the forwarder subscribes to it (CloudWatch Logs user
//!   guide, "Log group-level subscription filters": at most two per log group; a full group is reported, never
//!   replaced).

use std::collections::BTreeMap;

use anyhow::anyhow;
use aws_sdk_s3::types::{Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Aws, Ctx};
use crate::aws::{code, explain};
use crate::plan::{Action, Change, Kind};

/// The trail we hang from, as discovered (or, for a trail this account cannot see, as named by its ARN and
/// `--bucket`). Saved whole in the state file: `backfill`, `ingest`, `status` and `destroy` read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reuse {
    pub name: String,
    pub arn: String,
    pub home_region: String,
    pub multi_region: bool,
    pub organization: bool,
    /// DescribeTrails shows it to this account; false: named by ARN only (an organization trail of a log
    /// archive setup that this account cannot describe)
    pub visible: bool,
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// the bucket is this account's (it is in ListBuckets)
    pub bucket_owned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group_arn: Option<String>,
    /// does it record management events (GetEventSelectors)? `None`: unknown
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_events: Option<bool>,
    /// the organization of an organization trail (`AWSLogs/<org-id>/<account>/…`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// a role in the bucket owner's account to read the logs through (`--source-role`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_role: Option<String>,
    /// the forwarder may subscribe to the trail's log group (in this account, fewer than two other filters)
    #[serde(default)]
    pub forward_logs: bool,
}

/// `arn:<p>:<svc>:<region>:<account>:<rest>` → (region, account, rest).
pub fn arn_parts(arn: &str) -> Option<(String, String, String)> {
    let p: Vec<&str> = arn.splitn(6, ':').collect();
    (p.len() == 6 && p[0] == "arn").then(|| (p[3].to_string(), p[4].to_string(), p[5].to_string()))
}

impl Reuse {
    pub fn trail_account(&self) -> String {
        arn_parts(&self.arn).map(|x| x.1).unwrap_or_default()
    }
    /// The topic, when it is in `account`.
    pub fn own_topic(&self, account: &str) -> Option<String> {
        self.topic_arn.clone().filter(|t| arn_parts(t).is_some_and(|x| x.1 == account))
    }
    pub fn topic_region(&self) -> Option<String> {
        self.topic_arn.as_deref().and_then(arn_parts).map(|x| x.0)
    }
    /// The log group's (region, account, name): `arn:…:logs:<region>:<account>:log-group:<name>:*`.
    pub fn log_group(&self) -> Option<(String, String, String)> {
        let (region, account, rest) = arn_parts(self.log_group_arn.as_deref()?)?;
        let name = rest.strip_prefix("log-group:")?;
        Some((region, account, name.strip_suffix(":*").unwrap_or(name).to_string()))
    }
    /// The region of the forwarder (the log group's), when it subscribes.
    pub fn forwarder_region(&self) -> Option<String> {
        self.forward_logs.then(|| self.log_group().map(|g| g.0)).flatten()
    }
    /// `[<key prefix>/]AWSLogs/`: where the trail writes.
    pub fn logs_root(&self) -> String {
        match self.key_prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            Some(p) => format!("{p}/AWSLogs/"),
            None => "AWSLogs/".into(),
        }
    }
    /// The prefix of this account's log files: `<root><account>/`, `<root><org-id>/<account>/` for an
    /// organization trail (CloudTrail user guide, "Finding your CloudTrail log files"; "Creating a trail for an
    /// organization"); `<root>` for an organization trail whose organization is unknown.
    pub fn account_prefix(&self, account: &str) -> String {
        match (self.organization, &self.org_id) {
            (false, _) => format!("{}{account}/", self.logs_root()),
            (true, Some(o)) => format!("{}{o}/{account}/", self.logs_root()),
            (true, None) => self.logs_root(),
        }
    }
    /// Who should be notified: the trail's topic, else (bucket of this account) the bucket itself.
    pub fn uses_bucket_notification(&self) -> bool {
        self.topic_arn.is_none() && self.bucket_owned
    }
}

/// The id of our entry in the bucket's notification configuration (removed by exactly this id by `destroy`).
pub fn notification_id(ctx: &Ctx) -> String {
    format!("trailsetup-{}", ctx.stack)
}

// --- discovery (read-only) ---

fn ct(aws: &Aws, region: &str) -> aws_sdk_cloudtrail::Client {
    aws_sdk_cloudtrail::Client::new(&aws.at(region))
}

fn from_trail(t: &aws_sdk_cloudtrail::types::Trail) -> Reuse {
    Reuse {
        name: t.name().unwrap_or_default().to_string(),
        arn: t.trail_arn().unwrap_or_default().to_string(),
        home_region: t.home_region().unwrap_or_default().to_string(),
        multi_region: t.is_multi_region_trail().unwrap_or(false),
        organization: t.is_organization_trail().unwrap_or(false),
        visible: true,
        bucket: t.s3_bucket_name().unwrap_or_default().to_string(),
        key_prefix: t.s3_key_prefix().filter(|p| !p.is_empty()).map(String::from),
        topic_arn: t.sns_topic_arn().filter(|p| !p.is_empty()).map(String::from),
        kms_key: t.kms_key_id().filter(|p| !p.is_empty()).map(String::from),
        log_group_arn: t.cloud_watch_logs_log_group_arn().filter(|p| !p.is_empty()).map(String::from),
        ..Default::default()
    }
}

/// Does the trail record management events? Basic selectors: one with `IncludeManagementEvents`; advanced
/// selectors: one whose `eventCategory` equals `Management` (CloudTrail user guide, "Logging management events").
async fn management_events(aws: &Aws, t: &Reuse) -> Option<bool> {
    let r = ct(aws, &t.home_region).get_event_selectors().trail_name(&t.arn).send().await.ok()?;
    if !r.advanced_event_selectors().is_empty() {
        return Some(r.advanced_event_selectors().iter().any(|s| {
            s.field_selectors().iter().any(|f| f.field() == "eventCategory" && f.equals().iter().any(|v| v == "Management"))
        }));
    }
    if r.event_selectors().is_empty() {
        // no selector: CloudTrail's default, management events (read and write)
        return Some(true);
    }
    Some(r.event_selectors().iter().any(|s| s.include_management_events().unwrap_or(true)))
}

/// Every trail that records this account: DescribeTrails in the home region with shadow trails (multi-region
/// and organization trails of other home regions), and ListTrails for single-region trails elsewhere (CloudTrail
/// API reference, "DescribeTrails", "ListTrails"). Own-bucket and management-event facts are filled in.
pub async fn discover(aws: &Aws, home: &str) -> anyhow::Result<Vec<Reuse>> {
    let client = ct(aws, home);
    let d = client
        .describe_trails()
        .include_shadow_trails(true)
        .send()
        .await
        .map_err(|e| explain(e, "listing existing trails", "cloudtrail:DescribeTrails"))?;
    let mut found: Vec<Reuse> = d.trail_list().iter().map(from_trail).collect();
    let mut pages = client.list_trails().into_paginator().send();
    let mut others = Vec::new();
    while let Some(p) = pages.next().await {
        let p = p.map_err(|e| explain(e, "listing existing trails", "cloudtrail:ListTrails"))?;
        for t in p.trails() {
            let arn = t.trail_arn().unwrap_or_default();
            if !found.iter().any(|f| f.arn == arn) && !others.iter().any(|(a, _): &(String, String)| a == arn) {
                others.push((arn.to_string(), t.home_region().unwrap_or(home).to_string()));
            }
        }
    }
    for (arn, region) in others {
        if let Ok(r) = ct(aws, &region).get_trail().name(&arn).send().await {
            if let Some(t) = r.trail() {
                found.push(from_trail(t));
            }
        }
    }
    found.retain(|t| !t.arn.is_empty());
    let mine: Vec<String> = match crate::aws::s3(&aws.at(home)).list_buckets().send().await {
        Ok(r) => r.buckets().iter().filter_map(|b| b.name().map(String::from)).collect(),
        Err(e) => return Err(explain(e, "listing buckets (is the trail's bucket this account's?)", "s3:ListAllMyBuckets")),
    };
    let org = if found.iter().any(|t| t.organization) { organization_id(aws, home).await } else { None };
    let me = futures::future::join_all(found.iter().map(|t| management_events(aws, t))).await;
    for (t, m) in found.iter_mut().zip(me) {
        t.bucket_owned = mine.contains(&t.bucket);
        t.management_events = m;
        if t.organization {
            t.org_id = org.clone();
        }
    }
    found.sort_by(|a, b| a.arn.cmp(&b.arn));
    Ok(found)
}

/// The caller's organization (`organizations:DescribeOrganization`, allowed to member accounts); `None` when
/// the account is in none or may not ask.
pub async fn organization_id(aws: &Aws, home: &str) -> Option<String> {
    // through [`crate::aws::rpc`] (JSON 1.1; the answer's `Organization.Id`: Organizations API Reference,
    // "DescribeOrganization")
    let r = crate::aws::rpc::call(&aws.at(home), &crate::aws::rpc::ORGANIZATIONS, "DescribeOrganization", crate::aws::rpc::Params::Json(serde_json::json!({}))).await;
    match r {
        Ok(body) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/Organization/Id").and_then(|i| i.as_str()).map(String::from)),
        Err(e) => {
            tracing::info!("organizations:DescribeOrganization: {:?} (the organization id is unknown)", e.code());
            None
        }
    }
}

/// Is the bucket this account's? (ListBuckets lists the caller's buckets only.)
pub async fn bucket_owned(aws: &Aws, home: &str, bucket: &str) -> anyhow::Result<bool> {
    let r = crate::aws::s3(&aws.at(home))
        .list_buckets()
        .send()
        .await
        .map_err(|e| explain(e, "listing buckets (is the trail's bucket this account's?)", "s3:ListAllMyBuckets"))?;
    Ok(r.buckets().iter().any(|b| b.name() == Some(bucket)))
}

/// The bucket's region, from HeadBucket's `x-amz-bucket-region` (sent even when the answer is 403: "HeadBucket"
/// API reference); `None` when it cannot be told.
pub async fn bucket_region(aws: &Aws, home: &str, bucket: &str) -> Option<String> {
    match crate::aws::s3(&aws.at(home)).head_bucket().bucket(bucket).send().await {
        Ok(r) => r.bucket_region().map(String::from).filter(|r| !r.is_empty()),
        Err(e) => e
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(String::from),
    }
}

/// May the forwarder subscribe to the trail's log group? It must be in this account and hold fewer than two
/// subscription filters besides ours ("CloudWatch Logs quotas": two subscription filters per log group).
pub async fn log_group_has_room(aws: &Aws, r: &Reuse, account: &str, stack: &str) -> anyhow::Result<bool> {
    let Some((region, acct, group)) = r.log_group() else { return Ok(false) };
    if acct != account {
        return Ok(false);
    }
    let others = other_filters(aws, &region, &group, &format!("{stack}-forwarder")).await?;
    Ok(others.len() < MAX_FILTERS)
}

/// Subscription filters per log group ("CloudWatch Logs quotas").
pub const MAX_FILTERS: usize = 2;

async fn other_filters(aws: &Aws, region: &str, group: &str, ours: &str) -> anyhow::Result<Vec<String>> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.at(region));
    match logs.describe_subscription_filters().log_group_name(group).send().await {
        Ok(f) => Ok(f.subscription_filters().iter().filter_map(|f| f.filter_name()).filter(|n| *n != ours).map(String::from).collect()),
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(Vec::new()),
        Err(e) => Err(explain(e, &format!("reading the subscription filters of {group} in {region}"), "logs:DescribeSubscriptionFilters")),
    }
}

/// The trail to reuse by default: multi-region, recording management events, bucket in this account, with a
/// topic; the first by ARN among equals.
pub fn best(found: &[Reuse]) -> Option<&Reuse> {
    found
        .iter()
        .filter(|t| t.multi_region && t.management_events != Some(false))
        .max_by_key(|t| (t.bucket_owned, t.topic_arn.is_some(), t.log_group_arn.is_some(), std::cmp::Reverse(t.arn.clone())))
}

/// `--use-trail` → the trail: by name or ARN among those found; an ARN nobody here can see is the log
/// archive case, which needs `--bucket`.
pub fn pick(found: &[Reuse], spec: &str, bucket: Option<&str>, prefix: Option<&str>) -> anyhow::Result<Reuse> {
    if let Some(t) = found.iter().find(|t| t.arn == spec || t.name == spec) {
        let mut t = t.clone();
        if let Some(b) = bucket.filter(|b| *b != t.bucket) {
            return Err(crate::error::usage(format!(
                "--bucket {b} is not the bucket of trail {} ({}); drop --bucket with --use-trail",
                t.name, t.bucket
            )));
        }
        if t.key_prefix.is_none() {
            t.key_prefix = prefix.map(String::from);
        }
        return Ok(t);
    }
    let listed = if found.is_empty() {
        "no trail records this account".to_string()
    } else {
        format!("trails found: {}", found.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "))
    };
    let Some((region, _acct, rest)) = arn_parts(spec).filter(|p| p.2.starts_with("trail/")) else {
        return Err(crate::error::usage(format!(
            "--use-trail {spec}: no such trail ({listed}); pass a trail name or ARN (env TRAILSETUP_USE_TRAIL, config key use_trail)"
        )));
    };
    let Some(bucket) = bucket else {
        return Err(crate::error::usage(format!(
            "--use-trail {spec}: this account cannot see that trail ({listed}); for an organization trail that writes to \
             a log archive bucket, also pass --bucket <log-archive-bucket> (and --prefix if the trail has a key prefix); \
             env TRAILSETUP_BUCKET, config key bucket"
        )));
    };
    Ok(Reuse {
        name: rest.trim_start_matches("trail/").to_string(),
        arn: spec.to_string(),
        home_region: region,
        multi_region: true,
        organization: true,
        visible: false,
        bucket: bucket.to_string(),
        key_prefix: prefix.and_then(key_prefix_of),
        ..Default::default()
    })
}

/// A trail's `S3KeyPrefix` from what a user passes as `--prefix` (`audit`, `audit/`, `audit/AWSLogs/`).
pub fn key_prefix_of(p: &str) -> Option<String> {
    Some(p.trim_end_matches('/').trim_end_matches("AWSLogs").trim_end_matches('/').to_string()).filter(|p| !p.is_empty())
}

/// A line per trail for the plan header.
pub fn describe(t: &Reuse, account: &str) -> String {
    let scope = if t.organization { "organization trail" } else if t.multi_region { "multi-region trail" } else { "trail" };
    let bucket = if t.bucket_owned { t.bucket.clone() } else { format!("{} (another account)", t.bucket) };
    let mut s = format!("{scope} {} (home {}): bucket {bucket}", t.name, t.home_region);
    if let Some(p) = &t.key_prefix {
        s.push_str(&format!(" prefix {p}/"));
    }
    s.push_str(&match &t.topic_arn {
        Some(a) if t.own_topic(account).is_some() => format!(", topic {}", a.rsplit(':').next().unwrap_or(a)),
        Some(a) => format!(", topic {a}"),
        None => ", no SNS topic".into(),
    });
    if let Some(k) = &t.kms_key {
        s.push_str(&format!(", KMS key {k}"));
    }
    if let Some((r, _, g)) = t.log_group() {
        s.push_str(&format!(", CloudWatch Logs {g} [{r}]"));
    }
    s.push_str(match t.management_events {
        Some(true) => ", management events",
        Some(false) => ", no management events",
        None => "",
    });
    s
}

// --- observe / changes ---

/// What observation found on the reused trail's resources.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// our queue's subscription to the trail's topic
    pub subscription: Option<Value>,
    /// our entry in the bucket's notification configuration, and the others' entries (for overlap)
    pub notification: Option<Value>,
    pub other_notifications: Vec<Value>,
    /// the log group's subscription filters not ours
    pub other_filters: Vec<String>,
}

pub fn desired_subscription(ctx: &Ctx, topic: &str) -> Value {
    json!({"topic_arn": topic, "protocol": "sqs", "endpoint": ctx.queue_arn(&ctx.queue_name())})
}

/// Our entry: `s3:ObjectCreated:*` on this account's log prefix, `.json.gz` files, to our queue.
pub fn desired_notification(ctx: &Ctx, r: &Reuse) -> Value {
    json!({"bucket": r.bucket, "id": notification_id(ctx), "queue_arn": ctx.queue_arn(&ctx.queue_name()),
           "events": ["s3:ObjectCreated:*"], "prefix": r.account_prefix(&ctx.account), "suffix": ".json.gz"})
}

fn s3_client(aws: &Aws, r: &Reuse, home: &str) -> aws_sdk_s3::Client {
    crate::aws::s3(&aws.at(r.bucket_region.as_deref().unwrap_or(home)))
}

fn queue_config_json(q: &QueueConfiguration) -> Value {
    let mut v = events_and_rules(q.events(), q.filter());
    v["id"] = json!(q.id());
    v["queue_arn"] = json!(q.queue_arn());
    v
}

fn events_and_rules(events: &[Event], filter: Option<&NotificationConfigurationFilter>) -> Value {
    let rules: BTreeMap<String, String> = filter
        .and_then(|f| f.key())
        .map(|k| k.filter_rules().iter().filter_map(|r| Some((r.name()?.as_str().to_lowercase(), r.value()?.to_string()))).collect())
        .unwrap_or_default();
    json!({"events": events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
           "prefix": rules.get("prefix").cloned().unwrap_or_default(), "suffix": rules.get("suffix").cloned().unwrap_or_default()})
}

pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    let Some(r) = &ctx.reuse else { return Ok(Observed::default()) };
    let mut o = Observed::default();
    if let Some(topic) = r.own_topic(&ctx.account) {
        let region = r.topic_region().unwrap_or_else(|| r.home_region.clone());
        let want = desired_subscription(ctx, &topic);
        o.subscription = super::sns::subscribed(aws, &region, &topic, want["endpoint"].as_str().unwrap_or_default()).await?.then_some(want);
    } else if r.uses_bucket_notification() {
        let cfg = s3_client(aws, r, &ctx.home)
            .get_bucket_notification_configuration()
            .bucket(&r.bucket)
            .send()
            .await
            .map_err(|e| explain(e, &format!("reading the event notifications of bucket {}", r.bucket), "s3:GetBucketNotification"))?;
        let id = notification_id(ctx);
        for q in cfg.queue_configurations() {
            if q.id() == Some(id.as_str()) {
                let mut v = queue_config_json(q);
                v["bucket"] = json!(r.bucket);
                o.notification = Some(v);
            } else {
                o.other_notifications.push(queue_config_json(q));
            }
        }
        for t in cfg.topic_configurations() {
            let mut v = events_and_rules(t.events(), t.filter());
            v["id"] = json!(t.id());
            v["topic_arn"] = json!(t.topic_arn());
            o.other_notifications.push(v);
        }
        for l in cfg.lambda_function_configurations() {
            let mut v = events_and_rules(l.events(), l.filter());
            v["id"] = json!(l.id());
            v["lambda_function_arn"] = json!(l.lambda_function_arn());
            o.other_notifications.push(v);
        }
    }
    if let Some((region, _, group)) = r.log_group().filter(|g| g.1 == ctx.account) {
        o.other_filters = other_filters(aws, &region, &group, &ctx.forwarder_name()).await?;
    }
    Ok(o)
}

/// Two configurations overlap when both their prefixes and their suffixes overlap (one starts/ends with the
/// other, an empty one matching all) and they share an event type ("Configuring event notifications using
/// object key name filtering": overlapping configurations are refused).
pub fn overlaps(a: &Value, b: &Value) -> bool {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let (pa, pb, sa, sb) = (s(a, "prefix"), s(b, "prefix"), s(a, "suffix"), s(b, "suffix"));
    let prefix = pa.starts_with(&pb) || pb.starts_with(&pa);
    let suffix = sa.ends_with(&sb) || sb.ends_with(&sa);
    let family = |e: &str| e.trim_end_matches('*').trim_end_matches(':').split(':').take(2).collect::<Vec<_>>().join(":");
    let events = |v: &Value| v["events"].as_array().cloned().unwrap_or_default().iter().filter_map(|e| e.as_str().map(String::from)).collect::<Vec<_>>();
    let shared = events(a).iter().any(|x| {
        events(b).iter().any(|y| x == y || (family(x) == family(y) && (x.ends_with('*') || y.ends_with('*'))))
    });
    prefix && suffix && shared
}

/// The reused resources as `no-op` with `"reused": true`, and what we add to them.
pub fn changes(ctx: &Ctx, o: &Observed) -> anyhow::Result<Vec<Change>> {
    let Some(r) = &ctx.reuse else { return Ok(Vec::new()) };
    let reused = |kind: Kind, name: &str, region: &str, mut d: Value| {
        d["reused"] = json!(true);
        Change { action: Action::NoOp, kind, name: name.to_string(), region: region.to_string(), current: Some(d.clone()), details: d }
    };
    let mut c = vec![reused(
        Kind::CloudTrailTrail,
        &r.name,
        &r.home_region,
        json!({"arn": r.arn, "s3_bucket": r.bucket, "s3_key_prefix": r.key_prefix, "sns_topic_arn": r.topic_arn,
               "multi_region": r.multi_region, "organization": r.organization, "kms_key": r.kms_key,
               "cloudwatch_logs_log_group_arn": r.log_group_arn, "visible": r.visible}),
    )];
    let bucket_region = r.bucket_region.clone().unwrap_or_else(|| ctx.home.clone());
    let mut b = json!({"owner": if r.bucket_owned { "this account" } else { "another account" }, "read_prefix": r.account_prefix(&ctx.account)});
    if let Some(role) = &r.source_role {
        b["read_through_role"] = json!(role);
    }
    c.push(reused(Kind::S3Bucket, &r.bucket, &bucket_region, b));
    if let Some(topic) = r.own_topic(&ctx.account) {
        let region = r.topic_region().unwrap_or_else(|| r.home_region.clone());
        let name = topic.rsplit(':').next().unwrap_or(&topic).to_string();
        c.push(reused(Kind::SnsTopic, &name, &region, json!({"arn": topic})));
        c.push(Change::diff(
            Kind::SnsSubscription,
            format!("{name} -> {}", ctx.queue_name()),
            region,
            desired_subscription(ctx, &topic),
            o.subscription.clone(),
        ));
    } else if r.uses_bucket_notification() {
        let want = desired_notification(ctx, r);
        if let Some(other) = o.other_notifications.iter().find(|x| overlaps(x, &want)) {
            return Err(crate::error::usage(format!(
                "bucket {} already sends {} for {}*{} to {} (notification {}); S3 refuses a second configuration whose \
                 prefix and suffix overlap for the same event type, so this queue cannot be added beside it. Either \
                 point that notification at an SNS topic and pass it to the trail (aws cloudtrail update-trail \
                 --sns-topic-name), then rerun, or have its consumer forward to our queue",
                r.bucket,
                other["events"],
                other["prefix"].as_str().unwrap_or_default(),
                other["suffix"].as_str().unwrap_or_default(),
                other.get("queue_arn").or(other.get("topic_arn")).or(other.get("lambda_function_arn")).and_then(|v| v.as_str()).unwrap_or("?"),
                other["id"].as_str().unwrap_or("without id"),
            )));
        }
        let mut d = want.clone();
        d["other_configurations_kept"] = json!(o.other_notifications.len());
        let now = o.notification.clone().map(|mut n| {
            n["other_configurations_kept"] = json!(o.other_notifications.len());
            n
        });
        c.push(Change::diff(Kind::S3BucketNotification, notification_id(ctx), bucket_region, d, now));
    }
    if let Some((region, _, group)) = r.log_group().filter(|g| g.1 == ctx.account) {
        c.push(reused(Kind::LogsLogGroup, &group, &region, json!({"arn": r.log_group_arn})));
    }
    Ok(c)
}

/// Warnings for the plan header: where live loading comes from, and what we could not do.
pub fn warnings(ctx: &Ctx, o: &Observed) -> Vec<String> {
    let Some(r) = &ctx.reuse else { return Vec::new() };
    let mut w = Vec::new();
    match r.log_group() {
        Some((_, acct, g)) if acct != ctx.account => {
            w.push(format!("the trail's CloudWatch Logs group {g} is in account {acct}: live loading goes through the queue only"))
        }
        Some((region, _, g)) if !r.forward_logs => w.push(format!(
            "log group {g} [{region}] already has two subscription filters ({}), the most CloudWatch Logs allows; the \
             forwarder is not subscribed and live loading goes through the queue only",
            o.other_filters.join(", ")
        )),
        Some(_) => {}
        None if r.visible => w.push("the trail sends nothing to CloudWatch Logs: live loading goes through the queue only".into()),
        None => w.push("the trail is not visible from here, so its CloudWatch Logs group is unknown: live loading goes through the queue only".into()),
    }
    if r.management_events == Some(false) {
        w.push(format!("trail {} records no management events: they will not reach OpenSearch", r.name));
    }
    if r.organization && r.org_id.is_none() {
        w.push(format!(
            "the organization id is unknown (organizations:DescribeOrganization): readers are granted this account's \
             folder in both layouts ({root}{a}/ and {root}o-*/{a}/), and may list the organization folders' key names",
            root = r.logs_root(),
            a = ctx.account
        ));
    }
    if r.kms_key.is_some() && r.bucket_owned {
        w.push(format!(
            "the trail encrypts with {}: its key policy must let this account's IAM policies grant kms:Decrypt (the \
             default key policy does); the ingest-worker policy asks for it",
            r.kms_key.as_deref().unwrap_or_default()
        ));
    }
    w
}

/// A policy value: one string alone, several as an array (as IAM itself writes them).
fn one_or_many(mut v: Vec<String>) -> Value {
    if v.len() == 1 { json!(v.remove(0)) } else { json!(v) }
}

/// What the owner of a bucket or topic in another account must add, as statements to paste.
pub fn owner_actions(ctx: &Ctx) -> Vec<Value> {
    let Some(r) = &ctx.reuse else { return Vec::new() };
    let mut out = Vec::new();
    let p = &ctx.partition;
    let prefix = r.account_prefix(&ctx.account);
    let readers: Value = match &r.source_role {
        Some(role) => json!(role),
        None => json!(format!("arn:{p}:iam::{}:root", ctx.account)),
    };
    if !r.bucket_owned {
        out.push(json!({
            "owner": "the bucket owner",
            "resource": format!("arn:{p}:s3:::{}", r.bucket),
            "what": if r.source_role.is_some() {
                format!("add to the bucket policy (or to role {}'s permissions) the read grant for this account's logs", r.source_role.as_deref().unwrap_or_default())
            } else {
                format!("add to the bucket policy: account {} may read its own logs (its ingest-worker policy grants it to the workers)", ctx.account)
            },
            "statements": [
                {"Sid": format!("TrailsetupRead{}{}", ctx.account, ctx.stack_sid()), "Effect": "Allow", "Principal": {"AWS": readers},
                 "Action": "s3:GetObject", "Resource": one_or_many(ctx.read_objects().iter().map(|o| format!("arn:{p}:s3:::{}/{o}", r.bucket)).collect())},
                {"Sid": format!("TrailsetupList{}{}", ctx.account, ctx.stack_sid()), "Effect": "Allow", "Principal": {"AWS": readers},
                 "Action": "s3:ListBucket", "Resource": format!("arn:{p}:s3:::{}", r.bucket),
                 "Condition": {"StringLike": {"s3:prefix": ctx.list_prefixes()}}}
            ]
        }));
        if let Some(role) = &r.source_role {
            out.push(json!({
                "owner": "the bucket owner",
                "resource": role,
                "what": format!("role {role} must trust this account's ingest workers (its trust policy)"),
                "statements": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:{p}:iam::{}:root", ctx.account)},
                                "Action": "sts:AssumeRole",
                                "Condition": {"ArnLike": {"aws:PrincipalArn": ingest_principals(ctx)}}}]
            }));
        }
        if r.kms_key.is_some() {
            out.push(json!({
                "owner": "the KMS key owner",
                "resource": r.kms_key,
                "what": "the trail's key must let the readers decrypt the log files (key policy)",
                "statements": [{"Sid": format!("TrailsetupDecrypt{}{}", ctx.account, ctx.stack_sid()), "Effect": "Allow", "Principal": {"AWS": readers},
                                "Action": "kms:Decrypt", "Resource": "*"}]
            }));
        }
    }
    match &r.topic_arn {
        Some(t) if r.own_topic(&ctx.account).is_none() => out.push(json!({
            "owner": "the topic owner",
            "resource": t,
            "what": format!("allow this account to subscribe queue {} (topic policy), then run `trailsetup init` again to subscribe it", ctx.queue_name()),
            "statements": [{"Sid": format!("TrailsetupSubscribe{}{}", ctx.account, ctx.stack_sid()), "Effect": "Allow",
                            "Principal": {"AWS": format!("arn:{p}:iam::{}:root", ctx.account)},
                            "Action": "sns:Subscribe", "Resource": t,
                            "Condition": {"StringEquals": {"sns:Protocol": "sqs", "sns:Endpoint": ctx.queue_arn(&ctx.queue_name())}}}]
        })),
        None if !r.bucket_owned => out.push(json!({
            "owner": "the bucket owner",
            "resource": format!("arn:{p}:s3:::{}", r.bucket),
            "what": format!(
                "add an event notification to the bucket (merged with its others): s3:ObjectCreated:* on prefix {prefix}, \
                 suffix .json.gz, to queue {} (its policy already admits the bucket)", ctx.queue_arn(&ctx.queue_name())),
            "notification": {"QueueConfigurations": [{"Id": notification_id(ctx), "QueueArn": ctx.queue_arn(&ctx.queue_name()),
                "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}, {"Name": "suffix", "Value": ".json.gz"}]}}}]}
        })),
        _ => {}
    }
    out
}

/// The roles that read the logs: the `--ingest-role`s, else any principal of this account.
fn ingest_principals(ctx: &Ctx) -> Value {
    if ctx.ingest_roles.is_empty() {
        json!(format!("arn:{}:iam::{}:*", ctx.partition, ctx.account))
    } else {
        json!(ctx.ingest_roles)
    }
}

// --- apply / delete ---

fn our_queue_config(d: &Value) -> anyhow::Result<QueueConfiguration> {
    let rule = |n: FilterRuleName, v: &str| FilterRule::builder().name(n).value(v).build();
    Ok(QueueConfiguration::builder()
        .id(d["id"].as_str().unwrap_or_default())
        .queue_arn(d["queue_arn"].as_str().unwrap_or_default())
        .events(Event::from("s3:ObjectCreated:*"))
        .filter(
            NotificationConfigurationFilter::builder()
                .key(
                    S3KeyFilter::builder()
                        .filter_rules(rule(FilterRuleName::Prefix, d["prefix"].as_str().unwrap_or_default()))
                        .filter_rules(rule(FilterRuleName::Suffix, d["suffix"].as_str().unwrap_or_default()))
                        .build(),
                )
                .build(),
        )
        .build()?)
}

/// Read the bucket's configuration, replace our entry (by id) and write it back whole: every other queue, topic,
/// Lambda and EventBridge configuration is sent back as read.
async fn rewrite_notifications(ctx: &Ctx, aws: &Aws, region: &str, bucket: &str, ours: Option<QueueConfiguration>) -> anyhow::Result<()> {
    let s3 = crate::aws::s3(&aws.at(region));
    let cur = s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the event notifications of bucket {bucket}"), "s3:GetBucketNotification"))?;
    let id = notification_id(ctx);
    let mut queues: Vec<QueueConfiguration> = cur.queue_configurations().iter().filter(|q| q.id() != Some(id.as_str())).cloned().collect();
    let removing = ours.is_none();
    if removing && queues.len() == cur.queue_configurations().len() {
        return Ok(());
    }
    queues.extend(ours);
    let cfg = NotificationConfiguration::builder()
        .set_queue_configurations(Some(queues))
        .set_topic_configurations(Some(cur.topic_configurations().to_vec()))
        .set_lambda_function_configurations(Some(cur.lambda_function_configurations().to_vec()))
        .set_event_bridge_configuration(cur.event_bridge_configuration().cloned())
        .build();
    // S3 tests each destination, and refuses while the queue policy we just set propagates
    let put = || {
        s3.put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(cfg.clone())
            .expected_bucket_owner(&ctx.account)
            .send()
    };
    crate::aws::eventual::retry("PutBucketNotificationConfiguration", &format!("the event notifications of bucket {bucket}"), put)
        .await
        .map_err(|e| explain(e, &format!("writing the event notifications of bucket {bucket}"), "s3:PutBucketNotification"))?;
    Ok(())
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let bucket = c.details["bucket"].as_str().ok_or_else(|| anyhow!("notification without bucket"))?;
    rewrite_notifications(ctx, aws, &c.region, bucket, Some(our_queue_config(&c.details)?)).await
}

/// destroy: our entry only.
pub async fn delete(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let bucket = c.details["bucket"].as_str().ok_or_else(|| anyhow!("notification without bucket"))?;
    rewrite_notifications(ctx, aws, &c.region, bucket, None).await
}


use crate::permissions as perm;
/// `init` always lists the account's trails ([`discover`]: the plan names the trails that already record the
/// account, and `--use-trail` picks one of them), with or without `--use-trail`; status and destroy never do
/// ("Actions, resources, and condition keys for AWS CloudTrail",
/// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudtrail.html: DescribeTrails and
/// ListTrails have no resource type). With `--use-trail`, the other trail's bucket, log group and trail are not
/// ours and not known before discovery: any trail, bucket, log group of the account, each action on its own
/// resource type (GetEventSelectors on `trail`, Get/PutBucketNotification on `bucket`, DescribeSubscriptionFilters
/// on `log-group`); s3:ListAllMyBuckets has no resource type ("Actions, resources,
/// and condition keys for Amazon S3", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html),
/// nor has organizations:DescribeOrganization ("Actions, resources, and condition keys for AWS Organizations",
/// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsorganizations.html).
/// GetEventSelectors and DescribeOrganization are also tried on the trails `init` finds without `--use-trail`,
/// where a refusal only leaves a fact of the "existing trails" note unknown; they are declared for `--use-trail`,
/// which relies on them.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("cloudtrail:DescribeTrails", perm::Res::Any, perm::INIT),
    perm::p("cloudtrail:ListTrails", perm::Res::Any, perm::INIT),
    perm::with(&[perm::Feature::UseTrail], "cloudtrail:GetEventSelectors", perm::Res::OtherTrail, perm::OBSERVE),
    perm::with(&[perm::Feature::UseTrail], "s3:ListAllMyBuckets", perm::Res::Any, perm::OBSERVE),
    perm::with(&[perm::Feature::UseTrail], "s3:GetBucketNotification", perm::Res::OtherBucket, perm::OBSERVE),
    perm::with(&[perm::Feature::UseTrail], "s3:PutBucketNotification", perm::Res::OtherBucket, perm::INIT_DESTROY),
    perm::with(&[perm::Feature::UseTrail], "logs:DescribeSubscriptionFilters", perm::Res::OtherLogGroup, perm::OBSERVE),
    perm::with(&[perm::Feature::UseTrail], "organizations:DescribeOrganization", perm::Res::Any, perm::OBSERVE),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_follows_s3_rules() {
        let a = json!({"events": ["s3:ObjectCreated:*"], "prefix": "AWSLogs/1/", "suffix": ".json.gz"});
        assert!(overlaps(&a, &json!({"events": ["s3:ObjectCreated:Put"], "prefix": "AWSLogs/", "suffix": ""})));
        assert!(!overlaps(&a, &json!({"events": ["s3:ObjectCreated:Put"], "prefix": "other/", "suffix": ""})));
        assert!(!overlaps(&a, &json!({"events": ["s3:ObjectRemoved:*"], "prefix": "", "suffix": ""})));
        assert!(!overlaps(&a, &json!({"events": ["s3:ObjectCreated:*"], "prefix": "", "suffix": ".csv"})));
        assert!(overlaps(&a, &json!({"events": ["s3:ObjectCreated:*"], "prefix": "", "suffix": ".gz"})));
    }

    #[test]
    fn prefixes() {
        let mut r = Reuse { key_prefix: Some("org/".into()), ..Default::default() };
        assert_eq!(r.account_prefix("111"), "org/AWSLogs/111/");
        r.organization = true;
        assert_eq!(r.account_prefix("111"), "org/AWSLogs/");
        r.org_id = Some("o-abc".into());
        assert_eq!(r.account_prefix("111"), "org/AWSLogs/o-abc/111/");
        let t = Reuse { log_group_arn: Some("arn:aws:logs:eu-west-1:111:log-group:/ct/x:*".into()), forward_logs: true, ..Default::default() };
        assert_eq!(t.log_group(), Some(("eu-west-1".into(), "111".into(), "/ct/x".into())));
        assert_eq!(t.forwarder_region().as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn pick_by_name_arn_or_invisible_arn() {
        let t = Reuse { name: "main".into(), arn: "arn:aws:cloudtrail:us-east-1:111:trail/main".into(), multi_region: true, ..Default::default() };
        assert_eq!(pick(std::slice::from_ref(&t), "main", None, None).unwrap().arn, t.arn);
        assert_eq!(pick(std::slice::from_ref(&t), &t.arn, None, None).unwrap().name, "main");
        assert!(pick(std::slice::from_ref(&t), "nope", None, None).unwrap_err().to_string().contains("trails found: main"));
        let org = "arn:aws:cloudtrail:us-east-1:999:trail/org";
        assert!(pick(&[], org, None, None).unwrap_err().to_string().contains("--bucket"));
        let r = pick(&[], org, Some("archive"), Some("p/AWSLogs/")).unwrap();
        assert_eq!((r.visible, r.bucket.as_str(), r.key_prefix.as_deref(), r.home_region.as_str()), (false, "archive", Some("p"), "us-east-1"));
        assert_eq!(best(std::slice::from_ref(&t)).map(|x| x.name.as_str()), Some("main"));
    }
}
