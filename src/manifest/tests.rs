//! Loading and checking whole manifests: what is accepted, and where each problem points.

use std::path::Path;

use crate::manifest::vars::Overrides;
use crate::manifest::{
    parse_bytes_with, Command, Diagnostic, Error, LoadedManifest, Result, MAX_MANIFEST_BYTES,
};

fn parse(path: &Path, source: String) -> Result<LoadedManifest> {
    parse_bytes_with(path, source.into_bytes(), &Overrides::default())
}

const GOOD: &str = r#"
[builder]
image = "gcc:local"
run = "gcc -static -o /out/hello hello.c"

[[mount]]
source = "."
target = "/src"

[artifacts]
include = ["hello"]

[runtime]
entrypoint = ["/hello"]
expose = [8080, "53/udp"]
"#;

fn errors(src: &str) -> Vec<Diagnostic> {
    match parse(Path::new("dockception.toml"), src.to_string()) {
        Err(Error::Invalid(d)) => d,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("manifest was accepted"),
    }
}

#[test]
fn a_malformed_warm_duration_points_at_its_value() {
    let src = GOOD.replace("run = ", "warm = \"ten minutes\"\nrun = ");
    let found = errors(&src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].to_string().contains("builder.warm"),
        "{}",
        found[0]
    );
    assert_eq!((found[0].line, found[0].column), (4, 8));
}

#[test]
fn a_reuse_limit_is_a_size_and_a_bad_one_points_at_its_value() {
    for good in ["\"2 GiB\"", "\"500 MB\"", "0", "1048576"] {
        let src = GOOD.replace("run = ", &format!("reuse_limit = {good}\nrun = "));
        parse(Path::new("dockception.toml"), src).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, why) in [
        ("\"lots\"", "is not a size"),
        ("\"2 XB\"", "unknown size unit"),
        ("1.5", "not a whole number of bytes"),
        ("-1", "not a whole number of bytes"),
    ] {
        let src = GOOD.replace("run = ", &format!("reuse_limit = {bad}\nrun = "));
        let found = errors(&src);
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        let text = found[0].to_string();
        assert!(
            text.contains("builder.reuse_limit") && text.contains(why),
            "{text}"
        );
        assert_eq!((found[0].line, found[0].column), (4, 15), "{bad}");
    }
}

#[test]
fn a_good_manifest_loads_with_defaults() {
    let loaded = parse(Path::new("dockception.toml"), GOOD.to_string()).expect("loads");
    let m = loaded.manifest;
    let artifacts = m.artifacts.as_ref().expect("artifacts");
    assert_eq!(artifacts.from.get_ref(), "/out");
    assert_eq!(artifacts.dest.get_ref(), "/");
    let runtime = m.runtime.as_ref().expect("runtime");
    assert_eq!(runtime.base.get_ref(), "scratch");
    assert!(m.mounts[0].read_only);
    assert_eq!(
        m.builder.as_ref().expect("builder").run.get_ref(),
        &Command::Shell("gcc -static -o /out/hello hello.c".into())
    );
    assert_eq!(runtime.expose.len(), 2);
}

#[test]
fn unknown_keys_are_rejected_at_their_spot() {
    let src = GOOD.replace("[[mount]]\n", "[[mount]]\nsorce = \"x\"\n");
    let d = errors(&src);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].message, "unknown key `sorce` in `mount[0]`",
        "{}",
        d[0]
    );
    assert_eq!(d[0].help.as_deref(), Some("did you mean `source`?"));
    assert_eq!((d[0].line, d[0].column), (7, 1));
}

#[test]
fn syntax_errors_name_line_and_column() {
    let d = errors("[builder\nimage = 1\n");
    assert_eq!(d[0].line, 1);
    assert!(d[0].to_string().starts_with("dockception.toml:1:"));
}

#[test]
fn all_semantic_errors_are_collected() {
    let src = r#"
[builder]
image = "gcc:local"
run = []
workdir = "src"

[[mount]]
source = "."
target = "/src"

[[mount]]
source = "other"
target = "/src/"

[artifacts]
include = []
exclude = ["../etc/*"]
dest = "/app/../.."
"#;
    let d = errors(src);
    let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(d.len(), 6, "{messages:#?}");
    assert!(messages[0].contains("empty list"));
    assert!(messages[1].contains("builder.workdir must be an absolute path"));
    assert!(messages[2].contains("two mounts on /src (the first is at line 9)"));
    assert!(messages[3].contains("include is empty"));
    assert!(messages[4].contains("reaches outside"));
    assert!(messages[5].contains("must not contain `..`"));
    assert_eq!((d[1].line, d[1].column), (5, 11));
}

