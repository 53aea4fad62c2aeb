//! Command-line interface: clap derive only, no logic. The interface is fixed in CONTRACT.md.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "trailsetup",
    version,
    about = "Set up AWS CloudTrail auditing into OpenSearch in one sitting, and load the history already there",
    long_about = None,
    after_help = "Without a command, `init` runs. Exit codes: 0 success, 1 failure, 2 usage error or missing input, \
                  3 finished but some records were quarantined."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// `init` options, so that `trailsetup --dry-run --regions us-east-1` works without naming `init`.
    #[command(flatten)]
    pub init: InitArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wizard → plan → confirm → apply → offer backfill (the default command)
    Init(InitArgs),
    /// Load the CloudTrail log files already stored (S3 bucket or local directory) into OpenSearch
    Backfill(BackfillArgs),
    /// Follow the SQS queue and load each new log file as CloudTrail delivers it
    Ingest(IngestArgs),
    /// Is audit data flowing end to end? Checks every resource, delivery, queues, forwarder and freshness
    Status(StatusArgs),
    /// Who did what: find CloudTrail events in OpenSearch from the terminal (filters, named questions, counts)
    Search(SearchArgs),
    /// Bring indices made by an older trailsetup up to the current mapping (the investigation fields), in place
    Migrate(MigrateArgs),
    /// Install the saved objects, then open the domain's OpenSearch Dashboards through a local signing proxy
    Dashboards(DashboardsArgs),
    /// Remove exactly what the stack made (the bucket and the domain are kept unless --delete-bucket/--delete-domain)
    Destroy(DestroyArgs),
    /// Print the IAM policy (JSON) a caller needs for one command: least privilege, generated from the code that
    /// makes the calls
    Permissions(PermissionsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Human,
    Json,
    /// `search` only: one stored document per line
    Jsonl,
    /// `search` only: the event columns
    Csv,
}

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Compute and print what would be done; make no change anywhere (read calls allowed)
    #[arg(long, global = true, env = "TRAILSETUP_DRY_RUN", value_parser = clap::builder::FalseyValueParser::new())]
    pub dry_run: bool,

    /// With --dry-run: make no network call at all; discovered values come from flags/config or placeholders
    #[arg(long, global = true, env = "TRAILSETUP_OFFLINE", value_parser = clap::builder::FalseyValueParser::new())]
    pub offline: bool,

    /// Never prompt: take each default and confirm the plan
    #[arg(short = 'y', long, global = true, env = "TRAILSETUP_YES", value_parser = clap::builder::FalseyValueParser::new())]
    pub yes: bool,

    /// Settings/answers file (TOML). Precedence: flags > TRAILSETUP_* env > file > defaults
    #[arg(long, global = true, env = "TRAILSETUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format: `json` prints exactly one JSON document on stdout
    #[arg(long, global = true, value_enum, env = "TRAILSETUP_OUTPUT")]
    pub output: Option<OutputFormat>,

    /// AWS profile (also AWS_PROFILE)
    #[arg(long, global = true, help_heading = "AWS")]
    pub profile: Option<String>,

    /// Home region (also AWS_REGION)
    #[arg(long, global = true, help_heading = "AWS")]
    pub region: Option<String>,

    /// AWS endpoint override (also AWS_ENDPOINT_URL)
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS")]
    pub endpoint_url: Option<String>,

    /// Where the state file, checkpoints and quarantine live
    #[arg(long, global = true, env = "TRAILSETUP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Send basic-auth credentials over plain http:// to a host that is not loopback (refused by default: the
    /// password would cross the network in clear text)
    #[arg(long, global = true, env = "TRAILSETUP_ALLOW_HTTP_BASIC_AUTH", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_http_basic_auth: bool,

    /// More logging (repeat for more; also RUST_LOG)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less logging
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

// Domain types the flags name; they live with the code that gives them meaning.
pub use crate::opensearch::OpenSearchAuth;
pub use crate::stack::TrailMode;

#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Setup (init)")]
pub struct InitArgs {
    /// Stack name: prefix of every resource name and value of the `trailsetup:stack` tag [default: trailsetup]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    /// `all` (every region enabled for the account) or a comma list
    #[arg(long, env = "TRAILSETUP_REGIONS", value_name = "all|R1,R2")]
    pub regions: Option<String>,

