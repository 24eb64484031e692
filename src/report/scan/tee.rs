//! The writers a layer passes through while it is listed: hashed, gzipped on a thread of its
//! own, counted.

use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::fsutil::hex;

/// Everything read from the layer passes through here: hashed, gzipped, counted.
pub(super) struct Tee<R> {
    inner: R,
    hasher: Sha256,
    gzip: Option<BackgroundGzip>,
    bytes: u64,
}

/// What a [`Tee`] saw, once the layer has passed.
pub(super) struct TeeTotals {
    /// Hex SHA-256 of every byte.
    pub(super) sha256: String,
    /// How many bytes.
    pub(super) bytes: u64,
    /// How many bytes they gzip to at the default level.
    pub(super) gzip_bytes: u64,
}

impl<R: Read> Tee<R> {
    pub(super) fn start(inner: R) -> io::Result<Tee<R>> {
        Ok(Tee {
            inner,
            hasher: Sha256::new(),
            gzip: Some(BackgroundGzip::start()?),
            bytes: 0,
        })
    }

    /// A tee that does not gzip: for a layer whose compressed size is known already (one we
    /// compressed ourselves).
    pub(super) fn start_unsized(inner: R) -> Tee<R> {
        Tee {
            inner,
            hasher: Sha256::new(),
            gzip: None,
            bytes: 0,
        }
    }

    pub(super) fn finish(self) -> io::Result<TeeTotals> {
        let gzip_bytes = match self.gzip {
            Some(gzip) => gzip.finish()?,
            None => 0,
        };
        Ok(TeeTotals {
            sha256: hex(&self.hasher.finalize()),
            bytes: self.bytes,
            gzip_bytes,
        })
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(gzip) = &mut self.gzip {
            gzip.write(&buf[..n])?;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// How many bytes go to the gzip thread at a time, and how many batches may wait for it: the
/// memory a scan holds for compression stays under 1 MiB whatever the layer's size.
const GZIP_BATCH: usize = 64 * 1024;
const GZIP_BATCHES_IN_FLIGHT: usize = 16;

/// Gzips on its own thread and counts the compressed bytes. Compressing is the slowest part
/// of a scan (several times slower than hashing), so it overlaps with reading the export,
/// hashing and listing instead of adding to them.
struct BackgroundGzip {
    pending: Vec<u8>,
    batches: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<io::Result<u64>>>,
}

impl BackgroundGzip {
    fn start() -> io::Result<BackgroundGzip> {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(GZIP_BATCHES_IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("gzip-size".into())
            .spawn(move || {
                let mut gzip = GzEncoder::new(Counter::default(), Compression::default());
                for batch in received {
                    gzip.write_all(&batch)?;
                }
                Ok(gzip.finish()?.0)
            })?;
        Ok(BackgroundGzip {
            pending: Vec::with_capacity(GZIP_BATCH),
            batches: Some(batches),
            worker: Some(worker),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= GZIP_BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(GZIP_BATCH));
        let sent = self.batches.as_ref().map(|b| b.send(batch));
        match sent {
            Some(Ok(())) => Ok(()),
            // The worker stopped early: only an error of its own makes it do that.
            _ => Err(self.join().err().unwrap_or_else(|| {
                io::Error::other("the gzip thread stopped before the layer ended")
            })),
        }
    }

    /// The gzipped size of everything written.
    fn finish(mut self) -> io::Result<u64> {
        if !self.pending.is_empty() {
            self.send()?;
        }
        self.join()
    }

    fn join(&mut self) -> io::Result<u64> {
        self.batches = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the gzip thread panicked")),
            None => Err(io::Error::other("the gzip thread already ended")),
        }
    }
}

/// A writer that only counts.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
