//! `trailsetup completions <SHELL>` and `trailsetup completions --man`: generated from the command definition
//! alone, so they need no AWS credentials, no state file and never prompt.

use std::io::Write;
use std::process::ExitCode;

use trailsetup::cli::CompletionsArgs;

/// The completion script for `args.shell`, or with `--man` the roff man page of the top-level command.
pub fn render(args: &CompletionsArgs, mut cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if args.man {
        clap_mangen::Man::new(cmd).render(&mut buf)?;
    } else if let Some(shell) = args.shell {
        let name = cmd.get_name().to_string();
        clap_complete::generate(shell, &mut cmd, name, &mut buf);
    }
    Ok(buf)
}

/// Print [`render`]'s output on stdout. A closed pipe (`trailsetup completions bash | head`) is not an error.
pub fn print(args: &CompletionsArgs, cmd: clap::Command) -> ExitCode {
    let written = render(args, cmd).and_then(|buf| {
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    #[test]
    fn every_shell_renders_and_names_the_binary() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish, Shell::PowerShell] {
            let args = CompletionsArgs { shell: Some(shell), man: false };
            let out = String::from_utf8(render(&args, trailsetup::cli::command()).unwrap()).unwrap();
            assert!(out.contains("trailsetup"), "{shell}: {out}");
        }
    }

    #[test]
    fn command_definition_is_consistent() {
        trailsetup::cli::command().debug_assert();
    }
}
