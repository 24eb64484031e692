//! Up to date means no work. A build's inputs are fingerprinted: the resolved plan, the builder
//! and base image ids, and the content of every mounted source file that `.gitignore` and
//! `.dockerignore` do not exclude. When the fingerprint equals the last successful build's and
//! that build's image still carries its tags, there is nothing to do; when it equals an earlier
//! build's, that build's kept output is reused (`reuse`).
//!
//! Content is hashed only when a file's size, mtime, ctime or inode changed since the last run
//! (the state file in the output folder keeps each file's stat and digest, as git's index
//! does), so a no-op on a large tree costs one `stat` per file. A file whose mtime is too
//! close to the time it was last hashed is hashed again (git's "racily clean" rule), so an
//! edit in the same clock tick is never missed.
//!
//! On a no-op the scan is the whole cost, so it is cheap per file: one thread walks (listing
//! folders, applying the ignore rules, `stat`-ing each entry by its name relative to its open
//! folder rather than by a full path the kernel looks up component by component) and hands the
//! entries over in walk order to the scanning thread, which meanwhile has read the last state
//! and then matches each entry with its record; digests are kept as bytes, not strings, and the
//! path-keyed maps use a fast hash.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::{SystemTime, UNIX_EPOCH};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::plan::Plan;
use crate::report::Report;

/// The state file's name inside the plan's output folder.
pub const STATE_FILE: &str = "state.json";
/// The file list's name beside it: one line per source file, read on every build, so it is
/// plain text parsed by hand rather than JSON (100,000 files: about 15 MB, read in a few ms).
pub const FILES_FILE: &str = "state.files";

/// Bumped when the state file's meaning changes; an older file is ignored.
const STATE_VERSION: u32 = 3;

/// A cached digest is trusted only for files last modified this long before they were hashed.
const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// Per-file records keyed by absolute host path bytes, hashed with aHash: SipHash over 100,000
/// paths was a tenth of a no-op, and these keys are the user's own file names, not input an
/// attacker chooses to collide.
pub type FileMap = HashMap<OsString, FileRecord, ahash::RandomState>;

/// What the last runs left behind: per-file digests and the last successful build.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The format version.
    pub version: u32,
    /// When the files below were looked at, in nanoseconds since the epoch.
    pub scanned_at_ns: i64,
    /// Every fingerprinted file, by absolute host path (kept in [`FILES_FILE`]). Keyed by the
    /// path's bytes: a `PathBuf` key hashes and compares component by component, which was
    /// most of a no-op's time on 100,000 files.
    #[serde(skip)]
    pub files: FileMap,
    /// The last successful build.
    pub last: Option<LastBuild>,
}

/// What is known about one source file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode-change time in nanoseconds since the epoch: a rewrite that restores the size and
    /// the mtime (`touch -r`, `cp -p`, a checkout) still moves it.
    pub ctime_ns: i64,
    /// The inode number: a file replaced by another (a rename over it) is another file.
    pub ino: u64,
    /// SHA-256 of the content.
    pub digest: FileDigest,
}

/// A SHA-256 of a file's content: 32 bytes, shown and written as 64 lowercase hex digits. Kept
/// as bytes rather than a `String`, so that 100,000 records are not 100,000 allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileDigest(pub [u8; 32]);

impl FileDigest {
    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        out
    }

    /// The digest 64 hex digits (either case) spell; `None` for anything else.
    pub fn from_hex(hex: &[u8]) -> Option<FileDigest> {
        let digit = |c: u8| {
            char::from(c)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        };
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Some(FileDigest(out))
    }
}

impl std::fmt::Display for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).map_err(|_| std::fmt::Error)?)
    }
}

impl Serialize for FileDigest {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileDigest {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<FileDigest, D::Error> {
        let hex = String::deserialize(deserializer)?;
        FileDigest::from_hex(hex.as_bytes())
            .ok_or_else(|| serde::de::Error::custom("a digest is 64 hex digits"))
    }
}

/// The last successful build: its fingerprint, and the report it printed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastBuild {
    /// The inputs' fingerprint, hex.
    pub fingerprint: String,
    /// The report of that build (its image id and tags say what must still exist).
    pub report: Report,
    /// The init it put first in the entrypoint and where it came from, as it reported it.
    pub init: Option<String>,
}

