//! SIGINT/SIGTERM: finish what is in flight, then stop.

/// Resolves on the first SIGINT or SIGTERM.
pub async fn wait() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::warn!("signal received: finishing what is in flight, then stopping (again to force)");
        // A second signal stops at once: nothing unacknowledged was checkpointed, so a rerun still resumes.
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            eprintln!("error: stopped by a second signal; completed files are checkpointed, rerun to resume");
            std::process::exit(1);
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves on the first SIGINT or SIGTERM with the exit code a shell reports for it (130, 143), saying nothing:
/// for a caller that has its own words and cleanup (`init` and `destroy` release the stack's lock, then exit).
pub async fn first() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            std::future::pending::<()>().await;
            return 1;
        };
        tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        130
    }
}
