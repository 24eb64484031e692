//! Artifact globs as the manifest writes them: how they compile, and how messages show them.

use globset::{Glob, GlobBuilder};

/// Compile a glob the way artifact rules use it: `*` does not cross `/`, `**` does.
pub fn compile_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// A glob for messages: long ones are cut, so an enormous pattern gives a readable error.
pub fn short_glob(pattern: &str) -> String {
    const MAX: usize = 80;
    if pattern.chars().count() <= MAX {
        pattern.to_string()
    } else {
        let head: String = pattern.chars().take(MAX).collect();
        format!("{head}… ({} bytes)", pattern.len())
    }
}
