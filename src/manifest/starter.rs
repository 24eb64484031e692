//! `dockception init`: a commented starter manifest for the project in a folder, chosen from
//! the files that are there (Go, Rust, C/Make, JVM, or a generic one).

use std::io::Write;
use std::path::Path;

use crate::fsutil::FromIo as _;
use crate::manifest::{Error, Result};

/// The kinds of project `init` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `go.mod`.
    Go,
    /// `Cargo.toml`.
    Rust,
    /// `Makefile` or `*.c`.
    C,
    /// `pom.xml` or `build.gradle(.kts)`: a jar on a JRE.
    Jvm,
    /// Anything else.
    Generic,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Go => "Go",
            Kind::Rust => "Rust",
            Kind::C => "C/Make",
            Kind::Jvm => "JVM",
            Kind::Generic => "generic",
        })
    }
}

/// Decide the kind from the names of the files in the project's folder.
pub fn detect(file_names: &[String]) -> Kind {
    let has = |name: &str| file_names.iter().any(|f| f == name);
    if has("go.mod") {
        Kind::Go
    } else if has("Cargo.toml") {
        Kind::Rust
    } else if has("pom.xml") || has("build.gradle") || has("build.gradle.kts") {
        Kind::Jvm
    } else if has("Makefile") || has("makefile") || file_names.iter().any(|f| f.ends_with(".c")) {
        Kind::C
    } else {
        Kind::Generic
    }
}

/// The starter manifest for a project of `kind` named `name` (used for the tag and binary).
fn starter(kind: Kind, name: &str) -> String {
    let header = format!(
        "# dockception manifest for {name} ({kind} project), written by `dockception init`.\n\
         # Build with `dockception build`; see what it would do with `dockception plan`.\n\
         # Editor completion: `dockception schema > dockception.schema.json`, then make the first\n\
         # line `#:schema ./dockception.schema.json` (Even Better TOML / taplo read it).\n\
         # Strings may use ${{VAR}} and ${{VAR:-default}}: [vars], DOCKCEPTION_VAR_VAR, --set VAR=...\n\n\
         [vars]\nTAG = \"latest\"\n\n"
    );
    let template = template(kind);
    let body = [template.builder, SOURCES, template.rest, IMAGE].concat();
    header + &body.replace("{name}", name)
}

/// What a starter says for one kind of project; `{name}` stands for the project's name. Every
/// starter mounts the sources at `/src` between the two, and tags the image last.
struct Template {
    /// The `[builder]` table.
    builder: &'static str,
    /// What follows the sources' mount: caches, `[artifacts]` and `[runtime]`.
    rest: &'static str,
}

fn template(kind: Kind) -> &'static Template {
    match kind {
        Kind::Go => &GO,
        Kind::Rust => &RUST,
        Kind::C => &C,
        Kind::Jvm => &JVM,
        Kind::Generic => &GENERIC,
    }
}

const SOURCES: &str = r#"
[[mount]]                        # your sources, read-only: never copied into a layer
source = "."
target = "/src"
"#;

const IMAGE: &str = r#"
[image]
tags = ["{name}:${TAG}"]
"#;

const GO: Template = Template {
    builder: r#"[builder]
image   = "golang:1.22"          # any image with the Go toolchain
workdir = "/src"
run     = "go build -trimpath -ldflags='-s -w' -o /out/{name} ."
env     = { CGO_ENABLED = "0", GOCACHE = "/cache/go-build", GOMODCACHE = "/cache/mod" }
"#,
    rest: r#"
[[cache]]                        # kept between builds: rebuilds are incremental
target = "/cache/go-build"

[[cache]]
target = "/cache/mod"

[artifacts]
include = ["{name}"]             # globs relative to /out, the builder's output folder

[runtime]
base       = "scratch"           # a static Go binary needs nothing else
entrypoint = ["/{name}"]
user       = "65534:65534"
"#,
};

const RUST: Template = Template {
    builder: r#"[builder]
image   = "rust:1-bookworm"      # any image with cargo
workdir = "/src"
run     = "cargo build --release --locked --target-dir /cache/target && cp /cache/target/release/{name} /out/"
env     = { CARGO_HOME = "/cache/cargo" }
"#,
    rest: r#"
[[cache]]                        # the registry and the target dir survive between builds
target = "/cache/cargo"

[[cache]]
target = "/cache/target"

[artifacts]
include = ["{name}"]

[runtime]
base       = "gcr.io/distroless/cc-debian12"   # glibc for a default (dynamic) Rust binary
entrypoint = ["/{name}"]
user       = "65534:65534"
"#,
};

