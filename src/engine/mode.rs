//! Whether the engine sees this machine's files (local mode: sources are bind-mounted) or not
//! (remote mode: they are synced into volumes, see `sync`). `--engine-mode` or the manifest's
//! `[engine] mode` say so; else a probe asks the engine once and its answer is kept, per engine
//! address, in the project's output folder, so later builds ask nothing.
//!
//! The probe: a fresh folder holding a file with a random token, bind-mounted into a created,
//! never-started container; the engine either refuses the mount (its host has no such folder)
//! or hands back the file through the archive API, and only an engine on this machine can hand
//! back that token.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::containers::{bind_mount, labels, offline, unique_name};
use super::error::{daemon_message, docker_error, On};
use super::{Engine, Result};
use crate::manifest::EngineMode;

/// The file, in the project's output folder, that keeps each engine's probed answer.
pub(crate) const MODE_CACHE_FILE: &str = "engine-mode.json";

/// How the builds of this run use the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// The engine sees this machine's files: bind mounts.
    Local,
    /// It does not: sources synced into volumes, outputs read back through the archive API.
    Remote,
}

/// What decides the mode, handed over before the first build ([`Engine::configure_mode`]).
#[derive(Debug, Clone)]
pub(crate) struct ModeSetting {
    /// The setting's value.
    pub mode: EngineMode,
    /// Which setting gave it, for messages.
    pub set_by: String,
    /// The project's output folder: the probe's folder goes there, and the kept answers.
    pub project_dir: PathBuf,
    /// The project, for the probe container's labels.
    pub project: String,
}

/// The mode and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decided {
    /// The mode.
    pub mode: Mode,
    /// Why, in words: the setting, or the probe.
    pub why: String,
}

/// The kept probe answers, by engine address.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ModeCache {
    engines: BTreeMap<String, Mode>,
}

/// The probed answer kept for the engine at `host` in `project_dir`, if any.
pub(crate) fn cached_mode(project_dir: &Path, host: &str) -> Option<Mode> {
    read_cache(project_dir).engines.get(host).copied()
}

