//! `trailsetup status`: is audit data flowing end to end? Read-only checks, all at once:
//! every planned resource exists and matches the plan (the same observation and plan `init` makes), each trail
//! logs and delivers (`GetTrailStatus`), every topic → queue subscription is confirmed, the queues' depth and the
//! dead-letter queues' (non-zero is a failure), the forwarder's state, OpenSearch's health and the freshness of
//! the newest event per region. Exit 0 when healthy, 1 when any check fails.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::StatusArgs;
use crate::error::{usage, Exit};
use crate::output::Output;
use crate::plan::check::{found, Check, Level};
use crate::plan::{Action, Kind};
use crate::resources::{self, Aws, Ctx, OpenSearchTarget};
use crate::settings::Common;

/// Every planned resource: present and as planned (ok), differing (warn), missing (fail).
pub fn resource_checks(plan: &crate::plan::Plan) -> Vec<Check> {
    plan.changes
        .iter()
        .map(|c| {
            let (level, detail) = match c.action {
                Action::NoOp if c.details["unreachable"] == true => {
                    (Level::Warn, format!("not reachable from here: {}", c.details["reason"].as_str().unwrap_or_default()))
                }
                // an endpoint without OpenSearch Dashboards: nothing to install there, said
                Action::NoOp if c.details["deferred"] == true => (Level::Ok, c.details["reason"].as_str().unwrap_or("deferred").to_string()),
                Action::NoOp => (Level::Ok, "as planned".to_string()),
                Action::Update => (Level::Warn, "differs from the plan (drift)".to_string()),
                Action::Create => (Level::Fail, "missing".to_string()),
                Action::Delete => (Level::Warn, "planned for deletion".to_string()),
            };
            let fix = match (level, c.kind) {
                (Level::Ok, _) => String::new(),
                (_, Kind::OpenSearchDashboardsObjects) => "run `trailsetup dashboards --install-only` (or `trailsetup init`)".into(),
                _ => "run `trailsetup init` (shows the difference, then repairs it)".into(),
            };
            found(&format!("resource {}", c.kind), &c.name, &c.region, level, detail, fix)
        })
        .collect()
}

/// One round of every check.
pub async fn checks(ctx: &Ctx, aws: &Aws, stale: Duration) -> anyhow::Result<Vec<Check>> {
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
    let (t, s, q, f, m, o, l) = futures::join!(
        resources::cloudtrail::check(ctx, aws),
        resources::sns::check(ctx, aws),
        resources::sqs::check(ctx, aws),
        resources::lambda::check(ctx, aws),
        resources::cloudwatch::check(ctx, aws),
        resources::opensearch::check(ctx, client, stale),
        lock_check(ctx, aws),
    );
    let mut all = resource_checks(&plan);
    // a missing subscription is said by its own check, with its fix
    all.retain(|c| !(c.name == format!("resource {}", Kind::SnsSubscription) && c.level == Level::Fail));
    for v in [t, s, q, f, m, o, l] {
        all.extend(v);
    }
    Ok(all)
}