const C: Template = Template {
    builder: r#"[builder]
image   = "gcc:13"               # any image with a C toolchain
workdir = "/src"
run     = "make CFLAGS='-O2' LDFLAGS='-static' && cp {name} /out/"
"#,
    rest: r#"# make writes objects next to the sources; if yours does, mount read-write (read_only = false)
# or build out of tree into /out.

[artifacts]
include = ["{name}"]

[runtime]
base       = "scratch"           # a static binary needs nothing else
entrypoint = ["/{name}"]
user       = "65534:65534"
"#,
};

const JVM: Template = Template {
    builder: r#"[builder]
image   = "maven:3-eclipse-temurin-21"
workdir = "/src"
run     = "mvn -q -Dmaven.repo.local=/cache/m2 -DbuildDirectory=/tmp/target package && cp /tmp/target/*.jar /out/"
"#,
    rest: r#"
[[cache]]                        # the local Maven repository survives between builds
target = "/cache/m2"

[artifacts]
include = ["*.jar"]
dest    = "/app"

[runtime]
base       = "eclipse-temurin:21-jre"
entrypoint = ["sh", "-c", "exec java -jar /app/*.jar"]
user       = "65534:65534"
"#,
};

const GENERIC: Template = Template {
    builder: r#"[builder]
image   = "debian:bookworm"      # the image with your build tools
workdir = "/src"
run     = "echo 'replace with your build command; write the results into /out' && false"
"#,
    rest: r#"
[artifacts]
include = ["*"]                  # globs relative to /out

[runtime]
base = "scratch"                 # or a small image such as busybox
# entrypoint = ["/{name}"]
"#,
};

/// Write the starter manifest for the project in `folder` to `manifest` (relative to the
/// current folder), refusing to overwrite anything. Returns the kind it chose.
pub fn write_starter(folder: &Path, manifest: &Path) -> Result<Kind> {
    let names: Vec<String> = std::fs::read_dir(folder)
        .map_err(|e| Error::io("listing", folder, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let kind = detect(&names);
    let name = project_name(folder, kind);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(manifest)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage {
                    message: format!(
                        "{} already exists; init never overwrites it",
                        manifest.display()
                    ),
                    help: "edit it, or write the starter elsewhere with -f OTHER.toml".into(),
                }
            } else {
                Error::io("creating", manifest, e)
            }
        })?;
    file.write_all(starter(kind, &name).as_bytes())
        .map_err(|e| Error::io("writing", manifest, e))?;
    Ok(kind)
}

/// The package name for Rust, else the folder's name, made safe for an image tag.
fn project_name(folder: &Path, kind: Kind) -> String {
    let from_cargo = (kind == Kind::Rust)
        .then(|| std::fs::read_to_string(folder.join("Cargo.toml")).ok())
        .flatten()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string));
    let raw = from_cargo.unwrap_or_else(|| {
        folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into())
    });
    let safe: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let safe = safe.trim_matches(|c| c == '-' || c == '_').to_string();
    if safe.is_empty() {
        "app".into()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_the_project_kind() {
        assert_eq!(detect(&names(&["go.mod", "main.go"])), Kind::Go);
        assert_eq!(detect(&names(&["Cargo.toml", "src"])), Kind::Rust);
        assert_eq!(detect(&names(&["Makefile"])), Kind::C);
        assert_eq!(detect(&names(&["hello.c"])), Kind::C);
        assert_eq!(detect(&names(&["pom.xml"])), Kind::Jvm);
        assert_eq!(detect(&names(&["build.gradle.kts"])), Kind::Jvm);
        assert_eq!(detect(&names(&["README"])), Kind::Generic);
    }

    #[test]
    fn every_starter_is_a_valid_manifest() {
        for kind in [Kind::Go, Kind::Rust, Kind::C, Kind::Jvm, Kind::Generic] {
            let text = starter(kind, "my-app");
            let loaded = crate::manifest::parse_bytes_with(
                Path::new("dockception.toml"),
                text.into_bytes(),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{kind} starter: {e}"));
            assert_eq!(loaded.vars["TAG"], "latest");
        }
    }

    #[test]
    fn init_refuses_to_overwrite_and_names_rust_binaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"Fancy_Tool\"\nversion = \"0.1.0\"\n",
        )
        .expect("write");
        let manifest = dir.path().join("dockception.toml");
        assert_eq!(
            write_starter(dir.path(), &manifest).expect("first"),
            Kind::Rust
        );
        let text = std::fs::read_to_string(&manifest).expect("read");
        assert!(text.contains("release/fancy_tool /out/"), "{text}");
        let err = write_starter(dir.path(), &manifest).expect_err("second");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&manifest).expect("read"), text);
    }
}
