//! Where a build's images go, in buildx's words: `--load` into the engine (the default),
//! `--push` to the tags' registries, `--output` to OCI layouts and archives. What can be wrong
//! with them is checked before anything is built.

use crate::deliver::{self, output::Output, push::RegistrySettings};
use crate::error::{Error, Result};
use crate::image::WrittenImage;
use crate::plan::{Plan, PlanSet};
use crate::progress::Progress;
use crate::report::Delivery;

/// Where the runtime images of a build go, as `build`'s flags say it: into the engine unless
/// a push or an output is asked for (then only with [`Destinations::load`] too).
///
/// ```
/// let to = dockception::Destinations::default()
///     .push()
///     .output("type=oci,dest=target/app-oci")?
///     .registry_http("registry.internal:5000");
/// # Ok::<(), dockception::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    load: bool,
    push: bool,
    outputs: Vec<Output>,
    registry: RegistrySettings,
}

impl Destinations {
    /// Load each image into the engine as well (`--load`), sending only the layers it lacks.
    pub fn load(mut self) -> Self {
        self.load = true;
        self
    }

    /// Push every tag straight to the registry it names (`--push`).
    pub fn push(mut self) -> Self {
        self.push = true;
        self
    }

    /// Write the image as `type=oci,dest=DIR`, `type=oci,dest=FILE.tar`,
    /// `type=docker,dest=FILE.tar` or `type=none` (`--output`).
    pub fn output(mut self, spec: &str) -> Result<Self> {
        self.outputs.push(Output::parse(spec)?);
        Ok(self)
    }

    /// Allow plain HTTP to `registry` (`HOST[:PORT]`); localhost and 127.0.0.0/8 always are.
    pub fn registry_http(mut self, registry: impl Into<String>) -> Self {
        self.registry.http.push(registry.into());
        self
    }

    /// Do not verify the TLS certificate of `registry` (`HOST[:PORT]`); it does not allow HTTP.
    pub fn registry_skip_verify(mut self, registry: impl Into<String>) -> Self {
        self.registry.skip_tls_verify.push(registry.into());
        self
    }

    /// Trust the CA certificate (PEM) in `file` for registries, besides the system's.
    pub fn registry_ca(mut self, file: impl Into<std::path::PathBuf>) -> Self {
        self.registry.ca_files.push(file.into());
        self
    }

    /// How registries are reached (for pushes, and bases taken from their registry).
    pub(crate) fn registry(&self) -> &RegistrySettings {
        &self.registry
    }

    /// Whether `plan`'s image is pushed: `--push`, or `push = true` in its `[image]`.
    pub(crate) fn pushes(&self, plan: &Plan) -> bool {
        self.push || plan.push
    }

    /// Whether `plan`'s image goes into the engine: asked for, or it goes nowhere else.
    pub(crate) fn loads(&self, plan: &Plan) -> bool {
        self.load || (!self.pushes(plan) && self.outputs.is_empty())
    }

    /// Whether every image of `plans` only goes into the engine.
    pub(crate) fn only_load(&self, plans: &PlanSet) -> bool {
        !plans.targets.iter().any(|p| self.pushes(p))
            && self.outputs.iter().all(|o| o.dest().is_none())
    }

    /// Refuse, before anything is built, what cannot be delivered: a tag to push that names no
    /// registry, an output destination that exists or cannot be written, an output with
    /// several images.
    pub(crate) fn check(&self, plans: &PlanSet) -> Result<()> {
        let built: Vec<_> = plans
            .targets
            .iter()
            .filter(|p| plans.is_selected(&p.target))
            .collect();
        for plan in built.iter().filter(|p| self.pushes(p)) {
            {
                if plan.tags.is_empty() {
                    return Err(Error::Usage {
                        message: format!("--push, but target `{}` has no tag to push", plan.target),
                        help:
                            "give it a tag that names a registry: --tag registry.example.com/app:1"
                                .into(),
                    });
                }
                deliver::push::check_tags(&plan.tags)?;
            }
        }
        let files = self.outputs.iter().filter(|o| o.dest().is_some()).count();
        if files > 0 && built.len() > 1 {
            return Err(Error::Usage {
                message: format!(
                    "--output writes one image, but this build makes {}",
                    built.len()
                ),
                help: "name the target to write: dockception build TARGET --output …".into(),
            });
        }
        deliver::output::check(&self.outputs)?;
        Ok(())
    }

    /// Push and write `image` as asked (the load is the engine's, done by the caller).
    pub(crate) async fn deliver(
        &self,
        plan: &Plan,
        image: &WrittenImage,
        progress: &Progress,
    ) -> Result<Vec<Delivery>> {
        let tags = &plan.tags;
        let mut delivered = Vec::new();
        if self.pushes(plan) {
            progress.phase(&format!(
                "pushing {} to {}",
                image.digest(),
                tags.join(", ")
            ));
            for pushed in deliver::push::push(image, tags, &self.registry, progress).await? {
                delivered.push(Delivery {
                    to: "registry".into(),
                    destination: format!("{}/{}", pushed.registry, pushed.repository),
                    sent_bytes: pushed.uploaded_bytes,
                    skipped_bytes: pushed.skipped_bytes(),
                });
            }
        }
        if self.outputs.iter().any(|o| o.dest().is_some()) {
            let image = image.clone();
            let tags = tags.to_vec();
            let outputs = self.outputs.clone();
            let written = tokio::task::spawn_blocking(move || {
                deliver::output::write_all(&outputs, &image, &tags)
            })
            .await
            .map_err(|e| Error::Usage {
                message: format!("writing the outputs stopped: {e}"),
                help: "run the build again".into(),
            })??;
            for file in written {
                delivered.push(Delivery {
                    to: if file.kind == "docker-archive" {
                        "docker"
                    } else {
                        "oci"
                    }
                    .into(),
                    destination: file.dest.display().to_string(),
                    sent_bytes: file.bytes,
                    skipped_bytes: 0,
                });
            }
        }
        Ok(delivered)
    }
}
