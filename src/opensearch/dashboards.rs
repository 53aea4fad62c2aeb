//! OpenSearch Dashboards: the saved objects trailsetup installs (index pattern, one saved search per `search`
//! preset, the overview visualizations and two dashboards), built from `templates/dashboards/objects.json` and the
//! presets file, and the Dashboards API that installs them (`POST api/saved_objects/_import`, compared first with
//! `POST api/saved_objects/_bulk_get` so that a second run changes nothing). Used by `trailsetup dashboards` and by
//! `init` (the plan change `opensearch-dashboards-objects`).
//!
//! The format is the one OpenSearch Dashboards 2.x and 3.x export and import (forked from Kibana 7.10):
//! `visState`, `kibanaSavedObjectMeta.searchSourceJSON` with `indexRefName` and `references`, `panelsJSON` with
//! `panelRefName`, and each type's newest `migrationVersion` so that no import-time migration rewrites them.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::Client;
use super::query::{presets, Preset};

/// The declared objects, as shipped (data, not code).
pub const OBJECTS: &str = include_str!("../../templates/dashboards/objects.json");

/// The newest migration of each type in OpenSearch Dashboards (`*_migrations.ts` of the index-pattern, search,
/// visualization and dashboard types): objects that carry it are imported as they are.
const MIGRATION_VERSION: [(&str, &str); 4] =
    [("index-pattern", "7.6.0"), ("search", "7.9.3"), ("visualization", "7.10.0"), ("dashboard", "7.9.3")];
/// The panel version Dashboards writes (>= 7.3: no client-side panel migration on load).
const PANEL_VERSION: &str = "7.10.2";
/// The reference name of a search source's index pattern.
const INDEX_REF: &str = "kibanaSavedObjectMeta.searchSourceJSON.index";
/// Dashboards' grid is 48 columns wide.
const GRID_COLUMNS: u32 = 48;

#[derive(Deserialize)]
struct Spec {
    saved_search: SearchSpec,
    visualizations: Vec<VisSpec>,
    dashboards: Vec<DashSpec>,
}

#[derive(Deserialize)]
struct SearchSpec {
    columns: Vec<String>,
    sort: Value,
}

#[derive(Deserialize)]
struct VisSpec {
    name: String,
    kind: String,
    title: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    size: Option<u32>,
}

#[derive(Deserialize)]
struct DashSpec {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    time_from: String,
    panels: Vec<PanelSpec>,
}

#[derive(Deserialize)]
struct PanelSpec {
    #[serde(default)]
    vis: Option<String>,
    /// `presets`: one panel per preset's saved search
    #[serde(default)]
    searches: Option<String>,
    w: u32,
    h: u32,
}

/// One saved object, as the import API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedObject {
    pub kind: &'static str,
    pub id: String,
    pub attributes: Value,
    pub references: Vec<Value>,
}

impl SavedObject {
    pub fn title(&self) -> &str {
        self.attributes["title"].as_str().unwrap_or_default()
    }

    /// The object as one line of an export file.
    pub fn to_json(&self) -> Value {
        let mv = MIGRATION_VERSION.iter().find(|(k, _)| *k == self.kind).map(|(_, v)| *v).unwrap_or("7.10.0");
        json!({
            "type": self.kind,
            "id": self.id,
            "attributes": self.attributes,
            "references": self.references,
            "migrationVersion": {self.kind: mv},
        })
    }
}

/// The index pattern's id: `trailsetup-<prefix>`.
pub fn index_pattern_id(prefix: &str) -> String {
    format!("trailsetup-{prefix}")
}

/// Every other object's id: `trailsetup-<prefix>-<kind>-<name>`.
pub fn object_id(prefix: &str, kind: &str, name: &str) -> String {
    format!("trailsetup-{prefix}-{kind}-{name}")
}

/// The dashboard the proxy opens first.
pub fn overview_id(prefix: &str) -> String {
    object_id(prefix, "dashboard", "overview")
}

/// A saved search's title: `CIS CloudWatch.N: <title>` for a Security Hub control, else the preset's title.
pub fn search_title(p: &Preset) -> String {
    match &p.control {
        Some(c) => format!("CIS {c}: {}", p.title),
        None => p.title.clone(),
    }
}

