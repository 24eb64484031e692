//! `dockception init`: a commented starter manifest for the project in a folder, chosen from
//! the files that are there (Go with or without `go.mod`, a Rust crate or workspace, C with
//! CMake, a Makefile or bare sources, Node with a build script, JVM, or a generic one).

use std::io::Write;
use std::path::Path;

use crate::fsutil::FromIo as _;
use crate::manifest::{Error, Result};

/// The kinds of project `init` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `go.mod`.
    Go,
    /// `main.go` and no `go.mod`: built in GOPATH mode, as the 2017 builder-pattern article's
    /// own repository is.
    GoWithoutModule,
    /// `Cargo.toml` with a `[package]`.
    Rust,
    /// `Cargo.toml` with a `[workspace]` and no `[package]`: the first member's binary.
    RustWorkspace,
    /// `Makefile`.
    C,
    /// `CMakeLists.txt`: built out of tree.
    CMake,
    /// `*.c` and no build file: every C file compiled into one static binary.
    CSources,
    /// `package.json` with a `build` script.
    Node,
    /// `pom.xml` or `build.gradle(.kts)`: a jar on a JRE.
    Jvm,
    /// Anything else.
    Generic,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Go => "Go",
            Kind::GoWithoutModule => "Go (no go.mod)",
            Kind::Rust => "Rust",
            Kind::RustWorkspace => "Rust workspace",
            Kind::C => "C/Make",
            Kind::CMake => "C/CMake",
            Kind::CSources => "C",
            Kind::Node => "Node",
            Kind::Jvm => "JVM",
            Kind::Generic => "generic",
        })
    }
}

/// Decide the kind from the names of the files in the project's folder (what the names
/// alone tell: a Cargo workspace and a Node build script need the files' contents, see
/// [`detect_in`]).
pub fn detect(file_names: &[String]) -> Kind {
    let has = |name: &str| file_names.iter().any(|f| f == name);
    if has("go.mod") {
        Kind::Go
    } else if has("main.go") {
        Kind::GoWithoutModule
    } else if has("Cargo.toml") {
        Kind::Rust
    } else if has("pom.xml") || has("build.gradle") || has("build.gradle.kts") {
        Kind::Jvm
    } else if has("CMakeLists.txt") {
        Kind::CMake
    } else if has("Makefile") || has("makefile") || has("GNUmakefile") {
        Kind::C
    } else if file_names.iter().any(|f| f.ends_with(".c")) {
        Kind::CSources
    } else {
        Kind::Generic
    }
}

/// Decide the kind of the project in `folder` from its files' names and, for `Cargo.toml` and
/// `package.json`, what they say.
pub fn detect_in(folder: &Path, file_names: &[String]) -> Kind {
    let read = |name: &str| std::fs::read_to_string(folder.join(name)).ok();
    match detect(file_names) {
        Kind::Rust => {
            let table = read("Cargo.toml").and_then(|t| t.parse::<toml::Table>().ok());
            match table {
                Some(t) if t.contains_key("workspace") && !t.contains_key("package") => {
                    Kind::RustWorkspace
                }
                _ => Kind::Rust,
            }
        }
        Kind::CMake | Kind::C | Kind::CSources | Kind::Generic
            if has_build_script(read("package.json").as_deref()) =>
        {
            Kind::Node
        }
        kind => kind,
    }
}

