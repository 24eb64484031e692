//! A target's artifacts: its builder run (in a fresh container or the warm one), or the output
//! of the target it takes them from; then the selection.

use std::path::PathBuf;

use crate::artifacts::collect::{self, Collected};
use crate::artifacts::run_dir::RunDir;
use crate::engine::{self, Engine};
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::plan::{secrets, Plan};
use crate::progress::{self, Progress, Stage};

use super::fingerprint::Sources;
use super::runtime::container_join;
use super::target::Outputs;

/// A target's artifacts, and the run folder that holds them until they are kept.
pub(crate) struct Produced {
    pub(crate) collected: Collected,
    pub(crate) run: Option<RunDir>,
    /// How long the build command ran, when it ran.
    pub(crate) ran_ms: Option<u64>,
}

impl Produced {
    /// Keep the run's output as the target's `last/` one, for later targets and runs.
    pub(crate) fn keep(self, plan: &Plan, outputs: &mut Outputs) -> Result<()> {
        if let Some(last) = self.promote()? {
            outputs.insert(plan.target.clone(), last);
        }
        Ok(())
    }

    /// Make the run's output the target's `last/` one; returns its path, when a builder ran.
    pub(crate) fn promote(self) -> Result<Option<PathBuf>> {
        Ok(self.run.map(RunDir::promote).transpose()?)
    }
}

/// Run the target's builder into a fresh output folder, or take the output of the target it
/// takes artifacts from; then select the artifacts. `secrets` are the builder's when the caller
/// resolved them already.
pub(crate) async fn produce_artifacts(
    engine: &Engine,
    plan: &Plan,
    outputs: &Outputs,
    secrets: Option<&secrets::Resolved>,
    sources: Option<&Sources>,
    progress: &Progress,
) -> Result<Produced> {
    if let Some(from) = &plan.artifacts_from {
        return from_target(plan, outputs, from);
    }
    let log = plan.out_dir.join(progress::LOG_FILE);
    let (ran, log) = progress::logging_to(
        log,
        progress,
        run_build(engine, plan, secrets, sources, progress),
    )
    .await;
    let (exit, run) = ran?;
    if exit.code != 0 {
        return Err(Error::BuildCommandFailed {
            code: exit.code,
            image: plan.builder.image.clone(),
            tail: if log.lines > 0 { log.tail } else { exit.tail },
            lines: log.lines,
            log: log.path,
        });
    }
    let collected = select(plan, &run, progress).await?;
    Ok(Produced {
        collected,
        run: Some(run),
        ran_ms: Some(exit.ran_ms),
    })
}

/// The artifacts of a target that takes them from target `from`'s kept output.
fn from_target(plan: &Plan, outputs: &Outputs, from: &str) -> Result<Produced> {
    let root = outputs.get(from).ok_or_else(|| Error::Usage {
        message: format!(
            "target `{}` needs target `{from}`, which did not run",
            plan.target
        ),
        help: format!("build both: dockception build {from} {}", plan.target),
    })?;
    let collected = collect::collect(
        &root.join(&plan.artifacts.subdir),
        &plan.artifacts,
        &format!(
            "{from}:{}",
            container_join(&plan.builder.output_target, &plan.artifacts.subdir)
        ),
    )?;
    Ok(Produced {
        collected,
        run: None,
        ran_ms: None,
    })
}

/// Run the build command: in the warm builder when there is one to use, else in a fresh
/// container writing into a fresh run folder.
async fn run_build(
    engine: &Engine,
    plan: &Plan,
    secrets: Option<&secrets::Resolved>,
    sources: Option<&Sources>,
    progress: &Progress,
) -> Result<(engine::BuilderExit, RunDir)> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let secrets = match secrets {
        Some(resolved) => resolved.clone(),
        None => secrets::resolve(&plan.builder, |name| std::env::var_os(name))?,
    };
    engine.ensure_caches(plan, progress).await?;
    let remote = engine.mode(&plan.builder.image).await?.mode == engine::mode::Mode::Remote;
    // On a remote engine the sources go into their volumes first (through the warm builder
    // when there is one); the lock keeps another build of this target from changing them
    // until this one's command ended.
    let sync_lock = match remote {
        true => Some(super::source_sync::lock_sources(plan, progress).await?),
        false => None,
    };
    let mut warm = open_warm(engine, plan, &builder, &secrets, progress).await?;
    let _synced = if let Some(lock) = sync_lock {
        let via = warm.as_ref().and_then(|w| w.session.sync_helper(plan));
        let synced =
            super::source_sync::sync_sources(engine, plan, sources, via, lock, progress).await;
        match synced {
            Ok(lock) => Some(lock),
            Err(e) => {
                if let Some(w) = warm.take() {
                    engine.leave_warm(w.session);
                }
                return Err(e);
            }
        }
    } else {
        None
    };
    progress.stage(
        Stage::Builder,
        &format!(
            "building in {}: {}",
            plan.builder.image,
            plan.builder.command.join(" ")
        ),
    );
    if let Some(warm) = warm {
        if let Some(done) = run_warm(engine, plan, warm, &builder, &secrets, progress).await? {
            return Ok(done);
        }
    }
    let run = RunDir::create(&plan.out_dir)?;
    let exit = engine
        .run_builder_with(plan, &run.output(), &secrets, progress)
        .await?;
    Ok((exit, run))
}

