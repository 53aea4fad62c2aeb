//! `trailsetup status`: is audit data flowing end to end? Read-only checks, all at once:
//! every planned resource exists and matches the plan (the same observation and plan `init` makes), each trail
//! logs and delivers (`GetTrailStatus`), every topic → queue subscription is confirmed, the queues' depth and the
//! dead-letter queues' (non-zero is a failure), the forwarder's state, OpenSearch's health and the freshness of
//! the newest event per region. Exit 0 when healthy, 1 when any check fails.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{DestroyArgs, StatusArgs};
use crate::error::{usage, Exit};
use crate::output::Output;
use crate::plan::{Action, Kind};
use crate::resources::{self, Aws, Ctx, OpenSearchTarget};
use crate::settings::Common;
use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub resource: String,
    pub region: String,
    pub level: Level,
    pub detail: String,
    pub fix: String,
}

fn check(name: &str, resource: impl Into<String>, region: impl Into<String>, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), resource: resource.into(), region: region.into(), level, detail: detail.into(), fix: fix.into() }
}

/// Every planned resource: present and as planned (ok), differing (warn), missing (fail).
pub fn resource_checks(plan: &crate::plan::Plan) -> Vec<Check> {
    plan.changes
        .iter()
        .map(|c| {
            let (level, detail) = match c.action {
                Action::NoOp if c.details["unreachable"] == true => {
                    (Level::Warn, format!("not reachable from here: {}", c.details["reason"].as_str().unwrap_or_default()))
                }
                Action::NoOp => (Level::Ok, "as planned".to_string()),
                Action::Update => (Level::Warn, "differs from the plan (drift)".to_string()),
                Action::Create => (Level::Fail, "missing".to_string()),
                Action::Delete => (Level::Warn, "planned for deletion".to_string()),
            };
            let fix = if level == Level::Ok { String::new() } else { "run `trailsetup init` (shows the difference, then repairs it)".into() };
            check(&format!("resource {}", c.kind), &c.name, &c.region, level, detail, fix)
        })
        .collect()
}

async fn trail_checks(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    for (r, n) in ctx.trails() {
        let ct = aws_sdk_cloudtrail::Client::new(&aws.at(&r));
        match ct.get_trail_status().name(ctx.trail_arn(&r, &n)).send().await {
            Err(e) => out.push(check("trail logging", &n, &r, Level::Fail, format!("{:#}", crate::aws::explain(e, "GetTrailStatus", "cloudtrail:GetTrailStatus")), "run `trailsetup init`")),
            Ok(s) => {
                out.push(if s.is_logging().unwrap_or(false) {
                    check("trail logging", &n, &r, Level::Ok, "logging", "")
                } else {
                    check("trail logging", &n, &r, Level::Fail, "logging is stopped: no event is recorded",
                        format!("aws cloudtrail start-logging --name {} --region {r} (or run `trailsetup init`)", ctx.trail_arn(&r, &n)))
                });
                for (what, err, fix) in [
                    ("log file delivery", s.latest_delivery_error(), "check the bucket policy and, with --kms-key, the key policy (`trailsetup init` repairs ours)"),
                    ("SNS notification", s.latest_notification_error(), "check the topic policy (and key policy): run `trailsetup init`"),
                    ("CloudWatch Logs delivery", s.latest_cloud_watch_logs_delivery_error(), "check role trailsetup-cloudtrail-logs and the log group: run `trailsetup init`"),
                ] {
                    if let Some(e) = err.filter(|e| !e.is_empty()) {
                        out.push(check(&format!("trail {what}"), &n, &r, Level::Fail, format!("latest error: {e}"), fix));
                    }
                }
                let last = s.latest_delivery_time().map(|t| t.secs());
                out.push(match last {
                    Some(t) => check("trail last delivery", &n, &r, Level::Ok, format!("{}s ago", chrono::Utc::now().timestamp() - t), ""),
                    None => check("trail last delivery", &n, &r, Level::Warn, "no log file delivered yet (the first arrives within about 15 minutes of logging)", "wait, then check again"),
                });
            }
        }
    }
    out
}

