//! The index template for `<prefix>-*` and the `<prefix>` alias, installed before the first document.

use anyhow::{bail, Context as _};
use reqwest::Method;

use super::client::{check_auth, Client};
pub use super::layout::Granularity;

/// The template, as shipped in `templates/index-template.json` (data, not code).
pub const TEMPLATE: &str = include_str!("../../templates/index-template.json");

/// The template body for `prefix`: its patterns and alias filled in.
pub fn body(prefix: &str, granularity: Granularity) -> anyhow::Result<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(TEMPLATE).context("templates/index-template.json is not JSON")?;
    // the stack's layout, recorded where every writer finds it (see `super::layout`)
    v["_meta"]["granularity"] = serde_json::json!(granularity.as_str());
    v["index_patterns"] = serde_json::json!([format!("{prefix}-*")]);
    // A longer prefix is more specific: `a-b-*` must win over `a-*` (equal priorities that overlap are refused).
    v["priority"] = serde_json::json!(100 + prefix.len());
    v["template"]["aliases"] = serde_json::json!({ prefix: {} });
    Ok(v)
}

pub fn name(prefix: &str) -> String {
    format!("{prefix}-trailsetup")
}

/// Install (or update) the template. Idempotent: PUT of the same body changes nothing.
pub async fn install(client: &Client, prefix: &str, granularity: Granularity) -> anyhow::Result<()> {
    validate_prefix(prefix)?;
    let b = body(prefix, granularity)?;
    let r = client.json(Method::PUT, &format!("_index_template/{}", name(prefix)), Some(&b)).await?;
    check_auth(&r, client.auth(), "PUT _index_template")?;
    if !r.status.is_success() {
        bail!("installing index template {} failed: HTTP {}: {}", name(prefix), r.status, r.text());
    }
    Ok(())
}

/// Is the installed template the one we would install? (`None` when there is none.)
pub async fn installed_matches(client: &Client, prefix: &str, granularity: Granularity) -> anyhow::Result<Option<bool>> {
    let Some(have) = installed(client, prefix).await? else { return Ok(None) };
    let want = body(prefix, granularity)?;
    let setting = |v: &serde_json::Value| {
        let s = &v["template"]["settings"];
        s["index"]["auto_expand_replicas"].as_str().or(s["index.auto_expand_replicas"].as_str()).map(str::to_owned)
    };
    Ok(Some(
        have["index_patterns"] == want["index_patterns"]
            && have["template"]["mappings"] == want["template"]["mappings"]
            && have["_meta"] == want["_meta"]
            && setting(&have) == setting(&want),
    ))
}

/// The installed template for `prefix` (`None` when there is none).
pub async fn installed(client: &Client, prefix: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let r = client.json(Method::GET, &format!("_index_template/{}", name(prefix)), None).await?;
    if r.status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    check_auth(&r, client.auth(), "GET _index_template")?;
    if !r.status.is_success() {
        bail!("reading index template {} failed: HTTP {}: {}", name(prefix), r.status, r.text());
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    Ok(Some(v["index_templates"][0]["index_template"].clone()))
}

/// The granularity recorded in the installed template (`None`: no template, or one made before layouts existed).
pub async fn recorded_granularity(client: &Client, prefix: &str) -> anyhow::Result<Option<Granularity>> {
    Ok(installed(client, prefix).await?.and_then(|t| match t["_meta"]["granularity"].as_str() {
        Some("month") => Some(Granularity::Month),
        Some("day") => Some(Granularity::Day),
        _ => None,
    }))
}

/// Index names are lowercase and cannot hold some characters.
pub fn validate_prefix(prefix: &str) -> anyhow::Result<()> {
    let bad = prefix.is_empty()
        || prefix.starts_with(['-', '_', '+'])
        || prefix.chars().any(|c| c.is_ascii_uppercase() || "\\/*?\"<>| ,#:".contains(c));
    if bad {
        return Err(crate::error::usage(format!(
            "--index-prefix {prefix:?} is not a valid index name prefix (lowercase, no spaces or \\/*?\"<>|,#:, not starting with -_+)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn template_parses_and_fills() {
        let b = super::body("ct", super::Granularity::Month).unwrap();
        assert_eq!(b["index_patterns"][0], "ct-*");
        assert_eq!(b["_meta"]["granularity"], "month");
        assert_eq!(b["template"]["mappings"]["_source"]["excludes"][0], "@trailsetup");
        assert_eq!(b["template"]["settings"]["index.auto_expand_replicas"], "0-1");
        assert!(b["template"]["aliases"]["ct"].is_object());
        assert_eq!(b["template"]["mappings"]["date_detection"], false);
        assert!(super::validate_prefix("Bad").is_err());
        assert!(super::validate_prefix("cloudtrail").is_ok());
    }
}
