//! Small helpers for the tool's own files, shared by every stage: the I/O error that names what
//! was being done and on which path, atomic writes, hex digests.

use std::path::{Path, PathBuf};

/// A file system operation on the tool's own files failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct IoError {
    /// What was being done, e.g. "creating output folder".
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

/// `Error::io(action, path, source)` for every error that wraps an [`IoError`]: each stage's
/// and the top-level one.
pub(crate) trait FromIo: From<IoError> {
    /// The error for a failed file system operation `action` on `path`.
    fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError::new(action, path, source).into()
    }
}

impl<E: From<IoError>> FromIo for E {}

impl IoError {
    pub(crate) fn new(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        IoError {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Write `bytes` to `path` atomically: a reader sees the old file or the new one, never a
/// part (a temporary file in the same folder, synced, then renamed over `path`). Two writers
/// at once each write a whole file; the later rename wins.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Lowercase hex of `bytes` (a digest).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What `write` writes, as a stream of 256 KiB chunks: it runs on a blocking thread, and waits
/// while the reader is behind, so nothing is held whole in memory. An error of `write` ends the
/// stream as its last item; a reader that went away (the daemon hung up) ends `write`.
pub(crate) fn stream_written<F>(
    write: F,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static
where
    F: FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        let result = write(&mut writer).and_then(|()| std::io::Write::flush(&mut writer));
        if let Err(e) = result {
            // The receiver may be gone when the daemon hung up; nothing else to tell then.
            let _ = sender.blocking_send(Err(e));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// The size of the chunks [`stream_written`] sends.
pub(crate) const CHUNK: usize = 256 * 1024;

struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the engine stopped reading")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.json");
        write_atomic(&path, b"{\"first\":1}").expect("write");
        write_atomic(&path, b"{\"second\":2}").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"second\":2}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
        let e = write_atomic(&dir.path().join("no/such/report.json"), b"x").expect_err("fails");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
