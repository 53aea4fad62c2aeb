//! OpenSearch: an Amazon OpenSearch Service domain created or adopted (encryption at rest, node-to-node,
//! HTTPS with TLS 1.2+ and forward secrecy, fine-grained access control with the caller as IAM master user, an
//! access policy naming only our principals), or an existing endpoint (`--opensearch-url`); then, inside the
//! domain, the fine-grained access control role our writers are mapped to, and the index template for
//! `<prefix>-*`.
//!
//! The endpoint may not be reachable from this machine (a VPC-only domain, one still being created): that is a
//! known, reported state, never a change and never a failure. `backfill`/`ingest` install the template before
//! their first document anyway; the role mapping's requests are printed for the user to run where it is
//! reachable.

use crate::plan::check::{found, Check, Level};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_sdk_opensearch::types::{
    AdvancedSecurityOptionsInput, ClusterConfig, DomainEndpointOptions, EbsOptions, EncryptionAtRestOptions,
    MasterUserOptions, NodeToNodeEncryptionOptions, OpenSearchPartitionInstanceType, Tag, TlsSecurityPolicy, VolumeType,
    ZoneAwarenessConfig,
};
use reqwest::Method;
use serde_json::{json, Value};

use super::{Aws, Ctx, OpenSearchTarget, TAG_KEY};
use crate::aws::{code, explain};
use crate::opensearch::client::Client;
use crate::opensearch::template;
use crate::plan::{Kind, Action, Change};

/// Engine versions are `OpenSearch_<major>.<minor>` (or `Elasticsearch_<x>.<y>`): CreateDomain `EngineVersion`.
pub const ENGINE_VERSION: &str = "OpenSearch_2.19";
/// A new domain's data nodes by default (`--domain-instance-type`, `--domain-instance-count`).
pub const INSTANCE_TYPE: &str = "t3.small.search";
pub const INSTANCE_COUNT: i32 = 1;
/// gp3 EBS volume of each data node of a new domain, GiB (the smallest every offered type accepts).
pub const EBS_GIB: i32 = 10;
/// "Amazon OpenSearch Service quotas": instances per domain, 80 by default.
pub const MAX_INSTANCES: i32 = 80;
/// The same page until 2022: "80 (except for the T2 and T3 instance types, which have a maximum of 10)"; today it
/// names T2 only, and "we don't recommend T2 or t3.small instance types for production domains". Kept for T3.
pub const MAX_BURSTABLE_INSTANCES: i32 = 10;
/// TLS 1.2 with perfect forward secrecy ciphers only ("Security in Amazon OpenSearch Service" →
/// `TLSSecurityPolicy`).
pub const TLS_POLICY: &str = "Policy-Min-TLS-1-2-PFS-2023-10";
/// The TLS policies DomainEndpointOptions accepts (OpenSearch Service API reference, `DomainEndpointOptions`).
pub const TLS_POLICIES: &[&str] = &["Policy-Min-TLS-1-0-2019-07", "Policy-Min-TLS-1-2-2019-07", "Policy-Min-TLS-1-2-PFS-2023-10"];
const DOMAIN_WAIT: Duration = Duration::from_secs(45 * 60);
/// How long a domain created or changed in this apply may answer 401/403/503 on the security plugin's API.
const SECURITY_SETTLE: Duration = Duration::from_secs(5 * 60);

/// What a read of something inside the domain (index template, security role) found.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Probe {
    /// not looked at: offline, or the domain does not exist yet
    #[default]
    NotChecked,
    /// the endpoint did not answer from here (the reason)
    Unreachable(String),
    /// the endpoint answered: what is there (`None`: nothing)
    Found(Option<Value>),
}

/// Fine-grained access control (the security plugin), as found.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Security {
    /// not known: offline, or the domain does not exist yet (a domain we create has it on)
    #[default]
    Unknown,
    /// off: no role mapping is needed (or possible)
    Off,
    /// on; the probe of our role and its mapping
    On(Probe),
}

/// The domain (or endpoint) as found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub domain: Option<Value>,
    /// `https://…` once the domain has an endpoint
    pub endpoint: Option<String>,
    pub template: Probe,
    pub security: Security,
    /// the Dashboards saved objects: `Found(Some({"url", "same", "differs", "missing"}))`, or
    /// `Found(Some({"url", "deferred": true, "reason"}))` where the endpoint has no Dashboards (or it refuses us)
    pub dashboards: Probe,
}

/// A new domain's data nodes: type and count (every node gets [`EBS_GIB`] of gp3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSize {
    pub instance_type: String,
    pub instance_count: i32,
}

impl Default for DomainSize {
    fn default() -> Self {
        DomainSize { instance_type: INSTANCE_TYPE.into(), instance_count: INSTANCE_COUNT }
    }
}

/// How many Availability Zones `count` data nodes are spread over, or `None` for a count that fits no layout:
/// 1 node → one zone; a multiple of 3 → three zones; another even count → two zones.
///
/// "Configuring a multi-AZ domain in Amazon OpenSearch Service"
/// (<https://docs.aws.amazon.com/opensearch-service/latest/developerguide/managedomains-multiaz.html>): nodes are
/// spread over two or three zones; three zones are recommended, with "an instance count that is a multiple of
/// three". Two zones take an even count: "Zone awareness requires an even number of instances in the instance
/// count" (the Amazon Elasticsearch Service guide's "Enabling zone awareness"), and CreateDomain refuses an odd one
/// ("You must choose an even number of data nodes for a two Availability Zone deployment"). API Reference,
/// "ZoneAwarenessConfig": `AvailabilityZoneCount` is 2 or 3.
pub fn availability_zones(count: i32) -> Option<i32> {
    match count {
        1 => Some(1),
        n if n >= 3 && n % 3 == 0 => Some(3),
        n if n >= 2 && n % 2 == 0 => Some(2),
        _ => None,
    }
}

/// The counts that work, for messages: `1, 2, 3, 4, 6, 8, 9, 10, …` up to `max`.
pub fn counts_that_work(max: i32) -> String {
    let v: Vec<String> = (1..=max.min(12)).filter(|n| availability_zones(*n).is_some()).map(|n| n.to_string()).collect();
    format!("{}{}", v.join(", "), if max > 12 { format!(", … up to {max}") } else { String::new() })
}

pub fn desired_domain(ctx: &Ctx, domain: &str) -> Value {
    let size = &ctx.domain_size;
    let zones = availability_zones(size.instance_count).unwrap_or(1);
    json!({
        "engine_version": ENGINE_VERSION,
        "instance_type": size.instance_type,
        "instance_count": size.instance_count,
        "zone_awareness_enabled": zones > 1,
        "availability_zone_count": if zones > 1 { json!(zones) } else { Value::Null },
        "multi_az_with_standby": false,
        "ebs_gib": EBS_GIB,
        "encryption_at_rest": true,
        "node_to_node_encryption": true,
        "enforce_https": true,
        "tls_security_policy": TLS_POLICY,
        "fine_grained_access_control": true,
        "internal_user_database": false,
        "access_policy": ctx.opensearch_access_policy(domain),
        "tags": ctx.tags(),
    })
}

/// Our statement replaces the one with our Sid; statements someone else put in an adopted domain's access
/// policy are kept.
pub fn merged_access_policy(ctx: &Ctx, domain: &str, existing: Option<&Value>) -> Value {
    let ours = ctx.opensearch_access_policy(domain);
    let mut statements = existing.map(super::statements).unwrap_or_default();
    // ours (by this stack's id, or the id of an older trailsetup that did not name the stack) is replaced;
    // other stacks' statements on a shared domain are kept
    let sid = ctx.sid("Access");
    statements.retain(|s| s["Sid"] != sid.as_str() && s["Sid"] != "TrailsetupAccess");
    statements.extend(ours["Statement"].as_array().cloned().unwrap_or_default());
    let mut p = ours;
    p["Statement"] = Value::Array(statements);
    p
}

