//! `trailsetup destroy`: remove exactly what the stack made, in the reverse order of apply.
//!
//! The stack is found from the state file (or, when it is lost, from `--name` and the deterministic names, in
//! every enabled region), then observed with the same functions `init` uses. A resource is deleted only when it
//! carries our `trailsetup:stack` tag (or is named and owned by our stack: a subscription, a permission, a filter,
//! a role mapping). The bucket and the domain hold data: they are retained unless `--delete-bucket` /
//! `--delete-domain`, and never deleted when `init` adopted them rather than created them. From adopted or retained
//! resources only our additions are removed: our statements in a bucket, key or domain policy.

use serde_json::{json, Value};

use crate::cli::{DestroyArgs, TrailMode};
use crate::error::{usage, Exit};
use crate::output::Output;
use crate::plan::{Action, Change, Header, Kind, Plan};
use crate::resources::{self, opensearch, Aws, Ctx, Observed, OpenSearchTarget, TAG_KEY};
use crate::settings::Common;
use crate::state::created_key;

/// What the user asked to delete beyond the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub delete_bucket: bool,
    pub delete_domain: bool,
}

fn ours(ctx: &Ctx, v: &Value) -> bool {
    v["tags"][TAG_KEY] == ctx.stack.as_str()
}

fn change(action: Action, kind: Kind, name: impl Into<String>, region: impl Into<String>, details: Value, current: Option<Value>) -> Change {
    Change { action, kind, name: name.into(), region: region.into(), details, current }
}

/// Delete when it exists and is ours; keep (listed, with the reason) when it is not ours; nothing when gone.
fn delete_if_ours(ctx: &Ctx, out: &mut Vec<Change>, kind: Kind, name: &str, region: &str, now: &Option<Value>) {
    if let Some(v) = now {
        if ours(ctx, v) {
            out.push(change(Action::Delete, kind, name, region, json!({}), Some(v.clone())));
        } else {
            out.push(change(Action::NoOp, kind, name, region, json!({"retained": true, "reason": format!("not tagged {TAG_KEY}={}", ctx.stack)}), Some(v.clone())));
        }
    }
}

/// A policy without the statements whose Sid `drop` names.
fn without(policy: &Value, drop: impl Fn(&str) -> bool) -> Value {
    let mut p = policy.clone();
    p["Statement"] = Value::Array(resources::statements(policy).into_iter().filter(|s| !s["Sid"].as_str().is_some_and(&drop)).collect());
    p
}

fn statement_count(p: &Value) -> usize {
    p["Statement"].as_array().map(|a| a.len()).unwrap_or(0)
}