/// The mounted sources as they are now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    /// One entry per fingerprinted path, in a stable order: mount by mount, sorted by path.
    pub entries: Vec<SourceEntry>,
    /// Digests of the regular files, to become the next state's `files`.
    pub files: FileMap,
    /// When the scan started, in nanoseconds since the epoch.
    pub scanned_at_ns: i64,
    /// How many files were read and hashed (the others reused their digest).
    pub hashed: usize,
}

/// One fingerprinted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The mount's index in the plan.
    pub mount: usize,
    /// The path relative to the mount source, `/`-separated (empty for the source itself).
    pub path: String,
    /// What it is, with what identifies its content.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
}

/// The kind of a fingerprinted path and its content's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A regular file and its SHA-256.
    File(FileDigest),
    /// A symbolic link and its target.
    Symlink(PathBuf),
}

impl State {
    /// Read the state from `out_dir`; a missing, unreadable or older file gives an empty state
    /// (everything is hashed, nothing is up to date).
    pub fn load(out_dir: &Path) -> State {
        let Some(mut state) = std::fs::read(out_dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<State>(&bytes).ok())
            .filter(|s| s.version == STATE_VERSION)
        else {
            return State::default();
        };
        // A list from another scan than the state's (a crash between the two writes) is not
        // trusted: every file is hashed again.
        state.files = std::fs::read(out_dir.join(FILES_FILE))
            .ok()
            .and_then(|bytes| parse_files(&bytes, state.scanned_at_ns))
            .unwrap_or_default();
        state
    }

    /// Write the state into `out_dir` atomically (a temporary file renamed over the old one), so
    /// a crash never leaves half a state file.
    pub fn save(&self, out_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(out_dir)
            .map_err(|e| Error::io("creating output folder", out_dir, e))?;
        let list = out_dir.join(FILES_FILE);
        crate::fsutil::write_atomic(&list, &files_text(&self.files, self.scanned_at_ns))
            .map_err(|e| Error::io("writing the build state", &list, e))?;
        let path = out_dir.join(STATE_FILE);
        let bytes = serde_json::to_vec(self).map_err(|e| {
            Error::io(
                "encoding the build state for",
                &path,
                std::io::Error::other(e),
            )
        })?;
        crate::fsutil::write_atomic(&path, &bytes)
            .map_err(|e| Error::io("writing the build state", &path, e))
    }

    /// The state after a successful build of `sources` with `fingerprint`.
    pub fn after_build(
        sources: Sources,
        fingerprint: String,
        report: Report,
        init: Option<String>,
    ) -> State {
        State {
            version: STATE_VERSION,
            scanned_at_ns: sources.scanned_at_ns,
            files: sources.files,
            last: Some(LastBuild {
                fingerprint,
                report,
                init,
            }),
        }
    }

    /// The last build, when its fingerprint is `fingerprint`.
    pub fn last_build_with(&self, fingerprint: &str) -> Option<&LastBuild> {
        self.last.as_ref().filter(|l| l.fingerprint == fingerprint)
    }

    /// The digest recorded for `path` when it can be trusted for a file whose stat is now
    /// `now` (its digest ignored): same size, mtime, ctime and inode, and modified well before
    /// it was hashed.
    fn trusted_digest(&self, path: &Path, now: &FileRecord) -> Option<FileDigest> {
        self.files
            .get(path.as_os_str())
            .filter(|r| {
                r.size == now.size
                    && r.mtime_ns == now.mtime_ns
                    && r.ctime_ns == now.ctime_ns
                    && r.ino == now.ino
                    && now.mtime_ns.saturating_add(RACY_MARGIN_NS) < self.scanned_at_ns
            })
            .map(|r| r.digest)
    }
}

/// The first line of [`FILES_FILE`], then the scan's time.
const FILES_HEADER: &str = "dockception source files 1";

