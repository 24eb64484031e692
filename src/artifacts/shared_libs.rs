//! The shared libraries that dynamically linked artifacts need at run time (`runtime.libs`).
//!
//! A binary linked against glibc does not start on `scratch`: the kernel looks for its program
//! interpreter (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`), which then looks for every
//! `DT_NEEDED` library in the folders it searches. This module finds, before the image is
//! built, what the runtime image would lack: it searches the image as the loader would (the
//! artifacts' layer over the base), and with `libs = "auto"` it takes what the base lacks from
//! the builder image, following symlinks and the libraries' own needs, recursively.
//!
//! [`resolve`] is pure. It answers from the [`Facts`] gathered so far, or asks for more with
//! [`Query`]s (stat a path in the base or the builder, read a builder file's ELF header);
//! `pipeline::shared_libs::find_libraries` is the small loop that answers them through the
//! engine.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::artifacts::elf::ElfInfo;
use crate::engine::Entry;

/// How many symlinks a path may go through before it is taken as a loop (the kernel's limit).
const MAX_LINKS: usize = 40;

/// A file of the artifacts' layer, at its path in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shipped {
    /// A file; its ELF facts when it is ELF.
    File(Option<ElfInfo>),
    /// A symlink, with its target as written.
    Symlink(String),
}

/// What [`resolve`] works on.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The artifacts by absolute image path.
    pub artifacts: BTreeMap<String, Shipped>,
    /// The base is `scratch`: it has nothing.
    pub empty_base: bool,
    /// Take what the base lacks from the builder (`libs = "auto"`).
    pub from_builder: bool,
    /// `LD_LIBRARY_PATH` of the runtime image (from `[runtime.env]`), which the loader
    /// searches too.
    pub ld_library_path: Vec<String>,
}

/// What is known so far about paths of the base and the builder image.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Paths of the base.
    pub base: BTreeMap<String, Entry>,
    /// Paths of the builder.
    pub builder: BTreeMap<String, Entry>,
    /// ELF facts of builder files, by path (`None`: not ELF).
    pub builder_elf: BTreeMap<String, Option<ElfInfo>>,
}

/// Something [`resolve`] needs to know to go on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Query {
    /// What is at this path of the base?
    StatBase(String),
    /// What is at this path of the builder?
    StatBuilder(String),
    /// The ELF facts of this builder file (a regular file).
    ReadBuilder(String),
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Every loadable ELF artifact, by image path, with what it needs.
    pub elf_artifacts: Vec<(String, ElfInfo)>,
    /// Files to add to the image: (path in the image, path in the builder that holds it).
    pub from_builder: Vec<(String, String)>,
    /// What the base already has: (name or interpreter, path in the image).
    pub on_base: Vec<(String, String)>,
    /// What nothing provides.
    pub missing: Vec<MissingLibrary>,
}

/// A library or interpreter that the runtime image would lack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingLibrary {
    /// The library's name (`libc.so.6`) or the interpreter's path.
    pub name: String,
    /// Whether it is the program interpreter.
    pub interpreter: bool,
    /// The files that need it (image paths).
    pub needed_by: Vec<String>,
}

/// Where a looked-up path was found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Artifact,
    Base,
    /// In the builder: the path to add to the image, and the file that holds the content.
    Builder {
        image_path: String,
        real: String,
    },
}

#[derive(Debug, Clone)]
struct Found {
    source: Source,
    elf: Option<ElfInfo>,
}