pub fn desired_template(ctx: &Ctx, endpoint: &str) -> Value {
    json!({"endpoint": endpoint, "name": template::name(&ctx.index_prefix), "index_patterns": [format!("{}-*", ctx.index_prefix)],
           "alias": ctx.index_prefix, "granularity": ctx.index_granularity.as_str()})
}

// --- fine-grained access control: our role and its mapping (security plugin REST API) ---

/// `PUT _plugins/_security/api/roles/<role>`: what our writers may do, in the security plugin's default action
/// groups ("Default action groups"). Cluster: `GET /` (cluster_monitor), `_bulk` (cluster_composite_ops), the
/// index template (cluster_manage_index_templates). Indices `<prefix>-*` and the alias `<prefix>`: read and
/// write documents and mappings (crud), create the daily index on first write (create_index), its alias
/// (manage_aliases).
pub fn writer_role_body(ctx: &Ctx) -> Value {
    json!({
        "cluster_permissions": ["cluster_monitor", "cluster_composite_ops", "cluster_manage_index_templates"],
        "index_permissions": [{
            "index_patterns": [format!("{}-*", ctx.index_prefix), ctx.index_prefix.clone()],
            "allowed_actions": ["crud", "create_index", "manage_aliases"],
        }],
    })
}

/// `PUT _plugins/_security/api/rolesmapping/<role>`: the IAM roles mapped to it as backend roles (the forwarder,
/// the ingest workers), plus any backend roles, users and hosts someone else already mapped.
pub fn writer_mapping_body(ctx: &Ctx, existing: Option<&Value>) -> Value {
    let mut backend: Vec<String> = ctx.writer_roles();
    let list = |k: &str| -> Vec<String> {
        existing.and_then(|e| e[k].as_array()).into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
    };
    for b in list("backend_roles") {
        if !backend.contains(&b) {
            backend.push(b);
        }
    }
    json!({"backend_roles": backend, "hosts": list("hosts"), "users": list("users")})
}

pub fn role_path(ctx: &Ctx) -> String {
    format!("_plugins/_security/api/roles/{}", ctx.writer_role())
}
pub fn mapping_path(ctx: &Ctx) -> String {
    format!("_plugins/_security/api/rolesmapping/{}", ctx.writer_role())
}

/// The requests that make the role and its mapping, as the plan shows them and apply sends them.
pub fn role_mapping_requests(ctx: &Ctx, role: &Value, mapping: &Value) -> Value {
    json!([
        {"method": "PUT", "path": role_path(ctx), "body": role},
        {"method": "PUT", "path": mapping_path(ctx), "body": mapping},
    ])
}

/// A role as GET returns it (`{"<role>": {"reserved":…, "cluster_permissions":…, "index_permissions": [{…,
/// "fls": [], "masked_fields": []}]}}`) → the fields we set.
fn role_core(v: &Value) -> Value {
    json!({
        "cluster_permissions": v["cluster_permissions"].clone(),
        "index_permissions": v["index_permissions"].as_array().into_iter().flatten().map(|p| json!({
            "index_patterns": p["index_patterns"].clone(), "allowed_actions": p["allowed_actions"].clone()})).collect::<Vec<_>>(),
    })
}
fn mapping_core(v: &Value) -> Value {
    json!({"backend_roles": v["backend_roles"].clone(), "hosts": v["hosts"].clone(), "users": v["users"].clone()})
}

// --- observe ---

/// A SigV4 client for a domain endpoint, signing for the endpoint's region (its host names it).
pub fn domain_client(aws: &Aws, endpoint: &str, fallback_region: &str) -> anyhow::Result<Client> {
    let credentials = aws
        .cfg
        .credentials_provider()
        .ok_or_else(|| anyhow!("no AWS credentials to sign OpenSearch requests with"))?;
    let region = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().and_then(crate::opensearch::client::aws_host_hint).map(|h| h.1))
        .unwrap_or_else(|| fallback_region.to_string());
    Client::new(
        endpoint,
        crate::opensearch::client::Auth::SigV4 { service: "es".into(), region, credentials },
        None,
        Duration::from_secs(60),
    )
}

/// A domain's `Endpoint` (a host name; the API gives no scheme) as the URL to call: `https://<host>`. One that
/// already carries a scheme (a test double) is taken as it is.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

/// The endpoint of the stack's domain as it is now (`None`: no domain, or none yet; not for `--opensearch-url`).
pub async fn current_endpoint(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Option<String>> {
    match &ctx.opensearch {
        OpenSearchTarget::Domain(d) => Ok(describe_domain(ctx, aws, d).await?.and_then(|(_, ep)| ep)),
        OpenSearchTarget::Url(_) => Ok(None),
    }
}

async fn describe_domain(ctx: &Ctx, aws: &Aws, domain: &str) -> anyhow::Result<Option<(Value, Option<String>)>> {
    let os = aws_sdk_opensearch::Client::new(&aws.at(&ctx.home));
    let d = match os.describe_domain().domain_name(domain).send().await {
        Ok(r) => r.domain_status.ok_or_else(|| anyhow!("DescribeDomain {domain}: empty answer"))?,
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading OpenSearch domain {domain}"), "es:DescribeDomain")),
    };
    // A domain being deleted is still described, with `Deleted: true` ("DomainStatus", OpenSearch Service API
    // reference): it is absent for the plan (CreateDomain then waits for the name to be free).
    let d = match d {
        d if d.deleted() == Some(true) => {
            tracing::info!("OpenSearch domain {domain} is being deleted: treated as absent");
            return Ok(None);
        }
        d => d,
    };
    let tags = os
        .list_tags()
        .arn(d.arn())
        .send()
        .await
        .map_err(|e| explain(e, &format!("reading the tags of OpenSearch domain {domain}"), "es:ListTags"))?;
    let tag = tags.tag_list().iter().find(|t| t.key() == TAG_KEY).map(|t| json!({TAG_KEY: t.value()})).unwrap_or(json!({}));
    let cc = d.cluster_config();
    let ep = d.domain_endpoint_options();
    let sec = d.advanced_security_options();
    let policy = d.access_policies().filter(|p| !p.trim().is_empty()).map(super::parse_policy).transpose()?;
    let endpoint = d.endpoint().map(String::from).or_else(|| d.endpoints().and_then(|m| m.values().next().cloned()));
    Ok(Some((
        json!({
            "engine_version": d.engine_version(),
            "instance_type": cc.and_then(|c| c.instance_type()).map(|t| t.as_str().to_string()),
            "instance_count": cc.and_then(|c| c.instance_count()),
            "zone_awareness_enabled": cc.and_then(|c| c.zone_awareness_enabled()).unwrap_or(false),
            "availability_zone_count": cc.and_then(|c| c.zone_awareness_config()).and_then(|z| z.availability_zone_count()),
            "multi_az_with_standby": cc.and_then(|c| c.multi_az_with_standby_enabled()).unwrap_or(false),
            "ebs_gib": d.ebs_options().and_then(|e| e.volume_size()),
            "encryption_at_rest": d.encryption_at_rest_options().and_then(|e| e.enabled()).unwrap_or(false),
            "node_to_node_encryption": d.node_to_node_encryption_options().and_then(|e| e.enabled()).unwrap_or(false),
            "enforce_https": ep.and_then(|e| e.enforce_https()).unwrap_or(false),
            "tls_security_policy": ep.and_then(|e| e.tls_security_policy()).map(|p| p.as_str().to_string()),
            "fine_grained_access_control": sec.and_then(|s| s.enabled()).unwrap_or(false),
            "internal_user_database": sec.and_then(|s| s.internal_user_database_enabled()).unwrap_or(false),
            "access_policy": policy,
            "tags": tag,
        }),
        endpoint.map(|e| endpoint_url(&e)),
    )))
}

/// One quick `GET /`, no retries: does the endpoint answer from here at all?
async fn reachable(client: &Client) -> Result<(), String> {
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        client.send(Method::GET, "", bytes::Bytes::new(), "application/json", false),
    )
    .await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("no answer within 15 s".into()),
    }
}

