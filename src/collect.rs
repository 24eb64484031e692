//! Select the artifacts from the builder's output folder with include and exclude globs. Paths
//! stay relative to the output root, and nothing outside it is ever followed.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::ArtifactPlan;

/// One selected file of the builder's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Path relative to the output root, `/`-separated.
    pub path: String,
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
}

/// Compile a glob the way artifact rules use it: `*` does not cross `/`, `**` does.
pub fn compile_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn glob_set(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = compile_glob(p).map_err(|e| Error::InvalidGlob {
            pattern: p.clone(),
            message: e.to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map_err(|e| Error::InvalidGlob {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

/// Walk `root` (the host folder mounted as the builder's output) and select artifacts.
///
/// A file is selected when it, or a folder above it, matches an include glob, and neither it
/// nor a folder above it matches an exclude glob.
pub fn collect(root: &Path, rules: &ArtifactPlan, from: &str) -> Result<Collected> {
    let include = glob_set(&rules.include)?;
    let exclude = glob_set(&rules.exclude)?;
    let mut artifacts = Vec::new();
    let mut unshipped_bytes = 0;
    let mut unshipped_files = 0;
    let mut found = Vec::new();

    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            Error::io(
                "reading builder output",
                path,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("file system loop")),
            )
        })?;
        let file_type = entry.file_type();
        if file_type.is_dir() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let relative = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let metadata = entry
            .metadata()
            .map_err(|e| Error::io("reading builder output", entry.path(), e.into()))?;
        if found.len() < 8 {
            found.push(relative.clone());
        }
        let selected = matches_self_or_ancestor(&include, &relative)
            && !matches_self_or_ancestor(&exclude, &relative);
        let is_symlink = file_type.is_symlink();
        if !selected || !(file_type.is_file() || is_symlink) {
            unshipped_files += 1;
            unshipped_bytes += metadata.len();
            continue;
        }
        let symlink_target = if is_symlink {
            Some(
                std::fs::read_link(entry.path())
                    .map_err(|e| Error::io("reading symlink", entry.path(), e))?,
            )
        } else {
            None
        };
        use std::os::unix::fs::PermissionsExt;
        artifacts.push(Artifact {
            path: relative,
            host_path: entry.path().to_path_buf(),
            size: if is_symlink { 0 } else { metadata.len() },
            executable: metadata.permissions().mode() & 0o111 != 0,
            symlink_target,
        });
    }
    if artifacts.is_empty() {
        return Err(Error::NoArtifacts {
            from: from.to_string(),
            include: rules.include.clone(),
            found,
        });
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Collected {
        artifacts,
        unshipped_bytes,
        unshipped_files,
    })
}

fn matches_self_or_ancestor(set: &GlobSet, relative: &str) -> bool {
    if set.is_match(relative) {
        return true;
    }
    let mut prefix = relative;
    while let Some((parent, _)) = prefix.rsplit_once('/') {
        if set.is_match(parent) {
            return true;
        }
        prefix = parent;
    }
    false
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
        std::os::unix::fs::symlink("app", dir.path().join("app-link")).expect("symlink");
        let c = collect(dir.path(), &rules(&["app-link"], &[]), "/out").expect("collect");
        assert_eq!(
            c.artifacts[0].symlink_target.as_deref(),
            Some(Path::new("app"))
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
