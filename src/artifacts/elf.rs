//! What an ELF file needs from the runtime image to start: its program interpreter (`PT_INTERP`)
//! and its shared libraries (`DT_NEEDED`), with the folders it asks the loader to search
//! (`DT_RPATH`, `DT_RUNPATH`). Pure: bytes in, facts out (parsed with `goblin`).

use std::io::Read;
use std::path::Path;

use serde::Serialize;

/// The first bytes of every ELF file.
pub const MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];

/// The facts about an ELF file that decide what it needs at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfInfo {
    /// An executable or a shared object (`ET_EXEC`, `ET_DYN`), not an object file or a core
    /// dump: something the loader maps.
    pub loadable: bool,
    /// 64-bit (`ELFCLASS64`) or 32-bit.
    pub is_64: bool,
    /// The machine (`e_machine`, e.g. 62 for x86-64).
    pub machine: u16,
    /// The program interpreter the kernel starts it with (`PT_INTERP`), e.g.
    /// `/lib64/ld-linux-x86-64.so.2`; `None` for static executables and for libraries.
    pub interpreter: Option<String>,
    /// The shared libraries it needs (`DT_NEEDED`), in order.
    pub needed: Vec<String>,
    /// Its own name as a library (`DT_SONAME`).
    pub soname: Option<String>,
    /// `DT_RPATH` folders, searched before `LD_LIBRARY_PATH` when there is no `DT_RUNPATH`.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` folders, searched after `LD_LIBRARY_PATH`.
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// Whether it needs nothing from the runtime image: no interpreter, no libraries.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// The GNU multiarch triplet of its machine (`x86_64-linux-gnu`), which names the
    /// library folders of Debian-like systems.
    pub fn multiarch(&self) -> Option<&'static str> {
        use goblin::elf::header::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390};
        Some(match (self.machine, self.is_64) {
            (goblin::elf::header::EM_X86_64, true) => "x86_64-linux-gnu",
            (EM_AARCH64, true) => "aarch64-linux-gnu",
            (EM_386, false) => "i386-linux-gnu",
            (EM_ARM, false) => "arm-linux-gnueabihf",
            (EM_PPC64, true) => "powerpc64le-linux-gnu",
            (EM_RISCV, true) => "riscv64-linux-gnu",
            (EM_S390, true) => "s390x-linux-gnu",
            _ => return None,
        })
    }

    /// Whether `other` can be loaded into the same process (same class and machine).
    pub fn compatible_with(&self, other: &ElfInfo) -> bool {
        self.is_64 == other.is_64 && self.machine == other.machine
    }
}

/// Whether `bytes` start like an ELF file.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Parse an ELF file's bytes. `Ok(None)` when they are not ELF at all; an error when they
/// start like ELF but are broken.
pub fn parse(bytes: &[u8]) -> Result<Option<ElfInfo>, String> {
    if !is_elf(bytes) {
        return Ok(None);
    }
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| e.to_string())?;
    let split = |entries: &[&str]| -> Vec<String> {
        entries
            .iter()
            .flat_map(|e| e.split(':'))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    use goblin::elf::header::{ET_DYN, ET_EXEC};
    Ok(Some(ElfInfo {
        loadable: matches!(elf.header.e_type, ET_EXEC | ET_DYN),
        is_64: elf.is_64,
        machine: elf.header.e_machine,
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|l| l.to_string()).collect(),
        soname: elf.soname.map(str::to_string),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
    }))
}