/// Work out what the runtime image needs, or the queries to answer first.
///
/// Searches as glibc's loader does: `DT_RPATH` (when there is no `DT_RUNPATH`), then
/// `LD_LIBRARY_PATH`, then `DT_RUNPATH` (with `$ORIGIN` expanded to the file's folder in the
/// image), then the standard folders (`/lib/<multiarch>`, `/usr/lib/<multiarch>`, `/lib64`,
/// `/usr/lib64`, `/lib`, `/usr/lib`). A name is satisfied once, by the first file found; a
/// `DT_NEEDED` entry naming the interpreter is the interpreter. Libraries taken from the
/// builder are searched for their own needs in turn.
pub fn resolve(input: &Input, facts: &Facts) -> std::result::Result<Resolution, Vec<Query>> {
    let mut search = Search::new(input, facts);
    while let Some((path, info)) = search.queue.pop_front() {
        if !search.processed.insert(path.clone()) {
            continue;
        }
        if let Some(interpreter) = &info.interpreter {
            search.interpreter(interpreter, &path);
        }
        let dirs = search_dirs(&info, &path, &search.program_rpath, &input.ld_library_path);
        for name in &info.needed {
            search.needed(name, &path, &info, &dirs);
        }
    }
    search.finish()
}

/// The state of one [`resolve`]: what is still to look at, what was found, what is missing,
/// and the queries that must be answered before the answer can be known.
struct Search<'a> {
    input: &'a Input,
    facts: &'a Facts,
    queries: BTreeSet<Query>,
    out: Resolution,
    /// ELF files whose needs are still to be looked up: (image path, facts).
    queue: std::collections::VecDeque<(String, ElfInfo)>,
    /// The first dynamic executable's RPATH, which also applies to what it loads (glibc walks
    /// the chain of loaders; for one program that is the program itself).
    program_rpath: Vec<String>,
    processed: BTreeSet<String>,
    loaded: BTreeSet<String>,
    interpreters: BTreeSet<String>,
    missing: BTreeMap<(String, bool), BTreeSet<String>>,
    shipped: BTreeSet<String>,
}

impl<'a> Search<'a> {
    /// Start from the loadable ELF artifacts; the dynamic ones are queued.
    fn new(input: &'a Input, facts: &'a Facts) -> Self {
        let mut out = Resolution::default();
        let mut queue = std::collections::VecDeque::new();
        for (path, shipped) in &input.artifacts {
            if let Shipped::File(Some(info)) = shipped {
                if info.loadable {
                    out.elf_artifacts.push((path.clone(), info.clone()));
                    if !info.is_static() {
                        queue.push_back((path.clone(), info.clone()));
                    }
                }
            }
        }
        let program_rpath = out
            .elf_artifacts
            .iter()
            .find(|(_, info)| info.interpreter.is_some() && info.runpath.is_empty())
            .map(|(path, info)| expand_origin(&info.rpath, path))
            .unwrap_or_default();
        Search {
            input,
            facts,
            queries: BTreeSet::new(),
            out,
            queue,
            program_rpath,
            processed: BTreeSet::new(),
            loaded: BTreeSet::new(),
            interpreters: BTreeSet::new(),
            missing: BTreeMap::new(),
            shipped: BTreeSet::new(),
        }
    }

    /// Note where `found` (looked up as `path`, needed as `name`) comes from.
    fn record(&mut self, found: &Found, name: &str, path: &str) {
        match &found.source {
            Source::Builder { image_path, real } => {
                if self.shipped.insert(image_path.clone()) {
                    self.out
                        .from_builder
                        .push((image_path.clone(), real.clone()));
                }
            }
            Source::Base => self.out.on_base.push((name.to_string(), path.to_string())),
            Source::Artifact => {}
        }
    }

    fn lack(&mut self, name: &str, interpreter: bool, needed_by: &str) {
        self.missing
            .entry((name.to_string(), interpreter))
            .or_default()
            .insert(needed_by.to_string());
    }

    /// The program interpreter of the ELF file at `path`.
    fn interpreter(&mut self, interpreter: &str, path: &str) {
        self.interpreters.insert(basename(interpreter).to_string());
        if !self.loaded.insert(interpreter.to_string()) {
            return;
        }
        match find(self.input, self.facts, interpreter) {
            Err(more) => self.queries.extend(more),
            Ok(Some(found)) => {
                self.record(&found, interpreter, interpreter);
                if let Some(soname) = found.elf.as_ref().and_then(|e| e.soname.clone()) {
                    self.interpreters.insert(soname);
                }
            }
            Ok(None) => self.lack(interpreter, true, path),
        }
    }

