//! What a person sees, through a real terminal: tmux runs the real binary against the real
//! engine, and the tests read the screen (`capture-pane`) or the raw bytes the pane got
//! (`pipe-pane`). The builds wait on a FIFO the test writes to, so "mid-build" is a state the
//! test holds, not a moment it guesses; every wait polls for a condition with a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// A tmux server of the test's own (its own socket), with one pane running one command.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Whether tmux is here; skipped with a reason without it, failing under CI.
    fn available() -> bool {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "CI=true and tmux is missing; scripts/engine.sh installs it"
            );
            eprintln!("SKIPPED: tmux is missing (apt-get install tmux)");
        }
        found
    }

    /// Start `command` (a shell line) in `dir` in a 120x50 pane; it runs once the pane is set
    /// up (raw bytes copied to `raw` when given), and then the pane shows `exit=STATUS`. The
    /// pane's shell then waits until the server is killed: tmux closes a pane whose process
    /// ended without reading what is still in its pty, and on a loaded machine that was the
    /// command's whole last output, failure summary and `exit=` included.
    fn run(dir: &Path, command: &str, raw: Option<&Path>) -> Tmux {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "dcpt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        let line = format!(
            "tmux -L {s} wait-for go; {command}; echo exit=$?; exec tail -f /dev/null",
            s = tmux.socket
        );
        tmux.ok(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "50",
            "-c",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.to_string_lossy().into_owned(), line])
        .collect::<Vec<_>>());
        tmux.ok(&["set-option", "-t", "t", "remain-on-exit", "on"].map(String::from));
        if let Some(raw) = raw {
            tmux.ok(&[
                "pipe-pane",
                "-t",
                "t",
                "-o",
                &format!("cat >> '{}'", raw.display()),
            ]
            .map(String::from));
        }
        tmux.ok(&["wait-for", "-S", "go"].map(String::from));
        tmux
    }

    fn ok(&self, args: &[String]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The screen, with the scrollback when `history`.
    fn screen(&self, history: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "t"];
        if history {
            args.extend(["-S", "-"]);
        }
        self.ok(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// Poll the screen until `holds`, or fail with the last screen after the deadline.
    fn until(&self, what: &str, holds: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(true);
            if holds(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "waited {DEADLINE:?} for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the command's end; its screen (with scrollback).
    fn finished(&self) -> String {
        self.until("the command to end", |s| {
            s.lines().any(|l| l.starts_with("exit="))
        })
    }

    fn keys(&self, keys: &str) {
        self.ok(&["send-keys", "-t", "t", keys].map(String::from));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// A project whose build prints eight lines, then waits until the test writes to the FIFO
/// `ctl/gate` (see [`release`]), then writes its artifact. `extra` goes before the wait.
fn gated_project(prefix: &str, image: &TestImage, extra: &str) -> Project {
    let dir = project(prefix);
    let manifest = format!(
        r#"[builder]
image = "busybox:local"
run = "for i in 1 2 3 4 5 6 7 8; do echo compiling part $i; done; {extra} read go < /ctl/gate; echo linked; echo made > /out/app"

[[mount]]
source = "ctl"
target = "/ctl"

[artifacts]
include = ["app"]

[runtime]
entrypoint = ["/app"]
user = "65534:65534"

[image]
tags = ["{tag}"]
"#,
        tag = image.0
    );
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    mkfifo(&dir.path().join("ctl/gate"));
    dir
}

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let out = Command::new("mkfifo")
        .args(["-m", "0666"])
        .arg(path)
        .output()
        .expect("mkfifo runs");
    assert!(out.status.success(), "mkfifo: {}", text(&out.stderr));
}

/// Let the build waiting on the FIFO `gate` go on: open it for writing as soon as the build
/// has it open for reading (until then a non-blocking open fails), and write a line.
fn release(gate: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let start = Instant::now();
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(gate);
        match opened {
            Ok(mut fifo) => {
                fifo.write_all(b"go\n").expect("write the gate");
                return;
            }
            Err(e) => assert!(
                start.elapsed() < DEADLINE,
                "the build never opened {}: {e}",
                gate.display()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The live phase line `⠋ building in busybox:local: … 3.2s` of `screen`, and its seconds.
fn live_phase(screen: &str, label: &str) -> Option<f64> {
    screen.lines().find_map(|line| {
        let first = line.chars().next()?;
        if !is_spinner(first) || !line.contains(&format!("{label}building in busybox:local")) {
            return None;
        }
        line.trim_end()
            .rsplit(' ')
            .next()?
            .strip_suffix('s')?
            .parse()
            .ok()
    })
}

fn is_spinner(c: char) -> bool {
    ('\u{2800}'..='\u{28ff}').contains(&c)
}

/// No line of the live view is left: no spinner, no builder line drawn under a phase.
fn assert_nothing_left_drawn(screen: &str) {
    for line in screen.lines() {
        assert!(
            !line.chars().any(is_spinner),
            "a live line is left:\n{screen}"
        );
        assert!(
            !line.starts_with("  │ "),
            "a builder line of the live view is left:\n{screen}"
        );
    }
}

fn bin() -> String {
    format!("'{BIN}'")
}

#[test]
fn a_terminal_shows_the_running_phase_with_its_time_then_only_the_short_answer() {
    if !engine_with(&["busybox:local"]) || !Tmux::available() {
        return;
    }
    let image = TestImage::new("tty");
    let dir = gated_project("tty", &image, "");
    let tmux = Tmux::run(dir.path(), &format!("env -u CI {} build", bin()), None);

    let first = tmux.until("the live builder phase and its last lines", |s| {
        live_phase(s, "").is_some() && s.contains("  │ compiling part 8")
    });
    let t1 = live_phase(&first, "").expect("a time");
    // The builder's last five lines, under the phase.
    for shown in 4..=8 {
        assert!(
            first.contains(&format!("\n  │ compiling part {shown}\n")),
            "{first}"
        );
    }
    assert!(
        !first.contains("compiling part 3"),
        "only the last lines are drawn:\n{first}"
    );
    tmux.until("the elapsed time to advance", |s| {
        live_phase(s, "").is_some_and(|t2| t2 > t1)
    });
    release(&dir.path().join("ctl/gate"));

    let screen = tmux.finished();
    assert!(screen.contains("\nexit=0\n"), "{screen}");
    assert_nothing_left_drawn(&screen);
    let collapsed = screen
        .lines()
        .find(|l| l.starts_with("==> building in busybox:local"))
        .unwrap_or_else(|| panic!("no collapsed builder phase:\n{screen}"));
    assert!(
        collapsed.trim_end().ends_with('s'),
        "it carries its time: {collapsed}"
    );
    // The short answer: the summary, one line for a first build, the timing line.
    let summary = screen
        .find(&format!("\n{}: ", image.0))
        .unwrap_or_else(|| panic!("no summary line:\n{screen}"));
    let answer = &screen[summary + 1..];
    assert!(answer.contains("\n  no baseline yet: "), "{screen}");
    assert!(answer.contains("\nbuilt in "), "{screen}");
    assert!(
        !screen.contains("layers"),
        "no tables by default:\n{screen}"
    );

    let log =
        std::fs::read_to_string(dir.path().join(".dockception/build.log")).expect("build.log");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        (1..=8)
            .map(|i| format!("compiling part {i}"))
            .chain(["linked".to_string()])
            .collect::<Vec<_>>()
    );
}

#[test]
fn several_targets_show_one_live_line_each() {
    if !engine_with(&["busybox:local"]) || !Tmux::available() {
        return;
    }
    let images = [TestImage::new("tty-a"), TestImage::new("tty-b")];
    let dir = project("tty-targets");
    let mut manifest = String::new();
    for (name, image) in ["a", "b"].iter().zip(&images) {
        manifest.push_str(&format!(
            "[targets.{name}]\nbuilder.image = \"busybox:local\"\nbuilder.run = \"echo {name} waits; read go < /ctl/{name}; echo made > /out/app\"\nmount = [{{ source = \"ctl\", target = \"/ctl\" }}]\nartifacts.include = [\"app\"]\nruntime.entrypoint = [\"/app\"]\nruntime.user = \"65534:65534\"\nimage.tags = [\"{}\"]\n\n",
            image.0
        ));
    }
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    mkfifo(&dir.path().join("ctl/a"));
    mkfifo(&dir.path().join("ctl/b"));
    let tmux = Tmux::run(
        dir.path(),
        &format!("env -u CI {} build --all", bin()),
        None,
    );
    let screen = tmux.until("a live line for each target", |s| {
        live_phase(s, "[a] ").is_some() && live_phase(s, "[b] ").is_some()
    });
    let live = screen
        .lines()
        .filter(|l| l.chars().next().is_some_and(is_spinner))
        .count();
    assert_eq!(live, 2, "one line per target:\n{screen}");
    release(&dir.path().join("ctl/a"));
    release(&dir.path().join("ctl/b"));
    let screen = tmux.finished();
    assert!(screen.contains("\nexit=0\n"), "{screen}");
    assert_nothing_left_drawn(&screen);
    assert!(
        screen.contains("==> [a] building in busybox:local"),
        "{screen}"
    );
    assert!(
        screen.contains("==> [b] building in busybox:local"),
        "{screen}"
    );
}

#[test]
fn ctrl_c_leaves_nothing_drawn() {
    if !engine_with(&["busybox:local"]) || !Tmux::available() {
        return;
    }
    let image = TestImage::new("tty-int");
    let dir = gated_project("tty-int", &image, "");
    let tmux = Tmux::run(dir.path(), &format!("env -u CI {} build", bin()), None);
    tmux.until("the live builder phase", |s| live_phase(s, "").is_some());
    tmux.keys("C-c");
    let screen = tmux.finished();
    assert!(screen.contains("\nexit=130\n"), "{screen}");
    assert!(screen.contains("SIGINT received"), "{screen}");
    assert_nothing_left_drawn(&screen);
    assert!(!image_exists(&image.0));
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}

/// The bytes a command wrote to a terminal, with the terminal's own `\r\n` made `\n`.
fn raw_output(raw: &Path) -> String {
    text(&std::fs::read(raw).expect("the pane's bytes")).replace("\r\n", "\n")
}

fn assert_no_control_characters(output: &str) {
    for (i, line) in output.lines().enumerate() {
        assert!(
            !line.chars().any(char::is_control),
            "line {} has a control character: {line:?}\nall:\n{output}",
            i + 1
        );
    }
}

#[test]
fn plain_and_ci_output_hold_no_control_characters_even_on_a_terminal() {
    if !engine_with(&["busybox:local"]) || !Tmux::available() {
        return;
    }
    for (name, command) in [
        ("ci", format!("env CI=true {} build --force", bin())),
        (
            "plain",
            format!("env -u CI {} build --force --progress plain", bin()),
        ),
    ] {
        let image = TestImage::new(&format!("plain-{name}"));
        // A compiler's coloured message and a carriage-return progress counter.
        let dir = gated_project(
            &format!("plain-{name}"),
            &image,
            r"printf '\\033[1;31merror-ish\\033[0m in colour\\n'; printf ' 10%%\\r 50%%\\r100%%\\n';",
        );
        let raw = dir.path().join("pane.raw");
        let tmux = Tmux::run(dir.path(), &command, Some(&raw));
        tmux.until("the builder's lines", |s| s.contains("in colour"));
        release(&dir.path().join("ctl/gate"));
        let screen = tmux.finished();
        assert!(screen.contains("\nexit=0\n"), "{name}: {screen}");
        let output = raw_output(&raw);
        assert_no_control_characters(&output);
        assert!(
            output.contains("\n  | error-ish in colour\n"),
            "{name}: {output}"
        );
        assert!(output.contains("\n  | 100%\n"), "{name}: {output}");
        assert!(
            output.contains("==> building in busybox:local"),
            "{name}: {output}"
        );
        assert!(output.contains("\nbuilt in "), "{name}: {output}");
    }
}

#[test]
fn a_failure_shows_the_builders_last_lines_and_the_logs_path() {
    if !engine_with(&["busybox:local"]) || !Tmux::available() {
        return;
    }
    let dir = project("tty-fail");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            "[builder]\nimage = \"busybox:local\"\nrun = \"i=0; while [ $i -lt 250 ]; do i=$((i+1)); echo line $i; done; exit 3\"\n\n[artifacts]\ninclude = [\"app\"]\n",
        )],
    );
    let tmux = Tmux::run(dir.path(), &format!("env -u CI {} build", bin()), None);
    let screen = tmux.finished();
    assert!(screen.contains("\nexit=3\n"), "{screen}");
    assert_nothing_left_drawn(&screen);
    let (_, failure) = screen
        .split_once(
            "error: the build command failed with exit status 3; its last 200 of 250 lines were:\n",
        )
        .unwrap_or_else(|| panic!("no failure summary:\n{screen}"));
    let shown: Vec<&str> = failure
        .lines()
        .take_while(|l| l.starts_with("  | "))
        .collect();
    assert_eq!(shown.first(), Some(&"  | line 51"), "{screen}");
    assert_eq!(shown.last(), Some(&"  | line 250"), "{screen}");
    assert_eq!(shown.len(), 200);
    let log: PathBuf = dir.path().join(".dockception/build.log");
    assert!(
        failure.contains(&format!("  the whole output is in {}\n", log.display())),
        "{screen}"
    );
    assert_eq!(
        std::fs::read_to_string(&log)
            .expect("the log")
            .lines()
            .count(),
        250
    );
}

#[test]
fn a_rebuild_with_one_changed_artifact_is_a_short_answer() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let image = TestImage::new("short");
    let dir = project("short");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &format!("[builder]\nimage = \"busybox:local\"\nrun = \"echo ${{V:-unset}} > /out/app; echo kept > /out/other\"\n\n[artifacts]\ninclude = [\"app\", \"other\"]\n\n[runtime]\nentrypoint = [\"/app\"]\nuser = \"65534:65534\"\n\n[image]\ntags = [\"{}\"]\n\n[gates]\nmax_image_size = \"1 MiB\"\n", image.0),
        )],
    );
    let build = |v: &str, extra: &[&str]| {
        let set = format!("V={v}");
        let mut args = vec!["build", "--set", &set];
        args.extend(extra);
        let out = dockception(&args, dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    build("one", &[]);
    let (answer, stderr) = build("two-and-more", &[]);
    let lines: Vec<&str> = answer.lines().collect();
    assert!(lines.len() <= 10, "{answer}");
    assert!(lines[0].starts_with(&format!("{}: ", image.0)), "{answer}");
    assert!(lines[0].ends_with("since the last build"), "{answer}");
    assert!(lines[1].starts_with("  ~  /app  +9 B"), "{answer}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("/other")).count(),
        0,
        "unchanged: {answer}"
    );
    assert!(answer.ends_with("gates: PASS (1 passed)\n"), "{answer}");
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("built in ")),
        "{stderr}"
    );

    let (full, _) = build("three", &["--report", "full"]);
    assert!(
        full.contains("\nlayers\n") && full.contains("0 removed"),
        "{full}"
    );
    let (verbose, _) = build("four", &["-v"]);
    assert!(verbose.contains("\nlayers\n"), "{verbose}");
    let report = dockception(&["report"], dir.path());
    assert!(
        text(&report.stdout).contains("\nlayers\n"),
        "{}",
        text(&report.stdout)
    );
}

