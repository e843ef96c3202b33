//! Where each key of a YAML document is, as `pools[1].max` → line/column,
//! so every configuration error can name both the key and the line.

use serde_saphyr::granit_parser::{Event, Parser};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    /// 1-based line and column of the key (for sequence items: the item).
    pub line: usize,
    pub column: usize,
    /// Character offsets of the whole entry: from its key (or a block
    /// item's `-`) to the end of its value.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Default)]
pub struct YamlIndex {
    entries: Vec<Entry>,
    /// The syntax error that cut the index short: line and what is wrong.
    syntax_error: Option<(usize, String)>,
}

enum Frame {
    /// `entry`: the key whose value is being read; `owner`: the entry
    /// whose value this collection is.
    Map {
        path: String,
        key: Option<String>,
        entry: Option<usize>,
        owner: Option<usize>,
    },
    Seq {
        path: String,
        next: usize,
        owner: Option<usize>,
    },
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl YamlIndex {
    /// Index what parses; a syntax error ends the index early (the
    /// deserializer reports it with its own location).
    pub fn build(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut entries: Vec<Entry> = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut syntax_error = None;
        for item in Parser::new_from_str(text) {
            let (event, span) = match item {
                Ok(item) => item,
                Err(e) => {
                    syntax_error = Some((e.marker().line(), e.info()));
                    break;
                }
            };
            if matches!(event, Event::Comment(..)) {
                continue;
            }
            let (line, column) = (span.start.line(), span.start.col() + 1);
            let (start, end) = (span.start.index(), span.end.index());
            // The entry this event's node is the value of, if it is a value (not a key).
            let value_of = match stack.last_mut() {
                Some(Frame::Map { path, key, entry, .. }) => match (key.take(), &event) {
                    (None, Event::Scalar(k, ..)) => {
                        entries.push(Entry {
                            path: join(path, k),
                            line,
                            column,
                            start,
                            end,
                        });
                        *entry = Some(entries.len() - 1);
                        *key = Some(k.to_string());
                        continue;
                    }
                    (None, Event::MappingEnd) => None,
                    (None, _) => {
                        *key = Some("?".to_string());
                        *entry = None;
                        continue;
                    }
                    (Some(_), _) => entry.take(),
                },
                Some(Frame::Seq { path, next, .. }) => match &event {
                    Event::SequenceEnd => None,
                    _ => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        entries.push(Entry {
                            path: p,
                            line,
                            column,
                            start: block_item_start(&chars, start),
                            end,
                        });
                        Some(entries.len() - 1)
                    }
                },
                None => None,
            };
            let value_path = value_of.map(|i| entries[i].path.clone());
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map {
                    path: value_path.unwrap_or_default(),
                    key: None,
                    entry: None,
                    owner: value_of,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq {
                    path: value_path.unwrap_or_default(),
                    next: 0,
                    owner: value_of,
                }),
                Event::MappingEnd | Event::SequenceEnd => {
                    let owner = match stack.pop() {
                        Some(Frame::Map { owner, .. } | Frame::Seq { owner, .. }) => owner,
                        None => None,
                    };
                    // A block collection ends where the next token starts.
                    if let Some(i) = owner {
                        entries[i].end = end.max(entries[i].end);
                    }
                }
                _ => {
                    if let Some(i) = value_of {
                        entries[i].end = end.max(entries[i].end);
                    }
                }
            }
        }
        YamlIndex {
            entries,
            syntax_error,
        }
    }

    pub fn syntax_error(&self) -> Option<(usize, &str)> {
        self.syntax_error
            .as_ref()
            .map(|(line, why)| (*line, why.as_str()))
    }

    /// Line of a key path, or of its closest indexed parent.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                return Some(e.line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The last key (or sequence item) starting at or before a position.
    pub fn entry_at(&self, line: usize, column: usize) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| (e.line, e.column) <= (line, column))
            .max_by_key(|e| (e.line, e.column))
    }

    /// The entry of `path` that holds the entry `inner` (a key path can
    /// occur twice, as a duplicate key).
    pub fn enclosing(&self, path: &str, inner: &Entry) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.path == path && e.start <= inner.start && inner.start <= e.end)
            .max_by_key(|e| e.start)
    }

    /// The key path of the last node starting at or before a position.
    pub fn path_at(&self, line: usize, column: usize) -> Option<&str> {
        self.entry_at(line, column).map(|e| e.path.as_str())
    }
}

/// A block sequence item starts at its `-`: blanking the item must take the
/// dash too, or an empty item would be left.
fn block_item_start(chars: &[char], value_start: usize) -> usize {
    let mut i = value_start.min(chars.len());
    while i > 0 && chars[i - 1] == ' ' {
        i -= 1;
    }
    if i > 0 && chars[i - 1] == '-' {
        i - 1
    } else {
        value_start
    }
}

/// `pools[1].max` → `pools[1]`; `pools[1]` → `pools`; `cluster` → ``.
pub fn parent(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "cluster: home\npolicy:\n  scale_up: { cpu_above: 0.7, cooldown: 5m }\npools:\n  - name: a\n    max: 3\n  - name: b\n    template:\n      cpu: \"2\"\n";

    #[test]
    fn indexes_nested_keys_and_sequences() {
        let idx = YamlIndex::build(DOC);
        assert_eq!(idx.line_of("cluster"), Some(1));
        assert_eq!(idx.line_of("policy.scale_up.cooldown"), Some(3));
        assert_eq!(idx.line_of("pools[0].max"), Some(6));
        assert_eq!(idx.line_of("pools[1]"), Some(7));
        assert_eq!(idx.line_of("pools[1].template.cpu"), Some(9));
        // Missing keys fall back to their parent.
        assert_eq!(idx.line_of("pools[1].min"), Some(7));
        assert_eq!(idx.path_at(6, 10), Some("pools[0].max"));
        assert_eq!(parent("pools[1].template.cpu"), "pools[1].template");
        assert_eq!(parent("pools[1]"), "pools");
        assert_eq!(parent("cluster"), "");
    }
}
