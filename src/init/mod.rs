//! `trailsetup init`: settings → (preflight: identity, regions) → wizard → plan → confirm → apply → verify →
//! state file → offer backfill. `--dry-run` stops after printing the plan; `--offline` makes no call at all.

use anyhow::Context as _;
use serde_json::json;

use crate::cli::{BackfillArgs, InitArgs, OpenSearchAuth, SinkArgs};
use crate::error::{usage, Exit};
use crate::output::Output;
use crate::plan::Header;
use crate::resources::{self, Aws, Ctx, OpenSearchTarget};
use crate::settings::{split_list, Common};
use crate::state::State;
use crate::wizard::{self, Draft, Facts};

pub const PLACEHOLDER_ACCOUNT: &str = "<account>";

/// flags/env (clap) > config file; `None` = not given anywhere.
pub fn draft(common: &Common, a: &InitArgs) -> Draft {
    let f = &common.file;
    Draft {
        name: a.name.clone().or_else(|| f.name.clone()),
        regions: a.regions.clone().or_else(|| f.regions.as_ref().map(|r| r.joined())),
        trail_mode: a.trail_mode.or(f.trail_mode),
        bucket: a.bucket.clone().or_else(|| f.bucket.clone()),
        kms_key: a.kms_key.clone().or_else(|| f.kms_key.clone()).map(|k| Some(k).filter(|k| !k.is_empty())),
        log_retention_days: a.log_retention_days.or(f.log_retention_days),
        opensearch_domain: a.opensearch_domain.clone().or_else(|| if a.opensearch_url.is_some() { None } else { f.opensearch_domain.clone() }),
        opensearch_url: a.opensearch_url.clone().or_else(|| if a.opensearch_domain.is_some() { None } else { f.opensearch_url.clone() }),
        use_trail: a.use_trail.clone().or_else(|| f.use_trail.clone()),
        domain_instance_type: a.domain_instance_type.clone().or_else(|| f.domain_instance_type.clone()),
        domain_instance_count: a.domain_instance_count.or(f.domain_instance_count),
        backfill: if a.backfill {
            Some(true)
        } else if a.no_backfill {
            Some(false)
        } else {
            f.backfill
        },
    }
}

/// Region name shape: `us-east-1`, `us-gov-west-1`, `cn-north-1`, `eu-central-2`.
pub fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}


/// Valid CloudWatch Logs retention values.
pub const RETENTIONS: &[i32] = &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

pub fn validate_name(n: &str) -> anyhow::Result<()> {
    // CloudTrail trail names are 3-128 characters ("CreateTrail" API reference) and the multi-region trail is
    // named like the stack
    let ok = (3..=32).contains(&n.len())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-');
    if !ok {
        return Err(usage(format!(
            "--name {n:?}: a stack name is 3-32 characters of a-z, 0-9 and -, starting with a letter (it names the trail and prefixes bucket, \
             queue and role names); env TRAILSETUP_NAME, config key name"
        )));
    }
    Ok(())
}

pub fn validate_bucket(b: &str) -> anyhow::Result<()> {
    let ok = (3..=63).contains(&b.len())
        && b.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok && !b.contains(PLACEHOLDER_ACCOUNT) {
        return Err(usage(format!(
            "--bucket {b:?} is not a valid S3 bucket name (3-63 characters of a-z, 0-9, - and .); env TRAILSETUP_BUCKET, config key bucket"
        )));
    }
    Ok(())
}

/// `--domain-instance-type`: one of the current-generation types trailsetup can estimate (the flag's check and the
/// wizard's).
pub fn validate_domain_instance_type(t: &str) -> anyhow::Result<&'static resources::pricing::InstanceType> {
    resources::pricing::lookup(t.trim()).ok_or_else(|| {
        usage(format!(
            "--domain-instance-type {t:?}: a new domain uses one of the current-generation types trailsetup can estimate: {} \
             (for another type, create the domain yourself and adopt it with --opensearch-domain NAME); env \
             TRAILSETUP_DOMAIN_INSTANCE_TYPE, config key domain_instance_type",
            resources::pricing::names().join(", ")
        ))
    })
}

/// `--domain-instance-count` for data nodes of `instance_type`: 1, or a count that spreads evenly over 2 or 3
/// Availability Zones ([`resources::opensearch::availability_zones`]), within the quotas (at most 80 data nodes; 10 of
/// a T3 type). Returns the number of zones.
pub fn validate_domain_instance_count(n: i32, instance_type: &str) -> anyhow::Result<i32> {
    use resources::opensearch::{availability_zones, counts_that_work, MAX_BURSTABLE_INSTANCES, MAX_INSTANCES};
    let burstable = resources::pricing::lookup(instance_type).is_some_and(|t| t.burstable());
    let max = if burstable { MAX_BURSTABLE_INSTANCES } else { MAX_INSTANCES };
    let why = if n < 1 {
        "a domain needs at least one data node".to_string()
    } else if n > max && burstable {
        format!("{instance_type} domains have at most {max} data nodes (T3 is for small domains; m6g or r6g for more)")
    } else if n > max {
        format!("a domain has at most {max} data nodes (Amazon OpenSearch Service quotas: instances per domain)")
    } else if let Some(z) = availability_zones(n) {
        return Ok(z);
    } else {
        format!("{n} data nodes cannot be spread evenly over Availability Zones (two zones take an even count, three zones a multiple of 3)")
    };
    Err(usage(format!(
        "--domain-instance-count {n}: {why}; counts that work: {} (1: one zone; even: 2 zones; multiple of 3: 3 zones); env \
         TRAILSETUP_DOMAIN_INSTANCE_COUNT, config key domain_instance_count",
        counts_that_work(max)
    )))
}

/// A typed count, checked like the flag's (the wizard's check).
pub fn parse_domain_instance_count(s: &str, instance_type: &str) -> anyhow::Result<i32> {
    let n: i32 = s.trim().parse().map_err(|_| {
        usage(format!(
            "--domain-instance-count {s:?}: a whole number of data nodes, such as 1, 2 or 3; env TRAILSETUP_DOMAIN_INSTANCE_COUNT, config \
             key domain_instance_count"
        ))
    })?;
    validate_domain_instance_count(n, instance_type)?;
    Ok(n)
}

