//! A way into a running warm builder cheaper than `docker exec`, on an engine that sees this
//! machine's files: two named pipes in a folder the container mounts. An exec costs the
//! engine a runtime call (`runc exec` and its setup: about 55 ms here for `true`); a request
//! through the pipe costs a write and a fork.
//!
//! The container's command starts one `sh -s` that reads the `requests` pipe (opened for
//! reading and writing, so it never sees an end) and runs each request as it arrives. A
//! request is one compound command, written in one `write` of at most `PIPE_BUF` bytes, which
//! the kernel never splits nor interleaves: the shell never sees half of one. It runs the
//! command in a subshell with the exec's directory, variables and argv, its input from
//! `/dev/null`, both output streams into the `output` pipe, followed by an end line that
//! carries a random marker and the exit status. One difference from an exec remains: the
//! server is a background job of the container's `sh`, which POSIX starts with SIGINT and
//! SIGQUIT ignored, and a shell cannot undo that for what it runs; nothing sends a build
//! those (an interrupted dockception removes the container), and a `sh -c` command's own
//! background jobs have them ignored under an exec too. The folder is the owner's only (0700), so
//! nobody else on the machine can send a request. When the pipes cannot be reached (no
//! reader: the server could not open them, or the engine sees another file system), or a
//! request cannot be written that way, the build uses `docker exec` as before.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::Instant;

use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use super::containers::{emit_line, millis_since, sh_word};
use super::warm::ExecEnd;
use super::Engine;
use crate::progress::Progress;

/// Where a warm builder mounts its channel folder.
pub(super) const CHANNEL_TARGET: &str = "/.dockception-warm";

/// The pipe the server reads requests from.
const REQUESTS: &str = "requests";

/// The pipe a request's output and end line go to.
const OUTPUT: &str = "output";

/// The file a build holds a shared lock on while its request runs, so that `clean`, `ps`
/// and a cache removal see the warm builder in use (there is no exec to see).
const IN_USE: &str = "in-use";

/// The most bytes a pipe takes in one piece (POSIX's minimum for `PIPE_BUF`, Linux's value).
const PIPE_BUF: usize = 4096;

/// Make `dir` (its owner's only) with its two pipes; `false` when this file system cannot
/// hold them (the build then uses `docker exec`).
pub(super) fn prepare(dir: &Path) -> io::Result<bool> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    for name in [REQUESTS, OUTPUT] {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_fifo() => continue,
            Ok(_) => std::fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        );
        match made {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Whether a build runs a request through the channel folder `dir` right now.
pub(super) fn in_use(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(IN_USE)) else {
        return false;
    };
    matches!(
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}

/// Hold a shared lock on `dir`'s in-use file until the returned file is dropped.
fn hold_in_use(dir: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(IN_USE))
        .ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared).ok()?;
    Some(file)
}

/// The part of the warm builder's command that serves requests in the background; `$srv` is
/// its process id (the idle loop does not count it as work). A server that cannot open the
/// pipe ends at once, and builds use `docker exec`.
pub(super) fn serve_script() -> String {
    format!("( exec 3<>{CHANNEL_TARGET}/{REQUESTS} && exec /bin/sh -s <&3 3<&- ) & srv=$!; ")
}

/// What a request runs: the exec's argv, variables (`KEY=value`) and directory.
pub(super) struct Request<'a> {
    pub(super) cmd: &'a [String],
    pub(super) env: &'a [String],
    pub(super) workdir: Option<&'a str>,
}

/// The request as the server's shell reads it, ending with `marker` and the status; `None`
/// when it cannot go this way (longer than one pipe write, a variable name the shell cannot
/// export, or no command).
fn request_script(request: &Request, marker: &str) -> Option<String> {
    if request.cmd.is_empty() {
        return None;
    }
    // The server ignores SIGPIPE, so an output pipe nobody reads any more (dockception was
    // killed) fails its end line instead of ending the server; the command gets the default
    // back.
    let mut inner = String::from("trap - PIPE; ");
    if let Some(dir) = request.workdir.filter(|d| !d.is_empty()) {
        inner.push_str(&format!("cd -- {} || exit 126; ", sh_word(dir)));
    }
    for line in request.env {
        let name = line.split('=').next().unwrap_or("");
        if !is_shell_name(name) || !line.contains('=') {
            return None;
        }
        inner.push_str(&format!("export {}; ", sh_word(line)));
    }
    inner.push_str("exec");
    for arg in request.cmd {
        inner.push(' ');
        inner.push_str(&sh_word(arg));
    }
    let script = format!(
        "trap '' PIPE; {{ ( {inner} ) </dev/null 2>&1; printf '%s %s\\n' '{marker}' \"$?\"; }} >{CHANNEL_TARGET}/{OUTPUT}\n"
    );
    (script.len() <= PIPE_BUF).then_some(script)
}

fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A marker no build output holds by chance: 128 random bits from the standard library's
/// randomly keyed hasher.
fn fresh_marker() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("dockception-end-{:016x}{:016x}", word(), word())
}

/// The status an end line gives, when `line` holds `marker`: what came before it on the line
/// (output that did not end with a newline) and the exit status.
fn end_line<'l>(line: &'l [u8], marker: &str) -> Option<(&'l [u8], i64)> {
    let at = line
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())?;
    let rest = std::str::from_utf8(&line[at + marker.len()..]).ok()?;
    let code = rest.trim().parse().ok()?;
    Some((&line[..at], code))
}

