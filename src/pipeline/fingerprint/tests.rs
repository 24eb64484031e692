//! Unit tests of `fingerprint`.

use super::*;
use crate::plan::{ArtifactPlan, BindMount, BuilderPlan, RuntimePlan};
use std::time::Duration;

fn plan(root: &Path, out_dir: &Path) -> Plan {
    Plan {
        target: "default".into(),
        artifacts_from: None,
        manifest: root.join("dockception.toml"),
        project: "p-00000000".into(),
        out_dir: out_dir.to_path_buf(),
        blobs_dir: out_dir.join("blobs"),
        builder: BuilderPlan {
            image: "gcc:local".into(),
            workdir: Some("/src".into()),
            env: vec![],
            command: vec!["make".into()],
            user: None,
            mounts: vec![BindMount {
                source: root.to_path_buf(),
                target: "/src".into(),
                read_only: true,
            }],
            caches: vec![],
            output_target: "/out".into(),
            env_from_host: vec![],
            secret_files: vec![],
            network: None,
            warm: None,
            reuse_limit: crate::plan::DEFAULT_REUSE_LIMIT,
        },
        artifacts: ArtifactPlan {
            subdir: String::new(),
            include: vec!["app".into()],
            exclude: vec![],
            dest: "/".into(),
        },
        runtime: RuntimePlan::on("scratch"),
        tags: vec!["app:latest".into()],
        push: false,
    }
}

fn write(root: &Path, path: &str, body: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

/// Move a file's mtime into the past, as if it was written long before the last scan.
fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    let file = File::options().write(true).open(path).expect("open");
    file.set_modified(old).expect("set mtime");
}

struct Fixture {
    dir: tempfile::TempDir,
    plan: Plan,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("src");
        for (path, body) in files {
            write(&root, path, body);
        }
        let plan = plan(&root, &root.join(".dockception"));
        Fixture { dir, plan }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    fn scan(&self, previous: &State) -> Sources {
        scan(&self.plan, previous).expect("scan")
    }
    fn fingerprint(&self, sources: &Sources) -> String {
        fingerprint(
            &Inputs {
                plan: &self.plan,
                builder_id: "sha256:builder",
                base_id: "scratch",
                epoch: 0,
            },
            sources,
        )
    }
    fn paths(&self, sources: &Sources) -> Vec<String> {
        sources.entries.iter().map(|e| e.path.clone()).collect()
    }
}

fn state(sources: &Sources, fingerprint: &str) -> State {
    State {
        version: STATE_VERSION,
        scanned_at_ns: sources.scanned_at_ns,
        files: sources.files.clone(),
        last: Some(LastBuild {
            fingerprint: fingerprint.to_string(),
            report: crate::report::Report::empty("sha256:0123456789ab"),
            init: None,
        }),
    }
}

#[test]
fn the_same_tree_gives_the_same_fingerprint_and_one_byte_changes_it() {
    let f = Fixture::new(&[
        ("main.c", "int main(void) { return 0; }\n"),
        ("lib/x.h", ""),
    ]);
    let first = f.fingerprint(&f.scan(&State::default()));
    assert_eq!(first, f.fingerprint(&f.scan(&State::default())));
    write(&f.root(), "main.c", "int main(void) { return 1; }\n");
    assert_ne!(first, f.fingerprint(&f.scan(&State::default())));
}

#[test]
fn new_files_folders_modes_and_links_change_it() {
    let f = Fixture::new(&[("main.c", "x")]);
    let mut seen = vec![f.fingerprint(&f.scan(&State::default()))];
    std::fs::create_dir(f.root().join("empty")).expect("mkdir");
    seen.push(f.fingerprint(&f.scan(&State::default())));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        f.root().join("main.c"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    seen.push(f.fingerprint(&f.scan(&State::default())));
    std::os::unix::fs::symlink("main.c", f.root().join("link")).expect("symlink");
    seen.push(f.fingerprint(&f.scan(&State::default())));
    std::fs::rename(f.root().join("main.c"), f.root().join("app.c")).expect("rename");
    seen.push(f.fingerprint(&f.scan(&State::default())));
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "every change changes it");
}

