//! What the report says about how ELF artifacts are linked and which libraries were added.

use serde::Serialize;

use crate::manifest::Libs;

/// What the report says about linking: each ELF artifact, and the libraries added.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct Linkage {
    /// `runtime.libs`.
    pub mode: Libs,
    /// Every loadable ELF artifact: static, or what it needs.
    pub elf_artifacts: Vec<LinkedArtifact>,
    /// Files copied from the builder image into the runtime image.
    pub added: Vec<AddedLibrary>,
    /// Libraries and interpreters the base already has, with their paths.
    pub on_base: Vec<(String, String)>,
}

/// One ELF artifact's linking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LinkedArtifact {
    /// Its path in the image.
    pub path: String,
    /// `static` (needs nothing at run time) or `dynamic`.
    pub linking: String,
    /// Its program interpreter.
    pub interpreter: Option<String>,
    /// The libraries it needs directly.
    pub needed: Vec<String>,
}

/// A file added to the runtime image because an artifact needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AddedLibrary {
    /// Its path in the image.
    pub path: String,
    /// The builder file it was copied from (symlinks followed).
    pub from: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Linkage {
    /// Total bytes added.
    pub fn added_bytes(&self) -> u64 {
        self.added.iter().map(|a| a.bytes).sum()
    }

    /// Lines for the text report (empty when there is no ELF artifact).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for a in &self.elf_artifacts {
            if a.linking == "static" {
                out.push_str(&format!(
                    "  {}: static, needs no library at run time\n",
                    a.path
                ));
                continue;
            }
            let mut needs: Vec<String> = a.interpreter.iter().cloned().collect();
            needs.extend(a.needed.iter().cloned());
            out.push_str(&format!(
                "  {}: dynamic, needs {}\n",
                a.path,
                needs.join(", ")
            ));
        }
        if !self.on_base.is_empty() {
            let names: Vec<&str> = self.on_base.iter().map(|(n, _)| n.as_str()).collect();
            out.push_str(&format!("  on the base: {}\n", names.join(", ")));
        }
        if !self.added.is_empty() {
            out.push_str(&format!(
                "  libraries added from the builder ({} files, {}):\n",
                self.added.len(),
                crate::units::human(self.added_bytes())
            ));
            let width = self
                .added
                .iter()
                .map(|a| a.path.chars().count())
                .max()
                .unwrap_or(0);
            for a in &self.added {
                out.push_str(&format!(
                    "    {:<width$}  {:>9}\n",
                    a.path,
                    crate::units::human(a.bytes)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_says_static_or_what_is_needed() {
        let linkage = Linkage {
            mode: Libs::Auto,
            elf_artifacts: vec![
                LinkedArtifact {
                    path: "/hello".into(),
                    linking: "static".into(),
                    interpreter: None,
                    needed: vec![],
                },
                LinkedArtifact {
                    path: "/app".into(),
                    linking: "dynamic".into(),
                    interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
                    needed: vec!["libc.so.6".into()],
                },
            ],
            added: vec![AddedLibrary {
                path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                from: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                bytes: 2048,
            }],
            on_base: vec![],
        };
        assert_eq!(
            linkage.to_text(),
            "  /hello: static, needs no library at run time\n\
             \x20 /app: dynamic, needs /lib64/ld-linux-x86-64.so.2, libc.so.6\n\
             \x20 libraries added from the builder (1 files, 2.0 KiB):\n\
             \x20   /lib/x86_64-linux-gnu/libc.so.6    2.0 KiB\n"
        );
    }
}
