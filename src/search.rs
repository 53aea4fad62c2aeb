//! `trailsetup search`: who did what, from the terminal. Filters and presets become one query
//! (`opensearch::query`), sent only to the indices the window touches; events newest first, a page of them or all
//! of them (point in time + `search_after`), or counts.

use std::io::Write;

use anyhow::{anyhow, bail, Context as _};
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{OutputFormat, SearchArgs};
use crate::error::{usage, Exit};
use crate::opensearch::query::{self, CountBy, Filters, Window};
use crate::opensearch::{client::check_auth, layout, Client};
use crate::output::Output;
use crate::settings::{parse_bound, split_list, Common};

/// The default window.
pub const DEFAULT_DAYS: i64 = 90;
pub const DEFAULT_LIMIT: usize = 50;
/// Events per page when paging through everything.
const PAGE: usize = 1000;

/// The event columns (`--output json` event objects, csv, the table's source).
pub const COLUMNS: [&str; 13] = [
    "id",
    "index",
    "eventID",
    "eventTime",
    "eventName",
    "eventSource",
    "principal",
    "accessKeyId",
    "sourceIPAddress",
    "awsRegion",
    "recipientAccountId",
    "errorCode",
    "resources",
];

pub async fn run(common: &Common, a: &SearchArgs, region_filter: Option<&str>, out: &Output) -> anyhow::Result<Exit> {
    if a.preset.as_deref() == Some("list") {
        return list_presets(common);
    }
    let list = |s: &Option<String>| s.as_deref().map(split_list).unwrap_or_default();
    let filters = Filters {
        events: list(&a.event),
        sources: list(&a.source),
        resources: list(&a.resource),
        principals: list(&a.principal),
        access_keys: list(&a.access_key),
        ips: list(&a.ip),
        accounts: list(&a.account),
        regions: region_filter.map(split_list).unwrap_or_default(),
        errors: a.errors,
        preset: a.preset.as_deref().map(query::preset).transpose()?,
    };
    let now = chrono::Utc::now().naive_utc();
    let window = match (&a.since, &a.from, &a.to) {
        (Some(s), _, _) => query::since(s, now)?,
        (None, None, None) => Window { from: now.checked_sub_signed(chrono::TimeDelta::days(DEFAULT_DAYS)), to: None },
        (None, f, t) => {
            let to = t.as_deref().map(|s| parse_bound("--to", s, true)).transpose()?.map(|b| b.1);
            let from = match f.as_deref() {
                Some(s) => Some(parse_bound("--from", s, false)?.1),
                None => to.unwrap_or(now).checked_sub_signed(chrono::TimeDelta::days(DEFAULT_DAYS)),
            };
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    return Err(usage(format!("--from {f} is after --to {t}")));
                }
            }
            Window { from, to }
        }
    };
    let limit = if a.all { usize::MAX } else { a.limit.unwrap_or(DEFAULT_LIMIT) };
    if limit == 0 {
        return Err(usage("--limit must be at least 1"));
    }

    // the stack's endpoint and prefix, unless given
    let (client, url, prefix, _) = crate::opensearch::for_stack(common, &a.endpoint).await?;

    let listed = layout::indices(&client, &prefix)
        .await
        .with_context(|| format!("OpenSearch at {} does not answer; check --opensearch-url and the network path", crate::opensearch::client::redact_url(&url)))?;
    let selected = query::select_indices(&prefix, &listed, &window);
    let sink_out = Sink::new(common.output, a.count_by, out);
    if selected.is_empty() {
        if listed.is_empty() {
            out.note(format!("no indices {prefix}-* at {}: nothing loaded yet (`trailsetup backfill`)", crate::opensearch::client::redact_url(&url)));
        }
        sink_out.finish_empty()?;
        return Ok(Exit::Success);
    }
    let expr = query::index_expression(&prefix, &listed, &selected);
    if query::needs_investigation_fields(&filters, a.count_by) {
        warn_old_indices(&client, &expr, out).await?;
    }
    let q = query::build(&filters, &window);
    match a.count_by {
        Some(by) => counts(&client, &expr, q, by, limit, sink_out).await?,
        None => events(&client, &expr, q, limit, sink_out).await?,
    }
    Ok(Exit::Success)
}

fn list_presets(common: &Common) -> anyhow::Result<Exit> {
    let all = query::presets();
    let mut o = std::io::stdout().lock();
    if common.output == OutputFormat::Json {
        serde_json::to_writer_pretty(&mut o, &json!({"presets": all}))?;
        writeln!(o)?;
        return Ok(Exit::Success);
    }
    let w = all.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &all {
        writeln!(o, "{:w$}  {:13}  {}", p.name, p.control.as_deref().unwrap_or("-"), p.title)?;
    }
    Ok(Exit::Success)
}

