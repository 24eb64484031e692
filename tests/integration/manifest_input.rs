//! Bad input never crashes the manifest loader: any byte string either loads (and plans) or
//! gives diagnostics whose line and column lie inside that input. Inputs the fuzzer
//! (`fuzz/`, `cargo fuzz run manifest`) found interesting are replayed here as regressions.

use std::path::{Path, PathBuf};

use dockception::error::{Error, ManifestError};
use dockception::Options;
use proptest::prelude::*;

/// Load `bytes` as a manifest in `dir` and plan it; panic when a diagnostic points outside the
/// input or an error other than a manifest error comes out.
fn load_or_locate(dir: &Path, bytes: &[u8]) {
    let path = dir.join("dockception.toml");
    let result = Options::from_bytes(&path, bytes.to_vec()).load();
    match result {
        Ok(_) => {}
        Err(e) if !e.diagnostics().is_empty() => {
            let diagnostics = e.diagnostics();
            assert!(!diagnostics.is_empty(), "an error without a diagnostic");
            let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
            for d in diagnostics {
                assert!(
                    (1..=lines.len()).contains(&d.line),
                    "line {} of {} for {:?}",
                    d.line,
                    lines.len(),
                    d.message
                );
                let line = String::from_utf8_lossy(lines[d.line - 1]);
                let chars = line.chars().count();
                assert!(
                    (1..=chars + 1).contains(&d.column),
                    "column {} on a line of {chars} characters for {:?}",
                    d.column,
                    d.message
                );
                assert!(d.width >= 1);
                let shown = d.to_string();
                assert!(shown.contains(&d.message));
            }
        }
        Err(e @ Error::Manifest(ManifestError::ManifestTooLarge { limit, .. })) => {
            assert!(bytes.len() as u64 > limit, "{e}");
        }
        Err(other) => panic!("not a manifest error: {other}"),
    }
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("src")).expect("mkdir");
    dir
}

/// Pieces of real manifests, so generated inputs get past the first byte.
const TOKENS: &[&str] = &[
    "[builder]",
    "[[mount]]",
    "[[cache]]",
    "[artifacts]",
    "[runtime]",
    "[image]",
    "[builder.env]",
    "[builder.secrets]",
    "image = \"gcc:local\"",
    "run = \"make\"",
    "run = [\"make\", \"-j2\"]",
    "run = []",
    "workdir = \"/src\"",
    "workdir = \"src\"",
    "user = \"0:0\"",
    "env_from_host = [\"TOKEN\"]",
    "env_from_host = [\"9\"]",
    "token = \"src\"",
    "source = \".\"",
    "source = \"src\"",
    "target = \"/src\"",
    "target = \"/out\"",
    "read_only = false",
    "include = [\"app\"]",
    "include = []",
    "include = [\"../x\"]",
    "include = [\"{a,\"]",
    "exclude = [\"**/*.o\"]",
    "from = \"/out\"",
    "dest = \"/app/..\"",
    "base = \"scratch\"",
    "entrypoint = [\"/app\"]",
    "expose = [8080, \"53/udp\", \"x/icmp\"]",
    "expose = [70000]",
    "labels = { a = \"b\" }",
    "tags = [\"a:b\"]",
    "= ",
    "\"",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "=",
    "#",
    "\\u00e9",
    "\\",
    "é",
    "\u{1F600}",
    "\r",
    "\t",
    "\n",
    "\n",
    "\n",
];

fn toml_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_load_or_point_inside_the_input(
        bytes in prop_oneof![any::<Vec<u8>>(), toml_like()]
    ) {
        let dir = project();
        load_or_locate(dir.path(), &bytes);
    }
}

