//! `ssh://[USER@]HOST[:PORT]` engines, reached the way the docker CLI reaches them: every
//! connection runs `ssh … HOST docker system dial-stdio` and speaks the Engine API over its
//! stdin and stdout. bollard speaks to a unix socket in a private temporary folder that this
//! module serves, bridging each connection to its own ssh process. The system's `ssh` reads the
//! user's own configuration, keys, agent and known_hosts, as the docker CLI's does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Command;

/// Where an `ssh://` address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SshDestination {
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

impl SshDestination {
    /// Parse `ssh://[USER@]HOST[:PORT]`; the error says what is wrong.
    pub fn parse(address: &str) -> Result<SshDestination, String> {
        let rest = address
            .strip_prefix("ssh://")
            .ok_or_else(|| "it does not start with ssh://".to_string())?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err("an ssh:// address has no path (ssh://USER@HOST[:PORT])".into());
        }
        let (user, host_port) = match rest.rsplit_once('@') {
            Some((user, host)) if !user.is_empty() => (Some(user.to_string()), host),
            Some(_) => return Err("the user before @ is empty".into()),
            None => (None, rest),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("the port `{port}` is not a port number"))?;
                (host, Some(port))
            }
            _ => (host_port, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.starts_with('-') {
            return Err("it names no host (ssh://USER@HOST[:PORT])".into());
        }
        Ok(SshDestination {
            user: user.filter(|u| !u.starts_with('-')),
            host: host.to_string(),
            port,
        })
    }

    /// The arguments of `ssh` that run `docker system dial-stdio` there, as the docker CLI's
    /// connection helper does (plus `BatchMode`: dockception runs ssh for each connection and
    /// must never wait at a password prompt).
    pub fn dial_stdio_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-T", "-o", "ConnectTimeout=30", "-o", "BatchMode=yes"]
            .map(String::from)
            .to_vec();
        if let Some(user) = &self.user {
            args.extend(["-l".to_string(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".to_string(), port.to_string()]);
        }
        args.extend(["--", &self.host, "docker", "system", "dial-stdio"].map(String::from));
        args
    }
}

/// The local socket that stands for an ssh engine, served while this lives; every ssh process
/// it started ends with it.
pub(super) struct SshBridge {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    serving: tokio::task::JoinHandle<()>,
    /// What the last ssh that failed wrote on its stderr.
    last_error: Arc<Mutex<Option<String>>>,
}

impl SshBridge {
    /// Serve a socket in a fresh private folder; each connection to it runs its own ssh.
    pub fn start(destination: SshDestination) -> std::io::Result<SshBridge> {
        let dir = tempfile::Builder::new()
            .prefix("dockception-ssh-")
            .tempdir()?;
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket)?;
        let last_error = Arc::new(Mutex::new(None));
        let errors = last_error.clone();
        let serving = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { break };
                        connections.spawn(bridge(stream, destination.clone(), errors.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(SshBridge {
            _dir: dir,
            socket,
            serving,
            last_error,
        })
    }

    /// The socket bollard connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the last failed ssh said, if one failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl Drop for SshBridge {
    fn drop(&mut self) {
        // Dropping the task drops its connections, whose ssh processes are killed on drop.
        self.serving.abort();
    }
}

/// Carry one connection over its own `ssh … docker system dial-stdio`. When ssh ends with
/// an error, its stderr is kept before the connection is closed, so the failed request can
/// say what ssh said.
async fn bridge(
    stream: UnixStream,
    destination: SshDestination,
    errors: Arc<Mutex<Option<String>>>,
) {
    let record = |message: String| {
        if let Ok(mut last) = errors.lock() {
            *last = Some(message);
        }
    };
    let child = Command::new("ssh")
        .args(destination.dial_stdio_args())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            record(format!("running ssh failed: {e}"));
            return;
        }
    };
    let (Some(mut to_ssh), Some(mut from_ssh), Some(mut ssh_stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return;
    };
    let (mut from_client, mut to_client) = stream.into_split();
    let upstream = async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_ssh).await;
        let _ = to_ssh.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_ssh, &mut to_client).await;
        let mut stderr = Vec::new();
        let _ = ssh_stderr.read_to_end(&mut stderr).await;
        let status = child.wait().await;
        let failed = !matches!(&status, Ok(s) if s.success());
        let text = String::from_utf8_lossy(&stderr).trim().to_string();
        if failed {
            record(match (text.is_empty(), status) {
                (false, _) => text,
                (true, Ok(status)) => format!("ssh ended with {status} and said nothing"),
                (true, Err(e)) => format!("waiting for ssh failed: {e}"),
            });
        }
        let _ = to_client.shutdown().await;
    };
    tokio::pin!(upstream);
    // The client closing its side ends ssh's stdin; ssh then ends and `downstream` finishes.
    tokio::select! {
        _ = async { (&mut upstream).await; std::future::pending::<()>().await } => {}
        _ = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_addresses_become_the_docker_clis_ssh_arguments() {
        let d = SshDestination::parse("ssh://builder@build.example:2222").expect("parses");
        assert_eq!(
            d.dial_stdio_args().join(" "),
            "-T -o ConnectTimeout=30 -o BatchMode=yes -l builder -p 2222 -- build.example docker system dial-stdio"
        );
        let d = SshDestination::parse("ssh://10.0.0.2").expect("parses");
        assert_eq!(
            d.dial_stdio_args().join(" "),
            "-T -o ConnectTimeout=30 -o BatchMode=yes -- 10.0.0.2 docker system dial-stdio"
        );
        let d = SshDestination::parse("ssh://me@[fd00::2]:22/").expect("parses");
        assert_eq!(d.host, "fd00::2");
        assert_eq!(d.port, Some(22));
    }

    #[test]
    fn bad_ssh_addresses_say_what_is_wrong() {
        for (address, problem) in [
            ("ssh://", "it names no host"),
            ("ssh://me@", "it names no host"),
            ("ssh://@host", "the user before @ is empty"),
            ("ssh://host:port", "the port `port` is not a port number"),
            ("ssh://host:0", "the port `0` is not a port number"),
            (
                "ssh://host/var/run/docker.sock",
                "an ssh:// address has no path",
            ),
            ("ssh://-oProxyCommand=x", "it names no host"),
        ] {
            let e = SshDestination::parse(address).expect_err(address);
            assert!(e.starts_with(problem), "{address}: {e}");
        }
    }
}
