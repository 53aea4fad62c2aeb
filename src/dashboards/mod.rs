//! `trailsetup dashboards`: install (or update, by stable ids) the saved objects through the Dashboards import API,
//! then open the domain's OpenSearch Dashboards through a local proxy that signs each request ([`proxy`]).
//! `--export` prints the objects and makes no call; `--install-only` installs and exits.

pub mod proxy;

use std::io::Write;

use serde_json::json;

use crate::cli::DashboardsArgs;
use crate::error::Exit;
use crate::opensearch::dashboards::{self, Dashboards};
use crate::output::Output;
use crate::settings::Common;

/// The index prefix without any network call: the flag, the config file, the state file, else the default.
fn offline_prefix(common: &Common, a: &DashboardsArgs) -> anyhow::Result<String> {
    let e = &a.endpoint;
    let prefix = match e.os.index_prefix.clone().or_else(|| common.file.index_prefix.clone()) {
        Some(p) => p,
        None => crate::state::State::load(&common.state_dir, e.name.as_deref())?
            .and_then(|s| s.index_prefix)
            .unwrap_or_else(|| crate::opensearch::DEFAULT_PREFIX.into()),
    };
    crate::opensearch::template::validate_prefix(&prefix)?;
    Ok(prefix)
}

pub async fn run(common: &Common, a: &DashboardsArgs, out: &Output) -> anyhow::Result<Exit> {
    if a.export {
        let prefix = offline_prefix(common, a)?;
        let objs = dashboards::checked_objects(&prefix)?;
        let mut o = std::io::stdout().lock();
        o.write_all(dashboards::ndjson(&objs).as_bytes())?;
        o.flush()?;
        return Ok(Exit::Success);
    }
    let (client, url, prefix, _) = crate::opensearch::for_stack(common, &a.endpoint).await?;
    let dash_url = a.dashboards_url.clone().unwrap_or_else(|| dashboards::default_url(&url));
    // the endpoint's password goes to --dashboards-url too: the same clear-text rule
    crate::opensearch::no_clear_text_password(common, client.auth(), &crate::opensearch::client::parse_url(&dash_url)?)?;
    let dash = Dashboards::new(&client, &dash_url)?;
    let objs = dashboards::checked_objects(&prefix)?;
    match dash.install(&objs, &prefix).await {
        Ok((found, imported)) => {
            if imported == 0 {
                out.note(format!("Dashboards at {}: the {} saved objects are up to date", dash.url(), objs.len()));
            } else {
                out.note(format!(
                    "Dashboards at {}: imported {imported} saved object(s) ({} new, {} updated, {} unchanged)",
                    dash.url(),
                    found.missing.len(),
                    found.differs.len(),
                    found.same.len()
                ));
            }
            if a.install_only {
                if out.json {
                    out.json_doc(&json!({"dashboards": {"url": dash.url(), "objects": objs.len(), "imported": imported,
                        "created": found.missing.len(), "updated": found.differs.len(), "unchanged": found.same.len()}}));
                }
                return Ok(Exit::Success);
            }
        }
        Err(e) if a.install_only => return Err(e.into()),
        // the proxy still helps (the objects may be installed already, or by someone allowed to)
        Err(e) => out.note(format!("warning: the saved objects were not installed: {e}")),
    }
    let base = client.with_base(&dash_url)?;
    proxy::serve(proxy::Config {
        port: a.port.unwrap_or(0),
        open_browser: !a.no_browser,
        landing: landing_path(&base.base, &prefix),
        client: base,
        idle: a.idle_timeout.map(std::time::Duration::from_secs).unwrap_or(proxy::IDLE),
    })
    .await?;
    Ok(Exit::Success)
}

/// Where the token sends the browser: the overview dashboard in the global tenant.
pub fn landing_path(dashboards: &url::Url, prefix: &str) -> String {
    format!(
        "{}/app/dashboards?security_tenant=global#/view/{}",
        dashboards.path().trim_end_matches('/'),
        dashboards::overview_id(prefix)
    )
}