/// Indices made before the investigation fields answer `--resource`, the presets on them and `--count-by
/// principal` with nothing: say which, and what upgrades them.
async fn warn_old_indices(client: &Client, expr: &str, out: &Output) -> anyhow::Result<()> {
    let r = client
        .json(Method::GET, &format!("{expr}/_mapping/field/@trailsetup.resources?ignore_unavailable=true&allow_no_indices=true"), None)
        .await?;
    check_auth(&r, client.auth(), "GET _mapping")?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let old: Vec<&String> = v
        .as_object()
        .map(|m| m.iter().filter(|(_, x)| x["mappings"].as_object().is_none_or(|o| o.is_empty())).map(|(k, _)| k).collect())
        .unwrap_or_default();
    if !old.is_empty() {
        out.note(format!(
            "warning: {} {} ({}{}) made by an older trailsetup lack the investigation fields: their events cannot match \
             --resource, the presets that read request/response values, or count by principal. Run `trailsetup migrate` \
             once to upgrade them in place.",
            old.len(),
            if old.len() == 1 { "index was" } else { "indices were" },
            old.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            if old.len() > 3 { ", …" } else { "" }
        ));
    }
    Ok(())
}

/// POST a search, failing with OpenSearch's reason.
async fn search(client: &Client, path: &str, body: &Value) -> anyhow::Result<Value> {
    let r = client.json(Method::POST, path, Some(body)).await?;
    check_auth(&r, client.auth(), "a search")?;
    if !r.status.is_success() {
        bail!("OpenSearch refused the search ({}): {}", r.status, r.text());
    }
    serde_json::from_slice(&r.body).context("OpenSearch's search answer is not JSON")
}

async fn counts(client: &Client, expr: &str, q: Value, by: CountBy, limit: usize, mut sink: Sink<'_>) -> anyhow::Result<()> {
    let size = limit.min(65_536);
    let agg = match by {
        CountBy::Day => json!({"date_histogram": {"field": "@timestamp", "calendar_interval": "1d", "min_doc_count": 1,
                                                    "format": "yyyy-MM-dd", "order": {"_key": "desc"}}}),
        other => json!({"terms": {"field": other.field(), "size": size}}),
    };
    let body = json!({"size": 0, "track_total_hits": true, "query": q, "aggs": {"by": agg}});
    let v = search(client, &format!("{expr}/_search?ignore_unavailable=true&allow_no_indices=true"), &body).await?;
    let total = v["hits"]["total"]["value"].as_u64().unwrap_or(0);
    let buckets = v["aggregations"]["by"]["buckets"].as_array().cloned().unwrap_or_default();
    let rows: Vec<(String, u64)> = buckets
        .iter()
        .take(size)
        .map(|b| (b.get("key_as_string").or(b.get("key")).map(|k| k.as_str().map(str::to_owned).unwrap_or_else(|| k.to_string())).unwrap_or_default(), b["doc_count"].as_u64().unwrap_or(0)))
        .collect();
    sink.counts(total, &rows)
}

async fn events(client: &Client, expr: &str, q: Value, limit: usize, mut sink: Sink<'_>) -> anyhow::Result<()> {
    let params = "ignore_unavailable=true&allow_no_indices=true";
    if limit <= PAGE {
        let body = json!({"size": limit, "track_total_hits": true, "query": q,
                          "sort": [{"@timestamp": {"order": "desc", "missing": "_last", "unmapped_type": "date"}}]});
        let v = search(client, &format!("{expr}/_search?{params}"), &body).await?;
        let total = v["hits"]["total"]["value"].as_u64().unwrap_or(0);
        sink.begin(total)?;
        for h in v["hits"]["hits"].as_array().into_iter().flatten() {
            sink.event(h)?;
        }
        return sink.end();
    }
    // everything: a point in time over the selected indices, pages in order, `search_after` the last sort values
    let r = client.json(Method::POST, &format!("{expr}/_search/point_in_time?keep_alive=2m&{params}"), None).await?;
    check_auth(&r, client.auth(), "creating a point in time")?;
    if !r.status.is_success() {
        bail!("OpenSearch refused a point in time ({}): {}", r.status, r.text());
    }
    let pit: Value = serde_json::from_slice(&r.body)?;
    let mut pit_id = pit["pit_id"].as_str().or(pit["id"].as_str()).ok_or_else(|| anyhow!("no pit_id in {pit}"))?.to_string();
    let result = async {
        let mut after: Option<Value> = None;
        let mut sent = 0usize;
        let mut first = true;
        let mut tiebreak = json!({"_shard_doc": "desc"});
        loop {
            let mut body = json!({"size": PAGE, "track_total_hits": first, "query": q, "pit": {"id": pit_id, "keep_alive": "2m"},
                                  "sort": [{"@timestamp": {"order": "desc", "missing": "_last", "unmapped_type": "date"}}, tiebreak]});
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let v = match search(client, "_search", &body).await {
                // an OpenSearch without `_shard_doc`: the event id breaks ties instead
                Err(e) if first && format!("{e:#}").contains("_shard_doc") => {
                    tiebreak = json!({"eventID": {"order": "desc", "missing": "_last"}});
                    continue;
                }
                other => other?,
            };
            if let Some(id) = v["pit_id"].as_str() {
                pit_id = id.to_string();
            }
            if first {
                sink.begin(v["hits"]["total"]["value"].as_u64().unwrap_or(0))?;
                first = false;
            }
            let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
            for h in &hits {
                sink.event(h)?;
                sent += 1;
            }
            if hits.len() < PAGE || sent >= limit {
                break;
            }
            after = hits.last().map(|h| h["sort"].clone());
        }
        sink.end()
    }
    .await;
    let _ = client.json(Method::DELETE, "_search/point_in_time", Some(&json!({"pit_id": [pit_id]}))).await;
    result
}