/// [`FILES_FILE`]'s text: the header and scan time, then `size mtime ctime inode digest path`
/// per file, sorted by path. A path with a line break is left out (that file is always hashed).
fn files_text(files: &FileMap, scanned_at_ns: i64) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut sorted: Vec<(&OsString, &FileRecord)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = format!("{FILES_HEADER} {scanned_at_ns}\n");
    for (path, r) in sorted {
        let Some(path) = path.to_str().filter(|p| !p.contains('\n')) else {
            continue;
        };
        let _ = writeln!(
            text,
            "{} {} {} {} {} {path}",
            r.size, r.mtime_ns, r.ctime_ns, r.ino, r.digest
        );
    }
    text.into_bytes()
}

/// The records of a [`FILES_FILE`] written by the scan at `scanned_at_ns`; `None` when it is
/// from another scan or any line is not one this version writes.
fn parse_files(bytes: &[u8], scanned_at_ns: i64) -> Option<FileMap> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let header = lines.next()?.strip_prefix(FILES_HEADER)?.trim();
    if header.parse::<i64>().ok()? != scanned_at_ns {
        return None;
    }
    let mut files = FileMap::with_capacity_and_hasher(text.len() / 120, Default::default());
    for line in lines {
        let mut fields = line.splitn(6, ' ');
        let mut next = || fields.next();
        let record = FileRecord {
            size: next()?.parse().ok()?,
            mtime_ns: next()?.parse().ok()?,
            ctime_ns: next()?.parse().ok()?,
            ino: next()?.parse().ok()?,
            digest: FileDigest::from_hex(next()?.as_bytes())?,
        };
        files.insert(OsString::from(next()?), record);
    }
    Some(files)
}

/// Everything besides the sources that decides what a build produces. What is left out, on
/// purpose: the content of secrets (`env_from_host` values, secret files; their names and paths
/// are in the plan), which must not change what is built and must not be kept, even hashed,
/// in a state file; the cache volumes' content, which is a cache; and the reuse store's size
/// limit, which changes what is kept, not what is built.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The resolved plan.
    pub plan: &'a Plan,
    /// The builder image's id.
    pub builder_id: &'a str,
    /// The base image's id (`scratch` for scratch).
    pub base_id: &'a str,
    /// The mtime the context's entries get.
    pub epoch: u64,
}

/// The fingerprint of `inputs` and `sources`, hex. Any change to either changes it.
pub fn fingerprint(inputs: &Inputs<'_>, sources: &Sources) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"dockception fingerprint 1");
    field(env!("CARGO_PKG_VERSION").as_bytes());
    let mut plan = inputs.plan.clone();
    plan.builder.reuse_limit = crate::plan::DEFAULT_REUSE_LIMIT;
    field(&serde_json::to_vec(&plan).unwrap_or_default());
    field(inputs.builder_id.as_bytes());
    field(inputs.base_id.as_bytes());
    field(&inputs.epoch.to_le_bytes());
    for entry in &sources.entries {
        field(&(entry.mount as u64).to_le_bytes());
        field(entry.path.as_bytes());
        field(&entry.mode.to_le_bytes());
        match &entry.kind {
            EntryKind::Dir => field(b"d"),
            EntryKind::File(digest) => {
                field(b"f");
                field(&digest.hex());
            }
            EntryKind::Symlink(target) => {
                field(b"l");
                field(target.as_os_str().as_encoded_bytes());
            }
        }
    }
    crate::fsutil::hex(&h.finalize())
}

/// Look at every mounted source of `plan`, reusing `previous` digests where size and mtime say
/// the file did not change. Skips the tool's own output folder, `.git` folders, and what the
/// `.gitignore` files and the mount root's `.dockerignore` exclude. (A build reads the state
/// and scans at once, [`load_and_scan`]; the tests scan against states they make.)
#[cfg(test)]
pub fn scan(plan: &Plan, previous: &State) -> Result<Sources> {
    scan_after(plan, || previous).map(|(sources, _)| sources)
}

/// [`State::load`] the last state of `plan` and [`scan`] its sources against it; the state is
/// read while the walk has already begun.
pub fn load_and_scan(plan: &Plan) -> Result<(Sources, State)> {
    scan_after(plan, || State::load(&plan.out_dir))
}

/// Drop `value` on a thread of its own, which the process need not wait for: a scan of
/// 100,000 files and its state are some 400,000 allocations, and freeing them took a tenth of
/// a no-op on the thread that then only prints the report and exits. (When no thread can be
/// made, `value` is dropped here.)
pub fn drop_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("drop-aside".into())
        .spawn(move || drop(value));
}

