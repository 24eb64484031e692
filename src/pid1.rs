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
pub fn is_static_elf(binary: &[u8]) -> bool {
    let Some(header) = binary.get(..64) else {
        return false;
    };
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return false; // not a 64-bit little-endian ELF
    }
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let phoff = u64::from_le_bytes(header[32..40].try_into().unwrap_or([0; 8]));
    let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let Some(at) = usize::try_from(phoff)
            .ok()
            .and_then(|off| off.checked_add(i * phentsize))
        else {
            return false;
        };
        binary
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .is_some_and(|kind| kind != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::InitPlan;

    fn runtime(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RuntimePlan {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RuntimePlan {
            base: "busybox:local".into(),
            entrypoint: entrypoint.map(own),
            cmd: cmd.map(own),
            env: vec![],
            workdir: None,
            user: None,
            expose: vec![],
            labels: vec![],
            steps: vec![],
            artifacts_mount: "/artifacts".into(),
            init: InitPlan::Auto,
            libs: crate::manifest::Libs::Check,
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
    fn static_and_dynamic_elf_are_told_apart() {
        let mut elf = vec![0u8; 64 + 2 * 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        elf[120..124].copy_from_slice(&6u32.to_le_bytes()); // PT_PHDR
        assert!(is_static_elf(&elf));
        elf[120..124].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh\necho not an ELF\n"));
    }

    #[test]
    fn the_hosts_own_binaries_are_recognised() {
        // /bin/sh on the machine running the tests is dynamically linked (Debian).
        if let Ok(sh) = std::fs::read("/bin/sh") {
            assert!(!is_static_elf(&sh));
        }
    }
}
