//! The files of an image, looked up where it is: in the engine (a stopped container of it,
//! through the archive API) or, for a runtime base taken straight from its registry, in the
//! listings of its layers already scanned into the store (no engine, no container). The
//! listings are merged as the engine's overlay merges the layers: whiteouts and opaque folders
//! hide what is below, a later entry replaces an earlier one.

use std::collections::BTreeMap;

use crate::engine::{Engine, Entry, ImageFiles};
use crate::error::Result;
use crate::report::scan::{FileKind, LayerScan};

/// How many symlinks a lookup follows before it gives up (Linux's limit).
const MAX_LINKS: usize = 40;

/// Where an image's files are looked up.
pub(crate) enum ImageLookup<'a> {
    /// A stopped container of the image in the engine, opened when first asked.
    Engine {
        /// The engine.
        engine: &'a Engine,
        /// The image's reference.
        image: &'a str,
        /// The project, for the container's labels.
        project: &'a str,
        /// The container, once opened.
        files: Option<ImageFiles>,
    },
    /// A base's layers, merged from their listings.
    Layers(LayerTree),
}

impl<'a> ImageLookup<'a> {
    /// `image` in `engine`, read through a container opened on the first question.
    pub(crate) fn engine(engine: &'a Engine, image: &'a str, project: &'a str) -> Self {
        ImageLookup::Engine {
            engine,
            image,
            project,
            files: None,
        }
    }

    /// What is at `path` (absolute): a file, a symlink (its target resolved inside the image,
    /// absolute, as the engine resolves it), something else, or nothing.
    pub(crate) async fn stat(&mut self, path: &str) -> Result<Entry> {
        match self {
            ImageLookup::Layers(tree) => Ok(tree.stat(path)),
            ImageLookup::Engine {
                engine,
                image,
                project,
                files,
            } => {
                if files.is_none() {
                    *files = Some(engine.open_image_files(image, project).await?);
                }
                match files {
                    Some(opened) => Ok(engine.stat_image_file(opened, path).await?),
                    None => Ok(Entry::Missing),
                }
            }
        }
    }

    /// Remove the container, when one was opened.
    pub(crate) async fn close(self) -> Result<()> {
        if let ImageLookup::Engine {
            engine,
            files: Some(files),
            ..
        } = self
        {
            engine.close_image_files(files).await?;
        }
        Ok(())
    }
}

/// What one path of the merged layers is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File {
        executable: bool,
    },
    Dir,
    Symlink(String),
    /// A hard link to another path (of the same layer).
    Hardlink(String),
    Other,
}

/// The merged view of a base's layers, by absolute path.
#[derive(Debug, Default)]
pub(crate) struct LayerTree {
    nodes: BTreeMap<String, Node>,
}

impl LayerTree {
    /// Merge `scans` (bottom layer first) as the engine does.
    pub(crate) fn from_scans(scans: &[LayerScan]) -> Self {
        let mut tree = LayerTree::default();
        tree.nodes.insert("/".into(), Node::Dir);
        for scan in scans {
            for dir in &scan.opaque_dirs {
                tree.remove_below(dir);
            }
            for hidden in &scan.whiteouts {
                tree.nodes.remove(hidden);
                tree.remove_below(hidden);
            }
            for entry in &scan.entries {
                let node = match entry.kind {
                    FileKind::File => Node::File {
                        executable: entry.mode & 0o111 != 0,
                    },
                    FileKind::Dir => Node::Dir,
                    FileKind::Symlink => Node::Symlink(entry.link.clone().unwrap_or_default()),
                    FileKind::Hardlink => Node::Hardlink(entry.link.clone().unwrap_or_default()),
                    FileKind::Other => Node::Other,
                };
                if node != Node::Dir {
                    // A file over a folder hides the folder's content.
                    tree.remove_below(&entry.path);
                }
                tree.nodes.insert(entry.path.clone(), node);
            }
        }
        tree
    }

