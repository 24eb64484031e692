//! A second Docker Engine with its own root filesystem and network namespace (DESIGN.md,
//! "Engines"): Debian's docker.io from the folder `scripts/engine.sh second-engine` makes with
//! mmdebstrap, run in fresh mount and pid namespaces (`unshare -m -p`) inside a network
//! namespace of the test's own, with that folder as its root (pivot_root). It listens on a unix socket in the
//! test's folder, and on TCP with TLS (certificates made by openssl here) at the namespace's
//! end of a veth pair with a private /30; sshd (Debian's openssh-server, in the same root
//! filesystem) listens there too when asked for.
//!
//! The network namespace is made first (`ip netns add`, the veth moved in and addressed), then
//! the engine is started in it, so nothing races the addresses. Everything goes on drop: the
//! pid namespace dies with its first process (`--kill-child`), and with it dockerd, containerd,
//! the shims, the containers and sshd; the mount namespace goes with them; then the network
//! namespace, the veth, the cgroups and the folder are removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Where `scripts/engine.sh second-engine` puts the root filesystem.
pub fn second_engine_root() -> PathBuf {
    std::env::var_os("DOCKCEPTION_SECOND_ENGINE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/dockception-tests/engine-root"))
}

/// Whether a second engine can be started here: root, the tools, and the root filesystem.
/// Without them the test is skipped with a printed reason, but fails under `CI=true`.
pub fn second_engine_possible() -> bool {
    if !tools(&["unshare", "nsenter", "ip", "openssl", "ssh", "ssh-keygen"]) {
        return false;
    }
    let problem = if !rustix::process::geteuid().is_root() {
        Some("a second engine needs root (namespaces, veth, pivot_root)".to_string())
    } else if !second_engine_root().join(".dockception-complete").exists() {
        Some(format!(
            "the second engine's root filesystem {} is missing",
            second_engine_root().display()
        ))
    } else {
        None
    };
    match problem {
        None => true,
        Some(problem) if in_ci() => {
            panic!("CI=true and {problem}; run scripts/engine.sh before the tests")
        }
        Some(problem) => {
            eprintln!("SKIPPED: {problem} (run scripts/engine.sh as root)");
            false
        }
    }
}

/// What the second engine offers besides its unix socket and TLS on TCP.
#[derive(Default)]
pub struct SecondEngineOptions {
    /// Host folders the engine sees at the same paths (a project, so bind mounts work until
    /// dockception syncs sources to remote engines itself).
    pub shared: Vec<PathBuf>,
    /// Serve sshd for root on port 22, taking these authorized keys.
    pub ssh_authorized_keys: Option<String>,
}

/// A running second engine; everything it started is stopped and removed on drop.
pub struct SecondEngine {
    dir: tempfile::TempDir,
    name: String,
    child: Option<Child>,
    /// `unix://` socket of the engine, in the test's folder.
    pub socket: String,
    /// The engine's address on the veth pair (the namespace's end).
    pub address: String,
    /// `tcp://ADDRESS:2376`, TLS with client certificates.
    pub tcp: String,
    /// The folder with `ca.pem`, `cert.pem` and `key.pem` for a client (DOCKER_CERT_PATH).
    pub client_certs: PathBuf,
    /// sshd's host public key line, when sshd runs.
    pub ssh_host_key: Option<String>,
}

/// Runs as the first process of fresh mount and pid namespaces, inside the test's network
/// namespace: bind mounts, then that folder as the root (pivot_root), sshd (when configured)
/// and dockerd. The bench's second engine runs the same script.
const INSIDE: &str = include_str!("../../scripts/second-engine-inside.sh");