    /// One `DT_NEEDED` entry `name` of the ELF file `info` at `path`, searched in `dirs`.
    fn needed(&mut self, name: &str, path: &str, info: &ElfInfo, dirs: &[String]) {
        if self.interpreters.contains(name) || self.loaded.contains(name) {
            return;
        }
        let Some(chosen) = self.choose(name, info, dirs) else {
            return;
        };
        self.loaded.insert(name.to_string());
        let Some((candidate, found)) = chosen else {
            self.lack(name, false, path);
            return;
        };
        self.record(&found, name, &candidate);
        if let (Some(elf), false) = (&found.elf, found.source == Source::Base) {
            let at = match &found.source {
                Source::Builder { image_path, .. } => image_path.clone(),
                _ => candidate.clone(),
            };
            if !elf.is_static() {
                self.queue.push_back((at, elf.clone()));
            }
        }
    }

    /// The first usable file for `name`: `Some(None)` when there is none, `None` while a query
    /// must be answered first.
    fn choose(
        &mut self,
        name: &str,
        info: &ElfInfo,
        dirs: &[String],
    ) -> Option<Option<(String, Found)>> {
        let candidates: Vec<String> = if name.contains('/') {
            if name.starts_with('/') {
                vec![normalise(name)]
            } else {
                Vec::new()
            }
        } else {
            dirs.iter()
                .map(|d| normalise(&format!("{d}/{name}")))
                .collect()
        };
        let mut undecided = false;
        for candidate in candidates {
            match find(self.input, self.facts, &candidate) {
                Err(more) => {
                    self.queries.extend(more);
                    undecided = true;
                }
                Ok(Some(found)) if !undecided && usable(&found, info) => {
                    return Some(Some((candidate, found)));
                }
                Ok(_) => {}
            }
        }
        (!undecided).then_some(None)
    }

    /// The answer, or the queries still open.
    fn finish(mut self) -> std::result::Result<Resolution, Vec<Query>> {
        if !self.queries.is_empty() {
            return Err(self.queries.into_iter().collect());
        }
        self.out.missing = self
            .missing
            .into_iter()
            .map(|((name, interpreter), by)| MissingLibrary {
                name,
                interpreter,
                needed_by: by.into_iter().collect(),
            })
            .collect();
        // Interpreters first, as the loader needs them first.
        self.out.missing.sort_by_key(|m| !m.interpreter);
        Ok(self.out)
    }
}

/// Whether `found` can satisfy a need of `info`: an ELF of the same class and machine (and
/// loadable, unless the base has it), or a base or artifact file the loader takes as it is.
fn usable(found: &Found, info: &ElfInfo) -> bool {
    let fits = found
        .elf
        .as_ref()
        .is_none_or(|e| e.compatible_with(info) && (found.source == Source::Base || e.loadable));
    fits && (found.source == Source::Base
        || found.source == Source::Artifact
        || found.elf.is_some())
}