pub use crate::aws::{enabled_regions, identity, partition_of_region};

fn home_region(common: &Common) -> Option<String> {
    common.region.clone().or_else(|| {
        ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    })
}

/// `--index-granularity auto` for a new stack: an endpoint's installed template keeps its layout, else the cluster's
/// shard capacity decides (`opensearch::layout::for_capacity`); a domain to create is sized from its planned nodes
/// at OpenSearch Service's default of 1,000 shards per node; an endpoint that does not answer gets daily indices.
async fn auto_granularity(ctx: &resources::Ctx, aws: Option<&Aws>) -> crate::opensearch::layout::Granularity {
    use crate::opensearch::layout::{self, Granularity};
    match (&ctx.opensearch, aws.and_then(|a| a.search.as_ref())) {
        (OpenSearchTarget::Url(_), Some(client)) => {
            match crate::opensearch::template::recorded_granularity(client, &ctx.index_prefix).await {
                Ok(Some(g)) => return g,
                Ok(None) => {}
                Err(e) => {
                    tracing::info!("index layout: the endpoint's template could not be read ({e:#}); daily indices");
                    return Granularity::Day;
                }
            }
            match layout::capacity(client).await {
                Ok((nodes, max)) => layout::for_capacity(nodes, max),
                Err(e) => {
                    tracing::info!("index layout: the cluster's capacity could not be read ({e:#}); daily indices");
                    Granularity::Day
                }
            }
        }
        (OpenSearchTarget::Domain(_), _) => layout::for_capacity(ctx.domain_size.instance_count.max(1) as u64, 1000),
        (OpenSearchTarget::Url(_), None) => Granularity::Day,
    }
}

/// How an `init` run ends: done, or with the existing logs to load next. The backfill is another command: the
/// dispatcher (`crate::run`) runs it, so that no command module calls another.
#[derive(Debug)]
pub enum Outcome {
    Done(Exit),
    /// Load the logs already in the stack's bucket with `args`; `doc` is the plan document (with `--output json`)
    /// that the backfill's summary goes into, under `"backfill"`, before it is printed.
    Backfill { args: Box<BackfillArgs>, doc: Option<serde_json::Value> },
}

pub async fn run(common: &Common, a: &InitArgs, out: &Output) -> anyhow::Result<Outcome> {
    // The stack's lock, once taken, is released on every way out: before the backfill when the run went well, here
    // after an error or an early return, by the signal handler on Ctrl-C/SIGTERM.
    let held = crate::lock::Held::default();
    let r = run_holding(common, a, out, &held).await;
    held.release().await;
    r
}

fn show_cursor() {
    let _ = console::Term::stderr().show_cursor();
}

