//! Where settings come from: defaults, then the configuration file, then flags, each
//! overriding whole top-level keys of the one before. Also maps a key back to where it was
//! set (a flag, or a file line), so every error can say which key to fix and where.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::settings::{defaults, Settings, DEFAULT_LISTEN};
use super::ConfigError;

/// Keys that together say which listeners there are: flags naming any of them replace all
/// of them from the file.
const LISTENER_KEYS: [&str; 3] = ["listen", "proxy-protocol-listen", "listener"];

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    /// 1-based, as people count `[[rule]]` tables.
    Index(usize),
}

/// A key path such as `rule[2].dest` or `per-user."john.doe".max-sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(name: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(name.to_string())])
    }

    pub fn field(&self, name: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(name.to_string()));
        p
    }

    /// `i` is 0-based; the path shows it 1-based.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i + 1));
        p
    }

    fn top(&self) -> Option<&str> {
        match self.0.first() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The configuration file's text and the flags given, kept to locate keys for errors.
#[derive(Debug, Default)]
pub struct Source {
    pub file: Option<PathBuf>,
    text: String,
    flags: BTreeSet<String>,
}

impl Source {
    /// An error about `path`, saying where it was set: `--flag: ...`,
    /// `FILE line N: key: ...`, or `key: ...` for a default.
    pub fn error(&self, path: &KeyPath, message: impl fmt::Display) -> ConfigError {
        let top = path.top().unwrap_or("");
        if self.flags.contains(top) {
            return ConfigError(format!("--{top}: {message}"));
        }
        match (&self.file, self.line_of(path)) {
            (Some(file), Some(line)) => {
                ConfigError(format!("{} line {line}: {path}: {message}", file.display()))
            }
            _ => ConfigError(format!("{path}: {message}")),
        }
    }

    /// The line `path` is on in the file, or that of its closest enclosing key.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        let mut table = Some(doc.get_ref());
        let mut offset = None;
        for seg in &path.0 {
            let next = match (seg, table, value.map(Spanned::get_ref)) {
                (Seg::Key(k), Some(t), _) => t.get(k.as_str()).map(|v| {
                    let key_span = t
                        .keys()
                        .find(|key| key.get_ref() == k.as_str())
                        .map(Spanned::span);
                    (v, key_span)
                }),
                (Seg::Index(n), _, Some(DeValue::Array(a))) => {
                    a.get(n.checked_sub(1)?).map(|v| (v, None))
                }
                _ => None,
            };
            let Some((v, key_span)) = next else { break };
            offset = Some(key_span.unwrap_or_else(|| v.span()).start);
            value = Some(v);
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        offset.map(|o| line_at(&self.text, o))
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key path at a byte offset of a TOML document.
fn path_at(text: &str, offset: usize) -> Option<KeyPath> {
    fn in_table(t: &DeTable<'_>, off: usize) -> Option<Vec<Seg>> {
        for (k, v) in t.iter() {
            if k.span().contains(&off) {
                return Some(vec![Seg::Key(k.get_ref().to_string())]);
            }
            if let Some(mut rest) = in_value(v, off) {
                rest.insert(0, Seg::Key(k.get_ref().to_string()));
                return Some(rest);
            }
        }
        None
    }
    fn in_value(v: &Spanned<DeValue<'_>>, off: usize) -> Option<Vec<Seg>> {
        match v.get_ref() {
            DeValue::Table(t) => {
                if let Some(p) = in_table(t, off) {
                    return Some(p);
                }
            }
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    if let Some(mut p) = in_value(e, off) {
                        p.insert(0, Seg::Index(i + 1));
                        return Some(p);
                    }
                }
            }
            _ => {}
        }
        v.span().contains(&off).then(Vec::new)
    }
    let doc = DeTable::parse(text).ok()?;
    in_table(doc.get_ref(), offset)
        .filter(|p| !p.is_empty())
        .map(KeyPath)
}

/// Reads and checks the configuration file on its own (types, known keys).
fn parse_file(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    toml::from_str::<Settings>(text).map_err(|e| {
        let mut out = format!("{}", path.display());
        if let Some(span) = e.span() {
            out.push_str(&format!(" line {}", line_at(text, span.start)));
            if let Some(key) = path_at(text, span.start) {
                out.push_str(&format!(": {key}"));
            }
        }
        out.push_str(&format!(
            ": {}",
            e.message().trim().replace("unknown field", "unknown key")
        ));
        ConfigError(out)
    })
}

fn to_table(s: &Settings) -> toml::Table {
    toml::Table::try_from(s).expect("settings always serialize to a table")
}

/// Defaults, overridden by the file's keys, overridden by the flags' keys.
pub fn effective(flags: &Settings, file: Option<&Path>) -> Result<(Settings, Source), ConfigError> {
    let mut source = Source::default();
    let flag_table = to_table(flags);
    source.flags = flag_table.keys().cloned().collect();
    let mut merged = to_table(&defaults());
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read configuration file {}: {e}",
                path.display()
            ))
        })?;
        let mut file_table = to_table(&parse_file(path, &text)?);
        if LISTENER_KEYS.iter().any(|k| flag_table.contains_key(*k)) {
            for k in LISTENER_KEYS {
                file_table.remove(k);
            }
        }
        merged.extend(file_table);
        source.file = Some(path.to_path_buf());
        source.text = text;
    }
    merged.extend(flag_table);
    let mut settings: Settings = merged
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError(format!("merging settings: {}", e.message())))?;
    if settings.listen.is_empty()
        && settings.proxy_protocol_listen.is_empty()
        && settings.listeners.is_empty()
    {
        settings.listen = vec![DEFAULT_LISTEN.parse().expect("valid default")];
    }
    Ok((settings, source))
}

/// The effective settings as a configuration file.
pub fn to_toml(settings: &Settings) -> String {
    toml::to_string(settings).expect("settings always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_print_like_toml() {
        let p = KeyPath::key("rule").index(1).field("dest");
        assert_eq!(p.to_string(), "rule[2].dest");
        let p = KeyPath::key("per-user")
            .field("john.doe")
            .field("max-sessions");
        assert_eq!(p.to_string(), "per-user.\"john.doe\".max-sessions");
    }

    #[test]
    fn paths_are_found_at_offsets_and_lines_at_paths() {
        let text = "listen = [\"127.0.0.1:1\"]\n\n[[rule]]\naction = \"allow\"\n\n[[rule]]\naction = \"deny\"\nports = [80]\n\n[per-user.\"a.b\"]\nmax-sessions = 3\n";
        let at = |needle: &str| {
            path_at(text, text.find(needle).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(at("\"127"), "listen[1]");
        assert_eq!(at("\"deny\""), "rule[2].action");
        assert_eq!(at("ports"), "rule[2].ports");
        assert_eq!(at("max-sessions"), "per-user.\"a.b\".max-sessions");
        let src = Source {
            file: Some("f.toml".into()),
            text: text.into(),
            flags: BTreeSet::new(),
        };
        let line = |p: KeyPath| src.line_of(&p);
        assert_eq!(line(KeyPath::key("listen")), Some(1));
        assert_eq!(line(KeyPath::key("rule").index(1).field("ports")), Some(8));
        assert_eq!(line(KeyPath::key("rule").index(0).field("action")), Some(4));
        assert_eq!(
            line(KeyPath::key("per-user").field("a.b").field("max-sessions")),
            Some(11)
        );
        // A key that is not there points at its closest enclosing one.
        assert_eq!(line(KeyPath::key("rule").index(1).field("dest")), Some(6));
        assert_eq!(line(KeyPath::key("shards")), None);
    }
}