    /// One multi-region trail, or one trail per region [default: multi-region]
    #[arg(long, value_enum, env = "TRAILSETUP_TRAIL_MODE")]
    pub trail_mode: Option<TrailMode>,

    /// S3 bucket for the logs [default: <name>-<account>-<home-region>]
    #[arg(long, env = "TRAILSETUP_BUCKET")]
    pub bucket: Option<String>,

    /// KMS key id/ARN/alias for SSE-KMS [default: none, SSE-S3]
    #[arg(long, env = "TRAILSETUP_KMS_KEY")]
    pub kms_key: Option<String>,

    /// Retention of the CloudWatch Logs copy, in days [default: 90]
    #[arg(long, env = "TRAILSETUP_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<i32>,

    /// Amazon OpenSearch Service domain to create or adopt [default: <name>]
    #[arg(long, env = "TRAILSETUP_OPENSEARCH_DOMAIN", conflicts_with = "opensearch_url")]
    pub opensearch_domain: Option<String>,

    /// An existing OpenSearch endpoint instead of a domain
    #[arg(long, env = "TRAILSETUP_OPENSEARCH_URL")]
    pub opensearch_url: Option<String>,

    /// A new domain's data node type: t3.small.search, t3.medium.search, m6g.large.search, m6g.xlarge.search,
    /// r6g.large.search or r6g.xlarge.search [default: t3.small.search]
    #[arg(long, env = "TRAILSETUP_DOMAIN_INSTANCE_TYPE", value_name = "TYPE")]
    pub domain_instance_type: Option<String>,

    /// A new domain's number of data nodes: 1, an even number (2 Availability Zones) or a multiple of 3 (3 zones)
    /// [default: 1]
    #[arg(long, env = "TRAILSETUP_DOMAIN_INSTANCE_COUNT", value_name = "N")]
    pub domain_instance_count: Option<i32>,

    /// sigv4 for AWS domains, else basic (TRAILSETUP_OPENSEARCH_USER/_PASSWORD) or none
    #[arg(long, value_enum, env = "TRAILSETUP_OPENSEARCH_AUTH")]
    pub opensearch_auth: Option<OpenSearchAuth>,

    /// Account id to plan for with --offline (otherwise discovered from STS)
    #[arg(long, env = "TRAILSETUP_ACCOUNT")]
    pub account: Option<String>,

    /// Index prefix [default: cloudtrail]
    #[arg(long, env = "TRAILSETUP_INDEX_PREFIX")]
    pub index_prefix: Option<String>,

    /// One index per day or per month; auto: day only when the cluster holds five years of daily indices in half
    /// its shard capacity [default: auto; an existing stack keeps its own]
    #[arg(long, value_enum, env = "TRAILSETUP_INDEX_GRANULARITY")]
    pub index_granularity: Option<crate::opensearch::layout::Choice>,

    /// IAM user or role ARN to make the domain's master user [default: the caller; an assumed-role session
    /// becomes its role]
    #[arg(long, env = "TRAILSETUP_MASTER_USER_ARN", value_name = "ARN")]
    pub master_user_arn: Option<String>,

    /// IAM role(s) your ingest workers run as (comma list): mapped in the domain's fine-grained access control and
    /// admitted by its access policy, beside the forwarder's role
    #[arg(long, env = "TRAILSETUP_INGEST_ROLE", value_name = "ARN[,ARN]")]
    pub ingest_role: Option<String>,

    /// Do not read or change the KMS key policy: its owner has added the statements `--dry-run -v` shows
    #[arg(long, env = "TRAILSETUP_NO_KMS_KEY_POLICY", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_kms_key_policy: bool,

    /// An existing trail (name or ARN) to hang the pipeline from: no trail and no bucket are created, and the trail
    /// is never modified; `none` creates our own [default: asked when trails exist; with --yes the best multi-region
    /// trail]
    #[arg(long, env = "TRAILSETUP_USE_TRAIL", value_name = "NAME|ARN|none")]
    pub use_trail: Option<String>,

    /// With --use-trail and a bucket in another account: a role there to read the logs through (saved for
    /// backfill and ingest)
    #[arg(long, env = "TRAILSETUP_SOURCE_ROLE", value_name = "ARN")]
    pub source_role: Option<String>,

