//! Find what dynamically linked artifacts need: ask about the base (its layers, when it came
//! from its registry, else the engine) and the builder (the engine) until the pure search in
//! `artifacts::shared_libs` has its answers, copy what `libs = "auto"` takes from the builder.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use crate::artifacts::collect::{Artifact, Collected};
use crate::artifacts::elf::{self, ElfInfo};
use crate::artifacts::linkage::{AddedLibrary, Linkage, LinkedArtifact};
use crate::artifacts::run_dir::RunDir;
use crate::artifacts::shared_libs::*;
use crate::engine::{Engine, Entry, ImageFiles};

use super::base_files::ImageLookup;
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::context::ContextFile;
use crate::manifest::Libs;
use crate::plan::Plan;
use crate::progress::{Progress, Stage};

/// What [`find_libraries`] gives the image step.
#[derive(Default)]
pub(crate) struct Libraries {
    /// For the report.
    pub linkage: Linkage,
    /// Files to add to the context, at their image paths.
    pub files: Vec<ContextFile>,
    /// Holds the copied files until the image is built.
    _copies: Option<RunDir>,
}

/// Check the collected artifacts' shared libraries against the base (whose files `base`
/// looks up), and with `libs = "auto"` copy what the base lacks out of the builder image.
/// Fails, naming them, when something stays missing.
pub(crate) async fn find_libraries(
    engine: &Engine,
    plan: &Plan,
    collected: &Collected,
    base: ImageLookup<'_>,
    progress: &Progress,
) -> Result<Libraries> {
    let mode = plan.runtime.libs;
    let mut libraries = Libraries {
        linkage: Linkage {
            mode,
            ..Default::default()
        },
        files: Vec::new(),
        _copies: None,
    };
    if mode == Libs::Off {
        return Ok(libraries);
    }
    let input = library_input(plan, collected)?;
    announce(progress, plan, &input);
    let mut session = Session {
        engine,
        plan,
        base,
        builder: None,
        copies: None,
        copied: BTreeMap::new(),
    };
    let outcome = session.run(&input).await;
    let copied = std::mem::take(&mut session.copied);
    let copies = session.copies.take();
    session.close().await;
    let (resolution, facts) = outcome?;

    libraries.linkage.elf_artifacts = linked_artifacts(&resolution);
    libraries.linkage.on_base = resolution
        .on_base
        .iter()
        .map(|(name, path)| (name.clone(), display_search_path(path)))
        .collect();
    if !resolution.missing.is_empty() {
        return Err(Error::Artifacts(
            crate::artifacts::Error::MissingLibraries {
                base: plan.runtime.base.clone(),
                builder: plan.builder.image.clone(),
                searched_builder: input.from_builder,
                missing: resolution
                    .missing
                    .into_iter()
                    .map(|m| MissingLibrary {
                        needed_by: m.needed_by.iter().map(|p| display_search_path(p)).collect(),
                        ..m
                    })
                    .collect(),
            },
        ));
    }
    add_copied(
        &mut libraries,
        &resolution,
        &copied,
        &facts,
        &plan.builder.image,
    )?;
    libraries._copies = copies;
    Ok(libraries)
}

/// What the library search works on: the collected artifacts at their image paths (ELF facts
/// read from the host), and what the plan says about the base, the builder and the loader.
fn library_input(plan: &Plan, collected: &Collected) -> Result<Input> {
    let mode = plan.runtime.libs;
    let dest = plan.artifacts.dest.trim_matches('/');
    let mut input = Input {
        artifacts: BTreeMap::new(),
        empty_base: plan.runtime.is_scratch(),
        from_builder: mode == Libs::Auto,
        ld_library_path: plan
            .runtime
            .env
            .iter()
            .find(|(k, _)| k == "LD_LIBRARY_PATH")
            .map(|(_, v)| v.split(':').map(str::to_string).collect())
            .unwrap_or_default(),
    };
    for artifact in &collected.artifacts {
        let image_path = image_search_path(dest, artifact);
        let shipped = match &artifact.symlink_target {
            Some(target) => Shipped::Symlink(search_path(target.as_os_str().as_bytes())),
            None => Shipped::File(read_elf(&artifact.host_path)?),
        };
        input.artifacts.insert(image_path, shipped);
    }
    Ok(input)
}

