//! The wizard: fills only the settings still missing, each prompt showing its computed default. Prompts go to
//! stderr. It never calls AWS: what it needs to know (account, enabled regions) is passed in.
//! Without a TTY and without `--yes` it does not prompt: the caller gets a usage error naming what to pass.

use std::io::IsTerminal;

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, MultiSelect, Select};

use crate::cli::TrailMode;
use crate::error::usage;

/// Settings as resolved from flags > env > config file; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub name: Option<String>,
    pub regions: Option<String>,
    pub trail_mode: Option<TrailMode>,
    pub bucket: Option<String>,
    /// `Some(None)` = explicitly none
    pub kms_key: Option<Option<String>>,
    pub log_retention_days: Option<i32>,
    pub opensearch_domain: Option<String>,
    pub opensearch_url: Option<String>,
    /// a new domain's data nodes (`--domain-instance-type`, `--domain-instance-count`)
    pub domain_instance_type: Option<String>,
    pub domain_instance_count: Option<i32>,
    pub backfill: Option<bool>,
    /// `--use-trail`: a trail name/ARN, or `none` (create our own)
    pub use_trail: Option<String>,
}

/// What the wizard may know about the account (discovered before it runs, or placeholders).
#[derive(Debug, Clone)]
pub struct Facts {
    pub account: String,
    pub home: String,
    pub enabled_regions: Vec<String>,
    /// trails that already record this account (discovered; empty offline)
    pub trails: Vec<crate::resources::reuse::Reuse>,
    pub caller: String,
    pub partition: String,
    /// the caller's buckets that hold CloudTrail logs (`AWSLogs/`), offered as the bucket
    pub buckets: Vec<String>,
    /// aliases of this region's customer managed keys, offered as the KMS key
    pub kms_aliases: Vec<String>,
    /// the account's OpenSearch domains in the home region, offered as targets
    pub domains: Vec<String>,
}

/// Is this one of the stack's own trails (`<name>` or `<name>-<region>`)?
pub fn own_trail(stack: &str, t: &crate::resources::reuse::Reuse) -> bool {
    t.name == stack || t.name.strip_prefix(stack).and_then(|r| r.strip_prefix('-')).is_some_and(crate::init::looks_like_region)
}

pub const DEFAULT_NAME: &str = "trailsetup";
pub const DEFAULT_RETENTION: i32 = 90;

/// (flag, env var, config key) of each wizard question, in prompt order.
pub const QUESTIONS: &[(&str, &str, &str)] = &[
    ("--name", "TRAILSETUP_NAME", "name"),
    ("--regions", "TRAILSETUP_REGIONS", "regions"),
    ("--trail-mode", "TRAILSETUP_TRAIL_MODE", "trail_mode"),
    ("--bucket", "TRAILSETUP_BUCKET", "bucket"),
    ("--kms-key", "TRAILSETUP_KMS_KEY", "kms_key"),
    ("--log-retention-days", "TRAILSETUP_LOG_RETENTION_DAYS", "log_retention_days"),
    ("--opensearch-domain or --opensearch-url", "TRAILSETUP_OPENSEARCH_DOMAIN / TRAILSETUP_OPENSEARCH_URL", "opensearch_domain / opensearch_url"),
    ("--domain-instance-type (a new domain)", "TRAILSETUP_DOMAIN_INSTANCE_TYPE", "domain_instance_type"),
    ("--domain-instance-count (a new domain)", "TRAILSETUP_DOMAIN_INSTANCE_COUNT", "domain_instance_count"),
    ("--backfill or --no-backfill", "-", "backfill"),
];

impl Draft {
    /// The questions that would be asked (their index in [`QUESTIONS`]).
    pub fn missing(&self, dry_run: bool) -> Vec<usize> {
        let mut m = Vec::new();
        // a reused trail decides regions, mode, bucket and encryption; there is no log group of ours
        let reusing = self.use_trail.as_deref().is_some_and(|t| t != "none");
        if self.name.is_none() { m.push(0) }
        if self.regions.is_none() && !reusing { m.push(1) }
        if self.trail_mode.is_none() && !reusing { m.push(2) }
        if self.bucket.is_none() && !reusing { m.push(3) }
        if self.kms_key.is_none() && !reusing { m.push(4) }
        if self.log_retention_days.is_none() && !reusing { m.push(5) }
        if self.opensearch_domain.is_none() && self.opensearch_url.is_none() { m.push(6) }
        // asked only for a domain that does not exist yet
        if self.domain_instance_type.is_none() && self.opensearch_url.is_none() { m.push(7) }
        if self.domain_instance_count.is_none() && self.opensearch_url.is_none() { m.push(8) }
        if self.backfill.is_none() && !dry_run { m.push(9) }
        m
    }
}

pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The usage error for "would have to ask, but cannot".
pub fn no_tty_error(missing: &[usize], needs_confirmation: bool) -> anyhow::Error {
    let mut msg = String::from("no terminal to ask on (stdin is not a TTY) and --yes was not given.\n");
    if needs_confirmation {
        msg.push_str("Pass --yes (env TRAILSETUP_YES=1) to confirm the plan and take the default of every unanswered question");
    } else {
        msg.push_str("Pass --yes (env TRAILSETUP_YES=1) to take the defaults");
    }
    if !missing.is_empty() {
        msg.push_str(", or give these values:\n");
        for i in missing {
            let (flag, env, key) = QUESTIONS[*i];
            msg.push_str(&format!("  {flag}   (env {env}, config key {key})\n"));
        }
    } else {
        msg.push('\n');
    }
    usage(msg.trim_end().to_string())
}

fn prompt_err(e: dialoguer::Error) -> anyhow::Error {
    let _ = console::Term::stderr().show_cursor();
    // Ctrl-C can reach the prompt's read (EINTR) before the signal task exits: the same exit, 130.
    let dialoguer::Error::IO(io) = &e;
    if io.kind() == std::io::ErrorKind::Interrupted {
        eprintln!("\ninterrupted: nothing was changed");
        std::process::exit(130);
    }
    usage(format!("prompt cancelled ({e}); nothing was changed"))
}

/// What the wizard says before its first question: whom it talks to, and what already records the account.
pub fn header(facts: &Facts) -> String {
    let mut h = format!(
        "Account {} ({}) · caller {}\nHome region {} · {} regions enabled\n",
        facts.account,
        facts.partition,
        facts.caller,
        facts.home,
        facts.enabled_regions.len()
    );
    if facts.trails.is_empty() {
        h.push_str("No trail records this account yet.\n");
    } else {
        h.push_str("Trails already recording this account (a second trail of ours bills a second copy of management events):\n");
        for t in &facts.trails {
            h.push_str(&format!("  · {}\n", crate::resources::reuse::describe(t, &facts.account)));
        }
    }
    h
}

/// A prompt's answer checked by the same validator as its flag: the error text is the flag's.
fn checked<T>(f: impl Fn(&str) -> anyhow::Result<T>) -> impl FnMut(&String) -> Result<(), String> {
    move |s: &String| f(s.trim()).map(|_| ()).map_err(|e| e.to_string())
}