async fn subscription_checks(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    let queue = ctx.queue_arn(&ctx.queue_name());
    for r in ctx.trail_regions() {
        let sns = aws_sdk_sns::Client::new(&aws.at(&r));
        let topic = ctx.topic_arn(&r);
        let subs = match sns.list_subscriptions_by_topic().topic_arn(&topic).send().await {
            Ok(s) => s,
            Err(e) => {
                out.push(check("subscription", &topic, &r, Level::Fail, format!("{:#}", crate::aws::explain(e, "listing subscriptions", "sns:ListSubscriptionsByTopic")), "run `trailsetup init`"));
                continue;
            }
        };
        let ours = subs.subscriptions().iter().find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue.as_str()));
        out.push(match ours.and_then(|s| s.subscription_arn()) {
            None => check("subscription", resources::sns::subscription_name(ctx), &r, Level::Fail,
                "the topic does not deliver to the queue: new log files are not announced to `ingest`", "run `trailsetup init` (it subscribes the queue again)"),
            Some("PendingConfirmation") => check("subscription", resources::sns::subscription_name(ctx), &r, Level::Fail,
                "pending confirmation", "run `trailsetup init` as the queue's owner (its subscriptions confirm at once)"),
            Some(_) => check("subscription", resources::sns::subscription_name(ctx), &r, Level::Ok, "confirmed", ""),
        });
    }
    out
}

async fn queue_depth(aws: &Aws, region: &str, name: &str) -> anyhow::Result<Option<(u64, u64, String)>> {
    let Some(url) = resources::sqs::queue_url_in(aws, region, name).await? else { return Ok(None) };
    let a = aws_sdk_sqs::Client::new(&aws.at(region))
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| crate::aws::explain(e, &format!("reading queue {name}"), "sqs:GetQueueAttributes"))?;
    let n = |k: aws_sdk_sqs::types::QueueAttributeName| a.attributes().and_then(|m| m.get(&k)).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Some((n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages), n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible), url)))
}

async fn queue_checks(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    match queue_depth(aws, &ctx.home, &ctx.queue_name()).await {
        Ok(Some((v, nv, _))) => out.push(check("queue depth", ctx.queue_name(), &ctx.home, if v > 10_000 { Level::Warn } else { Level::Ok },
            format!("{v} waiting, {nv} in flight"), if v > 10_000 { "start more `trailsetup ingest` workers" } else { "" })),
        Ok(None) => {}
        Err(e) => out.push(check("queue depth", ctx.queue_name(), &ctx.home, Level::Fail, format!("{e:#}"), "grant sqs:GetQueueAttributes")),
    }
    let mut dlqs = vec![(ctx.home.clone(), ctx.dlq_name(), "notifications `ingest` could not handle")];
    for r in ctx.forwarder_regions() {
        dlqs.push((r, ctx.forwarder_dlq_name(), "records OpenSearch rejected, or forwarder invocations that failed"));
    }
    for (r, name, what) in dlqs {
        match queue_depth(aws, &r, &name).await {
            Ok(Some((v, nv, url))) if v + nv > 0 => out.push(check("dead-letter queue", &name, &r, Level::Fail,
                format!("{} message(s): {what}", v + nv),
                format!("read them (aws sqs receive-message --queue-url {url} --region {r}), fix the cause, then redrive or delete them"))),
            Ok(Some(_)) => out.push(check("dead-letter queue", &name, &r, Level::Ok, "empty", "")),
            Ok(None) => {}
            Err(e) => out.push(check("dead-letter queue", &name, &r, Level::Fail, format!("{e:#}"), "grant sqs:GetQueueAttributes")),
        }
    }
    out
}