/// The stack's lock (`crate::lock`): nothing when free; held by a run that is going (ok); held for over an hour,
/// likely by a run that was killed (warn, with how to remove it).
async fn lock_check(ctx: &Ctx, aws: &Aws) -> Vec<Check> {
    let name = crate::lock::parameter_name(&ctx.stack);
    match crate::lock::holder(&aws.at(&ctx.home), &ctx.stack).await {
        Ok(None) => Vec::new(),
        Ok(Some(h)) if h.age().is_none_or(|a| a > crate::lock::STALE_AFTER) => vec![found(
            "lock",
            name,
            &ctx.home,
            Level::Warn,
            format!("held by {}: no init or destroy takes that long (a killed run left it?)", h.describe()),
            "if no `trailsetup init` or `destroy` of this stack is running, remove it with `trailsetup init --force-unlock` (or `destroy --force-unlock`)",
        )],
        Ok(Some(h)) => vec![found("lock", name, &ctx.home, Level::Ok, format!("held by {} (an init or destroy is running)", h.describe()), "")],
        Err(e) => vec![found("lock", name, &ctx.home, Level::Warn, format!("{e:#}"), format!("grant the caller {} on the parameter", "ssm:GetParameter"))],
    }
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
async fn canary(ctx: &Ctx, aws: &Aws, client: Option<crate::opensearch::client::Client>, timeout: Duration, out: &Output) -> Check {
    let marker = format!("trailsetup-canary-{:08x}", fastrand::u32(..));
    let (region, trail) = ctx.trails().into_iter().find(|(r, _)| *r == ctx.home).or_else(|| ctx.trails().into_iter().next()).unwrap_or_default();
    let Some(client) = client else {
        return found("canary", &marker, &region, Level::Fail, "no OpenSearch endpoint to look for the event in", "run `trailsetup init`");
    };
    let app = match aws_config::AppName::new(marker.clone()) {
        Ok(a) => a,
        Err(e) => return found("canary", &marker, &region, Level::Fail, format!("{e}"), ""),
    };
    let cfg = aws.at(&region).to_builder().app_name(app).build();
    out.note(format!("canary: calling cloudtrail:GetTrail on {trail} in {region} (read-only, recorded by CloudTrail; user agent {marker})"));
    let started = std::time::Instant::now();
    if let Err(e) = aws_sdk_cloudtrail::Client::new(&cfg).get_trail().name(&trail).send().await {
        return found("canary", &marker, &region, Level::Fail, format!("{:#}", crate::aws::explain(e, "the canary call", "cloudtrail:GetTrail")), "");
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
                return found("canary", &marker, &region, Level::Ok, format!("event in OpenSearch {secs:.1} s after the call"), "");
            }
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            return found("canary", &marker, &region, Level::Fail,
                format!("its event was not in OpenSearch after {} s", timeout.as_secs()),
                "check the failures above; is `trailsetup ingest` running (or the forwarder subscribed)? CloudTrail itself takes up to ~15 min");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

pub async fn run(common: &Common, a: &StatusArgs, out: &Output) -> anyhow::Result<Exit> {
    let cfg = crate::aws::sdk_config(common).await;
    // the state file, or on a machine without one (a CI runner) the stack's record in the account
    let (state, _) = crate::stack::load(common, a.name.as_deref(), Some(&cfg)).await?.ok_or_else(|| {
        usage(format!(
            "stack {} not found: no state file in {}, and no record in the account (policy {}-ingest-worker); run \
             `trailsetup init` first, or pass --name of the stack to check",
            a.name.as_deref().unwrap_or(crate::wizard::DEFAULT_NAME),
            common.state_dir.display(),
            a.name.as_deref().unwrap_or(crate::wizard::DEFAULT_NAME)
        ))
    })?;
    let (account, partition, caller) = crate::aws::identity(&cfg).await?;
    let ctx = crate::stack::context(common, &crate::stack::Lookup { name: a.name.clone(), ..Default::default() }, Some(&state),
        &crate::stack::Caller { account, partition, arn: caller }, &[])?;
    let search = match (&ctx.opensearch, &state.opensearch_url) {
        (_, Some(u)) => {
            let args = crate::cli::SinkArgs { os: crate::cli::OpenSearchArgs { opensearch_url: Some(u.clone()), opensearch_auth: state.opensearch_auth, ..Default::default() }, ..Default::default() };
            crate::opensearch::connect(common, &args, Some(&state), Some(&cfg)).await.ok().map(|c| c.0)
        }
        _ => None,
    };
    let aws = Aws { cfg, search, fresh_domain: false };
    let stale = Duration::from_secs(a.stale_minutes.unwrap_or(60) * 60);
    loop {
        let mut all = checks(&ctx, &aws, stale).await?;
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
            if all.iter().any(|c| c.name == "opensearch health") {
                out.line("Dashboards: `trailsetup dashboards` opens OpenSearch Dashboards (CloudTrail overview, CIS monitoring) through a local signing proxy.");
            }
        }
        match a.watch {
            Some(n) if n > 0 => tokio::time::sleep(Duration::from_secs(n)).await,
            _ => return Ok(if healthy { Exit::Success } else { Exit::Failure }),
        }
    }
}


use crate::permissions as perm;
/// The canary reads the trail (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudtrail.html: trail).
pub const PERMISSIONS: &[perm::Permission] = &[perm::p("cloudtrail:GetTrail", perm::Res::Trail, &[perm::Cmd::Status])];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_table() {
        let checks = vec![
            found("resource cloudtrail-trail", "trailsetup", "us-east-1", Level::Ok, "as planned", ""),
            found("trail logging", "trailsetup-eu-west-1", "eu-west-1", Level::Fail, "logging is stopped: no event is recorded",
                "aws cloudtrail start-logging --name arn:aws:cloudtrail:eu-west-1:123456789012:trail/trailsetup-eu-west-1 --region eu-west-1 (or run `trailsetup init`)"),
            found("dead-letter queue", "trailsetup-notifications-dlq", "us-east-1", Level::Fail, "1 message(s): notifications `ingest` could not handle",
                "read them (aws sqs receive-message --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/trailsetup-notifications-dlq --region us-east-1), fix the cause, then redrive or delete them"),
            found("freshness", "cloudtrail-*", "us-east-1", Level::Warn, "newest event 2022-08-18T17:10:00.000Z (2 min ago)", "is `trailsetup ingest` running? are the trail and the subscription ok (above)?"),
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
