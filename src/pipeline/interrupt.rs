//! Ctrl-C and SIGTERM during a run: stop the work, remove what it created, and say what is
//! left. Used by the CLI and by [`crate::build_blocking`] for xtasks.

use std::future::Future;

use crate::engine::Engine;
use crate::error::Error;

/// Run `work`, but on Ctrl-C or SIGTERM drop it (which removes its temporary folders and stops
/// its streams), remove the containers and untagged images it created, and report the
/// interrupt. A second signal during that cleanup exits at once, naming what is left. When
/// `work` fails on its own and something could not be removed (the engine went away), say
/// what is left and how to remove it.
pub async fn interruptible<T>(
    engine: &Engine,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    // Listening starts before the work, and the same listeners serve the second signal, so
    // no signal is lost between the two.
    let mut signals = Signals::listen();
    let (signal, status) = tokio::select! {
        result = work => {
            if result.is_err() {
                let left = engine.leftovers();
                if !left.is_empty() {
                    eprintln!(
                        "warning: left behind: {}; once the engine answers, `dockception clean` removes what is left",
                        left.join(", ")
                    );
                }
            }
            return result;
        }
        s = signals.next() => s,
    };
    eprintln!("\n{signal} received: cleaning up (press Ctrl-C again to exit at once)");
    tokio::select! {
        left = engine.remove_leftovers() => {
            if !left.is_empty() {
                eprintln!(
                    "could not remove: {} (`dockception clean` removes them once the engine answers)",
                    left.join(", ")
                );
            }
        }
        _ = signals.next() => {
            let left = engine.leftovers();
            eprintln!(
                "exiting without cleanup; left behind: {}",
                if left.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} (`dockception clean` removes them)", left.join(", "))
                }
            );
            std::process::exit(i32::from(status));
        }
    }
    Err(Error::Interrupted { signal, status })
}

/// SIGINT and SIGTERM listeners, installed once for the whole run.
struct Signals {
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let listeners = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        };
        Signals { listeners }
    }

    async fn next(&mut self) -> (&'static str, u8) {
        let Some((int, term)) = self.listeners.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => ("SIGINT", 130),
            _ = term.recv() => ("SIGTERM", 143),
        }
    }
}
