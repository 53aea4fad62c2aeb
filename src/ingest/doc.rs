//! One CloudTrail record → one OpenSearch document: index, `_id` and body.
//!
//! The rules (the same in the Python forwarder, held together by `tests/vectors/`):
//! - time: `eventTime` parsed as `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH]` (no zone = UTC).
//!   Index `<prefix>-YYYY.MM.DD` of that instant in UTC; `@timestamp` = `YYYY-MM-DDTHH:MM:SS.mmmZ`.
//!   A record whose `eventTime` is missing or does not parse goes to `<prefix>-undated` with no `@timestamp`.
//! - a record that already has its own `@timestamp` keeps it; ours is not added.
//! - `_id` = `eventID` when it is a non-empty string, else `sha256:` + hex SHA-256 of the canonical JSON of the
//!   record as delivered (keys sorted by code point, no whitespace, numbers as parsed).
//! - `responseElements.credentials.sessionToken` is replaced by `"REDACTED"` unless redaction is off.
//! - index granularity `month` (a stack's choice, see `opensearch::layout`): `<prefix>-YYYY.MM` instead.
//! - `@trailsetup`, the investigation fields (indexed, never stored: the index template excludes it from
//!   `_source`), written right after `@timestamp` unless the record has its own `@trailsetup`, and left out when
//!   empty: `{"principal":P,"resources":[..],"fields":[..]}` (each key only when it has a value), from
//!   - `principal`: the first non-empty string of `userIdentity.arn`, `.sessionContext.sessionIssuer.arn`,
//!     `.userName`, `.principalId`, `.invokedBy`, `.accountId`;
//!   - `resources`: every string value of at most 256 characters at any depth of `requestParameters`,
//!     `responseElements`, `resources`, `additionalEventData`, `serviceEventDetails`, and for a value starting
//!     `arn:` also its part after the last `/` or `:` (when not empty); sorted by code point, unique;
//!   - `fields`: `path=value` for the scalar leaves of the same blobs whose path is one of `FIELD_PATHS` (the
//!     values the presets ask about that are not identifiers: MFA use, the console login's outcome, the CIDRs
//!     of security-group, network-ACL and route changes; strings of at most 256 characters, booleans, integers;
//!     path = keys joined by `.`, an array step written `[]`); sorted, unique;
//!   - with redaction on, `responseElements.credentials.sessionToken` is not taken;
//!   - a blob (or `userIdentity`) that serde_json cannot read as a value (number out of range, lone surrogate,
//!     nesting deeper than 127 levels) gives nothing; the duplicate of a key counts once, its last value.
//! - everything else is the record as delivered.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub const REDACTED: &str = "REDACTED";
pub const UNDATED: &str = "undated";

/// The few fields a document needs, borrowed from the record text.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "eventID", default, borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(rename = "eventTime", default, borrow)]
    event_time: Option<&'a RawValue>,
    /// Present at all (even `null`): the record's own `@timestamp` is kept and ours is not added.
    #[serde(rename = "@timestamp", default, deserialize_with = "present")]
    has_timestamp: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(true)
}

/// A UTC instant, to the millisecond, as found in `eventTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

pub use crate::opensearch::layout::Granularity;

impl Instant {
    pub fn index_suffix(&self) -> String {
        format!("{:04}.{:02}.{:02}", self.year, self.month, self.day)
    }
    pub fn index_suffix_for(&self, g: Granularity) -> String {
        match g {
            Granularity::Day => self.index_suffix(),
            Granularity::Month => format!("{:04}.{:02}", self.year, self.month),
        }
    }
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.milli
        )
    }
    /// Days since 1970-01-01 (for date-range filters).
    pub fn date(&self) -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(self.year, self.month, self.day).unwrap_or_default()
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, d| acc.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// Parse an eventTime; `None` when it is not a date-time we can place (see the module docs).
pub fn parse_time(s: &str) -> Option<Instant> {
    use chrono::{NaiveDate, TimeDelta, Timelike, Datelike};
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])? as i32;
    let (month, day) = (digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let mut rest = &b[19..];
    let mut milli = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut ms = 0;
        for i in 0..3 {
            ms = ms * 10 + frac.get(i).filter(|_| i < n).map_or(0, |d| u32::from(d - b'0'));
        }
        milli = ms;
        rest = &frac[n..];
    }
    let offset_minutes: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (h, m) = match tz {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let v = i64::from(h * 60 + m);
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let local = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
    let utc = local.checked_sub_signed(TimeDelta::minutes(offset_minutes))?;
    Some(Instant {
        year: utc.year(),
        month: utc.month(),
        day: utc.day(),
        hour: utc.hour(),
        minute: utc.minute(),
        second: utc.second(),
        milli,
    })
}