/// An artifact's path in the image as the search's text: from its exact bytes, never its
/// display name, so `$ORIGIN` and the files added beside it name its real folder.
fn image_search_path(dest: &str, artifact: &Artifact) -> String {
    let relative = search_path(artifact.relative.as_os_str().as_bytes());
    normalise(&format!("/{dest}/{relative}"))
}

/// Say what is searched, when a dynamically linked artifact needs anything.
fn announce(progress: &Progress, plan: &Plan, input: &Input) {
    let needs_anything = input
        .artifacts
        .values()
        .any(|s| matches!(s, Shipped::File(Some(info)) if info.loadable && !info.is_static()));
    if needs_anything {
        progress.stage(
            Stage::Image,
            &format!(
                "looking for the shared libraries of dynamically linked artifacts ({})",
                match (input.empty_base, input.from_builder) {
                    (true, false) => "none on scratch".to_string(),
                    (true, true) => format!("copied from {}", plan.builder.image),
                    (false, false) => format!("on {}", plan.runtime.base),
                    (false, true) =>
                        format!("on {}, else from {}", plan.runtime.base, plan.builder.image),
                }
            ),
        );
    }
}

/// How each ELF artifact is linked, for the report.
fn linked_artifacts(resolution: &Resolution) -> Vec<LinkedArtifact> {
    resolution
        .elf_artifacts
        .iter()
        .map(|(path, info)| LinkedArtifact {
            path: display_search_path(path),
            linking: if info.is_static() {
                "static".to_string()
            } else {
                "dynamic".to_string()
            },
            interpreter: info.interpreter.clone(),
            needed: info.needed.clone(),
        })
        .collect()
}

/// Add the libraries copied out of the builder to the image's files and the report. One that
/// was found but not copied stops the build: without it the artifact would not start.
fn add_copied(
    libraries: &mut Libraries,
    resolution: &Resolution,
    copied: &BTreeMap<String, std::path::PathBuf>,
    facts: &Facts,
    builder: &str,
) -> Result<()> {
    for (image_path, real) in &resolution.from_builder {
        let Some(host_path) = copied.get(real) else {
            return Err(Error::Artifacts(
                crate::artifacts::Error::LibraryNotCopied {
                    path: display_search_path(image_path),
                    from: display_search_path(real),
                    builder: builder.to_string(),
                },
            ));
        };
        let size = std::fs::metadata(host_path)
            .map_err(|e| Error::io("reading the copied library", host_path, e))?
            .len();
        let executable = matches!(
            facts.builder.get(real),
            Some(Entry::File { executable: true })
        );
        libraries.linkage.added.push(AddedLibrary {
            path: display_search_path(image_path),
            from: display_search_path(real),
            bytes: size,
        });
        let relative = exact_path(image_path.trim_start_matches('/'));
        libraries.files.push(ContextFile {
            image_path: relative.clone(),
            artifact: Artifact {
                path: crate::artifacts::collect::display_path(&relative),
                relative,
                host_path: host_path.clone(),
                size,
                executable,
                symlink_target: None,
            },
        });
    }
    Ok(())
}

fn read_elf(path: &std::path::Path) -> Result<Option<ElfInfo>> {
    match elf::parse_file(path) {
        Err(e) => Err(Error::io("reading artifact", path, e)),
        Ok(Err(message)) => Err(Error::Artifacts(crate::artifacts::Error::InvalidElf {
            path: path.to_path_buf(),
            message,
        })),
        Ok(Ok(info)) => Ok(info),
    }
}

