//! A layer as bytes we write: the tar passes through a [`LayerWriter`], which hashes it (the
//! diff id) and spools it into a temporary file beside the blob store. A thread of its own reads
//! that file as it grows and gzips it reproducibly into the store (no name and no time in the
//! gzip header, one fixed level), so the writer never waits for the gzip: once the tar is
//! written, [`LayerWriter::finish_tar`] gives its file and diff id at once (all `docker load`
//! needs: the config names layers by their uncompressed digests) and the gzip as a
//! [`PendingGzip`] to wait for later (for a registry, an OCI output, the report's sizes and the
//! manifest digest). Every chunk can also go to a reader beside it (the report's scan), shared,
//! not copied. Memory stays bounded whatever the layer's size; the temporary file and a blob
//! left half-written go when their owner is dropped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::fsutil::hex;

use super::blobs::{BlobStore, BlobWriter};
use super::context::{self, ContextSpec};
use super::{media, Descriptor, WrittenLayer};

/// The gzip level of every layer: the level `docker push` uses, so sizes compare.
pub const GZIP_LEVEL: u32 = 6;

/// How many bytes the gzip thread (and the copy) takes at a time.
const CHUNK: usize = 256 * 1024;

/// How many chunks may wait for the copy's reader: 8 MiB.
const IN_FLIGHT: usize = 32;

/// Write the layer of `spec`'s files (the artifacts, libraries and init at their image paths)
/// into `store`. `copy` receives every chunk of the uncompressed tar as it is written. The
/// gzip may still be running when this returns.
pub fn write_files(
    spec: &ContextSpec,
    store: &BlobStore,
    copy: Option<SyncSender<Bytes>>,
) -> io::Result<SpooledLayer> {
    let mut writer = LayerWriter::start(store, copy)?;
    context::write_rootfs(spec, &mut writer)?;
    writer.finish_tar()
}

/// A channel for [`write_files`]'s copy, and the reader of its other end.
pub fn copy_channel() -> (SyncSender<Bytes>, ChunkReader) {
    let (sender, chunks) = sync_channel(IN_FLIGHT);
    (
        sender,
        ChunkReader {
            chunks,
            current: Bytes::new(),
        },
    )
}

/// The uncompressed tar, as [`LayerWriter`] hands it on; it ends where the tar ends (or early,
/// if writing it failed).
pub struct ChunkReader {
    chunks: Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A layer whose tar is written (its diff id known, its bytes in [`LayerTar`]) while its gzip
/// may still be running.
pub struct SpooledLayer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// The uncompressed tar, until this is dropped.
    pub tar: LayerTar,
    /// The gzipped blob on its way into the store.
    pub gzip: PendingGzip,
}

impl SpooledLayer {
    /// The layer, once its gzip is in the store (waiting on this thread).
    pub fn wait(self) -> io::Result<WrittenLayer> {
        let blob = self.gzip.wait()?;
        Ok(layer(self.diff_id, self.tar_bytes, blob))
    }
}

/// The layer `diff_id` of `tar_bytes` whose gzip is `blob`.
pub fn layer(diff_id: String, tar_bytes: u64, blob: Descriptor) -> WrittenLayer {
    WrittenLayer {
        blob,
        diff_id,
        tar_bytes,
        from_base: false,
    }
}

/// A layer's uncompressed tar in a temporary file beside the store, removed when this is
/// dropped (an open reader keeps reading it).
pub struct LayerTar(tempfile::TempPath);

impl LayerTar {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// A layer's gzip on its thread. Dropped before it is done, it stops within a chunk and its
/// temporary file goes; nothing enters the store.
pub struct PendingGzip {
    worker: Option<std::thread::JoinHandle<()>>,
    result: tokio::sync::oneshot::Receiver<io::Result<Descriptor>>,
    spool: Arc<Spool>,
}

impl PendingGzip {
    /// The blob, once it is in the store (waiting on this thread).
    pub fn wait(mut self) -> io::Result<Descriptor> {
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                return Err(stopped());
            }
        }
        self.result.try_recv().map_err(|_| stopped())?
    }

    /// The blob, once it is in the store (waiting without holding up other tasks).
    pub async fn finished(mut self) -> io::Result<Descriptor> {
        let result = (&mut self.result).await.map_err(|_| stopped());
        // It has sent its answer: it holds nothing more, and ends by itself.
        self.worker = None;
        result?
    }
}

impl Drop for PendingGzip {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            self.spool.abandon();
            let _ = worker.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the gzip thread stopped")
}

