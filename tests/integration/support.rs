//! Helpers for the tests that drive the real binary against the real Docker Engine. The docker
//! CLI is used only as an independent observer (run the image, inspect sizes, list leftovers).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_dockception");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether an engine answers and `images` exist. Without them the test is skipped with a printed
/// reason on a laptop, but fails under `CI=true`.
pub fn engine_with(images: &[&str]) -> bool {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let problem = match version {
        Err(e) => Some(format!("the docker CLI cannot run: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "no Docker Engine answers: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => images
            .iter()
            .find(|image| !image_exists(image))
            .map(|image| format!("the local image {image} is missing")),
    };
    match problem {
        None => true,
        Some(problem) if in_ci() => {
            panic!("CI=true and {problem}; run scripts/engine.sh before the tests")
        }
        Some(problem) => {
            eprintln!("SKIPPED: {problem} (run scripts/engine.sh to set it up)");
            false
        }
    }
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

pub fn docker_stdout(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run the dockception binary.
pub fn dockception(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("dockception runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tag unique to this test run; the image is removed when the guard drops.
pub struct TestImage(pub String);

impl TestImage {
    pub fn new(name: &str) -> TestImage {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TestImage(format!(
            "dockception-test/{name}:{}-{nanos}",
            std::process::id()
        ))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// A throwaway project folder whose name marks the containers of its runs. Under
/// `cargo xtask test` the name starts with the suite's run id (`DOCKCEPTION_TEST_RUN`), so the
/// xtask can check afterwards that this run left nothing behind. Dropped, it removes the warm
/// builders its builds left running (by design: `[builder] warm` is on by default), then the
/// folder.
pub fn project(prefix: &str) -> Project {
    let run = std::env::var("DOCKCEPTION_TEST_RUN")
        .ok()
        .filter(|r| !r.is_empty())
        .map(|r| format!("{r}-"))
        .unwrap_or_default();
    let dir = tempfile::Builder::new()
        .prefix(&format!("dcpt-{run}{prefix}-"))
        .tempdir()
        .expect("tempdir");
    Project { dir: Some(dir) }
}

/// A project folder of [`project`].
pub struct Project {
    dir: Option<tempfile::TempDir>,
}

impl Project {
    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("the folder").path()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            drop(ContainersOf(dir.path().to_path_buf()));
            drop(dir);
        }
    }
}

/// An output folder (`--out-dir`) for a build of a manifest in the repository, such as an
/// example's. Dropped, it removes the warm builders whose output mount is inside it (their
/// project is the example's, shared by other tests, so [`Project`] cannot find them), then the
/// folder.
pub fn out_folder() -> OutFolder {
    OutFolder {
        dir: Some(tempfile::tempdir().expect("tempdir")),
    }
}

/// A folder of [`out_folder`].
pub struct OutFolder {
    dir: Option<tempfile::TempDir>,
}

impl OutFolder {
    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("the folder").path()
    }
}

impl Drop for OutFolder {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let warm = docker(&["ps", "-aq", "--filter", "label=dockception.warm"]);
        for id in String::from_utf8_lossy(&warm.stdout).split_whitespace() {
            // A warm builder may end on its own meanwhile: a failed inspect lists nothing.
            let sources = docker(&[
                "inspect",
                "--format",
                "{{range .Mounts}}{{.Source}}\n{{end}}",
                id,
            ]);
            let sources = String::from_utf8_lossy(&sources.stdout);
            if sources
                .lines()
                .any(|s| Path::new(s).starts_with(dir.path()))
            {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        drop(dir);
    }
}

/// Write `files` (path, content) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
}

/// The environment variable that accepts new snapshots and generated files on purpose, like
/// rust-analyzer's `UPDATE_EXPECT=1`: `DOCKCEPTION_BLESS=1 cargo test --test integration`.
pub const BLESS: &str = "DOCKCEPTION_BLESS";

/// Whether this run accepts what it produces as the new snapshots (`DOCKCEPTION_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Compare `got` with the checked-in file at `path`. A file that differs or is missing is an
/// error naming it and how to accept the change, and is left as it was; only when `bless` is
/// it (re)written, and then it is no error.
pub fn check_snapshot(path: &Path, got: &str, bless: bool) -> Result<(), String> {
    let expected = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: cannot read it: {e}", path.display())),
    };
    if expected.as_deref() == Some(got) {
        return Ok(());
    }
    if bless {
        return std::fs::write(path, got)
            .map_err(|e| format!("{}: cannot write it: {e}", path.display()));
    }
    let how = format!("rerun with {BLESS}=1 to accept it, then review and commit the diff");
    Err(match expected {
        None => format!("{} does not exist; {how}\n--- got\n{got}", path.display()),
        Some(expected) => format!(
            "{} differs; {how}\n--- expected\n{expected}--- got\n{got}",
            path.display()
        ),
    })
}

/// Containers (any state) whose project label belongs to the project folder `dir`, but for
/// its warm builders, which builds leave running on purpose (see [`warm_builders_of`]).
pub fn containers_of(dir: &Path) -> Vec<String> {
    labelled_of(dir)
        .into_iter()
        .filter(|(_, warm)| !warm)
        .map(|(line, _)| line)
        .collect()
}

/// The warm builders (`dockception.warm` label, any state) of the project folder `dir`.
pub fn warm_builders_of(dir: &Path) -> Vec<String> {
    labelled_of(dir)
        .into_iter()
        .filter(|(_, warm)| *warm)
        .map(|(line, _)| line)
        .collect()
}

/// Every container (any state) of the project folder `dir`, warm builders too.
pub fn all_containers_of(dir: &Path) -> Vec<String> {
    labelled_of(dir).into_iter().map(|(line, _)| line).collect()
}

/// `NAME PROJECT` lines of the labelled containers of `dir`, and whether each is a warm builder.
fn labelled_of(dir: &Path) -> Vec<(String, bool)> {
    let name = slug(&dir.file_name().expect("name").to_string_lossy());
    let listed = docker_stdout(&[
        "ps",
        "-a",
        "--filter",
        "label=dockception",
        "--format",
        "{{.Names}} {{.Label \"dockception.project\"}} {{.Label \"dockception.warm\"}}",
    ]);
    in_project(&listed, &name)
}

/// The lines of `listed` (`docker ps` as [`labelled_of`] asks) of the project slug `name`.
fn in_project(listed: &str, name: &str) -> Vec<(String, bool)> {
    listed
        .lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            let (container, project) = (words.next()?, words.next()?);
            let warm = words.next().is_some_and(|w| !w.is_empty());
            project
                .starts_with(&format!("{name}-"))
                .then(|| (format!("{container} {project}"), warm))
        })
        .collect()
}

/// The slug dockception makes of a folder name for its project label.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A checksum of a tree: every path, type, mode and content, in sorted order.
pub fn tree_checksum(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mut hasher = Sha256::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.expect("walk");
        let meta = entry.metadata().expect("metadata");
        hasher.update(entry.path().to_string_lossy().as_bytes());
        hasher.update(meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            hasher.update(std::fs::read(entry.path()).expect("read"));
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Images (any, dangling included) of the project folder `dir`: those its builds loaded (its
/// output folder lists them: the images dockception writes name no project) and any labelled
/// with its project.
pub fn images_of(dir: &Path) -> Vec<String> {
    let mut ids = labelled(dir, &["images", "-a", "--no-trunc"], "{{.ID}}");
    let listed =
        std::fs::read_to_string(dir.join(".dockception/loaded-images")).unwrap_or_default();
    for id in listed.lines().filter(|l| l.starts_with("sha256:")) {
        if image_exists(id) && !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }
    ids
}

/// Volumes whose project label belongs to the project folder `dir`.
pub fn volumes_of(dir: &Path) -> Vec<String> {
    labelled(dir, &["volume", "ls"], "{{.Name}}")
}

fn labelled(dir: &Path, list: &[&str], field: &str) -> Vec<String> {
    let project = project_label(dir);
    let filter = format!("label=dockception.project={project}");
    let mut args = list.to_vec();
    args.extend(["--filter", &filter, "--format", field]);
    docker_stdout(&args).lines().map(str::to_string).collect()
}

/// The `dockception.project` label of the project folder `dir`.
pub fn project_label(dir: &Path) -> String {
    let dir = dir.canonicalize().expect("canonical path");
    dockception::Options::new(dir.join("dockception.toml"))
        .load()
        .expect("the project loads")
        .project
}

/// A dockception process running in the background, its stderr read line by line as it comes.
pub struct Running {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Start the binary with `args` in `cwd`, with extra environment `env`.
    pub fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Running {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().copied());
        Running::spawn(command)
    }

    /// Start `command` (one that runs the binary, e.g. through `unshare`), stdin closed.
    pub fn spawn(mut command: Command) -> Running {
        use std::io::{BufRead, Read};
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dockception runs");
        let (sender, lines) = std::sync::mpsc::channel();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let collected = std::sync::Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Ok(mut all) = collected.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                let _ = sender.send(line);
            }
        });
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            bytes
        });
        Running {
            child,
            lines,
            stderr,
            stdout: Some(stdout),
        }
    }

    /// Wait until a stderr line contains `needle`; panics after `seconds` or when the process
    /// ends first.
    pub fn wait_for(&self, needle: &str, seconds: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {needle:?} within {seconds} s; stderr so far:\n{}",
                    self.stderr_so_far()
                ),
            }
        }
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Send `signal` to the process.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Wait for the end, at most `seconds` (then kill it and fail: it hung). Returns the exit
    /// status, stdout and stderr.
    pub fn finish(mut self, seconds: u64) -> (Option<i32>, Vec<u8>, String) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "dockception hung for {seconds} s; stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let stdout = self
            .stdout
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        // Let the reader thread drain the last lines.
        let drain_until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::sync::Arc::strong_count(&self.stderr) > 1
            && std::time::Instant::now() < drain_until
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (status.code(), stdout, self.stderr_so_far())
    }
}