impl SecondEngine {
    /// Make the namespace, the certificates and start the engine; waits until it answers.
    pub fn start(options: SecondEngineOptions) -> SecondEngine {
        // One engine starts at a time: several containerds starting at once on a loaded
        // machine miss dockerd's wait for them ("timeout waiting for containerd to start").
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let slot = (std::process::id().wrapping_mul(7) + n * 13) % 250 + 1;
        let name = format!("dcpt2e{:x}{n}", std::process::id() & 0xffff);
        // Short: a socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dcpt-2e-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        for sub in ["data", "server", "client"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let address = format!("10.215.{slot}.2");
        let mut engine = SecondEngine {
            socket: format!("unix://{}", d.join("docker.sock").display()),
            tcp: format!("tcp://{address}:2376"),
            client_certs: d.join("client"),
            address,
            ssh_host_key: None,
            name,
            child: None,
            dir,
        };
        make_certificates(d, &engine.address);
        let shared: Vec<String> = options
            .shared
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        std::fs::write(d.join("shared"), shared.join("\n") + "\n").expect("write");
        if let Some(keys) = &options.ssh_authorized_keys {
            engine.ssh_host_key = Some(configure_sshd(d, keys));
        }
        engine.network(slot);
        std::fs::write(d.join("inside.sh"), INSIDE).expect("write");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", engine.name))
            .args([
                "unshare",
                "-m",
                "-p",
                "--kill-child",
                "--propagation",
                "private",
            ])
            .arg("sh")
            .arg(d.join("inside.sh"))
            .arg(second_engine_root())
            .arg(d)
            .arg(&engine.name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("nsenter runs");
        engine.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !engine.docker(&["version"]).status.success() {
            let exited = engine
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "the second engine did not answer; its log:\n{}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    /// The network namespace and the veth pair: `.1/30` on the host's end, `.2/30` inside.
    fn network(&self, slot: u32) {
        let (outer, inner) = (format!("{}a", self.name), format!("{}b", self.name));
        run_ok(Command::new("ip").args(["netns", "add", &self.name]));
        run_ok(Command::new("ip").args([
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &inner, "netns", &self.name]));
        let host_end = format!("10.215.{slot}.1/30");
        run_ok(Command::new("ip").args(["addr", "add", &host_end, "dev", &outer]));
        run_ok(Command::new("ip").args(["link", "set", &outer, "up"]));
        let inner_end = format!("{}/30", self.address);
        run_ok(
            Command::new("ip").args(["-n", &self.name, "addr", "add", &inner_end, "dev", &inner]),
        );
        run_ok(Command::new("ip").args(["-n", &self.name, "link", "set", &inner, "up"]));
    }

    /// The docker CLI against this engine's unix socket.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.socket)
            .env_remove("DOCKER_CONTEXT")
            .output()
            .expect("the docker CLI runs")
    }

    /// Where the engine keeps the files of volume `name`, as this machine sees them (its data
    /// folder is one of the test's): for watching a volume without asking the engine.
    pub fn volume_files(&self, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/volumes")
            .join(name)
            .join("_data")
    }

    /// Copy `image` from the machine's engine into this one.
    pub fn load(&self, image: &str) {
        let tar = self.dir.path().join("image.tar");
        let tar = tar.to_str().expect("utf-8");
        docker_stdout(&["save", "-o", tar, image]);
        let loaded = self.docker(&["load", "-i", tar]);
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        let _ = std::fs::remove_file(tar);
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // nsenter exec'd unshare, whose death kills the namespace's first process
            // (--kill-child), and the pid namespace's end kills everything else in it.
            let _ = child.kill();
            let _ = child.wait();
        }
        let marker = format!("/run/netns/{}", self.name);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && processes_in(&marker) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &format!("{}a", self.name)])
            .stderr(Stdio::null())
            .status();
        remove_cgroups(&self.name);
        // Layers and containers' files may be read-only for their owner.
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(self.dir.path())
            .status();
    }
}

/// Whether a process still runs in the network namespace named by `path`.
fn processes_in(path: &str) -> bool {
    let Ok(target) = std::fs::metadata(path) else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .any(|e| {
            std::fs::metadata(e.path().join("ns/net"))
                .map(|m| m.ino() == target.ino() && m.dev() == target.dev())
                .unwrap_or(false)
        })
}

/// A CA, the engine's certificate for `address`, and a client certificate, made by openssl
/// (P-256 keys: quick to make). The server's files go to `server/`, the client's to `client/`.
fn make_certificates(dir: &Path, address: &str) {
    make_ca(&dir.join("ca"));
    let ca = dir.join("ca");
    issue(
        &ca,
        &dir.join("server"),
        "engine",
        &format!("subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth\n"),
    );
    issue(
        &ca,
        &dir.join("client"),
        "client",
        "extendedKeyUsage=clientAuth\n",
    );
    for to in ["server", "client"] {
        std::fs::copy(ca.join("ca.pem"), dir.join(to).join("ca.pem")).expect("copy ca.pem");
    }
}

/// A self-signed CA in `dir` (`ca.pem`, `ca-key.pem`).
pub fn make_ca(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=dockception-test-ca",
            ])
            .arg("-keyout")
            .arg(dir.join("ca-key.pem"))
            .arg("-out")
            .arg(dir.join("ca.pem")),
    );
}

/// `cert.pem` and `key.pem` in `to`, signed by the CA in `ca`, with these extensions.
fn issue(ca: &Path, to: &Path, name: &str, extensions: &str) {
    std::fs::create_dir_all(to).expect("mkdir");
    let ext = to.join("ext.cnf");
    std::fs::write(&ext, extensions).expect("write");
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(to.join("key.pem"))
            .arg("-out")
            .arg(to.join("req.csr")),
    );
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(to.join("req.csr"))
            .arg("-CA")
            .arg(ca.join("ca.pem"))
            .arg("-CAkey")
            .arg(ca.join("ca-key.pem"))
            .arg("-out")
            .arg(to.join("cert.pem"))
            .arg("-extfile")
            .arg(&ext),
    );
}

/// sshd's configuration and host key in `dir` (seen as `/run/dcpt` inside); root logs in with
/// `authorized_keys`. Returns the host key's public line.
fn configure_sshd(dir: &Path, authorized_keys: &str) -> String {
    let key = dir.join("ssh_host_ed25519_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    std::fs::write(dir.join("authorized_keys"), authorized_keys).expect("write");
    std::fs::write(
        dir.join("sshd_config"),
        "Port 22\nListenAddress 0.0.0.0\nHostKey /run/dcpt/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nAuthorizedKeysFile /run/dcpt/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile /run/sshd.pid\n",
    )
    .expect("write");
    std::fs::read_to_string(key.with_extension("pub"))
        .expect("host key")
        .trim()
        .to_string()
}

fn run_ok(command: &mut Command) {
    let out = command.output().expect("runs");
    assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
}

/// Remove the (empty) cgroups below `/sys/fs/cgroup/*/NAME`, deepest first.
fn remove_cgroups(name: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.flatten() {
        let top = controller.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(&top)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_dir())
            .map(|e| e.path().to_path_buf())
            .collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
