//! What counts as a leftover of an interrupted or crashed run, decided from labels alone so it
//! is tested without an engine. [`crate::engine::Engine::clean`] lists and removes; this module
//! says which of the listed things may go.
//!
//! Every container dockception creates carries [`OWNER_LABEL`], `HOST/PID` of the process that
//! made it. A container whose process is gone is a leftover; one whose process still runs
//! belongs to a build in progress and is kept, so `dockception clean` is safe to run while
//! other builds of the same project are going.

use std::collections::HashMap;

/// The label naming the process that created a container: `HOST/PID`.
pub(crate) const OWNER_LABEL: &str = "dockception.owner";

/// A dockception process: the machine it runs on and its pid there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The host name.
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
}

impl Owner {
    /// The current process.
    pub(crate) fn this_process() -> Owner {
        Owner {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// The label value, `HOST/PID`.
    pub(crate) fn label(&self) -> String {
        format!("{}/{}", self.host, self.pid)
    }

    /// Read a label value written by [`Owner::label`].
    pub(crate) fn parse(label: &str) -> Option<Owner> {
        let (host, pid) = label.rsplit_once('/')?;
        Some(Owner {
            host: host.to_string(),
            pid: pid.parse().ok()?,
        })
    }
}

/// What `clean` knows about a labelled container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelledContainer {
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Whether it is created, running or restarting (not exited or dead).
    pub running: bool,
    /// Whether a command runs in it right now through `docker exec`: a warm builder in use by
    /// a build, whatever process created the container.
    pub building: bool,
}

/// Whether `clean` removes a thing, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A leftover: remove it.
    Remove,
    /// Still in use (or not provably abandoned): keep it, for the reason given.
    Keep(String),
}

/// Decide about one labelled container. `alive` says whether a pid on this host still runs.
pub(crate) fn container_verdict(
    container: &LabelledContainer,
    this: &Owner,
    force: bool,
    alive: impl Fn(u32) -> bool,
) -> Verdict {
    if force {
        return Verdict::Remove;
    }
    if container.building {
        return Verdict::Keep(
            "a build is running in it (a warm builder in use); pass --force to remove it anyway"
                .into(),
        );
    }
    match container
        .labels
        .get(OWNER_LABEL)
        .and_then(|l| Owner::parse(l))
    {
        None if container.running => Verdict::Keep(
            "it is running and names no owner process; pass --force if no build is going".into(),
        ),
        None => Verdict::Remove,
        Some(owner) if owner.host != this.host => Verdict::Keep(format!(
            "it was made by a dockception run on host {}; pass --force if that run is over",
            owner.host
        )),
        Some(owner) if owner.pid != this.pid && alive(owner.pid) => Verdict::Keep(format!(
            "its dockception run (pid {}) is still going",
            owner.pid
        )),
        Some(_) => Verdict::Remove,
    }
}

/// Whether a process with this pid exists on this machine. Where `/proc` is missing, every
/// process counts as alive, so nothing of a live run is ever removed.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(owner: Option<&str>, running: bool) -> LabelledContainer {
        let mut labels = HashMap::from([("dockception".to_string(), "builder".to_string())]);
        if let Some(o) = owner {
            labels.insert(OWNER_LABEL.to_string(), o.to_string());
        }
        LabelledContainer {
            labels,
            running,
            building: false,
        }
    }

    fn me() -> Owner {
        Owner {
            host: "box".into(),
            pid: 10,
        }
    }

    #[test]
    fn owner_labels_round_trip() {
        let o = Owner {
            host: "ci/runner-3".into(),
            pid: 4242,
        };
        assert_eq!(Owner::parse(&o.label()), Some(o));
        assert_eq!(Owner::parse("nopid"), None);
        assert_eq!(Owner::parse("host/x"), None);
    }

    #[test]
    fn containers_of_dead_processes_go_and_live_ones_stay() {
        let alive = |pid: u32| pid == 20;
        assert_eq!(
            container_verdict(&container(Some("box/30"), true), &me(), false, alive),
            Verdict::Remove
        );
        assert!(matches!(
            container_verdict(&container(Some("box/20"), true), &me(), false, alive),
            Verdict::Keep(reason) if reason.contains("pid 20) is still going")
        ));
        // Our own pid is the cleaning process, never a build in progress.
        assert_eq!(
            container_verdict(&container(Some("box/10"), true), &me(), false, |_| true),
            Verdict::Remove
        );
    }

    #[test]
    fn other_hosts_and_unowned_running_containers_need_force() {
        let c = container(Some("elsewhere/30"), false);
        assert!(matches!(
            container_verdict(&c, &me(), false, |_| false),
            Verdict::Keep(reason) if reason.contains("host elsewhere")
        ));
        assert_eq!(
            container_verdict(&c, &me(), true, |_| false),
            Verdict::Remove
        );
        assert!(matches!(
            container_verdict(&container(None, true), &me(), false, |_| false),
            Verdict::Keep(_)
        ));
        assert_eq!(
            container_verdict(&container(None, false), &me(), false, |_| false),
            Verdict::Remove
        );
    }

    #[test]
    fn a_warm_builder_in_use_stays_even_when_its_creator_is_gone() {
        let mut warm = container(Some("box/30"), true);
        warm.building = true;
        assert!(matches!(
            container_verdict(&warm, &me(), false, |_| false),
            Verdict::Keep(reason) if reason.contains("a build is running in it")
        ));
        assert_eq!(
            container_verdict(&warm, &me(), true, |_| false),
            Verdict::Remove
        );
        warm.building = false;
        assert_eq!(
            container_verdict(&warm, &me(), false, |_| false),
            Verdict::Remove,
            "an idle warm builder is a leftover once its creator is gone"
        );
    }

    #[test]
    fn this_process_is_alive() {
        assert!(pid_alive(std::process::id()));
    }
}