    fn has_below(&self, dir: &str) -> bool {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(path, _)| path.starts_with(&prefix))
    }

    fn remove_below(&mut self, dir: &str) {
        let prefix = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .map(|(path, _)| path.clone())
            .collect();
        for path in below {
            self.nodes.remove(&path);
        }
    }

    /// What is at `path`, as [`ImageLookup::stat`] answers.
    pub(crate) fn stat(&self, path: &str) -> Entry {
        let Some((resolved, node)) = self.lstat(path) else {
            return Entry::Missing;
        };
        match node {
            Node::Symlink(_) => match self.follow(&resolved) {
                Some(target) => Entry::Symlink { target },
                None => Entry::Missing,
            },
            Node::File { executable } => Entry::File {
                executable: *executable,
            },
            Node::Hardlink(target) => match self.nodes.get(target) {
                Some(Node::File { executable }) => Entry::File {
                    executable: *executable,
                },
                _ => Entry::Other,
            },
            Node::Dir | Node::Other => Entry::Other,
        }
    }

    /// The node at `path` with its folders' symlinks followed (not its own), and the path it
    /// is at; `None` when nothing is there.
    fn lstat(&self, path: &str) -> Option<(String, &Node)> {
        self.lstat_within(path, 0)
    }

    /// [`Self::lstat`], `depth` links deep already (a link loop through folders ends).
    fn lstat_within(&self, path: &str, depth: usize) -> Option<(String, &Node)> {
        if depth > MAX_LINKS {
            return None;
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((last, folders)) = parts.split_last() else {
            return self.nodes.get("/").map(|n| ("/".to_string(), n));
        };
        let mut at = "/".to_string();
        for folder in folders {
            at = self.resolve_dir(&join(&at, folder), depth)?;
        }
        let full = normalise(&join(&at, last));
        self.nodes.get(&full).map(|n| (full, n))
    }

    /// `path` (its folders resolved already) with symlinks followed until a folder.
    fn resolve_dir(&self, path: &str, depth: usize) -> Option<String> {
        let mut at = normalise(path);
        for hop in 0..MAX_LINKS {
            let Some(node) = self.nodes.get(&at) else {
                // A layer tar may leave out a folder's own entry: its content makes it.
                return self.has_below(&at).then_some(at);
            };
            match node {
                Node::Dir => return Some(at),
                Node::Symlink(target) => {
                    let (resolved, _) =
                        self.lstat_within(&link_path(&at, target), depth + hop + 1)?;
                    at = resolved;
                }
                _ => return None,
            }
        }
        None
    }

    /// Where the symlink at `path` finally leads: the first path that is not a symlink (it may
    /// not exist, as the engine's answer may name a target that is missing).
    fn follow(&self, path: &str) -> Option<String> {
        let mut at = path.to_string();
        for _ in 0..MAX_LINKS {
            let target = match self.nodes.get(&at) {
                Some(Node::Symlink(target)) => link_path(&at, target),
                _ => return Some(at),
            };
            at = match self.lstat(&target) {
                Some((resolved, _)) => resolved,
                None => return Some(normalise(&target)),
            };
        }
        None
    }
}

/// The absolute path a symlink at `at` to `target` names.
fn link_path(at: &str, target: &str) -> String {
    if target.starts_with('/') {
        normalise(target)
    } else {
        let parent = at.rsplit_once('/').map_or("/", |(p, _)| p);
        normalise(&join(if parent.is_empty() { "/" } else { parent }, target))
    }
}

fn join(parent: &str, name: &str) -> String {
    format!("{}/{name}", parent.trim_end_matches('/'))
}

