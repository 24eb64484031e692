//! Select the artifacts from the builder's output folder with include and exclude globs. Paths
//! stay relative to the output root, and nothing outside it is ever followed: a selected
//! symlink must resolve inside the root (it is kept as a symlink), special files are skipped
//! with a warning, and file names are kept byte for byte (spaces, newlines, non-UTF-8).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use globset::{GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::artifacts::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::manifest::glob::{compile_glob, short_glob};
use crate::plan::ArtifactPlan;

/// How many symlinks resolving one artifact may pass through (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: u32 = 40;

/// One selected file of the builder's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Path relative to the output root, `/`-separated, for people: bytes that are not UTF-8
    /// are shown as `\xNN` and control characters (a newline) escaped. [`Artifact::relative`]
    /// is the exact name.
    pub path: String,
    /// The exact path relative to the output root, byte for byte.
    #[serde(skip)]
    pub relative: PathBuf,
    /// Where it is on the host.
    #[serde(skip)]
    pub host_path: PathBuf,
    /// Size in bytes (0 for a symlink).
    pub size: u64,
    /// Whether any execute bit is set; the image gets 0755, else 0644.
    pub executable: bool,
    /// The target, when the artifact is a symlink (kept as a symlink).
    pub symlink_target: Option<PathBuf>,
}

/// What the builder left in its output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The shipped files, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// Bytes of output files that no glob selected.
    pub unshipped_bytes: u64,
    /// How many output files no glob selected.
    pub unshipped_files: usize,
    /// Selected entries that cannot be shipped and were skipped (devices, sockets, fifos), one
    /// sentence each, for warnings.
    pub skipped: Vec<String>,
}

fn glob_set(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = compile_glob(p).map_err(|e| Error::InvalidGlob {
            pattern: short_glob(p),
            message: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| Error::InvalidGlob {
        pattern: patterns
            .iter()
            .map(|p| short_glob(p))
            .collect::<Vec<_>>()
            .join(", "),
        message: e.kind().to_string(),
    })
}

/// Walk `root` (the host folder mounted as the builder's output) and select artifacts.
///
/// A file is selected when it, or a folder above it, matches an include glob, and neither it
/// nor a folder above it matches an exclude glob.
pub fn collect(root: &Path, rules: &ArtifactPlan, from: &str) -> Result<Collected> {
    collect_until(root, rules, from, &AtomicBool::new(false))
}

/// [`collect`] that gives up as soon as `cancel` is set (the run was interrupted).
pub fn collect_until(
    root: &Path,
    rules: &ArtifactPlan,
    from: &str,
    cancel: &AtomicBool,
) -> Result<Collected> {
    let include = glob_set(&rules.include)?;
    let exclude = glob_set(&rules.exclude)?;
    let mut walk = Walk::default();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for entry in walker {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::io(
                "stopped reading builder output",
                root,
                std::io::Error::from(std::io::ErrorKind::Interrupted),
            ));
        }
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::io(
                "reading builder output",
                path,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("file system loop")),
            )
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let selected = matches_self_or_ancestor(&include, relative)
            && !matches_self_or_ancestor(&exclude, relative);
        walk.take(root, from, &entry, relative.to_path_buf(), selected)?;
    }
    walk.finish(rules, from)
}

/// What a walk of the output folder has found so far.
#[derive(Default)]
struct Walk {
    artifacts: Vec<Artifact>,
    unshipped_bytes: u64,
    unshipped_files: usize,
    skipped: Vec<String>,
    /// The first few files, for the message when nothing was selected.
    found: Vec<String>,
}

impl Walk {
    /// One file (not a folder) of the output at `relative`; `selected` by the globs.
    fn take(
        &mut self,
        root: &Path,
        from: &str,
        entry: &walkdir::DirEntry,
        relative: PathBuf,
        selected: bool,
    ) -> Result<()> {
        let file_type = entry.file_type();
        let shown = display_path(&relative);
        let metadata = entry
            .metadata()
            .map_err(|e| Error::io("reading builder output", entry.path(), e.into()))?;
        if self.found.len() < 8 {
            self.found.push(shown.clone());
        }
        let is_symlink = file_type.is_symlink();
        if !selected {
            self.unshipped_files += 1;
            self.unshipped_bytes += metadata.len();
            return Ok(());
        }
        if !(file_type.is_file() || is_symlink) {
            self.skipped.push(format!(
                "skipped {from}/{shown}: {} cannot be shipped in an image layer",
                special_kind(&file_type)
            ));
            self.unshipped_files += 1;
            return Ok(());
        }
        let symlink_target = if is_symlink {
            Some(link_inside(root, from, entry.path(), &relative, &shown)?)
        } else {
            None
        };
        use std::os::unix::fs::PermissionsExt;
        self.artifacts.push(Artifact {
            path: shown,
            relative,
            host_path: entry.path().to_path_buf(),
            size: if is_symlink { 0 } else { metadata.len() },
            executable: metadata.permissions().mode() & 0o111 != 0,
            symlink_target,
        });
        Ok(())
    }