fn spec() -> Spec {
    serde_json::from_str(OBJECTS).expect("templates/dashboards/objects.json is checked by a unit test")
}

fn search_source(query: &str, with_index: bool) -> String {
    let mut v = json!({"query": {"query": query, "language": "lucene"}, "filter": []});
    if with_index {
        v["indexRefName"] = json!(INDEX_REF);
    }
    v.to_string()
}

fn index_ref(prefix: &str) -> Value {
    json!({"name": INDEX_REF, "type": "index-pattern", "id": index_pattern_id(prefix)})
}

/// A title for this prefix: the plain title for the default prefix, else with the prefix after it (two stacks in
/// one Dashboards stay apart).
fn titled(title: &str, prefix: &str) -> String {
    if prefix == super::DEFAULT_PREFIX {
        title.to_string()
    } else {
        format!("{title} · {prefix}")
    }
}

fn count_agg() -> Value {
    json!({"id": "1", "enabled": true, "type": "count", "schema": "metric", "params": {}})
}

fn terms_agg(id: &str, schema: &str, field: &str, size: u32, other: bool) -> Value {
    json!({"id": id, "enabled": true, "type": "terms", "schema": schema, "params": {
        "field": field, "orderBy": "1", "order": "desc", "size": size,
        "otherBucket": other, "otherBucketLabel": "Other", "missingBucket": false, "missingBucketLabel": "Missing"}})
}

fn table_params() -> Value {
    json!({"perPage": 10, "showPartialRows": false, "showMetricsAtAllLevels": false, "sort": {"columnIndex": null, "direction": null},
           "showTotal": false, "totalFunc": "sum", "percentageCol": ""})
}

fn histogram_params() -> Value {
    json!({
        "type": "histogram",
        "grid": {"categoryLines": false},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": true, "style": {},
                          "scale": {"type": "linear"}, "labels": {"show": true, "filter": true, "truncate": 100}, "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": true, "style": {},
                       "scale": {"type": "linear", "mode": "normal"}, "labels": {"show": true, "rotate": 0, "filter": false, "truncate": 100},
                       "title": {"text": "Count"}}],
        "seriesParams": [{"show": true, "type": "histogram", "mode": "stacked", "data": {"label": "Count", "id": "1"},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": true, "lineWidth": 2, "showCircles": true}],
        "addTooltip": true, "addLegend": true, "legendPosition": "right", "times": [], "addTimeMarker": false,
        "labels": {"show": false},
        "thresholdLine": {"show": false, "value": 10, "width": 1, "style": "full", "color": "#E7664C"}
    })
}

fn visualization(prefix: &str, v: &VisSpec, all: &[Preset]) -> SavedObject {
    let title = titled(&v.title, prefix);
    let field = v.field.as_deref().unwrap_or("eventName");
    let size = v.size.unwrap_or(20);
    let vis_state = match v.kind.as_str() {
        "over_time" => json!({"title": title, "type": "histogram", "params": histogram_params(), "aggs": [
            count_agg(),
            {"id": "2", "enabled": true, "type": "date_histogram", "schema": "segment", "params": {
                "field": "@timestamp", "useNormalizedOpenSearchInterval": true, "interval": "auto", "drop_partials": false,
                "min_doc_count": 1, "extended_bounds": {}}},
            terms_agg("3", "group", field, size, true),
        ]}),
        "presets" => {
            let filters: Vec<Value> = all
                .iter()
                .map(|p| json!({"input": {"query": p.lucene, "language": "lucene"}, "label": search_title(p)}))
                .collect();
            json!({"title": title, "type": "table", "params": table_params(), "aggs": [
                count_agg(),
                {"id": "2", "enabled": true, "type": "filters", "schema": "bucket", "params": {"filters": filters}},
            ]})
        }
        // "top"
        _ => json!({"title": title, "type": "table", "params": table_params(), "aggs": [
            count_agg(),
            terms_agg("2", "bucket", field, size, false),
        ]}),
    };
    SavedObject {
        kind: "visualization",
        id: object_id(prefix, "vis", &v.name),
        attributes: json!({
            "title": title,
            "visState": vis_state.to_string(),
            "uiStateJSON": "{}",
            "description": "",
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source("", true)},
        }),
        references: vec![index_ref(prefix)],
    }
}