/// One event's columns, from a hit.
pub fn columns(hit: &Value) -> Value {
    let s = &hit["_source"];
    let text = |k: &str| s.get(k).and_then(|v| v.as_str()).map(|x| json!(x)).unwrap_or(Value::Null);
    let resources: Vec<Value> = s["resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.get("ARN").or(r.get("arn")).and_then(Value::as_str).map(|x| json!(x))).collect())
        .unwrap_or_default();
    json!({
        "id": hit["_id"],
        "index": hit["_index"],
        "eventID": text("eventID"),
        "eventTime": text("eventTime"),
        "eventName": text("eventName"),
        "eventSource": text("eventSource"),
        "principal": query::principal_of(&s["userIdentity"]),
        "accessKeyId": s["userIdentity"]["accessKeyId"].as_str(),
        "sourceIPAddress": text("sourceIPAddress"),
        "awsRegion": text("awsRegion"),
        "recipientAccountId": text("recipientAccountId"),
        "errorCode": text("errorCode"),
        "resources": resources,
    })
}

/// Where results go, by `--output`: a table, one JSON document (streamed), JSON lines or CSV.
struct Sink<'a> {
    format: OutputFormat,
    counting: bool,
    out: &'a Output,
    total: u64,
    shown: u64,
    rows: Vec<Value>,
    stdout: std::io::StdoutLock<'static>,
}

impl<'a> Sink<'a> {
    fn new(format: OutputFormat, count_by: Option<CountBy>, out: &'a Output) -> Sink<'a> {
        Sink { format, counting: count_by.is_some(), out, total: 0, shown: 0, rows: Vec::new(), stdout: std::io::stdout().lock() }
    }

    fn finish_empty(mut self) -> anyhow::Result<()> {
        if self.counting {
            return self.counts(0, &[]);
        }
        self.begin(0)?;
        self.end()
    }

    /// One CSV record (RFC 4180 quoting by the csv crate) on stdout.
    fn csv_row<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(&mut self, row: I) -> anyhow::Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(row)?;
        let bytes = w.into_inner().map_err(|e| anyhow!("{e}"))?;
        self.stdout.write_all(&bytes)?;
        Ok(())
    }

    fn begin(&mut self, total: u64) -> anyhow::Result<()> {
        self.total = total;
        match self.format {
            OutputFormat::Json => write!(self.stdout, "{{\"search\":{{\"total\":{total},\"events\":[")?,
            OutputFormat::Csv => self.csv_row(COLUMNS)?,
            _ => {}
        }
        Ok(())
    }

