//! Reports on disk, and where a baseline comes from. Every build stores its report as
//! `report.json` in the tool's output folder, written atomically (a temporary file renamed into
//! place), and keeps the one before as `report.previous.json`: the next build, and
//! `dockception report`, compare with it.

use std::path::{Path, PathBuf};

use crate::report::{Error, Result};
use crate::report::{Report, SCHEMA_VERSION};

/// The last build's report, in the output folder.
pub const REPORT_FILE: &str = "report.json";
/// The report of the build before it.
pub const PREVIOUS_FILE: &str = "report.previous.json";

/// Something to compare with, or to report on: a report file or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A report written by a build (or by `dockception report --format json`).
    File(PathBuf),
    /// An image reference or id, measured through the engine.
    Image(String),
}

impl Source {
    /// A path that exists or ends in `.json` is a report file; anything else an image.
    pub fn parse(text: &str) -> Source {
        let path = Path::new(text);
        if path.is_file() || text.ends_with(".json") {
            Source::File(path.to_path_buf())
        } else {
            Source::Image(text.to_string())
        }
    }

    /// How it is named in messages and in the report's `baseline.source`.
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Image(image) => image.clone(),
        }
    }
}

/// Store `report` as `<out_dir>/report.json`; the report it replaces becomes
/// `report.previous.json`. `report.json` is never missing or half-written: the new one is
/// written to a temporary file and renamed over it.
pub fn save(out_dir: &Path, report: &Report) -> Result<()> {
    let failed = |path: &Path, e: std::io::Error| Error::ReportFile {
        action: "writing",
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(out_dir).map_err(|e| failed(out_dir, e))?;
    let current = out_dir.join(REPORT_FILE);
    let previous = out_dir.join(PREVIOUS_FILE);
    let mut text = serde_json::to_string_pretty(report).map_err(|e| Error::ReportFile {
        action: "writing",
        path: current.clone(),
        message: e.to_string(),
    })?;
    text.push('\n');

    if current.exists() {
        // Link (or copy) the old report aside first, so report.json stays in place until the
        // new one replaces it.
        let aside = out_dir.join(format!(".{PREVIOUS_FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&aside);
        if std::fs::hard_link(&current, &aside).is_err() {
            std::fs::copy(&current, &aside).map_err(|e| failed(&aside, e))?;
        }
        std::fs::rename(&aside, &previous).map_err(|e| failed(&previous, e))?;
    } else if previous.exists() {
        std::fs::remove_file(&previous).map_err(|e| failed(&previous, e))?;
    }
    crate::fsutil::write_atomic(&current, text.as_bytes()).map_err(|e| failed(&current, e))
}

/// Read a report file; a missing file is `Ok(None)`.
pub fn load_if_present(path: &Path) -> Result<Option<Report>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::ReportFile {
            action: "reading",
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Parse a report, checking its schema version first so an incompatible file gets a clear
/// message instead of a missing-field error.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Report> {
    let bad = |message: String| Error::ReportFile {
        action: "reading",
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(bad(format!(
                "it has schema version {v}, this dockception reads version {SCHEMA_VERSION}; rebuild to write a new one"
            )))
        }
        None => {
            return Err(bad(
                "it has no schema_version: it is not a dockception report".into(),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saving_keeps_the_previous_report_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Report::empty("sha256:first");
        save(dir.path(), &first).expect("save");
        assert!(!dir.path().join(PREVIOUS_FILE).exists());
        let second = Report::empty("sha256:second");
        save(dir.path(), &second).expect("save");
        let current = load_if_present(&dir.path().join(REPORT_FILE)).expect("read");
        let previous = load_if_present(&dir.path().join(PREVIOUS_FILE)).expect("read");
        assert_eq!(current.map(|r| r.image_id), Some("sha256:second".into()));
        assert_eq!(previous.map(|r| r.image_id), Some("sha256:first".into()));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_stale_previous_report_goes_when_there_is_no_current_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PREVIOUS_FILE), "{}").expect("write");
        save(dir.path(), &Report::empty("sha256:x")).expect("save");
        assert!(!dir.path().join(PREVIOUS_FILE).exists());
    }

    #[test]
    fn foreign_or_newer_files_are_refused_clearly() {
        let path = Path::new("r.json");
        let err = parse(path, b"{\"schema_version\": 99}").expect_err("newer");
        assert!(err.to_string().contains("schema version 99"), "{err}");
        let err = parse(path, b"[]").expect_err("foreign");
        assert!(
            err.to_string().contains("not a dockception report"),
            "{err}"
        );
        let err = parse(path, b"{").expect_err("broken");
        assert!(
            err.to_string()
                .starts_with("reading report r.json: not JSON"),
            "{err}"
        );
        assert_eq!(
            load_if_present(Path::new("/nonexistent/r.json")).expect("ok"),
            None
        );
    }

    #[test]
    fn sources_are_files_or_images() {
        assert_eq!(Source::parse("main.json"), Source::File("main.json".into()));
        assert_eq!(Source::parse("app:main"), Source::Image("app:main".into()));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("baseline");
        std::fs::write(&file, "{}").expect("write");
        assert_eq!(
            Source::parse(file.to_str().expect("utf-8")),
            Source::File(file.clone())
        );
    }
}