fn saved_search(prefix: &str, s: &SearchSpec, p: &Preset) -> SavedObject {
    let what = match (&p.control, &p.pattern, &p.description) {
        (Some(c), Some(pat), _) => format!("AWS Security Hub {c} (CIS AWS Foundations Benchmark) metric filter pattern: {pat}"),
        (_, _, Some(d)) => d.clone(),
        _ => p.title.clone(),
    };
    SavedObject {
        kind: "search",
        id: object_id(prefix, "search", &p.name),
        attributes: json!({
            "title": titled(&search_title(p), prefix),
            "description": format!("{what}. From the terminal: trailsetup search --preset {}", p.name),
            "hits": 0,
            "columns": s.columns,
            "sort": s.sort,
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source(&p.lucene, true)},
        }),
        references: vec![index_ref(prefix)],
    }
}

fn dashboard(prefix: &str, d: &DashSpec, all: &[Preset]) -> SavedObject {
    // (reference type, id, w, h) of each panel, in order
    let mut items: Vec<(&str, String, u32, u32)> = Vec::new();
    for p in &d.panels {
        if let Some(v) = &p.vis {
            items.push(("visualization", object_id(prefix, "vis", v), p.w, p.h));
        }
        if p.searches.as_deref() == Some("presets") {
            items.extend(all.iter().map(|s| ("search", object_id(prefix, "search", &s.name), p.w, p.h)));
        }
    }
    let (mut x, mut y, mut row) = (0u32, 0u32, 0u32);
    let mut panels = Vec::new();
    let mut references = Vec::new();
    for (i, (kind, id, w, h)) in items.into_iter().enumerate() {
        let w = w.clamp(1, GRID_COLUMNS);
        if x + w > GRID_COLUMNS {
            (x, y, row) = (0, y + row, 0);
        }
        let n = (i + 1).to_string();
        panels.push(json!({"version": PANEL_VERSION, "gridData": {"x": x, "y": y, "w": w, "h": h, "i": n}, "panelIndex": n,
                           "embeddableConfig": {}, "panelRefName": format!("panel_{i}")}));
        references.push(json!({"name": format!("panel_{i}"), "type": kind, "id": id}));
        x += w;
        row = row.max(h);
    }
    SavedObject {
        kind: "dashboard",
        id: object_id(prefix, "dashboard", &d.name),
        attributes: json!({
            "title": titled(&d.title, prefix),
            "description": d.description,
            "hits": 0,
            "panelsJSON": Value::Array(panels).to_string(),
            "optionsJSON": json!({"hidePanelTitles": false, "useMargins": true}).to_string(),
            "version": 1,
            "timeRestore": true,
            "timeFrom": d.time_from,
            "timeTo": "now",
            "refreshInterval": {"pause": true, "value": 0},
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source("", false)},
        }),
        references,
    }
}

/// Every object for `prefix`, referenced objects first (the index pattern, saved searches, visualizations,
/// dashboards).
pub fn objects(prefix: &str) -> Vec<SavedObject> {
    let s = spec();
    let all = presets();
    let mut out = vec![SavedObject {
        kind: "index-pattern",
        id: index_pattern_id(prefix),
        attributes: json!({"title": format!("{prefix}-*"), "timeFieldName": "@timestamp"}),
        references: Vec::new(),
    }];
    out.extend(all.iter().map(|p| saved_search(prefix, &s.saved_search, p)));
    out.extend(s.visualizations.iter().map(|v| visualization(prefix, v, &all)));
    out.extend(s.dashboards.iter().map(|d| dashboard(prefix, d, &all)));
    out
}

/// The objects as an export file: one JSON object per line.
pub fn ndjson(objs: &[SavedObject]) -> String {
    let mut s = String::new();
    for o in objs {
        s.push_str(&o.to_json().to_string());
        s.push('\n');
    }
    s
}

// --- the Dashboards API ---