    fn event(&mut self, hit: &Value) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => {
                if self.shown > 0 {
                    self.stdout.write_all(b",")?;
                }
                serde_json::to_writer(&mut self.stdout, &columns(hit))?;
            }
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.stdout, &hit["_source"])?;
                self.stdout.write_all(b"\n")?;
            }
            OutputFormat::Csv => {
                let c = columns(hit);
                let row: Vec<String> = COLUMNS
                    .iter()
                    .map(|k| match &c[*k] {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
                        other => other.to_string(),
                    })
                    .collect();
                self.csv_row(&row)?;
            }
            OutputFormat::Human => self.rows.push(columns(hit)),
        }
        self.shown += 1;
        Ok(())
    }

    fn end(mut self) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => writeln!(self.stdout, "]}}}}")?,
            OutputFormat::Human => {
                if self.rows.is_empty() {
                    writeln!(self.stdout, "no events")?;
                } else {
                    let table = table(&self.rows, width());
                    self.stdout.write_all(table.as_bytes())?;
                    let more = if self.total > self.shown { " (--all for every one, or --limit N)" } else { "" };
                    drop(self.stdout);
                    self.out.note(format!("{} of {} events, newest first{more}", self.shown, crate::output::thousands(self.total)));
                    return Ok(());
                }
            }
            _ => {}
        }
        self.stdout.flush()?;
        Ok(())
    }

    fn counts(&mut self, total: u64, rows: &[(String, u64)]) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => {
                let counts: Vec<Value> = rows.iter().map(|(k, c)| json!({"key": k, "count": c})).collect();
                serde_json::to_writer_pretty(&mut self.stdout, &json!({"search": {"total": total, "counts": counts}}))?;
                writeln!(self.stdout)?;
            }
            OutputFormat::Jsonl => {
                for (k, c) in rows {
                    serde_json::to_writer(&mut self.stdout, &json!({"key": k, "count": c}))?;
                    writeln!(self.stdout)?;
                }
            }
            OutputFormat::Csv => {
                self.csv_row(["key", "count"])?;
                for (k, c) in rows {
                    self.csv_row([k.clone(), c.to_string()])?;
                }
            }
            OutputFormat::Human => {
                if rows.is_empty() {
                    writeln!(self.stdout, "no events")?;
                } else {
                    let kw = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0).min(width().saturating_sub(14).max(20));
                    for (k, c) in rows {
                        writeln!(self.stdout, "{:>12}  {}", crate::output::thousands(*c), cut(if k.is_empty() { "(none)" } else { k }, kw))?;
                    }
                    let listed: u64 = rows.iter().map(|r| r.1).sum();
                    self.out.note(format!("{} events in all{}", crate::output::thousands(total), if listed < total { "; the top values shown" } else { "" }));
                }
            }
        }
        Ok(())
    }
}

/// The terminal's width; none (no cut) when stdout is not a terminal.
fn width() -> usize {
    let term = console::Term::stdout();
    if term.is_term() {
        term.size_checked().map(|(_, w)| w as usize).unwrap_or(120)
    } else {
        usize::MAX / 4
    }
}

fn cut(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The human table: TIME, EVENT, PRINCIPAL, SOURCE IP, REGION, ERROR; the principal column takes what the
/// terminal has left, every column is cut to fit.
pub fn table(rows: &[Value], width: usize) -> String {
    let heads = ["TIME (UTC)", "EVENT", "PRINCIPAL", "SOURCE IP", "REGION", "ERROR"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let time = s("eventTime").replace('T', " ").trim_end_matches('Z').chars().take(19).collect();
            [time, s("eventName"), s("principal"), s("sourceIPAddress"), s("awsRegion"), s("errorCode")]
        })
        .collect();
    let caps = [19usize, 32, usize::MAX, 24, 14, 24];
    let mut w: Vec<usize> = (0..6)
        .map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0).max(heads[i].len()).min(caps[i]))
        .collect();
    let fixed: usize = w.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, x)| x).sum::<usize>() + 2 * 5;
    w[2] = w[2].min(width.saturating_sub(fixed).max(8));
    let mut o = String::new();
    let line = |o: &mut String, c: [&str; 6]| {
        let mut l = String::new();
        for i in 0..6 {
            let x = cut(c[i], w[i]);
            if i == 5 {
                l.push_str(&x);
            } else {
                l.push_str(&format!("{x:<0$}  ", w[i]));
            }
        }
        o.push_str(l.trim_end());
        o.push('\n');
    };
    line(&mut o, heads);
    for c in &cells {
        line(&mut o, [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fits_the_width() {
        let hit = json!({"_id": "e1", "_source": {"eventTime": "2024-03-01T12:00:01Z", "eventName": "TerminateInstances",
            "userIdentity": {"arn": "arn:aws:sts::111122223333:assumed-role/VeryLongRoleNameForOperations/some.person@example.com"},
            "sourceIPAddress": "203.0.113.7", "awsRegion": "eu-west-1", "resources": [{"ARN": "arn:aws:ec2:eu-west-1:1:instance/i-0abc"}]}});
        let c = columns(&hit);
        assert_eq!(c["principal"], "arn:aws:sts::111122223333:assumed-role/VeryLongRoleNameForOperations/some.person@example.com");
        assert_eq!(c["resources"][0], "arn:aws:ec2:eu-west-1:1:instance/i-0abc");
        for width in [80, 100] {
            for l in table(std::slice::from_ref(&c), width).lines() {
                assert!(l.chars().count() <= width, "{l}");
            }
        }
        let t = table(std::slice::from_ref(&c), 80);
        assert!(t.contains("2024-03-01 12:00:01") && t.contains("TerminateInstances") && t.contains('…'));
        // wide terminal: nothing cut
        assert!(table(&[c], 400).contains("some.person@example.com"));
    }
}
