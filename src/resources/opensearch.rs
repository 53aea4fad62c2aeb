//! OpenSearch: an Amazon OpenSearch Service domain created or adopted (encryption at rest, node-to-node,
//! HTTPS with TLS 1.2+, fine-grained access control with the caller as IAM master, an access policy naming only
//! the caller), or an existing endpoint (`--opensearch-url`); then the index template for `<prefix>-*`.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use aws_sdk_opensearch::types::{
    AdvancedSecurityOptionsInput, ClusterConfig, DomainEndpointOptions, EbsOptions, EncryptionAtRestOptions,
    MasterUserOptions, NodeToNodeEncryptionOptions, OpenSearchPartitionInstanceType, Tag, TlsSecurityPolicy, VolumeType,
};
use serde_json::{json, Value};

use super::{Aws, Ctx, OpenSearchTarget, TAG_KEY};
use crate::aws::{code, explain};
use crate::ingest::template;
use crate::plan::{Action, Change};

pub const ENGINE_VERSION: &str = "OpenSearch_2.19";
pub const INSTANCE_TYPE: &str = "t3.small.search";
pub const TLS_POLICY: &str = "Policy-Min-TLS-1-2-2019-07";
const DOMAIN_WAIT: Duration = Duration::from_secs(45 * 60);

