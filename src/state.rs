//! The state file: what `init` created, so that `backfill` and `ingest` find their defaults.
//! Location: `<state-dir>/<stack>.json` (state dir: `--state-dir`, `TRAILSETUP_STATE_DIR`,
//! `$XDG_STATE_HOME/trailsetup` or `~/.local/state/trailsetup`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub stack: String,
    pub account: String,
    pub partition: String,
    pub home_region: String,
    pub regions: Vec<String>,
    pub bucket: Option<String>,
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub opensearch_url: Option<String>,
    pub opensearch_auth: Option<crate::cli::OpenSearchAuth>,
    pub index_prefix: Option<String>,
    /// day or month indices: the stack's layout (see `opensearch::layout`); absent: made before layouts, day
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_granularity: Option<crate::opensearch::layout::Granularity>,
    /// the region SigV4 signs for (the domain's), when it is not in the endpoint's host name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch_region: Option<String>,
    /// false when the endpoint did not answer from the machine that ran init (a VPC-only domain): the index
    /// template is then installed by `backfill`/`ingest`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch_reachable: Option<bool>,
    /// kind/name → ARN (or URL) of everything created or adopted
    pub resources: BTreeMap<String, String>,
    /// what `destroy` needs to find the stack again: the trail mode, the domain (when one), the KMS key per region,
    /// the ingest roles mapped in the domain
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail_mode: Option<crate::cli::TrailMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch_domain: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kms_keys: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingest_roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opt_in_regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i32>,
    /// the caller as an IAM principal when init ran (the domain's master user)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// `kind/region/name` of every resource an `init` created (not adopted): only those may `destroy` delete
    /// whole; from the others it removes only what we added
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub created: std::collections::BTreeSet<String>,
    /// the trail the pipeline hangs from (`init --use-trail`): its bucket, prefix, topic, log group
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_trail: Option<crate::resources::reuse::Reuse>,
    /// the key prefix `backfill` reads by default (`AWSLogs/`, or this account's logs under a reused trail)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// a role to read the bucket through (a log archive bucket of another account)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_role: Option<String>,
}

/// The key of a resource in [`State::created`].
pub fn created_key(kind: crate::plan::Kind, region: &str, name: &str) -> String {
    format!("{kind}/{region}/{name}")
}

pub fn path(state_dir: &Path, stack: &str) -> PathBuf {
    state_dir.join(format!("{stack}.json"))
}

impl State {
    /// The state of `stack`, or when no stack is named, of the only stack in the state dir.
    pub fn load(state_dir: &Path, stack: Option<&str>) -> anyhow::Result<Option<State>> {
        let p = match stack {
            Some(s) => path(state_dir, s),
            None => {
                let default = path(state_dir, "trailsetup");
                if default.exists() {
                    default
                } else {
                    let found: Vec<PathBuf> = std::fs::read_dir(state_dir)
                        .map(|rd| {
                            rd.filter_map(Result::ok)
                                .map(|e| e.path())
                                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                                .collect()
                        })
                        .unwrap_or_default();
                    match found.len() {
                        1 => found.into_iter().next().unwrap_or(default),
                        _ => return Ok(None),
                    }
                }
            }
        };
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "state file {} is unreadable: repair it or move it away (it records what `destroy` may delete); \
                     nothing was changed",
                    p.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading state file {}", p.display())),
        }
    }

    pub fn save(&self, state_dir: &Path) -> anyhow::Result<PathBuf> {
        crate::fsutil::private_dir_all(state_dir)?;
        let p = path(state_dir, &self.stack);
        crate::fsutil::write_atomic(&p, &serde_json::to_vec_pretty(self)?)?;
        Ok(p)
    }
}
