use clap::FromArgMatches;

mod completions;

fn main() -> std::process::ExitCode {
    // `Cli` plus the `completions` subcommand; usage errors exit 2 and --help/--version exit 0 as with `Cli::parse`.
    let mut cmd = trailsetup::cli::command();
    let mut matches = cmd.clone().get_matches();
    if let Some((trailsetup::cli::COMPLETIONS, sub)) = matches.subcommand() {
        // before logging, the runtime, settings and state: nothing here needs AWS, a state file or a TTY
        let args = trailsetup::cli::CompletionsArgs::from_arg_matches(sub).unwrap_or_else(|e| e.format(&mut cmd).exit());
        return completions::print(&args, cmd);
    }
    let cli = trailsetup::cli::Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    trailsetup::init_logging(cli.global.verbose, cli.global.quiet);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = match rt.block_on(trailsetup::run(cli)) {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {e:#}");
            trailsetup::error::exit_for(&e)
        }
    };
    std::process::ExitCode::from(code as u8)
}
