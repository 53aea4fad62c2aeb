//! The front door to a stack that exists: which stack, in which account, with which choices — from the state file,
//! which is only a cache, or, when there is none (a fresh CI runner, a colleague's laptop), from the account.
//!
//! The account's copy ("the record") is the state, as JSON, gzip-compressed and base64-encoded, in the tags
//! `trailsetup:record:NN` of the stack's ingest-worker policy (`<name>-ingest-worker`). The policy is IAM, so global:
//! it is found from the stack name and the account alone, before the home region is known; every stack has it,
//! `init` creates it first and `destroy` deletes it last. IAM allows 50 tags on a policy, each value up to 256
//! characters of letters, digits, whitespace and `_ . : / = + - @` (IAM User Guide, "Tagging IAM resources" →
//! "Rules for tagging"): base64 uses only those. Reading it needs `iam:ListPolicyTags` on that policy (the
//! ingest-worker policy grants it to the workers holding it); writing, `iam:TagPolicy`/`iam:UntagPolicy`.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use aws_config::SdkConfig;
use base64::Engine as _;

use crate::aws::{code, explain};
use crate::settings::Common;
use crate::resources::{Ctx, KmsKeys, OpenSearchTarget};
use crate::state::State;

/// One multi-region trail (global events on), or one trail per region (global events in the home region only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrailMode {
    MultiRegion,
    PerRegion,
}

/// Prefix of the record's tag keys: `trailsetup:record:00`, `…:01`, …
pub const RECORD_TAG: &str = "trailsetup:record:";
/// IAM: at most 256 characters in a tag value.
const CHUNK: usize = 256;
/// IAM: at most 50 tags on a policy; the stack tag and a few of the user's stay possible.
const MAX_CHUNKS: usize = 40;

/// Where a stack's state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The state file in the state directory (the cache).
    File,
    /// The record in the account (no state file here).
    Account,
}

/// The ARN of the stack's ingest-worker policy, which holds the record.
pub fn record_policy_arn(partition: &str, account: &str, stack: &str) -> String {
    format!("arn:{partition}:iam::{account}:policy/{stack}-ingest-worker")
}

/// The state as record tags, in order.
pub fn encode(state: &State) -> anyhow::Result<Vec<(String, String)>> {
    let json = serde_json::to_vec(state)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json)?;
    let text = base64::engine::general_purpose::STANDARD.encode(gz.finish()?);
    let chunks: Vec<(String, String)> =
        text.as_bytes().chunks(CHUNK).enumerate().map(|(i, c)| (format!("{RECORD_TAG}{i:02}"), String::from_utf8_lossy(c).into_owned())).collect();
    if chunks.len() > MAX_CHUNKS {
        anyhow::bail!("the stack's record is {} bytes encoded, over the {} IAM tags it may take", text.len(), MAX_CHUNKS);
    }
    Ok(chunks)
}

/// The state from record tags (any other tag is ignored); `None` when there is no record.
pub fn decode(tags: &[(String, String)]) -> anyhow::Result<Option<State>> {
    let mut parts: Vec<(usize, &str)> =
        tags.iter().filter_map(|(k, v)| k.strip_prefix(RECORD_TAG).and_then(|n| n.parse::<usize>().ok()).map(|n| (n, v.as_str()))).collect();
    if parts.is_empty() {
        return Ok(None);
    }
    parts.sort();
    if parts.iter().enumerate().any(|(i, (n, _))| i != *n) {
        anyhow::bail!("the stack's record is incomplete (tags {RECORD_TAG}NN are not 00..{:02})", parts.len() - 1);
    }
    let text: String = parts.iter().map(|(_, v)| *v).collect();
    let gz = base64::engine::general_purpose::STANDARD.decode(text.trim()).context("the stack's record is not base64")?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut json).context("the stack's record is not gzip")?;
    Ok(Some(serde_json::from_slice(&json).context("the stack's record is not a state")?))
}

/// Write `state` as the record of its stack (after `init`): tag the ingest-worker policy, and remove record tags
/// a longer earlier record left.
pub async fn save_record(cfg: &SdkConfig, state: &State) -> anyhow::Result<()> {
    let iam = aws_sdk_iam::Client::new(cfg);
    let arn = record_policy_arn(&state.partition, &state.account, &state.stack);
    let chunks = encode(state)?;
    let old = list_tags(&iam, &arn).await?.unwrap_or_default();
    let stale: Vec<String> = old.iter().map(|(k, _)| k).filter(|k| k.starts_with(RECORD_TAG) && !chunks.iter().any(|(c, _)| c == *k)).cloned().collect();
    if !stale.is_empty() {
        iam.untag_policy()
            .policy_arn(&arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(|e| explain(e, &format!("updating the stack's record on policy {arn}"), "iam:UntagPolicy"))?;
    }
    let tags = chunks
        .into_iter()
        .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()?;
    iam.tag_policy()
        .policy_arn(&arn)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| explain(e, &format!("writing the stack's record on policy {arn}"), "iam:TagPolicy"))?;
    Ok(())
}