async fn forwarder_checks(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let mut out = Vec::new();
    for r in ctx.forwarder_regions() {
        let lambda = aws_sdk_lambda::Client::new(&aws.at(&r));
        match lambda.get_function_configuration().function_name(ctx.forwarder_name()).send().await {
            Ok(c) => {
                let state = c.state().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Active".into());
                out.push(if state == "Active" {
                    check("forwarder", ctx.forwarder_name(), &r, Level::Ok, "active", "")
                } else {
                    check("forwarder", ctx.forwarder_name(), &r, Level::Fail, format!("state {state}: {}", c.state_reason().unwrap_or_default()), "run `trailsetup init`")
                });
            }
            Err(e) if crate::aws::code(&e).as_deref() == Some("ResourceNotFoundException") => {} // the resource check says it is missing
            Err(e) => out.push(check("forwarder", ctx.forwarder_name(), &r, Level::Fail, format!("{:#}", crate::aws::explain(e, "reading the forwarder", "lambda:GetFunctionConfiguration")), "")),
        }
    }
    out
}

/// CloudWatch metrics of the last hour: the forwarder's errors and throttles (each region), the queue's oldest
/// message. No data points (a quiet hour, or an emulator) is not a problem.
async fn metric_checks(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let now = std::time::SystemTime::now();
    let start = now - Duration::from_secs(3600);
    let query = |id: &str, ns: &str, metric: &str, dim: &str, value: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(Metric::builder().namespace(ns).metric_name(metric).dimensions(Dimension::builder().name(dim).value(value).build()).build())
                    .period(3600)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let fetch = |region: String, queries: Vec<MetricDataQuery>| async move {
        let r = aws_sdk_cloudwatch::Client::new(&aws.at(&region))
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(aws_smithy_types::DateTime::from(start))
            .end_time(aws_smithy_types::DateTime::from(now))
            .send()
            .await;
        r.map(|r| r.metric_data_results().iter().map(|m| (m.id().unwrap_or_default().to_string(), m.values().iter().cloned().fold(0.0_f64, f64::max))).collect::<Vec<_>>())
    };
    let mut out = Vec::new();
    for r in ctx.forwarder_regions() {
        let f = ctx.forwarder_name();
        match fetch(r.clone(), vec![query("errors", "AWS/Lambda", "Errors", "FunctionName", &f, "Sum"), query("throttles", "AWS/Lambda", "Throttles", "FunctionName", &f, "Sum")]).await {
            Ok(v) => {
                let get = |k: &str| v.iter().find(|(id, _)| id == k).map(|x| x.1).unwrap_or(0.0) as u64;
                let (e, t) = (get("errors"), get("throttles"));
                out.push(if e + t > 0 {
                    check("forwarder errors", &f, &r, Level::Warn, format!("{e} error(s), {t} throttle(s) in the last hour"),
                        format!("read its log group /aws/lambda/{f}; failed invocations land in {}", ctx.forwarder_dlq_name()))
                } else {
                    check("forwarder errors", &f, &r, Level::Ok, "no errors or throttles in the last hour", "")
                });
            }
            Err(e) => out.push(check("forwarder errors", &f, &r, Level::Warn, format!("{:#}", crate::aws::explain(e, "reading metrics", "cloudwatch:GetMetricData")), "grant cloudwatch:GetMetricData")),
        }
    }
    match fetch(ctx.home.clone(), vec![query("age", "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", &ctx.queue_name(), "Maximum")]).await {
        Ok(v) => {
            let age = v.first().map(|x| x.1).unwrap_or(0.0) as u64;
            out.push(if age > 3600 {
                check("queue oldest message", ctx.queue_name(), &ctx.home, Level::Warn, format!("{age} s old: the workers are behind, or none runs"), "start (more) `trailsetup ingest` workers")
            } else {
                check("queue oldest message", ctx.queue_name(), &ctx.home, Level::Ok, format!("{age} s"), "")
            });
        }
        Err(e) => out.push(check("queue oldest message", ctx.queue_name(), &ctx.home, Level::Warn, format!("{:#}", crate::aws::explain(e, "reading metrics", "cloudwatch:GetMetricData")), "grant cloudwatch:GetMetricData")),
    }
    out
}

