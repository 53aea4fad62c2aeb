//! `trailsetup migrate`: indices made before the investigation fields (`@trailsetup`, see `doc`) get them, in
//! place. An index's `_source` exclusion cannot be changed once it exists (OpenSearch: "Cannot update parameter
//! [excludes]"), so each old index X is copied through the document builder into `migrate.X` (current mapping, no
//! alias: searches do not see it twice), counted, deleted, made again from the current template, copied back and
//! counted, and `migrate.X` is deleted. Every document keeps its `_id` and its stored `_source`. At every moment
//! the documents are whole in X or in `migrate.X`: a run that stops half-way is finished by the next one.

use anyhow::{anyhow, bail, Context as _};
use reqwest::Method;
use serde_json::{json, Value};

use super::doc::{self, DocRules};
use crate::cli::MigrateArgs;
use crate::error::Exit;
use crate::opensearch::{client::check_auth, layout, template, Client};
use crate::output::Output;
use crate::settings::Common;

const TEMP: &str = "migrate.";
const PAGE: usize = 1000;

pub async fn run(common: &Common, a: &MigrateArgs, out: &Output) -> anyhow::Result<Exit> {
    let (client, url, prefix, state) = crate::opensearch::for_stack(common, &a.endpoint).await?;
    client.ping().await?;
    let granularity = match state.as_ref().and_then(|s| s.index_granularity) {
        Some(g) => g,
        None => template::recorded_granularity(&client, &prefix).await?.unwrap_or_default(),
    };
    // the current template first: the indices made again below take their mapping from it
    template::install(&client, &prefix, granularity).await?;
    let rules = DocRules { prefix: prefix.clone(), redact: true, granularity };

    // a run that stopped half-way: finish each `migrate.X` left behind
    let leftovers = layout::matching(&client, &format!("{TEMP}{prefix}-*")).await?;
    let mut done = Vec::new();
    for t in &leftovers {
        let x = &t[TEMP.len()..];
        out.note(format!("finishing the interrupted migration of {x}"));
        let t_count = count(&client, t).await?;
        let exists = layout::matching(&client, x).await?.iter().any(|i| i == x);
        if exists && !is_old(&client, x).await? && count(&client, x).await? >= t_count {
            delete(&client, t).await?; // copied back already
        } else {
            if exists {
                delete(&client, x).await?;
            }
            create(&client, x, None).await?;
            copy(&client, &rules, t, x).await?;
            check_counts(&client, t, x).await?;
            delete(&client, t).await?;
        }
        done.push(x.to_string());
    }

    let listed = layout::indices(&client, &prefix).await?;
    let mut old = Vec::new();
    for i in &listed {
        if !done.contains(i) && is_old(&client, i).await? {
            old.push(i.clone());
        }
    }
    if old.is_empty() && done.is_empty() {
        out.note(format!("{} indices {prefix}-* at {}: all current, nothing to migrate", listed.len(), crate::opensearch::client::redact_url(&url)));
    }
    let body = template::body(&prefix, granularity)?;
    let mut docs = 0u64;
    for (n, x) in old.iter().enumerate() {
        let t = format!("{TEMP}{x}");
        out.note(format!("[{}/{}] {x}", n + 1, old.len()));
        create(&client, &t, Some(&body["template"])).await?;
        copy(&client, &rules, x, &t).await?;
        let c = check_counts(&client, x, &t).await?;
        delete(&client, x).await?;
        create(&client, x, None).await?;
        copy(&client, &rules, &t, x).await?;
        check_counts(&client, &t, x).await?;
        delete(&client, &t).await?;
        docs += c;
        done.push(x.clone());
    }
    if common.json() {
        out.json_doc(&json!({"migrate": {"indices": done, "documents": docs}}));
    } else if !done.is_empty() {
        out.line(format!("migrated {} indices ({} documents): --resource and every preset now see their events", done.len(), crate::output::thousands(docs)));
    }
    Ok(Exit::Success)
}