async fn probe_template(ctx: &Ctx, client: &Client, endpoint: &str) -> Probe {
    match template::installed_matches(client, &ctx.index_prefix, ctx.index_granularity).await {
        Ok(None) => Probe::Found(None),
        Ok(Some(true)) => Probe::Found(Some(desired_template(ctx, endpoint))),
        Ok(Some(false)) => Probe::Found(Some(json!({"endpoint": endpoint, "name": template::name(&ctx.index_prefix), "differs": true}))),
        Err(e) => Probe::Unreachable(format!("{e:#}")),
    }
}

/// The Dashboards saved objects as installed (a Dashboards that does not answer is unreachable; an endpoint without
/// Dashboards is found, and said).
async fn probe_dashboards(ctx: &Ctx, client: &Client, endpoint: &str) -> Probe {
    use crate::opensearch::dashboards::{self as dash, DashboardsError};
    let url = dash::default_url(endpoint);
    let d = match dash::Dashboards::new(client, &url) {
        Ok(d) => d,
        Err(e) => return Probe::Unreachable(format!("{e:#}")),
    };
    let objs = dash::objects(&ctx.index_prefix);
    match d.installed(&objs).await {
        Ok(i) => Probe::Found(Some(json!({"url": d.url(), "same": i.same, "differs": i.differs, "missing": i.missing}))),
        Err(e @ DashboardsError::Unreachable { .. }) => Probe::Unreachable(e.to_string()),
        // no Dashboards there, or one that refuses us: said, and left for later
        Err(e) => {
            let cause = match e {
                DashboardsError::NotFound { .. } => "not-found",
                DashboardsError::Refused { .. } => "refused",
                _ => "failed",
            };
            Probe::Found(Some(json!({"url": d.url(), "deferred": true, "cause": cause, "reason": e.to_string()})))
        }
    }
}