/// Fill the missing settings: with `yes`, each default; else ask on stderr, each answer checked where it is typed.
/// Order: name → reuse (when trails exist) → trail mode → regions (per-region only) → bucket → KMS key → log
/// retention → OpenSearch → for a new domain: instance type, then count (each with its monthly estimate) →
/// backfill.
pub fn fill(d: &mut Draft, facts: &Facts, yes: bool, dry_run: bool) -> anyhow::Result<()> {
    let theme = ColorfulTheme::default();
    let term = console::Term::stderr();
    let ask = !yes;
    if ask {
        let _ = term.write_line(&header(facts));
    }
    if d.name.is_none() {
        d.name = Some(if ask {
            Input::<String>::with_theme(&theme)
                .with_prompt("Stack name (prefix of every resource, value of the trailsetup:stack tag)")
                .default(DEFAULT_NAME.into())
                .validate_with(checked(crate::init::validate_name))
                .interact_text_on(&term)
                .map_err(prompt_err)?
                .trim()
                .to_string()
        } else {
            DEFAULT_NAME.into()
        });
    }
    // right after the name: reuse a trail that already records this account? (default: the best one)
    if d.use_trail.is_none() {
        let stack = d.name.clone().unwrap_or_else(|| DEFAULT_NAME.into());
        let candidates: Vec<&crate::resources::reuse::Reuse> = facts.trails.iter().filter(|t| !own_trail(&stack, t)).collect();
        if !candidates.is_empty() {
            let owned: Vec<crate::resources::reuse::Reuse> = candidates.iter().map(|t| (*t).clone()).collect();
            let best = crate::resources::reuse::best(&owned).map(|b| b.arn.clone());
            let default = best.as_ref().and_then(|b| candidates.iter().position(|t| t.arn == *b)).unwrap_or(candidates.len());
            let pick = if ask {
                let mut items: Vec<String> =
                    candidates.iter().map(|t| format!("reuse {}", crate::resources::reuse::describe(t, &facts.account))).collect();
                items.push("create a new trail and bucket (CloudTrail bills a second copy of management events)".into());
                Select::with_theme(&theme)
                    .with_prompt("This account already has trails. Hang the pipeline from one (it is never modified)?")
                    .items(&items)
                    .default(default)
                    .interact_on(&term)
                    .map_err(prompt_err)?
            } else {
                default
            };
            d.use_trail = Some(candidates.get(pick).map(|t| t.arn.clone()).unwrap_or_else(|| "none".into()));
        }
    }
    let reusing = d.use_trail.as_deref().is_some_and(|t| t != "none");
    // the mode before the regions: a multi-region trail records every region
    if d.trail_mode.is_none() {
        d.trail_mode = Some(if ask && !reusing {
            let i = Select::with_theme(&theme)
                .with_prompt("Trail mode")
                .items(&["multi-region: one trail covering every region (recommended)", "per-region: one trail per region"])
                .default(0)
                .interact_on(&term)
                .map_err(prompt_err)?;
            if i == 0 { TrailMode::MultiRegion } else { TrailMode::PerRegion }
        } else {
            TrailMode::MultiRegion
        });
    }
    if d.regions.is_none() {
        let per_region = d.trail_mode == Some(TrailMode::PerRegion);
        d.regions = Some(if ask && !reusing && per_region && !facts.enabled_regions.is_empty() {
            let picked = MultiSelect::with_theme(&theme)
                .with_prompt("Regions to record, one trail each (space toggles; all enabled regions by default)")
                .items(&facts.enabled_regions)
                .defaults(&vec![true; facts.enabled_regions.len()])
                .interact_on(&term)
                .map_err(prompt_err)?;
            if picked.len() == facts.enabled_regions.len() || picked.is_empty() {
                "all".into()
            } else {
                picked.iter().map(|i| facts.enabled_regions[*i].clone()).collect::<Vec<_>>().join(",")
            }
        } else {
            "all".into()
        });
    }
    if ask && d.trail_mode == Some(TrailMode::PerRegion) {
        let picked = d.regions.as_deref().unwrap_or("all");
        if picked != "all" && !crate::settings::split_list(picked).iter().any(|r| r == "us-east-1" || r == "cn-north-1" || r == "us-gov-west-1") {
            let _ = term.write_line(
                "  note: global service events (IAM, STS, CloudFront) are delivered to us-east-1 only; without a trail there \
                 they will not be recorded",
            );
        }
    }
    if d.bucket.is_none() && !reusing {
        let def = format!("{}-{}-{}", d.name.as_deref().unwrap_or(DEFAULT_NAME), facts.account, facts.home);
        d.bucket = Some(if ask {
            let mut items = vec![format!("{def} (new, or adopted if it is already yours)")];
            items.extend(facts.buckets.iter().map(|b| format!("{b} (yours; holds CloudTrail logs)")));
            items.push("another name…".into());
            let i = if items.len() > 2 {
                Select::with_theme(&theme).with_prompt("S3 bucket for the logs").items(&items).default(0).interact_on(&term).map_err(prompt_err)?
            } else {
                items.len() - 1
            };
            if i == 0 && items.len() > 2 {
                def
            } else if i <= facts.buckets.len() && i > 0 {
                facts.buckets[i - 1].clone()
            } else {
                Input::<String>::with_theme(&theme)
                    .with_prompt("S3 bucket for the logs (adopted if it exists and is yours)")
                    .default(def)
                    .validate_with(checked(crate::init::validate_bucket))
                    .interact_text_on(&term)
                    .map_err(prompt_err)?
                    .trim()
                    .to_string()
            }
        } else {
            def
        });
    }
    if d.kms_key.is_none() {
        d.kms_key = Some(if ask && !reusing {
            let mut items = vec!["none: SSE-S3 and service-managed encryption".to_string()];
            items.extend(facts.kms_aliases.iter().map(|a| format!("{a} (customer managed key in {})", facts.home)));
            items.push("another key id, ARN or alias…".into());
            let i = Select::with_theme(&theme).with_prompt("KMS key for SSE-KMS").items(&items).default(0).interact_on(&term).map_err(prompt_err)?;
            if i == 0 {
                None
            } else if i <= facts.kms_aliases.len() {
                Some(facts.kms_aliases[i - 1].clone())
            } else {
                let k = Input::<String>::with_theme(&theme)
                    .with_prompt("KMS key (id, ARN, alias/NAME, or REGION=KEY,…)")
                    .interact_text_on(&term)
                    .map_err(prompt_err)?;
                Some(k.trim().to_string()).filter(|k| !k.is_empty())
            }
        } else {
            None
        });
    }
    if d.log_retention_days.is_none() {
        d.log_retention_days = Some(if ask && !reusing {
            let labels: Vec<String> = crate::init::RETENTIONS.iter().map(|r| format!("{r} days")).collect();
            let default = crate::init::RETENTIONS.iter().position(|r| *r == DEFAULT_RETENTION).unwrap_or(0);
            let i = Select::with_theme(&theme)
                .with_prompt("Retention of the CloudWatch Logs copy (the S3 archive is kept)")
                .items(&labels)
                .default(default)
                .max_length(8)
                .interact_on(&term)
                .map_err(prompt_err)?;
            crate::init::RETENTIONS[i]
        } else {
            DEFAULT_RETENTION
        });
    }
    if d.opensearch_domain.is_none() && d.opensearch_url.is_none() {
        let name = d.name.clone().unwrap_or_else(|| DEFAULT_NAME.into());
        if ask {
            let mut items: Vec<String> = facts.domains.iter().map(|x| format!("use the domain {x} (adopted: our access added)")).collect();
            items.push(format!("create the Amazon OpenSearch Service domain {name}"));
            items.push("use an existing endpoint URL".to_string());
            let i = Select::with_theme(&theme)
                .with_prompt("OpenSearch")
                .items(&items)
                .default(facts.domains.len())
                .interact_on(&term)
                .map_err(prompt_err)?;
            if i < facts.domains.len() {
                d.opensearch_domain = Some(facts.domains[i].clone());
            } else if i == facts.domains.len() {
                d.opensearch_domain = Some(name);
            } else {
                d.opensearch_url = Some(
                    Input::<String>::with_theme(&theme)
                        .with_prompt("OpenSearch endpoint URL")
                        .validate_with(|s: &String| match crate::opensearch::client::parse_url(s.trim()) {
                            Ok(u) if u.host_str().is_some() => Ok(()),
                            Ok(_) => Err(format!("{s:?} is not an http(s) URL such as https://search.example.com")),
                            Err(e) => Err(format!("{e:#}")),
                        })
                        .interact_text_on(&term)
                        .map_err(prompt_err)?
                        .trim()
                        .to_string(),
                );
            }
        } else {
            d.opensearch_domain = Some(name);
        }
    }
    // a domain that does not exist yet: its size, with what it costs a month
    let new_domain = d.opensearch_url.is_none() && d.opensearch_domain.as_ref().is_none_or(|x| !facts.domains.contains(x));
    let asking_size = ask && new_domain && (d.domain_instance_type.is_none() || d.domain_instance_count.is_none());
    if d.domain_instance_type.is_none() {
        d.domain_instance_type = Some(if ask && new_domain {
            let types = crate::resources::pricing::INSTANCE_TYPES;
            let labels: Vec<String> = types.iter().map(crate::resources::pricing::choice_label).collect();
            let default = types.iter().position(|t| t.name == crate::resources::opensearch::INSTANCE_TYPE).unwrap_or(0);
            let prompt = match crate::resources::pricing::region_caveat(&facts.home) {
                None => format!("Data node instance type (monthly estimate: {} on-demand)", crate::resources::pricing::PRICED_REGION),
                Some(_) => format!(
                    "Data node instance type (monthly estimate at {} on-demand prices; {} differs)",
                    crate::resources::pricing::PRICED_REGION,
                    facts.home
                ),
            };
            let i = Select::with_theme(&theme).with_prompt(prompt).items(&labels).default(default).interact_on(&term).map_err(prompt_err)?;
            types[i].name.to_string()
        } else {
            crate::resources::opensearch::INSTANCE_TYPE.to_string()
        });
    }
    if d.domain_instance_count.is_none() {
        d.domain_instance_count = Some(if ask && new_domain {
            let ty = d.domain_instance_type.clone().unwrap_or_else(|| crate::resources::opensearch::INSTANCE_TYPE.into());
            let n = Input::<String>::with_theme(&theme)
                .with_prompt("Number of data nodes (1; or spread over Availability Zones: even → 2 zones, multiple of 3 → 3 zones)")
                .default(crate::resources::opensearch::INSTANCE_COUNT.to_string())
                .validate_with(checked(|s| crate::init::parse_domain_instance_count(s, &ty)))
                .interact_text_on(&term)
                .map_err(prompt_err)?;
            crate::init::parse_domain_instance_count(n.trim(), &ty)?
        } else {
            crate::resources::opensearch::INSTANCE_COUNT
        });
    }
    // the total, once both are known
    if asking_size {
        if let (Some(t), Some(n)) = (d.domain_instance_type.as_deref().and_then(crate::resources::pricing::lookup), d.domain_instance_count) {
            let e = crate::resources::pricing::estimate(t, n, crate::resources::opensearch::EBS_GIB);
            let _ = term.write_line(&format!("  {n} data node{} in {} · {}", if n == 1 { "" } else { "s" }, zones_phrase(n), e.text(&facts.home)));
        }
    }
    if d.backfill.is_none() && !dry_run {
        d.backfill = Some(if ask {
            Confirm::with_theme(&theme)
                .with_prompt("After apply, load the logs already in the bucket into OpenSearch?")
                .default(true)
                .interact_on(&term)
                .map_err(prompt_err)?
        } else {
            true
        });
    }
    Ok(())
}

