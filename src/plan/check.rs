//! What `status` reports: one check, its level, what was found and what to do.

use serde::Serialize;

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

pub fn found(name: &str, resource: impl Into<String>, region: impl Into<String>, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), resource: resource.into(), region: region.into(), level, detail: detail.into(), fix: fix.into() }
}