/// The destroy plan: pure, from what was observed, in the reverse order of apply.
pub fn changes(ctx: &Ctx, o: &Observed, created: &std::collections::BTreeSet<String>, opts: Options) -> Plan {
    let mut c = Vec::new();
    let fw = ctx.forwarder_name();
    // forwarders: subscription filter, permission, function, dead-letter queue
    for r in ctx.forwarder_regions() {
        if let Some(Some(f)) = o.subscription_filters.get(&r) {
            c.push(change(Action::Delete, Kind::LogsSubscriptionFilter, &fw, &r, f.clone(), Some(f.clone())));
        }
        let func = o.functions.get(&r).cloned().unwrap_or_default();
        if let (Some(p), Some(f)) = (&func.permission, &func.function) {
            if ours(ctx, f) {
                c.push(change(Action::Delete, Kind::LambdaPermission, &fw, &r, p.clone(), Some(p.clone())));
            }
        }
        delete_if_ours(ctx, &mut c, Kind::LambdaFunction, &fw, &r, &func.function);
        // its log group, once the function is gone (tagged by init; one Lambda made alone is left, listed)
        delete_if_ours(ctx, &mut c, Kind::LogsLogGroup, &resources::logs::forwarder_log_group(ctx), &r, &o.forwarder_log_groups.get(&r).cloned().flatten());
    }
    // a reused trail: our subscription to its topic and our entry in its bucket's notifications go; the trail,
    // its bucket, topic and log group were never ours
    if let Some(r) = &ctx.reuse {
        if let Some(s) = &o.reuse.subscription {
            let topic = s["topic_arn"].as_str().unwrap_or_default();
            let name = format!("{} -> {}", topic.rsplit(':').next().unwrap_or(topic), ctx.queue_name());
            c.push(change(Action::Delete, Kind::SnsSubscription, name, r.topic_region().unwrap_or_default(), s.clone(), Some(s.clone())));
        }
        if let Some(n) = &o.reuse.notification {
            let region = r.bucket_region.clone().unwrap_or_else(|| ctx.home.clone());
            c.push(change(Action::Delete, Kind::S3BucketNotification, resources::reuse::notification_id(ctx), region, n.clone(), Some(n.clone())));
        }
        c.push(change(Action::NoOp, Kind::CloudTrailTrail, &r.name, &r.home_region,
            json!({"retained": true, "reused": true, "reason": "reused: never changed by trailsetup"}), None));
    }
    // OpenSearch: the domain (and with it the template and our role) is data: retained unless asked
    let domain_goes = match (&ctx.opensearch, &o.opensearch.domain) {
        (OpenSearchTarget::Domain(d), Some(v)) => {
            let made = created.contains(&created_key(Kind::OpenSearchDomain, &ctx.home, d));
            if opts.delete_domain && made && ours(ctx, v) {
                c.push(change(Action::Delete, Kind::OpenSearchDomain, d, &ctx.home,
                    json!({"with": "its indices, index template, roles and Dashboards saved objects"}), Some(v.clone())));
                true
            } else {
                let adopted = !made || !ours(ctx, v);
                let reason = if adopted { "adopted: not ours to delete" } else { "data is kept unless --delete-domain" };
                // an adopted domain loses our statement, and so does one another stack still uses (its statement
                // stays); a retained domain of ours used by no other stack keeps the access it was made with
                let policy = v["access_policy"].clone();
                let shared = resources::statements(&policy)
                    .iter()
                    .any(|s| s["Sid"].as_str().is_some_and(|x| x.starts_with("Trailsetup") && !ctx.owns_sid(x)));
                let left = if adopted || shared { without(&policy, |s| ctx.owns_sid(s)) } else { policy.clone() };
                let action = if left != policy { Action::Update } else { Action::NoOp };
                let mut details = json!({"retained": true, "reason": reason});
                if action == Action::Update {
                    details["access_policy"] = left;
                }
                c.push(change(action, Kind::OpenSearchDomain, d, &ctx.home, details, Some(json!({"access_policy": policy}))));
                false
            }
        }
        _ => false,
    };
    if !domain_goes {
        // the Dashboards saved objects first: the last thing apply installed
        if let Some(x) = dashboards_objects(ctx, o) {
            c.push(x);
        }
        if let opensearch::Security::On(opensearch::Probe::Found(Some(v))) = &o.opensearch.security {
            if !v["role"].is_null() || !v["mapping"].is_null() {
                c.push(change(
                    Action::Delete,
                    Kind::OpenSearchRoleMapping,
                    ctx.writer_role(),
                    ctx.opensearch_region(),
                    json!({"requests": [{"method": "DELETE", "path": opensearch::mapping_path(ctx)}, {"method": "DELETE", "path": opensearch::role_path(ctx)}]}),
                    Some(v.clone()),
                ));
            }
        }
        if let opensearch::Probe::Found(Some(_)) = &o.opensearch.template {
            c.push(change(Action::NoOp, Kind::OpenSearchIndexTemplate, crate::opensearch::template::name(&ctx.index_prefix), "-",
                json!({"retained": true, "reason": "kept with the indices it shapes"}), None));
        }
    }
    // trails, then each region's subscription, topic and log group
    for (r, n) in trails_of(ctx) {
        delete_if_ours(ctx, &mut c, Kind::CloudTrailTrail, &n, &r, &o.trails.get(&n).cloned().flatten());
    }
    for r in ctx.trail_regions() {
        if let Some(Some((topic, _policy, sub))) = o.topics.get(&r) {
            if sub.is_some() {
                c.push(change(Action::Delete, Kind::SnsSubscription, resources::sns::subscription_name(ctx), &r, sub.clone().unwrap_or_default(), sub.clone()));
            }
            delete_if_ours(ctx, &mut c, Kind::SnsTopic, &ctx.topic_name(), &r, &Some(topic.clone()));
        }
        delete_if_ours(ctx, &mut c, Kind::LogsLogGroup, &ctx.log_group(), &r, &o.log_groups.get(&r).cloned().flatten());
    }
    for r in ctx.forwarder_regions() {
        delete_if_ours(ctx, &mut c, Kind::SqsQueue, &ctx.forwarder_dlq_name(), &r, &o.forwarder_dlqs.get(&r).cloned().flatten());
    }
    delete_if_ours(ctx, &mut c, Kind::SqsQueue, &ctx.queue_name(), &ctx.home, &o.sqs.queue);
    delete_if_ours(ctx, &mut c, Kind::SqsQueue, &ctx.dlq_name(), &ctx.home, &o.sqs.dlq);
    // the bucket: data, retained unless asked; never when adopted. A retained bucket loses CloudTrail's grants
    // (our trails are gone) but keeps its TLS-only deny.
    if let Some(b) = &o.s3.bucket {
        let made = created.contains(&created_key(Kind::S3Bucket, &ctx.home, &ctx.bucket));
        if opts.delete_bucket && made && ours(ctx, b) {
            c.push(change(Action::Delete, Kind::S3Bucket, &ctx.bucket, &ctx.home, json!({"with": "every object version and delete marker"}), Some(b.clone())));
        } else {
            let reason = if !made || !ours(ctx, b) { "adopted: not ours to delete" } else { "data is kept unless --delete-bucket" };
            if let Some(Some(policy)) = &o.s3.policy {
                let left = without(policy, |s| ctx.owns_sid(s) && (s.starts_with("TrailsetupCloudTrail") || !made));
                if left != *policy {
                    c.push(change(Action::Update, Kind::S3BucketPolicy, &ctx.bucket, &ctx.home,
                        json!({"policy": if statement_count(&left) == 0 { Value::Null } else { left }}), Some(json!({"policy": policy}))));
                }
            }
            c.push(change(Action::NoOp, Kind::S3Bucket, &ctx.bucket, &ctx.home, json!({"retained": true, "reason": reason}), Some(b.clone())));
        }
    }
    // IAM: roles (detached first), then the managed policies
    delete_if_ours(ctx, &mut c, Kind::IamRole, &fw, "global", &o.iam.forwarder_role);
    delete_if_ours(ctx, &mut c, Kind::IamRole, &ctx.logs_role(), "global", &o.iam.logs_role);
    delete_if_ours(ctx, &mut c, Kind::IamPolicy, &fw, "global", &o.iam.forwarder_policy);
    delete_if_ours(ctx, &mut c, Kind::IamPolicy, &ctx.ingest_policy(), "global", &o.iam.ingest_policy);
    // the forwarder's basic-auth secret (its function and role are gone above), at once: no recovery window
    delete_if_ours(ctx, &mut c, Kind::SecretsManagerSecret, &ctx.secret_name(), &ctx.home, &o.secret.secret);
    // keys are never ours: only our statements leave their policies
    for (arn, k) in &o.key_policies {
        if let resources::kms::Observed::Policy(p) = k {
            // only this stack's: another stack sharing the key keeps its statements
            let left = without(p, |s| ctx.owns_sid(s));
            if left != *p {
                let region = crate::resources::kms::parse_key_arn(arn).map(|x| x.0).unwrap_or_default();
                c.push(change(Action::Update, Kind::KmsKeyPolicy, arn, region, json!({"key_arn": arn, "policy": left}), Some(json!({"key_arn": arn, "policy": p}))));
            }
        }
    }
    Plan::new(c)
}

