//! A temporary directory for a test's configuration, users file and access log, removed
//! on drop.

use std::path::PathBuf;

pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The path of `name` in the directory (which need not exist).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of `name` as a flag value.
    pub fn arg(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("temporary paths are UTF-8")
            .to_string()
    }

    /// Replaces `name` with `text` in one step (written aside, then renamed), so a reader
    /// sees the old file or the new one, never half of it. Returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let aside = self.path(&format!(".{name}.new"));
        std::fs::write(&aside, text).unwrap_or_else(|e| panic!("write {}: {e}", aside.display()));
        std::fs::rename(&aside, &path)
            .unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
        path
    }
}