/// A record that is not a JSON object cannot become a document.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("record is not a JSON object")]
    NotObject,
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What a record became.
pub struct Doc {
    pub index: String,
    pub id: String,
    /// Record time, when it has one (date-range filters use it).
    pub time: Option<Instant>,
}

/// Options for building documents.
#[derive(Debug, Clone)]
pub struct DocRules {
    pub prefix: String,
    pub redact: bool,
    pub granularity: Granularity,
}

/// Build the document for one record and append `{"create":{...}}\n<doc>\n` to `out`.
/// `text` is one JSON value; parsing the head validates all of it.
pub fn append_bulk(rules: &DocRules, text: &str, out: &mut Vec<u8>) -> Result<Doc, DocError> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if !text.starts_with('{') {
        return Err(DocError::NotObject);
    }
    let head: Head = serde_json::from_str(text)?;
    let time = head
        .event_time
        .and_then(|v| serde_json::from_str::<std::borrow::Cow<str>>(v.get()).ok())
        .and_then(|s| parse_time(&s));
    let index = match &time {
        Some(t) => format!("{}-{}", rules.prefix, t.index_suffix_for(rules.granularity)),
        None => format!("{}-{}", rules.prefix, UNDATED),
    };
    let id = match head.event_id.and_then(|v| serde_json::from_str::<std::borrow::Cow<str>>(v.get()).ok()) {
        Some(s) if !s.is_empty() => s.into_owned(),
        _ => canonical_id(text)?,
    };
    out.extend_from_slice(b"{\"create\":{\"_index\":");
    write_json_str(out, &index);
    out.extend_from_slice(b",\"_id\":");
    write_json_str(out, &id);
    out.extend_from_slice(b"}}\n");

    let needs_redaction = rules.redact && text.contains("\"sessionToken\"") && has_session_token(text)?;
    let add_ts = match (&time, head.has_timestamp) {
        (Some(t), false) => Some(t.rfc3339()),
        _ => None,
    };
    let related = investigation_fields(text, rules.redact)?;
    if needs_redaction {
        // Rare path: rebuild the record with the token redacted (keys come out sorted; the content is the same).
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)?;
        if let Some(tok) = v
            .get_mut("responseElements")
            .and_then(|r| r.get_mut("credentials"))
            .and_then(|c| c.get_mut("sessionToken"))
        {
            *tok = serde_json::Value::String(REDACTED.into());
        }
        let body = serde_json::to_vec(&v)?;
        splice(out, &body, add_ts.as_deref(), related.as_deref());
    } else {
        splice(out, text.as_bytes(), add_ts.as_deref(), related.as_deref());
    }
    out.push(b'\n');
    Ok(Doc { index, id, time })
}

/// Write `{"@timestamp":"..","@trailsetup":{..},<rest of record>` (what applies), on one line.
fn splice(out: &mut Vec<u8>, obj: &[u8], ts: Option<&str>, related: Option<&[u8]>) {
    let inner = &obj[1..];
    out.push(b'{');
    let mut first = true;
    if let Some(ts) = ts {
        out.extend_from_slice(b"\"@timestamp\":\"");
        out.extend_from_slice(ts.as_bytes());
        out.push(b'"');
        first = false;
    }
    if let Some(r) = related {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"@trailsetup\":");
        out.extend_from_slice(r);
        first = false;
    }
    let empty = inner.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'}');
    if !first && !empty {
        out.push(b',');
    }
    if inner.contains(&b'\n') || inner.contains(&b'\r') {
        minify_into(out, inner);
    } else {
        out.extend_from_slice(inner);
    }
}

/// Copy JSON text without the whitespace between tokens (bulk bodies are one document per line).
fn minify_into(out: &mut Vec<u8>, s: &[u8]) {
    let mut in_str = false;
    let mut esc = false;
    for &c in s {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
            out.push(c);
        } else if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(c);
        }
    }
}

