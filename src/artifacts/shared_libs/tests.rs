//! Unit tests of `shared_libs`.

use super::*;

const LD: &str = "/lib64/ld-linux-x86-64.so.2";
const MULTI: &str = "/lib/x86_64-linux-gnu";

fn info(interp: Option<&str>, needed: &[&str]) -> ElfInfo {
    ElfInfo {
        loadable: true,
        is_64: true,
        machine: 62,
        interpreter: interp.map(str::to_string),
        needed: needed.iter().map(|s| s.to_string()).collect(),
        soname: None,
        rpath: Vec::new(),
        runpath: Vec::new(),
    }
}

fn lib(soname: &str, needed: &[&str]) -> ElfInfo {
    ElfInfo {
        soname: Some(soname.into()),
        ..info(None, needed)
    }
}

fn input(artifacts: &[(&str, ElfInfo)]) -> Input {
    Input {
        artifacts: artifacts
            .iter()
            .map(|(p, i)| (p.to_string(), Shipped::File(Some(i.clone()))))
            .collect(),
        empty_base: true,
        from_builder: false,
        ld_library_path: Vec::new(),
    }
}

/// A fake builder image: (path, entry, ELF facts of files).
struct FakeImage(BTreeMap<String, (Entry, Option<ElfInfo>)>);

impl FakeImage {
    fn debian() -> FakeImage {
        let mut files = BTreeMap::new();
        let mut file = |path: &str, elf: Option<ElfInfo>| {
            files.insert(path.to_string(), (Entry::File { executable: true }, elf));
        };
        let ld = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        file(ld, Some(lib("ld-linux-x86-64.so.2", &[])));
        // /lib is a symlink to usr/lib: the engine resolves folder links on its own.
        file(
            "/lib/x86_64-linux-gnu/libc.so.6",
            Some(lib("libc.so.6", &["ld-linux-x86-64.so.2"])),
        );
        file(
            "/lib/x86_64-linux-gnu/libm.so.6",
            Some(lib("libm.so.6", &["libc.so.6"])),
        );
        file(
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
            Some(lib("libstdc++.so.6", &["libm.so.6", "libc.so.6"])),
        );
        file("/lib/x86_64-linux-gnu/libc.so", None); // a linker script
        let mut image = FakeImage(files);
        image.link(LD, ld);
        image.link(
            "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
        );
        image
    }

    fn link(&mut self, path: &str, target: &str) {
        self.0.insert(
            path.to_string(),
            (
                Entry::Symlink {
                    target: target.into(),
                },
                None,
            ),
        );
    }

    fn answer(&self, query: &Query, facts: &mut Facts, base: &FakeImage) {
        match query {
            Query::StatBuilder(p) => {
                let e = self.0.get(p).map_or(Entry::Missing, |(e, _)| e.clone());
                facts.builder.insert(p.clone(), e);
            }
            Query::ReadBuilder(p) => {
                let elf = self.0.get(p).and_then(|(_, elf)| elf.clone());
                facts.builder_elf.insert(p.clone(), elf);
            }
            Query::StatBase(p) => {
                let e = base.0.get(p).map_or(Entry::Missing, |(e, _)| e.clone());
                facts.base.insert(p.clone(), e);
            }
        }
    }
}

/// Drive [`resolve`] to the end against fake images, counting rounds.
fn run(input: &Input, builder: &FakeImage, base: &FakeImage) -> (Resolution, usize) {
    let mut facts = Facts::default();
    for round in 0..100 {
        match resolve(input, &facts) {
            Ok(r) => return (r, round),
            Err(queries) => {
                assert!(!queries.is_empty());
                for q in &queries {
                    builder.answer(q, &mut facts, base);
                }
            }
        }
    }
    panic!("no resolution after 100 rounds");
}

fn empty() -> FakeImage {
    FakeImage(BTreeMap::new())
}

#[test]
fn on_scratch_without_auto_everything_is_missing_and_no_question_is_asked() {
    let inp = input(&[(
        "/app",
        info(
            Some(LD),
            &["libm.so.6", "libc.so.6", "ld-linux-x86-64.so.2"],
        ),
    )]);
    let r = resolve(&inp, &Facts::default()).expect("no queries on scratch");
    let names: Vec<(&str, bool)> = r
        .missing
        .iter()
        .map(|m| (m.name.as_str(), m.interpreter))
        .collect();
    // The interpreter first; its name in DT_NEEDED is the interpreter, not another library.
    assert_eq!(
        names,
        [(LD, true), ("libc.so.6", false), ("libm.so.6", false)]
    );
    assert_eq!(r.missing[0].needed_by, ["/app"]);
}