/// `opensearch-dashboards-objects`: the saved objects `init` and `dashboards` installed, deleted by their stable
/// ids (dashboards, visualizations and saved searches before the index pattern they refer to). What is not there
/// is said, never counted as deleted: objects already gone (`absent`), a Dashboards that is not there, refuses us
/// or does not answer (a no-op with the reason). A domain another trailsetup stack also uses keeps them (its
/// stack may show the same prefix's objects). `None`: there is no endpoint to have Dashboards at all.
fn dashboards_objects(ctx: &Ctx, o: &Observed) -> Option<Change> {
    use crate::opensearch::dashboards as dash;
    let name = dash::index_pattern_id(&ctx.index_prefix);
    let noop = |details: Value| Some(change(Action::NoOp, Kind::OpenSearchDashboardsObjects, &name, "-", details, None));
    let url = |v: &Value| v["url"].as_str().map(str::to_owned).or_else(|| o.opensearch.endpoint.as_deref().map(dash::default_url));
    match &o.opensearch.dashboards {
        opensearch::Probe::NotChecked => match &ctx.opensearch {
            OpenSearchTarget::Url(u) => noop(json!({"not_deleted": true,
                "reason": format!("OpenSearch at {} was not looked at (no client for it from here): nothing was deleted", crate::opensearch::client::redact_url(u)),
                "then": "run `trailsetup destroy` again where it answers"})),
            // no domain, or no endpoint yet: no Dashboards
            OpenSearchTarget::Domain(_) => None,
        },
        opensearch::Probe::Unreachable(why) => noop(json!({"unreachable": true, "not_deleted": true, "reason": why,
            "then": "run `trailsetup destroy` again from a machine that reaches OpenSearch Dashboards"})),
        opensearch::Probe::Found(None) => None,
        opensearch::Probe::Found(Some(v)) if v["deferred"] == true => {
            let mut d = json!({"dashboards_url": url(v), "not_deleted": true, "reason": v["reason"]});
            if v["cause"] == "not-found" {
                d["reason"] = json!(format!(
                    "OpenSearch Dashboards was not found at {}: there are no saved objects to delete there (a Dashboards \
                     elsewhere, given to `trailsetup dashboards --dashboards-url`, is not looked at)",
                    d["dashboards_url"].as_str().unwrap_or("<endpoint>/_dashboards")
                ));
            } else {
                d["then"] = json!(format!(
                    "run `trailsetup destroy` again as a caller Dashboards lets delete saved objects, or delete the objects                      whose ids start with trailsetup-{} in Dashboards (Dashboards Management → Saved objects)",
                    ctx.index_prefix
                ));
            }
            noop(d)
        }
        opensearch::Probe::Found(Some(v)) => {
            let ids = |k: &str| -> Vec<String> { v[k].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect() };
            let (present, changed, absent): (Vec<String>, Vec<String>, Vec<String>) = {
                let (same, differs) = (ids("same"), ids("differs"));
                (same.iter().chain(differs.iter()).cloned().collect(), differs, ids("missing"))
            };
            // referrers first: the reverse of the order they are imported in
            let objects: Vec<Value> = dash::objects(&ctx.index_prefix)
                .iter()
                .rev()
                .filter(|x| present.contains(&x.id))
                .map(|x| json!({"type": x.kind, "id": x.id, "title": x.title()}))
                .collect();
            if objects.is_empty() {
                return noop(json!({"dashboards_url": url(v), "absent": absent,
                    "reason": format!("none of the {} saved objects is installed: nothing to delete", absent.len())}));
            }
            let shared = o.opensearch.domain.as_ref().and_then(|d| {
                resources::statements(&d["access_policy"]).iter().find_map(|s| {
                    s["Sid"].as_str().filter(|x| x.starts_with("Trailsetup") && !ctx.owns_sid(x)).map(str::to_owned)
                })
            });
            if let Some(sid) = shared {
                return noop(json!({"dashboards_url": url(v), "retained": true, "objects": objects,
                    "reason": format!("another trailsetup stack shares this domain (statement {sid}) and may show the same saved objects")}));
            }
            let mut details = json!({"dashboards_url": url(v), "objects": objects, "absent": absent});
            if !changed.is_empty() {
                details["changed_since_installed"] = json!(changed);
            }
            Some(change(Action::Delete, Kind::OpenSearchDashboardsObjects, &name, "-", details, Some(v.clone())))
        }
    }
}