#[test]
fn bad_ports_and_globs_are_reported() {
    let src = GOOD
        .replace("[8080, \"53/udp\"]", "[\"53/icmp\"]")
        .replace("[\"hello\"]", "[\"a[\"]");
    let d = errors(&src);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(d[0].message.starts_with("invalid glob"));
    assert!(d[1].message.starts_with("invalid port"));
}

#[test]
fn secrets_from_the_host_are_checked() {
    let src = GOOD.replace(
        "run = \"gcc",
        "env = { TOKEN = \"x\" }\nenv_from_host = [\"TOKEN\", \"9LIVES\", \"NPM_TOKEN\", \"NPM_TOKEN\"]\nsecrets = { \"../x\" = \"a\", npmrc = \"\" }\nrun = \"gcc",
    );
    let d = errors(&src);
    let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "TOKEN is both in builder.env and builder.env_from_host",
            "\"9LIVES\" is not an environment variable name",
            "NPM_TOKEN is listed twice in builder.env_from_host",
            "secret name \"../x\" cannot be a file name in /run/secrets",
            "secret npmrc names no file",
        ]
    );
    let good = GOOD.replace(
        "run = \"gcc",
        "env_from_host = [\"NPM_TOKEN\"]\nsecrets = { npmrc = \"~/.npmrc\" }\nrun = \"gcc",
    );
    let loaded = parse(Path::new("dockception.toml"), good).expect("loads");
    assert_eq!(
        loaded
            .manifest
            .builder
            .as_ref()
            .expect("builder")
            .env_from_host[0]
            .get_ref(),
        "NPM_TOKEN"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let bytes = b"[builder]\nimage = \"caf\xe9\"\n".to_vec();
    let Err(Error::Invalid(d)) =
        parse_bytes_with(Path::new("m.toml"), bytes, &Overrides::default())
    else {
        panic!("expected a manifest error");
    };
    assert_eq!((d[0].line, d[0].column), (2, 13));
    assert_eq!(
        d[0].message,
        "the manifest is not valid UTF-8 (byte 0xe9 at offset 22)"
    );
}

#[test]
fn huge_manifests_are_refused() {
    let big = vec![b'#'; MAX_MANIFEST_BYTES as usize + 1];
    let e = parse_bytes_with(Path::new("m.toml"), big, &Overrides::default()).expect_err("too big");
    assert!(matches!(e, Error::ManifestTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_at_its_spot_not_a_crash() {
    for (open, close) in [("[", "]"), ("{a=", "}")] {
        let src = format!("a = {}1{}\n", open.repeat(100_000), close.repeat(100_000));
        let d = errors(&src);
        assert_eq!(d.len(), 1);
        assert!(d[0].message.contains("recurs"), "{}", d[0].message);
        assert_eq!(d[0].line, 1);
    }
    let d = errors(&format!("[{}]\n", vec!["a"; 100_000].join(".")));
    assert!(d[0].message.contains("recursion"), "{}", d[0].message);
}

#[test]
fn enormous_globs_load_and_broken_ones_are_cut_in_messages() {
    let alternatives: Vec<String> = (0..50_000).map(|i| format!("f{i}")).collect();
    let huge = format!("{{{}}}", alternatives.join(","));
    let src = GOOD.replace("[\"hello\"]", &format!("[\"{huge}\", \"**/*.so\"]"));
    assert!(src.len() > 300_000);
    let loaded = parse(Path::new("dockception.toml"), src).expect("loads");
    assert_eq!(
        loaded
            .manifest
            .artifacts
            .as_ref()
            .expect("artifacts")
            .include
            .get_ref()
            .len(),
        2
    );

    let broken = format!("{{{}", alternatives.join(","));
    let d = errors(&GOOD.replace("[\"hello\"]", &format!("[\"{broken}\"]")));
    assert_eq!(d.len(), 1);
    assert!(
        d[0].message.starts_with("invalid glob \"{f0,f1,"),
        "{}",
        d[0].message
    );
    assert!(
        d[0].message
            .ends_with("unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"),
        "{}",
        d[0].message
    );
    assert!(d[0].to_string().len() < 1_000);
}