/// The blobs whose values are indexed for investigation (see the module docs), in the order of `Top`.
pub const BLOBS: [&str; 5] = ["requestParameters", "responseElements", "resources", "additionalEventData", "serviceEventDetails"];
/// Longest value indexed, in characters.
pub const MAX_VALUE_CHARS: usize = 256;
/// The scalar leaves indexed as `path=value` in `@trailsetup.fields`: what the presets (and an investigator)
/// ask of a record beyond its identifiers, which `resources` already holds. A list, not every leaf: every leaf
/// made the load 24 % slower on the bench (`bench/search.sh`), and no question needed the rest.
pub const FIELD_PATHS: [&str; 8] = [
    "additionalEventData.MFAUsed",
    "requestParameters.cidrBlock",
    "requestParameters.cidrIp",
    "requestParameters.destinationCidrBlock",
    "requestParameters.ipPermissions.items[].ipRanges.items[].cidrIp",
    "requestParameters.ipPermissions.items[].ipv6Ranges.items[].cidrIpv6",
    "requestParameters.ipv6CidrBlock",
    "responseElements.ConsoleLogin",
];

/// The top-level members `@trailsetup` is built from: the last of duplicates, like `serde_json::Value`.
#[derive(Default)]
struct Top<'a> {
    blobs: [Option<&'a RawValue>; 5],
    user_identity: Option<&'a RawValue>,
    own: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Top<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Top<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Top<'a>, M::Error> {
                let mut top = Top::default();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if let Some(i) = BLOBS.iter().position(|b| *b == k) {
                        top.blobs[i] = Some(m.next_value()?);
                    } else if k == "userIdentity" {
                        top.user_identity = Some(m.next_value()?);
                    } else {
                        top.own |= k == "@trailsetup";
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

pub use crate::opensearch::query::principal_of;

/// The `@trailsetup` object of a record (module docs), as JSON text; `None` when it would be empty or the record
/// has its own.
pub fn investigation_fields(text: &str, redact: bool) -> Result<Option<Vec<u8>>, serde_json::Error> {
    use serde_json::Value;
    let top: Top = serde_json::from_str(text)?;
    if top.own {
        return Ok(None);
    }
    let principal = top.user_identity.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok()).and_then(|u| principal_of(&u));
    let mut resources = std::collections::BTreeSet::new();
    let mut fields = std::collections::BTreeSet::new();
    for (name, raw) in BLOBS.iter().zip(top.blobs) {
        let Some(raw) = raw else { continue };
        let Ok(v) = serde_json::from_str::<Value>(raw.get()) else { continue };
        let mut path = String::from(*name);
        walk(&v, &mut path, redact, &mut resources, &mut fields);
    }
    if principal.is_none() && resources.is_empty() && fields.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(64 + 32 * (resources.len() + fields.len()));
    out.push(b'{');
    let mut first = true;
    if let Some(p) = &principal {
        out.extend_from_slice(b"\"principal\":");
        write_json_str(&mut out, p);
        first = false;
    }
    for (key, set) in [("resources", &resources), ("fields", &fields)] {
        if set.is_empty() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(&mut out, key);
        out.extend_from_slice(b":[");
        for (i, s) in set.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(&mut out, s);
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(Some(out))
}

fn short(s: &str) -> bool {
    s.len() <= MAX_VALUE_CHARS || s.chars().count() <= MAX_VALUE_CHARS
}

fn walk(
    v: &serde_json::Value,
    path: &mut String,
    redact: bool,
    resources: &mut std::collections::BTreeSet<String>,
    fields: &mut std::collections::BTreeSet<String>,
) {
    use serde_json::Value;
    let leaf = |text: &str, fields: &mut std::collections::BTreeSet<String>, path: &str| {
        if FIELD_PATHS.contains(&path) {
            fields.insert(format!("{path}={text}"));
        }
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                if !(redact && path == "responseElements.credentials.sessionToken") {
                    walk(x, path, redact, resources, fields);
                }
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            let len = path.len();
            path.push_str("[]");
            for x in a {
                walk(x, path, redact, resources, fields);
            }
            path.truncate(len);
        }
        Value::String(s) => {
            if !short(s) {
                return;
            }
            if let Some(rest) = s.strip_prefix("arn:") {
                let cut = rest.rfind(['/', ':']).map_or("", |i| &rest[i + 1..]);
                if !cut.is_empty() && cut != s {
                    resources.insert(cut.to_owned());
                }
            }
            resources.insert(s.clone());
            leaf(s, fields, path);
        }
        Value::Bool(b) => leaf(if *b { "true" } else { "false" }, fields, path),
        Value::Number(n) if n.is_i64() || n.is_u64() => leaf(&n.to_string(), fields, path),
        Value::Number(_) | Value::Null => {}
    }
}

fn has_session_token(text: &str) -> Result<bool, serde_json::Error> {
    #[derive(Deserialize)]
    struct R<'a> {
        #[serde(rename = "responseElements", borrow, default)]
        re: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Re<'a> {
        #[serde(borrow, default)]
        credentials: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct C<'a> {
        #[serde(rename = "sessionToken", borrow, default)]
        token: Option<&'a RawValue>,
    }
    let r: R = serde_json::from_str(text)?;
    let Some(re) = r.re.filter(|v| v.get().starts_with('{')) else { return Ok(false) };
    let re: Re = serde_json::from_str(re.get())?;
    let Some(c) = re.credentials.filter(|v| v.get().starts_with('{')) else { return Ok(false) };
    let c: C = serde_json::from_str(c.get())?;
    Ok(c.token.is_some())
}

