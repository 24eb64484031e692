//! Unit tests of `reuse`: the store on a real file system, without an engine.

use super::*;

fn output(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let out = dir.join(format!("run-{}", now_ns()));
    for (path, body) in files {
        let p = out.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    std::fs::create_dir_all(&out).expect("mkdir");
    out
}

fn print(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn keep(store: &Store, out: &Path, n: u8) -> Vec<String> {
    let staged = store.stage(out).expect("staged");
    let report = Report::empty(&format!("sha256:{}", print(n)));
    store
        .commit(staged, &print(n), &report, None, None)
        .expect("committed")
}

fn found(store: &Store, n: u8) -> Entry {
    match store.lookup(&print(n)) {
        Lookup::Found(entry) => *entry,
        other => panic!("entry {n}: {other:?}"),
    }
}

#[test]
fn a_kept_output_comes_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = output(dir.path(), &[("app", "binary"), ("lib/x.so", "lib")]);
    std::os::unix::fs::symlink("x.so", out.join("lib/x.so.1")).expect("symlink");
    std::fs::set_permissions(out.join("app"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let store = Store::at(dir.path().join("reuse"), 1 << 20);
    assert_eq!(keep(&store, &out, 1), Vec::<String>::new());
    assert!(matches!(store.lookup(&print(2)), Lookup::Missing));

    let entry = found(&store, 1);
    assert_eq!(entry.bytes, 9);
    let into = dir.path().join("restored");
    std::fs::create_dir(&into).expect("mkdir");
    store.restore(&entry, &into).expect("restored");
    assert_eq!(
        std::fs::read_to_string(into.join("app")).expect("app"),
        "binary"
    );
    assert_eq!(
        std::fs::metadata(into.join("app")).expect("stat").mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(into.join("lib/x.so.1")).expect("link"),
        Path::new("x.so")
    );
    // Staging folders never stay.
    let names: Vec<String> = std::fs::read_dir(store.root())
        .expect("store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [print(1)]);
}

#[test]
fn a_changed_added_or_deleted_file_is_never_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::at(dir.path().join("reuse"), 1 << 20);
    type Spoil = fn(&Path);
    let spoils: [(Spoil, &str); 4] = [
        (
            |o| std::fs::write(o.join("app"), "BINARY").expect("write"),
            "app changed",
        ),
        (
            |o| std::fs::write(o.join("new"), "x").expect("write"),
            "new was added",
        ),
        (
            |o| std::fs::remove_file(o.join("lib/x.so")).expect("rm"),
            "lib/x.so is gone",
        ),
        (
            |o| {
                std::fs::set_permissions(o.join("app"), std::fs::Permissions::from_mode(0o700))
                    .expect("chmod")
            },
            "app changed",
        ),
    ];
    for (n, (spoil, why)) in spoils.iter().enumerate() {
        let n = n as u8 + 1;
        let out = output(dir.path(), &[("app", "binary"), ("lib/x.so", "lib")]);
        keep(&store, &out, n);
        spoil(&store.root().join(print(n)).join(OUTPUT_DIR));
        match store.lookup(&print(n)) {
            Lookup::Changed(reason) => assert!(reason.starts_with(why), "{reason}"),
            other => panic!("{why}: {other:?}"),
        }
        assert!(!store.root().join(print(n)).exists(), "a spoilt entry goes");
    }
}

#[test]
fn past_the_limit_the_builds_used_longest_ago_go_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::at(dir.path().join("reuse"), 25);
    let ten = "0123456789";
    for n in 1..=2 {
        keep(&store, &output(dir.path(), &[("f", ten)]), n);
    }
    // 1 is used again, so 2 is now the one used longest ago.
    store.touch(&found(&store, 1)).expect("touched");
    assert_eq!(
        keep(&store, &output(dir.path(), &[("f", ten)]), 3),
        [print(2)]
    );
    let kept: Vec<String> = store.entries().into_iter().map(|e| e.fingerprint).collect();
    assert_eq!(kept, [print(1), print(3)]);
    // An output larger than the whole limit is not kept, and evicts nothing.
    let big = output(dir.path(), &[("f", &"x".repeat(26))]);
    assert_eq!(keep(&store, &big, 4), Vec::<String>::new());
    assert!(matches!(store.lookup(&print(4)), Lookup::Missing));
    assert_eq!(store.remove_all().expect("removed"), (2, 20));
    assert!(!store.root().exists());
    // A limit of 0 keeps nothing and finds nothing.
    let off = Store::at(dir.path().join("off"), 0);
    assert!(!off.enabled());
    assert!(matches!(off.lookup(&print(1)), Lookup::Missing));
}

#[test]
fn the_kept_builds_table_names_target_inputs_image_size_and_age() {
    let rows = [KeptBuild {
        target: "default".into(),
        fingerprint: print(171),
        image_id: format!("sha256:{}", "c".repeat(64)),
        bytes: 3 << 20,
        used_at_ns: 0,
    }];
    assert_eq!(
        kept_builds_text(&rows, 7_200_000_000_000),
        "TARGET   INPUTS        IMAGE         SIZE     LAST USED\n\
         default  abababababab  cccccccccccc  3.0 MiB  2 h ago\n"
    );
}
