//! When one target fails, the others stop and what they created goes.

use futures_util::stream::FuturesUnordered;

use crate::engine::Engine;

/// The containers an engine tracks at one moment.
pub(crate) struct Tracked {
    containers: Vec<String>,
}

impl Tracked {
    pub(crate) fn now(engine: &Engine) -> Tracked {
        Tracked {
            containers: engine.live_containers(),
        }
    }

    /// What the engine tracks now that it did not then: what the work since created and has
    /// not removed (yet).
    pub(crate) fn new_since(&self, engine: &Engine) -> Tracked {
        let now = Tracked::now(engine);
        Tracked {
            containers: now
                .containers
                .into_iter()
                .filter(|c| !self.containers.contains(c))
                .collect(),
        }
    }
}

/// After one target failed, stop the others (`running`): remove the containers created since `before` first, while their futures still hold the run folders, so no
/// container writes into a folder being removed; then drop them, which removes the folders and
/// stops their blocking work. A create request still in flight when they stopped may land a
/// moment later, so the containers are removed by name once more. What the engine created
/// since `before` is taken to be this build's: an engine serves one run at a time, as its
/// interrupt cleanup (`Engine::remove_leftovers`) assumes too.
pub(crate) async fn stop_the_others<F>(
    engine: &Engine,
    before: &Tracked,
    running: FuturesUnordered<F>,
) {
    let created = before.new_since(engine);
    engine
        .remove_created_then_sweep(&created.containers, move || drop(running))
        .await;
}