/// Parse the ELF file at `path` on the host; `Ok(None)` when it is not ELF (only its first
/// four bytes are read then).
pub fn parse_file(path: &Path) -> std::io::Result<Result<Option<ElfInfo>, String>> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 4];
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..])? {
            0 => return Ok(Ok(None)),
            n => read += n,
        }
    }
    if !is_elf(&magic) {
        return Ok(Ok(None));
    }
    let bytes = std::fs::read(path)?;
    Ok(parse(&bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal, valid ELF64 little-endian x86-64 file: a header, a `PT_INTERP` and a
    /// `PT_DYNAMIC` segment, and a string table, laid out by hand. `None` for the interpreter
    /// and no libraries give a static executable.
    pub(crate) fn tiny_elf(
        interpreter: Option<&str>,
        needed: &[&str],
        soname: Option<&str>,
        runpath: Option<&str>,
    ) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        let mut strtab = vec![0u8];
        let mut add = |s: &str| {
            let at = strtab.len() as u64;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            at
        };
        let mut dynamic: Vec<(u64, u64)> = Vec::new();
        for n in needed {
            dynamic.push((1, add(n))); // DT_NEEDED
        }
        if let Some(s) = soname {
            dynamic.push((14, add(s))); // DT_SONAME
        }
        if let Some(r) = runpath {
            dynamic.push((29, add(r))); // DT_RUNPATH
        }
        let interp = interpreter.map(|i| {
            let mut b = i.as_bytes().to_vec();
            b.push(0);
            b
        });
        let has_dynamic = !dynamic.is_empty() || soname.is_some();
        let phnum = 1 + usize::from(interp.is_some()) + usize::from(has_dynamic);
        let phoff = EHDR;
        let data = phoff + phnum * PHDR;
        let interp_off = data;
        let interp_len = interp.as_ref().map_or(0, Vec::len);
        let strtab_off = interp_off + interp_len;
        let dyn_off = (strtab_off + strtab.len()).div_ceil(8) * 8;
        dynamic.push((5, strtab_off as u64)); // DT_STRTAB (vaddr == offset: one PT_LOAD at 0)
        dynamic.push((10, strtab.len() as u64)); // DT_STRSZ
        dynamic.push((0, 0)); // DT_NULL
        let dyn_len = if has_dynamic { dynamic.len() * 16 } else { 0 };
        let total = dyn_off + dyn_len;

        let mut out = Vec::with_capacity(total);
        let u16le = |v: u16| v.to_le_bytes();
        let u32le = |v: u32| v.to_le_bytes();
        let u64le = |v: u64| v.to_le_bytes();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, little endian, version 1, SysV
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&u16le(if has_dynamic && interp.is_none() {
            3
        } else {
            2
        }));
        out.extend_from_slice(&u16le(62)); // EM_X86_64
        out.extend_from_slice(&u32le(1));
        out.extend_from_slice(&u64le(0)); // e_entry
        out.extend_from_slice(&u64le(phoff as u64));
        out.extend_from_slice(&u64le(0)); // e_shoff: no sections
        out.extend_from_slice(&u32le(0));
        out.extend_from_slice(&u16le(EHDR as u16));
        out.extend_from_slice(&u16le(PHDR as u16));
        out.extend_from_slice(&u16le(phnum as u16));
        out.extend_from_slice(&u16le(64)); // e_shentsize
        out.extend_from_slice(&u16le(0));
        out.extend_from_slice(&u16le(0));
        let mut phdr = |kind: u32, offset: usize, size: usize| {
            out.extend_from_slice(&u32le(kind));
            out.extend_from_slice(&u32le(4)); // PF_R
            out.extend_from_slice(&u64le(offset as u64));
            out.extend_from_slice(&u64le(offset as u64)); // vaddr
            out.extend_from_slice(&u64le(offset as u64)); // paddr
            out.extend_from_slice(&u64le(size as u64));
            out.extend_from_slice(&u64le(size as u64));
            out.extend_from_slice(&u64le(8));
        };
        phdr(1, 0, total); // PT_LOAD of the whole file
        if interp.is_some() {
            phdr(3, interp_off, interp_len); // PT_INTERP
        }
        if has_dynamic {
            phdr(2, dyn_off, dyn_len); // PT_DYNAMIC
        }
        if let Some(i) = &interp {
            out.extend_from_slice(i);
        }
        out.extend_from_slice(&strtab);
        out.resize(dyn_off, 0);
        if has_dynamic {
            for (tag, value) in dynamic {
                out.extend_from_slice(&u64le(tag));
                out.extend_from_slice(&u64le(value));
            }
        }
        out
    }

    #[test]
    fn a_dynamic_executable_names_its_interpreter_and_libraries() {
        let bytes = tiny_elf(
            Some("/lib64/ld-linux-x86-64.so.2"),
            &["libm.so.6", "libc.so.6"],
            None,
            Some("$ORIGIN/../lib:/opt/lib"),
        );
        let info = parse(&bytes).expect("parses").expect("is ELF");
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(info.needed, ["libm.so.6", "libc.so.6"]);
        assert_eq!(info.runpath, ["$ORIGIN/../lib", "/opt/lib"]);
        assert!(info.rpath.is_empty());
        assert!(!info.is_static());
        assert!(info.is_64);
        assert_eq!(info.multiarch(), Some("x86_64-linux-gnu"));
    }

    #[test]
    fn a_static_executable_needs_nothing() {
        let info = parse(&tiny_elf(None, &[], None, None))
            .expect("parses")
            .expect("is ELF");
        assert!(info.is_static());
        assert_eq!(info.interpreter, None);
    }

    #[test]
    fn a_library_has_a_soname_and_no_interpreter() {
        let info = parse(&tiny_elf(None, &["libc.so.6"], Some("libfoo.so.1"), None))
            .expect("parses")
            .expect("is ELF");
        assert_eq!(info.soname.as_deref(), Some("libfoo.so.1"));
        assert!(!info.is_static());
    }

    #[test]
    fn other_files_are_not_elf_and_broken_elf_is_an_error() {
        assert_eq!(parse(b"#!/bin/sh\necho hi\n"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        let mut broken = tiny_elf(Some("/lib/ld.so"), &["libc.so.6"], None, None);
        broken.truncate(70);
        assert!(parse(&broken).is_err());
    }

    #[test]
    fn files_on_disk_are_read_only_when_they_are_elf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        assert_eq!(parse_file(&script).expect("read"), Ok(None));
        let short = dir.path().join("short");
        std::fs::write(&short, "\x7fE").expect("write");
        assert_eq!(parse_file(&short).expect("read"), Ok(None));
        let binary = dir.path().join("app");
        std::fs::write(&binary, tiny_elf(None, &[], None, None)).expect("write");
        assert!(parse_file(&binary)
            .expect("read")
            .expect("parses")
            .is_some_and(|i| i.is_static()));
    }

    #[test]
    fn the_real_test_binary_is_understood() {
        // This very test binary: whatever the host, it is an ELF file goblin can read.
        let exe = std::env::current_exe().expect("current exe");
        let info = parse_file(&exe)
            .expect("read")
            .expect("parses")
            .expect("is ELF");
        assert_eq!(info.is_64, cfg!(target_pointer_width = "64"));
    }
}
