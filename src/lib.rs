//! trailsetup: set up AWS CloudTrail auditing into OpenSearch, and load the history already there.
//!
//! `main.rs` is a thin shell over [`run`], so tests drive the library directly.

pub mod aws;
pub mod blocking;
pub mod cli;
pub mod dashboards;
pub mod error;
pub mod fsutil;
pub mod ingest;
pub mod lock;
pub mod permissions;
pub mod opensearch;
pub mod output;
pub mod settings;
pub mod signals;
pub mod stack;
pub mod state;

use cli::{Cli, Command};
use error::Exit;

/// Logging on stderr: `-v`/`-q` or `RUST_LOG`.
pub fn init_logging(verbose: u8, quiet: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match (verbose, quiet) {
        (_, q) if q > 0 => "error",
        (0, _) => "warn,aws_config=error,aws_runtime=error",
        (1, _) => "info,aws_config=warn,aws_smithy_runtime=warn",
        (2, _) => "debug,hyper=info,aws_smithy_runtime=info,rustls=info,h2=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    // timestamps only when asked for more (-v): in human mode a warning is one plain line
    let _ = if verbose == 0 { fmt.without_time().try_init() } else { fmt.try_init() };
}

/// Run a parsed command line; the error's kind decides the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let common = settings::Common::resolve(&cli.global)?;
    let out = output::Output::new(&common);
    if matches!(common.output, cli::OutputFormat::Jsonl | cli::OutputFormat::Csv) && !matches!(cli.command, Some(Command::Search(_))) {
        return Err(error::usage("--output jsonl and --output csv are for `search`; other commands print human or json"));
    }
    match cli.command {
        Some(Command::Search(a)) => search::run(&common, &a, cli.global.region.as_deref(), &out).await,
        Some(Command::Migrate(a)) => ingest::migrate::run(&common, &a, &out).await,
        Some(Command::Dashboards(a)) => dashboards::run(&common, &a, &out).await,
        Some(Command::Backfill(a)) => ingest::backfill(&common, &a, &out).await,
        Some(Command::Ingest(a)) => ingest::follow::ingest(&common, &a, &out).await,
        Some(Command::Init(a)) => after_init(init::run(&common, &a.or(cli.init), &out).await?, &common, &out).await,
        Some(Command::Destroy(a)) => destroy::run(&common, &a, &out).await,
        Some(Command::Status(a)) => status::run(&common, &a, &out).await,
        Some(Command::Permissions(a)) => permissions::run(&common, &a).await,
        None => after_init(init::run(&common, &cli.init, &out).await?, &common, &out).await,
    }
}

/// `init`'s end: with `--yes` (or "yes" in the wizard) the logs already in the bucket are loaded, by `backfill`.
/// With `--output json` its summary goes into init's plan document, and that one document is printed.
async fn after_init(outcome: init::Outcome, common: &settings::Common, out: &output::Output) -> anyhow::Result<Exit> {
    match outcome {
        init::Outcome::Done(exit) => Ok(exit),
        init::Outcome::Backfill { args, doc: None } => ingest::backfill(common, &args, out).await,
        init::Outcome::Backfill { args, doc: Some(mut doc) } => {
            let sub = out.capturing();
            let r = ingest::backfill(common, &args, &sub).await;
            if let Some(v) = sub.captured() {
                doc["backfill"] = v["backfill"].clone();
            }
            out.json_doc(&doc);
            r.map_err(|e| e.context("the pipeline is set up; loading the existing logs failed (rerun `trailsetup backfill`)"))
        }
    }
}

pub mod init;

// issue 2 (init): plan, resources, apply, wizard
pub mod apply;
pub mod destroy;
pub mod status;
pub mod plan;
pub mod resources;
pub mod rules;
pub mod search;
pub mod wizard;