/// Entries handed from the walking thread to the scanning thread at a time.
const BATCH: usize = 512;

/// Batches the walk may be ahead by: enough that it does not wait while the state is read.
const BATCHES_AHEAD: usize = 1024;

/// Walked and `stat`-ed entries of one mount, in walk order.
struct Batch {
    mount: usize,
    entries: Vec<(PathBuf, Stat)>,
}

/// The scan, with the last state from `previous`, called on this thread while another thread
/// walks. The walk is one sequential walk sending its entries through a channel, so the
/// entries keep its order: mount by mount, depth first, siblings sorted by file name; and a
/// walk's error comes after the entries before it, as in a walk on one thread.
fn scan_after<P: Borrow<State>>(plan: &Plan, previous: impl FnOnce() -> P) -> Result<(Sources, P)> {
    let scanned_at_ns = now_ns();
    let (sender, receiver) = sync_channel(BATCHES_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || walk_mounts(plan, &sender));
        let previous = previous();
        let known = previous.borrow().files.len();
        let mut sources = Sources {
            scanned_at_ns,
            entries: Vec::with_capacity(known),
            files: FileMap::with_capacity_and_hasher(known, Default::default()),
            hashed: 0,
        };
        // An error returns here, dropping the receiver: the walk's next send fails and it ends.
        for batch in receiver {
            let batch = batch?;
            let root = &plan.builder.mounts[batch.mount].source;
            for (path, stat) in batch.entries {
                scan_entry(
                    batch.mount,
                    root,
                    path,
                    &stat,
                    previous.borrow(),
                    &mut sources,
                )?;
            }
        }
        Ok((sources, previous))
    })
}

/// Walk every mount of `plan` in order and `stat` each entry, sending them in batches; the
/// first error is sent after the entries before it, and ends the walk.
fn walk_mounts(plan: &Plan, sender: &SyncSender<Result<Batch>>) {
    let mut parents = ParentDirs::default();
    for (mount, source) in plan.builder.mounts.iter().enumerate() {
        let root = &source.source;
        let walker = match source_walker(root, &plan.out_dir) {
            Ok(walker) => walker,
            Err(e) => {
                let _ = sender.send(Err(e));
                return;
            }
        };
        let mut entries = Vec::with_capacity(BATCH);
        for entry in walker.build() {
            let walked = entry
                .map_err(|e| {
                    Error::io(
                        "reading the sources in",
                        root,
                        std::io::Error::other(e.to_string()),
                    )
                })
                .and_then(|entry| {
                    let depth = entry.depth();
                    let path = entry.into_path();
                    let stat = parents
                        .lstat(&path, depth)
                        .map_err(|e| Error::io("reading the sources in", &path, e.into()))?;
                    Ok((path, stat))
                });
            match walked {
                Ok(walked) => entries.push(walked),
                Err(e) => {
                    let _ = sender.send(Ok(Batch { mount, entries }));
                    let _ = sender.send(Err(e));
                    return;
                }
            }
            if entries.len() == BATCH {
                let full = std::mem::replace(&mut entries, Vec::with_capacity(BATCH));
                if sender
                    .send(Ok(Batch {
                        mount,
                        entries: full,
                    }))
                    .is_err()
                {
                    return;
                }
            }
        }
        if sender.send(Ok(Batch { mount, entries })).is_err() {
            return;
        }
    }
}

/// Record one walked entry of mount `index` (whose source is `root`), at `path`, `stat`-ed.
fn scan_entry(
    index: usize,
    root: &Path,
    path: PathBuf,
    stat: &Stat,
    previous: &State,
    sources: &mut Sources,
) -> Result<()> {
    // The walk joins names onto `root` with `/`: the rest of the bytes is the relative path.
    let bytes = path.as_os_str().as_bytes();
    let relative = match bytes.strip_prefix(root.as_os_str().as_bytes()) {
        Some(rest) => String::from_utf8_lossy(rest.strip_prefix(b"/").unwrap_or(rest)),
        None => String::from_utf8_lossy(bytes),
    }
    .into_owned();
    let kind = match stat.kind {
        rustix::fs::FileType::Directory => EntryKind::Dir,
        rustix::fs::FileType::Symlink => EntryKind::Symlink(
            std::fs::read_link(&path).map_err(|e| Error::io("reading symlink", &path, e))?,
        ),
        rustix::fs::FileType::RegularFile => {
            EntryKind::File(file_digest(path, stat, previous, sources)?)
        }
        _ => return Ok(()), // sockets, fifos, devices: nothing a build reads as source
    };
    sources.entries.push(SourceEntry {
        mount: index,
        path: relative,
        kind,
        mode: stat.mode & 0o7777,
    });
    Ok(())
}