#[test]
fn the_plan_and_the_images_are_inputs_too() {
    let mut f = Fixture::new(&[("main.c", "x")]);
    let sources = f.scan(&State::default());
    let first = f.fingerprint(&sources);
    let other_base = fingerprint(
        &Inputs {
            plan: &f.plan,
            builder_id: "sha256:builder",
            base_id: "sha256:busybox",
            epoch: 0,
        },
        &sources,
    );
    assert_ne!(first, other_base);
    let new_epoch = fingerprint(
        &Inputs {
            plan: &f.plan,
            builder_id: "sha256:builder",
            base_id: "scratch",
            epoch: 1,
        },
        &sources,
    );
    assert_ne!(first, new_epoch);
    f.plan.builder.command = vec!["make".into(), "-j2".into()];
    assert_ne!(first, f.fingerprint(&sources));
}

#[test]
fn unchanged_old_files_are_not_read_again() {
    let f = Fixture::new(&[("a.c", "a"), ("b.c", "b"), ("c.c", "c")]);
    for name in ["a.c", "b.c", "c.c"] {
        age(&f.root().join(name));
    }
    let first = f.scan(&State::default());
    assert_eq!(first.hashed, 3);
    let print = f.fingerprint(&first);
    let previous = state(&first, &print);
    let second = f.scan(&previous);
    assert_eq!(second.hashed, 0, "size and mtime unchanged: nothing hashed");
    assert_eq!(f.fingerprint(&second), print);

    // A lie about a digest is believed while size and mtime match: proof it was not read.
    let mut lied = previous.clone();
    let a = f.root().join("a.c");
    lied.files.get_mut(a.as_os_str()).expect("a.c").digest = FileDigest([0; 32]);
    assert_ne!(f.fingerprint(&f.scan(&lied)), print);

    // Touching one file re-hashes only that one.
    write(&f.root(), "b.c", "B");
    age(&f.root().join("b.c"));
    let third = f.scan(&previous);
    assert_eq!(third.hashed, 1);
    assert_ne!(f.fingerprint(&third), print);
}

#[test]
fn files_modified_just_before_the_scan_are_hashed_again() {
    let f = Fixture::new(&[("a.c", "a")]);
    let first = f.scan(&State::default());
    let previous = state(&first, "x");
    // Same size, same second: an edit in the same clock tick must not be missed.
    let second = f.scan(&previous);
    assert_eq!(second.hashed, 1);
}

#[test]
fn gitignore_dockerignore_git_and_the_output_folder_are_skipped() {
    let f = Fixture::new(&[
        ("main.c", "x"),
        (".gitignore", "*.o\n/build/\n"),
        (
            ".dockerignore",
            "# comment\nnotes.txt\n**/*.tmp\ndocs\n!docs/keep.md\n",
        ),
        ("sub/x.o", "object"),
        ("build/out", "b"),
        ("notes.txt", "n"),
        ("sub/notes.txt", "kept: dockerignore lines are anchored"),
        ("sub/deep/a.tmp", "t"),
        ("docs/drop.md", "d"),
        ("docs/keep.md", "k"),
        (".git/HEAD", "ref"),
        (".dockception/last/app", "binary"),
        (".hidden", "h"),
    ]);
    let sources = f.scan(&State::default());
    assert_eq!(
        f.paths(&sources),
        [
            "",
            ".dockerignore",
            ".gitignore",
            ".hidden",
            "docs",
            "docs/keep.md",
            "main.c",
            "sub",
            "sub/deep",
            "sub/notes.txt",
        ]
    );
    let print = f.fingerprint(&sources);
    for ignored in [
        "sub/x.o",
        "build/out",
        "notes.txt",
        "docs/drop.md",
        ".git/HEAD",
    ] {
        write(&f.root(), ignored, "changed");
    }
    write(&f.root(), ".dockception/state.json", "{}");
    assert_eq!(f.fingerprint(&f.scan(&State::default())), print);
}

#[test]
fn dockerignore_patterns_are_anchored_and_the_last_line_wins() {
    let root = Path::new("/ctx");
    let d = DockerIgnore::parse(root, "*.o\n/dist/\n./tmp\nvendor/**\n!vendor/keep.go\n");
    assert!(d.excludes(Path::new("a.o"), false));
    assert!(!d.excludes(Path::new("sub/a.o"), false));
    assert!(d.excludes(Path::new("dist/app"), false));
    assert!(d.excludes(Path::new("tmp/x"), false));
    assert!(d.excludes(Path::new("vendor/x.go"), false));
    assert!(!d.excludes(Path::new("vendor/keep.go"), false));
    assert!(
        !d.excludes(Path::new("vendor"), true),
        "exceptions: no pruning"
    );
    let plain = DockerIgnore::parse(root, "node_modules\n");
    assert!(plain.excludes(Path::new("node_modules"), true));
    assert!(plain.excludes(Path::new("node_modules/x/y.js"), false));
    assert!(!plain.excludes(Path::new("web/node_modules"), true));
}

