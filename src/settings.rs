//! One Settings struct for the wizard and CI: flags > TRAILSETUP_* env > config file > defaults.
//!
//! clap already folds flags over env vars (each flag names its `TRAILSETUP_*` variable), so this module only
//! has to lay the result over the config file and the defaults.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::cli::{GlobalArgs, OpenSearchAuth, OutputFormat, TrailMode};
use crate::error::usage;

/// The config file (TOML). Keys are the long flag names with `_` for `-`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub name: Option<String>,
    pub regions: Option<StringOrList>,
    pub trail_mode: Option<TrailMode>,
    pub bucket: Option<String>,
    pub kms_key: Option<String>,
    pub log_retention_days: Option<i32>,
    pub opensearch_domain: Option<String>,
    pub opensearch_url: Option<String>,
    pub domain_instance_type: Option<String>,
    pub domain_instance_count: Option<i32>,
    pub opensearch_auth: Option<OpenSearchAuth>,
    pub account: Option<String>,
    pub index_prefix: Option<String>,
    pub index_granularity: Option<crate::opensearch::layout::Choice>,
    pub backfill: Option<bool>,
    pub master_user_arn: Option<String>,
    pub ingest_role: Option<StringOrList>,
    pub no_kms_key_policy: Option<bool>,
    pub use_trail: Option<String>,
    pub source_role: Option<String>,
    pub sigv4_region: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub output: Option<OutputFormat>,
    /// backfill/ingest
    pub prefix: Option<String>,
    pub accounts: Option<StringOrList>,
    pub concurrency: Option<usize>,
    pub bulk_concurrency: Option<usize>,
    pub queue_url: Option<String>,
    pub quarantine: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
    pub sigv4_service: Option<String>,
    pub compression: Option<String>,
    pub allow_http_basic_auth: Option<bool>,
    /// init/destroy: seconds to wait for the stack's lock
    pub lock_timeout: Option<u64>,
}

/// `regions = "all"`, `regions = "us-east-1,eu-west-1"` or `regions = ["us-east-1", "eu-west-1"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn joined(&self) -> String {
        match self {
            StringOrList::One(s) => s.clone(),
            StringOrList::Many(v) => v.join(","),
        }
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!("cannot read config file {}: {e} (check --config / TRAILSETUP_CONFIG)", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            usage(format!(
                "invalid config file {}: {}\nsee templates/trailsetup.example.toml for the keys it accepts",
                path.display(),
                e.to_string().trim_end()
            ))
        })
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub dry_run: bool,
    pub offline: bool,
    pub yes: bool,
    pub output: OutputFormat,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub state_dir: PathBuf,
    pub verbose: u8,
    pub quiet: u8,
    /// Basic auth over plain http:// to a non-loopback host, asked for explicitly.
    pub allow_http_basic_auth: bool,
    pub file: ConfigFile,
}

impl Common {
    pub fn resolve(g: &GlobalArgs) -> anyhow::Result<Common> {
        let file = match &g.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        let state_dir = g
            .state_dir
            .clone()
            .or_else(|| file.state_dir.clone())
            .unwrap_or_else(default_state_dir);
        Ok(Common {
            dry_run: g.dry_run,
            offline: g.offline,
            yes: g.yes,
            output: g.output.or(file.output).unwrap_or_default(),
            profile: g.profile.clone().or_else(|| file.profile.clone()),
            region: g.region.clone().or_else(|| file.region.clone()),
            endpoint_url: g.endpoint_url.clone().or_else(|| file.endpoint_url.clone()),
            state_dir,
            verbose: g.verbose,
            quiet: g.quiet,
            allow_http_basic_auth: g.allow_http_basic_auth || file.allow_http_basic_auth.unwrap_or(false),
            file,
        })
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// How `init` and `destroy` take the stack's lock: `--lock-timeout` (or TRAILSETUP_LOCK_TIMEOUT) > config key
    /// `lock_timeout` > 300 s; `--force-unlock`.
    pub fn lock(&self, a: &crate::cli::LockArgs) -> crate::lock::Options {
        crate::lock::Options {
            timeout: a.lock_timeout.or(self.file.lock_timeout).map(std::time::Duration::from_secs).unwrap_or(crate::lock::DEFAULT_TIMEOUT),
            force_unlock: a.force_unlock,
        }
    }
}

/// `$XDG_STATE_HOME/trailsetup`, else `~/.local/state/trailsetup`, else `./.trailsetup`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("trailsetup");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/state/trailsetup");
    }
    PathBuf::from(".trailsetup")
}

/// Split a comma list, trimming blanks.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

/// Read a file's text with the path in the error.
pub fn read_text(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

/// Parse an inclusive bound, `YYYY-MM-DD` or RFC 3339, into its UTC date (to prune key paths or indices) and its
/// instant: a bare date starts at 00:00:00.000 (`--from`) or ends at 23:59:59.999 (`--to`, `end`); an RFC 3339 time
/// is taken to the millisecond, its time of day included.
pub fn parse_bound(flag: &str, s: &str, end: bool) -> anyhow::Result<(chrono::NaiveDate, chrono::NaiveDateTime)> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = if end { d.and_hms_milli_opt(23, 59, 59, 999) } else { d.and_hms_opt(0, 0, 0) };
        return Ok((d, t.expect("a valid time of day")));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        let t = t.with_timezone(&chrono::Utc).naive_utc();
        return Ok((t.date(), t));
    }
    Err(crate::error::usage(format!("{flag} {s:?}: expected a date (YYYY-MM-DD) or an RFC 3339 time (2024-05-01T13:00:00Z)")))
}

