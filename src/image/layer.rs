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
use flate2::Compression;
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

    /// The block of the tar from `at` to compress next: its length, and whether it is the
    /// tar's last. A block is [`BLOCK`] bytes, or what is left once the tar is whole; it is
    /// known not to be the last only once more follows it, so where blocks end and which one
    /// is last never depend on how fast the tar arrives. An error once the blob is abandoned.
    fn next_block(&self, at: u64) -> io::Result<(usize, bool)> {
        let mut state = self.lock();
        loop {
            if state.abandoned {
                return Err(io::Error::other("the layer was abandoned"));
            }
            let ready = state.written - at;
            if ready > BLOCK as u64 {
                return Ok((BLOCK, false));
            }
            if state.complete {
                return Ok((ready as usize, true));
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Bytes of the tar each deflate block of the gzip covers. Blocks are compressed on as many
/// threads as there are cores (pigz's way), each primed with the last [`WINDOW`] bytes of the
/// block before it and ending on a sync flush, so they join into one ordinary gzip stream: a
/// layer of 12 MiB no longer waits for one core to compress it after the engine has loaded it.
const BLOCK: usize = 1 << 20;

/// How much of the block before primes a block's compressor: deflate's whole window.
const WINDOW: usize = 32 * 1024;

/// At most this many blocks are compressed at once.
const MAX_THREADS: usize = 8;

/// The gzip header: deflate, no name, no time, no extra flags, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Gzip the spooled tar into `blob`, following the writer. The blob depends only on the tar:
/// blocks end at fixed offsets, each is compressed from its own bytes and the tail of the one
/// before at one fixed level, and the header holds no name, no time and the unknown OS; how
/// many threads there are changes only how fast it is.
fn compress(tar: &File, spool: &Spool, mut blob: BlobWriter) -> io::Result<Descriptor> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS);
    blob.write_all(&GZIP_HEADER)?;
    let mut crc = flate2::Crc::new();
    let mut total = 0u64;
    let mut primer: Vec<u8> = Vec::new();
    let mut last = false;
    while !last {
        let mut round = Vec::with_capacity(threads);
        while round.len() < threads && !last {
            let (n, is_last) = spool.next_block(total)?;
            let mut block = vec![0u8; n];
            tar.read_exact_at(&mut block, total)?;
            crc.update(&block);
            total += n as u64;
            last = is_last;
            round.push(block);
        }
        for deflated in deflate_round(&round, &primer, last)? {
            blob.write_all(&deflated)?;
        }
        if let Some(block) = round.last() {
            primer = tail(block).to_vec();
        }
    }
    blob.write_all(&crc.sum().to_le_bytes())?;
    // ISIZE: the length modulo 2^32.
    blob.write_all(&(total as u32).to_le_bytes())?;
    blob.finish(media::LAYER_GZIP)
}

/// The blocks of `round` deflated (each on a thread of its own when there are several), in
/// order; the first is primed with `primer`, the others with the block before them, and the
/// round's last block ends the stream when `last`.
fn deflate_round(round: &[Vec<u8>], primer: &[u8], last: bool) -> io::Result<Vec<Vec<u8>>> {
    let job = |i: usize| {
        let dictionary = if i == 0 { primer } else { tail(&round[i - 1]) };
        deflate_block(&round[i], dictionary, last && i + 1 == round.len())
    };
    if round.len() <= 1 {
        return (0..round.len()).map(job).collect();
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..round.len())
            .map(|i| scope.spawn(move || job(i)))
            .collect();
        running
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a gzip thread panicked")))
            })
            .collect()
    })
}

/// The last [`WINDOW`] bytes of `block` (all of it when shorter).
fn tail(block: &[u8]) -> &[u8] {
    &block[block.len().saturating_sub(WINDOW)..]
}

/// `block` as raw deflate at [`GZIP_LEVEL`], primed with `dictionary`: ending the stream when
/// `last`, else on a sync flush (byte-aligned, not final) so the next block's output follows.
fn deflate_block(block: &[u8], dictionary: &[u8], last: bool) -> io::Result<Vec<u8>> {
    use flate2::{Compress, FlushCompress, Status};
    let mut deflate = Compress::new(Compression::new(GZIP_LEVEL), false);
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Deflate's bound for input that does not compress, and room for the flush.
    let mut out = Vec::with_capacity(block.len() + block.len() / 1000 + 1024);
    loop {
        let taken = deflate.total_in() as usize;
        let status = deflate
            .compress_vec(&block[taken..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = deflate.total_in() as usize == block.len();
        // A flush is complete once deflate stops with room to spare.
        let done = match status {
            Status::StreamEnd => true,
            _ => !last && all_in && out.len() < out.capacity(),
        };
        if done {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
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

    #[test]
    fn blocks_deflated_together_or_apart_make_one_gzip_stream() {
        // Four blocks, the last short; text that compresses, so the primers matter.
        let text: Vec<u8> = (0..(3 * BLOCK + 5000))
            .map(|i| b"layer tar bytes, "[i % 17] ^ ((i / 4099) as u8 & 1))
            .collect();
        let blocks: Vec<Vec<u8>> = text.chunks(BLOCK).map(<[u8]>::to_vec).collect();
        let together = deflate_round(&blocks, &[], true).expect("round").concat();
        let mut apart = Vec::new();
        apart.extend(
            deflate_round(&blocks[..1], &[], false)
                .expect("one")
                .concat(),
        );
        apart.extend(
            deflate_round(&blocks[1..2], tail(&blocks[0]), false)
                .expect("two")
                .concat(),
        );
        apart.extend(
            deflate_round(&blocks[2..], tail(&blocks[1]), true)
                .expect("rest")
                .concat(),
        );
        assert_eq!(together, apart, "the thread count changes nothing");
        let mut inflated = Vec::new();
        flate2::read::DeflateDecoder::new(together.as_slice())
            .read_to_end(&mut inflated)
            .expect("inflate");
        assert_eq!(inflated, text, "one deflate stream");
        assert!(
            together.len() < text.len() / 4,
            "it compresses: {}",
            together.len()
        );
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