/// Every tag of the policy, or `None` when it does not exist.
async fn list_tags(iam: &aws_sdk_iam::Client, arn: &str) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let r = match iam.list_policy_tags().policy_arn(arn).set_marker(marker.clone()).send().await {
            Ok(r) => r,
            Err(e) if code(&e).as_deref() == Some("NoSuchEntity") => return Ok(None),
            Err(e) => return Err(explain(e, &format!("reading the stack's record on policy {arn}"), "iam:ListPolicyTags")),
        };
        out.extend(r.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())));
        match r.marker().filter(|_| r.is_truncated()) {
            Some(m) => marker = Some(m.to_string()),
            None => return Ok(Some(out)),
        }
    }
}

/// The record of `stack` in the caller's account, if there is one.
pub async fn read_record(cfg: &SdkConfig, stack: &str) -> anyhow::Result<Option<State>> {
    let (account, partition, _) = crate::aws::identity(cfg).await?;
    let iam = aws_sdk_iam::Client::new(cfg);
    let arn = record_policy_arn(&partition, &account, stack);
    match list_tags(&iam, &arn).await? {
        Some(tags) => decode(&tags).with_context(|| format!("reading the stack's record on policy {arn}")),
        None => Ok(None),
    }
}

/// The state of stack `name` (default: the only stack of the state directory, else `trailsetup`): the state file
/// when there is one, else the record in the account reached with `cfg` (made when needed), which is then
/// written to the state directory as its cache.
pub async fn load(common: &Common, name: Option<&str>, cfg: Option<&SdkConfig>) -> anyhow::Result<Option<(State, Source)>> {
    if let Some(s) = State::load(&common.state_dir, name)? {
        return Ok(Some((s, Source::File)));
    }
    let stack = name.unwrap_or(crate::wizard::DEFAULT_NAME);
    let cfg = match cfg {
        Some(c) => c.clone(),
        None => crate::aws::sdk_config(common).await,
    };
    let Some(state) = read_record(&cfg, stack).await? else { return Ok(None) };
    tracing::info!("stack {stack}: no state file here, read from the account (policy {stack}-ingest-worker)");
    // the cache, for the next command on this machine (a failure to write it is not this command's failure)
    if let Err(e) = state.save(&common.state_dir) {
        tracing::warn!("could not cache the stack's state in {}: {e:#}", common.state_dir.display());
    }
    Ok(Some((state, Source::Account)))
}

/// For `backfill` and `ingest`: the state of the stack whose defaults a run takes. The state file when there is
/// one; else, unless everything needed was given (`given`: then no AWS call is made for it, and a run with
/// `--source-dir` and an endpoint needs no credentials at all), the account's record. A record that cannot be
/// read is said once and the run goes on without defaults (the flags then name what is missing).
pub async fn defaults(common: &Common, name: Option<&str>, given: bool) -> anyhow::Result<Option<State>> {
    if let Some(s) = State::load(&common.state_dir, name)? {
        return Ok(Some(s));
    }
    if given {
        return Ok(None);
    }
    match load(common, name, None).await {
        Ok(s) => Ok(s.map(|(s, _)| s)),
        Err(e) => {
            tracing::warn!("no state file, and the stack's record in the account could not be read: {e:#}");
            Ok(None)
        }
    }
}

/// What names a stack when its state is lost: `--name`, and the non-derived names `--bucket`, `--opensearch-domain`.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub name: Option<String>,
    pub bucket: Option<String>,
    pub opensearch_domain: Option<String>,
}

/// Who calls: account, partition and the caller's ARN (STS GetCallerIdentity).
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: String,
    pub partition: String,
    pub arn: String,
}

