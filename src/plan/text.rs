//! The plan for people (`dockception plan`): one line a setting, values as they reach the
//! engine, commands quoted so they can be pasted into a shell.

use crate::manifest::EngineMode;
use crate::manifest::Libs;
use crate::plan::{EnginePlan, InitPlan, Plan, PlanSet, DEFAULT_REUSE_LIMIT};

/// How the target's builds use the engine, and which setting said so.
fn engine_words(engine: &EnginePlan) -> String {
    match engine.mode {
        EngineMode::Local => format!("local, sources bind-mounted ({})", engine.set_by),
        EngineMode::Remote => format!(
            "remote, sources synced into volumes, outputs read back ({})",
            engine.set_by
        ),
        EngineMode::Auto => format!("auto ({})", engine.set_by),
    }
}

impl PlanSet {
    /// The plan for people: build order, then each target's resolved settings.
    pub fn to_text(&self) -> String {
        let mut out = format!("manifest {}\n", self.manifest.display());
        out.push_str(&format!("build order: {}\n", self.order.join(" -> ")));
        out.push_str(&format!("images built: {}\n", self.selected.join(", ")));
        if !self.vars.is_empty() {
            let vars: Vec<String> = self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("vars: {}\n", vars.join(" ")));
        }
        for plan in &self.targets {
            out.push('\n');
            out.push_str(&plan.to_text(self.is_selected(&plan.target), &self.engine));
        }
        out
    }
}

impl Plan {
    fn to_text(&self, builds_image: bool, engine: &EnginePlan) -> String {
        let mut lines = vec![format!("[{}]", self.target)];
        if self.artifacts_from.is_none() {
            lines.push(format!("  engine    {}", engine_words(engine)));
        }
        self.origin_lines(&mut lines, engine.mode == EngineMode::Remote);
        lines.push(format!(
            "  ship      {}{} -> {}",
            self.artifacts.include.join(", "),
            if self.artifacts.exclude.is_empty() {
                String::new()
            } else {
                format!(" minus {}", self.artifacts.exclude.join(", "))
            },
            self.artifacts.dest
        ));
        if builds_image {
            self.runtime_lines(&mut lines);
        } else {
            lines.push("  (artifacts only: another target uses them)".into());
        }
        lines.join("\n") + "\n"
    }

    /// Where the artifacts come from: the target that made them, or how this builder runs.
    fn origin_lines(&self, lines: &mut Vec<String>, remote: bool) {
        let b = &self.builder;
        if let Some(from) = &self.artifacts_from {
            lines.push(format!(
                "  artifacts from target {from}: {}",
                if self.artifacts.subdir.is_empty() {
                    b.output_target.clone()
                } else {
                    format!("{}/{}", b.output_target, self.artifacts.subdir)
                }
            ));
            return;
        }
        lines.push(format!("  builder   {}", b.image));
        lines.push(format!("  run       {}", shell_words(&b.command)));
        if let Some(w) = &b.workdir {
            lines.push(format!("  workdir   {w}"));
        }
        lines.push(format!(
            "  user      {}",
            b.user.as_deref().unwrap_or("(image default)")
        ));
        for (k, v) in &b.env {
            lines.push(format!("  env       {k}={v}"));
        }
        if let Some(network) = &b.network {
            lines.push(format!("  network   {network}"));
        }
        match b.warm {
            Some(warm) => lines.push(format!(
                "  warm      kept running {} after the last build (builder.warm = \"off\": a fresh container each build)",
                crate::units::duration_words(warm)
            )),
            None => lines.push("  warm      off: a fresh container each build".into()),
        }
        if b.reuse_limit != DEFAULT_REUSE_LIMIT {
            lines.push(format!(
                "  reuse     {}",
                crate::units::human(b.reuse_limit)
            ));
        }
        for (i, m) in b.mounts.iter().enumerate() {
            lines.push(format!(
                "  mount     {} -> {} ({}{})",
                m.source.display(),
                m.target,
                if m.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
                if remote {
                    format!(", synced into volume {}", self.source_volume(i))
                } else {
                    String::new()
                }
            ));
        }
        for c in &b.caches {
            lines.push(format!("  cache     {} -> {}", c.volume, c.target));
        }
        lines.push(format!(
            "  output    {} -> {}",
            self.out_dir.display(),
            b.output_target
        ));
    }

    fn runtime_lines(&self, lines: &mut Vec<String>) {
        let r = &self.runtime;
        lines.push(format!("  base      {}", r.base));
        if let Some(e) = &r.entrypoint {
            lines.push(format!("  entrypoint {}", shell_words(e)));
        }
        if let Some(c) = &r.cmd {
            lines.push(format!("  cmd       {}", shell_words(c)));
        }
        for (k, v) in &r.env {
            lines.push(format!("  env       {k}={v}"));
        }
        if let Some(w) = &r.workdir {
            lines.push(format!("  workdir   {w}"));
        }
        if let Some(u) = &r.user {
            lines.push(format!("  user      {u}"));
        }
        if !r.expose.is_empty() {
            lines.push(format!("  expose    {}", r.expose.join(" ")));
        }
        for (k, v) in &r.labels {
            lines.push(format!("  label     {k}={v}"));
        }
        for step in &r.steps {
            lines.push(format!(
                "  step      {step}  (artifacts at {})",
                r.artifacts_mount
            ));
        }
        match &r.init {
            InitPlan::None => {}
            InitPlan::Auto => {
                lines.push("  init      tini (from the base, else the builder)".into())
            }
            InitPlan::Path(p) => lines.push(format!("  init      {p}")),
        }
        match r.libs {
            Libs::Check => {}
            Libs::Auto => lines.push(
                "  libs      auto (what dynamic artifacts need is copied from the builder)".into(),
            ),
            Libs::Off => lines.push("  libs      off (not checked)".into()),
        }
        lines.push(format!(
            "  tags      {}",
            if self.tags.is_empty() {
                "(none: the image is known by its id)".to_string()
            } else {
                self.tags.join(", ")
            }
        ));
        if self.push {
            lines.push("  push      every tag, to its registry ([image] push = true)".into());
        }
    }
}

/// Quote words that need it, so the line can be pasted into a shell.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
