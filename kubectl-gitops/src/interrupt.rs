//! Ctrl-C while a sync or revert writes. Until [`arm`] is called the default applies (the
//! process ends: nothing has been written yet). From then on a Ctrl-C is counted instead, and
//! each stage that may take long (applying, waiting, rolling back, deleting old records)
//! stops when a Ctrl-C arrives after it began, so the run records what happened and releases
//! the namespace's lease. Counting rather than one listener per stage means a Ctrl-C that
//! arrives between two stages is not lost.

use std::sync::OnceLock;

use tokio::sync::watch;

static COUNT: OnceLock<watch::Sender<u32>> = OnceLock::new();

/// From now on Ctrl-C (SIGINT) is counted, not fatal. Idempotent; needs the tokio runtime.
pub fn arm() {
    COUNT.get_or_init(|| {
        let (tx, _) = watch::channel(0u32);
        let counter = tx.clone();
        // The handler is installed here, before returning, so no Ctrl-C in between ends the
        // process the default way.
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut sigint) = signal(SignalKind::interrupt()) {
                tokio::spawn(async move {
                    while sigint.recv().await.is_some() {
                        counter.send_modify(|n| *n += 1);
                    }
                });
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                counter.send_modify(|n| *n += 1);
            }
        });
        tx
    });
}

/// How many Ctrl-Cs arrived since [`arm`] (0 before it).
pub fn count() -> u32 {
    COUNT.get().map_or(0, |tx| *tx.borrow())
}

/// Completes at the first Ctrl-C after `seen` ([`count`] when the stage began); never before
/// [`arm`].
pub async fn after(seen: u32) {
    let Some(tx) = COUNT.get() else {
        return std::future::pending().await;
    };
    let mut rx = tx.subscribe();
    let _ = rx.wait_for(|&n| n > seen).await;
}