/// Why the objects could not be read or installed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardsError {
    #[error("OpenSearch Dashboards at {url} does not answer from this machine ({reason})")]
    Unreachable { url: String, reason: String },
    #[error(
        "OpenSearch Dashboards was not found at {url} ({detail}); for a self-managed Dashboards pass --dashboards-url"
    )]
    NotFound { url: String, detail: String },
    #[error(
        "OpenSearch Dashboards at {url} refused the caller ({status}: {detail}): the caller must be mapped in the \
         domain's security plugin (fine-grained access control) to a role that may use Dashboards and write saved \
         objects in the global tenant, e.g. all_access, or kibana_user plus the IAM policy's es:ESHttp* on the domain"
    )]
    Refused { url: String, status: StatusCode, detail: String },
    #[error("OpenSearch Dashboards at {url}: {what} answered {status}: {detail}")]
    Failed { url: String, what: String, status: StatusCode, detail: String },
}

/// What is installed now, per object: the same as ours, different, or missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Installed {
    pub same: Vec<String>,
    pub differs: Vec<String>,
    pub missing: Vec<String>,
}

impl Installed {
    pub fn up_to_date(&self) -> bool {
        self.differs.is_empty() && self.missing.is_empty()
    }
}

/// OpenSearch Dashboards at one URL (`<endpoint>/_dashboards` on Amazon OpenSearch Service), reached with the
/// endpoint's own auth; every request carries `osd-xsrf: true`, the global tenant (`securitytenant: global`) and
/// the tenant cookie a first signed GET obtained (fine-grained access control's multi-tenancy).
pub struct Dashboards {
    client: Client,
    url: String,
    cookie: tokio::sync::OnceCell<Option<String>>,
}

/// The Dashboards of an endpoint when none is given: `<endpoint>/_dashboards`.
pub fn default_url(endpoint: &str) -> String {
    format!("{}/_dashboards", endpoint.trim_end_matches('/'))
}

/// `name=value` of each `Set-Cookie` of a response.
pub fn set_cookies(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|nv| nv.split_once('='))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