impl Engine {
    /// Run `request` in the warm builder `name` through its channel folder `dir`, its output
    /// shown on `progress`. `None`: the channel cannot take it, so the caller uses `docker
    /// exec`. The container ending before the end line is [`ExecEnd::Refused`].
    pub(super) async fn run_through_channel(
        &self,
        name: &str,
        dir: &Path,
        request: &Request<'_>,
        progress: &Progress,
        keep: usize,
    ) -> Option<ExecEnd> {
        let marker = fresh_marker();
        let script = request_script(request, &marker)?;
        let _in_use = hold_in_use(dir)?;
        // Open for reading before the request goes: the request's shell opens it for writing
        // and would wait for a reader.
        let mut output = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(dir.join(OUTPUT))
            .ok()?;
        let started = Instant::now();
        // Non-blocking: with no server reading, the open fails (ENXIO) instead of waiting.
        let mut requests = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(dir.join(REQUESTS))
            .ok()?;
        match requests.write(script.as_bytes()) {
            Ok(n) if n == script.len() => {}
            _ => return None,
        }
        drop(requests);
        let redact = self.redact.lock().map(|r| r.clone()).unwrap_or_default();
        let mut tail: VecDeque<String> = VecDeque::with_capacity(keep);
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut stopped = self.docker.wait_container(name, None).boxed();
        let stopped_early = || {
            Some(ExecEnd::Refused(
                "the warm container stopped during the build".into(),
            ))
        };
        loop {
            let read = tokio::select! {
                read = output.read(&mut chunk) => read,
                _ = stopped.next() => return stopped_early(),
            };
            let n = match read {
                Ok(0) | Err(_) => return stopped_early(),
                Ok(n) => n,
            };
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = &line[..line.len() - 1];
                if let Some((before, code)) = end_line(line, &marker) {
                    if !before.is_empty() {
                        emit_line(before, &redact, progress, &mut tail, keep);
                    }
                    return Some(ExecEnd::Ended {
                        code,
                        tail: tail.into_iter().collect(),
                        ran_ms: millis_since(started),
                    });
                }
                emit_line(line, &redact, progress, &mut tail, keep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(cmd: &[&str], env: &[&str], workdir: Option<&str>) -> Option<String> {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        request_script(
            &Request {
                cmd: &cmd,
                env: &env,
                workdir,
            },
            "MARK",
        )
    }

    /// Runs a request script with the real `sh`, its output file in place of the pipe.
    fn run(script: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("output");
        let script = script.replace(
            &format!("{CHANNEL_TARGET}/{OUTPUT}"),
            &out.to_string_lossy(),
        );
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .status()
            .expect("sh");
        assert!(status.success(), "{script}");
        std::fs::read_to_string(out).expect("output")
    }

    #[test]
    fn a_request_runs_the_argv_with_its_variables_and_folder_and_ends_with_its_status() {
        let s = script(
            &["sh", "-c", "echo \"$A|$B|$(pwd)\"; echo err >&2; exit 3"],
            &["A=it's", "B=x=y\nz"],
            Some("/"),
        )
        .expect("a script");
        assert_eq!(run(&s), "it's|x=y\nz|/\nerr\nMARK 3\n");
    }

    #[test]
    fn the_command_has_sigpipe_as_usual() {
        let s = script(&["sh", "-c", "kill -PIPE $$; echo survived"], &[], None).expect("a script");
        assert_eq!(run(&s), "MARK 141\n");
    }

    #[test]
    fn the_command_reads_nothing_of_the_request_pipe() {
        let s = script(&["cat"], &[], None).expect("a script");
        assert_eq!(run(&s), "MARK 0\n");
    }

    #[test]
    fn a_missing_folder_or_command_is_a_failed_status() {
        let s = script(&["true"], &[], Some("/no/such/folder")).expect("a script");
        assert!(run(&s).ends_with("MARK 126\n"), "{}", run(&s));
        let s = script(&["/no/such/command"], &[], None).expect("a script");
        assert!(run(&s).ends_with("MARK 127\n"), "{}", run(&s));
    }

    #[test]
    fn what_the_shell_cannot_take_goes_by_exec() {
        assert!(script(&[], &[], None).is_none());
        assert!(script(&["true"], &["A-B=1"], None).is_none());
        assert!(script(&["true"], &["NOVALUE"], None).is_none());
        let long = "x".repeat(PIPE_BUF);
        assert!(script(&["echo", &long], &[], None).is_none());
    }

    #[test]
    fn the_end_line_keeps_output_that_had_no_newline() {
        let marker = fresh_marker();
        assert_ne!(marker, fresh_marker());
        let line = format!("partial{marker} 2");
        assert_eq!(
            end_line(line.as_bytes(), &marker),
            Some((&b"partial"[..], 2))
        );
        assert_eq!(end_line(b"ordinary output", &marker), None);
    }

    #[test]
    fn a_held_channel_is_in_use_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!in_use(dir.path()), "no file yet");
        let held = hold_in_use(dir.path()).expect("held");
        assert!(in_use(dir.path()));
        drop(held);
        assert!(!in_use(dir.path()));
    }

    #[test]
    fn the_channel_folder_is_its_owners_with_two_pipes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let channel = dir.path().join("channel");
        assert!(prepare(&channel).expect("prepare"));
        std::fs::remove_file(channel.join(OUTPUT)).expect("remove");
        std::fs::write(channel.join(OUTPUT), b"not a pipe").expect("write");
        assert!(prepare(&channel).expect("prepare again"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&channel)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        for name in [REQUESTS, OUTPUT] {
            let meta = std::fs::symlink_metadata(channel.join(name)).expect("meta");
            assert!(meta.file_type().is_fifo(), "{name}");
        }
    }
}
