use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = trailsetup::cli::Cli::parse();
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
