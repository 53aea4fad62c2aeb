//! Questions to the index: the named presets (one definition, `templates/search-presets.json`, shared with the
//! Dashboards saved searches), the filters of `trailsetup search`, and which indices a time window touches.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout;
use crate::error::usage;

/// The presets file, as shipped (data, not code).
pub const PRESETS: &str = include_str!("../../templates/search-presets.json");

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Preset {
    pub name: String,
    /// the AWS Security Hub control whose metric filter pattern this is (`CloudWatch.N`)
    pub control: Option<String>,
    pub title: String,
    /// the control's CloudWatch Logs filter pattern, verbatim
    pub pattern: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// the same question in Lucene syntax over this tool's index
    pub lucene: String,
}

#[derive(Deserialize)]
struct PresetFile {
    presets: Vec<Preset>,
}

pub fn presets() -> Vec<Preset> {
    serde_json::from_str::<PresetFile>(PRESETS).expect("templates/search-presets.json is checked by a unit test").presets
}

pub fn preset(name: &str) -> anyhow::Result<Preset> {
    let all = presets();
    all.iter().find(|p| p.name == name).cloned().ok_or_else(|| {
        usage(format!(
            "--preset {name:?} is not a preset; accepted: {} (or `--preset list`)",
            all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// What `--count-by` counts: a field, or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CountBy {
    Event,
    Principal,
    Ip,
    Error,
    Region,
    Account,
    Source,
    Day,
}

impl CountBy {
    pub fn field(self) -> &'static str {
        match self {
            CountBy::Event => "eventName",
            CountBy::Principal => "@trailsetup.principal",
            CountBy::Ip => "sourceIPAddress",
            CountBy::Error => "errorCode",
            CountBy::Region => "awsRegion",
            CountBy::Account => "recipientAccountId",
            CountBy::Source => "eventSource",
            CountBy::Day => "@timestamp",
        }
    }
}

/// The filters of one search; each list is OR within itself, the filters AND together.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub events: Vec<String>,
    pub sources: Vec<String>,
    pub resources: Vec<String>,
    pub principals: Vec<String>,
    pub access_keys: Vec<String>,
    pub ips: Vec<String>,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub errors: bool,
    pub preset: Option<Preset>,
}

/// The principal fields `--principal` matches: the caller's ARN, user name, principal id, or its session
/// issuer's ARN or name.
pub const PRINCIPAL_FIELDS: [&str; 5] = [
    "userIdentity.arn",
    "userIdentity.userName",
    "userIdentity.principalId",
    "userIdentity.sessionContext.sessionIssuer.arn",
    "userIdentity.sessionContext.sessionIssuer.userName",
];

/// `ec2` → `ec2.amazonaws.com`; a full name is kept.
pub fn event_source(s: &str) -> String {
    if s.contains('.') { s.to_string() } else { format!("{s}.amazonaws.com") }
}

/// A time window: inclusive bounds on `@timestamp`, either open; `None` for both is every event, undated ones too.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

impl Window {
    pub fn all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

/// `7d`, `12h`, `30m`, `2w` → that long before `now`; `all` → no bound.
pub fn since(s: &str, now: NaiveDateTime) -> anyhow::Result<Window> {
    if s == "all" {
        return Ok(Window::default());
    }
    let bad = || usage(format!("--since {s:?}: expected a duration such as 30m, 12h, 7d or 2w, or `all`"));
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "m" => chrono::TimeDelta::try_minutes(n),
        "h" => chrono::TimeDelta::try_hours(n),
        "d" => chrono::TimeDelta::try_days(n),
        "w" => chrono::TimeDelta::try_weeks(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Window { from: now.checked_sub_signed(d), to: None })
}

fn terms(field: &str, values: &[String]) -> Value {
    json!({"terms": {field: values}})
}

/// The `bool` query of a search.
pub fn build(f: &Filters, w: &Window) -> Value {
    let mut filter = Vec::new();
    if w.from.is_some() || w.to.is_some() {
        let mut r = serde_json::Map::new();
        if let Some(t) = w.from {
            r.insert("gte".into(), json!(t.and_utc().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()));
        }
        if let Some(t) = w.to {
            r.insert("lte".into(), json!(t.and_utc().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()));
        }
        filter.push(json!({"range": {"@timestamp": r}}));
    }
    if !f.events.is_empty() {
        filter.push(terms("eventName", &f.events));
    }
    if !f.sources.is_empty() {
        filter.push(terms("eventSource", &f.sources.iter().map(|s| event_source(s)).collect::<Vec<_>>()));
    }
    if !f.resources.is_empty() {
        filter.push(terms("@trailsetup.resources", &f.resources));
    }
    if !f.principals.is_empty() {
        let should: Vec<Value> = PRINCIPAL_FIELDS.iter().map(|p| terms(p, &f.principals)).collect();
        filter.push(json!({"bool": {"should": should, "minimum_should_match": 1}}));
    }
    if !f.access_keys.is_empty() {
        filter.push(terms("userIdentity.accessKeyId", &f.access_keys));
    }
    if !f.ips.is_empty() {
        filter.push(terms("sourceIPAddress", &f.ips));
    }
    if !f.accounts.is_empty() {
        filter.push(terms("recipientAccountId", &f.accounts));
    }
    if !f.regions.is_empty() {
        filter.push(terms("awsRegion", &f.regions));
    }
    if f.errors {
        filter.push(json!({"exists": {"field": "errorCode"}}));
    }
    if let Some(p) = &f.preset {
        filter.push(json!({"query_string": {"query": p.lucene, "allow_leading_wildcard": true}}));
    }
    json!({"bool": {"filter": filter}})
}

/// Does the search need the investigation fields (`@trailsetup.*`), which indices made before them lack?
pub fn needs_investigation_fields(f: &Filters, count_by: Option<CountBy>) -> bool {
    !f.resources.is_empty()
        || f.preset.as_ref().is_some_and(|p| p.lucene.contains("@trailsetup."))
        || count_by == Some(CountBy::Principal)
}

/// The indices of `prefix` (as listed) a window touches: every one for an unbounded window, else those whose days
/// (from their names, daily or monthly) overlap it; `<prefix>-undated` only when unbounded.
pub fn select_indices(prefix: &str, listed: &[String], w: &Window) -> Vec<String> {
    if w.all() {
        return listed.to_vec();
    }
    let lo = w.from.map(|t| t.date()).unwrap_or(NaiveDate::MIN);
    let hi = w.to.map(|t| t.date()).unwrap_or(NaiveDate::MAX);
    listed
        .iter()
        .filter(|i| layout::days_of(prefix, i).is_some_and(|(a, b)| a <= hi && b >= lo))
        .cloned()
        .collect()
}

/// The request path for these indices, kept short: a whole year (`<prefix>-2023.*`) or month (`<prefix>-2024.03*`)
/// whose listed indices are all selected becomes one wildcard; `ignore_unavailable` covers one deleted since.
pub fn index_expression(prefix: &str, listed: &[String], selected: &[String]) -> String {
    let sel: BTreeSet<&str> = selected.iter().map(String::as_str).collect();
    let group = |i: &str, n: usize| -> Option<String> {
        let rest = i.strip_prefix(prefix)?.strip_prefix('-')?;
        (rest.len() >= n && layout::days_of(prefix, i).is_some()).then(|| rest[..n].to_string())
    };
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for i in selected {
        if done.contains(i.as_str()) {
            continue;
        }
        let mut pick = None;
        for (n, star) in [(4usize, ".*"), (7, "*")] {
            let Some(g) = group(i, n) else { continue };
            let members: Vec<&String> = listed.iter().filter(|x| group(x, n).as_deref() == Some(g.as_str())).collect();
            if members.iter().all(|m| sel.contains(m.as_str())) {
                pick = Some((format!("{prefix}-{g}{star}"), members));
                break;
            }
        }
        match pick {
            Some((pattern, members)) => {
                done.extend(members.iter().map(|m| m.as_str().to_string()));
                out.push(pattern);
            }
            None => {
                done.insert(i.clone());
                out.push(i.clone());
            }
        }
    }
    out.join(",")
}

/// Who acted, as one string (see `ingest::doc`'s `@trailsetup.principal`).
pub fn principal_of(user_identity: &Value) -> Option<String> {
    let at = |p: &[&str]| -> Option<String> {
        let mut v = user_identity;
        for k in p {
            v = v.get(k)?;
        }
        v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    };
    [&["arn"][..], &["sessionContext", "sessionIssuer", "arn"], &["userName"], &["principalId"], &["invokedBy"], &["accountId"]]
        .iter()
        .find_map(|p| at(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_cite_their_controls() {
        let all = presets();
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 15);
        for (i, p) in all.iter().take(14).enumerate() {
            assert_eq!(p.control.as_deref(), Some(format!("CloudWatch.{}", i + 1).as_str()), "{}", p.name);
            assert!(p.pattern.as_deref().is_some_and(|x| x.starts_with('{') && x.ends_with('}')), "{}", p.name);
        }
        assert!(names.contains(&"open-to-world"));
        assert!(preset("nope").is_err());
    }

    #[test]
    fn windows_and_indices() {
        let now = NaiveDate::from_ymd_opt(2024, 3, 10).unwrap().and_hms_opt(12, 0, 0).unwrap();
        let w = since("7d", now).unwrap();
        assert_eq!(w.from.unwrap().date(), NaiveDate::from_ymd_opt(2024, 3, 3).unwrap());
        assert!(since("all", now).unwrap().all());
        for bad in ["7", "d", "7x", "-1d", "", "99999999999999d"] {
            assert!(since(bad, now).is_err(), "{bad}");
        }
        let listed: Vec<String> =
            ["ct-2023.01", "ct-2023.02", "ct-2024.02.28", "ct-2024.03.01", "ct-2024.03.02", "ct-undated"].iter().map(|s| s.to_string()).collect();
        let sel = select_indices("ct", &listed, &w);
        assert!(sel.is_empty());
        let w = Window { from: Some(NaiveDate::from_ymd_opt(2023, 1, 15).unwrap().and_hms_opt(0, 0, 0).unwrap()), to: Some(now) };
        let sel = select_indices("ct", &listed, &w);
        assert_eq!(sel, listed[..5].to_vec());
        assert_eq!(index_expression("ct", &listed, &sel), "ct-2023.*,ct-2024.*");
        let w = Window { from: Some(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap().and_hms_opt(0, 0, 0).unwrap()), to: None };
        let sel = select_indices("ct", &listed, &w);
        assert_eq!(index_expression("ct", &listed, &sel), "ct-2024.03*");
        let w = Window { from: Some(NaiveDate::from_ymd_opt(2024, 3, 2).unwrap().and_hms_opt(0, 0, 0).unwrap()), to: None };
        let sel = select_indices("ct", &listed, &w);
        assert_eq!(index_expression("ct", &listed, &sel), "ct-2024.03.02");
        assert_eq!(select_indices("ct", &listed, &Window::default()).len(), 6);
    }
}