#[test]
fn the_state_round_trips_atomically_and_a_bad_file_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = Fixture::new(&[("a.c", "a")]);
    let sources = f.scan(&State::default());
    let print = f.fingerprint(&sources);
    let saved = State::after_build(
        sources,
        print.clone(),
        crate::report::Report::empty("sha256:0123456789ab"),
        Some("tini from the base (/sbin/tini)".into()),
    );
    saved.save(dir.path()).expect("save");
    let loaded = State::load(dir.path());
    assert_eq!(loaded, saved);
    assert!(loaded.last_build_with(&print).is_some());
    assert!(loaded.last_build_with("other").is_none());
    assert_eq!(loaded.files.len(), 1, "the file list comes back too");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, [FILES_FILE, STATE_FILE], "no temporary file is left");
    // A file list from another scan is not trusted.
    let mut other = saved.clone();
    other.scanned_at_ns += 1;
    let list = std::fs::read(dir.path().join(FILES_FILE)).expect("list");
    assert!(parse_files(&list, other.scanned_at_ns).is_none());
    assert!(parse_files(b"dockception source files 1 5\n1 2 3 4 short /x\n", 5).is_none());
    std::fs::write(dir.path().join(STATE_FILE), "{ not json").expect("write");
    assert_eq!(State::load(dir.path()), State::default());
}