/// Takes an uncompressed layer tar, spools it and makes it a gzipped blob in the store.
pub struct LayerWriter {
    hasher: Sha256,
    tar_bytes: u64,
    pending: Vec<u8>,
    tar: Option<tempfile::NamedTempFile>,
    spool: Arc<Spool>,
    gzip: Option<PendingGzip>,
    copy: Option<SyncSender<Bytes>>,
}

impl LayerWriter {
    /// Start a layer bound for `store`; `copy`, when given, receives every chunk too.
    pub fn start(store: &BlobStore, copy: Option<SyncSender<Bytes>>) -> io::Result<LayerWriter> {
        let tar = store.temporary_file()?;
        let reading = tar.as_file().try_clone()?;
        let blob = store.writer()?;
        let spool = Arc::new(Spool::default());
        let (answer, result) = tokio::sync::oneshot::channel();
        let worker_spool = Arc::clone(&spool);
        let worker = std::thread::Builder::new()
            .name("layer-gzip".into())
            .spawn(move || {
                let _ = answer.send(compress(&reading, &worker_spool, blob));
            })?;
        Ok(LayerWriter {
            hasher: Sha256::new(),
            tar_bytes: 0,
            pending: Vec::with_capacity(CHUNK),
            tar: Some(tar),
            gzip: Some(PendingGzip {
                worker: Some(worker),
                result,
                spool: Arc::clone(&spool),
            }),
            spool,
            copy,
        })
    }

    /// The layer, once the whole tar has been written and gzipped.
    pub fn finish(self) -> io::Result<WrittenLayer> {
        self.finish_tar()?.wait()
    }

