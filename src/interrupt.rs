//! Ctrl-C and SIGTERM during a run: stop the work, remove the containers it created, and say
//! so. The CLI and [`crate::build_blocking`] both run their work through [`interruptible`].

use std::future::Future;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Run `work`, but on Ctrl-C or SIGTERM drop it (which removes its temporary folders), remove
/// the containers it created, and report the interrupt. A second signal during that cleanup
/// exits at once, naming what is left.
pub async fn interruptible<T>(engine: &Engine, work: impl Future<Output = Result<T>>) -> Result<T> {
    let (signal, status) = tokio::select! {
        result = work => return result,
        s = wait_for_signal() => s,
    };
    eprintln!("\n{signal} received: cleaning up (press Ctrl-C again to exit at once)");
    tokio::select! {
        left = engine.remove_leftovers() => {
            if !left.is_empty() {
                eprintln!("could not remove containers: {} (remove them with docker rm -f)", left.join(" "));
            }
        }
        _ = wait_for_signal() => {
            let left = engine.live_containers();
            eprintln!(
                "exiting without cleanup; left behind: {}",
                if left.is_empty() { "nothing".to_string() } else { left.join(" ") }
            );
            std::process::exit(i32::from(status));
        }
    }
    Err(Error::Interrupted { signal, status })
}

async fn wait_for_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    }
}
