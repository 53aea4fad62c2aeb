//! The index layout: which indices hold which days, chosen to fit the cluster.
//!
//! Every index is one primary shard with `auto_expand_replicas: 0-1` (no replica on a one-node cluster, which then
//! stays green; one replica from two nodes up). OpenSearch refuses new shards past `cluster.max_shards_per_node`
//! (1,000 by default) times the data nodes, primaries and replicas counted; a daily index costs 365 shards a year
//! per copy, so a small cluster runs out after a few years of history. The granularity is the stack's choice
//! (`init --index-granularity`, recorded in the state, the account record and the template's `_meta`), and every
//! writer and `search` follow it. `auto` picks `day` only when five years of daily indices, replicas included,
//! take at most half the cluster's shard capacity; else `month`.

use chrono::{Datelike, NaiveDate};
use reqwest::Method;

use super::client::{check_auth, Client};

/// How many days one index holds: one (`<prefix>-YYYY.MM.DD`) or a calendar month (`<prefix>-YYYY.MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    #[default]
    Day,
    Month,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--index-granularity` for `init`: a granularity, or `auto` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Auto,
    Day,
    Month,
}

impl Choice {
    pub fn fixed(self) -> Option<Granularity> {
        match self {
            Choice::Auto => None,
            Choice::Day => Some(Granularity::Day),
            Choice::Month => Some(Granularity::Month),
        }
    }
}

/// The history a layout must hold without running out of shards.
pub const HORIZON_YEARS: u64 = 5;

/// `auto`: day when five years of daily indices (with the replica `auto_expand_replicas` gives) fit in half the
/// cluster's shard capacity, else month.
pub fn for_capacity(data_nodes: u64, max_shards_per_node: u64) -> Granularity {
    let nodes = data_nodes.max(1);
    let copies = if nodes > 1 { 2 } else { 1 };
    let need = HORIZON_YEARS * 366 * copies;
    if nodes * max_shards_per_node >= 2 * need { Granularity::Day } else { Granularity::Month }
}

/// The cluster's data nodes and `cluster.max_shards_per_node` (persistent, transient or default).
pub async fn capacity(client: &Client) -> anyhow::Result<(u64, u64)> {
    let r = client.json(Method::GET, "_cluster/health", None).await?;
    check_auth(&r, client.auth(), "GET _cluster/health")?;
    let health: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let nodes = health["number_of_data_nodes"].as_u64().unwrap_or(1);
    let r = client.json(Method::GET, "_cluster/settings?include_defaults=true&flat_settings=true", None).await?;
    check_auth(&r, client.auth(), "GET _cluster/settings")?;
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let max = ["transient", "persistent", "defaults"]
        .iter()
        .find_map(|k| s[k]["cluster.max_shards_per_node"].as_str().and_then(|v| v.parse().ok()))
        .unwrap_or(1000);
    Ok((nodes, max))
}

/// The days an index of `prefix` holds, from its name: `<prefix>-YYYY.MM.DD` (one day), `<prefix>-YYYY.MM` (a
/// month); `None` for `<prefix>-undated` and names of neither form.
pub fn days_of(prefix: &str, index: &str) -> Option<(NaiveDate, NaiveDate)> {
    let rest = index.strip_prefix(prefix)?.strip_prefix('-')?;
    let num = |s: &str| s.parse::<u32>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            let day = NaiveDate::from_ymd_opt(num(y)? as i32, num(m)?, num(d)?)?;
            Some((day, day))
        }
        [y, m] if y.len() == 4 && m.len() == 2 => {
            let first = NaiveDate::from_ymd_opt(num(y)? as i32, num(m)?, 1)?;
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
            };
            Some((first, next.pred_opt()?))
        }
        _ => None,
    }
}

/// The open indices named `<prefix>-*`.
pub async fn indices(client: &Client, prefix: &str) -> anyhow::Result<Vec<String>> {
    matching(client, &format!("{prefix}-*")).await
}

/// The open indices an index expression names (a name or a wildcard pattern), sorted; none when nothing matches.
pub async fn matching(client: &Client, pattern: &str) -> anyhow::Result<Vec<String>> {
    let r = client
        .json(Method::GET, &format!("_cat/indices/{pattern}?format=json&h=index&expand_wildcards=open&ignore_unavailable=true"), None)
        .await?;
    check_auth(&r, client.auth(), "GET _cat/indices")?;
    if r.status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !r.status.is_success() {
        anyhow::bail!("listing the indices {pattern} failed: HTTP {}: {}", r.status, r.text());
    }
    let v: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap_or_default();
    let mut names: Vec<String> = v.iter().filter_map(|x| x["index"].as_str().map(str::to_owned)).collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_rule() {
        // the default one-node domain: 1,000 shards cannot hold five years of daily indices
        assert_eq!(for_capacity(1, 1000), Granularity::Month);
        assert_eq!(for_capacity(3, 1000), Granularity::Month);
        assert_eq!(for_capacity(8, 1000), Granularity::Day);
        assert_eq!(for_capacity(1, 5000), Granularity::Day);
    }

    #[test]
    fn index_names() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(days_of("ct", "ct-2024.02.29"), Some((d(2024, 2, 29), d(2024, 2, 29))));
        assert_eq!(days_of("ct", "ct-2024.02"), Some((d(2024, 2, 1), d(2024, 2, 29))));
        assert_eq!(days_of("ct", "ct-2024.12"), Some((d(2024, 12, 1), d(2024, 12, 31))));
        for bad in ["ct-undated", "ct-2024.13", "ct-2024.02.30", "ctx-2024.01", "ct-a-2024.01", "ct-2024.1", "ct-+024.01"] {
            assert_eq!(days_of("ct", bad), None, "{bad}");
        }
    }
}
