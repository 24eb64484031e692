//! When each target of a build may start: as soon as every target it takes artifacts from has
//! finished, so targets that do not depend on each other build at the same time. A plain
//! value, no I/O; [`crate::pipeline::build_if_changed`] drives the targets it hands out.

use crate::plan::Plan;

/// Which targets of a plan have started and finished, and which wait for which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// For each target (by its index in the plan), the targets it waits for.
    needs: Vec<Vec<usize>>,
    started: Vec<bool>,
    finished: Vec<bool>,
}

impl Schedule {
    /// The schedule of `plans` (a [`crate::PlanSet`]'s targets): each waits for the target it
    /// takes artifacts from.
    pub fn of(plans: &[Plan]) -> Schedule {
        Schedule::new(
            plans
                .iter()
                .map(|p| (p.target.as_str(), p.artifacts_from.as_deref())),
        )
    }

    /// The schedule of targets given as (name, the target it takes artifacts from), in plan
    /// order. A target named as a source but not among them is not waited for: the target
    /// that needs it then fails with its own error, instead of never starting.
    pub fn new<'a>(targets: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Schedule {
        let targets: Vec<(&str, Option<&str>)> = targets.into_iter().collect();
        let needs = targets
            .iter()
            .map(|(_, from)| {
                from.and_then(|from| targets.iter().position(|(name, _)| *name == from))
                    .into_iter()
                    .collect()
            })
            .collect();
        Schedule {
            needs,
            started: vec![false; targets.len()],
            finished: vec![false; targets.len()],
        }
    }

    /// The targets that may start now (every target they wait for has finished), in plan
    /// order; they count as started from here on.
    pub fn start(&mut self) -> Vec<usize> {
        let ready: Vec<usize> = (0..self.needs.len())
            .filter(|&i| !self.started[i] && self.needs[i].iter().all(|&n| self.finished[n]))
            .collect();
        for &i in &ready {
            self.started[i] = true;
        }
        ready
    }

    /// Target `index` finished: the targets waiting for it may start.
    pub fn finish(&mut self, index: usize) {
        if let Some(done) = self.finished.get_mut(index) {
            *done = true;
        }
    }

    /// The targets that have not started, in plan order. Once nothing runs and nothing can
    /// start, these wait for each other (a cycle, which the plan refuses before this).
    pub fn waiting(&self) -> Vec<usize> {
        (0..self.needs.len())
            .filter(|&i| !self.started[i])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_targets_all_start_at_once() {
        let mut s = Schedule::new([("a", None), ("b", None), ("c", None)]);
        assert_eq!(s.start(), [0, 1, 2]);
        assert_eq!(s.start(), Vec::<usize>::new(), "each starts once");
        s.finish(1);
        assert_eq!(s.start(), Vec::<usize>::new());
        assert!(s.waiting().is_empty());
    }

    #[test]
    fn a_target_waits_for_the_one_it_takes_artifacts_from() {
        // build -> run, build -> debug, and lint on its own.
        let mut s = Schedule::new([
            ("build", None),
            ("lint", None),
            ("run", Some("build")),
            ("debug", Some("build")),
        ]);
        assert_eq!(s.start(), [0, 1]);
        assert_eq!(s.waiting(), [2, 3]);
        // lint finishing first releases nothing.
        s.finish(1);
        assert_eq!(s.start(), Vec::<usize>::new());
        s.finish(0);
        assert_eq!(s.start(), [2, 3], "both of build's users start together");
        assert!(s.waiting().is_empty());
    }

    #[test]
    fn chains_start_one_after_the_other() {
        let mut s = Schedule::new([("a", None), ("b", Some("a")), ("c", Some("b"))]);
        assert_eq!(s.start(), [0]);
        s.finish(0);
        assert_eq!(s.start(), [1]);
        s.finish(1);
        assert_eq!(s.start(), [2]);
    }

    #[test]
    fn an_unplanned_source_is_not_waited_for() {
        let mut s = Schedule::new([("run", Some("build"))]);
        assert_eq!(s.start(), [0]);
    }

    #[test]
    fn a_cycle_never_starts_and_says_so() {
        let mut s = Schedule::new([("a", Some("b")), ("b", Some("a")), ("c", None)]);
        assert_eq!(s.start(), [2]);
        s.finish(2);
        assert_eq!(s.start(), Vec::<usize>::new());
        assert_eq!(s.waiting(), [0, 1]);
    }

    #[test]
    fn a_plans_targets_wait_for_their_artifact_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        let text = "[targets.build]\nbuilder.image = \"golang:local\"\nbuilder.run = \"go build -o /out/app .\"\nartifacts.include = [\"app\"]\n\n[targets.run]\nartifacts.from = \"build:/out\"\nartifacts.include = [\"app\"]\n\n[targets.tools]\nbuilder.image = \"gcc:local\"\nbuilder.run = \"true\"\nartifacts.include = [\"x\"]\n";
        let plans = crate::Options::from_text(dir.path().join("dockception.toml"), text)
            .all_targets()
            .load()
            .expect("plan");
        let names: Vec<&str> = plans.targets.iter().map(|p| p.target.as_str()).collect();
        let mut s = Schedule::of(&plans.targets);
        let first: Vec<&str> = s.start().into_iter().map(|i| names[i]).collect();
        assert_eq!(first, ["build", "tools"]);
        let build = names.iter().position(|n| *n == "build").expect("build");
        s.finish(build);
        let next: Vec<&str> = s.start().into_iter().map(|i| names[i]).collect();
        assert_eq!(next, ["run"]);
    }
}
