//! Reading an image's files through the archive API of a container that never runs: nothing of
//! the image executes, so this works for any image, with or without a shell.

use std::path::Path;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;

use super::containers::{labels, offline, unique_name};
use super::error::{docker_error, Answer, On};
use super::{Engine, Entry, ImageFiles, Result};

impl Engine {
    /// Open `image`'s files for reading (the image must be present).
    pub(crate) async fn open_image_files(&self, image: &str, project: &str) -> Result<ImageFiles> {
        let name = unique_name("dockception-files", project);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never run: the archive API reads a stopped container's files. An image without
            // a command still needs one to create a container.
            cmd: Some(vec!["/dockception-never-runs".into()]),
            labels: Some(labels("files", project)),
            network_disabled: Some(true),
            host_config: Some(offline(None)),
            ..Default::default()
        };
        let action = || format!("creating a container of {image} to read its files");
        self.create_untracked(&name, body, action).await?;
        Ok(ImageFiles {
            name,
            image: image.to_string(),
        })
    }

    /// What is at `path` in the image: a file, a symlink (with its target resolved inside the
    /// image), something else, or nothing.
    pub(crate) async fn stat_image_file(&self, files: &ImageFiles, path: &str) -> Result<Entry> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        let stat = self
            .docker
            .get_container_archive_info(&files.name, Some(options))
            .await
            .or_absent()
            .doing(On::Image(&files.image), || {
                format!("looking at {path} in {}", files.image)
            })?;
        Ok(stat.map_or(Entry::Missing, |s| entry_of(s.file_mode, &s.link_target)))
    }

    /// Copy the regular file at `path` in the image to `dest` on the host (its folders are
    /// made); a symlink at `path` is followed. Returns the bytes copied.
    pub(crate) async fn copy_image_file(
        &self,
        files: &ImageFiles,
        path: &str,
        dest: &Path,
    ) -> Result<u64> {
        let action = || format!("copying {path} out of {}", files.image);
        // The archive API packs a symlink as a link: ask for where it leads.
        let mut source = path.to_string();
        if let Entry::Symlink { target } = self.stat_image_file(files, path).await? {
            source = target;
        }
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(&source)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&files.name, Some(options));
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let dest_owned = dest.to_path_buf();
        let unpack = tokio::task::spawn_blocking(move || unpack_one_file(receiver, &dest_owned));
        let mut streamed: Result<()> = Ok(());
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    streamed = Err(docker_error(On::Image(&files.image), action(), e));
                    break;
                }
            }
        }
        drop(sender);
        let failed = |message: String| On::Image(&files.image).error(action(), message);
        let unpacked = unpack
            .await
            .map_err(|e| failed(format!("the copy stopped: {e}")))?;
        streamed?;
        unpacked.map_err(|e| failed(e.to_string()))
    }

    /// Remove the container behind `files`.
    pub(crate) async fn close_image_files(&self, files: ImageFiles) -> Result<()> {
        self.remove_container(&files.name).await
    }
}

/// An entry of the engine's path stat: Go's `os.FileMode` bits and the resolved link target.
fn entry_of(mode: u32, link_target: &str) -> Entry {
    const MODE_DIR: u32 = 1 << 31;
    const MODE_SYMLINK: u32 = 1 << 27;
    const MODE_TYPE: u32 =
        MODE_DIR | MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
    if mode & MODE_SYMLINK != 0 && !link_target.is_empty() {
        Entry::Symlink {
            target: link_target.to_string(),
        }
    } else if mode & MODE_TYPE == 0 {
        Entry::File {
            executable: mode & 0o111 != 0,
        }
    } else {
        Entry::Other
    }
}

/// Write the first regular file of the tar arriving on `chunks` to `dest`.
fn unpack_one_file(
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    dest: &Path,
) -> std::io::Result<u64> {
    let reader = ChannelReader {
        chunks,
        current: Bytes::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = std::fs::File::create(dest)?;
            return std::io::copy(&mut entry, &mut out);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the engine sent no regular file",
    ))
}

/// Blocking reads over chunks sent from async code.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_file_modes_tell_files_links_and_the_rest() {
        assert_eq!(entry_of(0o755, ""), Entry::File { executable: true });
        assert_eq!(entry_of(0o644, ""), Entry::File { executable: false });
        assert_eq!(
            entry_of((1 << 27) | 0o777, "/lib/libc.so.6"),
            Entry::Symlink {
                target: "/lib/libc.so.6".into()
            }
        );
        assert_eq!(entry_of((1 << 31) | 0o755, ""), Entry::Other);
    }
}
