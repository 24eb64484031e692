//! `dockception init`: a starter manifest for the project in this folder.

use std::path::Path;

use crate::fsutil::FromIo as _;
use crate::Error;

/// `dockception init`.
pub(super) fn init(manifest: &Path) -> Result<(), Error> {
    let folder = std::env::current_dir().map_err(|e| Error::io("reading", ".", e))?;
    let kind = crate::manifest::starter::write_starter(&folder, manifest)?;
    eprintln!(
        "wrote {} for a {kind} project; edit it, then run: dockception build",
        manifest.display()
    );
    Ok(())
}