#[test]
fn pathological_inputs_are_handled_or_refused_clearly() {
    let dir = project();
    let deep_array = format!("a = {}{}", "[".repeat(200_000), "]".repeat(200_000));
    let deep_table = format!("[{}]", vec!["a"; 100_000].join("."));
    let many_keys: String = (0..30_000).map(|i| format!("k{i} = {i}\n")).collect();
    // Each case has one outcome: the loader refuses it with diagnostics inside the input
    // (the nesting ones at their spot, not as a crash or an unlocated error), or as too large.
    let diagnosed = |needle: &'static str| Outcome::Diagnosed(needle);
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("empty", Vec::new(), diagnosed("describes no image")),
        ("a NUL byte", b"\0".to_vec(), diagnosed("expected `=`")),
        (
            "a lone UTF-8 lead byte at the end",
            b"[builder]\n\xe2".to_vec(),
            diagnosed("not valid UTF-8"),
        ),
        (
            "a BOM",
            "\u{feff}[builder]".as_bytes().to_vec(),
            diagnosed("missing key `image`"),
        ),
        (
            "CR line ends",
            b"[builder]\r\nimage = 1\r\n".to_vec(),
            diagnosed("missing key `run`"),
        ),
        (
            "deep arrays",
            deep_array.into_bytes(),
            diagnosed("recursion"),
        ),
        (
            "deep tables",
            deep_table.into_bytes(),
            diagnosed("recursion limit"),
        ),
        (
            "many keys",
            many_keys.into_bytes(),
            diagnosed("unknown key `k0`"),
        ),
        (
            "one line of a megabyte",
            format!(
                "# {}",
                "x".repeat(dockception::MAX_MANIFEST_BYTES as usize - 10)
            )
            .into_bytes(),
            diagnosed("describes no image"),
        ),
        (
            "over the size limit",
            vec![b'\n'; dockception::MAX_MANIFEST_BYTES as usize + 1],
            Outcome::TooLarge,
        ),
    ];
    for (what, bytes, expected) in cases {
        let outcome = std::panic::catch_unwind(|| load_or_locate(dir.path(), &bytes));
        assert!(outcome.is_ok(), "{what} was not handled");
        let err = Options::from_bytes(dir.path().join("dockception.toml"), bytes)
            .load()
            .err();
        match (expected, &err) {
            (Outcome::Diagnosed(needle), Some(e)) if !e.diagnostics().is_empty() => {
                let text = e.to_string();
                assert!(text.contains(needle), "{what}: {text}");
            }
            (Outcome::TooLarge, Some(Error::Manifest(ManifestError::ManifestTooLarge { .. }))) => {}
            (_, err) => panic!("{what}: expected {expected:?}, got {err:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Refused with diagnostics inside the input; the error's text contains this.
    Diagnosed(&'static str),
    /// Refused before it is read whole.
    TooLarge,
}

#[test]
fn a_manifest_file_over_the_limit_is_refused_before_it_is_read_whole() {
    let dir = project();
    let path = dir.path().join("dockception.toml");
    let file = std::fs::File::create(&path).expect("create");
    // Sparse: 10 GiB on paper, nothing on disk; the loader must not try to read it all.
    file.set_len(10 * 1024 * 1024 * 1024).expect("set_len");
    let err = Options::new(&path).load().expect_err("refused");
    assert!(
        matches!(err, Error::Manifest(ManifestError::ManifestTooLarge { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("help: check that -f names the manifest"),
        "{err}"
    );
}

/// Inputs kept from fuzzing (`tests/fixtures/fuzz/`): each once crashed or hung the loader or
/// the planner, or is a seed worth keeping.
#[test]
fn fuzz_findings_stay_fixed() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let dir = project();
    let mut count = 0;
    for entry in std::fs::read_dir(&fixtures).expect("tests/fixtures/fuzz") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let outcome = std::panic::catch_unwind(|| load_or_locate(dir.path(), &bytes));
        assert!(outcome.is_ok(), "{} fails again", path.display());
        count += 1;
    }
    assert!(count > 0, "no fuzz fixtures in {}", fixtures.display());
}