/// What the scan uses of a path's `lstat`.
struct Stat {
    kind: rustix::fs::FileType,
    mode: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
}

impl From<rustix::fs::Stat> for Stat {
    // The fields' integer types differ between platforms: a cast is needless on some.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from(st: rustix::fs::Stat) -> Stat {
        let ns = |secs: i64, nsec: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsec);
        Stat {
            kind: rustix::fs::FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode),
            mode: st.st_mode as u32,
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            ino: st.st_ino as u64,
        }
    }
}

/// The open folders above the entry being looked at, outermost first: the walk is depth first,
/// so the folder of the next entry is the last one, one more below it, or one further up.
#[derive(Default)]
struct ParentDirs {
    open: Vec<(Vec<u8>, OwnedFd)>,
}

impl ParentDirs {
    /// `lstat` of the walked `path`, `depth` below the walk's root: below the root, by its name
    /// in its folder (the walk joins each name onto its folder's path with a `/`).
    fn lstat(&mut self, path: &Path, depth: usize) -> rustix::io::Result<Stat> {
        let bytes = path.as_os_str().as_bytes();
        match (depth, bytes.iter().rposition(|&b| b == b'/')) {
            (1.., Some(slash)) => {
                let parent = if slash == 0 {
                    &b"/"[..]
                } else {
                    &bytes[..slash]
                };
                self.stat_in(parent, &bytes[slash + 1..])
            }
            _ => rustix::fs::lstat(path).map(Stat::from),
        }
    }

    /// `lstat` of `name` in the folder `parent` (both as bytes), relative to that folder.
    fn stat_in(&mut self, parent: &[u8], name: &[u8]) -> rustix::io::Result<Stat> {
        while let Some((open, _)) = self.open.last() {
            let below = parent.len() > open.len()
                && parent.starts_with(open)
                && (parent[open.len()] == b'/' || open.ends_with(b"/"));
            if open.as_slice() == parent || below {
                break;
            }
            self.open.pop();
        }
        if self
            .open
            .last()
            .is_none_or(|(open, _)| open.as_slice() != parent)
        {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd = rustix::fs::open(OsStr::from_bytes(parent), flags, Mode::empty())?;
            self.open.push((parent.to_vec(), fd));
        }
        let Some((_, fd)) = self.open.last() else {
            return Err(rustix::io::Errno::BADF);
        };
        let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::statat(fd, OsStr::from_bytes(name), flags).map(Stat::from)
    }
}