/// Cluster health and freshness: the newest `@timestamp` per region, and the documents of the last hour.
async fn opensearch_checks(ctx: &Ctx, client: Option<crate::ingest::opensearch::Client>, stale: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(client) = client else {
        out.push(check("opensearch", "-", ctx.opensearch_region(), Level::Warn, "no endpoint known yet", "run `trailsetup init`"));
        return out;
    };
    let ep = client.base.to_string();
    match client.json(Method::GET, "_cluster/health", None).await {
        Ok(r) if r.status.is_success() => {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let s = v["status"].as_str().unwrap_or("unknown").to_string();
            out.push(check("opensearch health", &ep, ctx.opensearch_region(), if s == "red" { Level::Fail } else { Level::Ok }, format!("cluster {s}"),
                if s == "red" { "some primary shards are unassigned: see _cluster/allocation/explain" } else { "" }));
        }
        Ok(r) => {
            out.push(check("opensearch health", &ep, ctx.opensearch_region(), Level::Fail, format!("HTTP {}: {}", r.status, r.text()), "check --opensearch-auth and the access policy / role mapping"));
            return out;
        }
        Err(e) => {
            out.push(check("opensearch health", &ep, ctx.opensearch_region(), Level::Warn, format!("not reachable from here: {e:#}"), "run status where the endpoint is reachable"));
            return out;
        }
    }
    let q = json!({"size": 0, "query": {"match_all": {}},
        "aggs": {"regions": {"terms": {"field": "awsRegion", "size": 100}, "aggs": {"newest": {"max": {"field": "@timestamp"}}}},
                 "last_hour": {"filter": {"range": {"@timestamp": {"gte": "now-1h"}}}}}});
    let path = format!("{}-*/_search", ctx.index_prefix);
    match client.json(Method::POST, &path, Some(&q)).await {
        Ok(r) if r.status.is_success() => {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let buckets = v["aggregations"]["regions"]["buckets"].as_array().cloned().unwrap_or_default();
            if buckets.is_empty() {
                out.push(check("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Warn, "no events in OpenSearch yet", "run `trailsetup backfill`, and `trailsetup ingest` for new files"));
            }
            let now = chrono::Utc::now().timestamp_millis();
            for b in buckets {
                let region = b["key"].as_str().unwrap_or("?").to_string();
                let newest = b["newest"]["value"].as_f64().unwrap_or(0.0) as i64;
                let age = Duration::from_millis((now - newest).max(0) as u64);
                let when = b["newest"]["value_as_string"].as_str().unwrap_or("?").to_string();
                out.push(if age > stale {
                    check("freshness", format!("{}-*", ctx.index_prefix), region, Level::Warn, format!("newest event {when} ({} min ago)", age.as_secs() / 60),
                        "is `trailsetup ingest` running? are the trail and the subscription ok (above)?")
                } else {
                    check("freshness", format!("{}-*", ctx.index_prefix), region, Level::Ok, format!("newest event {when}"), "")
                });
            }
            let n = v["aggregations"]["last_hour"]["doc_count"].as_u64().unwrap_or(0);
            out.push(check("events in the last hour", format!("{}-*", ctx.index_prefix), "-", Level::Ok, n.to_string(), ""));
        }
        Ok(r) if r.status == reqwest::StatusCode::NOT_FOUND => {
            out.push(check("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Warn, "no index yet", "run `trailsetup backfill`"))
        }
        Ok(r) => out.push(check("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Fail, format!("HTTP {}: {}", r.status, r.text()), "check the role mapping (`trailsetup init`)")),
        Err(e) => out.push(check("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Warn, format!("{e:#}"), "")),
    }
    out
}

/// One round of every check.
pub async fn checks(common: &Common, ctx: &Ctx, aws: &Aws, state: &State, stale: Duration) -> anyhow::Result<Vec<Check>> {
    let observed = resources::observe(ctx, aws).await?;
    let plan = resources::changes(ctx, &observed)?;
    let client = match &ctx.opensearch {
        OpenSearchTarget::Url(_) => aws.search.clone(),
        OpenSearchTarget::Domain(_) => match (&observed.opensearch.endpoint, aws.search.clone()) {
            (_, Some(c)) => Some(c),
            (Some(ep), None) => resources::opensearch::domain_client(aws, ep, &ctx.home).ok(),
            (None, None) => None,
        },
    };
    let _ = (common, state);
    let (t, s, q, f, m, o) = futures::join!(
        trail_checks(ctx, aws),
        subscription_checks(ctx, aws),
        queue_checks(ctx, aws),
        forwarder_checks(ctx, aws),
        metric_checks(ctx, aws),
        opensearch_checks(ctx, client, stale),
    );
    let mut all = resource_checks(&plan);
    // a missing subscription is said by its own check, with its fix
    all.retain(|c| !(c.name == format!("resource {}", Kind::SnsSubscription) && c.level == Level::Fail));
    for v in [t, s, q, f, m, o] {
        all.extend(v);
    }
    Ok(all)
}

fn table(checks: &[Check]) -> String {
    let w = |f: &dyn Fn(&Check) -> usize| checks.iter().map(f).max().unwrap_or(0);
    let (wn, wr, wg) = (w(&|c| c.name.len()), w(&|c| c.resource.len()), w(&|c| c.region.len()));
    let mut o = String::new();
    for c in checks {
        let lvl = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        o.push_str(&format!("{lvl}  {:wn$}  {:wr$}  {:wg$}  {}\n", c.name, c.resource, c.region, c.detail));
        if !c.fix.is_empty() {
            o.push_str(&format!("      → {}\n", c.fix));
        }
    }
    let fails = checks.iter().filter(|c| c.level == Level::Fail).count();
    let warns = checks.iter().filter(|c| c.level == Level::Warn).count();
    o.push_str(&format!("\n{} checks: {} ok, {warns} warning(s), {fails} failure(s).\n", checks.len(), checks.len() - fails - warns));
    o
}

/// The canary: one harmless, recorded call (`cloudtrail:GetTrail` on our home-region trail, read-only) whose user
/// agent carries a unique marker, then a bounded wait until OpenSearch holds its event.
async fn canary(ctx: &Ctx, aws: &Aws, client: Option<crate::ingest::opensearch::Client>, timeout: Duration, out: &Output) -> Check {
    let marker = format!("trailsetup-canary-{:08x}", fastrand::u32(..));
    let (region, trail) = ctx.trails().into_iter().find(|(r, _)| *r == ctx.home).or_else(|| ctx.trails().into_iter().next()).unwrap_or_default();
    let Some(client) = client else {
        return check("canary", &marker, &region, Level::Fail, "no OpenSearch endpoint to look for the event in", "run `trailsetup init`");
    };
    let app = match aws_config::AppName::new(marker.clone()) {
        Ok(a) => a,
        Err(e) => return check("canary", &marker, &region, Level::Fail, format!("{e}"), ""),
    };
    let cfg = aws.at(&region).to_builder().app_name(app).build();
    out.note(format!("canary: calling cloudtrail:GetTrail on {trail} in {region} (read-only, recorded by CloudTrail; user agent {marker})"));
    let started = std::time::Instant::now();
    if let Err(e) = aws_sdk_cloudtrail::Client::new(&cfg).get_trail().name(&trail).send().await {
        return check("canary", &marker, &region, Level::Fail, format!("{:#}", crate::aws::explain(e, "the canary call", "cloudtrail:GetTrail")), "");
    }
    let q = json!({"size": 1, "query": {"bool": {"filter": [
        {"term": {"eventName": "GetTrail"}}, {"wildcard": {"userAgent": format!("*{marker}*")}}]}}});
    let path = format!("{}-*/_search", ctx.index_prefix);
    let bar = out.spinner(&format!("waiting for the canary's event in {}-*", ctx.index_prefix));
    let mut delay = Duration::from_secs(2);
    loop {
        if let Ok(r) = client.json(Method::POST, &path, Some(&q)).await {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if v["hits"]["hits"].as_array().is_some_and(|h| !h.is_empty()) {
                bar.finish_and_clear();
                let secs = started.elapsed().as_secs_f64();
                return check("canary", &marker, &region, Level::Ok, format!("event in OpenSearch {secs:.1} s after the call"), "");
            }
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            return check("canary", &marker, &region, Level::Fail,
                format!("its event was not in OpenSearch after {} s", timeout.as_secs()),
                "check the failures above; is `trailsetup ingest` running (or the forwarder subscribed)? CloudTrail itself takes up to ~15 min");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

pub async fn run(common: &Common, a: &StatusArgs, out: &Output) -> anyhow::Result<Exit> {
    let state = State::load(&common.state_dir, a.name.as_deref())?.ok_or_else(|| {
        usage("no state file: run `trailsetup init` first, or pass --name (and --state-dir) of the stack to check")
    })?;
    let cfg = crate::aws::sdk_config(common).await;
    let (account, partition, caller) = crate::init::identity(&cfg).await?;
    let da = DestroyArgs { name: a.name.clone(), ..Default::default() };
    let ctx = crate::destroy::ctx_for(common, &da, Some(&state), &account, &partition, &caller, &[])?;
    let search = match (&ctx.opensearch, &state.opensearch_url) {
        (_, Some(u)) => {
            let args = crate::cli::SinkArgs { opensearch_url: Some(u.clone()), opensearch_auth: state.opensearch_auth, ..Default::default() };
            crate::ingest::sink(common, &args, Some(&state), Some(&cfg)).await.ok().map(|s| s.client)
        }
        _ => None,
    };
    let aws = Aws { cfg, search };
    let stale = Duration::from_secs(a.stale_minutes.unwrap_or(60) * 60);
    loop {
        let mut all = checks(common, &ctx, &aws, &state, stale).await?;
        if a.canary {
            let client = match &aws.search {
                Some(c) => Some(c.clone()),
                None => all.iter().find(|c| c.name == "opensearch health").and_then(|c| resources::opensearch::domain_client(&aws, &c.resource, &ctx.home).ok()),
            };
            all.push(canary(&ctx, &aws, client, Duration::from_secs(a.canary_timeout.unwrap_or(1200)), out).await);
        }
        let healthy = all.iter().all(|c| c.level != Level::Fail);
        if out.json {
            out.json_doc(&json!({"status": {"healthy": healthy, "checks": all}}));
        } else {
            out.line(table(&all));
        }
        match a.watch {
            Some(n) if n > 0 => tokio::time::sleep(Duration::from_secs(n)).await,
            _ => return Ok(if healthy { Exit::Success } else { Exit::Failure }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_table() {
        let checks = vec![
            check("resource cloudtrail-trail", "trailsetup", "us-east-1", Level::Ok, "as planned", ""),
            check("trail logging", "trailsetup-eu-west-1", "eu-west-1", Level::Fail, "logging is stopped: no event is recorded",
                "aws cloudtrail start-logging --name arn:aws:cloudtrail:eu-west-1:123456789012:trail/trailsetup-eu-west-1 --region eu-west-1 (or run `trailsetup init`)"),
            check("dead-letter queue", "trailsetup-notifications-dlq", "us-east-1", Level::Fail, "1 message(s): notifications `ingest` could not handle",
                "read them (aws sqs receive-message --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/trailsetup-notifications-dlq --region us-east-1), fix the cause, then redrive or delete them"),
            check("freshness", "cloudtrail-*", "us-east-1", Level::Warn, "newest event 2022-08-18T17:10:00.000Z (2 min ago)", "is `trailsetup ingest` running? are the trail and the subscription ok (above)?"),
        ];
        insta::assert_snapshot!(table(&checks));
        let doc = json!({"status": {"healthy": false, "checks": checks}});
        assert_eq!(doc["status"]["checks"][1]["level"], "fail");
        assert_eq!(doc["status"]["checks"][0]["level"], "ok");
    }

    #[test]
    fn resource_checks_follow_the_plan() {
        let ctx = crate::resources::test_ctx(crate::cli::TrailMode::MultiRegion);
        let plan = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(crate::resources::plan(&ctx, None)).unwrap();
        let c = resource_checks(&plan);
        assert_eq!(c.len(), plan.changes.len());
        // nothing exists (offline view): every resource is missing, with the fix
        assert!(c.iter().all(|x| x.level == Level::Fail && x.fix.contains("trailsetup init")));
    }
}