fn read_cache(project_dir: &Path) -> ModeCache {
    std::fs::read(project_dir.join(MODE_CACHE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Keep (or, with `None`, forget) the answer for `host`; a cache that cannot be written costs
/// the next build a probe, nothing more.
fn write_cache(project_dir: &Path, host: &str, mode: Option<Mode>) {
    let mut cache = read_cache(project_dir);
    match mode {
        Some(mode) => cache.engines.insert(host.to_string(), mode),
        None => cache.engines.remove(host),
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&cache) {
        let _ = std::fs::create_dir_all(project_dir);
        let _ = crate::fsutil::write_atomic(&project_dir.join(MODE_CACHE_FILE), &bytes);
    }
}

impl Engine {
    /// Say what decides the mode; the first call of a run wins (every target of a run shares
    /// one engine and one setting).
    pub(crate) fn configure_mode(&self, setting: ModeSetting) {
        if let Ok(mut slot) = self.mode_setting.lock() {
            slot.get_or_insert(setting);
        }
    }

    /// The mode of this run, decided once: the setting when it is not `auto`, else the kept
    /// probe answer for this engine, else a probe (whose answer is kept) with a created,
    /// never-started container of `probe_image`, which the engine must have. Without a
    /// setting (a caller that never configured one), local.
    pub(crate) async fn mode(&self, probe_image: &str) -> Result<Decided> {
        self.mode
            .get_or_try_init(|| async {
                let setting = self.mode_setting.lock().ok().and_then(|s| s.clone());
                let Some(setting) = setting else {
                    return Ok(Decided {
                        mode: Mode::Local,
                        why: "the default".into(),
                    });
                };
                self.decide(&setting, probe_image).await
            })
            .await
            .cloned()
    }

    /// The mode when it is decided already; local before that.
    pub(crate) fn mode_now(&self) -> Mode {
        self.mode.get().map_or(Mode::Local, |d| d.mode)
    }

    async fn decide(&self, setting: &ModeSetting, probe_image: &str) -> Result<Decided> {
        let fixed = match setting.mode {
            EngineMode::Local => Some(Mode::Local),
            EngineMode::Remote => Some(Mode::Remote),
            EngineMode::Auto => None,
        };
        if let Some(mode) = fixed {
            return Ok(Decided {
                mode,
                why: setting.set_by.clone(),
            });
        }
        if let Some(mode) = cached_mode(&setting.project_dir, &self.host) {
            return Ok(Decided {
                mode,
                why: format!(
                    "auto: the kept answer of a probe of {} ({})",
                    self.host,
                    setting.project_dir.join(MODE_CACHE_FILE).display()
                ),
            });
        }
        let mode = self.probe(setting, probe_image).await?;
        write_cache(&setting.project_dir, &self.host, Some(mode));
        Ok(Decided {
            mode,
            why: format!("auto: a probe of {} found it {}", self.host, sees(mode)),
        })
    }

    /// Forget the kept answer for this engine (it turned out wrong); the next run probes.
    pub(crate) fn forget_mode(&self) {
        if let Ok(slot) = self.mode_setting.lock() {
            if let Some(setting) = slot.as_ref() {
                write_cache(&setting.project_dir, &self.host, None);
            }
        }
    }

    /// Ask the engine whether it sees `setting.project_dir` (see the module's comment).
    async fn probe(&self, setting: &ModeSetting, image: &str) -> Result<Mode> {
        let token = format!("{:016x}", random_token());
        let dir = setting.project_dir.join(format!("probe-{token}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| super::Error::from(crate::fsutil::IoError::new("creating", &dir, e)))?;
        let written = std::fs::write(dir.join("token"), &token);
        let result = match written {
            Ok(()) => self.probe_with(setting, image, &dir, &token).await,
            Err(e) => Err(crate::fsutil::IoError::new("writing the probe file in", &dir, e).into()),
        };
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn probe_with(
        &self,
        setting: &ModeSetting,
        image: &str,
        dir: &Path,
        token: &str,
    ) -> Result<Mode> {
        const AT: &str = "/dockception-probe";
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["true".into()]),
            labels: Some(labels("probe", &setting.project)),
            host_config: Some(offline(Some(vec![bind_mount(dir, AT, true)?]))),
            ..Default::default()
        };
        let name = unique_name("dockception-probe", &setting.project);
        self.supported().await?;
        self.track(&name);
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
            .name(&name)
            .build();
        if let Err(e) = self.docker.create_container(Some(options), body).await {
            self.untrack(&name);
            // The engine's host has no such folder: it cannot see ours.
            if status_is_bad_request(&e) {
                return Ok(Mode::Remote);
            }
            return Err(docker_error(
                On::Container(&name),
                format!(
                    "creating the container of {image} that asks the engine whether it sees this machine's files"
                ),
                e,
            ));
        }
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(&format!("{AT}/token"))
            .build();
        let mut tar = Vec::new();
        let mut download = self.docker.download_from_container(&name, Some(options));
        let mut found = true;
        while let Some(chunk) = download.next().await {
            match chunk {
                Ok(bytes) => tar.extend_from_slice(&bytes),
                Err(_) => {
                    found = false;
                    break;
                }
            }
        }
        drop(download);
        self.remove_container(&name).await?;
        let seen = found && first_file_of(&tar).is_some_and(|content| content == token.as_bytes());
        Ok(if seen { Mode::Local } else { Mode::Remote })
    }
}

/// "sees this machine's files" or "cannot see this machine's files".
fn sees(mode: Mode) -> &'static str {
    match mode {
        Mode::Local => "sees this machine's files",
        Mode::Remote => "cannot see this machine's files",
    }
}

/// The engine refused the request itself (400): for a bind mount, a source path its host does
/// not have.
fn status_is_bad_request(e: &bollard::errors::Error) -> bool {
    super::error::status_code(e) == Some(400) || daemon_message(e).contains("bind source path")
}

/// The content of the first regular file in the tar `bytes`.
pub(super) fn first_file_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.header().entry_type().is_file() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).ok()?;
            return Some(content);
        }
    }
    None
}

/// 64 random bits, from the kernel.
pub(crate) fn random_token() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return nanos ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_answers_are_per_engine_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(cached_mode(dir.path(), "unix:///a.sock"), None);
        write_cache(dir.path(), "unix:///a.sock", Some(Mode::Remote));
        write_cache(dir.path(), "unix:///b.sock", Some(Mode::Local));
        assert_eq!(
            cached_mode(dir.path(), "unix:///a.sock"),
            Some(Mode::Remote)
        );
        assert_eq!(cached_mode(dir.path(), "unix:///b.sock"), Some(Mode::Local));
        write_cache(dir.path(), "unix:///a.sock", None);
        assert_eq!(cached_mode(dir.path(), "unix:///a.sock"), None);
    }

    #[test]
    fn the_first_file_of_a_tar_is_its_content() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "token", &b"abc"[..])
            .expect("append");
        let tar = builder.into_inner().expect("tar");
        assert_eq!(first_file_of(&tar), Some(b"abc".to_vec()));
        assert_eq!(first_file_of(b"not a tar"), None);
    }
}