/// The walk over a mount's sources: `.gitignore` and `.dockerignore` respected, the tool's own
/// output folder and `.git` left out, sorted, links not followed.
fn source_walker(root: &Path, out_dir: &Path) -> Result<ignore::WalkBuilder> {
    let dockerignore = DockerIgnore::load(root)?;
    let skip_out_dir = out_dir.to_path_buf();
    // Paths equal only when their last names do: compared first, as bytes, it rules out all
    // but a few entries before a component-wise comparison.
    let out_dir_name = out_dir.file_name().map(|n| n.as_bytes().to_vec());
    let filter_root = root.as_os_str().as_bytes().to_vec();
    let mut walker = ignore::WalkBuilder::new(root);
    walker
        .hidden(false)
        .ignore(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .parents(true)
        .follow_links(false)
        // Siblings by file name. Compared as the bytes after the last `/` of their paths (which
        // the walk makes by joining a name onto the folder's path): `sort_by_file_name` takes
        // each name apart with `Path::file_name`, which was a tenth of a no-op's walk.
        .sort_by_file_path(|a, b| last_name(a).cmp(last_name(b)))
        .filter_entry(move |entry| {
            let path = entry.path();
            if entry.depth() == 0 {
                return path != skip_out_dir && entry.file_name() != ".git";
            }
            // Below the root the walk joins each name onto its folder's path with a `/`.
            let bytes = path.as_os_str().as_bytes();
            let name = last_name(path);
            if name == b".git" {
                return false;
            }
            if out_dir_name.as_deref().is_none_or(|n| n == name) && path == skip_out_dir {
                return false;
            }
            if dockerignore.is_empty() {
                return true;
            }
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            let relative = match bytes.strip_prefix(filter_root.as_slice()) {
                Some(rest) => rest.strip_prefix(b"/").unwrap_or(rest),
                None => return true,
            };
            relative.is_empty()
                || !dockerignore.excludes(Path::new(OsStr::from_bytes(relative)), is_dir)
        });
    Ok(walker)
}

/// The bytes after the last `/` of `path`: the file name of a path the walk made.
fn last_name(path: &Path) -> &[u8] {
    let bytes = path.as_os_str().as_bytes();
    bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes)
}

/// The content digest of the source file at `path`: the last run's, when its stat is
/// unchanged, else hashed now (and counted). Recorded for the next run under `path`.
fn file_digest(
    path: PathBuf,
    stat: &Stat,
    previous: &State,
    sources: &mut Sources,
) -> Result<FileDigest> {
    let mut record = FileRecord {
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        ctime_ns: stat.ctime_ns,
        ino: stat.ino,
        digest: FileDigest::default(),
    };
    record.digest = match previous.trusted_digest(&path, &record) {
        Some(digest) => digest,
        None => {
            sources.hashed += 1;
            hash_file(&path)?
        }
    };
    let digest = record.digest;
    sources.files.insert(path.into_os_string(), record);
    Ok(digest)
}

fn hash_file(path: &Path) -> Result<FileDigest> {
    let mut file = File::open(path).map_err(|e| Error::io("reading source file", path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::io("reading source file", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(FileDigest(hasher.finalize().into()))
}

/// A mount root's `.dockerignore`, with Docker's meaning: every pattern is anchored at the root
/// (`*.o` is only the root's, `**/*.o` is any folder's), a pattern naming a folder excludes all
/// below it, `!` re-includes, and the last matching line wins.
#[derive(Debug)]
pub struct DockerIgnore {
    matcher: Gitignore,
    /// With exceptions, an excluded folder may still hold included files: never prune folders.
    has_exceptions: bool,
}

impl DockerIgnore {
    /// Read `<root>/.dockerignore`; a missing file excludes nothing.
    pub fn load(root: &Path) -> Result<DockerIgnore> {
        let path = root.join(".dockerignore");
        if !root.is_dir() {
            return Ok(DockerIgnore::parse(root, ""));
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(DockerIgnore::parse(root, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerIgnore::parse(root, "")),
            Err(e) => Err(Error::io("reading", path, e)),
        }
    }

    /// The rules of a `.dockerignore` whose text is `text`, for the folder `root`.
    pub fn parse(root: &Path, text: &str) -> DockerIgnore {
        let mut builder = GitignoreBuilder::new(root);
        let mut has_exceptions = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            if pattern.is_empty() {
                continue;
            }
            has_exceptions |= negated;
            // A leading `/` anchors a gitignore line at the root, which is Docker's meaning.
            let anchored = format!("{}/{pattern}", if negated { "!" } else { "" });
            // A line the glob syntax rejects is skipped, as Docker skips what it cannot use.
            let _ = builder.add_line(None, &anchored);
        }
        let matcher = builder.build().unwrap_or_else(|_| Gitignore::empty());
        DockerIgnore {
            matcher,
            has_exceptions,
        }
    }

    /// Whether there are no patterns: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_empty()
    }

    /// Whether `relative` (a path below the root) is excluded.
    pub fn excludes(&self, relative: &Path, is_dir: bool) -> bool {
        if is_dir {
            !self.has_exceptions && self.matcher.matched(relative, true).is_ignore()
        } else {
            self.matcher
                .matched_path_or_any_parents(relative, false)
                .is_ignore()
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