/// One entry of an image layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// The exact path bytes, e.g. `app` or `lib/x.so`.
    pub path: Vec<u8>,
    pub mode: u32,
    pub kind: tar::EntryType,
    pub link: Option<Vec<u8>>,
}

/// `docker save IMAGE`: the whole archive's bytes and the entries of every layer.
pub fn saved_image(image: &str) -> (Vec<u8>, Vec<Vec<LayerEntry>>) {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("image.tar");
    docker_stdout(&["save", "-o", file.to_str().expect("utf-8"), image]);
    let bytes = std::fs::read(&file).expect("read the saved image");
    let mut files = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(bytes.as_slice());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read entry");
        files.insert(path, content);
    }
    // manifest.json lists the layers from the base up.
    let manifest: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
    let mut layers = Vec::new();
    for name in manifest[0]["Layers"].as_array().expect("Layers") {
        let layer = &files[name.as_str().expect("a layer path")];
        let mut inner = tar::Archive::new(layer.as_slice());
        let entries = inner
            .entries()
            .expect("layer entries")
            .map(|e| {
                let e = e.expect("layer entry");
                LayerEntry {
                    path: e.path_bytes().into_owned(),
                    mode: e.header().mode().expect("mode"),
                    kind: e.header().entry_type(),
                    link: e.link_name_bytes().map(|l| l.into_owned()),
                }
            })
            .collect();
        layers.push(entries);
    }
    (bytes, layers)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A value no build could produce by chance, to search for.
