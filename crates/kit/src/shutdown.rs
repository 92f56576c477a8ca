//! One shutdown signal for the whole process.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. A second Ctrl-C ends the
/// process at once, for when draining hangs.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining (Ctrl-C again to exit now)");
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error.cause_chain = ?error, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