impl Dashboards {
    pub fn new(endpoint: &Client, url: &str) -> anyhow::Result<Dashboards> {
        let client = endpoint.with_base(url)?;
        Ok(Dashboards { url: client.base_redacted().trim_end_matches('/').to_string(), client, cookie: Default::default() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, e: anyhow::Error) -> DashboardsError {
        DashboardsError::Unreachable { url: self.url.clone(), reason: format!("{e:#}") }
    }

    /// The tenant cookie: a signed `GET app/dashboards?security_tenant=global` (as aws-samples'
    /// siem-on-amazon-opensearch-service does before its import); none without the security plugin.
    async fn tenant_cookie(&self) -> Result<Option<String>, DashboardsError> {
        self.cookie
            .get_or_try_init(|| async {
                let mut h = http::HeaderMap::new();
                h.insert("securitytenant", http::HeaderValue::from_static("global"));
                let r = self
                    .client
                    .request_no_redirect(Method::GET, "app/dashboards?security_tenant=global", h, bytes::Bytes::new())
                    .await
                    .map_err(|e| self.unreachable(e))?;
                let c: Vec<String> = set_cookies(&r.headers).into_iter().map(|(n, v)| format!("{n}={v}")).collect();
                Ok(if c.is_empty() { None } else { Some(c.join("; ")) })
            })
            .await
            .cloned()
    }

    async fn call(&self, method: Method, path: &str, content_type: &str, body: bytes::Bytes) -> Result<super::client::FullResponse, DashboardsError> {
        let mut h = http::HeaderMap::new();
        h.insert("osd-xsrf", http::HeaderValue::from_static("true"));
        h.insert("securitytenant", http::HeaderValue::from_static("global"));
        if !content_type.is_empty() {
            if let Ok(v) = http::HeaderValue::from_str(content_type) {
                h.insert(http::header::CONTENT_TYPE, v);
            }
        }
        if let Some(c) = self.tenant_cookie().await? {
            if let Ok(v) = http::HeaderValue::from_str(&c) {
                h.insert(http::header::COOKIE, v);
            }
        }
        let r = self.client.request_no_redirect(method, path, h, body).await.map_err(|e| self.unreachable(e))?;
        let detail = r.text();
        match r.status {
            s if s.is_success() => Ok(r),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(DashboardsError::Refused { url: self.url.clone(), status: r.status, detail }),
            s if s.is_redirection() => Err(DashboardsError::Failed {
                url: self.url.clone(),
                what: path.split('?').next().unwrap_or(path).to_string(),
                status: s,
                detail: format!(
                    "a redirect to {} (a sign-in page?)",
                    r.headers.get(http::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?")
                ),
            }),
            // Dashboards answers its errors as {"statusCode": …, "error": …, "message": …}; anything else at this
            // path (OpenSearch's own "no handler", an index error) is not Dashboards
            s if !s.is_server_error() && serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v.get("statusCode").cloned()).is_none() => {
                tracing::debug!("{path} answered {s}: {detail}");
                Err(DashboardsError::NotFound { url: self.url.clone(), detail: format!("{} answered {s}", path.split('?').next().unwrap_or(path)) })
            }
            s => Err(DashboardsError::Failed {
                url: self.url.clone(),
                what: path.split('?').next().unwrap_or(path).to_string(),
                status: s,
                detail,
            }),
        }
    }

    /// Compare what is installed with `objs` (`POST api/saved_objects/_bulk_get`).
    pub async fn installed(&self, objs: &[SavedObject]) -> Result<Installed, DashboardsError> {
        let ask: Vec<Value> = objs.iter().map(|o| json!({"type": o.kind, "id": o.id})).collect();
        let r = self
            .call(Method::POST, "api/saved_objects/_bulk_get", "application/json", bytes::Bytes::from(Value::Array(ask).to_string()))
            .await?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let Some(found) = v["saved_objects"].as_array() else {
            return Err(DashboardsError::NotFound {
                url: self.url.clone(),
                detail: format!("api/saved_objects/_bulk_get answered without saved_objects: {}", r.text()),
            });
        };
        let mut out = Installed::default();
        for o in objs {
            let cur = found.iter().find(|c| c["id"] == o.id.as_str() && c["type"] == o.kind);
            match cur {
                None => out.missing.push(o.id.clone()),
                Some(c) if c.get("error").is_some() => out.missing.push(o.id.clone()),
                Some(c) if same(o, c) => out.same.push(o.id.clone()),
                Some(_) => out.differs.push(o.id.clone()),
            }
        }
        Ok(out)
    }

    /// `POST api/saved_objects/_import?overwrite=true`: a multipart body with one `file` part named `*.ndjson`.
    /// Returns how many objects it imported.
    pub async fn import(&self, objs: &[&SavedObject], file_name: &str) -> Result<usize, DashboardsError> {
        let owned: Vec<SavedObject> = objs.iter().map(|o| (*o).clone()).collect();
        let (content_type, body) = multipart(file_name, &ndjson(&owned));
        let r = self.call(Method::POST, "api/saved_objects/_import?overwrite=true", &content_type, body).await?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if v["success"] != true {
            let errors: Vec<String> = v["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| format!("{} {}: {}", e["type"].as_str().unwrap_or("?"), e["id"].as_str().unwrap_or("?"), e["error"]))
                .collect();
            return Err(DashboardsError::Failed {
                url: self.url.clone(),
                what: "api/saved_objects/_import".into(),
                status: r.status,
                detail: if errors.is_empty() { r.text() } else { errors.join("; ") },
            });
        }
        Ok(v["successCount"].as_u64().unwrap_or(objs.len() as u64) as usize)
    }

    /// `DELETE api/saved_objects/<type>/<id>` (with `osd-xsrf`, in the global tenant): `Ok(true)` when it was
    /// deleted, `Ok(false)` when Dashboards has no such object (its own 404, `{"statusCode": 404, …}`).
    pub async fn delete(&self, kind: &str, id: &str) -> Result<bool, DashboardsError> {
        let path = format!("api/saved_objects/{}/{}", path_segment(kind), path_segment(id));
        match self.call(Method::DELETE, &path, "", bytes::Bytes::new()).await {
            Ok(_) => Ok(true),
            Err(DashboardsError::Failed { status: StatusCode::NOT_FOUND, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Install what differs or is missing; nothing when everything is as ours (a second run changes nothing).
    pub async fn install(&self, objs: &[SavedObject], prefix: &str) -> Result<(Installed, usize), DashboardsError> {
        let found = self.installed(objs).await?;
        if found.up_to_date() {
            return Ok((found, 0));
        }
        let todo: Vec<&SavedObject> = objs.iter().filter(|o| found.missing.contains(&o.id) || found.differs.contains(&o.id)).collect();
        let n = self.import(&todo, &format!("trailsetup-{prefix}.ndjson")).await?;
        Ok((found, n))
    }
}

/// One path segment, percent-encoded but for RFC 3986's unreserved characters (our ids need none of it).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A `multipart/form-data` body with one part, `file`, named `file_name`, holding `content`.
pub fn multipart(file_name: &str, content: &str) -> (String, bytes::Bytes) {
    use sha2::Digest;
    // a boundary that cannot occur in the content: derived from it, and checked
    let mut boundary = format!("trailsetup-{}", &hex::encode(sha2::Sha256::digest(content.as_bytes()))[..32]);
    while content.contains(&boundary) {
        boundary.push('x');
    }
    let mut b = String::new();
    b.push_str(&format!("--{boundary}\r\n"));
    b.push_str(&format!("Content-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n"));
    b.push_str("Content-Type: application/ndjson\r\n\r\n");
    b.push_str(content);
    b.push_str(&format!("\r\n--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), bytes::Bytes::from(b))
}

/// A JSON-in-a-string attribute compared as JSON (Dashboards may write it back with other spacing or order).
fn same_value(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::String(a), Value::String(b)) if a != b => match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
            (Ok(x), Ok(y)) if x.is_object() || x.is_array() => x == y,
            _ => false,
        },
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w))),
        (a, b) => a == b,
    }
}

/// Is the installed object `have` ours? Every attribute we set is the same (attributes Dashboards adds, such as
/// the index pattern's `fields` it fetches on first use, do not count) and the references are the same set.
pub fn same(want: &SavedObject, have: &Value) -> bool {
    let attrs_same = want
        .attributes
        .as_object()
        .is_some_and(|a| a.iter().all(|(k, v)| have["attributes"].get(k).is_some_and(|h| same_value(v, h))));
    let refs = |v: &[Value]| -> BTreeSet<String> { v.iter().map(|r| format!("{}|{}|{}", r["name"], r["type"], r["id"])).collect() };
    let have_refs = have["references"].as_array().map(|a| refs(a)).unwrap_or_default();
    attrs_same && refs(&want.references) == have_refs
}

/// The objects for `prefix`, checked: every reference resolves to an object of the set.
pub fn checked_objects(prefix: &str) -> anyhow::Result<Vec<SavedObject>> {
    let objs = objects(prefix);
    let ids: BTreeSet<(&str, &str)> = objs.iter().map(|o| (o.kind, o.id.as_str())).collect();
    for o in &objs {
        for r in &o.references {
            let key = (r["type"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
            if !ids.contains(&key) {
                anyhow::bail!("saved object {} {} refers to {} {}, which is not in the set", o.kind, o.id, key.0, key.1);
            }
        }
    }
    Ok(objs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_complete_and_stable() {
        let objs = checked_objects("ct").unwrap();
        let n_presets = presets().len();
        assert_eq!(objs.iter().filter(|o| o.kind == "search").count(), n_presets);
        assert_eq!(objs[0].id, "trailsetup-ct");
        assert_eq!(objs[0].attributes["title"], "ct-*");
        assert_eq!(objs[0].attributes["timeFieldName"], "@timestamp");
        // stable ids, unique
        let ids: BTreeSet<&str> = objs.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids.len(), objs.len());
        assert!(ids.contains("trailsetup-ct-search-root-activity") && ids.contains("trailsetup-ct-dashboard-overview"));
        // the same input gives the same bytes
        assert_eq!(ndjson(&objs), ndjson(&objects("ct")));
        // saved searches: the preset's lucene, as lucene
        let root = objs.iter().find(|o| o.id == "trailsetup-ct-search-root-activity").unwrap();
        assert_eq!(root.attributes["title"], "CIS CloudWatch.1: Usage of the root user · ct");
        let ss: Value = serde_json::from_str(root.attributes["kibanaSavedObjectMeta"]["searchSourceJSON"].as_str().unwrap()).unwrap();
        assert_eq!(ss["query"]["language"], "lucene");
        assert_eq!(ss["query"]["query"], presets()[0].lucene);
        assert_eq!(ss["indexRefName"], INDEX_REF);
        assert_eq!(root.references, vec![index_ref("ct")]);
        // the default prefix keeps the plain titles
        let d = objects("cloudtrail");
        assert!(d.iter().any(|o| o.kind == "dashboard" && o.title() == "CloudTrail overview"));
        assert!(d.iter().any(|o| o.kind == "dashboard" && o.title() == "CIS monitoring"));
        // every panel has its reference, and panels stay inside the grid without overlapping
        for dash in objs.iter().filter(|o| o.kind == "dashboard") {
            let panels: Vec<Value> = serde_json::from_str(dash.attributes["panelsJSON"].as_str().unwrap()).unwrap();
            assert_eq!(panels.len(), dash.references.len());
            let mut cells = BTreeSet::new();
            for p in &panels {
                let g = &p["gridData"];
                let (x, y, w, h) = (g["x"].as_u64().unwrap(), g["y"].as_u64().unwrap(), g["w"].as_u64().unwrap(), g["h"].as_u64().unwrap());
                assert!(x + w <= 48);
                for cx in x..x + w {
                    for cy in y..y + h {
                        assert!(cells.insert((cx, cy)), "overlap in {}", dash.id);
                    }
                }
            }
        }
        // every visualization's visState names its own title and aggregations
        for v in objs.iter().filter(|o| o.kind == "visualization") {
            let vs: Value = serde_json::from_str(v.attributes["visState"].as_str().unwrap()).unwrap();
            assert_eq!(vs["title"], v.attributes["title"]);
            assert!(vs["aggs"].as_array().is_some_and(|a| a.len() >= 2));
        }
        // the migration versions that keep Dashboards from rewriting them on import
        assert_eq!(objs.last().unwrap().to_json()["migrationVersion"], json!({"dashboard": "7.9.3"}));
    }

    #[test]
    fn comparison_ignores_what_dashboards_adds() {
        let o = objects("ct").remove(0);
        let mut have = o.to_json();
        have["attributes"]["fields"] = json!("[{\"name\":\"@timestamp\"}]");
        have["updated_at"] = json!("2026-01-01T00:00:00Z");
        assert!(same(&o, &have));
        have["attributes"]["timeFieldName"] = json!("eventTime");
        assert!(!same(&o, &have));
        let v = objects("ct").into_iter().find(|o| o.kind == "visualization").unwrap();
        let mut have = v.to_json();
        // the same JSON with other spacing is the same
        let vs: Value = serde_json::from_str(v.attributes["visState"].as_str().unwrap()).unwrap();
        have["attributes"]["visState"] = json!(serde_json::to_string_pretty(&vs).unwrap());
        assert!(same(&v, &have));
        have["references"] = json!([]);
        assert!(!same(&v, &have));
    }

    #[test]
    fn multipart_has_one_ndjson_file_part() {
        let (ct, body) = multipart("x.ndjson", "{\"a\":1}\n");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.ndjson\"\r\n")));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert!(text.contains("\r\n\r\n{\"a\":1}\n\r\n"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("trailsetup-ct-vis-top_x.1~"), "trailsetup-ct-vis-top_x.1~");
        assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn set_cookie_pairs() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::SET_COOKIE, "security_authentication=abc; Path=/; HttpOnly".parse().unwrap());
        h.append(http::header::SET_COOKIE, "t=1".parse().unwrap());
        assert_eq!(set_cookies(&h), vec![("security_authentication".into(), "abc".into()), ("t".into(), "1".into())]);
    }
}