pub fn unique_token(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{what}-{}-{nanos:x}", std::process::id())
}

/// Whether the programs `tools` are on PATH. Without them the test is skipped with a printed
/// reason, but fails under `CI=true`.
pub fn tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let problem = format!("{} not installed", missing.join(", "));
    if in_ci() {
        panic!("CI=true and {problem}; run scripts/engine.sh before the tests");
    }
    eprintln!("SKIPPED: {problem} (run scripts/engine.sh to install them)");
    false
}

/// How a test registry is set up.
#[derive(Default, Clone)]
pub struct RegistryOptions {
    /// Basic auth with this user and password (an htpasswd file made with `htpasswd -B`).
    pub basic: Option<(String, String)>,
    /// Serve TLS with a certificate for 127.0.0.1 signed by a CA made for the test.
    pub tls: bool,
    /// Token (Bearer) auth: clients are sent to a token service for a signed JWT.
    pub token: Option<TokenAuth>,
}

/// The registry's side of token auth (distribution's `auth.token`): where clients get tokens,
/// the names a token must carry, and the CA its signing certificate chains to.
#[derive(Clone)]
pub struct TokenAuth {
    /// The token service's URL.
    pub realm: String,
    /// The registry's name as a service: the token's audience.
    pub service: String,
    /// The token's issuer.
    pub issuer: String,
    /// PEM file of the CA the token's `x5c` certificate must chain to.
    pub bundle: PathBuf,
}

