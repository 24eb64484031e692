//! Issue 14's first target: writing the runtime image and loading it, against what dockception
//! did before it wrote images itself (the classic builder on a base, `docker import` on
//! scratch), with a fresh 5 MiB artifact every time so no way meets a cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::phased::run_phased;
use super::{capture, median, quiet, Leftovers};

/// The artifact: 5 MiB from /dev/urandom, new each build (nothing compresses, nothing is cached).
pub(super) const ARTIFACT_BYTES: u64 = 5 << 20;
/// The artifact of the floor's way: a new image whose one layer is (almost) empty, so what it
/// costs is what any new image costs on the engine.
pub(super) const FLOOR_BYTES: u64 = 16;
/// At least this many timed rounds, after one warm-up round that is not counted.
pub(super) const MIN_REPS: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ImageWay {
    /// `dockception build` onto busybox:local: the image phase, from the progress output.
    OursBusybox,
    /// `dockception context` (untimed), then `DOCKER_BUILDKIT=0 docker build -` of it (timed).
    Classic,
    /// `dockception build` onto scratch.
    OursScratch,
    /// The context's files as a root file system tar (untimed), then `docker import` (timed).
    Import,
    /// `dockception build` onto scratch of a [`FLOOR_BYTES`] artifact: the floor.
    OursScratchFloor,
}

pub(super) const IMAGE_WAYS: [ImageWay; 5] = [
    ImageWay::OursBusybox,
    ImageWay::Classic,
    ImageWay::OursScratch,
    ImageWay::Import,
    ImageWay::OursScratchFloor,
];

impl ImageWay {
    fn slug(self) -> &'static str {
        match self {
            ImageWay::OursBusybox => "ours-busybox",
            ImageWay::Classic => "classic-busybox",
            ImageWay::OursScratch => "ours-scratch",
            ImageWay::Import => "import-scratch",
            ImageWay::OursScratchFloor => "ours-scratch-floor",
        }
    }
    fn artifact_bytes(self) -> u64 {
        match self {
            ImageWay::OursScratchFloor => FLOOR_BYTES,
            _ => ARTIFACT_BYTES,
        }
    }
    fn base(self) -> &'static str {
        match self {
            ImageWay::OursBusybox | ImageWay::Classic => "busybox:local",
            ImageWay::OursScratch | ImageWay::Import | ImageWay::OursScratchFloor => "scratch",
        }
    }
    pub(super) fn title(self) -> &'static str {
        match self {
            ImageWay::OursBusybox => {
                "dockception: write the image, `docker load` it (busybox:local)"
            }
            ImageWay::Classic => {
                "before: generated Dockerfile, `DOCKER_BUILDKIT=0 docker build -` (busybox:local)"
            }
            ImageWay::OursScratch => "dockception: write the image, `docker load` it (scratch)",
            ImageWay::Import => "before: `docker import` of the root file system tar (scratch)",
            ImageWay::OursScratchFloor => {
                "dockception, a 16-byte artifact (scratch): what any new image costs"
            }
        }
    }
    pub(super) fn ours(self) -> bool {
        matches!(
            self,
            ImageWay::OursBusybox | ImageWay::OursScratch | ImageWay::OursScratchFloor
        )
    }
    fn tag(self) -> String {
        format!("dockception-bench/image:{}", self.slug())
    }
}

/// One timed round of one way.
#[derive(Debug, Clone, Default)]
pub(super) struct ImageSample {
    /// What the target compares: dockception's image phase, or the old way's engine command.
    pub(super) seconds: f64,
    /// dockception: writing the layer, config and manifest (to the `loading` phase line).
    pub(super) assemble: Option<f64>,
    /// dockception: from the `loading` phase line to the process's exit.
    pub(super) load: Option<f64>,
    /// dockception: the whole `build` process.
    pub(super) process: Option<f64>,
}

pub(super) struct ImageBench {
    pub(super) reps: usize,
    pub(super) samples: std::collections::BTreeMap<ImageWay, Vec<ImageSample>>,
    /// `docker image inspect` of the base by the same CLI: its start plus one API call.
    pub(super) cli_floor: Vec<f64>,
}

impl ImageBench {
    pub(super) fn median(&self, way: ImageWay, pick: impl Fn(&ImageSample) -> Option<f64>) -> f64 {
        median(
            &mut self.samples[&way]
                .iter()
                .filter_map(pick)
                .collect::<Vec<_>>(),
        )
    }
}

fn manifest(way: ImageWay) -> String {
    let entrypoint = if way.base() == "scratch" {
        "[\"/blob\"]"
    } else {
        "[\"/bin/ls\", \"-l\", \"/blob\"]"
    };
    format!(
        "[builder]\nimage = \"busybox:local\"\nrun = \"head -c {bytes} /dev/urandom > /out/blob\"\n\n\
         [artifacts]\ninclude = [\"blob\"]\n\n\
         [runtime]\nbase = \"{base}\"\nuser = \"65534:65534\"\nentrypoint = {entrypoint}\n\n\
         [image]\ntags = [\"{tag}\"]\n",
        bytes = way.artifact_bytes(),
        base = way.base(),
        tag = way.tag(),
    )
}