/// `sha256:<hex>` of the canonical JSON of a record: keys sorted by code point, no whitespace.
pub fn canonical_id(text: &str) -> Result<String, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let mut canon = Vec::with_capacity(text.len());
    write_canonical(&v, &mut canon);
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(&canon))))
}

/// Canonical JSON: object keys sorted (UTF-8 byte order = code point order) whatever the map type.
pub fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, k);
                out.push(b':');
                write_canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's own formatting (shortest round-trip floats).
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json never fails writing a str into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(rec: &str) -> (Doc, serde_json::Value, serde_json::Value) {
        let rules = DocRules { prefix: "cloudtrail".into(), redact: true, granularity: Granularity::Day };
        let mut out = Vec::new();
        let d = append_bulk(&rules, rec, &mut out).unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        let mut lines = s.lines();
        let action = serde_json::from_str(lines.next().unwrap()).unwrap();
        let body = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert!(lines.next().is_none());
        (d, action, body)
    }

    #[test]
    fn times() {
        let t = parse_time("2022-08-18T17:10:00Z").unwrap();
        assert_eq!(t.rfc3339(), "2022-08-18T17:10:00.000Z");
        assert_eq!(parse_time("2026-01-11 22:54:56.000000000").unwrap().rfc3339(), "2026-01-11T22:54:56.000Z");
        assert_eq!(parse_time("2020-11-20 06:19:05.123").unwrap().rfc3339(), "2020-11-20T06:19:05.123Z");
        assert_eq!(parse_time("2020-11-20T06:19:05.1Z").unwrap().milli, 100);
        assert_eq!(parse_time("2020-12-31T23:30:00-01:00").unwrap().rfc3339(), "2021-01-01T00:30:00.000Z");
        assert_eq!(parse_time("2021-01-01T00:30:00+0100").unwrap().rfc3339(), "2020-12-31T23:30:00.000Z");
        assert_eq!(parse_time("2021-01-01T00:30:00+01").unwrap().hour, 23);
        for bad in ["...", "", "2021-13-01T00:00:00Z", "2021-02-30T00:00:00Z", "2021-01-01", "2021-01-01T00:00:00.Z", "2021-01-01T25:00:00Z", "2021-01-01T00:00:00Zjunk", "１２３４-01-01T00:00:00Z"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn document_adds_timestamp_and_keeps_record() {
        let rec = r#"{"eventVersion":"1.08","eventTime":"2022-08-18T17:10:00Z","eventID":"abc","requestParameters":"x"}"#;
        let (d, action, body) = build(rec);
        assert_eq!(d.index, "cloudtrail-2022.08.18");
        assert_eq!(action, serde_json::json!({"create": {"_index": "cloudtrail-2022.08.18", "_id": "abc"}}));
        let mut want: serde_json::Value = serde_json::from_str(rec).unwrap();
        want["@timestamp"] = "2022-08-18T17:10:00.000Z".into();
        want["@trailsetup"] = serde_json::json!({"resources": ["x"]});
        assert_eq!(body, want);
    }

    #[test]
    fn fields_are_the_listed_leaves_only() {
        let rec = r#"{"eventTime":"2022-08-18T17:10:00Z","eventID":"e","eventName":"ConsoleLogin",
            "additionalEventData":{"MFAUsed":"No","LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No"},
            "responseElements":{"ConsoleLogin":"Success"},
            "requestParameters":{"ipPermissions":{"items":[{"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]},"fromPort":22}]}}}"#;
        let (_, _, body) = build(rec);
        assert_eq!(
            body["@trailsetup"]["fields"],
            serde_json::json!([
                "additionalEventData.MFAUsed=No",
                "requestParameters.ipPermissions.items[].ipRanges.items[].cidrIp=0.0.0.0/0",
                "responseElements.ConsoleLogin=Success"
            ])
        );
        // every string is still a resource value, listed or not
        let res = body["@trailsetup"]["resources"].as_array().unwrap();
        assert!(res.contains(&"https://console.aws.amazon.com/".into()) && res.contains(&"0.0.0.0/0".into()));
    }

    #[test]
    fn pretty_printed_record_becomes_one_line() {
        let rec = "{\n  \"eventTime\": \"2022-08-18T17:10:00Z\",\n  \"eventID\": \"a b\\n\",\n  \"x\": {\"k\": \"v \\\" w\"}\n}";
        let (d, _, body) = build(rec);
        assert_eq!(d.id, "a b\n");
        assert_eq!(body["x"]["k"], "v \" w");
    }

    #[test]
    fn undated_and_hashed() {
        let rec = r#"{"b":1,"a":{"z":[1,2.5,"x"],"y":null},"eventName":"Foo"}"#;
        let (d, action, body) = build(rec);
        assert_eq!(d.index, "cloudtrail-undated");
        assert!(body.get("@timestamp").is_none());
        let canon = r#"{"a":{"y":null,"z":[1,2.5,"x"]},"b":1,"eventName":"Foo"}"#;
        let want = format!("sha256:{}", hex::encode(Sha256::digest(canon.as_bytes())));
        assert_eq!(action["create"]["_id"], want.as_str());
        // The same record with other whitespace and key order gets the same id.
        let (d2, _, _) = build("{ \"eventName\" : \"Foo\", \"a\": {\"y\": null, \"z\": [1, 2.5, \"x\"]}, \"b\": 1 }");
        assert_eq!(d2.id, d.id);
    }

    #[test]
    fn own_timestamp_is_kept() {
        let (_, _, body) = build(r#"{"eventTime":"2022-08-18T17:10:00Z","@timestamp":"whatever"}"#);
        assert_eq!(body["@timestamp"], "whatever");
    }

    #[test]
    fn session_token_redacted() {
        let rec = r#"{"eventTime":"2022-08-18T17:10:00Z","eventID":"e","responseElements":{"credentials":{"accessKeyId":"ASIA","sessionToken":"secret"}}}"#;
        let (_, _, body) = build(rec);
        assert_eq!(body["responseElements"]["credentials"]["sessionToken"], REDACTED);
        assert_eq!(body["responseElements"]["credentials"]["accessKeyId"], "ASIA");
        // sessionToken elsewhere is left alone
        let (_, _, body) = build(r#"{"eventID":"e","requestParameters":{"sessionToken":"keep"}}"#);
        assert_eq!(body["requestParameters"]["sessionToken"], "keep");
    }

    #[test]
    fn non_object_rejected() {
        let rules = DocRules { prefix: "p".into(), redact: true, granularity: Granularity::Day };
        assert!(matches!(append_bulk(&rules, "[1]", &mut Vec::new()), Err(DocError::NotObject)));
        assert!(matches!(append_bulk(&rules, "{\"a\":1} x", &mut Vec::new()), Err(DocError::Json(_))));
        assert!(matches!(append_bulk(&rules, "{\"a\":", &mut Vec::new()), Err(DocError::Json(_))));
    }
}