    /// Key prefix of an organization trail's log files when the trail is not visible (--use-trail ARN --bucket B)
    #[arg(long, env = "TRAILSETUP_PREFIX")]
    pub prefix: Option<String>,

    /// After apply, load the logs already in the bucket
    #[arg(long, overrides_with = "no_backfill")]
    pub backfill: bool,

    /// After apply, do not load the logs already in the bucket
    #[arg(long, overrides_with = "backfill")]
    pub no_backfill: bool,

    /// With --dry-run: save the plan to FILE (for review; `init --yes --plan FILE` applies exactly it)
    #[arg(long, value_name = "FILE", help_heading = "Saved plans (CI)")]
    pub plan_out: Option<PathBuf>,

    /// Apply exactly the plan saved with --plan-out: refused, with nothing changed, when the account (or the
    /// settings) no longer give that plan
    #[arg(long, value_name = "FILE", conflicts_with = "plan_out", help_heading = "Saved plans (CI)")]
    pub plan: Option<PathBuf>,

    /// With --dry-run: exit 4 when changes are pending, 0 when the account matches the plan
    #[arg(long, help_heading = "Saved plans (CI)")]
    pub detailed_exitcode: bool,

    // The flattened group stays last: clap's derive keeps its help heading for the fields after it.
    #[command(flatten)]
    pub lock: LockArgs,
}

/// The stack's lock in the account, taken by `init` (apply) and `destroy` so two runs never change one stack at once.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Lock (init, destroy)")]
pub struct LockArgs {
    /// How long to wait for the stack's lock while another run holds it, in seconds; 0 fails at once [default: 300]
    #[arg(long, env = "TRAILSETUP_LOCK_TIMEOUT", value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,

    /// Remove the stack's lock first, whoever holds it (a run that was killed left it), saying whose it was
    #[arg(long)]
    pub force_unlock: bool,
}

impl LockArgs {
    /// These options, with any left unset taken from `other`.
    pub fn or(self, other: LockArgs) -> LockArgs {
        LockArgs { lock_timeout: self.lock_timeout.or(other.lock_timeout), force_unlock: self.force_unlock || other.force_unlock }
    }
}

impl InitArgs {
    /// These options, with any left unset taken from `other` (`trailsetup --name x init` and
    /// `trailsetup init --name x` mean the same).
    pub fn or(self, other: InitArgs) -> InitArgs {
        InitArgs {
            name: self.name.or(other.name),
            regions: self.regions.or(other.regions),
            trail_mode: self.trail_mode.or(other.trail_mode),
            bucket: self.bucket.or(other.bucket),
            kms_key: self.kms_key.or(other.kms_key),
            log_retention_days: self.log_retention_days.or(other.log_retention_days),
            opensearch_domain: self.opensearch_domain.or(other.opensearch_domain),
            opensearch_url: self.opensearch_url.or(other.opensearch_url),
            domain_instance_type: self.domain_instance_type.or(other.domain_instance_type),
            domain_instance_count: self.domain_instance_count.or(other.domain_instance_count),
            opensearch_auth: self.opensearch_auth.or(other.opensearch_auth),
            account: self.account.or(other.account),
            index_prefix: self.index_prefix.or(other.index_prefix),
            index_granularity: self.index_granularity.or(other.index_granularity),
            master_user_arn: self.master_user_arn.or(other.master_user_arn),
            ingest_role: self.ingest_role.or(other.ingest_role),
            use_trail: self.use_trail.or(other.use_trail),
            source_role: self.source_role.or(other.source_role),
            prefix: self.prefix.or(other.prefix),
            no_kms_key_policy: self.no_kms_key_policy || other.no_kms_key_policy,
            backfill: self.backfill || other.backfill,
            no_backfill: self.no_backfill || other.no_backfill,
            plan_out: self.plan_out.or(other.plan_out),
            plan: self.plan.or(other.plan),
            detailed_exitcode: self.detailed_exitcode || other.detailed_exitcode,
            lock: self.lock.or(other.lock),
        }
    }
}

/// The OpenSearch endpoint, how to reach it, and the index prefix: shared by every command that reads or writes
/// documents (defaults: the stack's, from its state file or the account's record).
#[derive(Debug, Clone, Args, Default)]
pub struct OpenSearchArgs {
    /// OpenSearch endpoint [default: from the stack]
    #[arg(long, env = "TRAILSETUP_OPENSEARCH_URL")]
    pub opensearch_url: Option<String>,