/// `one Availability Zone` / `2 Availability Zones`.
pub fn zones_phrase(count: i32) -> String {
    match crate::resources::opensearch::availability_zones(count) {
        Some(z) if z > 1 => format!("{z} Availability Zones"),
        _ => "one Availability Zone".into(),
    }
}

/// Ask a yes/no question, default no (only called with a TTY and without --yes).
pub fn confirm(prompt: &str) -> anyhow::Result<bool> {
    Confirm::with_theme(&ColorfulTheme::default()).with_prompt(prompt).default(false).interact_on(&console::Term::stderr()).map_err(prompt_err)
}

/// Ask to apply the plan (only called with a TTY and without --yes).
pub fn confirm_apply() -> anyhow::Result<bool> {
    Confirm::with_theme(&ColorfulTheme::default())
        .with_prompt("Apply this plan?")
        .default(false)
        .interact_on(&console::Term::stderr())
        .map_err(prompt_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(home: &str, domains: &[&str]) -> Facts {
        Facts {
            account: "123456789012".into(),
            home: home.into(),
            enabled_regions: vec![home.into()],
            trails: vec![],
            caller: "arn:aws:iam::123456789012:user/admin".into(),
            partition: "aws".into(),
            buckets: vec![],
            kms_aliases: vec![],
            domains: domains.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn domain_size_questions_and_defaults() {
        // without a terminal: the size questions are named for a domain, not for an endpoint URL
        let d = Draft::default();
        let m = d.missing(false);
        assert!(m.contains(&7) && m.contains(&8) && m.contains(&9), "{m:?}");
        assert_eq!(QUESTIONS[7].0, "--domain-instance-type (a new domain)");
        assert_eq!(QUESTIONS[8].2, "domain_instance_count");
        let d = Draft { opensearch_url: Some("https://search.example.com".into()), ..Default::default() };
        assert!(!d.missing(false).contains(&7) && !d.missing(false).contains(&8));
        let d = Draft { domain_instance_type: Some("m6g.large.search".into()), domain_instance_count: Some(2), ..Default::default() };
        assert!(!d.missing(true).contains(&7) && !d.missing(true).contains(&8));
        // --yes: the defaults, one t3.small.search
        let mut d = Draft::default();
        fill(&mut d, &facts("eu-west-1", &[]), true, true).unwrap();
        assert_eq!((d.domain_instance_type.as_deref(), d.domain_instance_count), (Some("t3.small.search"), Some(1)));
        // given values are kept
        let mut d = Draft { domain_instance_type: Some("r6g.large.search".into()), domain_instance_count: Some(3), ..Default::default() };
        fill(&mut d, &facts("us-east-1", &["trailsetup"]), true, true).unwrap();
        assert_eq!((d.domain_instance_type.as_deref(), d.domain_instance_count), (Some("r6g.large.search"), Some(3)));
        assert_eq!(zones_phrase(1), "one Availability Zone");
        assert_eq!(zones_phrase(4), "2 Availability Zones");
        assert_eq!(zones_phrase(9), "3 Availability Zones");
    }
}
