//! A layer as bytes we write: the tar passes through a [`LayerWriter`], which hashes it (the
//! diff id), gzips it reproducibly on a thread of its own into the blob store (no name and no
//! time in the gzip header, one fixed level), and can hand every chunk to a reader beside it
//! (the report's scan), shared, not copied. Memory stays bounded whatever the layer's size.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::fsutil::hex;

use super::blobs::{BlobStore, BlobWriter};
use super::context::{self, ContextSpec};
use super::{media, WrittenLayer};

/// The gzip level of every layer: the level `docker push` uses, so sizes compare.
pub const GZIP_LEVEL: u32 = 6;

/// How many bytes go to the gzip thread (and the copy) at a time.
const CHUNK: usize = 256 * 1024;

/// How many chunks may wait for the gzip thread or the copy's reader: 8 MiB each.
const IN_FLIGHT: usize = 32;

/// Write the layer of `spec`'s files (the artifacts, libraries and init at their image paths)
/// into `store`. `copy` receives every chunk of the uncompressed tar as it is written.
pub fn write_files(
    spec: &ContextSpec,
    store: &BlobStore,
    copy: Option<SyncSender<Bytes>>,
) -> io::Result<WrittenLayer> {
    let mut writer = LayerWriter::start(store, copy)?;
    context::write_rootfs(spec, &mut writer)?;
    writer.finish()
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

/// Takes an uncompressed layer tar and makes it a gzipped blob in the store.
pub struct LayerWriter {
    hasher: Sha256,
    tar_bytes: u64,
    pending: Vec<u8>,
    gzip: Option<SyncSender<Bytes>>,
    worker: Option<std::thread::JoinHandle<io::Result<super::Descriptor>>>,
    copy: Option<SyncSender<Bytes>>,
}

impl LayerWriter {
    /// Start a layer bound for `store`; `copy`, when given, receives every chunk too.
    pub fn start(store: &BlobStore, copy: Option<SyncSender<Bytes>>) -> io::Result<LayerWriter> {
        let blob = store.writer()?;
        let (gzip, chunks) = sync_channel::<Bytes>(IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("layer-gzip".into())
            .spawn(move || compress(chunks, blob))?;
        Ok(LayerWriter {
            hasher: Sha256::new(),
            tar_bytes: 0,
            pending: Vec::with_capacity(CHUNK),
            gzip: Some(gzip),
            worker: Some(worker),
            copy,
        })
    }

    /// The layer, once the whole tar has been written.
    pub fn finish(mut self) -> io::Result<WrittenLayer> {
        self.send()?;
        self.gzip = None;
        self.copy = None;
        let blob = match self.worker.take().map(|w| w.join()) {
            Some(Ok(result)) => result?,
            _ => return Err(io::Error::other("the gzip thread stopped")),
        };
        Ok(WrittenLayer {
            blob,
            diff_id: format!("sha256:{}", hex(&self.hasher.clone().finalize())),
            tar_bytes: self.tar_bytes,
            from_base: false,
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(CHUNK),
        ));
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the gzip thread stopped");
        self.gzip
            .as_ref()
            .ok_or_else(gone)?
            .send(chunk.clone())
            .map_err(|_| gone())?;
        if let Some(copy) = &self.copy {
            // A reader that went away only means nobody looks at the copy any more.
            if copy.send(chunk).is_err() {
                self.copy = None;
            }
        }
        Ok(())
    }
}

impl Write for LayerWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.tar_bytes += data.len() as u64;
        // The compressor sees chunks of exactly CHUNK bytes, whatever sizes the tar arrives in
        // (an export comes as the network delivers it): deflate's output depends on how its
        // input is fed, and the blob must not.
        let mut rest = data;
        while !rest.is_empty() {
            let room = CHUNK - self.pending.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.pending.extend_from_slice(now);
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

impl Drop for LayerWriter {
    fn drop(&mut self) {
        // Unfinished: close the channel so the thread ends and its temporary file goes.
        self.gzip = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Gzip every chunk into `blob`; the header holds no name, no time and the unknown OS, so the
/// same tar always gives the same blob.
fn compress(chunks: Receiver<Bytes>, blob: BlobWriter) -> io::Result<super::Descriptor> {
    let mut gzip = GzBuilder::new().write(blob, Compression::new(GZIP_LEVEL));
    for chunk in chunks {
        gzip.write_all(&chunk)?;
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
}