/// Measure every way `reps` times (at least [`MIN_REPS`]), rotating which way goes first.
pub(super) fn measure_image(
    bin: &Path,
    work: &Path,
    reps: usize,
    leftovers: &mut Leftovers,
) -> Result<ImageBench, String> {
    let reps = reps.max(MIN_REPS);
    let mut dirs = std::collections::BTreeMap::new();
    for way in IMAGE_WAYS {
        let dir = work.join("image").join(way.slug());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("dockception.toml"), manifest(way)).map_err(|e| e.to_string())?;
        dirs.insert(way, dir);
        leftovers.tags.push(way.tag());
    }
    let mut bench = ImageBench {
        reps,
        samples: Default::default(),
        cli_floor: Vec::new(),
    };
    for rep in 0..=reps {
        let start = Instant::now();
        quiet(Command::new("/usr/bin/docker").args([
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            "busybox:local",
        ]))?;
        let floor = start.elapsed().as_secs_f64();
        for n in 0..IMAGE_WAYS.len() {
            let way = IMAGE_WAYS[(n + rep) % IMAGE_WAYS.len()];
            eprintln!(
                "==> assembly plus load, {}: {}",
                if rep == 0 {
                    "warm-up".to_string()
                } else {
                    format!("rep {rep}/{reps}")
                },
                way.title()
            );
            let sample = sample(way, &dirs[&way], bin)?;
            let id = capture(Command::new("docker").args([
                "image",
                "inspect",
                "-f",
                "{{.Id}}",
                &way.tag(),
            ]))?;
            leftovers.images.push(id.trim().to_string());
            if rep > 0 {
                bench.samples.entry(way).or_default().push(sample);
            }
        }
        if rep > 0 {
            bench.cli_floor.push(floor);
        }
    }
    Ok(bench)
}