async fn run_holding(common: &Common, a: &InitArgs, out: &Output, held: &crate::lock::Held) -> anyhow::Result<Outcome> {
    let dry = common.dry_run || common.offline;
    if !dry && a.plan_out.is_some() {
        return Err(usage("--plan-out saves the plan of a dry run: add --dry-run (then apply it with `init --yes --plan FILE`)"));
    }
    if !dry && a.detailed_exitcode {
        return Err(usage("--detailed-exitcode goes with --dry-run (exit 4: changes pending, 0: none)"));
    }
    if a.plan.is_some() && common.offline {
        return Err(usage("--plan compares the saved plan with the account: it cannot be used with --offline"));
    }
    if dry && a.lock.force_unlock {
        return Err(usage("--force-unlock removes the stack's lock before a run that changes it; a dry run takes no lock (drop --dry-run)"));
    }
    let mut d = draft(common, a);
    // Without a TTY and without --yes: fail at once, before any call, naming what to pass.
    if !common.yes && !wizard::interactive() {
        let missing = d.missing(dry);
        if !dry || !missing.is_empty() {
            return Err(wizard::no_tty_error(&missing, !dry));
        }
    }
    if common.offline && !common.dry_run {
        tracing::info!("--offline implies --dry-run: nothing will be applied");
    }
    if let Some(n) = &d.name {
        validate_name(n)?;
    }
    if let Some(r) = d.log_retention_days {
        if !RETENTIONS.contains(&r) {
            return Err(usage(format!(
                "--log-retention-days {r}: CloudWatch Logs accepts only {RETENTIONS:?}; env TRAILSETUP_LOG_RETENTION_DAYS, config key log_retention_days"
            )));
        }
    }
    if let Some(t) = &d.domain_instance_type {
        validate_domain_instance_type(t)?;
    }
    if let Some(n) = d.domain_instance_count {
        // the type's own limit once it is known (below, after the wizard)
        validate_domain_instance_count(n, d.domain_instance_type.as_deref().unwrap_or_default())?;
    }
    let index_prefix = a.index_prefix.clone().or_else(|| common.file.index_prefix.clone()).unwrap_or_else(|| crate::opensearch::DEFAULT_PREFIX.into());
    crate::opensearch::template::validate_prefix(&index_prefix)?;

    // --- preflight (read-only) ---
    if let Some(acct) = a.account.as_deref().or(common.file.account.as_deref()) {
        if acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()) {
            return Err(usage(format!(
                "--account {acct:?}: an AWS account id is 12 digits (env TRAILSETUP_ACCOUNT, config key account)"
            )));
        }
    }
    let mut placeholders = Vec::new();
    let (cfg, account, partition, caller, enabled, opted_in, home) = if common.offline {
        let home = home_region(common).unwrap_or_else(|| {
            placeholders.push("home_region".to_string());
            "us-east-1".into()
        });
        let account = match a.account.clone().or_else(|| common.file.account.clone()) {
            Some(acct) => acct,
            None => {
                placeholders.push("account".to_string());
                PLACEHOLDER_ACCOUNT.to_string()
            }
        };
        let partition = partition_of_region(&home).to_string();
        let caller = format!("arn:{partition}:iam::{account}:role/<caller>");
        placeholders.push("caller".to_string());
        let opted: Vec<String> = resources::OPT_IN_REGIONS.iter().map(|r| r.to_string()).collect();
        (None, account, partition, caller, Vec::new(), opted, home)
    } else {
        let cfg = crate::aws::sdk_config(common).await;
        let home = cfg
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| usage("no home region: pass --region (or set AWS_REGION, config key region)"))?;
        let (account, partition, caller) = identity(&cfg).await?;
        if let Some(want) = a.account.clone().or_else(|| common.file.account.clone()) {
            if want != account {
                return Err(usage(format!(
                    "--account {want} does not match the credentials' account {account}; drop --account or use other credentials"
                )));
            }
        }
        let (enabled, opted) = enabled_regions(&cfg, &partition).await?;
        (Some(cfg), account, partition, caller, enabled, opted, home)
    };
    if !common.offline && !enabled.contains(&home) {
        return Err(usage(format!(
            "home region {home} is not enabled for account {account} (enabled: {}); pass another --region",
            enabled.join(", ")
        )));
    }

    // Ctrl-C while asking (or applying): the cursor back (a select prompt hides it), a word on what was done, the
    // stack's lock released when it is held, exit 130 (143 on SIGTERM). Without prompts, the same from the moment
    // the lock is taken (below).
    let applying = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prompting = wizard::interactive() && !common.yes;
    if prompting {
        crate::lock::release_on_signal(held, applying.clone(), "init", show_cursor);
    }

    // --- discovery: the trails that already record this account (read-only) ---
    let found = match &cfg {
        Some(cfg) => resources::reuse::discover(&Aws { cfg: cfg.clone(), search: None, fresh_domain: false }, &home).await?,
        None => Vec::new(),
    };
    // a stack set up before keeps its choices (a second run is a no-op, whatever trails appeared since)
    let mut prior_granularity = None;
    {
        let stack = d.name.clone().or_else(|| a.name.clone()).or_else(|| common.file.name.clone()).unwrap_or_else(|| wizard::DEFAULT_NAME.into());
        // an unreadable state file stops init before anything changes: overwriting it would lose what destroy
        // relies on (`created`); without a state file here (a CI runner), the stack's record in the account
        let before = match &cfg {
            Some(c) => crate::stack::load(common, Some(&stack), Some(c)).await?.map(|(s, _)| s),
            None => State::load(&common.state_dir, Some(&stack))?,
        };
        if let Some(s) = before {
            // made before layouts existed: daily indices
            prior_granularity = Some(s.index_granularity.unwrap_or_default());
            if d.use_trail.is_none() {
                d.use_trail = Some(s.use_trail.map(|t| t.arn).unwrap_or_else(|| "none".into()));
            }
        }
    }

    // --- wizard: only the missing values ---
    let asking = !common.yes && wizard::interactive();
    let (buckets, kms_aliases, domains) = match (&cfg, asking) {
        (Some(cfg), true) => choices(&Aws { cfg: cfg.clone(), search: None, fresh_domain: false }, &home).await,
        _ => Default::default(),
    };
    let facts = Facts {
        account: account.clone(),
        home: home.clone(),
        enabled_regions: enabled.clone(),
        trails: found.clone(),
        caller: caller.clone(),
        partition: partition.clone(),
        buckets,
        kms_aliases,
        domains,
    };
    wizard::fill(&mut d, &facts, common.yes || !wizard::interactive(), dry)?;
    let stack = d.name.clone().unwrap_or_else(|| wizard::DEFAULT_NAME.into());
    validate_name(&stack)?;
    let domain_size = resources::opensearch::DomainSize {
        instance_type: d.domain_instance_type.clone().unwrap_or_else(|| resources::opensearch::INSTANCE_TYPE.into()).trim().to_string(),
        instance_count: d.domain_instance_count.unwrap_or(resources::opensearch::INSTANCE_COUNT),
    };
    validate_domain_instance_type(&domain_size.instance_type)?;
    validate_domain_instance_count(domain_size.instance_count, &domain_size.instance_type)?;
    let regions_spec = d.regions.clone().unwrap_or_else(|| "all".into());
    let regions: Vec<String> = if regions_spec.trim() == "all" {
        if common.offline {
            placeholders.push("regions".to_string());
            vec![home.clone()]
        } else {
            enabled.clone()
        }
    } else {
        let mut wanted = split_list(&regions_spec);
        wanted.dedup();
        for r in &wanted {
            let known = if common.offline { looks_like_region(r) } else { enabled.contains(r) };
            if !known {
                let list = if common.offline { "a region name such as us-east-1".to_string() } else { enabled.join(", ") };
                return Err(usage(format!(
                    "unknown region {r:?} in --regions (env TRAILSETUP_REGIONS, config key regions): not enabled for this \
                     account, or not in partition {partition}; expected {list}"
                )));
            }
        }
        if wanted.is_empty() {
            return Err(usage("--regions is empty; pass `all` or a comma list"));
        }
        wanted
    };
    let use_trail = d.use_trail.clone().filter(|t| t != "none" && !t.is_empty());
    let source_role = a.source_role.clone().or_else(|| common.file.source_role.clone());
    if let Some(r) = &source_role {
        if !(r.starts_with("arn:") && r.contains(":iam::") && r.contains(":role/")) {
            return Err(usage(format!(
                "--source-role {r}: expected an IAM role ARN (arn:{partition}:iam::<account>:role/<name>); env TRAILSETUP_SOURCE_ROLE, config key source_role"
            )));
        }
        if use_trail.is_none() {
            return Err(usage("--source-role reads a reused trail's bucket in another account: it needs --use-trail"));
        }
    }
    let reuse = match &use_trail {
        None => None,
        Some(spec) => {
            let candidates: Vec<resources::reuse::Reuse> = found.iter().filter(|t| !wizard::own_trail(&stack, t)).cloned().collect();
            let mut r = if common.offline {
                offline_reuse(spec, d.bucket.as_deref(), a.prefix.as_deref(), &partition, &account, &home, &mut placeholders)
            } else {
                resources::reuse::pick(&candidates, spec, d.bucket.as_deref(), a.prefix.as_deref())?
            };
            r.source_role = source_role.clone();
            if !r.visible && r.organization && r.org_id.is_none() {
                if let Some(cfg) = &cfg {
                    r.org_id = resources::reuse::organization_id(&Aws { cfg: cfg.clone(), search: None, fresh_domain: false }, &home).await;
                }
            }
            if let Some(cfg) = &cfg {
                let aws = Aws { cfg: cfg.clone(), search: None, fresh_domain: false };
                if !r.visible {
                    r.bucket_owned = resources::reuse::bucket_owned(&aws, &home, &r.bucket).await?;
                }
                r.bucket_region = resources::reuse::bucket_region(&aws, &home, &r.bucket).await;
                r.forward_logs = resources::reuse::log_group_has_room(&aws, &r, &account, &stack).await?;
            }
            // "Amazon S3 Event Notifications" → supported destinations: the queue must be in the bucket's Region
            if r.uses_bucket_notification() {
                if let Some(br) = r.bucket_region.as_deref().filter(|b| *b != home) {
                    return Err(usage(format!(
                        "trail {} has no SNS topic, so its bucket {} must notify our queue directly, and S3 only notifies a                          queue in the bucket's region ({br}): pass --region {br}",
                        r.name, r.bucket
                    )));
                }
            }
            Some(r)
        }
    };
    let bucket = match &reuse {
        Some(r) => r.bucket.clone(),
        None => d.bucket.clone().unwrap_or_else(|| format!("{stack}-{account}-{home}")),
    };
    if reuse.is_none() {
        validate_bucket(&bucket)?;
    }
    let opensearch = match (&d.opensearch_url, &d.opensearch_domain) {
        (Some(u), _) => {
            crate::opensearch::client::parse_url(u)?;
            OpenSearchTarget::Url(u.clone())
        }
        (None, Some(dn)) => OpenSearchTarget::Domain(dn.clone()),
        (None, None) => OpenSearchTarget::Domain(stack.clone()),
    };
    let master = a.master_user_arn.clone().or_else(|| common.file.master_user_arn.clone());
    if let Some(m) = &master {
        if resources::iam::parse_caller(m) != resources::iam::CallerKind::Principal || !m.contains(":iam::") {
            return Err(usage(format!(
                "--master-user-arn {m}: expected an IAM user or role ARN (arn:{partition}:iam::<account>:role/<path/name>); \
                 env TRAILSETUP_MASTER_USER_ARN, config key master_user_arn"
            )));
        }
    }
    let ingest_roles = a
        .ingest_role
        .clone()
        .or_else(|| common.file.ingest_role.as_ref().map(|r| r.joined()))
        .map(|s| split_list(&s))
        .unwrap_or_default();
    for r in &ingest_roles {
        if !(r.starts_with("arn:") && r.contains(":iam::") && r.contains(":role/")) {
            return Err(usage(format!(
                "--ingest-role {r}: expected an IAM role ARN (arn:{partition}:iam::<account>:role/<name>); env TRAILSETUP_INGEST_ROLE, config key ingest_role"
            )));
        }
    }
    let mut ctx = Ctx {
        stack: stack.clone(),
        account: account.clone(),
        partition: partition.clone(),
        principal_arn: master.clone().unwrap_or_else(|| caller.clone()),
        caller_arn: caller,
        home: home.clone(),
        opt_in_regions: opted_in.into_iter().filter(|r| regions.contains(r) || *r == home).collect(),
        regions: regions.clone(),
        trail_mode: d.trail_mode.unwrap_or(crate::cli::TrailMode::MultiRegion),
        bucket,
        kms: None,
        kms_policy_external: a.no_kms_key_policy || common.file.no_kms_key_policy.unwrap_or(false),
        retention_days: d.log_retention_days.unwrap_or(wizard::DEFAULT_RETENTION),
        opensearch,
        domain_size,
        opensearch_auth: a.opensearch_auth.or(common.file.opensearch_auth),
        index_prefix: index_prefix.clone(),
        // settled below, once the endpoint can be asked
        index_granularity: Default::default(),
        ingest_roles,
        reuse,
        basic_auth: None,
    };
    // basic auth: the user and password the forwarder's secret will hold, both required before anything is read or
    // changed (a dry run too); never an empty password
    if ctx.forwarder_auth() == "basic" {
        ctx.basic_auth = Some(resources::secretsmanager::BasicAuth::from_env()?);
    }
    let os_auth = ctx.opensearch_auth;
    let aws = match &cfg {
        None => None,
        Some(cfg) => {
            let search = match &ctx.opensearch {
                OpenSearchTarget::Url(u) => {
                    let os = crate::cli::OpenSearchArgs {
                        opensearch_url: Some(u.clone()),
                        opensearch_auth: os_auth,
                        index_prefix: Some(index_prefix.clone()),
                        ..Default::default()
                    };
                    let args = SinkArgs { os, ..Default::default() };
                    Some(crate::opensearch::connect(common, &args, None, Some(cfg)).await?.0)
                }
                OpenSearchTarget::Domain(_) => None,
            };
            Some(Aws { cfg: cfg.clone(), search, fresh_domain: false })
        }
    };
    // the caller as an IAM principal (an assumed-role session becomes its role, with its path)
    // (only a domain names it: as master user and in its access policy)
    if master.is_none() && matches!(ctx.opensearch, OpenSearchTarget::Domain(_)) {
        match &aws {
            Some(aws) => ctx.principal_arn = resources::iam::principal_of(aws, &home, &ctx.caller_arn).await?,
            None => {
                if let resources::iam::CallerKind::AssumedRole { partition, account, role } = resources::iam::parse_caller(&ctx.caller_arn) {
                    ctx.principal_arn = format!("arn:{partition}:iam::{account}:role/{role}");
                    placeholders.push("master_user_path".to_string());
                }
            }
        }
    }
    // --kms-key: a key ARN per region that needs one
    if let Some(spec) = d.kms_key.clone().flatten() {
        let needed = resources::kms::regions_needing_keys(&home, &ctx.key_regions());
        let keys = resources::kms::resolve(&spec, &partition, &account, &needed, aws.as_ref()).await?;
        if !keys.resolved {
            placeholders.push("kms_key".to_string());
        }
        ctx.kms = Some(keys);
    }

    // the index layout: as asked, else the stack's own, else what fits the cluster
    let choice = a.index_granularity.or(common.file.index_granularity).unwrap_or(crate::opensearch::layout::Choice::Auto);
    ctx.index_granularity = match (choice.fixed(), prior_granularity) {
        (Some(g), _) | (None, Some(g)) => g,
        (None, None) => auto_granularity(&ctx, aws.as_ref()).await,
    };

    // --- the stack's lock (runs that may change the account only) ---
    // Taken before the plan is computed: the plan shown, checked against a saved one (--plan) and applied is what
    // the account holds while no other run changes it, so the second of two concurrent runs applies nothing twice.
    let mut on_signal = None;
    if let (false, Some(aws)) = (dry, &aws) {
        held.set(crate::lock::acquire(&aws.at(&home), &stack, &ctx.caller_arn, "trailsetup init", &common.lock(&a.lock), out).await?);
        if !prompting {
            on_signal = Some(crate::lock::release_on_signal(held, applying.clone(), "init", || {}));
        }
    }

    // --- plan ---
    let mut warnings = Vec::new();
    let others: Vec<&resources::reuse::Reuse> = found.iter().filter(|t| !wizard::own_trail(&stack, t)).collect();
    if ctx.reuse.is_none() {
        for t in others.iter().filter(|t| t.management_events != Some(false)) {
            warnings.push(format!(
                "trail {} already records management events here: CloudTrail bills the second copy this stack's trail adds                  (reuse it instead: --use-trail {})",
                t.name, t.name
            ));
        }
    }
    if ctx.reuse.is_none() && ctx.trail_mode == crate::cli::TrailMode::MultiRegion && regions_spec.trim() != "all" {
        warnings.push("a multi-region trail records every region; --regions only narrows per-region mode and the state file".into());
    }
    if let Some(w) = ctx.global_events_warning().filter(|_| ctx.reuse.is_none()) {
        warnings.push(w);
    }
    let observed = match &aws {
        Some(a) => resources::observe(&ctx, a).await?,
        None => resources::Observed::default(),
    };
    warnings.extend(resources::reuse::warnings(&ctx, &observed.reuse));
    let plan = resources::changes(&ctx, &observed)?;
    warnings.extend(resources::kms::warnings(&ctx, &observed.key_policies));
    if let Some(w) = resources::opensearch::unreachable_warning(&plan) {
        warnings.push(w);
    }
    if let Some(w) = resources::opensearch::dashboards_warning(&plan) {
        warnings.push(w);
    }
    // the plan must hold AWS's documented rules before anyone sees it as something to apply
    let report = crate::rules::check(&ctx, &plan);
    if !report.violations.is_empty() {
        return Err(anyhow::anyhow!(
            "internal error: the plan breaks AWS's documented rules (nothing was changed):\n{}",
            report.violations.join("\n")
        ));
    }
    let header = Header {
        stack: stack.clone(),
        account: account.clone(),
        partition: partition.clone(),
        home_region: home.clone(),
        regions: regions.clone(),
        trail_mode: match (&ctx.reuse, ctx.trail_mode) {
            (Some(_), _) => "reused".into(),
            (None, crate::cli::TrailMode::MultiRegion) => "multi-region".into(),
            (None, crate::cli::TrailMode::PerRegion) => "per-region".into(),
        },
        placeholders,
        warnings,
        existing_trails: others.iter().map(|t| resources::reuse::describe(t, &account)).collect(),
        reused_trail: ctx.reuse.as_ref().map(|r| format!("{} ({})", r.name, r.arn)),
        owner_actions: resources::reuse::owner_actions(&ctx),
    };
    if !out.json {
        out.line(plan.render_human(&header, common.verbose > 0));
    }
    // a saved plan: applied only when the account and settings give exactly the same changes
    if let Some(p) = &a.plan {
        let saved = crate::plan::saved::load(p)?;
        if saved.stack != stack || saved.account != account {
            return Err(usage(format!(
                "--plan {} is for stack {} of account {}, this run is for stack {stack} of account {account}; nothing was changed",
                p.display(),
                saved.stack,
                saved.account
            )));
        }
        let diff = crate::plan::saved::differences(&saved.changes, &plan);
        if !diff.is_empty() {
            return Err(anyhow::anyhow!(
                "the account (or the settings) no longer give the plan saved in {}; nothing was changed. What moved:\n  {}\n\
                 Compute and review a new plan (`trailsetup --dry-run --plan-out FILE`), then apply that one.",
                p.display(),
                diff.join("\n  ")
            ));
        }
        out.note(format!("The plan equals the one saved in {}.", p.display()));
    }
    if dry {
        if let Some(p) = &a.plan_out {
            crate::plan::saved::save(p, &stack, &account, &plan)?;
            out.note(format!("Plan saved to {} (apply exactly it with `trailsetup init --yes --plan {}`).", p.display(), p.display()));
        }
        let exit = if a.detailed_exitcode && plan.has_changes() { Exit::ChangesPending } else { Exit::Success };
        if out.json {
            out.json_doc(&plan.to_json(&header, false));
        } else {
            out.note(if common.offline {
                "Dry run, offline: no call was made; values marked (placeholder) would be discovered."
            } else {
                "Dry run: nothing was changed."
            });
        }
        return Ok(Outcome::Done(exit));
    }
    let Some(aws) = aws else { return Err(anyhow::anyhow!("internal: no AWS config outside --offline")) };
    if let Some(e) = resources::kms::unreadable_error(&plan) {
        return Err(e);
    }

    // --- confirm, apply, verify ---
    let mut applied = false;
    let mut deferred: Vec<(String, String)> = Vec::new();
    let unreachable_in = |p: &crate::plan::Plan| p.changes.iter().any(|c| c.kind == "opensearch-index-template" && c.details["unreachable"] == true);
    let mut unreachable = unreachable_in(&plan);
    if plan.has_changes() {
        let go = common.yes || wizard::confirm_apply()?;
        if !go {
            out.note("Nothing applied.");
            if out.json {
                out.json_doc(&plan.to_json(&header, false));
            }
            return Ok(Outcome::Done(Exit::Success));
        }
        applying.store(true, std::sync::atomic::Ordering::SeqCst);
        let quiet = out.quiet || out.json;
        let progress = Progress::new(plan.summary.create + plan.summary.update + plan.summary.delete, quiet);
        let res = crate::apply::apply(&ctx, &aws, &plan, |e| progress.event(e)).await;
        progress.finish();
        let res = res?;
        applied = true;
        if res.deferred.is_empty() {
            out.note(format!("Applied {} change(s).", res.changed));
        } else {
            out.note(format!(
                "Applied {} change(s); {} deferred (not made from here, see below).",
                res.changed,
                res.deferred.len()
            ));
            for (what, why) in &res.deferred {
                out.note(format!("  deferred: {what}: {why}"));
            }
        }
        deferred = res.deferred;
        let again = resources::plan(&ctx, Some(&aws)).await.context("verifying the result")?;
        unreachable = unreachable_in(&again);
        if again.has_changes() {
            for c in again.changes.iter().filter(|c| c.action != crate::plan::Action::NoOp) {
                tracing::warn!("after apply, {} {} [{}] still differs from the plan", c.kind, c.name, c.region);
            }
        }
    } else {
        out.note("Everything is up to date; nothing to apply.");
    }

    // --- state ---
    let queue_url = resources::sqs::queue_url(&ctx, &aws, &ctx.queue_name()).await?;
    let dlq_url = resources::sqs::queue_url(&ctx, &aws, &ctx.dlq_name()).await?;
    let (opensearch_url, opensearch_auth) = match &ctx.opensearch {
        OpenSearchTarget::Url(u) => (Some(u.clone()), os_auth),
        OpenSearchTarget::Domain(dn) => {
            let ep = aws_sdk_opensearch::Client::new(&aws.cfg)
                .describe_domain()
                .domain_name(dn)
                .send()
                .await
                .map_err(|e| crate::aws::explain(e, &format!("reading the endpoint of OpenSearch domain {dn} (DescribeDomain)"), "es:DescribeDomain"))?
                .domain_status
                .and_then(|s| s.endpoint().map(resources::opensearch::endpoint_url));
            (ep, Some(OpenSearchAuth::Sigv4))
        }
    };
    // what earlier runs recorded (`created` above all): the state file, or the account's record
    let mut state = crate::stack::load(common, Some(&stack), Some(&aws.cfg)).await?.map(|(s, _)| s).unwrap_or_default();
    state.version = 1;
    state.stack = stack.clone();
    state.account = account.clone();
    state.partition = partition.clone();
    state.home_region = home.clone();
    state.regions = regions.clone();
    state.bucket = Some(ctx.bucket.clone());
    state.queue_url = queue_url.clone();
    state.dlq_url = dlq_url;
    state.opensearch_url = opensearch_url.clone();
    state.opensearch_auth = opensearch_auth;
    state.index_prefix = Some(index_prefix.clone());
    state.index_granularity = Some(ctx.index_granularity);
    state.opensearch_region = Some(ctx.opensearch_region());
    state.trail_mode = Some(ctx.trail_mode);
    state.opensearch_domain = match &ctx.opensearch {
        OpenSearchTarget::Domain(d) => Some(d.clone()),
        OpenSearchTarget::Url(_) => None,
    };
    state.kms_keys = ctx.kms.as_ref().map(|k| k.keys.clone()).unwrap_or_default();
    state.ingest_roles = ctx.ingest_roles.clone();
    state.opt_in_regions = ctx.opt_in_regions.clone();
    state.retention_days = Some(ctx.retention_days);
    state.principal_arn = Some(ctx.principal_arn.clone());
    state.use_trail = ctx.reuse.clone();
    state.prefix = ctx.reuse.as_ref().map(|_| ctx.read_prefix());
    state.source_role = ctx.reuse.as_ref().and_then(|r| r.source_role.clone());
    if applied {
        for c in plan.changes.iter().filter(|c| c.action == crate::plan::Action::Create) {
            state.created.insert(crate::state::created_key(c.kind, &c.region, &c.name));
        }
    }
    state.opensearch_reachable = opensearch_url.is_some().then_some(!unreachable);
    for (r, n) in ctx.trails() {
        state.resources.insert(format!("cloudtrail-trail/{r}/{n}"), ctx.trail_arn(&r, &n));
    }
    for r in ctx.trail_regions() {
        state.resources.insert(format!("sns-topic/{r}"), ctx.topic_arn(&r));
        state.resources.insert(format!("logs-log-group/{r}"), ctx.log_group_arn(&r));
    }
    if ctx.reuse.is_none() {
        state.resources.insert("iam-role/cloudtrail-logs".into(), ctx.logs_role_arn());
    }
    state.resources.insert("iam-policy/ingest-worker".into(), ctx.ingest_policy_arn());
    state.resources.insert("sqs-queue".into(), ctx.queue_arn(&ctx.queue_name()));
    state.resources.insert("sqs-queue/dlq".into(), ctx.queue_arn(&ctx.dlq_name()));
    let state_path = state.save(&common.state_dir)?;
    out.note(format!("State saved to {}", state_path.display()));
    // the account is the record: other machines (CI runners) find the stack from its name and the credentials
    if applied || !plan.has_changes() {
        if let Err(e) = crate::stack::save_record(&aws.cfg, &state).await {
            out.note(format!(
                "warning: the stack's record was not written to the account ({e:#}); commands on machines without {} \
                 will not find the stack",
                state_path.display()
            ));
        }
    }

    // the stack is as this run leaves it: the lock goes before the backfill (which changes no resource), and
    // signals are the backfill's again
    if let Some(t) = on_signal.take() {
        t.abort();
    }
    held.release().await;

    if !out.json && !out.quiet {
        out.line(finish_summary(&ctx, &plan, applied, &deferred, opensearch_url.as_deref(), &state_path));
    }

    // --- backfill ---
    // a log archive bucket is readable once its owner added the statements above (or through --source-role)
    let readable = ctx.reuse.as_ref().is_none_or(|r| r.bucket_owned || r.source_role.is_some());
    if !readable && d.backfill.unwrap_or(true) && !out.json {
        out.note("The bucket is another account's: once its owner has added the statements above, run `trailsetup backfill`.");
    }
    let wanted = d.backfill.unwrap_or(true) && opensearch_url.is_some() && readable;
    // OpenSearch does not answer from here (a VPC-only domain, a new domain's endpoint not reachable yet): the
    // stack is set up; loading the history is for a machine that reaches it. A distinct outcome, not a failure.
    let backfill_deferred = (wanted && (unreachable || !deferred.is_empty())).then(|| {
        format!(
            "the stack is set up, but OpenSearch{} does not answer from this machine: run `trailsetup backfill` (and \
             `trailsetup ingest`) from one that reaches it, e.g. inside the domain's VPC",
            opensearch_url.as_deref().map(|u| format!(" at {}", crate::opensearch::client::redact_url(u))).unwrap_or_default()
        )
    });
    let backfill = wanted && backfill_deferred.is_none();
    let args = BackfillArgs {
        bucket: Some(ctx.bucket.clone()),
        prefix: Some(ctx.read_prefix()),
        source_role: ctx.reuse.as_ref().and_then(|r| r.source_role.clone()),
        ..Default::default()
    };
    if out.json {
        // One document on stdout: the backfill's summary goes inside the plan's.
        let mut doc = plan.to_json(&header, applied);
        doc["state_file"] = json!(state_path.display().to_string());
        if !deferred.is_empty() {
            doc["deferred"] = json!(deferred.iter().map(|(what, why)| json!({"change": what, "reason": why})).collect::<Vec<_>>());
        }
        if let Some(why) = &backfill_deferred {
            doc["backfill"] = json!({"deferred": true, "reason": why});
        }
        if backfill {
            return Ok(Outcome::Backfill { args: Box::new(args), doc: Some(doc) });
        }
        out.json_doc(&doc);
        return Ok(Outcome::Done(Exit::Success));
    }
    if let Some(why) = &backfill_deferred {
        out.note(format!("Backfill deferred: {why}."));
    }
    if backfill {
        out.note("Loading the logs already in the bucket (trailsetup backfill)…");
        return Ok(Outcome::Backfill { args: Box::new(args), doc: None });
    }
    Ok(Outcome::Done(Exit::Success))
}