#[test]
fn bash_completes_the_manifests_targets_and_groups() {
    let bash = Command::new("bash").arg("--version").output();
    if !bash.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: no bash");
        return;
    }
    let dir = project("complete");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                "[targets.build]\nbuilder.image = \"gcc:local\"\nbuilder.run = \"true\"\nartifacts.include = [\"x\"]\n\n[targets.run]\nartifacts.from = \"build:/out\"\nartifacts.include = [\"x\"]\n\n[groups]\nimages = [\"build\", \"run\"]\n",
            ),
            ("other/dockception.toml", "[targets.elsewhere]\nbuilder.image = \"gcc:local\"\nbuilder.run = \"true\"\nartifacts.include = [\"x\"]\n"),
        ],
    );
    let complete = |words: &str| {
        let script = format!(
            "source <('{BIN}' completions bash) && COMP_WORDS=({words} '') && COMP_CWORD=${{#COMP_WORDS[@]}} && COMP_CWORD=$((COMP_CWORD-1)) && COMP_TYPE=9 && _clap_complete_dockception dockception '' && printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .env_remove("DOCKCEPTION_COMPLETE")
            .output()
            .expect("bash");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let offered = complete("dockception build");
    for name in ["build", "run", "images", "--progress"] {
        assert!(offered.lines().any(|l| l == name), "{name} in:\n{offered}");
    }
    let offered = complete("dockception build -f other/dockception.toml");
    assert!(offered.lines().any(|l| l == "elsewhere"), "{offered}");
    assert!(!offered.lines().any(|l| l == "images"), "{offered}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = dockception(&["completions", shell], dir.path());
        assert!(
            out.status.success() && text(&out.stdout).contains("DOCKCEPTION_COMPLETE"),
            "{shell}"
        );
    }
    let man = dockception(&["man"], dir.path());
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH dockception 1"),
        "{page}"
    );
    assert!(page.contains("completions"), "{page}");
}