/// A real registry (Debian's docker-registry) on a free 127.0.0.1 port, stopped and its
/// storage removed on drop.
pub struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The CA's PEM file, when the registry serves TLS.
    pub ca: Option<PathBuf>,
    dir: tempfile::TempDir,
}

/// Run `program ARGS` in `cwd`; it must succeed.
pub fn run_ok(program: &str, args: &[&str], cwd: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        text(&out.stderr)
    );
}

impl Registry {
    pub fn start(options: RegistryOptions) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let mut ca = None;
        if options.tls {
            let d = dir.path();
            run_ok(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=dockception-test-ca",
                ],
                d,
            );
            run_ok(
                "openssl",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
                d,
            );
            std::fs::write(
                d.join("leaf.ext"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            )
            .expect("write ext");
            run_ok(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    "leaf.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    "leaf.pem",
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                ],
                d,
            );
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("leaf.pem").display(),
                d.join("leaf.key").display()
            ));
            ca = Some(d.join("ca.pem"));
        }
        if let Some((user, password)) = &options.basic {
            let out = Command::new("htpasswd")
                .args(["-nbB", user, password])
                .output()
                .expect("htpasswd runs (apache2-utils)");
            assert!(out.status.success(), "htpasswd: {}", text(&out.stderr));
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: dockception-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        if let Some(token) = &options.token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                token.realm,
                token.service,
                token.issuer,
                token.bundle.display()
            ));
        }
        let file = dir.path().join("config.yml");
        std::fs::write(&file, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts (scripts/engine.sh installs it)");
        let registry = Registry {
            child,
            address: format!("127.0.0.1:{port}"),
            ca,
            dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start: {}",
                std::fs::read_to_string(registry.dir.path().join("registry.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        registry
    }

    /// The HTTP status of a plain-HTTP `method path` on the registry, with basic credentials.
    pub fn status(&self, method: &str, path: &str, basic: Option<(&str, &str)>) -> u16 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.address).expect("connect");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n",
            self.address
        );
        if let Some((user, password)) = basic {
            let pair = format!("{user}:{password}");
            request.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64(pair.as_bytes())
            ));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let line = String::from_utf8_lossy(&answer);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bytes` in base64 with padding (RFC 4648's standard alphabet).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A TCP proxy on a free 127.0.0.1 port to `upstream` that drops each connection once more
/// than `limit` bytes went upstream through it: a connection that breaks mid-upload.
pub struct DroppingProxy {
    pub address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl DroppingProxy {
    pub fn start(upstream: &str, limit: u64) -> DroppingProxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let upstream = upstream.to_string();
        let accepting = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                pump(client, server, limit);
            }
        });
        DroppingProxy {
            address,
            stop,
            accepting: Some(accepting),
        }
    }
}

/// Copy both ways between `client` and `server`; drop both once `limit` bytes went up.
fn pump(client: std::net::TcpStream, server: std::net::TcpStream, limit: u64) {
    use std::io::{Read, Write};
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let (mut server_read, mut client_write) = (server, client);
    std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = client_read.read(&mut buf) {
            if n == 0 || server_write.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            if sent > limit {
                break;
            }
        }
        let _ = server_write.shutdown(std::net::Shutdown::Both);
        let _ = client_read.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Both);
    });
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.address);
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

/// Bytes that do not compress: a xorshift stream from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Run `work` on a fresh tokio runtime.
pub fn block_on<F: std::future::Future>(work: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(work)
}

/// A unix socket of the test's own that passes every connection on to the engine's socket,
/// byte for byte, until [`EngineProxy::freeze`]: from then on nothing more passes either way
/// (what arrives is held), as if the engine had stopped answering, while the engine itself
/// goes on untouched. Point `DOCKER_HOST` at [`EngineProxy::host`]. Everything it holds is
/// closed on drop.
pub struct EngineProxy {
    pub host: String,
    dir: tempfile::TempDir,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl EngineProxy {
    /// Forward to the engine the docker CLI uses here (`DOCKER_HOST` when it is a unix socket,
    /// else `/var/run/docker.sock`). With `owner`, the socket (and its folder) belong to that
    /// uid:gid, so a process of that user can use the engine through it.
    pub fn start(owner: Option<(u32, u32)>) -> EngineProxy {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        let dir = tempfile::Builder::new()
            .prefix("dcpt-proxy-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).expect("bind the proxy socket");
        if let Some((uid, gid)) = owner {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            std::os::unix::fs::chown(&socket, Some(uid), Some(gid)).expect("chown the socket");
        }
        let proxy = EngineProxy {
            host: format!("unix://{}", socket.display()),
            dir,
            frozen: Default::default(),
            stop: Default::default(),
            streams: Default::default(),
            requests: Default::default(),
        };
        let (frozen, stop, streams, requests) = (
            std::sync::Arc::clone(&proxy.frozen),
            std::sync::Arc::clone(&proxy.stop),
            std::sync::Arc::clone(&proxy.streams),
            std::sync::Arc::clone(&proxy.requests),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let keep = |s: &UnixStream| {
                    if let (Ok(copy), Ok(mut all)) = (s.try_clone(), streams.lock()) {
                        all.push(copy);
                    }
                };
                keep(&client);
                if frozen.load(Ordering::SeqCst) {
                    continue; // held, never answered
                }
                let Ok(engine) = UnixStream::connect(&upstream) else {
                    continue;
                };
                keep(&engine);
                for (from, to, record) in [
                    (
                        client.try_clone(),
                        engine.try_clone(),
                        Some(std::sync::Arc::clone(&requests)),
                    ),
                    (engine.try_clone(), client.try_clone(), None),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let (frozen, stop) =
                        (std::sync::Arc::clone(&frozen), std::sync::Arc::clone(&stop));
                    std::thread::spawn(move || {
                        pump_unix(from, to, &frozen, &stop, record.as_deref())
                    });
                }
            }
        });
        proxy
    }

    /// From now on no byte passes, in either direction, on any connection, old or new.
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The request lines (`GET /_ping HTTP/1.1`) sent through so far, in the order they came,
    /// and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// Run dockception with `args` in `cwd` against the engine through this proxy: its output,
    /// and the request lines it sent (taken).
    pub fn dockception(&self, args: &[&str], cwd: &Path) -> (Output, Vec<String>) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("DOCKER_HOST", &self.host)
            .stdin(Stdio::null())
            .output()
            .expect("dockception runs");
        (out, self.take_requests())
    }
}

/// Copy `from` to `to` until either ends; what is read once frozen is held, not written. A
/// read that starts with an HTTP request line adds that line to `record`.
fn pump_unix(
    mut from: std::os::unix::net::UnixStream,
    mut to: std::os::unix::net::UnixStream,
    frozen: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
    record: Option<&std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(record) = record {
            let read = String::from_utf8_lossy(&buffer[..n]);
            let line = read.lines().next().unwrap_or("");
            let methods = ["GET ", "HEAD ", "POST ", "PUT ", "DELETE "];
            if methods.iter().any(|m| line.starts_with(m)) && line.ends_with(" HTTP/1.1") {
                if let Ok(mut lines) = record.lock() {
                    lines.push(line.to_string());
                }
            }
        }
        while frozen.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if stop.load(Ordering::SeqCst) || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(streams) = self.streams.lock() {
            for stream in streams.iter() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        // Wake the accept loop so it sees `stop`.
        let _ = std::os::unix::net::UnixStream::connect(self.dir.path().join("docker.sock"));
    }
}

/// Removes, when dropped, every container (any state) of the project folder's runs: what a
/// test leaves on purpose is gone even when it fails.
pub struct ContainersOf(pub PathBuf);

impl Drop for ContainersOf {
    fn drop(&mut self) {
        // Quietly nothing where no engine answers (a test that needed none, on a laptop).
        let Ok(listed) = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                "label=dockception",
                "--format",
                "{{.Names}} {{.Label \"dockception.project\"}} {{.Label \"dockception.warm\"}}",
            ])
            .output()
        else {
            return;
        };
        let name = slug(&self.0.file_name().unwrap_or_default().to_string_lossy());
        for (line, _) in in_project(&String::from_utf8_lossy(&listed.stdout), &name) {
            if let Some(name) = line.split(' ').next() {
                let _ = docker(&["rm", "-f", name]);
            }
        }
    }
}