/// Every field of the plan, and each input besides it, changes the fingerprint; a field added
/// to the plan without a line here fails, so nothing the plan says can be left out unseen.
#[test]
fn every_field_of_the_plan_and_every_input_changes_it() {
    use crate::plan::{CacheVolume, InitPlan, SecretFile};
    type Flip = fn(&mut Plan);
    let flips: &[(&str, Flip)] = &[
        ("target", |p| p.target = "other".into()),
        ("manifest", |p| {
            p.manifest = "/elsewhere/dockception.toml".into()
        }),
        ("project", |p| p.project = "q-11111111".into()),
        ("out_dir", |p| p.out_dir = "/elsewhere/.dockception".into()),
        ("blobs_dir", |p| p.blobs_dir = "/elsewhere/blobs".into()),
        ("artifacts_from", |p| {
            p.artifacts_from = Some("build".into())
        }),
        ("builder.image", |p| p.builder.image = "gcc:other".into()),
        ("builder.workdir", |p| p.builder.workdir = Some("/w".into())),
        ("builder.env", |p| {
            p.builder.env.push(("CC".into(), "clang".into()))
        }),
        ("builder.command", |p| p.builder.command.push("-j2".into())),
        ("builder.user", |p| {
            p.builder.user = Some("1000:1000".into())
        }),
        ("builder.mounts", |p| p.builder.mounts[0].read_only = false),
        ("builder.caches", |p| {
            p.builder.caches.push(CacheVolume {
                volume: "v".into(),
                target: "/cache".into(),
            })
        }),
        ("builder.output_target", |p| {
            p.builder.output_target = "/dist".into()
        }),
        ("builder.env_from_host", |p| {
            p.builder.env_from_host.push("TOKEN".into())
        }),
        ("builder.secret_files", |p| {
            p.builder.secret_files.push(SecretFile {
                name: "npmrc".into(),
                source: "/home/u/.npmrc".into(),
                target: "/run/secrets/npmrc".into(),
            })
        }),
        ("builder.network", |p| {
            p.builder.network = Some("none".into())
        }),
        ("builder.warm", |p| p.builder.warm = Some(60)),
        ("artifacts.subdir", |p| p.artifacts.subdir = "bin".into()),
        ("artifacts.include", |p| {
            p.artifacts.include.push("lib/*".into())
        }),
        ("artifacts.exclude", |p| {
            p.artifacts.exclude.push("*.a".into())
        }),
        ("artifacts.dest", |p| p.artifacts.dest = "/usr/bin".into()),
        ("runtime.base", |p| p.runtime.base = "busybox:local".into()),
        ("runtime.entrypoint", |p| {
            p.runtime.entrypoint = Some(vec!["/app".into()])
        }),
        ("runtime.cmd", |p| {
            p.runtime.cmd = Some(vec!["--help".into()])
        }),
        ("runtime.env", |p| {
            p.runtime.env.push(("A".into(), "1".into()))
        }),
        ("runtime.workdir", |p| {
            p.runtime.workdir = Some("/data".into())
        }),
        ("runtime.user", |p| p.runtime.user = Some("65534".into())),
        ("runtime.expose", |p| p.runtime.expose.push("80/tcp".into())),
        ("runtime.labels", |p| {
            p.runtime.labels.push(("l".into(), "v".into()))
        }),
        ("runtime.steps", |p| {
            p.runtime.steps.push("apk add x".into())
        }),
        ("runtime.artifacts_mount", |p| {
            p.runtime.artifacts_mount = "/a".into()
        }),
        ("runtime.init", |p| p.runtime.init = InitPlan::Auto),
        ("runtime.libs", |p| {
            p.runtime.libs = crate::manifest::Libs::Auto
        }),
        ("tags", |p| p.tags.push("app:2".into())),
        ("push", |p| p.push = true),
    ];
    let f = Fixture::new(&[("main.c", "x")]);
    let sources = f.scan(&State::default());
    let print = |plan: &Plan, builder_id: &str, base_id: &str, epoch: u64| {
        fingerprint(
            &Inputs {
                plan,
                builder_id,
                base_id,
                epoch,
            },
            &sources,
        )
    };
    let mut base = f.plan.clone();
    base.builder.warm = Some(30); // so that the key is in the plan's JSON
    let mut seen = vec![print(&base, "sha256:builder", "scratch", 0)];
    seen.push(print(&base, "sha256:other-builder", "scratch", 0));
    seen.push(print(&base, "sha256:builder", "sha256:base", 0));
    seen.push(print(&base, "sha256:builder", "scratch", 1_700_000_000));
    for (name, flip) in flips {
        let mut plan = base.clone();
        flip(&mut plan);
        assert_ne!(plan, base, "{name} changed nothing");
        let changed = print(&plan, "sha256:builder", "scratch", 0);
        assert!(
            !seen.contains(&changed),
            "{name} does not change the fingerprint"
        );
        seen.push(changed);
    }
    // Every key of the plan's JSON (two levels deep) has its flip above.
    let json = serde_json::to_value(&base).expect("plan JSON");
    let mut keys = Vec::new();
    for (key, value) in json.as_object().expect("object") {
        match value.as_object() {
            Some(inner) => keys.extend(inner.keys().map(|k| format!("{key}.{k}"))),
            None => keys.push(key.clone()),
        }
    }
    let named: Vec<&str> = flips.iter().map(|(name, _)| *name).collect();
    for key in &keys {
        assert!(
            named.contains(&key.as_str()),
            "no flip for the plan's {key}"
        );
    }
}

/// What changes what is kept, or only what a secret holds, is not an input: a rotated token
/// must not make every kept build useless, and no digest of a secret is ever written down.
#[test]
fn the_reuse_limit_and_the_secrets_content_do_not_change_it() {
    let f = Fixture::new(&[("main.c", "x")]);
    let secret = f.dir.path().join("token");
    std::fs::write(&secret, "one").expect("secret");
    let mut plan = f.plan.clone();
    plan.builder.secret_files.push(crate::plan::SecretFile {
        name: "token".into(),
        source: secret.clone(),
        target: "/run/secrets/token".into(),
    });
    let sources = f.scan(&State::default());
    let print = |plan: &Plan| {
        fingerprint(
            &Inputs {
                plan,
                builder_id: "sha256:builder",
                base_id: "scratch",
                epoch: 0,
            },
            &sources,
        )
    };
    let first = print(&plan);
    std::fs::write(&secret, "two").expect("secret");
    assert_eq!(print(&plan), first);
    plan.builder.reuse_limit = 1;
    assert_eq!(print(&plan), first);
}