fn sample(way: ImageWay, dir: &Path, bin: &Path) -> Result<ImageSample, String> {
    if way.ours() {
        let run = run_phased(
            Command::new(bin)
                .args([
                    "build",
                    "--force",
                    "--progress",
                    "plain",
                    "--format",
                    "json",
                ])
                .current_dir(dir),
        )?;
        let building = run
            .at("building the runtime image")
            .ok_or("no `building the runtime image` phase in the progress output")?;
        let loading = run
            .at("loading ")
            .ok_or("no `loading` phase in the progress output")?;
        return Ok(ImageSample {
            seconds: run.seconds - building,
            assemble: Some(loading - building),
            load: Some(run.seconds - loading),
            process: Some(run.seconds),
        });
    }
    // The old ways: the same builder run and the same context, then the engine command alone.
    let context = dir.join("context.tar");
    let file = std::fs::File::create(&context).map_err(|e| e.to_string())?;
    quiet(
        Command::new(bin)
            .args(["context", "--quiet"])
            .current_dir(dir)
            .stdout(file),
    )?;
    let mut command = if way == ImageWay::Classic {
        let mut c = Command::new("/usr/bin/docker");
        c.env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", &way.tag(), "-"])
            .stdin(std::fs::File::open(&context).map_err(|e| e.to_string())?);
        c
    } else {
        let rootfs = rootfs_tar(dir, &context)?;
        let mut c = Command::new("/usr/bin/docker");
        c.args([
            "import",
            "--change",
            "ENTRYPOINT [\"/blob\"]",
            "--change",
            "USER 65534:65534",
            "--change",
            "LABEL dockception=image",
        ])
        .arg(&rootfs)
        .arg(way.tag())
        .stdin(Stdio::null());
        c
    };
    let start = Instant::now();
    quiet(command.current_dir(dir))?;
    Ok(ImageSample {
        seconds: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// The context's `rootfs/` as a tar of its own: what the import path sent to the engine.
fn rootfs_tar(dir: &Path, context: &Path) -> Result<PathBuf, String> {
    let unpacked = dir.join("context");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    quiet(
        Command::new("tar")
            .arg("-xf")
            .arg(context)
            .arg("-C")
            .arg(&unpacked),
    )?;
    let rootfs = dir.join("rootfs.tar");
    quiet(
        Command::new("tar")
            .arg("-C")
            .arg(unpacked.join("rootfs"))
            .args(["--sort=name", "--owner=0", "--group=0", "-cf"])
            .arg(&rootfs)
            .arg("."),
    )?;
    Ok(rootfs)
}

/// The section of BENCHMARKS.md, and the two targets.
pub(super) fn render(bench: &ImageBench, targets: &mut Vec<super::Target>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Assembly plus load: the image dockception writes against the engine's builders\n\n\
         The builder writes a {artifact} file from `/dev/urandom`, new every build (so no way meets a cache and\n\
         nothing compresses); every way ships it as the image's one layer on busybox:local or on scratch.\n\
         Median of {reps} rounds after one warm-up round (not counted; it keeps busybox's layers in the blob\n\
         store), all five ways in every round, the first way rotating from round to round. The last way\n\
         is dockception on scratch with a {floor_bytes}-byte artifact: the engine's cost of any new image (its\n\
         *load and report* column is what a rebuild pays however small its change).\n\n\
         - **dockception**: `dockception build --force --progress plain --format json`. Measured: from the\n  \
           moment the `==> building the runtime image` phase line reaches stderr to the process's exit,\n  \
           so the builder and the artifacts' selection are left out and writing the layer (tar, sha256,\n  \
           gzip into the blob store), the config and the manifest, measuring it, `docker load`\n  \
           (only what the engine lacks), the engine's answer and the report are in. Split at the\n  \
           `==> loading` line: *assemble* before it, *load and report* after it.\n\
         - **before, on a base**: what dockception did until it wrote images itself: `dockception\n  \
           context > context.tar` (untimed: the same builder run and generated Dockerfile, `FROM\n  \
           busybox:local`, `COPY rootfs/ /`, `ENTRYPOINT`), then `DOCKER_BUILDKIT=0 /usr/bin/docker build\n  \
           -q -t TAG - < context.tar`, timed from spawn to exit.\n\
         - **before, on scratch**: the context's `rootfs/` as a tar of its own (untimed), then\n  \
           `/usr/bin/docker import --change ENTRYPOINT… --change USER… --change LABEL… rootfs.tar TAG`,\n  \
           timed from spawn to exit.\n\n\
         The old ways are timed as the docker CLI runs them, which includes the CLI's own start; for scale,\n\
         `/usr/bin/docker image inspect busybox:local` (the CLI's start and one API call) takes {floor}, median\n\
         of {n} (same run). The old dockception called the same API through bollard, without that start,\n\
         and then measured the image by exporting it back from the engine, which is not counted here.\n",
        artifact = super::bytes(ARTIFACT_BYTES),
        floor_bytes = FLOOR_BYTES,
        reps = bench.reps,
        floor = super::secs(median(&mut bench.cli_floor.clone())),
        n = bench.cli_floor.len(),
    );
    let _ = writeln!(
        out,
        "| way | image phase (median) | assemble | load and report | whole process | samples (s) |\n|---|---:|---:|---:|---:|---|"
    );
    for way in IMAGE_WAYS {
        let part = |pick: fn(&ImageSample) -> Option<f64>| {
            let m = bench.median(way, pick);
            if m.is_nan() {
                "".to_string()
            } else {
                super::secs(m)
            }
        };
        let list: Vec<String> = bench.samples[&way]
            .iter()
            .map(|s| format!("{:.3}", s.seconds))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            way.title(),
            part(|s| Some(s.seconds)),
            part(|s| s.assemble),
            part(|s| s.load),
            part(|s| s.process),
            list.join(", ")
        );
    }
    out.push('\n');
    let med = |way| bench.median(way, |s| Some(s.seconds));
    let busybox = med(ImageWay::OursBusybox) / med(ImageWay::Classic);
    let scratch = med(ImageWay::OursScratch) / med(ImageWay::Import);
    targets.push((
        format!(
            "assembly plus load of a {} artifact on busybox:local at most 0.5x the classic builder path",
            super::bytes(ARTIFACT_BYTES)
        ),
        format!(
            "{busybox:.2}x ({} vs {})",
            super::secs(med(ImageWay::OursBusybox)),
            super::secs(med(ImageWay::Classic))
        ),
        busybox <= 0.5,
    ));
    targets.push((
        format!(
            "assembly plus load of a {} artifact on scratch at most the import path",
            super::bytes(ARTIFACT_BYTES)
        ),
        format!(
            "{scratch:.2}x ({} vs {})",
            super::secs(med(ImageWay::OursScratch)),
            super::secs(med(ImageWay::Import))
        ),
        scratch <= 1.0,
    ));
    out.push_str(NOTES);
    out
}

/// Where the image phase's time goes, as understood when this harness was written; review it
/// against the new numbers after every run.
const NOTES: &str = "\
Where dockception's image phase goes (the *assemble* and *load and report* columns):

- *Assemble* is writing our layer's tar (sha256, the report's listing) into a temporary file
  beside the blob store, and the config. The gzip (level 6, zlib-rs; 5 MiB that do not compress
  take it about 110 to 190 ms here) is no longer before the load: `docker load` takes the plain
  tar (the config names layers by their uncompressed digests) while a thread of its own gzips
  the file into the blob store, for the manifest digest, the report's sizes, a push or an output.
- *Load and report* is `docker load` of the archive plus the image's facts and the report. An
  strace of one scratch build (loaded machine) showed the gzip and the manifest done about 100
  ms after the `loading` line and the engine's answer some 300 ms later: the engine's load is
  the critical path now, and dockception's own work after the answer is about 10 ms.
- On scratch, `docker import` unpacks the one tar as it arrives, while `docker load` first
  untars the whole archive on the engine and then applies the layer from there (DESIGN.md), so
  load stays above import by that extra pass. Import would stamp its own config (time, docker
  version), so it cannot give the image id of the config dockception wrote; the scratch target
  needs a faster load on the engine's side, or streaming the layer into the load as it is
  written (its size is known only at the end today), which would save the assemble column.

";