    /// The selection, sorted by byte-exact path; none at all is an error.
    fn finish(mut self, rules: &ArtifactPlan, from: &str) -> Result<Collected> {
        if self.artifacts.is_empty() {
            return Err(Error::NoArtifacts {
                from: from.to_string(),
                include: rules.include.iter().map(|g| short_glob(g)).collect(),
                found: self.found,
            });
        }
        self.artifacts.sort_by(|a, b| {
            a.relative
                .as_os_str()
                .as_bytes()
                .cmp(b.relative.as_os_str().as_bytes())
        });
        Ok(Collected {
            artifacts: self.artifacts,
            unshipped_bytes: self.unshipped_bytes,
            unshipped_files: self.unshipped_files,
            skipped: self.skipped,
        })
    }
}

/// The target of the selected symlink at `host` (`relative` in the output), which must stay
/// inside the output folder.
fn link_inside(
    root: &Path,
    from: &str,
    host: &Path,
    relative: &Path,
    shown: &str,
) -> Result<PathBuf> {
    let target = std::fs::read_link(host).map_err(|e| Error::io("reading symlink", host, e))?;
    if let Err(why) = check_link(root, relative, &target) {
        return Err(Error::SymlinkOutside {
            path: format!("{from}/{shown}"),
            target: display_path(&target),
            why,
        });
    }
    Ok(target)
}

fn special_kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a named pipe (fifo)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Check that the symlink at `link` (relative to `root`) with `target` resolves inside `root`,
/// following further symlinks inside the root the way the kernel would. Returns why not.
fn check_link(root: &Path, link: &Path, target: &Path) -> Result<(), String> {
    if target.is_absolute() {
        return Err("an absolute target points outside the output folder".into());
    }
    let mut stack: Vec<OsString> = link
        .parent()
        .map(|p| p.iter().map(|c| c.to_os_string()).collect())
        .unwrap_or_default();
    let mut pending: Vec<OsString> = target.iter().rev().map(|c| c.to_os_string()).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::ParentDir) => {
                if stack.pop().is_none() {
                    return Err("it leads out of the output folder through `..`".into());
                }
            }
            Some(Component::Normal(name)) => {
                stack.push(name.to_os_string());
                let here: PathBuf = stack.iter().collect();
                let is_link = std::fs::symlink_metadata(root.join(&here))
                    .is_ok_and(|m| m.file_type().is_symlink());
                if is_link {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err("it goes through too many symlinks (a loop?)".into());
                    }
                    let next = std::fs::read_link(root.join(&here)).map_err(|e| e.to_string())?;
                    if next.is_absolute() {
                        return Err(format!(
                            "it goes through {}, which points at the absolute path {}",
                            display_path(&here),
                            display_path(&next)
                        ));
                    }
                    stack.pop();
                    pending.extend(next.iter().rev().map(|c| c.to_os_string()));
                }
            }
            Some(Component::RootDir | Component::Prefix(_)) => {
                return Err("an absolute target points outside the output folder".into());
            }
        }
    }
    Ok(())
}