    /// sigv4, basic (TRAILSETUP_OPENSEARCH_USER/_PASSWORD) or none [default: sigv4 for AWS hosts, else none]
    #[arg(long, value_enum, env = "TRAILSETUP_OPENSEARCH_AUTH")]
    pub opensearch_auth: Option<OpenSearchAuth>,

    /// SigV4 service name: `es` for domains, `aoss` for serverless collections [default: from the host name]
    #[arg(long, env = "TRAILSETUP_SIGV4_SERVICE", value_name = "es|aoss")]
    pub sigv4_service: Option<String>,

    /// SigV4 region: the domain's region [default: from the host name, else the stack's, else --region]
    #[arg(long, env = "TRAILSETUP_SIGV4_REGION", value_name = "REGION")]
    pub sigv4_region: Option<String>,

    /// PEM bundle of extra CA certificates to trust for the OpenSearch endpoint
    #[arg(long, env = "TRAILSETUP_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,

    /// Index prefix: documents are in <prefix>-YYYY.MM.DD (or <prefix>-YYYY.MM), alias <prefix> [default: the
    /// stack's, else cloudtrail]
    #[arg(long, env = "TRAILSETUP_INDEX_PREFIX")]
    pub index_prefix: Option<String>,
}

/// Options shared by `backfill` and `ingest`: where documents go and how.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "OpenSearch sink")]
pub struct SinkArgs {
    #[command(flatten)]
    pub os: OpenSearchArgs,

    /// day or month indices [default: the stack's choice: its state, else the installed index template, else day]
    #[arg(long, value_enum, env = "TRAILSETUP_INDEX_GRANULARITY")]
    pub index_granularity: Option<crate::opensearch::layout::Granularity>,

    /// Parallel files being read (backfill) or messages in flight (ingest) [default: 4 per core, at least 8;
    /// ingest: 32]
    #[arg(long, env = "TRAILSETUP_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// Parallel `_bulk` requests in flight [default: 4]
    #[arg(long, env = "TRAILSETUP_BULK_CONCURRENCY")]
    pub bulk_concurrency: Option<usize>,

    /// Target size of one `_bulk` request body, in MiB before compression [default: 2]
    #[arg(long, env = "TRAILSETUP_BULK_MIB")]
    pub bulk_mib: Option<f64>,

    /// Request compression: gzip, none, or auto (gzip unless the endpoint is on loopback) [default: auto]
    #[arg(long, env = "TRAILSETUP_COMPRESSION", value_name = "auto|gzip|none")]
    pub compression: Option<String>,

    /// Keep `responseElements.credentials.sessionToken` as delivered instead of redacting it
    #[arg(long)]
    pub no_redact: bool,

    /// Where rejected records are written, one JSON line each, with OpenSearch's reason
    /// [default: <state-dir>/quarantine.jsonl]
    #[arg(long, env = "TRAILSETUP_QUARANTINE", value_name = "FILE")]
    pub quarantine: Option<PathBuf>,

    /// First retry delay for `_bulk` (milliseconds; the delay doubles up to 30 s, with jitter)
    #[arg(long, hide = true, env = "TRAILSETUP_RETRY_BASE_MS")]
    pub retry_base_ms: Option<u64>,

    /// Timeout of one OpenSearch request, in seconds (a timed-out `_bulk` is retried) [default: 120]
    #[arg(long, env = "TRAILSETUP_TIMEOUT_SECS")]
    pub timeout_secs: Option<u64>,

    /// Give up retrying a document after this many seconds and quarantine it [default: 900]
    #[arg(long, env = "TRAILSETUP_RETRY_DEADLINE_SECS")]
    pub retry_deadline_secs: Option<u64>,
}

/// Help heading of the options naming where `backfill` and `ingest` read log files from.
const SOURCE: &str = "Source";

/// Which log files to take.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Selection")]
pub struct SelectArgs {
    /// Inclusive start date (YYYY-MM-DD or RFC 3339), matched on the key's date path and on eventTime
    #[arg(long, env = "TRAILSETUP_FROM")]
    pub from: Option<String>,

    /// Inclusive end date (YYYY-MM-DD or RFC 3339)
    #[arg(long, env = "TRAILSETUP_TO")]
    pub to: Option<String>,

