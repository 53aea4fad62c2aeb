//! OpenSearch, for every command that talks to it: the HTTP client (SigV4, basic or no auth), the index template,
//! and the endpoint a command resolves from its flags, its config and the stack's state. `ingest` (the loader),
//! `resources` (init's plan), `status` and `destroy` all start here; none of them reaches into another command.

pub mod client;
pub mod dashboards;
pub mod layout;
pub mod query;
pub mod template;

use std::time::Duration;

use crate::cli::SinkArgs;
use crate::error::usage;
use crate::settings::Common;
use crate::state::State;

pub use client::{Auth, Client};

/// How trailsetup authenticates to OpenSearch: SigV4 (Amazon OpenSearch Service), HTTP basic auth, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenSearchAuth {
    Sigv4,
    Basic,
    None,
}

/// The index prefix when none is given: `cloudtrail-YYYY.MM.DD`, alias `cloudtrail`.
pub const DEFAULT_PREFIX: &str = "cloudtrail";

/// The index prefix from flag, env, config file or state, else the default (not yet validated).
pub fn index_prefix(common: &Common, os: &crate::cli::OpenSearchArgs, state: Option<&State>) -> String {
    os.index_prefix
        .clone()
        .or_else(|| common.file.index_prefix.clone())
        .or_else(|| state.and_then(|s| s.index_prefix.clone()))
        .unwrap_or_else(|| DEFAULT_PREFIX.into())
}

/// The OpenSearch endpoint from flag, env, config file or state, as given.
pub fn endpoint_url(common: &Common, a: &SinkArgs, state: Option<&State>) -> Option<String> {
    a.os.opensearch_url.clone().or_else(|| common.file.opensearch_url.clone()).or_else(|| state.and_then(|s| s.opensearch_url.clone()))
}

/// A client for the endpoint the flags, the config or the stack's state name, with its auth: SigV4 for Amazon
/// OpenSearch Service hosts (service and region from the host, `--sigv4-*`, or the state), basic from
/// `TRAILSETUP_OPENSEARCH_USER`/`_PASSWORD` (refused over plain http to a non-loopback host unless allowed), or none.
/// Returns the client and the URL as given.
pub async fn connect(common: &Common, a: &SinkArgs, state: Option<&State>, aws: Option<&aws_config::SdkConfig>) -> anyhow::Result<(Client, String)> {
    let url = endpoint_url(common, a, state).ok_or_else(|| {
        usage(
            "no OpenSearch endpoint: pass --opensearch-url (env TRAILSETUP_OPENSEARCH_URL, config key \
             opensearch_url), or run `trailsetup init` first so the stack's state names it",
        )
    })?;
    let parsed = client::parse_url(&url)?;
    let hint = parsed.host_str().and_then(client::aws_host_hint);
    let auth_kind = a
        .os
        .opensearch_auth
        .or(common.file.opensearch_auth)
        .or_else(|| state.and_then(|s| s.opensearch_auth))
        .unwrap_or(if hint.is_some() { OpenSearchAuth::Sigv4 } else { OpenSearchAuth::None });
    let auth = match auth_kind {
        OpenSearchAuth::None => Auth::None,
        OpenSearchAuth::Basic => {
            let user = std::env::var("TRAILSETUP_OPENSEARCH_USER").map_err(|_| {
                usage("--opensearch-auth basic needs TRAILSETUP_OPENSEARCH_USER and TRAILSETUP_OPENSEARCH_PASSWORD")
            })?;
            let password = std::env::var("TRAILSETUP_OPENSEARCH_PASSWORD")
                .map_err(|_| usage("--opensearch-auth basic needs TRAILSETUP_OPENSEARCH_PASSWORD"))?;
            Auth::Basic { user, password }
        }
        OpenSearchAuth::Sigv4 => {
            let service = a
                .os
                .sigv4_service
                .clone()
                .or_else(|| common.file.sigv4_service.clone())
                .or_else(|| hint.as_ref().map(|h| h.0.to_string()))
                .unwrap_or_else(|| "es".into());
            if service != "es" && service != "aoss" {
                return Err(usage(format!("--sigv4-service {service:?}: expected es or aoss")));
            }
            let cfg = match aws {
                Some(c) => c.clone(),
                None => crate::aws::sdk_config(common).await,
            };
            // the domain's region: SigV4 scoped to another region is refused
            let region = a
                .os
                .sigv4_region
                .clone()
                .or_else(|| common.file.sigv4_region.clone())
                .or_else(|| hint.map(|h| h.1))
                .or_else(|| state.and_then(|s| s.opensearch_region.clone()))
                .or_else(|| cfg.region().map(|r| r.to_string()))
                .ok_or_else(|| usage("SigV4 needs a region: pass --region or set AWS_REGION"))?;
            let credentials = cfg
                .credentials_provider()
                .ok_or_else(|| usage("SigV4 needs AWS credentials: set AWS_PROFILE (or --profile) or AWS_ACCESS_KEY_ID"))?;
            Auth::SigV4 { service, region, credentials }
        }
    };
    no_clear_text_password(common, &auth, &parsed)?;
    let ca = a.os.ca_bundle.clone().or_else(|| common.file.ca_bundle.clone());
    let timeout = Duration::from_secs(a.timeout_secs.unwrap_or(120).max(1));
    Ok((Client::new(&url, auth, ca.as_deref(), timeout)?, url))
}

/// Basic auth over plain http:// to a host that is not loopback sends the password in clear text: refused unless
/// `--allow-http-basic-auth` (for the endpoint, and for any other URL of it, such as `--dashboards-url`).
pub fn no_clear_text_password(common: &Common, auth: &Auth, u: &url::Url) -> anyhow::Result<()> {
    if matches!(auth, Auth::Basic { .. }) && u.scheme() == "http" && !client::is_loopback(u) && !common.allow_http_basic_auth {
        return Err(usage(format!(
            "--opensearch-auth basic over plain http:// to {} would send the password in clear text: use https://, or \
             pass --allow-http-basic-auth (env TRAILSETUP_ALLOW_HTTP_BASIC_AUTH, config key allow_http_basic_auth) if \
             the network path is trusted",
            u.host_str().unwrap_or("the host")
        )));
    }
    Ok(())
}

/// For commands that read the stack's indices (`search`, `migrate`): the client, the endpoint as given, the index
/// prefix and the stack's state (the state file or the account's record, unless the endpoint is given).
pub async fn for_stack(common: &Common, e: &crate::cli::EndpointArgs) -> anyhow::Result<(Client, String, String, Option<State>)> {
    let given = e.os.opensearch_url.is_some() || common.file.opensearch_url.is_some();
    let state = crate::stack::defaults(common, e.name.as_deref(), given).await?;
    let (client, url) = connect(common, &e.sink(), state.as_ref(), None).await?;
    let prefix = index_prefix(common, &e.os, state.as_ref());
    template::validate_prefix(&prefix)?;
    Ok((client, url, prefix, state))
}