/// The end of a run: what exists now, where the data is, what to run next.
fn finish_summary(ctx: &Ctx, plan: &crate::plan::Plan, applied: bool, deferred: &[(String, String)], url: Option<&str>, state: &std::path::Path) -> String {
    // a deferred change was not made: it counts apart, never as created or updated
    let is_deferred = |c: &crate::plan::Change| deferred.iter().any(|(what, _)| *what == format!("{} {} [{}]", c.kind, c.name, c.region));
    let count = |a: crate::plan::Action| plan.changes.iter().filter(|c| c.action == a && !is_deferred(c)).count();
    let reused = plan.changes.iter().filter(|c| c.details["reused"] == true).count();
    let mut o = format!(
        "\nStack {} is set up: {} created, {} updated, {} reused, {} unchanged{}{}.\n",
        ctx.stack,
        if applied { count(crate::plan::Action::Create) } else { 0 },
        if applied { count(crate::plan::Action::Update) } else { 0 },
        reused,
        count(crate::plan::Action::NoOp) - reused,
        if deferred.is_empty() { String::new() } else { format!(", {} deferred (not made from here, see above)", deferred.len()) },
        if let Some(r) = &ctx.reuse { format!(" (hanging from trail {})", r.name) } else { String::new() },
    );
    match (url, &ctx.opensearch) {
        (Some(u), OpenSearchTarget::Domain(d)) => o.push_str(&format!(
            "  OpenSearch   domain {d}: {u}\n  Dashboards   {u}/_dashboards: `trailsetup dashboards` opens it through a local proxy that \
             signs each request with your AWS credentials (fine-grained access control; master user {})\n",
            ctx.principal_arn
        )),
        (Some(u), _) => o.push_str(&format!(
            "  OpenSearch   {u} (index alias {}, indices {}-{})\n",
            ctx.index_prefix,
            ctx.index_prefix,
            match ctx.index_granularity {
                crate::opensearch::layout::Granularity::Day => "YYYY.MM.DD",
                crate::opensearch::layout::Granularity::Month => "YYYY.MM (one index a month: this cluster's shard capacity)",
            }
        )),
        (None, _) => o.push_str("  OpenSearch   the domain has no endpoint yet: `trailsetup status` tells when it is ready\n"),
    }
    o.push_str(&format!("  State        {}\n\nNext:\n", state.display()));
    o.push_str("  trailsetup backfill   load the logs already stored (resumable; run again any time)\n");
    o.push_str("  trailsetup ingest     follow the queue and load each new log file (run it as a service)\n");
    o.push_str("  trailsetup status     is audit data flowing end to end?\n");
    o.push_str("  trailsetup dashboards OpenSearch Dashboards (CloudTrail overview, CIS monitoring) through a local signing proxy\n");
    o.push_str("\nAsk:\n");
    o.push_str("  trailsetup search --resource i-0abc123             what happened to this instance?\n");
    o.push_str("  trailsetup search --event TerminateInstances       who terminated instances (last 90 days)?\n");
    o.push_str("  trailsetup search --preset root-activity           root user use (CIS, Security Hub CloudWatch.1)\n");
    o.push_str("  trailsetup search --preset console-login-without-mfa\n");
    o.push_str("  trailsetup search --preset cloudtrail-changes      someone stopping or changing a trail\n");
    o.push_str("  trailsetup search --preset list                    every named question\n");
    o
}