    /// Comma list of account ids to take
    #[arg(long, env = "TRAILSETUP_ACCOUNTS")]
    pub accounts: Option<String>,

    /// Comma list of regions to take
    #[arg(long, env = "TRAILSETUP_REGIONS")]
    pub regions: Option<String>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct BackfillArgs {
    /// Stack whose defaults to take (bucket, endpoint, prefix): from the state file, or from the account when
    /// there is none [default: the state file's, else trailsetup]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    /// S3 bucket holding the logs [default: from init's state]
    #[arg(long, env = "TRAILSETUP_BUCKET", conflicts_with = "source_dir", help_heading = SOURCE)]
    pub bucket: Option<String>,

    /// Key prefix in the bucket [default: AWSLogs/]
    #[arg(long, env = "TRAILSETUP_PREFIX", help_heading = SOURCE)]
    pub prefix: Option<String>,

    /// Local directory source: any tree of CloudTrail .json.gz/.json files
    #[arg(long, value_name = "DIR", help_heading = SOURCE)]
    pub source_dir: Option<PathBuf>,

    /// With --source-dir: also follow symbolic links that lead out of the directory (by default they are skipped;
    /// links inside it are never followed, their targets are read where they are; loops are detected either way)
    #[arg(long, requires = "source_dir", help_heading = SOURCE)]
    pub follow_symlinks: bool,

    /// Resume state [default: in the state directory, one per source]
    #[arg(long, env = "TRAILSETUP_CHECKPOINT", value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Ignore the checkpoint and start over
    #[arg(long)]
    pub restart: bool,

    /// Read the bucket through this assumed role (a log archive bucket in another account) [default: init's state]
    #[arg(long, env = "TRAILSETUP_SOURCE_ROLE", value_name = "ARN", help_heading = SOURCE)]
    pub source_role: Option<String>,

    /// Instead of loading, send one message per log file to this SQS queue for `ingest` workers
    #[arg(long, value_name = "QUEUE_URL")]
    pub enqueue: Option<String>,

    /// Reload the records of a quarantine file (after a template fix) instead of reading a source
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bucket", "source_dir", "enqueue"])]
    pub replay_quarantine: Option<PathBuf>,

    /// Write the `_bulk` bodies to this directory instead of sending them (benchmark ceiling)
    #[arg(long, hide = true, value_name = "DIR")]
    pub dump_bulk: Option<PathBuf>,

    // The flattened groups stay last: clap's derive keeps their help heading for the fields after them.
    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub sink: SinkArgs,
}

#[derive(Debug, Clone, Args, Default)]
pub struct IngestArgs {
    /// Stack whose defaults to take (queue, bucket, endpoint): from the state file, or from the account when there
    /// is none [default: the state file's, else trailsetup]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    /// The SQS queue CloudTrail notifications arrive on [default: from init's state]
    #[arg(long, env = "TRAILSETUP_QUEUE_URL", help_heading = SOURCE)]
    pub queue_url: Option<String>,

    /// Stop once the queue stays empty (no visible and no in-flight messages)
    #[arg(long)]
    pub drain: bool,

    /// Read the log files through this assumed role (a log archive bucket in another account) [default: init's state]
    #[arg(long, env = "TRAILSETUP_SOURCE_ROLE", value_name = "ARN", help_heading = SOURCE)]
    pub source_role: Option<String>,

    /// Seconds a received message stays invisible to other workers; renewed while its files load [default: 120]
    #[arg(long, env = "TRAILSETUP_VISIBILITY_TIMEOUT")]
    pub visibility_timeout: Option<i32>,

    /// The only bucket(s) whose files are loaded; a message naming another goes to the dead-letter queue
    /// [default: the stack's bucket from init's state]
    #[arg(long, env = "TRAILSETUP_BUCKET", value_name = "BUCKET[,BUCKET]", help_heading = SOURCE)]
    pub bucket: Option<String>,

    // The flattened groups stay last: clap's derive keeps their help heading for the fields after them.
    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub sink: SinkArgs,
}

#[derive(Debug, Clone, Args, Default)]
pub struct DestroyArgs {
    /// Stack name [default: the state file's, else trailsetup]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    /// The stack's bucket, when the state file is lost [default: <name>-<account>-<home-region>]
    #[arg(long, env = "TRAILSETUP_BUCKET")]
    pub bucket: Option<String>,