/// `path` with `.`, `..` and repeated slashes taken out, absolute (`..` stops at `/`).
fn normalise(path: &str) -> String {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::scan::LayerEntry;

    fn entry(path: &str, kind: FileKind, mode: u32, link: Option<&str>) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind,
            size: 0,
            mode,
            sha256: None,
            link: link.map(String::from),
            tar_bytes: 0,
        }
    }

    fn layer(entries: Vec<LayerEntry>, whiteouts: &[&str], opaque: &[&str]) -> LayerScan {
        LayerScan {
            diff_id: String::new(),
            tar_bytes: 0,
            gzip_bytes: 0,
            entries,
            whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
            opaque_dirs: opaque.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A merged-/usr Debian: /lib -> usr/lib, the loader a link into it, libc a file.
    fn debian() -> LayerTree {
        use FileKind::*;
        LayerTree::from_scans(&[
            layer(
                vec![
                    entry("/usr", Dir, 0o755, None),
                    entry("/usr/lib", Dir, 0o755, None),
                    entry("/usr/lib/x86_64-linux-gnu", Dir, 0o755, None),
                    entry("/usr/lib/x86_64-linux-gnu/libc.so.6", File, 0o755, None),
                    entry("/usr/lib/x86_64-linux-gnu/libm.so.6", File, 0o644, None),
                    entry(
                        "/usr/lib/x86_64-linux-gnu/libz.so.1",
                        Symlink,
                        0o777,
                        Some("libz.so.1.2.13"),
                    ),
                    entry(
                        "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
                        File,
                        0o644,
                        None,
                    ),
                    entry("/usr/lib/x86_64-linux-gnu/libgone.so", File, 0o644, None),
                    entry(
                        "/usr/lib/x86_64-linux-gnu/libloop.so",
                        Symlink,
                        0o777,
                        Some("libloop.so"),
                    ),
                    entry(
                        "/usr/lib/x86_64-linux-gnu/libdangling.so",
                        Symlink,
                        0o777,
                        Some("libnone.so"),
                    ),
                    entry("/lib", Symlink, 0o777, Some("usr/lib")),
                    entry("/lib64", Symlink, 0o777, Some("usr/lib64")),
                    entry("/usr/lib64", Dir, 0o755, None),
                    entry(
                        "/usr/lib64/ld-linux-x86-64.so.2",
                        Symlink,
                        0o777,
                        Some("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                    ),
                    entry(
                        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                        File,
                        0o755,
                        None,
                    ),
                    entry("/opt", Dir, 0o755, None),
                    entry("/opt/old", File, 0o644, None),
                    entry(
                        "/usr/bin/tool",
                        Hardlink,
                        0o755,
                        Some("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                    ),
                ],
                &[],
                &[],
            ),
            layer(
                vec![entry("/opt/new", File, 0o755, None)],
                &["/usr/lib/x86_64-linux-gnu/libgone.so"],
                &["/opt"],
            ),
        ])
    }

    #[test]
    fn files_are_found_through_linked_folders_as_the_engine_finds_them() {
        let tree = debian();
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libc.so.6"),
            Entry::File { executable: true }
        );
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libm.so.6"),
            Entry::File { executable: false }
        );
        assert_eq!(tree.stat("/usr/lib"), Entry::Other);
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libnothere.so"),
            Entry::Missing
        );
        assert_eq!(
            tree.stat("/usr/lib/x86_64-linux-gnu/libc.so.6/x"),
            Entry::Missing
        );
        assert_eq!(tree.stat("/usr/bin/tool"), Entry::File { executable: true });
    }

    #[test]
    fn a_symlink_answers_with_where_it_finally_leads() {
        let tree = debian();
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libz.so.1"),
            Entry::Symlink {
                target: "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13".into()
            }
        );
        assert_eq!(
            tree.stat("/lib64/ld-linux-x86-64.so.2"),
            Entry::Symlink {
                target: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into()
            }
        );
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libdangling.so"),
            Entry::Symlink {
                target: "/usr/lib/x86_64-linux-gnu/libnone.so".into()
            }
        );
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libloop.so"),
            Entry::Missing
        );
        let looped = LayerTree::from_scans(&[layer(
            vec![entry("/a", FileKind::Symlink, 0o777, Some("/a/b"))],
            &[],
            &[],
        )]);
        assert_eq!(
            looped.stat("/a/b/c"),
            Entry::Missing,
            "a folder link loop ends"
        );
    }

    #[test]
    fn whiteouts_and_opaque_folders_hide_what_is_below() {
        let tree = debian();
        assert_eq!(
            tree.stat("/lib/x86_64-linux-gnu/libgone.so"),
            Entry::Missing
        );
        assert_eq!(tree.stat("/opt/old"), Entry::Missing);
        assert_eq!(tree.stat("/opt/new"), Entry::File { executable: true });
        let replaced = LayerTree::from_scans(&[
            layer(
                vec![
                    entry("/d", FileKind::Dir, 0o755, None),
                    entry("/d/f", FileKind::File, 0o644, None),
                ],
                &[],
                &[],
            ),
            layer(vec![entry("/d", FileKind::File, 0o644, None)], &[], &[]),
        ]);
        assert_eq!(
            replaced.stat("/d/f"),
            Entry::Missing,
            "a file over a folder"
        );
        assert_eq!(replaced.stat("/d"), Entry::File { executable: false });
    }
}