/// A one-file change in a large tree reads one file; a file replaced by another of the same
/// size and mtime (a new inode) is read too.
#[test]
fn a_one_file_change_in_a_large_tree_hashes_only_that_file() {
    let names: Vec<String> = (0..2000).map(|i| format!("d{}/f{i}.c", i % 20)).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "int x;\n")).collect();
    let f = Fixture::new(&files);
    for name in &names {
        age(&f.root().join(name));
    }
    let first = f.scan(&State::default());
    assert_eq!(first.hashed, 2000);
    let previous = state(&first, &f.fingerprint(&first));
    assert_eq!(f.scan(&previous).hashed, 0);

    write(&f.root(), "d7/f7.c", "int y;\n");
    let changed = f.scan(&previous);
    assert_eq!(changed.hashed, 1);
    assert_ne!(f.fingerprint(&changed), f.fingerprint(&first));

    // Same size, same mtime, another inode: `mv` of a copy over the file.
    let target = f.root().join("d3/f3.c");
    let mtime = std::fs::metadata(&target)
        .expect("stat")
        .modified()
        .expect("mtime");
    let copy = f.root().join("copy.tmp");
    std::fs::write(&copy, "int z;\n").expect("copy");
    File::options()
        .write(true)
        .open(&copy)
        .expect("open")
        .set_modified(mtime)
        .expect("mtime");
    std::fs::rename(&copy, &target).expect("rename");
    let replaced = f.scan(&previous);
    assert_eq!(replaced.hashed, 2, "d7/f7.c and the replaced d3/f3.c");
    assert_ne!(f.fingerprint(&replaced), f.fingerprint(&changed));
}

/// A file's path, size, mtime and inode.
type Stated = (OsString, u64, i64, u64);

/// What a scan on one thread sees, the way the scan worked before it walked on a thread of its
/// own: the same walk sorted with `sort_by_file_name`, a `symlink_metadata` of each full path,
/// and every file hashed. Mount, path, kind, mode; and each file's record, by path.
fn one_thread_scan(plan: &Plan) -> (Vec<SourceEntry>, Vec<Stated>) {
    use std::os::unix::fs::MetadataExt as _;
    let (mut entries, mut files) = (vec![], vec![]);
    for (index, mount) in plan.builder.mounts.iter().enumerate() {
        let mut walker = source_walker(&mount.source, &plan.out_dir).expect("walker");
        walker.sort_by_file_name(|a, b| a.cmp(b));
        for entry in walker.build() {
            let entry = entry.expect("entry");
            let path = entry.path();
            let metadata = std::fs::symlink_metadata(path).expect("stat");
            let relative = path.strip_prefix(&mount.source).expect("below the root");
            let kind = if metadata.is_dir() {
                EntryKind::Dir
            } else if metadata.file_type().is_symlink() {
                EntryKind::Symlink(std::fs::read_link(path).expect("link"))
            } else {
                files.push((
                    path.as_os_str().to_os_string(),
                    metadata.len(),
                    metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
                    metadata.ino(),
                ));
                EntryKind::File(hash_file(path).expect("hash"))
            };
            entries.push(SourceEntry {
                mount: index,
                path: relative.to_str().expect("utf-8").to_string(),
                kind,
                mode: metadata.mode() & 0o7777,
            });
        }
    }
    (entries, files)
}

