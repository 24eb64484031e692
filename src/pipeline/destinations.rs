//! Where a build's images go, in buildx's words: `--load` into the engine (the default),
//! `--push` to the tags' registries, `--output` to OCI layouts and archives. What can be wrong
//! with them is checked before anything is built.

use crate::deliver::{self, output::Output, push::RegistrySettings};
use crate::error::{Error, Result};
use crate::image::WrittenImage;
use crate::plan::PlanSet;
use crate::progress::Progress;
use crate::report::Delivery;

/// Where the runtime images of a build go.
#[derive(Debug, Clone)]
pub struct Destinations {
    /// Load each image into the engine (`--load`).
    pub load: bool,
    /// Push each image to the registries its tags name (`--push`).
    pub push: bool,
    /// Write each image as an OCI layout or archive (`--output`); only when one image is built.
    pub outputs: Vec<Output>,
    /// How registries are reached.
    pub registry: RegistrySettings,
}

impl Default for Destinations {
    /// Into the engine only, as `docker build` does.
    fn default() -> Self {
        Destinations {
            load: true,
            push: false,
            outputs: Vec::new(),
            registry: RegistrySettings::default(),
        }
    }
}

impl Destinations {
    /// Whether the images only go into the engine.
    pub(crate) fn only_load(&self) -> bool {
        !self.push && self.outputs.iter().all(|o| o.dest().is_none())
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
        if self.push {
            for plan in &built {
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
        image: &WrittenImage,
        tags: &[String],
        progress: &Progress,
    ) -> Result<Vec<Delivery>> {
        let mut delivered = Vec::new();
        if self.push {
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