/// GET a security API object: `Ok(None)` on the plugin's 404 (`{"status":"NOT_FOUND",…}`).
async fn get_security(client: &Client, path: &str, key: &str) -> anyhow::Result<Option<Value>> {
    let r = client.json(Method::GET, path, None).await?;
    if r.status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !r.status.is_success() {
        return Err(anyhow!("GET {path}: HTTP {}: {}", r.status, r.text()));
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    Ok(v.get(key).cloned())
}

async fn probe_security(ctx: &Ctx, client: &Client) -> Probe {
    let role = ctx.writer_role();
    let r = async {
        let (rp, mp) = (role_path(ctx), mapping_path(ctx));
        let (a, b) = futures::try_join!(get_security(client, &rp, &role), get_security(client, &mp, &role))?;
        anyhow::Ok(json!({"role": a.map(|v| role_core(&v)), "mapping": b.map(|v| mapping_core(&v))}))
    };
    match r.await {
        Ok(v) => Probe::Found(Some(v)),
        Err(e) => Probe::Unreachable(format!("{e:#}")),
    }
}

/// Does an endpoint run the security plugin? (`GET _plugins/_security/authinfo` answers only then.)
async fn has_security_plugin(client: &Client) -> bool {
    matches!(client.json(Method::GET, "_plugins/_security/authinfo", None).await, Ok(r) if r.status.is_success())
}

pub async fn observe(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Observed> {
    match &ctx.opensearch {
        OpenSearchTarget::Url(u) => {
            let Some(client) = aws.search.clone() else { return Ok(Observed::default()) };
            let mut o = Observed { endpoint: Some(u.clone()), ..Default::default() };
            if let Err(e) = reachable(&client).await {
                o.template = Probe::Unreachable(e.clone());
                o.dashboards = Probe::Unreachable(e);
                return Ok(o);
            }
            o.template = probe_template(ctx, &client, u).await;
            o.dashboards = probe_dashboards(ctx, &client, u).await;
            // backend roles are IAM ARNs: a role mapping only makes sense for SigV4 callers
            o.security = if ctx.forwarder_auth() == "sigv4" && has_security_plugin(&client).await {
                Security::On(probe_security(ctx, &client).await)
            } else {
                Security::Off
            };
            Ok(o)
        }
        OpenSearchTarget::Domain(domain) => {
            let Some((d, endpoint)) = describe_domain(ctx, aws, domain).await? else { return Ok(Observed::default()) };
            let fgac = d["fine_grained_access_control"] == true;
            let mut o = Observed { domain: Some(d), endpoint: endpoint.clone(), ..Default::default() };
            o.security = if fgac { Security::On(Probe::NotChecked) } else { Security::Off };
            let Some(ep) = endpoint else { return Ok(o) };
            let client = match aws.search.clone() {
                Some(c) => c,
                None => domain_client(aws, &ep, &ctx.home)?,
            };
            if let Err(e) = reachable(&client).await {
                o.template = Probe::Unreachable(e.clone());
                o.dashboards = Probe::Unreachable(e.clone());
                if fgac {
                    o.security = Security::On(Probe::Unreachable(e));
                }
                return Ok(o);
            }
            o.template = probe_template(ctx, &client, &ep).await;
            o.dashboards = probe_dashboards(ctx, &client, &ep).await;
            if fgac {
                o.security = Security::On(probe_security(ctx, &client).await);
            }
            Ok(o)
        }
    }
}

// --- diff ---

/// What an adopted domain keeps as it is: its version, size, layout over zones and security mode.
pub const ADOPTED_KEEPS: &[&str] = &[
    "engine_version",
    "instance_type",
    "instance_count",
    "zone_awareness_enabled",
    "availability_zone_count",
    "multi_az_with_standby",
    "ebs_gib",
    "internal_user_database",
    "fine_grained_access_control",
];

pub fn changes(ctx: &Ctx, o: &Observed) -> Vec<Change> {
    let mut out = Vec::new();
    let endpoint = match &ctx.opensearch {
        OpenSearchTarget::Url(u) => u.clone(),
        OpenSearchTarget::Domain(domain) => {
            let mut want = desired_domain(ctx, domain);
            match &o.domain {
                // adopted: keep its engine version, size, master user and security mode; we only add what secures
                // it, and our statement in its access policy beside the others
                Some(cur) => {
                    for k in ADOPTED_KEEPS {
                        want[k] = cur[k].clone();
                    }
                    want["access_policy"] = merged_access_policy(ctx, domain, cur["access_policy"].as_object().map(|_| &cur["access_policy"]));
                    // a domain another stack tagged (two stacks sharing one domain) keeps its tag: re-tagging it
                    // would make each stack's init undo the other's, and make it "ours" to the other's destroy
                    if cur["tags"][TAG_KEY].as_str().is_some_and(|t| t != ctx.stack) {
                        want["tags"] = cur["tags"].clone();
                    }
                }
                None => {
                    want["master_user_arn"] = json!(ctx.principal_arn);
                    if let Some(t) = super::pricing::lookup(&ctx.domain_size.instance_type) {
                        want["monthly_estimate"] = super::pricing::estimate(t, ctx.domain_size.instance_count, EBS_GIB).to_json(&ctx.home);
                    }
                }
            }
            out.push(Change::diff(Kind::OpenSearchDomain, domain, &ctx.home, want, o.domain.clone()));
            o.endpoint.clone().unwrap_or_else(|| format!("(endpoint of domain {domain}, known once it is created)"))
        }
    };
    if let Some(c) = role_mapping_change(ctx, o) {
        out.push(c);
    }
    out.push(template_change(ctx, &o.template, &endpoint));
    out.push(dashboards_change(ctx, &o.dashboards, &endpoint));
    out
}

/// `opensearch-dashboards-objects`: the saved objects `trailsetup dashboards` installs (index pattern, saved
/// searches, visualizations, dashboards), by stable id. Installed after the index template; an endpoint that does
/// not answer is reported like the template's (a no-op, deferred); one without Dashboards is said and deferred.
pub fn dashboards_change(ctx: &Ctx, probe: &Probe, endpoint: &str) -> Change {
    use crate::opensearch::dashboards as dash;
    let objs = dash::objects(&ctx.index_prefix);
    let name = dash::index_pattern_id(&ctx.index_prefix);
    let url = match probe {
        Probe::Found(Some(v)) => v["url"].as_str().map(str::to_owned).unwrap_or_else(|| dash::default_url(endpoint)),
        // a domain not created yet: its endpoint is not known
        _ if !endpoint.starts_with("http") => "(the domain's endpoint, once created)/_dashboards".to_string(),
        _ => dash::default_url(endpoint),
    };
    fn list(objs: &[crate::opensearch::dashboards::SavedObject], keep: impl Fn(&crate::opensearch::dashboards::SavedObject) -> bool) -> Vec<String> {
        objs.iter().filter(|o| keep(o)).map(|o| format!("{} {} ({})", o.kind, o.id, o.title())).collect()
    }
    let want = json!({"dashboards_url": url, "index_pattern": format!("{}-*", ctx.index_prefix), "objects": list(&objs, |_| true)});
    let then = "`trailsetup dashboards --install-only` installs them from a machine that reaches OpenSearch Dashboards";
    match probe {
        Probe::Unreachable(why) => unreachable_noop(Kind::OpenSearchDashboardsObjects, name, "-", want, why, then),
        Probe::Found(Some(v)) if v["deferred"] == true => {
            let mut details = want;
            details["deferred"] = json!(true);
            details["reason"] = v["reason"].clone();
            details["then"] = json!("`trailsetup dashboards --install-only` installs them where Dashboards answers");
            Change { action: Action::NoOp, kind: Kind::OpenSearchDashboardsObjects, name, region: "-".into(), details, current: None }
        }
        Probe::Found(Some(v)) => {
            let ids = |k: &str| -> Vec<String> { v[k].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect() };
            let (same, differs) = (ids("same"), ids("differs"));
            if differs.is_empty() && ids("missing").is_empty() {
                return Change::diff(Kind::OpenSearchDashboardsObjects, name, "-", want.clone(), Some(want));
            }
            if same.is_empty() && differs.is_empty() {
                return Change::diff(Kind::OpenSearchDashboardsObjects, name, "-", want, None);
            }
            let current = json!({"dashboards_url": url, "index_pattern": format!("{}-*", ctx.index_prefix),
                "objects": list(&objs, |o| same.contains(&o.id)).into_iter()
                    .chain(list(&objs, |o| differs.contains(&o.id)).into_iter().map(|s| format!("{s} (differs)"))).collect::<Vec<_>>()});
            Change::diff(Kind::OpenSearchDashboardsObjects, name, "-", want, Some(current))
        }
        Probe::NotChecked | Probe::Found(None) => Change::diff(Kind::OpenSearchDashboardsObjects, name, "-", want, None),
    }
}

/// The plan's word on the Dashboards saved objects when the endpoint has no Dashboards (once).
pub fn dashboards_warning(plan: &crate::plan::Plan) -> Option<String> {
    let c = plan.changes.iter().find(|c| c.kind == Kind::OpenSearchDashboardsObjects && c.details["deferred"] == true)?;
    Some(format!(
        "{}. The Dashboards saved objects are deferred: {}",
        c.details["reason"].as_str().unwrap_or("OpenSearch Dashboards was not found"),
        c.details["then"].as_str().unwrap_or_default()
    ))
}

fn unreachable_noop(kind: Kind, name: String, region: &str, mut details: Value, why: &str, then: &str) -> Change {
    details["unreachable"] = json!(true);
    details["reason"] = json!(why);
    details["then"] = json!(then);
    Change { action: Action::NoOp, kind, name, region: region.into(), details, current: None }
}

fn role_mapping_change(ctx: &Ctx, o: &Observed) -> Option<Change> {
    let probe = match (&ctx.opensearch, &o.security) {
        (_, Security::Off) => return None,
        // a URL endpoint we could not look at: we do not know that it has the security plugin
        (OpenSearchTarget::Url(_), Security::Unknown) => return None,
        (_, Security::Unknown) => Probe::NotChecked,
        (_, Security::On(p)) => p.clone(),
    };
    let region = ctx.opensearch_region();
    let found = match &probe {
        Probe::Found(Some(v)) => Some(v.clone()),
        _ => None,
    };
    let role = writer_role_body(ctx);
    let mapping = writer_mapping_body(ctx, found.as_ref().map(|f| &f["mapping"]).filter(|m| !m.is_null()));
    let want = json!({"role": ctx.writer_role(), "role_body": role, "mapping_body": mapping});
    let mut details = want.clone();
    details["requests"] = role_mapping_requests(ctx, &role, &mapping);
    match probe {
        Probe::Unreachable(why) => Some(unreachable_noop(
            Kind::OpenSearchRoleMapping,
            ctx.writer_role(),
            &region,
            details,
            &why,
            "send `requests` from a machine that reaches the domain (as its master user)",
        )),
        Probe::NotChecked | Probe::Found(None) => {
            Some(Change { action: Action::Create, kind: Kind::OpenSearchRoleMapping, name: ctx.writer_role(), region, details, current: None })
        }
        Probe::Found(Some(v)) => {
            let cur = json!({"role": ctx.writer_role(), "role_body": v["role"], "mapping_body": v["mapping"]});
            let mut c = Change::diff(Kind::OpenSearchRoleMapping, ctx.writer_role(), region, want, Some(cur));
            if c.action == Action::Update && (v["role"].is_null() || v["mapping"].is_null()) {
                c.action = Action::Create;
            }
            c.details = details;
            Some(c)
        }
    }
}

fn template_change(ctx: &Ctx, probe: &Probe, endpoint: &str) -> Change {
    let want = desired_template(ctx, endpoint);
    match probe {
        Probe::Unreachable(why) => unreachable_noop(
            Kind::OpenSearchIndexTemplate,
            template::name(&ctx.index_prefix),
            "-",
            want,
            why,
            "`trailsetup backfill`/`ingest` install it before their first document",
        ),
        Probe::NotChecked | Probe::Found(None) => Change::diff(Kind::OpenSearchIndexTemplate, template::name(&ctx.index_prefix), "-", want, None),
        Probe::Found(Some(v)) => Change::diff(Kind::OpenSearchIndexTemplate, template::name(&ctx.index_prefix), "-", want, Some(v.clone())),
    }
}

/// One line per change that could not be looked at, for the plan's warnings (said once).
pub fn unreachable_warning(plan: &crate::plan::Plan) -> Option<String> {
    let c = plan.changes.iter().find(|c| c.details["unreachable"] == true)?;
    Some(format!(
        "OpenSearch at {} does not answer from this machine ({}): the index template is left to `trailsetup backfill`/`ingest`{}{}",
        plan.changes.iter().find(|c| c.kind == "opensearch-index-template").map(|c| c.details["endpoint"].as_str().unwrap_or("?")).unwrap_or("?"),
        c.details["reason"].as_str().unwrap_or("unreachable"),
        if plan.changes.iter().any(|c| c.kind == "opensearch-role-mapping" && c.details["unreachable"] == true) {
            "; the fine-grained access control role mapping must be made from a machine that reaches it (its requests are in the plan, -v)"
        } else {
            ""
        },
        if plan.changes.iter().any(|c| c.kind == Kind::OpenSearchDashboardsObjects && c.details["unreachable"] == true) {
            "; the Dashboards saved objects to `trailsetup dashboards --install-only`"
        } else {
            ""
        }
    ))
}

// --- apply ---

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<crate::apply::Outcome> {
    use crate::apply::Outcome;
    match c.kind.as_str() {
        "opensearch-domain" => apply_domain(ctx, aws, c).await.map(Outcome::Endpoint),
        "opensearch-role-mapping" => {
            let Some(client) = reachable_client(aws, "the fine-grained access control role mapping").await else {
                return Ok(Outcome::Deferred(format!(
                    "OpenSearch does not answer from this machine: run `trailsetup init` again from one that reaches it \
                     (inside the domain's VPC), or send these requests there as the master user:\n{}",
                    serde_json::to_string_pretty(&c.details["requests"]).unwrap_or_default()
                )));
            };
            for r in c.details["requests"].as_array().into_iter().flatten() {
                let path = r["path"].as_str().unwrap_or_default();
                // a domain created or changed moments ago: its security plugin answers 401/403/503 for a few
                // minutes while the master user's mapping and the plugin's index settle
                let wait = if aws.fresh_domain { SECURITY_SETTLE } else { Duration::ZERO };
                let (cl, body) = (&client, &r["body"]);
                let resp = crate::aws::eventual::until(&format!("the security plugin of {}", client.base_redacted()), wait, || async move {
                    let resp = cl.json(Method::PUT, path, Some(body)).await?;
                    Ok(if matches!(resp.status.as_u16(), 401 | 403 | 503) {
                        crate::aws::eventual::Polled::NotYet(resp)
                    } else {
                        crate::aws::eventual::Polled::Done(resp)
                    })
                })
                .await?
                .into_inner();
                if resp.status == reqwest::StatusCode::FORBIDDEN || resp.status == reqwest::StatusCode::UNAUTHORIZED {
                    return Err(anyhow!(
                        "OpenSearch refused PUT {path} ({}): only the domain's master user (or a user with the security_manager \
                         role) may change roles; run init as {} or send the request as the master user",
                        resp.status,
                        ctx.principal_arn
                    ));
                }
                if !resp.status.is_success() {
                    return Err(anyhow!("PUT {path}: HTTP {}: {}", resp.status, resp.text()));
                }
            }
            Ok(Outcome::Done)
        }
        "opensearch-dashboards-objects" => {
            use crate::opensearch::dashboards as dash;
            let Some(client) = reachable_client(aws, "the Dashboards saved objects").await else {
                return Ok(Outcome::Deferred(
                    "OpenSearch does not answer from this machine: `trailsetup dashboards --install-only`, run where it \
                     answers, installs the saved objects"
                        .into(),
                ));
            };
            // the endpoint as it is now (a domain created in this run had none when the plan was made)
            let d = dash::Dashboards::new(&client, &dash::default_url(client.base.as_str()))?;
            // a convenience, never a reason to fail the setup: what keeps it from being installed is said, deferred
            match d.install(&dash::objects(&ctx.index_prefix), &ctx.index_prefix).await {
                Ok((_, n)) => {
                    tracing::info!("{n} Dashboards saved object(s) imported at {}", d.url());
                    Ok(Outcome::Done)
                }
                Err(e) => Ok(Outcome::Deferred(format!("{e}; then `trailsetup dashboards --install-only` installs them"))),
            }
        }
        "opensearch-index-template" => {
            let Some(client) = reachable_client(aws, "the index template").await else {
                return Ok(Outcome::Deferred(
                    "OpenSearch does not answer from this machine: `trailsetup backfill` or `trailsetup ingest`, run where it \
                     answers, installs the template before the first document"
                        .into(),
                ));
            };
            template::install(&client, &ctx.index_prefix, ctx.index_granularity).await?;
            tracing::info!("index template {} installed", template::name(&ctx.index_prefix));
            Ok(Outcome::Done)
        }
        other => Err(anyhow!("opensearch cannot apply {other}")),
    }
}

/// The search client, if there is one and it answers.
async fn reachable_client(aws: &Aws, what: &str) -> Option<Client> {
    let client = aws.search.clone()?;
    match reachable(&client).await {
        Ok(()) => Some(client),
        Err(e) => {
            tracing::info!("{what} not applied now: {e}");
            None
        }
    }
}

fn endpoint_options() -> DomainEndpointOptions {
    DomainEndpointOptions::builder().enforce_https(true).tls_security_policy(TlsSecurityPolicy::from(TLS_POLICY)).build()
}

/// CreateDomain's ClusterConfig from the plan: the data nodes, spread over the planned zones; no Multi-AZ with
/// Standby (it needs dedicated master nodes, and does not take T3: "Configuring a multi-AZ domain").
pub fn cluster_config(d: &Value) -> ClusterConfig {
    let zones = d["availability_zone_count"].as_i64().and_then(|z| i32::try_from(z).ok()).filter(|_| d["zone_awareness_enabled"] == true);
    ClusterConfig::builder()
        .instance_type(OpenSearchPartitionInstanceType::from(d["instance_type"].as_str().unwrap_or(INSTANCE_TYPE)))
        .instance_count(d["instance_count"].as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(INSTANCE_COUNT))
        .zone_awareness_enabled(zones.is_some())
        .set_zone_awareness_config(zones.map(|z| ZoneAwarenessConfig::builder().availability_zone_count(z).build()))
        .multi_az_with_standby_enabled(false)
        .build()
}

async fn apply_domain(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<String> {
    let os = aws_sdk_opensearch::Client::new(&aws.at(&ctx.home));
    let name = &c.name;
    let d = &c.details;
    let policy = d["access_policy"].to_string();
    let tag = Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?;
    if c.action == Action::Create {
        // a role in the access policy created moments ago, or a domain of this name still being deleted
        let create = || os
            .create_domain()
            .domain_name(name)
            .engine_version(ENGINE_VERSION)
            .cluster_config(cluster_config(d))
            .ebs_options(
                EbsOptions::builder()
                    .ebs_enabled(true)
                    .volume_type(VolumeType::Gp3)
                    .volume_size(d["ebs_gib"].as_i64().and_then(|g| i32::try_from(g).ok()).unwrap_or(EBS_GIB))
                    .build(),
            )
            .encryption_at_rest_options(EncryptionAtRestOptions::builder().enabled(true).set_kms_key_id(ctx.kms_key_for(&ctx.home)).build())
            .node_to_node_encryption_options(NodeToNodeEncryptionOptions::builder().enabled(true).build())
            .domain_endpoint_options(endpoint_options())
            .advanced_security_options(
                AdvancedSecurityOptionsInput::builder()
                    .enabled(true)
                    .internal_user_database_enabled(false)
                    .master_user_options(MasterUserOptions::builder().master_user_arn(&ctx.principal_arn).build())
                    .build(),
            )
            .access_policies(&policy)
            .tag_list(tag.clone())
            .send();
        let res = crate::aws::eventual::retry("CreateDomain", &format!("OpenSearch domain {name}"), create).await;
        match res {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(explain(e, &format!("creating OpenSearch domain {name}"), "es:CreateDomain")),
        }
    } else {
        // Never touches the master user or the security mode of an adopted domain. Encryption at rest and
        // node-to-node encryption are sent only when they are off: once on they cannot be turned off, and
        // resending encryption at rest would name another key than the one the domain has.
        let cur = c.current.clone().unwrap_or_default();
        let mut req = os.update_domain_config().domain_name(name).access_policies(&policy).domain_endpoint_options(endpoint_options());
        if cur["encryption_at_rest"] != true {
            req = req.encryption_at_rest_options(EncryptionAtRestOptions::builder().enabled(true).set_kms_key_id(ctx.kms_key_for(&ctx.home)).build());
        }
        if cur["node_to_node_encryption"] != true {
            req = req.node_to_node_encryption_options(NodeToNodeEncryptionOptions::builder().enabled(true).build());
        }
        crate::aws::eventual::retry("UpdateDomainConfig", &format!("OpenSearch domain {name}"), || req.clone().send())
            .await
            .map_err(|e| explain(e, &format!("updating OpenSearch domain {name}"), "es:UpdateDomainConfig"))?;
        // tagged ours only when no other stack's tag is there (the plan keeps another stack's tag)
        if d["tags"][TAG_KEY].as_str() == Some(ctx.stack.as_str()) {
            let arn = format!("arn:{}:es:{}:{}:domain/{name}", ctx.partition, ctx.home, ctx.account);
            os.add_tags()
                .arn(arn)
                .tag_list(tag.clone())
                .send()
                .await
                .map_err(|e| explain(e, &format!("tagging OpenSearch domain {name}"), "es:AddTags"))?;
        }
    }
    // bounded, visible wait for the endpoint, then for the change to finish (`Processing: false`, "DomainStatus",
    // OpenSearch Service API reference): the security plugin's API answers reliably only after that
    let started = Instant::now();
    let mut delay = Duration::from_secs(5);
    loop {
        if let Some((_, Some(ep))) = describe_domain(ctx, aws, name).await? {
            let os = &os;
            let settled = crate::aws::eventual::until(&format!("OpenSearch domain {name} is still processing a change"), DOMAIN_WAIT, || async move {
                let r = os
                    .describe_domain()
                    .domain_name(name)
                    .send()
                    .await
                    .map_err(|e| explain(e, &format!("reading OpenSearch domain {name}"), "es:DescribeDomain"))?;
                Ok(if r.domain_status.is_some_and(|s| s.processing() != Some(true)) {
                    crate::aws::eventual::Polled::Done(())
                } else {
                    crate::aws::eventual::Polled::NotYet(())
                })
            })
            .await?;
            if !settled.is_done() {
                tracing::warn!("OpenSearch domain {name} is still processing a change; going on with its endpoint");
            }
            return Ok(ep);
        }
        if started.elapsed() > DOMAIN_WAIT {
            return Err(anyhow!(
                "OpenSearch domain {name} has no endpoint after {} minutes; it may still be creating — rerun `trailsetup init` later to finish",
                DOMAIN_WAIT.as_secs() / 60
            ));
        }
        eprintln!("waiting for OpenSearch domain {name} to get an endpoint ({}s so far; domains take 10-20 minutes)", started.elapsed().as_secs());
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// destroy: our role and its mapping (DELETE through the security API), our statement out of a retained domain's
/// access policy, or the domain itself.
pub async fn delete(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<()> {
    let os = aws_sdk_opensearch::Client::new(&aws.at(&ctx.home));
    match c.kind {
        Kind::OpenSearchRoleMapping => {
            let Some(client) = search_client(ctx, aws).await? else { return Ok(()) };
            if reachable(&client).await.is_err() {
                eprintln!("warning: OpenSearch is not reachable from here; delete role {} and its mapping from a machine that reaches it", ctx.writer_role());
                return Ok(());
            }
            for path in [mapping_path(ctx), role_path(ctx)] {
                let r = client.json(Method::DELETE, &path, None).await?;
                if !r.status.is_success() && r.status != reqwest::StatusCode::NOT_FOUND {
                    return Err(anyhow!("DELETE {path}: HTTP {}: {}", r.status, r.text()));
                }
            }
            Ok(())
        }
        Kind::OpenSearchDomain if c.action == Action::Update => {
            os.update_domain_config()
                .domain_name(&c.name)
                .access_policies(c.details["access_policy"].to_string())
                .send()
                .await
                .map_err(|e| explain(e, &format!("removing our statement from the access policy of {}", c.name), "es:UpdateDomainConfig"))?;
            Ok(())
        }
        Kind::OpenSearchDomain => match os.delete_domain().domain_name(&c.name).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(explain(e, &format!("deleting OpenSearch domain {}", c.name), "es:DeleteDomain")),
        },
        _ => Ok(()),
    }
}

/// The client of the stack's OpenSearch: the endpoint's, else the domain's (found by name), else none.
async fn search_client(ctx: &Ctx, aws: &Aws) -> anyhow::Result<Option<Client>> {
    if let Some(cl) = aws.search.clone() {
        return Ok(Some(cl));
    }
    Ok(match describe_domain(ctx, aws, &domain_name(ctx)).await? {
        Some((_, Some(ep))) => Some(domain_client(aws, &ep, &ctx.home)?),
        _ => None,
    })
}

/// Delete the Dashboards saved objects a destroy plan's `opensearch-dashboards-objects` change names
/// (`details.objects`, referrers first), one `DELETE api/saved_objects/<type>/<id>` each. Never an error: what
/// happened is the answer, `{"deleted": [ids], "absent": [ids], "not_deleted": [{"id", "reason"}]}` — an object
/// Dashboards no longer has (found so by the plan, or by its DELETE) is absent, not deleted; once Dashboards does not answer, refuses us or is not there,
/// the rest are not tried.
pub async fn delete_dashboards_objects(ctx: &Ctx, aws: &Aws, c: &Change) -> Value {
    use crate::opensearch::dashboards::{Dashboards, DashboardsError};
    let objects: Vec<(String, String)> = c.details["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| Some((o["type"].as_str()?.to_string(), o["id"].as_str()?.to_string())))
        .collect();
    // absent: those the plan found gone already, and those gone since
    let mut absent: Vec<String> = c.details["absent"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
    let (mut deleted, mut not_deleted) = (Vec::new(), Vec::new());
    let stop = |why: String, rest: &[(String, String)], not_deleted: &mut Vec<Value>| {
        not_deleted.extend(rest.iter().map(|(_, id)| json!({"id": id, "reason": why})));
    };
    let client = match search_client(ctx, aws).await {
        Ok(Some(cl)) => Some(cl),
        Ok(None) => {
            stop("no OpenSearch endpoint to reach".into(), &objects, &mut not_deleted);
            None
        }
        Err(e) => {
            stop(format!("{e:#}"), &objects, &mut not_deleted);
            None
        }
    };
    let dash = client.and_then(|cl| {
        let url = c.details["dashboards_url"].as_str().map(str::to_owned).unwrap_or_else(|| crate::opensearch::dashboards::default_url(cl.base.as_str()));
        match Dashboards::new(&cl, &url) {
            Ok(d) => Some(d),
            Err(e) => {
                stop(format!("{e:#}"), &objects, &mut not_deleted);
                None
            }
        }
    });
    if let Some(d) = dash {
        for (i, (kind, id)) in objects.iter().enumerate() {
            match d.delete(kind, id).await {
                Ok(true) => deleted.push(id.clone()),
                Ok(false) => absent.push(id.clone()),
                // one object's own error: the others are still tried
                Err(e @ DashboardsError::Failed { .. }) => not_deleted.push(json!({"id": id, "reason": e.to_string()})),
                // Dashboards does not answer, is not there, or refuses us: the same for every other object
                Err(e) => {
                    stop(e.to_string(), &objects[i..], &mut not_deleted);
                    break;
                }
            }
        }
    }
    json!({"deleted": deleted, "absent": absent, "not_deleted": not_deleted})
}

fn domain_name(ctx: &Ctx) -> String {
    match &ctx.opensearch {
        OpenSearchTarget::Domain(d) => d.clone(),
        OpenSearchTarget::Url(_) => String::new(),
    }
}


// --- status ---

/// Cluster health and freshness: the newest `@timestamp` per region, and the documents of the last hour.
pub async fn check(ctx: &Ctx, client: Option<crate::opensearch::client::Client>, stale: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(client) = client else {
        out.push(found("opensearch", "-", ctx.opensearch_region(), Level::Warn, "no endpoint known yet", "run `trailsetup init`"));
        return out;
    };
    let ep = client.base.to_string();
    match client.json(Method::GET, "_cluster/health", None).await {
        Ok(r) if r.status.is_success() => {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let s = v["status"].as_str().unwrap_or("unknown").to_string();
            out.push(found("opensearch health", &ep, ctx.opensearch_region(), if s == "red" { Level::Fail } else { Level::Ok }, format!("cluster {s}"),
                if s == "red" { "some primary shards are unassigned: see _cluster/allocation/explain" } else { "" }));
        }
        Ok(r) => {
            out.push(found("opensearch health", &ep, ctx.opensearch_region(), Level::Fail, format!("HTTP {}: {}", r.status, r.text()), "check --opensearch-auth and the access policy / role mapping"));
            return out;
        }
        Err(e) => {
            out.push(found("opensearch health", &ep, ctx.opensearch_region(), Level::Warn, format!("not reachable from here: {e:#}"), "run status where the endpoint is reachable"));
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
                out.push(found("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Warn, "no events in OpenSearch yet", "run `trailsetup backfill`, and `trailsetup ingest` for new files"));
            }
            let now = chrono::Utc::now().timestamp_millis();
            for b in buckets {
                let region = b["key"].as_str().unwrap_or("?").to_string();
                let newest = b["newest"]["value"].as_f64().unwrap_or(0.0) as i64;
                let age = Duration::from_millis((now - newest).max(0) as u64);
                let when = b["newest"]["value_as_string"].as_str().unwrap_or("?").to_string();
                out.push(if age > stale {
                    found("freshness", format!("{}-*", ctx.index_prefix), region, Level::Warn, format!("newest event {when} ({} min ago)", age.as_secs() / 60),
                        "is `trailsetup ingest` running? are the trail and the subscription ok (above)?")
                } else {
                    found("freshness", format!("{}-*", ctx.index_prefix), region, Level::Ok, format!("newest event {when}"), "")
                });
            }
            let n = v["aggregations"]["last_hour"]["doc_count"].as_u64().unwrap_or(0);
            out.push(found("events in the last hour", format!("{}-*", ctx.index_prefix), "-", Level::Ok, n.to_string(), ""));
        }
        Ok(r) if r.status == reqwest::StatusCode::NOT_FOUND => {
            out.push(found("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Warn, "no index yet", "run `trailsetup backfill`"))
        }
        Ok(r) => out.push(found("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Fail, format!("HTTP {}: {}", r.status, r.text()), "check the role mapping (`trailsetup init`)")),
        Err(e) => out.push(found("freshness", format!("{}-*", ctx.index_prefix), "-", Level::Warn, format!("{e:#}"), "")),
    }
    out
}



use crate::permissions as perm;
/// With a domain ("... for Amazon OpenSearch Service", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonopensearchservice.html: domain,
/// CreateDomain included; the es:ESHttp* actions on `domain/<d>/*`).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::with(&[perm::Feature::Domain], "es:DescribeDomain", perm::Res::Domain, &[perm::Cmd::Init, perm::Cmd::Status, perm::Cmd::Destroy, perm::Cmd::Search, perm::Cmd::Dashboards, perm::Cmd::Backfill, perm::Cmd::Ingest]),
    perm::with(&[perm::Feature::Domain], "es:ListTags", perm::Res::Domain, perm::OBSERVE),
    perm::with(&[perm::Feature::Domain], "es:CreateDomain", perm::Res::Domain, perm::INIT),
    perm::with(&[perm::Feature::Domain], "es:AddTags", perm::Res::Domain, perm::INIT),
    perm::with(&[perm::Feature::Domain], "es:UpdateDomainConfig", perm::Res::Domain, perm::INIT_DESTROY),
    perm::with(&[perm::Feature::Domain], "es:DeleteDomain", perm::Res::Domain, perm::DESTROY),
    perm::with(&[perm::Feature::Domain], "es:ESHttpGet", perm::Res::Domain, perm::ALL),
    perm::with(&[perm::Feature::Domain], "es:ESHttpHead", perm::Res::Domain, perm::ALL),
    perm::with(&[perm::Feature::Domain], "es:ESHttpPut", perm::Res::Domain, &[perm::Cmd::Init, perm::Cmd::Backfill, perm::Cmd::Ingest, perm::Cmd::Dashboards]),
    perm::with(&[perm::Feature::Domain], "es:ESHttpPost", perm::Res::Domain, &[perm::Cmd::Init, perm::Cmd::Backfill, perm::Cmd::Ingest, perm::Cmd::Search, perm::Cmd::Dashboards, perm::Cmd::Status]),
    perm::with(&[perm::Feature::Domain], "es:ESHttpDelete", perm::Res::Domain, perm::DESTROY),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::TrailMode;

    fn domain_ctx() -> Ctx {
        let mut c = crate::resources::test_ctx(TrailMode::MultiRegion);
        c.opensearch = OpenSearchTarget::Domain("logs".into());
        c
    }

    #[test]
    fn counts_and_zones() {
        // "Configuring a multi-AZ domain": 1 zone, or 2 (even count), or 3 (multiple of 3, preferred)
        let z: Vec<(i32, Option<i32>)> = (0..=13).map(|n| (n, availability_zones(n))).collect();
        assert_eq!(z, [(0, None), (1, Some(1)), (2, Some(2)), (3, Some(3)), (4, Some(2)), (5, None), (6, Some(3)), (7, None),
            (8, Some(2)), (9, Some(3)), (10, Some(2)), (11, None), (12, Some(3)), (13, None)]);
        assert_eq!(availability_zones(-2), None);
        assert_eq!(counts_that_work(10), "1, 2, 3, 4, 6, 8, 9, 10");
        assert_eq!(counts_that_work(80), "1, 2, 3, 4, 6, 8, 9, 10, 12, … up to 80");
    }

    #[test]
    fn new_domain_size_reaches_create_domain() {
        let mut ctx = domain_ctx();
        // the default: one t3.small.search node, one zone, with its estimate
        let c = changes(&ctx, &Observed::default()).remove(0);
        assert_eq!((c.details["instance_type"].as_str(), c.details["instance_count"].as_i64()), (Some("t3.small.search"), Some(1)));
        assert_eq!((c.details["zone_awareness_enabled"].clone(), c.details["availability_zone_count"].clone()), (json!(false), Value::Null));
        assert_eq!(c.details["monthly_estimate"]["usd_per_month"], 27.5);
        let cc = cluster_config(&c.details);
        assert_eq!((cc.instance_type().map(|t| t.as_str()), cc.instance_count(), cc.zone_awareness_enabled()), (Some("t3.small.search"), Some(1), Some(false)));
        assert!(cc.zone_awareness_config().is_none());
        assert_eq!(cc.multi_az_with_standby_enabled(), Some(false));
        // two m6g nodes: two zones
        ctx.domain_size = DomainSize { instance_type: "m6g.large.search".into(), instance_count: 2 };
        let c = changes(&ctx, &Observed::default()).remove(0);
        let cc = cluster_config(&c.details);
        assert_eq!((cc.instance_count(), cc.zone_awareness_enabled()), (Some(2), Some(true)));
        assert_eq!(cc.zone_awareness_config().and_then(|z| z.availability_zone_count()), Some(2));
        assert_eq!(c.details["monthly_estimate"]["usd_per_month"], 189.32);
        // six: three zones
        ctx.domain_size.instance_count = 6;
        let cc = cluster_config(&changes(&ctx, &Observed::default())[0].details);
        assert_eq!(cc.zone_awareness_config().and_then(|z| z.availability_zone_count()), Some(3));
        // an adopted domain keeps its own size and layout, and gets no estimate
        let cur = json!({"engine_version": "OpenSearch_2.11", "instance_type": "r6g.large.search", "instance_count": 4,
            "zone_awareness_enabled": true, "availability_zone_count": 2, "multi_az_with_standby": false, "ebs_gib": 100,
            "encryption_at_rest": true, "node_to_node_encryption": true, "enforce_https": true, "tls_security_policy": TLS_POLICY,
            "fine_grained_access_control": true, "internal_user_database": false, "access_policy": null, "tags": {}});
        let c = changes(&ctx, &Observed { domain: Some(cur), ..Default::default() }).remove(0);
        assert_eq!((c.details["instance_count"].as_i64(), c.details["availability_zone_count"].as_i64()), (Some(4), Some(2)));
        assert!(c.details.get("monthly_estimate").is_none());
    }

    #[test]
    fn adopted_access_policy_keeps_other_statements() {
        let ctx = domain_ctx();
        let theirs = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Analysts", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/analyst"}, "Action": "es:ESHttpGet", "Resource": "*"},
            {"Sid": "TrailsetupAccessOther", "Effect": "Allow", "Principal": {"AWS": "other-stack"}, "Action": "es:*", "Resource": "*"},
            {"Sid": "TrailsetupAccess", "Effect": "Allow", "Principal": {"AWS": "legacy"}, "Action": "es:*", "Resource": "*"},
            {"Sid": ctx.sid("Access"), "Effect": "Allow", "Principal": {"AWS": "old"}, "Action": "es:*", "Resource": "*"}]});
        let m = merged_access_policy(&ctx, "logs", Some(&theirs));
        let sids: Vec<&str> = m["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap()).collect();
        // another stack's statement on the shared domain stays; ours and the pre-stack-id one are replaced
        assert_eq!(sids, ["Analysts", "TrailsetupAccessOther", "TrailsetupAccessTrailsetup"]);
        assert_eq!(m["Statement"][2]["Principal"]["AWS"][1], "arn:aws:iam::123456789012:role/trailsetup-forwarder");
    }

    #[test]
    fn dashboards_objects_are_planned_by_what_is_installed() {
        let ctx = domain_ctx();
        let ep = "https://search-logs-abc.us-east-1.es.amazonaws.com";
        let ids: Vec<String> = crate::opensearch::dashboards::objects(&ctx.index_prefix).into_iter().map(|o| o.id).collect();
        let found = |same: &[String], differs: &[String], missing: &[String]| {
            Probe::Found(Some(json!({"url": format!("{ep}/_dashboards"), "same": same, "differs": differs, "missing": missing})))
        };
        // nothing there (or not looked at): create; all there and ours: nothing to do; one changed: update
        assert_eq!(dashboards_change(&ctx, &Probe::NotChecked, ep).action, Action::Create);
        assert_eq!(dashboards_change(&ctx, &found(&[], &[], &ids), ep).action, Action::Create);
        let c = dashboards_change(&ctx, &found(&ids, &[], &[]), ep);
        assert_eq!((c.action, c.kind.as_str()), (Action::NoOp, "opensearch-dashboards-objects"));
        assert_eq!(c.details["dashboards_url"], format!("{ep}/_dashboards"));
        assert_eq!(c.details["objects"].as_array().unwrap().len(), ids.len());
        assert_eq!(dashboards_change(&ctx, &found(&ids[1..], &ids[..1], &[]), ep).action, Action::Update);
        // unreachable: a no-op, said; no Dashboards at a URL endpoint: a no-op, deferred, said once
        let c = dashboards_change(&ctx, &Probe::Unreachable("dns".into()), ep);
        assert!(c.action == Action::NoOp && c.details["unreachable"] == true);
        let nf = Probe::Found(Some(json!({"url": "http://127.0.0.1:9200/_dashboards", "deferred": true,
            "reason": "OpenSearch Dashboards was not found at http://127.0.0.1:9200/_dashboards (…)"})));
        let c = dashboards_change(&ctx, &nf, "http://127.0.0.1:9200");
        assert!(c.action == Action::NoOp && c.details["deferred"] == true && c.details.get("unreachable").is_none());
        let w = dashboards_warning(&crate::plan::Plan::new(vec![c])).unwrap();
        assert!(w.starts_with("OpenSearch Dashboards was not found at http://127.0.0.1:9200/_dashboards") && w.contains("deferred"), "{w}");
    }

    #[test]
    fn role_mapping_is_planned_and_idempotent() {
        let ctx = domain_ctx();
        // a new domain: created, with the documented requests
        let c = role_mapping_change(&ctx, &Observed::default()).unwrap();
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.details["requests"][0]["path"], "_plugins/_security/api/roles/trailsetup-writer");
        assert_eq!(c.details["requests"][1]["path"], "_plugins/_security/api/rolesmapping/trailsetup-writer");
        assert_eq!(c.details["requests"][1]["body"]["backend_roles"], json!(["arn:aws:iam::123456789012:role/trailsetup-forwarder"]));
        // as GET returns them after the PUTs: nothing to do
        let found = json!({"role": role_core(&json!({"reserved": false, "cluster_permissions": writer_role_body(&ctx)["cluster_permissions"],
            "index_permissions": [{"index_patterns": ["cloudtrail-*", "cloudtrail"], "fls": [], "masked_fields": [],
            "allowed_actions": writer_role_body(&ctx)["index_permissions"][0]["allowed_actions"]}]})),
            "mapping": mapping_core(&json!({"hosts": [], "users": [], "reserved": false, "backend_roles": ["arn:aws:iam::123456789012:role/trailsetup-forwarder"]}))});
        let o = Observed { security: Security::On(Probe::Found(Some(found))), ..Default::default() };
        assert_eq!(role_mapping_change(&ctx, &o).unwrap().action, Action::NoOp);
        // someone else's backend role stays mapped
        let found = json!({"role": null, "mapping": {"backend_roles": ["arn:aws:iam::123456789012:role/other"], "hosts": [], "users": ["bob"]}});
        let o = Observed { security: Security::On(Probe::Found(Some(found))), ..Default::default() };
        let c = role_mapping_change(&ctx, &o).unwrap();
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.details["mapping_body"]["backend_roles"].as_array().unwrap().len(), 2);
        assert_eq!(c.details["mapping_body"]["users"], json!(["bob"]));
        // unreachable: a no-op, said, never a change
        let o = Observed { security: Security::On(Probe::Unreachable("dns".into())), template: Probe::Unreachable("dns".into()),
            dashboards: Probe::Unreachable("dns".into()), ..Default::default() };
        let all = changes(&ctx, &o);
        assert!(all.iter().skip(1).all(|c| c.action == Action::NoOp && c.details["unreachable"] == true), "{all:?}");
        // FGAC off: no mapping
        let o = Observed { security: Security::Off, ..Default::default() };
        assert!(role_mapping_change(&ctx, &o).is_none());
    }
}