#[test]
fn static_artifacts_need_nothing() {
    let inp = input(&[("/hello", info(None, &[]))]);
    let r = resolve(&inp, &Facts::default()).expect("resolves");
    assert!(r.missing.is_empty() && r.from_builder.is_empty());
    assert_eq!(r.elf_artifacts.len(), 1);
    assert!(r.elf_artifacts[0].1.is_static());
}

#[test]
fn auto_copies_the_closure_following_symlinks() {
    let mut inp = input(&[(
        "/usr/bin/app",
        info(Some(LD), &["libstdc++.so.6", "libc.so.6"]),
    )]);
    inp.from_builder = true;
    let (r, rounds) = run(&inp, &FakeImage::debian(), &empty());
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    assert_eq!(
        r.from_builder,
        [
            (
                LD.to_string(),
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".to_string()
            ),
            (
                format!("{MULTI}/libstdc++.so.6"),
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30".to_string()
            ),
            (format!("{MULTI}/libc.so.6"), format!("{MULTI}/libc.so.6")),
            // Needed by libstdc++ only: found through the library's own needs.
            (format!("{MULTI}/libm.so.6"), format!("{MULTI}/libm.so.6")),
        ]
    );
    assert!(rounds < 12, "{rounds} rounds");
}

#[test]
fn the_base_is_searched_first_and_only_what_it_lacks_is_copied() {
    let mut base = empty();
    base.0.insert(
        format!("{MULTI}/libc.so.6"),
        (Entry::File { executable: true }, None),
    );
    base.link(LD, "/lib/x86_64-linux-gnu/ld-2.36.so");
    base.0.insert(
        "/lib/x86_64-linux-gnu/ld-2.36.so".into(),
        (Entry::File { executable: true }, None),
    );
    let mut inp = input(&[("/app", info(Some(LD), &["libm.so.6", "libc.so.6"]))]);
    inp.empty_base = false;
    inp.from_builder = true;
    let (r, _) = run(&inp, &FakeImage::debian(), &base);
    assert_eq!(
        r.on_base,
        [
            (LD.to_string(), LD.to_string()),
            ("libc.so.6".to_string(), format!("{MULTI}/libc.so.6")),
        ]
    );
    let copied: Vec<&str> = r.from_builder.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(copied, [format!("{MULTI}/libm.so.6")]);

    // Without auto, the base is checked the same way and the rest is named.
    inp.from_builder = false;
    let (r, _) = run(&inp, &empty(), &base);
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].name, "libm.so.6");
}

#[test]
fn runpath_with_origin_finds_shipped_libraries() {
    let mut app = info(Some(LD), &["libfoo.so.1", "libc.so.6"]);
    app.runpath = vec!["$ORIGIN/../lib".into()];
    let mut foo = lib("libfoo.so.1", &["libbar.so.2", "libbaz.so"]);
    foo.runpath = vec!["$ORIGIN".into()];
    let mut inp = input(&[
        ("/opt/app/bin/app", app),
        ("/opt/app/lib/libfoo.so.1", foo),
        ("/opt/app/lib/libbar.so.2.0", lib("libbar.so.2", &[])),
        // Beside the program, not the library: DT_RUNPATH is not inherited.
        ("/opt/app/bin/libbaz.so", lib("libbaz.so", &[])),
    ]);
    inp.artifacts.insert(
        "/opt/app/lib/libbar.so.2".into(),
        Shipped::Symlink("libbar.so.2.0".into()),
    );
    let r = resolve(&inp, &Facts::default()).expect("no queries on scratch");
    let names: Vec<(&str, &[String])> = r
        .missing
        .iter()
        .map(|m| (m.name.as_str(), m.needed_by.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            (LD, &["/opt/app/bin/app".to_string()][..]),
            ("libbaz.so", &["/opt/app/lib/libfoo.so.1".to_string()][..]),
            ("libc.so.6", &["/opt/app/bin/app".to_string()][..]),
        ]
    );
    assert_eq!(r.elf_artifacts.len(), 4);
}