pub fn desired_domain(ctx: &Ctx, domain: &str) -> Value {
    json!({
        "engine_version": ENGINE_VERSION,
        "instance_type": INSTANCE_TYPE,
        "instance_count": 1,
        "ebs_gib": 10,
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

pub fn desired_template(ctx: &Ctx, endpoint: &str) -> Value {
    json!({"endpoint": endpoint, "name": template::name(&ctx.index_prefix), "index_patterns": [format!("{}-*", ctx.index_prefix)], "alias": ctx.index_prefix})
}

async fn observe_domain(ctx: &Ctx, aws: &Aws, domain: &str) -> anyhow::Result<Option<(Value, Option<String>)>> {
    let os = aws_sdk_opensearch::Client::new(&aws.at(&ctx.home));
    let d = match os.describe_domain().domain_name(domain).send().await {
        Ok(r) => r.domain_status.ok_or_else(|| anyhow!("DescribeDomain {domain}: empty answer"))?,
        Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(explain(e, &format!("reading OpenSearch domain {domain}"), "es:DescribeDomain")),
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
    let policy = d.access_policies().map(super::parse_policy).transpose()?;
    let endpoint = d.endpoint().map(String::from).or_else(|| d.endpoints().and_then(|m| m.values().next().cloned()));
    Ok(Some((
        json!({
            "engine_version": d.engine_version(),
            "instance_type": cc.and_then(|c| c.instance_type()).map(|t| t.as_str().to_string()),
            "instance_count": cc.and_then(|c| c.instance_count()),
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
        endpoint.map(|e| if e.starts_with("http") { e } else { format!("https://{e}") }),
    )))
}

pub async fn plan(ctx: &Ctx, aws: Option<&Aws>) -> anyhow::Result<Vec<Change>> {
    let mut out = Vec::new();
    let endpoint = match &ctx.opensearch {
        OpenSearchTarget::Url(u) => u.clone(),
        OpenSearchTarget::Domain(domain) => {
            let want = desired_domain(ctx, domain);
            let now = match aws {
                None => None,
                Some(a) => observe_domain(ctx, a, domain).await?,
            };
            let endpoint = now.as_ref().and_then(|n| n.1.clone());
            if let (Some(a), Some(ep)) = (aws, &endpoint) {
                if a.search.is_none() {
                    let mut a2 = a.clone();
                    a2.search = crate::apply::domain_client(a, ep, &ctx.home).ok();
                    return finish(ctx, Some(&a2), out, ep.clone(), domain, now.map(|n| n.0), want).await;
                }
            }
            return finish(ctx, aws, out, endpoint.unwrap_or_else(|| format!("(endpoint of domain {domain}, known once it is created)")), domain, now.map(|n| n.0), want).await;
        }
    };
    template_change(ctx, aws, &mut out, &endpoint).await;
    Ok(out)
}

async fn finish(ctx: &Ctx, aws: Option<&Aws>, mut out: Vec<Change>, endpoint: String, domain: &str, current: Option<Value>, mut want: Value) -> anyhow::Result<Vec<Change>> {
    {
        {
            match &current {
                // adopted: keep its engine version, size and master user; we only add what secures it
                Some(cur) => {
                    for k in ["engine_version", "instance_type", "instance_count", "ebs_gib", "internal_user_database"] {
                        want[k] = cur[k].clone();
                    }
                }
                None => {
                    want["master_user_arn"] = json!(ctx.caller_arn);
                }
            }
            out.push(Change::diff("opensearch-domain", domain, &ctx.home, want, current));
        }
    }
    template_change(ctx, aws, &mut out, &endpoint).await;
    Ok(out)
}

async fn template_change(ctx: &Ctx, aws: Option<&Aws>, out: &mut Vec<Change>, endpoint: &str) {
    let want = desired_template(ctx, endpoint);
    let now = match aws.and_then(|a| a.search.as_ref()) {
        None => None,
        Some(client) => match template::installed_matches(client, &ctx.index_prefix).await {
            Ok(Some(true)) => Some(want.clone()),
            Ok(Some(false)) => Some(json!({"endpoint": endpoint, "name": template::name(&ctx.index_prefix), "differs": true})),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("OpenSearch at {endpoint} not reachable to check the index template: {e:#}");
                None
            }
        },
    };
    out.push(Change::diff("opensearch-index-template", template::name(&ctx.index_prefix), "-", want, now));
}

pub async fn apply(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<Option<String>> {
    match c.kind.as_str() {
        "opensearch-domain" => apply_domain(ctx, aws, c).await.map(Some),
        "opensearch-index-template" => {
            let client = match &aws.search {
                Some(cl) => cl.clone(),
                None => return Err(anyhow!("no OpenSearch client to install the index template with")),
            };
            let v = match client.ping().await {
                Ok(v) => v,
                Err(e) => {
                    // not reachable from here (a VPC domain, a firewall): backfill/ingest install it before the
                    // first document anyway
                    tracing::warn!("index template not installed now: {e:#}; `trailsetup backfill`/`ingest` install it before the first document");
                    eprintln!("warning: OpenSearch is not reachable from here; the index template will be installed by backfill/ingest");
                    return Ok(None);
                }
            };
            template::install(&client, &ctx.index_prefix).await?;
            tracing::info!("OpenSearch {v}: index template {} installed", template::name(&ctx.index_prefix));
            Ok(None)
        }
        other => Err(anyhow!("opensearch cannot apply {other}")),
    }
}

async fn apply_domain(ctx: &Ctx, aws: &Aws, c: &Change) -> anyhow::Result<String> {
    let os = aws_sdk_opensearch::Client::new(&aws.at(&ctx.home));
    let name = &c.name;
    let d = &c.details;
    let policy = d["access_policy"].to_string();
    if c.action == Action::Create {
        let res = os
            .create_domain()
            .domain_name(name)
            .engine_version(ENGINE_VERSION)
            .cluster_config(
                ClusterConfig::builder()
                    .instance_type(OpenSearchPartitionInstanceType::from(INSTANCE_TYPE))
                    .instance_count(1)
                    .build(),
            )
            .ebs_options(EbsOptions::builder().ebs_enabled(true).volume_type(VolumeType::Gp3).volume_size(10).build())
            .encryption_at_rest_options(EncryptionAtRestOptions::builder().enabled(true).set_kms_key_id(ctx.kms_key.clone()).build())
            .node_to_node_encryption_options(NodeToNodeEncryptionOptions::builder().enabled(true).build())
            .domain_endpoint_options(
                DomainEndpointOptions::builder()
                    .enforce_https(true)
                    .tls_security_policy(TlsSecurityPolicy::from(TLS_POLICY))
                    .build(),
            )
            .advanced_security_options(
                AdvancedSecurityOptionsInput::builder()
                    .enabled(true)
                    .internal_user_database_enabled(false)
                    .master_user_options(MasterUserOptions::builder().master_user_arn(&ctx.caller_arn).build())
                    .build(),
            )
            .access_policies(&policy)
            .tag_list(Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?)
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(explain(e, &format!("creating OpenSearch domain {name}"), "es:CreateDomain")),
        }
    } else {
        // never touches the master user of an adopted domain
        os.update_domain_config()
            .domain_name(name)
            .access_policies(&policy)
            .encryption_at_rest_options(EncryptionAtRestOptions::builder().enabled(true).build())
            .node_to_node_encryption_options(NodeToNodeEncryptionOptions::builder().enabled(true).build())
            .domain_endpoint_options(
                DomainEndpointOptions::builder()
                    .enforce_https(true)
                    .tls_security_policy(TlsSecurityPolicy::from(TLS_POLICY))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| explain(e, &format!("updating OpenSearch domain {name}"), "es:UpdateDomainConfig"))?;
        let arn = format!("arn:{}:es:{}:{}:domain/{name}", ctx.partition, ctx.home, ctx.account);
        os.add_tags()
            .arn(arn)
            .tag_list(Tag::builder().key(TAG_KEY).value(&ctx.stack).build()?)
            .send()
            .await
            .map_err(|e| explain(e, &format!("tagging OpenSearch domain {name}"), "es:AddTags"))?;
    }
    // bounded, visible wait for the endpoint
    let started = Instant::now();
    let mut delay = Duration::from_secs(5);
    loop {
        if let Some((_, Some(ep))) = observe_domain(ctx, aws, name).await? {
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