/// The walk runs on a thread of its own and `stat`s each name in its open folder: the entries
/// are exactly, and in exactly the order, those of a walk on one thread (depth first, siblings
/// by file name, which the fingerprint hashes in order), across batches and mounts, with the
/// ignore files applied; and a second scan against the first's state reuses every digest.
#[test]
fn the_threaded_scan_gives_the_entries_and_order_of_a_scan_on_one_thread() {
    let mut files: Vec<(String, String)> = [
        ("a/b", "1"),
        ("a/c/d/e.txt", "2"),
        ("a.txt", "3"),
        ("a-b", "4"),
        ("A", "5"),
        ("b/a.txt", "6"),
        ("b/a/x", "7"),
        ("b.c", "8"),
        ("z.log", "ignored by .gitignore"),
        ("sub/.gitignore", "local.*\n"),
        ("sub/local.c", "ignored by sub/.gitignore"),
        ("sub/kept.c", "9"),
        ("skip/me", "ignored by .dockerignore"),
        ("deep/x.tmp", "ignored by .dockerignore"),
        (".gitignore", "*.log\n"),
        (".dockerignore", "skip\n**/*.tmp\n"),
        (".git/config", "skipped"),
        (".dockception/state.json", "the output folder"),
    ]
    .iter()
    .map(|(p, b)| (p.to_string(), b.to_string()))
    .collect();
    // More than a batch in one folder, and folders after it.
    files.extend((0..1300).map(|i| (format!("many/f{i}"), format!("{i}"))));
    files.extend((0..30).map(|i| (format!("many2/d{i}/g"), format!("{i}"))));
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, b)| (&p[..], &b[..])).collect();
    let mut f = Fixture::new(&refs);
    std::os::unix::fs::symlink("a.txt", f.root().join("link")).expect("symlink");
    let other = f.dir.path().join("other");
    write(&other, "x/y", "second mount");
    write(&other, "a", "a");
    f.plan.builder.mounts.push(BindMount {
        source: other,
        target: "/other".into(),
        read_only: true,
    });

    let first = f.scan(&State::default());
    let (expected, records) = one_thread_scan(&f.plan);
    assert_eq!(first.entries, expected);
    let paths = f.paths(&first);
    let at = |p: &str| paths.iter().position(|q| q == p).expect(p);
    assert!(at("A") < at("a") && at("a") < at("a/b") && at("a/b") < at("a/c/d/e.txt"));
    assert!(at("a/c/d/e.txt") < at("a-b") && at("a-b") < at("a.txt"));
    assert!(at("b/a/x") < at("b/a.txt") && at("b/a.txt") < at("b.c"));
    for gone in [
        "z.log",
        "sub/local.c",
        "skip",
        "skip/me",
        "deep/x.tmp",
        ".git",
    ] {
        assert!(!paths.iter().any(|p| p == gone), "{gone} is left out");
    }
    assert!(!paths.iter().any(|p| p.starts_with(".dockception")));
    assert_eq!(first.files.len(), records.len());
    for (path, size, mtime_ns, ino) in &records {
        let record = &first.files[path];
        assert_eq!(
            (record.size, record.mtime_ns, record.ino),
            (*size, *mtime_ns, *ino)
        );
    }
    assert_eq!(first.hashed, records.len());

    for (path, _, _, _) in &records {
        age(Path::new(path));
    }
    let aged = f.scan(&State::default());
    let again = f.scan(&state(&aged, "x"));
    assert_eq!(again.hashed, 0);
    assert_eq!(again.entries, aged.entries);
    assert_eq!(f.fingerprint(&again), f.fingerprint(&first));
}

#[test]
fn load_and_scan_reads_the_state_it_scans_against() {
    let f = Fixture::new(&[("a.c", "int a;")]);
    age(&f.root().join("a.c"));
    let first = f.scan(&State::default());
    let print = f.fingerprint(&first);
    state(&first, &print).save(&f.plan.out_dir).expect("save");
    let (sources, previous) = load_and_scan(&f.plan).expect("scan");
    assert_eq!(previous.files, first.files);
    assert_eq!(sources.hashed, 0);
    assert!(previous.last_build_with(&f.fingerprint(&sources)).is_some());
}

#[test]
fn a_missing_mount_is_an_error_naming_it() {
    let mut f = Fixture::new(&[("a.c", "int a;")]);
    let missing = f.dir.path().join("missing");
    f.plan.builder.mounts.push(BindMount {
        source: missing.clone(),
        target: "/m".into(),
        read_only: true,
    });
    let err = scan(&f.plan, &State::default()).expect_err("a missing mount");
    assert!(
        err.to_string().contains(missing.to_str().expect("utf-8")),
        "{err}"
    );
}

#[test]
fn digests_are_written_and_read_as_hex() {
    let digest = FileDigest(std::array::from_fn(|i| (i * 9) as u8));
    let hex = digest.to_string();
    assert_eq!(hex.len(), 64);
    assert!(hex.starts_with("0009121b"), "{hex}");
    assert_eq!(FileDigest::from_hex(hex.as_bytes()), Some(digest));
    assert_eq!(
        FileDigest::from_hex(hex.to_uppercase().as_bytes()),
        Some(digest)
    );
    assert_eq!(FileDigest::from_hex(&hex.as_bytes()[1..]), None);
    assert_eq!(FileDigest::from_hex("g".repeat(64).as_bytes()), None);
    assert_eq!(&digest.hex()[..], hex.as_bytes());
    // The digest of "x": what `sha256sum` prints, as the fingerprint hashes it.
    let f = Fixture::new(&[("x", "x")]);
    assert_eq!(
        hash_file(&f.root().join("x")).expect("hash").to_string(),
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    );
}