#[test]
fn ld_library_path_is_searched_before_the_standard_folders() {
    let dirs = search_dirs(
        &info(Some(LD), &[]),
        "/app",
        &[],
        &["/usr/local/lib".to_string()],
    );
    assert_eq!(
        dirs,
        [
            "/usr/local/lib",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib"
        ]
    );
    let mut with_rpath = info(None, &[]);
    with_rpath.rpath = vec!["/opt/x/../lib".into()];
    with_rpath.runpath = vec!["$ORIGIN".into()];
    let dirs = search_dirs(&with_rpath, "/srv/bin/tool", &["/p".into()], &[]);
    // DT_RUNPATH disables DT_RPATH, the program's too.
    assert_eq!(dirs[0], "/srv/bin");
    assert!(!dirs.contains(&"/opt/lib".to_string()));
}

#[test]
fn a_library_of_another_machine_is_skipped() {
    let mut builder = FakeImage::debian();
    let mut arm = lib("libz.so.1", &[]);
    arm.machine = 183;
    builder.0.insert(
        format!("{MULTI}/libz.so.1"),
        (Entry::File { executable: false }, Some(arm)),
    );
    builder.0.insert(
        "/usr/lib/libz.so.1".into(),
        (
            Entry::File { executable: false },
            Some(lib("libz.so.1", &[])),
        ),
    );
    let mut inp = input(&[("/app", info(Some(LD), &["libz.so.1"]))]);
    inp.from_builder = true;
    let (r, _) = run(&inp, &builder, &empty());
    assert!(r.from_builder.contains(&(
        "/usr/lib/libz.so.1".to_string(),
        "/usr/lib/libz.so.1".to_string()
    )));
}

#[test]
fn what_the_builder_lacks_too_is_missing() {
    let mut inp = input(&[("/app", info(Some(LD), &["libnope.so.3", "libc.so.6"]))]);
    inp.from_builder = true;
    let (r, _) = run(&inp, &FakeImage::debian(), &empty());
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].name, "libnope.so.3");
    assert_eq!(r.from_builder.len(), 2, "{:?}", r.from_builder);
}

#[test]
fn symlink_loops_end() {
    let mut builder = empty();
    builder.link(
        "/lib/x86_64-linux-gnu/libloop.so",
        "/lib/x86_64-linux-gnu/libloop.so",
    );
    let mut inp = input(&[("/app", info(None, &["libloop.so"]))]);
    inp.from_builder = true;
    let (r, _) = run(&inp, &builder, &empty());
    assert_eq!(r.missing[0].name, "libloop.so");
}

#[test]
fn paths_normalise() {
    assert_eq!(normalise("/a/./b/../c/"), "/a/c");
    assert_eq!(normalise("/../x"), "/x");
    assert_eq!(parent("/app"), "/");
    assert_eq!(parent("/usr/bin/app"), "/usr/bin");
}

#[test]
fn search_paths_keep_every_byte_and_never_collide() {
    for bytes in [
        &b"/caf\xe9/app"[..],
        b"/caf\\xe9/app",
        "/\u{10FF41}/x".as_bytes(),
        b"/\xf4\x8f\xbd\x81/x",
        b"/a\nb/c",
        b"/plain/lib",
    ] {
        let text = search_path(bytes);
        assert_eq!(
            std::os::unix::ffi::OsStrExt::as_bytes(exact_path(&text).as_os_str()),
            bytes,
            "{text:?}"
        );
    }
    assert_ne!(search_path(b"/caf\xe9"), search_path(b"/caf\\xe9"));
    assert_eq!(search_path(b"/plain/lib"), "/plain/lib");
    assert_eq!(
        display_search_path(&search_path(b"/caf\xe9/app")),
        "/caf\\xe9/app"
    );
}

#[test]
fn origin_in_a_folder_whose_name_is_not_utf8_finds_the_library_beside_it() {
    let app = search_path(b"/caf\xe9/bin/app");
    let lib_path = search_path(b"/caf\xe9/lib/libfoo.so");
    let mut app_info = info(Some(LD), &["libfoo.so"]);
    app_info.runpath = vec!["$ORIGIN/../lib".into()];
    let mut input = input(&[
        (app.as_str(), app_info),
        (lib_path.as_str(), lib("libfoo.so", &[])),
    ]);
    input.empty_base = true;
    input.from_builder = false;
    let facts = Facts::default();
    let resolution = resolve(&input, &facts).expect("no question on scratch");
    let missing: Vec<&str> = resolution.missing.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(missing, [LD], "libfoo.so is found beside the artifact");
}