/// What destroy says, once, about the Dashboards saved objects it cannot delete or finds absent.
fn dashboards_note(plan: &Plan) -> Option<String> {
    let c = plan.changes.iter().find(|c| c.kind == Kind::OpenSearchDashboardsObjects)?;
    let d = &c.details;
    let absent = d["absent"].as_array().map(|a| a.len()).unwrap_or(0);
    match c.action {
        Action::NoOp => Some(format!(
            "Dashboards saved objects: {}{}",
            d["reason"].as_str().unwrap_or("not deleted"),
            d["then"].as_str().map(|t| format!("; {t}")).unwrap_or_default()
        )),
        _ if absent > 0 => Some(format!(
            "Dashboards saved objects at {}: {} to delete; {absent} already absent ({})",
            d["dashboards_url"].as_str().unwrap_or("?"),
            d["objects"].as_array().map(|a| a.len()).unwrap_or(0),
            d["absent"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
        )),
        _ => None,
    }
}

/// The trails to look for: the state's, or when it is lost, both the multi-region name and each region's.
fn trails_of(ctx: &Ctx) -> Vec<(String, String)> {
    let mut t = ctx.trails();
    let multi = (ctx.home.clone(), ctx.stack.clone());
    if !t.contains(&multi) {
        t.push(multi);
    }
    t
}

/// Carry out one change of the destroy plan. `Some(result)` for the Dashboards saved objects, which never fail the
/// run: what was deleted, what was absent, what was not deleted and why.
pub async fn apply_one(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<Option<Value>> {
    use crate::resources::*;
    if c.kind == Kind::OpenSearchDashboardsObjects {
        return Ok(Some(opensearch::delete_dashboards_objects(ctx, aws, c).await));
    }
    match c.kind {
        Kind::LogsSubscriptionFilter | Kind::LogsLogGroup => logs::delete(ctx, aws, c).await,
        Kind::LambdaPermission | Kind::LambdaFunction => lambda::delete(ctx, aws, c).await,
        Kind::OpenSearchDomain | Kind::OpenSearchRoleMapping | Kind::OpenSearchIndexTemplate | Kind::OpenSearchDashboardsObjects => {
            opensearch::delete(ctx, aws, c).await
        }
        Kind::CloudTrailTrail => cloudtrail::delete(ctx, aws, c).await,
        Kind::SnsSubscription | Kind::SnsTopic | Kind::SnsTopicPolicy => sns::delete(ctx, aws, c).await,
        Kind::SqsQueue | Kind::SqsQueuePolicy => sqs::delete(aws, c).await,
        Kind::S3Bucket | Kind::S3BucketPolicy => s3::delete(ctx, aws, c).await,
        Kind::S3BucketNotification => reuse::delete(ctx, aws, c).await,
        Kind::IamRole | Kind::IamPolicy => iam::delete(ctx, aws, c).await,
        Kind::KmsKeyPolicy => kms::apply(aws, c).await,
        Kind::SecretsManagerSecret => secretsmanager::delete(ctx, aws, c).await,
    }
    .map(|()| None)
}

/// The line for the Dashboards saved objects' outcome, and whether anything of them was left.
fn dashboards_outcome(c: &Change, r: &Value) -> (String, bool) {
    let list = |k: &str| -> Vec<String> { r[k].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect() };
    let (deleted, absent) = (list("deleted"), list("absent"));
    let not: Vec<String> = r["not_deleted"].as_array().into_iter().flatten().filter_map(|x| x["id"].as_str().map(String::from)).collect();
    let why = r["not_deleted"][0]["reason"].as_str().unwrap_or_default();
    // at most five ids on the line (the JSON result has them all)
    let some = |v: &[String]| if v.len() > 5 { format!("{}, …", v[..5].join(", ")) } else { v.join(", ") };
    let mut line = if deleted.is_empty() {
        format!("  not deleted {} {} [{}]: no saved object was deleted", c.kind, c.name, c.region)
    } else {
        format!("  deleted {} {} [{}]: {} saved object(s)", c.kind, c.name, c.region, deleted.len())
    };
    if !absent.is_empty() {
        line.push_str(&format!("; {} already absent ({})", absent.len(), some(&absent)));
    }
    if !not.is_empty() {
        line.push_str(&format!("; {} not deleted ({}): {why}", not.len(), some(&not)));
    }
    (line, !not.is_empty())
}

pub async fn run(common: &Common, a: &DestroyArgs, out: &Output) -> anyhow::Result<Exit> {
    // the stack's lock, once taken, is released on every way out (the signal handler's on Ctrl-C/SIGTERM)
    let held = crate::lock::Held::default();
    let r = run_holding(common, a, out, &held).await;
    held.release().await;
    r
}

async fn run_holding(common: &Common, a: &DestroyArgs, out: &Output, held: &crate::lock::Held) -> anyhow::Result<Exit> {
    if !common.yes && !common.dry_run && !crate::wizard::interactive() {
        return Err(usage("no terminal to confirm on and --yes was not given: pass --yes to delete, or --dry-run to see the plan"));
    }
    if common.offline {
        return Err(usage("destroy reads what exists: --offline is not possible here (use --dry-run)"));
    }
    if common.dry_run && a.lock.force_unlock {
        return Err(usage("--force-unlock removes the stack's lock before a run that changes it; a dry run takes no lock (drop --dry-run)"));
    }
    let cfg = crate::aws::sdk_config(common).await;
    // the state file, or the stack's record in the account (then the lost-state search below is not needed)
    let state = crate::stack::load(common, a.name.as_deref(), Some(&cfg)).await?.map(|(s, _)| s);
    let (account, partition, caller) = crate::aws::identity(&cfg).await?;
    if let Some(s) = &state {
        if s.account != account {
            return Err(usage(format!("the state file of stack {} is for account {}, the credentials are of {account}", s.stack, s.account)));
        }
    }
    let enabled = if state.is_none() { crate::aws::enabled_regions(&cfg, &partition).await?.0 } else { Vec::new() };
    if state.is_none() {
        out.note("No state file: finding the stack by its name and tags in every enabled region.");
    }
    let mut ctx = crate::stack::context(
        common,
        &crate::stack::Lookup { name: a.name.clone(), bucket: a.bucket.clone(), opensearch_domain: a.opensearch_domain.clone() },
        state.as_ref(),
        &crate::stack::Caller { account: account.clone(), partition: partition.clone(), arn: caller.clone() },
        &enabled,
    )?;
    if let Some(r) = &common.region {
        ctx.home = r.clone();
    }
    let search = match &ctx.opensearch {
        OpenSearchTarget::Url(u) => {
            let args = crate::cli::SinkArgs { os: crate::cli::OpenSearchArgs { opensearch_url: Some(u.clone()), opensearch_auth: ctx.opensearch_auth, ..Default::default() }, ..Default::default() };
            crate::opensearch::connect(common, &args, state.as_ref(), Some(&cfg)).await.ok().map(|c| c.0)
        }
        OpenSearchTarget::Domain(_) => None,
    };
    let aws = Aws { cfg: cfg.clone(), search, fresh_domain: false };
    // the stack's lock, taken before what is deleted is observed (a dry run takes none): no `init` changes the stack
    // while it is taken apart. A leftover lock of a killed run is removed only with --force-unlock.
    let applying = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut on_signal = None;
    if !common.dry_run {
        held.set(crate::lock::acquire(&aws.at(&ctx.home), &ctx.stack, &caller, "trailsetup destroy", &common.lock(&a.lock), out).await?);
        on_signal = Some(crate::lock::release_on_signal(held, applying.clone(), "destroy", || {}));
    }
    let mut observed = resources::observe(&ctx, &aws).await?;
    // lost state: the multi-region trail by its name too
    if state.is_none() {
        let name = ctx.stack.clone();
        if let Some((_, v)) = resources::cloudtrail::observe_region(&Ctx { trail_mode: TrailMode::MultiRegion, ..ctx.clone() }, &aws, &ctx.home.clone())
            .await?
            .into_iter()
            .find(|(n, _)| *n == name)
        {
            observed.trails.insert(name, v);
        }
        // and the forwarder's basic-auth secret by its name (the lost state does not say the auth was basic)
        if observed.secret.secret.is_none() {
            match resources::secretsmanager::observe_named(&ctx, &aws, None).await {
                Ok(s) => observed.secret = s,
                Err(e) => tracing::warn!("not looking for secret {}: {e:#}", ctx.secret_name()),
            }
        }
    }
    let created = state.as_ref().map(|s| s.created.clone()).unwrap_or_default();
    let opts = Options { delete_bucket: a.delete_bucket, delete_domain: a.delete_domain };
    let plan = changes(&ctx, &observed, &created, opts);
    let mut header = Header {
        stack: ctx.stack.clone(),
        account: account.clone(),
        partition: partition.clone(),
        home_region: ctx.home.clone(),
        regions: ctx.regions.clone(),
        trail_mode: match ctx.trail_mode {
            TrailMode::MultiRegion => "multi-region".into(),
            TrailMode::PerRegion => "per-region".into(),
        },
        ..Default::default()
    };
    header.warnings.extend(dashboards_note(&plan));
    if !out.json {
        out.line(plan.render_human(&header, common.verbose > 0));
    }
    if common.dry_run || !plan.has_changes() {
        if out.json {
            out.json_doc(&plan.to_json(&header, false));
        } else {
            out.note(if plan.has_changes() { "Dry run: nothing was deleted." } else { "Nothing of this stack is left to delete." });
        }
        return Ok(Exit::Success);
    }
    if !common.yes {
        let n = plan.summary.delete + plan.summary.update;
        if !crate::wizard::confirm(&format!("Delete or change these {n} resources of stack {}?", ctx.stack))? {
            out.note("Nothing deleted.");
            return Ok(Exit::Success);
        }
    }
    applying.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut left = 0usize;
    let mut plan = plan;
    for c in plan.changes.iter_mut().filter(|c| c.action != Action::NoOp) {
        let result = apply_one(&ctx, &aws, c)
            .await
            .map_err(|e| e.context(format!("{} {} [{}] was not removed; rerun `trailsetup destroy` to finish", c.kind, c.name, c.region)))?;
        let line = match result {
            Some(r) => {
                let (line, some_left) = dashboards_outcome(c, &r);
                if some_left {
                    left += 1;
                    header.warnings.push(format!("{}; rerun `trailsetup destroy` where OpenSearch Dashboards answers", line.trim()));
                }
                c.details["result"] = r;
                line
            }
            None => format!("  {} {} {} [{}]", if c.action == Action::Delete { "deleted" } else { "cleaned" }, c.kind, c.name, c.region),
        };
        if !out.quiet && !out.json {
            eprintln!("{line}");
        }
    }
    if let Some(mut s) = state {
        // what is left: the retained resources
        s.created.retain(|k| plan.changes.iter().any(|c| c.action == Action::NoOp && created_key(c.kind, &c.region, &c.name) == *k));
        s.save(&common.state_dir)?;
    }
    if let Some(t) = on_signal.take() {
        t.abort();
    }
    held.release().await;
    if out.json {
        out.json_doc(&plan.to_json(&header, true));
    } else {
        out.note(format!(
            "Destroyed: {} deleted, {} cleaned of our additions, {} unchanged or retained{}.",
            plan.summary.delete - left,
            plan.summary.update,
            plan.summary.unchanged,
            if left > 0 { format!(", {left} not (fully) deleted: see above") } else { String::new() }
        ));
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::opensearch::Probe;

    fn with_dashboards(probe: Probe) -> Observed {
        let mut o = Observed::default();
        o.opensearch.endpoint = Some("http://127.0.0.1:9200".into());
        o.opensearch.dashboards = probe;
        o
    }

    fn dash_change(p: &Plan) -> &Change {
        p.changes.iter().find(|c| c.kind == Kind::OpenSearchDashboardsObjects).expect("a dashboards change")
    }

    #[test]
    fn dashboards_objects_are_deleted_by_id_and_absent_ones_said() {
        let ctx = crate::resources::test_ctx(TrailMode::MultiRegion);
        let ids: Vec<String> = crate::opensearch::dashboards::objects("cloudtrail").into_iter().map(|o| o.id).collect();
        let found = |same: &[String], differs: &[String], missing: &[String]| {
            with_dashboards(Probe::Found(Some(json!({"url": "http://127.0.0.1:9200/_dashboards", "same": same, "differs": differs, "missing": missing}))))
        };
        let none = Default::default();
        // all installed (one changed by hand): every one deleted, the index pattern last, dashboards first
        let p = changes(&ctx, &found(&ids[1..], &ids[..1], &[]), &none, Options::default());
        let c = dash_change(&p);
        assert_eq!((c.action, c.name.as_str(), c.region.as_str()), (Action::Delete, "trailsetup-cloudtrail", "-"));
        let objs = c.details["objects"].as_array().unwrap();
        assert_eq!(objs.len(), ids.len());
        assert_eq!(objs.last().unwrap()["id"], "trailsetup-cloudtrail");
        assert_eq!(objs.last().unwrap()["type"], "index-pattern");
        assert_eq!(objs[0]["type"], "dashboard");
        assert_eq!(c.details["changed_since_installed"], json!(["trailsetup-cloudtrail"]));
        assert!(dashboards_note(&p).is_none());
        // two gone already: deleted are the others, the two are said
        let p = changes(&ctx, &found(&ids[2..], &[], &ids[..2]), &none, Options::default());
        let c = dash_change(&p);
        assert_eq!(c.action, Action::Delete);
        assert_eq!(c.details["objects"].as_array().unwrap().len(), ids.len() - 2);
        assert_eq!(c.details["absent"], json!(ids[..2]));
        assert!(dashboards_note(&p).unwrap().contains("2 already absent"), "{:?}", dashboards_note(&p));
        // none left: nothing to delete, said, not counted
        let p = changes(&ctx, &found(&[], &[], &ids), &none, Options::default());
        let c = dash_change(&p);
        assert_eq!(c.action, Action::NoOp);
        assert!(c.details.get("retained").is_none());
        assert!(c.details["reason"].as_str().unwrap().contains("nothing to delete"));
        assert_eq!(p.summary.delete, 0);
        // no Dashboards (plain OpenSearch), or one that refuses us, or none reachable: a no-op with the reason
        let nf = with_dashboards(Probe::Found(Some(json!({"url": "http://127.0.0.1:9200/_dashboards", "deferred": true, "cause": "not-found",
            "reason": "OpenSearch Dashboards was not found at http://127.0.0.1:9200/_dashboards (…)"}))));
        let p = changes(&ctx, &nf, &none, Options::default());
        let c = dash_change(&p);
        assert_eq!(c.action, Action::NoOp);
        assert!(c.details["reason"].as_str().unwrap().starts_with("OpenSearch Dashboards was not found at http://127.0.0.1:9200/_dashboards: there are no saved objects to delete there"));
        assert!(dashboards_note(&p).unwrap().starts_with("Dashboards saved objects: OpenSearch Dashboards was not found"));
        let refused = with_dashboards(Probe::Found(Some(json!({"url": "u", "deferred": true, "cause": "refused", "reason": "refused the caller"}))));
        let p = changes(&ctx, &refused, &none, Options::default());
        assert_eq!(dash_change(&p).action, Action::NoOp);
        assert!(dash_change(&p).details["then"].as_str().unwrap().contains("trailsetup-cloudtrail"));
        let p = changes(&ctx, &with_dashboards(Probe::Unreachable("connection refused".into())), &none, Options::default());
        assert_eq!((dash_change(&p).action, dash_change(&p).details["unreachable"].clone()), (Action::NoOp, json!(true)));
        // a domain that does not exist has no Dashboards: nothing said
        let mut dctx = ctx.clone();
        dctx.opensearch = OpenSearchTarget::Domain("logs".into());
        assert!(changes(&dctx, &Observed::default(), &none, Options::default()).changes.iter().all(|c| c.kind != Kind::OpenSearchDashboardsObjects));
    }

    #[test]
    fn dashboards_outcome_never_says_deleted_for_nothing() {
        let c = change(Action::Delete, Kind::OpenSearchDashboardsObjects, "trailsetup-ct", "-", json!({}), None);
        let (line, left) = dashboards_outcome(&c, &json!({"deleted": ["a", "b"], "absent": ["c"], "not_deleted": []}));
        assert!(line.starts_with("  deleted opensearch-dashboards-objects trailsetup-ct [-]: 2 saved object(s); 1 already absent (c)"), "{line}");
        assert!(!left);
        let (line, left) = dashboards_outcome(&c, &json!({"deleted": [], "absent": [], "not_deleted": [{"id": "a", "reason": "does not answer"}]}));
        assert!(line.starts_with("  not deleted opensearch-dashboards-objects") && line.ends_with("1 not deleted (a): does not answer"), "{line}");
        assert!(left);
    }
}