/// A relative path for people: `/`-separated, bytes that are not UTF-8 shown as `\xNN`,
/// control characters escaped (`\n`), so a name never breaks a line of output.
pub fn display_path(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Globs match the exact bytes of the name, so non-UTF-8 names are selected like any other.
pub(crate) fn matches_self_or_ancestor(set: &GlobSet, relative: &Path) -> bool {
    relative
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .any(|p| set.is_match(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn rules(include: &[&str], exclude: &[&str]) -> ArtifactPlan {
        ArtifactPlan {
            subdir: String::new(),
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            dest: "/".into(),
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (path, body) in [
            ("app", "binary"),
            ("app.o", "object"),
            ("lib/libx.so", "lib"),
            ("lib/libx.a", "archive"),
            ("static/css/site.css", "css"),
            ("static/index.html", "html"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
        }
        std::fs::set_permissions(root.join("app"), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        dir
    }

    fn paths(c: &Collected) -> Vec<&str> {
        c.artifacts.iter().map(|a| a.path.as_str()).collect()
    }

    #[test]
    fn star_stays_in_one_folder() {
        let dir = tree();
        let c = collect(dir.path(), &rules(&["app*", "*.css"], &["*.o"]), "/out").expect("collect");
        assert_eq!(paths(&c), ["app"]);
        assert!(c.artifacts[0].executable);
        assert_eq!(c.artifacts[0].size, 6);
        assert_eq!(c.unshipped_files, 5);
    }

    #[test]
    fn folders_ship_whole_and_excludes_win() {
        let dir = tree();
        let c = collect(
            dir.path(),
            &rules(&["static", "lib/*.so"], &["static/css"]),
            "/out",
        )
        .expect("collect");
        assert_eq!(paths(&c), ["lib/libx.so", "static/index.html"]);
        assert!(!c.artifacts[0].executable);
    }

    #[test]
    fn a_lone_star_ships_everything_like_cp_r() {
        let dir = tree();
        let c = collect(dir.path(), &rules(&["*"], &["**/*.a"]), "/out").expect("collect");
        assert_eq!(c.artifacts.len(), 5);
        assert!(!paths(&c).contains(&"lib/libx.a"));
    }

    #[test]
    fn double_star_crosses_folders() {
        let dir = tree();
        let c = collect(dir.path(), &rules(&["**/*.css"], &[]), "/out").expect("collect");
        assert_eq!(paths(&c), ["static/css/site.css"]);
    }

    #[test]
    fn symlinks_stay_symlinks() {
        let dir = tree();
        symlink("app", &dir.path().join("app-link"));
        let c = collect(dir.path(), &rules(&["app-link"], &[]), "/out").expect("collect");
        assert_eq!(
            c.artifacts[0].symlink_target.as_deref(),
            Some(Path::new("app"))
        );
    }

    fn symlink(target: &str, link: &Path) {
        std::os::unix::fs::symlink(target, link).expect("symlink");
    }

    #[test]
    fn symlinks_inside_the_root_are_kept_even_through_other_links() {
        let dir = tree();
        let root = dir.path();
        symlink("../app", &root.join("lib/app-up"));
        symlink("lib", &root.join("libdir"));
        symlink("libdir/libx.so", &root.join("via-link"));
        symlink("./static/../app", &root.join("dotted"));
        symlink("missing-but-inside", &root.join("dangling"));
        let c = collect(
            root,
            &rules(
                &["lib/app-up", "via-link", "dotted", "dangling", "libdir"],
                &[],
            ),
            "/out",
        )
        .expect("collect");
        let links: Vec<_> = c
            .artifacts
            .iter()
            .map(|a| (a.path.as_str(), a.symlink_target.clone().expect("a link")))
            .collect();
        assert_eq!(
            links,
            [
                ("dangling", PathBuf::from("missing-but-inside")),
                ("dotted", PathBuf::from("./static/../app")),
                ("lib/app-up", PathBuf::from("../app")),
                ("libdir", PathBuf::from("lib")),
                ("via-link", PathBuf::from("libdir/libx.so")),
            ]
        );
    }

    #[test]
    fn symlinks_leading_outside_are_refused_with_the_way_out() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("evil", "../../etc/passwd")], "through `..`"),
            (&[("evil", "/etc/passwd")], "an absolute target"),
            (&[("evil", "lib/../../x")], "through `..`"),
            (&[("up", ".."), ("evil", "up/etc/passwd")], "through `..`"),
            (
                &[("abs", "/etc"), ("evil", "abs/passwd")],
                "it goes through abs, which points at the absolute path /etc",
            ),
        ];
        for (links, why) in cases {
            let dir = tree();
            for (name, target) in links {
                symlink(target, &dir.path().join(name));
            }
            let err = collect(dir.path(), &rules(&["evil"], &[]), "/out").expect_err("refused");
            let text = err.to_string();
            assert!(
                text.starts_with("artifact /out/evil is a symlink to "),
                "{text}"
            );
            assert!(text.contains("outside the builder output folder"), "{text}");
            assert!(text.contains(why), "{why:?} not in {text}");
            assert!(text.contains("help: make the link relative"), "{text}");
        }
        // Not selected, a link out is only an unshipped file.
        let dir = tree();
        symlink("/etc/passwd", &dir.path().join("evil"));
        collect(dir.path(), &rules(&["app"], &[]), "/out").expect("collect");
    }

    #[test]
    fn symlink_loops_are_refused() {
        let dir = tree();
        symlink("b", &dir.path().join("a"));
        symlink("a", &dir.path().join("b"));
        symlink("a/x", &dir.path().join("evil"));
        let err = collect(dir.path(), &rules(&["evil"], &[]), "/out").expect_err("refused");
        assert!(err.to_string().contains("too many symlinks"), "{err}");
    }

    #[test]
    fn special_files_are_skipped_with_a_warning() {
        let dir = tree();
        let root = dir.path();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .expect("mkfifo runs");
        assert!(fifo.success());
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket");
        let mut expected = vec![
            "skipped /out/pipe: a named pipe (fifo) cannot be shipped in an image layer",
            "skipped /out/sock: a socket cannot be shipped in an image layer",
        ];
        if rustix::process::getuid().is_root() {
            let made = std::process::Command::new("mknod")
                .arg(root.join("null"))
                .args(["c", "1", "3"])
                .status()
                .expect("mknod runs");
            assert!(made.success());
            expected.insert(
                0,
                "skipped /out/null: a character device cannot be shipped in an image layer",
            );
        }
        let c = collect(root, &rules(&["*"], &[]), "/out").expect("collect");
        assert_eq!(c.skipped, expected);
        assert!(paths(&c).contains(&"app"));
        assert!(!paths(&c).contains(&"pipe"));
    }

    #[test]
    fn names_with_spaces_newlines_and_other_bytes_are_kept_exactly() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let names: [&[u8]; 4] = [b"with space", b"new\nline", b"caf\xe9", b"tab\there"];
        for name in names {
            let path = dir.path().join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(&path, name).expect("write");
        }
        let c = collect(dir.path(), &rules(&["*"], &["tab*"]), "/out").expect("collect");
        let exact: Vec<&[u8]> = c
            .artifacts
            .iter()
            .map(|a| a.relative.as_os_str().as_bytes())
            .collect();
        assert_eq!(exact, [&b"caf\xe9"[..], b"new\nline", b"with space"]);
        assert_eq!(paths(&c), ["caf\\xe9", "new\\nline", "with space"]);
        // The glob matches the raw bytes too.
        let c = collect(dir.path(), &rules(&["caf?"], &[]), "/out").expect("collect");
        assert_eq!(c.artifacts[0].relative.as_os_str().as_bytes(), b"caf\xe9");
    }

    #[test]
    fn a_glob_matching_100_000_files_selects_them_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in 0..100 {
            let folder = dir.path().join(format!("d{d:03}"));
            std::fs::create_dir(&folder).expect("mkdir");
            for f in 0..1000 {
                std::fs::write(folder.join(format!("f{f:04}.txt")), b"").expect("write");
            }
        }
        std::fs::write(dir.path().join("d000/skip.o"), b"obj").expect("write");
        let c = collect(dir.path(), &rules(&["**/*.txt"], &[]), "/out").expect("collect");
        assert_eq!(c.artifacts.len(), 100_000);
        assert_eq!(c.unshipped_files, 1);
        assert_eq!(c.artifacts[0].path, "d000/f0000.txt");
        assert_eq!(c.artifacts[99_999].path, "d099/f0999.txt");
    }

    #[test]
    fn an_enormous_glob_is_cut_in_messages() {
        let glob = format!(
            "{{{}}}",
            (0..20_000)
                .map(|i| format!("f{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let dir = tree();
        let err = collect(dir.path(), &rules(&[&glob], &[]), "/out").expect_err("no match");
        let text = err.to_string();
        assert!(text.len() < 1_000, "{} bytes of message", text.len());
        assert!(text.contains(&format!("({} bytes)", glob.len())), "{text}");
        let cancel = AtomicBool::new(true);
        let err =
            collect_until(dir.path(), &rules(&["*"], &[]), "/out", &cancel).expect_err("cancelled");
        assert!(
            err.to_string().contains("stopped reading builder output"),
            "{err}"
        );
    }

    #[test]
    fn nothing_selected_says_what_was_there() {
        let dir = tree();
        let err = collect(dir.path(), &rules(&["hello"], &[]), "/out").expect_err("no match");
        let text = err.to_string();
        assert!(
            text.contains("no artifacts matched include [\"hello\"]"),
            "{text}"
        );
        assert!(text.contains("app, app.o"), "{text}");
    }
}