    /// The stack's domain, when the state file is lost [default: <name>]
    #[arg(long, env = "TRAILSETUP_OPENSEARCH_DOMAIN")]
    pub opensearch_domain: Option<String>,

    /// Also empty (every object version) and delete the bucket, if this stack created it
    #[arg(long)]
    pub delete_bucket: bool,

    /// Also delete the OpenSearch domain and its indices, if this stack created it
    #[arg(long)]
    pub delete_domain: bool,

    #[command(flatten)]
    pub lock: LockArgs,
}

/// Where `search`, `migrate` and `dashboards` read: the endpoint and the index prefix (defaults: the stack's state).
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "OpenSearch")]
pub struct EndpointArgs {
    /// Stack whose endpoint and prefix to use [default: the state file's, else trailsetup]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub os: OpenSearchArgs,

    /// Timeout of one OpenSearch request, in seconds [default: 120]
    #[arg(long = "timeout", value_name = "SECONDS")]
    pub timeout_secs: Option<u64>,
}

impl EndpointArgs {
    pub fn sink(&self) -> SinkArgs {
        SinkArgs { os: self.os.clone(), timeout_secs: self.timeout_secs, ..Default::default() }
    }
}

/// `search`'s filters. `--region R` (events of these regions, a comma list) is the global option: in `search` it
/// filters, and SigV4 takes the domain's region from its host name or the stack.
#[derive(Debug, Clone, Args, Default)]
pub struct SearchArgs {
    /// Event names (comma list): e.g. TerminateInstances,StopInstances
    #[arg(long, value_name = "NAME[,NAME]")]
    pub event: Option<String>,

    /// Service: ec2 or ec2.amazonaws.com (comma list)
    #[arg(long, value_name = "SVC")]
    pub source: Option<String>,

    /// A resource the event names anywhere in its request, response, resources or details: an id (i-0abc), a
    /// name, an ARN (an ARN stored in the event also matches its last part) (comma list)
    #[arg(long, value_name = "ID")]
    pub resource: Option<String>,

    /// Who acted: an ARN, user name, principal id, or the role behind a session (its ARN or name) (comma list)
    #[arg(long, value_name = "P")]
    pub principal: Option<String>,

    /// The access key the call was signed with (comma list)
    #[arg(long, value_name = "KEY")]
    pub access_key: Option<String>,

    /// Source IP address (comma list)
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,

    /// Account that received the event (recipientAccountId) (comma list)
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,

    /// Only calls that failed (an errorCode)
    #[arg(long)]
    pub errors: bool,

    /// A named question (CIS AWS Foundations monitoring, as AWS Security Hub's CloudWatch.1-14 define them);
    /// `--preset list` prints them
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// How far back: 30m, 12h, 7d, 2w, or all [default: 90d]
    #[arg(long, value_name = "DURATION|all", conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,

    /// From (inclusive): YYYY-MM-DD or RFC 3339
    #[arg(long, value_name = "T")]
    pub from: Option<String>,

    /// To (inclusive): YYYY-MM-DD or RFC 3339
    #[arg(long, value_name = "T")]
    pub to: Option<String>,

    /// How many events (or counts) to show, newest first [default: 50]
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub limit: Option<usize>,

    /// Every matching event (paged with a point in time)
    #[arg(long)]
    pub all: bool,

    /// Counts instead of events
    #[arg(long, value_enum, value_name = "FIELD")]
    pub count_by: Option<crate::opensearch::query::CountBy>,

    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

/// `dashboards`: the saved objects (index pattern, one saved search per `search` preset, the overview
/// visualizations and dashboards), installed through the Dashboards API, then a local proxy that signs each
/// request (SigV4 for an Amazon OpenSearch domain, basic auth otherwise).
#[derive(Debug, Clone, Args, Default)]
pub struct DashboardsArgs {
    /// Local port of the proxy, on 127.0.0.1; 0 picks a free port [default: 0]
    #[arg(long, value_name = "N", env = "TRAILSETUP_DASHBOARDS_PORT")]
    pub port: Option<u16>,

    /// Do not open a browser; only print the URL
    #[arg(long)]
    pub no_browser: bool,