/// The stack's context (what every command works on) from its state — the state file or the account's record —
/// or, when neither is found, from `--name` and the defaults (destroy then searches every enabled region).
pub fn context(common: &Common, a: &Lookup, state: Option<&State>, who: &Caller, enabled: &[String]) -> anyhow::Result<Ctx> {
    let (account, partition, caller) = (who.account.as_str(), who.partition.as_str(), who.arn.as_str());
    let home = common.region.clone().or_else(|| state.map(|s| s.home_region.clone())).unwrap_or_else(|| "us-east-1".into());
    let stack = a.name.clone().or_else(|| state.map(|s| s.stack.clone())).unwrap_or_else(|| crate::wizard::DEFAULT_NAME.into());
    let (regions, trail_mode) = match state {
        Some(s) => (s.regions.clone(), s.trail_mode.unwrap_or(TrailMode::MultiRegion)),
        // lost state: every enabled region may hold a per-region trail's resources; the multi-region trail is
        // looked for too (trails_of)
        None => (enabled.to_vec(), TrailMode::PerRegion),
    };
    let opensearch = match state {
        Some(s) => match (&s.opensearch_domain, &s.opensearch_url) {
            (Some(d), _) => OpenSearchTarget::Domain(d.clone()),
            (None, Some(u)) => OpenSearchTarget::Url(u.clone()),
            (None, None) => OpenSearchTarget::Domain(stack.clone()),
        },
        None => OpenSearchTarget::Domain(a.opensearch_domain.clone().unwrap_or_else(|| stack.clone())),
    };
    let kms = state.filter(|s| !s.kms_keys.is_empty()).map(|s| KmsKeys { given: "state".into(), keys: s.kms_keys.clone(), resolved: true });
    Ok(Ctx {
        stack: stack.clone(),
        account: account.into(),
        partition: partition.into(),
        caller_arn: caller.into(),
        principal_arn: state.and_then(|s| s.principal_arn.clone()).unwrap_or_else(|| caller.into()),
        home: home.clone(),
        regions,
        opt_in_regions: state.map(|s| s.opt_in_regions.clone()).unwrap_or_default(),
        trail_mode,
        bucket: a.bucket.clone().or_else(|| state.and_then(|s| s.bucket.clone())).unwrap_or_else(|| format!("{stack}-{account}-{home}")),
        kms,
        kms_policy_external: false,
        retention_days: state.and_then(|s| s.retention_days).unwrap_or(crate::wizard::DEFAULT_RETENTION),
        opensearch,
        // destroy never creates a domain: the size is not looked at
        domain_size: Default::default(),
        opensearch_auth: state.and_then(|s| s.opensearch_auth),
        index_prefix: state.and_then(|s| s.index_prefix.clone()).unwrap_or_else(|| crate::opensearch::DEFAULT_PREFIX.into()),
        index_granularity: state.and_then(|s| s.index_granularity).unwrap_or_default(),
        ingest_roles: state.map(|s| s.ingest_roles.clone()).unwrap_or_default(),
        reuse: state.and_then(|s| s.use_trail.clone()),
        // the secret's value is neither read nor written here
        basic_auth: None,
    })
}



use crate::permissions as perm;
/// The record on the ingest-worker policy: every command reads it, init writes it ("... for AWS Identity and
/// Access Management", https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html: policy).
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p("iam:ListPolicyTags", perm::Res::RecordPolicy, perm::ALL),
    perm::p("iam:TagPolicy", perm::Res::RecordPolicy, perm::INIT),
    perm::p("iam:UntagPolicy", perm::Res::RecordPolicy, perm::INIT),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_through_iam_tags() {
        let mut s = State { stack: "prod-audit".into(), account: "123456789012".into(), partition: "aws".into(), ..Default::default() };
        s.regions = (0..17).map(|i| format!("xx-region-{i}")).collect();
        for i in 0..200 {
            s.created.insert(format!("logs-log-group/eu-west-{i}/aws/cloudtrail/prod-audit"));
        }
        let tags = encode(&s).unwrap();
        assert!(tags.len() <= MAX_CHUNKS && tags.iter().all(|(k, v)| k.len() <= 128 && v.len() <= CHUNK));
        // IAM's allowed characters for tag values
        assert!(tags.iter().all(|(_, v)| v.chars().all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c))));
        let mut with_others = vec![("trailsetup:stack".to_string(), "prod-audit".to_string())];
        with_others.extend(tags.iter().rev().cloned());
        let back = decode(&with_others).unwrap().unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&s).unwrap());
        assert!(decode(&[("trailsetup:stack".into(), "x".into())]).unwrap().is_none());
        // a missing chunk is an error, not a wrong state
        let holed: Vec<_> = tags.iter().enumerate().filter(|(i, _)| *i != 0).map(|(_, t)| t.clone()).collect();
        if !holed.is_empty() {
            assert!(decode(&holed).is_err());
        }
    }
}
