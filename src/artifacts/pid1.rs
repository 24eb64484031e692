//! The init that runs as PID 1 when `runtime.init` asks for one: where to look for tini, how it
//! wraps the entrypoint, and whether a candidate can run on any base (static ELF).

use crate::plan::RuntimePlan;

/// Where a base image may already have tini.
pub const BASE_CANDIDATES: &[&str] = &[
    "/sbin/tini",
    "/usr/bin/tini",
    "/usr/local/bin/tini",
    "/tini",
    "/usr/bin/tini-static",
    "/sbin/tini-static",
];

/// Where a builder image may have a static tini to copy into the runtime image (Debian's
/// `tini` package installs `/usr/bin/tini-static`).
pub const BUILDER_CANDIDATES: &[&str] = &[
    "/usr/bin/tini-static",
    "/sbin/tini-static",
    "/usr/local/bin/tini-static",
    "/tini-static",
    "/tini",
];

/// Where a copied init lands in the runtime image.
pub const COPIED_PATH: &str = "/sbin/tini";

/// The chosen init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// Its path in the runtime image.
    pub path: String,
    /// Its content when dockception copies it in (from the builder); `None` when it is already
    /// in the base or installed by the runtime steps.
    pub binary: Option<Vec<u8>>,
    /// For the report: which init and where it came from.
    pub description: String,
}

/// Put `init` first in the entrypoint. The program is the manifest's entrypoint (and cmd), or
/// else the base's; tini and dumb-init get `--` so the program's own flags stay its own.
pub fn wrap(
    runtime: &RuntimePlan,
    init: &str,
    base_entrypoint: Option<&[String]>,
    base_cmd: Option<&[String]>,
) -> Result<RuntimePlan, String> {
    let mut wrapped = runtime.clone();
    let program: Vec<String> = match (&runtime.entrypoint, &runtime.cmd) {
        (Some(entrypoint), _) => entrypoint.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => base_entrypoint.map(<[String]>::to_vec).unwrap_or_default(),
    };
    if program.is_empty() && runtime.cmd.is_none() && base_cmd.is_none() {
        return Err(
            "runtime.init needs a program to run: set runtime.entrypoint or runtime.cmd".into(),
        );
    }
    let name = init.rsplit('/').next().unwrap_or(init);
    let mut entrypoint = vec![init.to_string()];
    if name.starts_with("tini") || name.starts_with("dumb-init") {
        entrypoint.push("--".into());
    }
    entrypoint.extend(program);
    if runtime.entrypoint.is_none() && runtime.cmd.is_none() {
        // Keep the base's default arguments: a new ENTRYPOINT would reset them.
        wrapped.cmd = base_cmd.map(<[String]>::to_vec);
    }
    wrapped.entrypoint = Some(entrypoint);
    Ok(wrapped)
}

/// Whether `binary` is an ELF executable without a program interpreter, so it runs on any base,
/// `scratch` included.
pub fn runs_anywhere(binary: &[u8]) -> bool {
    matches!(crate::artifacts::elf::parse(binary), Ok(Some(info)) if info.is_static())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::InitPlan;

    fn runtime(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RuntimePlan {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RuntimePlan {
            entrypoint: entrypoint.map(own),
            cmd: cmd.map(own),
            init: InitPlan::Auto,
            ..RuntimePlan::on("busybox:local")
        }
    }

    #[test]
    fn tini_goes_first_with_a_separator() {
        let r = wrap(
            &runtime(Some(&["/app", "-v"]), Some(&["serve"])),
            "/sbin/tini",
            None,
            None,
        )
        .expect("wraps");
        assert_eq!(
            r.entrypoint,
            Some(vec![
                "/sbin/tini".into(),
                "--".into(),
                "/app".into(),
                "-v".into()
            ])
        );
        assert_eq!(r.cmd, Some(vec!["serve".into()]));
    }

    #[test]
    fn the_bases_program_is_kept_when_the_manifest_names_none() {
        let base_cmd = vec!["sh".to_string()];
        let r = wrap(
            &runtime(None, None),
            "/usr/bin/catatonit",
            None,
            Some(&base_cmd),
        )
        .expect("wraps");
        assert_eq!(r.entrypoint, Some(vec!["/usr/bin/catatonit".into()]));
        assert_eq!(r.cmd, Some(base_cmd));
        let err = wrap(&runtime(None, None), "/sbin/tini", None, None).expect_err("no program");
        assert!(err.contains("needs a program"), "{err}");
    }

    #[test]
    fn only_static_elf_runs_anywhere() {
        use crate::artifacts::elf::tests::tiny_elf;
        let static_exe = tiny_elf(None, &[], None, None);
        assert!(runs_anywhere(&static_exe));
        let dynamic = tiny_elf(
            Some("/lib64/ld-linux-x86-64.so.2"),
            &["libc.so.6"],
            None,
            None,
        );
        assert!(!runs_anywhere(&dynamic));
        assert!(!runs_anywhere(b"#!/bin/sh\necho not an ELF\n"));
        assert!(!runs_anywhere(b"\x7fELF but broken"));
    }
}