    /// Install (or update) the saved objects, then exit
    #[arg(long, conflicts_with = "export")]
    pub install_only: bool,

    /// Print the saved objects as ndjson (what Dashboards' import takes) and exit, without any network call
    #[arg(long)]
    pub export: bool,

    /// OpenSearch Dashboards, for a self-managed one [default: <endpoint>/_dashboards]
    #[arg(long, value_name = "URL", env = "TRAILSETUP_DASHBOARDS_URL")]
    pub dashboards_url: Option<String>,

    /// The proxy's idle timeout, in seconds: a body that sends nothing for this long is cut [default: 120]
    #[arg(long, hide = true, value_name = "SECONDS", env = "TRAILSETUP_DASHBOARDS_IDLE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: Option<u64>,

    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(Debug, Clone, Args, Default)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(Debug, Clone, Args, Default)]
pub struct StatusArgs {
    /// Stack name [default: the state file's]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    /// Repeat every N seconds (until interrupted)
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,

    /// Make one harmless, recorded API call (cloudtrail:GetTrail on our trail, tagged in its user agent) and wait
    /// until its event is in OpenSearch: the end-to-end delay
    #[arg(long)]
    pub canary: bool,

    /// How long --canary waits for its event, in seconds [default: 1200; CloudTrail delivers within about 15 min]
    #[arg(long, value_name = "SECONDS")]
    pub canary_timeout: Option<u64>,

    /// Newest event older than this many minutes is a warning [default: 60]
    #[arg(long, value_name = "MINUTES")]
    pub stale_minutes: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct PermissionsArgs {
    /// The command the policy is for
    #[arg(long = "for", value_enum, default_value = "init", value_name = "COMMAND")]
    pub for_cmd: crate::permissions::Cmd,

    /// Only the actions on the stack's own resources (its bucket, queues, topic, log groups, trail, function, roles,
    /// policies, domain, secret, lock): no `*` and no account-wide reads (sts:GetCallerIdentity,
    /// ec2:DescribeRegions, s3:ListAllMyBuckets, logs:DescribeLogGroups, ...), for a caller that holds those elsewhere
    #[arg(long)]
    pub stack_only: bool,

    /// Also what these choices need (repeatable): domain (no --opensearch-url), kms (--kms-key), basic-auth
    /// (--opensearch-auth basic), use-trail (--use-trail), enqueue (backfill --enqueue)
    #[arg(long = "with", value_enum, value_name = "FEATURE")]
    pub with: Vec<crate::permissions::Feature>,

    /// Stack name, from which every resource name is derived [default: trailsetup]
    #[arg(long, env = "TRAILSETUP_NAME")]
    pub name: Option<String>,

    /// Account id in the ARNs [default: the caller's, from sts:GetCallerIdentity; `*` with --offline]
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,

    /// Partition in the ARNs [default: the home region's, else the caller's]
    #[arg(long)]
    pub partition: Option<String>,

    /// The stack's bucket, when not the default <name>-<account>-<home region>
    #[arg(long)]
    pub bucket: Option<String>,

    /// The OpenSearch domain, when not the default <name> (with --with domain)
    #[arg(long)]
    pub opensearch_domain: Option<String>,

    /// json: the policy document; text: one line per statement (actions on resources)
    #[arg(long, value_enum, default_value = "json")]
    pub format: PolicyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyFormat {
    Json,
    Text,
}

// `trailsetup completions` is handled in `main.rs` before anything else runs (no AWS credentials, no state file, no
// prompt), so it is not a `Command` variant: `command()` adds it to the derived command. Its doc comment is its help.
/// Print shell completions (bash, zsh, fish, elvish, powershell), or with --man the man page
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// Shell to print completions for
    #[arg(value_enum, required_unless_present = "man")]
    pub shell: Option<clap_complete::Shell>,

    /// Print the roff man page of `trailsetup` instead of completions
    #[arg(long, conflicts_with = "shell")]
    pub man: bool,
}

/// Name of the `completions` subcommand.
pub const COMPLETIONS: &str = "completions";

/// The whole command line: the derived [`Cli`] plus the `completions` subcommand. `main.rs` parses with this, and
/// completions and the man page are generated from it, so they cover `completions` too.
pub fn command() -> clap::Command {
    Cli::command().subcommand(CompletionsArgs::augment_args(clap::Command::new(COMPLETIONS)))
}