/// Select the artifacts in the run's output. Walking a large output takes a while: it runs off
/// the async threads, and stops when this future is dropped (Ctrl-C) so the run's folder can go.
pub(crate) async fn select(plan: &Plan, run: &RunDir, progress: &Progress) -> Result<Collected> {
    progress.stage(
        Stage::Artifacts,
        &format!("selecting artifacts in {}", plan.builder.output_target),
    );
    let cancel = CancelOnDrop::default();
    let (root, rules, from) = (
        run.output().join(&plan.artifacts.subdir),
        plan.artifacts.clone(),
        plan.builder.output_target.clone(),
    );
    let flag = std::sync::Arc::clone(&cancel.0);
    let collected =
        tokio::task::spawn_blocking(move || collect::collect_until(&root, &rules, &from, &flag))
            .await
            .map_err(|e| {
                Error::io(
                    "selecting artifacts in",
                    run.output(),
                    std::io::Error::other(e),
                )
            })??;
    for skipped in &collected.skipped {
        progress.warn(skipped);
    }
    Ok(collected)
}

/// The target's warm builder, locked for this build and running.
pub(crate) struct OpenWarm {
    session: engine::WarmSession,
    /// Its output mount: `<out_dir>/warm/output`.
    output: PathBuf,
    _lock: std::fs::File,
}

/// Open the target's warm builder (`builder.warm`), when the plan asks for one and no other
/// dockception is using it; `None` means the build is to run in a fresh container. Its
/// channel folders go in `<out_dir>/warm/channel`. The warm
/// container's output mount is `<out_dir>/warm/output`, a folder that stays (the mount points
/// at it): it is emptied here, and its entries are moved into a fresh run folder after the
/// command ([`run_warm`]), so the rest of the pipeline sees a run like any other.
pub(crate) async fn open_warm(
    engine: &Engine,
    plan: &Plan,
    builder: &engine::ImageFacts,
    secrets: &secrets::Resolved,
    progress: &Progress,
) -> Result<Option<OpenWarm>> {
    if plan.builder.warm.is_none() {
        return Ok(None);
    }
    let dir = plan.out_dir.join("warm");
    let output = dir.join("output");
    std::fs::create_dir_all(&output)
        .map_err(|e| Error::io("creating the warm builder's folder", &output, e))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("opening", &lock_path, e))?;
    // flock, not `File::try_lock`: the same lock, within the crate's minimum Rust version.
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            progress.warn(&format!(
                "another dockception is building target {} in its warm builder; this build runs in a fresh container",
                plan.target
            ));
            return Ok(None);
        }
        Err(e) => return Err(Error::io("locking", &lock_path, e.into())),
    }
    empty_folder(&output)?;
    // A folder made anew (say the output folder was deleted) is another mount source even at
    // the same path: its identity is part of the warm container's name.
    let identity = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&output)
            .map_err(|e| Error::io("reading the warm builder's folder", &output, e))?;
        format!("{}:{}", meta.dev(), meta.ino())
    };
    match engine
        .open_warm(
            plan,
            &output,
            &identity,
            &dir.join("channel"),
            secrets,
            builder,
        )
        .await?
    {
        engine::WarmOpen::Ready(session) => Ok(Some(OpenWarm {
            session,
            output,
            _lock: lock,
        })),
        engine::WarmOpen::Unavailable(reason) => {
            no_warm_builder(plan, &reason, progress);
            Ok(None)
        }
    }
}

fn no_warm_builder(plan: &Plan, reason: &str, progress: &Progress) {
    progress.warn(&format!(
        "target {}: no warm builder ({reason}); this build runs in a fresh container",
        plan.target
    ));
}

/// Run the build in the warm builder `warm`; `None` means the build is still to run in a fresh
/// container.
pub(crate) async fn run_warm(
    engine: &Engine,
    plan: &Plan,
    warm: OpenWarm,
    builder: &engine::ImageFacts,
    secrets: &secrets::Resolved,
    progress: &Progress,
) -> Result<Option<(engine::BuilderExit, RunDir)>> {
    let OpenWarm {
        session,
        output,
        _lock,
    } = warm;
    let ran = engine
        .run_in_warm(session, plan, secrets, builder, progress)
        .await?;
    let exit = match ran {
        engine::WarmRun::Ran(exit) => exit,
        engine::WarmRun::Unavailable(reason) => {
            no_warm_builder(plan, &reason, progress);
            empty_folder(&output)?;
            return Ok(None);
        }
    };
    let run = RunDir::create(&plan.out_dir)?;
    let into = run.output();
    for entry in std::fs::read_dir(&output).map_err(|e| Error::io("reading", &output, e))? {
        let entry = entry.map_err(|e| Error::io("reading", &output, e))?;
        let to = into.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .map_err(|e| Error::io("moving the build output to", &to, e))?;
    }
    Ok(Some((exit, run)))
}

/// Remove everything inside `dir`, keeping `dir` itself.
pub(crate) fn empty_folder(dir: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))? {
        let entry = entry.map_err(|e| Error::io("reading", dir, e))?;
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|e| Error::io("emptying the warm builder's folder of", &path, e))?;
    }
    Ok(())
}

/// Sets its flag when dropped, which tells a blocking task to stop.
#[derive(Default)]
pub(crate) struct CancelOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