/// The image side of a resolution: the base's files (its layers, or a stopped container) and a
/// stopped container of the builder to read files from, opened when first needed and always
/// closed.
struct Session<'a> {
    engine: &'a Engine,
    plan: &'a Plan,
    base: ImageLookup<'a>,
    builder: Option<ImageFiles>,
    copies: Option<RunDir>,
    copied: BTreeMap<String, PathBuf>,
}

/// Rounds of queries before giving up (each round answers every open question at once).
const MAX_ROUNDS: usize = 200;

impl Session<'_> {
    async fn run(&mut self, input: &Input) -> Result<(Resolution, Facts)> {
        let mut facts = Facts::default();
        for _ in 0..MAX_ROUNDS {
            let queries = match resolve(input, &facts) {
                Ok(resolution) => return Ok((resolution, facts)),
                Err(queries) => queries,
            };
            for query in queries {
                self.answer(query, &mut facts).await?;
            }
        }
        Err(Error::Engine(crate::engine::Error::Docker {
            action: "looking for shared libraries".into(),
            message: format!("no answer after {MAX_ROUNDS} rounds of questions (a symlink loop?)"),
        }))
    }

    async fn answer(&mut self, query: Query, facts: &mut Facts) -> Result<()> {
        match query {
            Query::StatBase(path) => {
                let entry = stat_base(&mut self.base, &path).await?;
                facts.base.insert(path, entry);
            }
            Query::StatBuilder(path) => {
                let engine = self.engine;
                let builder = self.builder().await?;
                let entry = stat(engine, builder, &path).await?;
                facts.builder.insert(path, entry);
            }
            Query::ReadBuilder(path) => {
                if self.copies.is_none() {
                    self.copies = Some(RunDir::create(&self.plan.out_dir)?);
                }
                let root = self.copies.as_ref().map(RunDir::output).unwrap_or_default();
                let exact = exact_path(&path);
                let host = root.join(exact.strip_prefix("/").unwrap_or(&exact));
                let engine = self.engine;
                let builder = self.builder().await?;
                // Only a path `stat` found is read, and `stat` finds only text paths.
                engine
                    .copy_image_file(builder, &exact.to_string_lossy(), &host)
                    .await?;
                let info = match elf::parse_file(&host) {
                    Ok(Ok(info)) => info,
                    // A broken or unreadable file is no library; the search goes on.
                    _ => None,
                };
                self.copied.insert(path.clone(), host);
                facts.builder_elf.insert(path, info);
            }
        }
        Ok(())
    }

    async fn builder(&mut self) -> Result<&ImageFiles> {
        if self.builder.is_none() {
            self.builder = Some(
                self.engine
                    .open_image_files(&self.plan.builder.image, &self.plan.project)
                    .await?,
            );
        }
        self.builder.as_ref().ok_or_else(|| {
            Error::Engine(crate::engine::Error::Docker {
                action: "opening the builder image's files".into(),
                message: "no container".into(),
            })
        })
    }

    async fn close(self) {
        let _ = self.base.close().await;
        if let Some(files) = self.builder {
            let _ = self.engine.close_image_files(files).await;
        }
    }
}

/// [`stat`] in the base, wherever its files are.
async fn stat_base(base: &mut ImageLookup<'_>, path: &str) -> Result<Entry> {
    let exact = exact_path(path);
    let Some(text) = exact.to_str() else {
        return Ok(Entry::Missing);
    };
    Ok(match base.stat(text).await? {
        Entry::Symlink { target } => Entry::Symlink {
            target: search_path(target.as_bytes()),
        },
        other => other,
    })
}

