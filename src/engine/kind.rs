//! Which engine answers, and what it can do. The engine names itself in `/version`'s
//! `Components` (dockerd: `Engine`; Podman's Docker-compatible service: `Podman Engine`); the
//! rest of dockception asks an [`EngineKind`] what it can do (as cross-rs's `EngineType` does)
//! and never compares names itself.

/// The engine behind the Docker API dockception talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// Docker Engine (moby's dockerd).
    Docker,
    /// Podman's Docker-compatible service (`podman system service`).
    Podman,
    /// Something else that speaks the Docker API; it is taken to behave as dockerd does.
    Other,
}

impl EngineKind {
    /// The kind an engine's `/version` components (their names) say it is.
    pub(crate) fn from_components<'a>(names: impl IntoIterator<Item = &'a str>) -> EngineKind {
        let mut found = EngineKind::Other;
        for name in names {
            if name.to_ascii_lowercase().contains("podman") {
                return EngineKind::Podman;
            }
            if name == "Engine" {
                found = EngineKind::Docker;
            }
        }
        found
    }

    /// Whether `docker load` takes an archive whose `manifest.json` names layers the engine
    /// already has without carrying them. dockerd does not open a layer whose chain it has
    /// (moby's `image/tarexport/load.go`); Podman reads the archive with containers/image's
    /// docker-archive source, which wants every layer it names ("Some layer tarfiles are
    /// missing in the tarball"), so Podman gets the whole image.
    pub fn loads_without_present_layers(self) -> bool {
        !matches!(self, EngineKind::Podman)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_the_components_an_engine_names() {
        // As dockerd 20.10 and Podman 4.3 answer /version here.
        let table: [(&[&str], EngineKind); 4] = [
            (
                &["Engine", "containerd", "runc", "docker-init"],
                EngineKind::Docker,
            ),
            (
                &["Podman Engine", "Conmon", "OCI Runtime (runc)"],
                EngineKind::Podman,
            ),
            (&["containerd"], EngineKind::Other),
            (&[], EngineKind::Other),
        ];
        for (names, kind) in table {
            assert_eq!(
                EngineKind::from_components(names.iter().copied()),
                kind,
                "{names:?}"
            );
        }
    }

    #[test]
    fn only_podman_wants_every_layer_in_a_load() {
        assert!(EngineKind::Docker.loads_without_present_layers());
        assert!(EngineKind::Other.loads_without_present_layers());
        assert!(!EngineKind::Podman.loads_without_present_layers());
    }
}