/// Whether `package.json`'s text has a `scripts.build`.
fn has_build_script(package_json: Option<&str>) -> bool {
    package_json
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .is_some_and(|v| v["scripts"]["build"].is_string())
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
        Kind::GoWithoutModule => &GO_WITHOUT_MODULE,
        Kind::Rust => &RUST,
        Kind::RustWorkspace => &RUST_WORKSPACE,
        Kind::C => &C,
        Kind::CMake => &CMAKE,
        Kind::CSources => &C_SOURCES,
        Kind::Node => &NODE,
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
run     = "go build -trimpath -buildvcs=false -ldflags='-s -w' -o /out/{name} ."
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

const GO_WITHOUT_MODULE: Template = Template {
    builder: r#"[builder]
image   = "golang:1.22"          # any image with the Go toolchain
workdir = "/src"
# No go.mod: GOPATH mode, the standard library only (add a go.mod for dependencies).
run     = "go build -trimpath -buildvcs=false -ldflags='-s -w' -o /out/{name} ."
env     = { CGO_ENABLED = "0", GO111MODULE = "off", GOPATH = "/tmp/go", GOCACHE = "/cache/go-build" }
"#,
    rest: r#"
[[cache]]                        # kept between builds: rebuilds are incremental
target = "/cache/go-build"

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

const RUST_WORKSPACE: Template = Template {
    builder: r#"[builder]
image   = "rust:1-bookworm"      # any image with cargo
workdir = "/src"
# The workspace member {name}; name another package with -p to ship its binary.
run     = "cargo build --release --locked -p {name} --target-dir /cache/target && cp /cache/target/release/{name} /out/"
env     = { CARGO_HOME = "/cache/cargo" }
"#,
    rest: RUST.rest,
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

const CMAKE: Template = Template {
    builder: r#"[builder]
image   = "gcc:13"               # any image with a C toolchain and CMake
workdir = "/src"
# Out of tree, in the container: the sources stay read-only.
run     = "cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXE_LINKER_FLAGS=-static && cmake --build /tmp/build && cp /tmp/build/{name} /out/"
"#,
    rest: r#"
[artifacts]
include = ["{name}"]             # the executable your CMakeLists.txt adds

[runtime]
base       = "scratch"           # a static binary needs nothing else
entrypoint = ["/{name}"]
user       = "65534:65534"
"#,
};

const C_SOURCES: Template = Template {
    builder: r#"[builder]
image   = "gcc:13"               # any image with a C toolchain
workdir = "/src"
run     = "gcc -O2 -static -s -o /out/{name} *.c"
"#,
    rest: r#"
[artifacts]
include = ["{name}"]

[runtime]
base       = "scratch"           # a static binary needs nothing else
entrypoint = ["/{name}"]
user       = "65534:65534"
"#,
};

const NODE: Template = Template {
    builder: r#"[builder]
image   = "node:20-bookworm"
workdir = "/src"
# The sources are read-only: copy them (without node_modules) and build there; then keep the
# production dependencies and what `npm run build` made (dist/; change it if yours differs).
run     = "mkdir -p /tmp/app && tar -C /src --exclude=./node_modules --exclude=./.dockception -cf - . | tar -C /tmp/app -xf - && cd /tmp/app && npm ci && npm run build && npm prune --omit=dev && cp -r package.json node_modules dist /out/"
env     = { npm_config_cache = "/cache/npm" }
"#,
    rest: r#"
[[cache]]                        # npm's download cache survives between builds
target = "/cache/npm"

[artifacts]
include = ["package.json", "node_modules", "dist"]
dest    = "/app"

[runtime]
base       = "gcr.io/distroless/nodejs20-debian12"
entrypoint = ["/nodejs/bin/node", "/app/dist/index.js"]
workdir    = "/app"
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
    let kind = detect_in(folder, &names);
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

/// The package name for Rust (a workspace's first member with one), Node's `name`, else the
/// folder's name, made safe for an image tag.
fn project_name(folder: &Path, kind: Kind) -> String {
    let from_files = match kind {
        Kind::Rust => package_name(folder),
        Kind::RustWorkspace => first_member_name(folder),
        Kind::Node => std::fs::read_to_string(folder.join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| {
                v["name"]
                    .as_str()
                    .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
            }),
        _ => None,
    };
    let raw = from_files.unwrap_or_else(|| {
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

/// `[package] name` of the `Cargo.toml` in `folder`.
fn package_name(folder: &Path) -> Option<String> {
    let text = std::fs::read_to_string(folder.join("Cargo.toml")).ok()?;
    let table = text.parse::<toml::Table>().ok()?;
    Some(table.get("package")?.get("name")?.as_str()?.to_string())
}

/// The package name of the workspace's first member that has one (`members` entries ending
/// in `/*` list that folder).
fn first_member_name(folder: &Path) -> Option<String> {
    let text = std::fs::read_to_string(folder.join("Cargo.toml")).ok()?;
    let table = text.parse::<toml::Table>().ok()?;
    let members = table.get("workspace")?.get("members")?.as_array()?;
    for member in members.iter().filter_map(|m| m.as_str()) {
        let found = match member.strip_suffix("/*") {
            Some(parent) => {
                let mut dirs: Vec<_> = std::fs::read_dir(folder.join(parent))
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                dirs.sort();
                dirs.iter().find_map(|d| package_name(d))
            }
            None => package_name(&folder.join(member)),
        };
        if found.is_some() {
            return found;
        }
    }
    None
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
        assert_eq!(detect(&names(&["Makefile", "hello.c"])), Kind::C);
        assert_eq!(detect(&names(&["CMakeLists.txt", "main.c"])), Kind::CMake);
        assert_eq!(detect(&names(&["hello.c"])), Kind::CSources);
        assert_eq!(detect(&names(&["main.go"])), Kind::GoWithoutModule);
        assert_eq!(detect(&names(&["pom.xml"])), Kind::Jvm);
        assert_eq!(detect(&names(&["build.gradle.kts"])), Kind::Jvm);
        assert_eq!(detect(&names(&["README"])), Kind::Generic);
    }

    #[test]
    fn every_starter_is_a_valid_manifest() {
        for kind in ALL {
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

    const ALL: [Kind; 10] = [
        Kind::Go,
        Kind::GoWithoutModule,
        Kind::Rust,
        Kind::RustWorkspace,
        Kind::C,
        Kind::CMake,
        Kind::CSources,
        Kind::Node,
        Kind::Jvm,
        Kind::Generic,
    ];

    #[test]
    fn contents_tell_a_workspace_and_a_node_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        let kind = |list: &[&str]| detect_in(dir.path(), &names(list));
        write("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\n");
        write("crates/b-tool/Cargo.toml", "[package]\nname = \"b-tool\"\n");
        write("crates/a-cli/Cargo.toml", "[package]\nname = \"a-cli\"\n");
        assert_eq!(kind(&["Cargo.toml", "crates"]), Kind::RustWorkspace);
        assert_eq!(project_name(dir.path(), Kind::RustWorkspace), "a-cli");
        write("Cargo.toml", "[package]\nname = \"root\"\n[workspace]\n");
        assert_eq!(
            kind(&["Cargo.toml"]),
            Kind::Rust,
            "a package with a workspace"
        );
        write(
            "package.json",
            r#"{"name": "@acme/web", "scripts": {"build": "tsc"}}"#,
        );
        assert_eq!(kind(&["package.json"]), Kind::Node);
        assert_eq!(project_name(dir.path(), Kind::Node), "web");
        write(
            "package.json",
            r#"{"name": "web", "scripts": {"start": "node ."}}"#,
        );
        assert_eq!(kind(&["package.json"]), Kind::Generic, "no build script");
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