/// What is at the [`search_path`] `path` of an image, its symlink target as a search path too.
/// The engine's archive API takes paths as text: a path whose bytes are not UTF-8 (below an
/// artifact's folder, through `$ORIGIN`) is not looked for and counts as missing.
async fn stat(engine: &Engine, files: &ImageFiles, path: &str) -> Result<Entry> {
    let exact = exact_path(path);
    let Some(text) = exact.to_str() else {
        return Ok(Entry::Missing);
    };
    Ok(match engine.stat_image_file(files, text).await? {
        Entry::Symlink { target } => Entry::Symlink {
            target: search_path(target.as_bytes()),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::Path;

    use super::*;

    fn artifact(relative: &[u8]) -> Artifact {
        let relative = PathBuf::from(OsStr::from_bytes(relative));
        Artifact {
            path: crate::artifacts::collect::display_path(&relative),
            relative,
            host_path: PathBuf::from("/nonexistent"),
            size: 0,
            executable: true,
            symlink_target: None,
        }
    }

    #[test]
    fn ld_library_path_from_the_runtime_env_is_what_the_search_searches() {
        let loaded = crate::manifest::parse_bytes_with(
            Path::new("/p/dockception.toml"),
            "[builder]\nimage = \"gcc:local\"\nrun = \"true\"\n[artifacts]\ninclude = [\"app\"]\n[runtime.env]\nLD_LIBRARY_PATH = \"/opt/lib:/usr/local/lib\"\n".into(),
            &Default::default(),
        )
        .expect("a manifest");
        let plans =
            crate::plan::plan(&loaded, &crate::plan::PlanOptions::default()).expect("a plan");
        let collected = Collected {
            artifacts: Vec::new(),
            unshipped_bytes: 0,
            unshipped_files: 0,
            skipped: Vec::new(),
        };
        let input = library_input(&plans.targets[0], &collected).expect("input");
        assert_eq!(input.ld_library_path, ["/opt/lib", "/usr/local/lib"]);
    }

    #[test]
    fn the_search_sees_an_artifact_by_its_exact_bytes_not_its_display_name() {
        let latin1 = artifact(b"caf\xe9/app");
        assert_eq!(latin1.path, "caf\\xe9/app");
        let at = image_search_path("usr", &latin1);
        assert_eq!(
            exact_path(&at),
            Path::new(OsStr::from_bytes(b"/usr/caf\xe9/app"))
        );
        // A folder really named `caf\xe9` (a backslash, an x, an e, a 9) is another folder.
        let literal = artifact(b"caf\\xe9/app");
        assert_eq!(literal.path, latin1.path);
        assert_ne!(image_search_path("usr", &literal), at);
        // `$ORIGIN` expands to the real folder.
        let mut info = ElfInfo {
            loadable: true,
            is_64: true,
            machine: 62,
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            needed: vec!["libfoo.so".into()],
            soname: None,
            rpath: Vec::new(),
            runpath: vec!["$ORIGIN/lib".into()],
        };
        let dirs = search_dirs(&info, &at, &[], &[]);
        assert_eq!(
            exact_path(&dirs[0]),
            Path::new(OsStr::from_bytes(b"/usr/caf\xe9/lib"))
        );
        info.runpath.clear();
        assert!(!search_dirs(&info, &at, &[], &[]).contains(&dirs[0]));
    }

    #[test]
    fn a_library_found_but_not_copied_stops_the_build_naming_it() {
        let mut libraries = Libraries::default();
        let resolution = Resolution {
            from_builder: vec![(
                "/lib/x86_64-linux-gnu/libfoo.so.1".into(),
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2".into(),
            )],
            ..Default::default()
        };
        let err = add_copied(
            &mut libraries,
            &resolution,
            &BTreeMap::new(),
            &Facts::default(),
            "gcc:local",
        )
        .expect_err("a library that was not copied is an error");
        let message = err.to_string();
        assert!(
            message.contains("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2")
                && message.contains("/lib/x86_64-linux-gnu/libfoo.so.1")
                && message.contains("gcc:local")
                && message.contains("help:"),
            "{message}"
        );
        assert!(libraries.files.is_empty());
    }
}