    /// The layer's tar and diff id, once the whole tar has been written; its gzip goes on.
    pub fn finish_tar(mut self) -> io::Result<SpooledLayer> {
        self.send()?;
        self.copy = None;
        self.spool.complete();
        let (Some(tar), Some(gzip)) = (self.tar.take(), self.gzip.take()) else {
            return Err(stopped());
        };
        Ok(SpooledLayer {
            diff_id: format!("sha256:{}", hex(&self.hasher.clone().finalize())),
            tar_bytes: self.tar_bytes,
            tar: LayerTar(tar.into_temp_path()),
            gzip,
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.tar
            .as_ref()
            .ok_or_else(stopped)?
            .as_file()
            .write_all(&self.pending)?;
        self.spool.grew(self.tar_bytes);
        match &self.copy {
            Some(copy) => {
                let chunk = Bytes::from(std::mem::replace(
                    &mut self.pending,
                    Vec::with_capacity(CHUNK),
                ));
                // A reader that went away only means nobody looks at the copy any more.
                if copy.send(chunk).is_err() {
                    self.copy = None;
                }
            }
            None => self.pending.clear(),
        }
        Ok(())
    }
}

impl Write for LayerWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // The spool grows by whole chunks, and the compressor takes exactly CHUNK bytes at a
        // time, whatever sizes the tar arrives in (an export comes as the network delivers
        // it): deflate's output depends on how its input is fed, and the blob must not.
        let mut rest = data;
        while !rest.is_empty() {
            let room = CHUNK - self.pending.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.pending.extend_from_slice(now);
            self.hasher.update(now);
            self.tar_bytes += now.len() as u64;
            rest = later;
            if self.pending.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How far the spool's writer has got, shared with the gzip thread that follows it.
#[derive(Default)]
struct Spool {
    state: Mutex<SpoolState>,
    changed: Condvar,
}

#[derive(Default)]
struct SpoolState {
    /// Bytes in the file so far.
    written: u64,
    /// The tar is whole: nothing more comes.
    complete: bool,
    /// Nobody waits for the blob any more (the writer failed or was dropped).
    abandoned: bool,
}

impl Spool {
    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        // A panic elsewhere leaves the counts as they were: still true.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut SpoolState)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    fn grew(&self, written: u64) {
        self.update(|s| s.written = written);
    }

    fn complete(&self) {
        self.update(|s| s.complete = true);
    }

    fn abandon(&self) {
        self.update(|s| s.abandoned = true);
    }

    /// How many bytes from `at` to take next: a whole chunk, or what is left once the tar is
    /// whole (0 at its end). An error once the blob is abandoned.
    fn next(&self, at: u64) -> io::Result<usize> {
        let mut state = self.lock();
        loop {
            if state.abandoned {
                return Err(io::Error::other("the layer was abandoned"));
            }
            let ready = state.written - at;
            if ready >= CHUNK as u64 || state.complete {
                return Ok(ready.min(CHUNK as u64) as usize);
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Gzip the spooled tar into `blob`, following the writer; the header holds no name, no time
/// and the unknown OS, so the same tar always gives the same blob.
fn compress(tar: &File, spool: &Spool, blob: BlobWriter) -> io::Result<Descriptor> {
    let mut gzip = GzBuilder::new().write(blob, Compression::new(GZIP_LEVEL));
    let mut chunk = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = spool.next(at)?;
        if n == 0 {
            break;
        }
        tar.read_exact_at(&mut chunk[..n], at)?;
        gzip.write_all(&chunk[..n])?;
        at += n as u64;
    }
    gzip.finish()?.finish(media::LAYER_GZIP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    #[test]
    fn a_layer_is_its_tar_gzipped_the_same_way_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let tar: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let write = |copy| {
            let mut w = LayerWriter::start(&store, copy).expect("start");
            w.write_all(&tar).expect("write");
            w.finish().expect("finish")
        };
        let (copy, mut reader) = copy_channel();
        let reading = std::thread::spawn(move || {
            let mut seen = Vec::new();
            reader.read_to_end(&mut seen).expect("read copy");
            seen
        });
        let first = write(Some(copy));
        assert_eq!(reading.join().expect("reader"), tar, "the copy is the tar");
        let second = write(None);
        assert_eq!(first, second, "same tar, same blob");
        let mut pieces = LayerWriter::start(&store, None).expect("start");
        for piece in tar.chunks(7919) {
            pieces.write_all(piece).expect("write");
        }
        assert_eq!(
            pieces.finish().expect("finish"),
            first,
            "the same blob whatever sizes the tar comes in"
        );
        assert_eq!(
            first.diff_id,
            format!("sha256:{}", hex(&Sha256::digest(&tar)))
        );
        assert_eq!(first.tar_bytes, tar.len() as u64);
        let gz = std::fs::read(store.path(&first.blob.digest)).expect("blob");
        assert_eq!(gz.len() as u64, first.blob.size);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "no time in the gzip header");
        assert_eq!(gz[3] & 0x08, 0, "no file name in the gzip header");
        assert_eq!(gz[9], 255, "unknown OS");
        let mut unpacked = Vec::new();
        GzDecoder::new(gz.as_slice())
            .read_to_end(&mut unpacked)
            .expect("gunzip");
        assert_eq!(unpacked, tar);
    }

    /// The names in the store's folder.
    fn files(store: &BlobStore) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.root().join("sha256"))
            .map(|dir| {
                dir.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn the_tar_is_whole_before_its_gzip_and_goes_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let tar: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
        let mut writer = LayerWriter::start(&store, None).expect("start");
        writer.write_all(&tar).expect("write");
        let spooled = writer.finish_tar().expect("finish tar");
        assert_eq!(std::fs::read(spooled.tar.path()).expect("tar"), tar);
        assert_eq!(spooled.tar_bytes, tar.len() as u64);
        assert_eq!(
            spooled.diff_id,
            format!("sha256:{}", hex(&Sha256::digest(&tar)))
        );
        let tar_path = spooled.tar.path().to_path_buf();
        let SpooledLayer {
            diff_id,
            tar_bytes,
            tar: spool,
            gzip,
        } = spooled;
        let blob = gzip.wait().expect("gzip");
        drop(spool);
        assert!(!tar_path.exists(), "the plain tar goes with its owner");
        assert_eq!(files(&store), [blob.digest[7..].to_string()]);
        let mut whole = LayerWriter::start(&store, None).expect("start");
        whole.write_all(&tar).expect("write");
        assert_eq!(
            whole.finish().expect("finish"),
            layer(diff_id, tar_bytes, blob),
            "the same blob as when waited for at once"
        );
    }

    #[test]
    fn an_abandoned_layer_leaves_nothing_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let tar = vec![7u8; 2_000_000];
        // A writer that fails half way (dropped unfinished).
        let mut writer = LayerWriter::start(&store, None).expect("start");
        writer.write_all(&tar).expect("write");
        drop(writer);
        assert_eq!(files(&store), Vec::<String>::new());
        // A whole tar whose gzip nobody waits for (Ctrl-C during the load): the gzip stops,
        // or, if it was done already, its blob is whole; no temporary file is left either way.
        let mut writer = LayerWriter::start(&store, None).expect("start");
        writer.write_all(&tar).expect("write");
        drop(writer.finish_tar().expect("finish tar"));
        for name in files(&store) {
            assert!(!name.starts_with('.'), "{name} left behind");
            let blob = std::fs::read(store.root().join("sha256").join(&name)).expect("blob");
            assert_eq!(hex(&Sha256::digest(&blob)), name, "a blob is whole");
        }
    }
}