async fn ok(client: &Client, method: Method, path: &str, body: Option<&Value>, what: &str) -> anyhow::Result<Value> {
    let r = client.json(method, path, body).await?;
    check_auth(&r, client.auth(), what)?;
    if !r.status.is_success() {
        bail!("{what} failed: HTTP {}: {}", r.status, r.text());
    }
    Ok(serde_json::from_slice(&r.body).unwrap_or_default())
}

/// Made before the investigation fields: its mapping has no `@trailsetup.resources`.
async fn is_old(client: &Client, index: &str) -> anyhow::Result<bool> {
    let v = ok(client, Method::GET, &format!("{index}/_mapping/field/@trailsetup.resources"), None, "reading a mapping").await?;
    Ok(v[index]["mappings"].as_object().is_none_or(|m| m.is_empty()))
}

async fn count(client: &Client, index: &str) -> anyhow::Result<u64> {
    ok(client, Method::POST, &format!("{index}/_refresh"), None, "refreshing an index").await?;
    let v = ok(client, Method::GET, &format!("{index}/_count"), None, "counting documents").await?;
    v["count"].as_u64().ok_or_else(|| anyhow!("no count for {index}: {v}"))
}

async fn check_counts(client: &Client, from: &str, to: &str) -> anyhow::Result<u64> {
    let (a, b) = (count(client, from).await?, count(client, to).await?);
    if a != b {
        bail!("migrating {from} → {to}: {a} documents read, {b} written; nothing was deleted, run `trailsetup migrate` again");
    }
    Ok(a)
}

async fn delete(client: &Client, index: &str) -> anyhow::Result<()> {
    ok(client, Method::DELETE, index, None, "deleting an index").await.map(|_| ())
}

/// Create an index: from the template (`settings` None), or with these settings and mappings and no alias.
async fn create(client: &Client, index: &str, settings: Option<&Value>) -> anyhow::Result<()> {
    let body = settings.map(|t| json!({"settings": t["settings"], "mappings": t["mappings"]})).unwrap_or_else(|| json!({}));
    ok(client, Method::PUT, index, Some(&body), "creating an index").await.map(|_| ())
}

/// Every document of `from` into `to`, rebuilt by the document builder from its stored `_source`, same `_id`.
async fn copy(client: &Client, rules: &DocRules, from: &str, to: &str) -> anyhow::Result<()> {
    let mut v = ok(client, Method::POST, &format!("{from}/_search?scroll=5m"), Some(&json!({"size": PAGE, "sort": ["_doc"]})), "reading documents").await?;
    loop {
        let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        let mut bulk = Vec::with_capacity(hits.len() * 1024);
        for h in &hits {
            let id = h["_id"].as_str().ok_or_else(|| anyhow!("a hit without _id in {from}"))?;
            let text = serde_json::to_string(&h["_source"])?;
            let mut line = Vec::new();
            doc::append_bulk(rules, &text, &mut line).with_context(|| format!("rebuilding document {id} of {from}"))?;
            let body_start = line.iter().position(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
            bulk.extend_from_slice(serde_json::to_string(&json!({"index": {"_index": to, "_id": id}}))?.as_bytes());
            bulk.push(b'\n');
            bulk.extend_from_slice(&line[body_start..]);
        }
        let r = client.send(Method::POST, "_bulk", bulk.into(), "application/x-ndjson", false).await?;
        check_auth(&r, client.auth(), "_bulk")?;
        let res: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if !r.status.is_success() || res["errors"].as_bool() != Some(false) {
            let first = res["items"].as_array().and_then(|a| a.iter().find_map(|i| i["index"].get("error").cloned()));
            bail!("copying {from} → {to} failed ({}): {}; nothing was deleted, run `trailsetup migrate` again", r.status, first.map(|e| e.to_string()).unwrap_or_else(|| r.text()));
        }
        let scroll = v["_scroll_id"].as_str().ok_or_else(|| anyhow!("no scroll id reading {from}"))?.to_string();
        v = ok(client, Method::POST, "_search/scroll", Some(&json!({"scroll": "5m", "scroll_id": scroll})), "reading documents").await?;
    }
    if let Some(id) = v["_scroll_id"].as_str() {
        let _ = client.json(Method::DELETE, "_search/scroll", Some(&json!({"scroll_id": id}))).await;
    }
    Ok(())
}