/// Apply's progress on stderr: in a terminal, a bar with the elapsed time and the changes in flight (a spinner
/// that keeps turning through the domain's 10-20 minutes) and one line per finished change with its duration;
/// without a terminal, the same lines only; nothing with `--output json` or `-q`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    running: std::sync::Mutex<Vec<String>>,
}

impl Progress {
    fn new(total: usize, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::with_draw_target(Some(total as u64), indicatif::ProgressDrawTarget::stderr());
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Progress { bar, quiet, running: Default::default() }
    }
    fn label(c: &crate::plan::Change) -> String {
        format!("{} {} [{}]", c.kind, c.name, c.region)
    }
    /// One change ended: its line above the bar (or on stderr without one), and the bar one step on.
    fn done(&self, line: String) {
        match &self.bar {
            Some(b) => {
                b.println(line);
                b.inc(1);
            }
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }
    fn event(&self, e: crate::apply::Event<'_>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            crate::apply::Event::Started(c) => running.push(Self::label(c)),
            crate::apply::Event::Deferred(c, why) => {
                let l = Self::label(c);
                running.retain(|x| *x != l);
                // the reason's first clause: "OpenSearch does not answer from this machine", "OpenSearch Dashboards was not found at …"
                let why = why.split([':', '(', ';']).next().unwrap_or("not made from here").trim();
                self.done(format!("  … deferred {l}  ({why})"));
            }
            crate::apply::Event::Finished(c, took) => {
                let l = Self::label(c);
                running.retain(|x| *x != l);
                let verb = match c.action {
                    crate::plan::Action::Create => "created",
                    crate::plan::Action::Update => "updated",
                    crate::plan::Action::Delete => "deleted",
                    crate::plan::Action::NoOp => "checked",
                };
                self.done(format!("  ✓ {verb:<8} {l}  {:.1}s", took.as_secs_f64()));
            }
        }
        if let Some(b) = &self.bar {
            b.set_message(match running.len() {
                0 => String::new(),
                1 => running[0].clone(),
                n => format!("{} (+{} more)", running[0], n - 1),
            });
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// What the wizard offers instead of asking to type: this account's buckets that hold CloudTrail logs
/// (`AWSLogs/`), the home region's customer managed key aliases, and its OpenSearch domains. Best effort: a call
/// that is refused (no permission) offers nothing, and the question falls back to typing.
async fn choices(aws: &Aws, home: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let s3 = crate::aws::s3(&aws.at(home));
    let buckets = async {
        let Ok(r) = s3.list_buckets().send().await else { return Vec::new() };
        let names: Vec<String> = r.buckets().iter().filter_map(|b| b.name().map(String::from)).take(50).collect();
        let holds = futures::future::join_all(names.iter().map(|b| {
            let s3 = s3.clone();
            async move { s3.list_objects_v2().bucket(b).prefix("AWSLogs/").max_keys(1).send().await.ok().is_some_and(|r| r.key_count().unwrap_or(0) > 0) }
        }))
        .await;
        names.into_iter().zip(holds).filter(|x| x.1).map(|x| x.0).collect::<Vec<_>>()
    };
    let kms = async {
        let Ok(r) = aws_sdk_kms::Client::new(&aws.at(home)).list_aliases().send().await else { return Vec::new() };
        r.aliases()
            .iter()
            .filter(|a| a.target_key_id().is_some())
            .filter_map(|a| a.alias_name())
            .filter(|n| !n.starts_with("alias/aws/"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let domains = async {
        let Ok(r) = aws_sdk_opensearch::Client::new(&aws.at(home)).list_domain_names().send().await else { return Vec::new() };
        r.domain_names().iter().filter_map(|d| d.domain_name()).map(String::from).collect::<Vec<_>>()
    };
    futures::join!(buckets, kms, domains)
}

/// `--offline --use-trail`: nothing can be discovered; the trail is planned from what the flags say, its facts
/// marked as placeholders.
fn offline_reuse(spec: &str, bucket: Option<&str>, prefix: Option<&str>, partition: &str, account: &str, home: &str, placeholders: &mut Vec<String>) -> resources::reuse::Reuse {
    placeholders.push("use_trail".into());
    let arn = if spec.starts_with("arn:") { spec.to_string() } else { format!("arn:{partition}:cloudtrail:{home}:{account}:trail/{spec}") };
    let (region, _, rest) = resources::reuse::arn_parts(&arn).unwrap_or_default();
    resources::reuse::Reuse {
        name: rest.trim_start_matches("trail/").to_string(),
        arn,
        home_region: region,
        multi_region: true,
        bucket: bucket.unwrap_or("<trail-bucket>").to_string(),
        key_prefix: prefix.and_then(resources::reuse::key_prefix_of),
        bucket_owned: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_partitions() {
        assert!(looks_like_region("us-east-1"));
        assert!(looks_like_region("us-gov-west-1"));
        assert!(!looks_like_region("mars-1"));
        assert!(!looks_like_region("us-east-x"));
        assert_eq!(partition_of_region("cn-north-1"), "aws-cn");
        assert_eq!(partition_of_region("eu-west-1"), "aws");
        assert!(validate_name("trailsetup").is_ok());
        assert!(validate_name("Bad_Name").is_err());
    }

    #[test]
    fn domain_size_validators() {
        assert_eq!(validate_domain_instance_type("m6g.large.search").unwrap().name, "m6g.large.search");
        let e = validate_domain_instance_type("c5.large.search").unwrap_err().to_string();
        assert!(e.contains("--domain-instance-type \"c5.large.search\"") && e.contains("t3.small.search, t3.medium.search, m6g.large.search"), "{e}");
        assert!(e.contains("TRAILSETUP_DOMAIN_INSTANCE_TYPE") && e.contains("config key domain_instance_type"), "{e}");
        assert_eq!(crate::error::exit_for(&validate_domain_instance_type("x").unwrap_err()), crate::error::Exit::Usage);
        // zones by count
        for (n, z) in [(1, 1), (2, 2), (3, 3), (4, 2), (6, 3), (10, 2)] {
            assert_eq!(validate_domain_instance_count(n, "t3.small.search").unwrap(), z, "{n}");
        }
        let e = validate_domain_instance_count(5, "m6g.large.search").unwrap_err().to_string();
        assert!(e.contains("cannot be spread evenly over Availability Zones") && e.contains("counts that work: 1, 2, 3, 4, 6, 8"), "{e}");
        assert!(e.contains("TRAILSETUP_DOMAIN_INSTANCE_COUNT") && e.contains("config key domain_instance_count"), "{e}");
        // T3: at most 10 data nodes; m6g: 80
        assert!(validate_domain_instance_count(12, "t3.medium.search").unwrap_err().to_string().contains("at most 10"));
        assert_eq!(validate_domain_instance_count(12, "m6g.large.search").unwrap(), 3);
        assert!(validate_domain_instance_count(84, "r6g.large.search").unwrap_err().to_string().contains("at most 80"));
        assert!(validate_domain_instance_count(0, "r6g.large.search").is_err());
        // the wizard's check says exactly what the flag's says
        assert_eq!(parse_domain_instance_count(" 5 ", "m6g.large.search").unwrap_err().to_string(), e);
        assert_eq!(parse_domain_instance_count("6", "m6g.large.search").unwrap(), 6);
        assert!(parse_domain_instance_count("two", "m6g.large.search").unwrap_err().to_string().contains("a whole number"));
    }
}