/// Look `path` up in the image as the loader would see it: the artifacts' layer over the
/// base, then (with `from_builder`) the builder, following symlinks.
fn find(
    input: &Input,
    facts: &Facts,
    path: &str,
) -> std::result::Result<Option<Found>, Vec<Query>> {
    let mut path = normalise(path);
    let mut builder_entry: Option<String> = None;
    for _ in 0..MAX_LINKS {
        if builder_entry.is_none() {
            match input.artifacts.get(&path) {
                Some(Shipped::File(elf)) => {
                    return Ok(Some(Found {
                        source: Source::Artifact,
                        elf: elf.clone(),
                    }))
                }
                Some(Shipped::Symlink(target)) => {
                    path = if target.starts_with('/') {
                        normalise(target)
                    } else {
                        normalise(&format!("{}/{target}", parent(&path)))
                    };
                    continue;
                }
                None => {}
            }
            if !input.empty_base {
                match facts.base.get(&path) {
                    None => return Err(vec![Query::StatBase(path)]),
                    Some(Entry::File { .. }) => {
                        return Ok(Some(Found {
                            source: Source::Base,
                            elf: None,
                        }))
                    }
                    Some(Entry::Symlink { target }) => {
                        path = normalise(target);
                        continue;
                    }
                    Some(Entry::Missing | Entry::Other) => {}
                }
            }
        }
        if !input.from_builder {
            return Ok(None);
        }
        match facts.builder.get(&path) {
            None => return Err(vec![Query::StatBuilder(path)]),
            Some(Entry::File { .. }) => {
                let Some(elf) = facts.builder_elf.get(&path) else {
                    return Err(vec![Query::ReadBuilder(path)]);
                };
                return Ok(Some(Found {
                    source: Source::Builder {
                        image_path: builder_entry.unwrap_or_else(|| path.clone()),
                        real: path,
                    },
                    elf: elf.clone(),
                }));
            }
            Some(Entry::Symlink { target }) => {
                builder_entry.get_or_insert_with(|| path.clone());
                path = normalise(target);
            }
            Some(Entry::Missing | Entry::Other) => return Ok(None),
        }
    }
    Ok(None)
}

/// The folders the loader searches for the needs of `info` (at `path` in the image), in order.
pub fn search_dirs(
    info: &ElfInfo,
    path: &str,
    program_rpath: &[String],
    ld_library_path: &[String],
) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    if info.runpath.is_empty() {
        dirs.extend(expand_origin(&info.rpath, path));
        dirs.extend(program_rpath.iter().cloned());
    }
    dirs.extend(ld_library_path.iter().filter(|d| !d.is_empty()).cloned());
    dirs.extend(expand_origin(&info.runpath, path));
    if let Some(triplet) = info.multiarch() {
        dirs.push(format!("/lib/{triplet}"));
        dirs.push(format!("/usr/lib/{triplet}"));
    }
    if info.is_64 {
        dirs.push("/lib64".into());
        dirs.push("/usr/lib64".into());
    }
    dirs.push("/lib".into());
    dirs.push("/usr/lib".into());
    let mut seen = BTreeSet::new();
    dirs.into_iter()
        .filter(|d| d.starts_with('/'))
        .map(|d| normalise(&d))
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

fn expand_origin(dirs: &[String], path: &str) -> Vec<String> {
    let origin = parent(path);
    dirs.iter()
        .map(|d| d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        .collect()
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The first of 256 private-use code points that stand for single bytes in [`search_path`].
const BYTE_ESCAPE: u32 = 0x10_FF00;

/// An exact image path (its bytes) as the text the search works on, losslessly: valid UTF-8 stays
/// as it is, and each byte that is not (and each byte of a code point in U+10FF00..=U+10FFFF,
/// which would otherwise be ambiguous) becomes the private-use code point U+10FF00 + byte. `/`
/// and `.` are never escaped, so joining, `$ORIGIN` and [`normalise`] work on the text as on
/// the bytes; [`exact_path`] gives the bytes back.
pub fn search_path(bytes: &[u8]) -> String {
    let escape = |out: &mut String, b: u8| {
        out.push(char::from_u32(BYTE_ESCAPE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER))
    };
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if u32::from(c) >= BYTE_ESCAPE {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    escape(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            escape(&mut out, b);
        }
    }
    out
}

/// The exact path a [`search_path`] text stands for, byte for byte.
pub fn exact_path(text: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c).checked_sub(BYTE_ESCAPE) {
            Some(b) => bytes.push(b as u8),
            None => bytes.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
        }
    }
    std::path::PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// A [`search_path`] text for people: bytes that are not UTF-8 shown as `\xNN`.
pub fn display_search_path(text: &str) -> String {
    crate::artifacts::collect::display_path(&exact_path(text))
}

/// `/a/./b/../c/` -> `/a/c`, lexically.
pub(crate) fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests;
