//! Where each key of a YAML document is, as `pools[1].max` → line/column,
//! so every configuration error can name both the key and the line.

use serde_saphyr::granit_parser::{Event, Parser};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    /// 1-based line and column of the key (for sequence items: the item).
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct YamlIndex {
    entries: Vec<Entry>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
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
        let mut entries = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let (line, column) = (span.start.line(), span.start.col() + 1);
            // The path of the node this event starts, if it is a value (not a key).
            let value_path = match stack.last_mut() {
                Some(Frame::Map { path, key }) => match (key.take(), &event) {
                    (None, Event::Scalar(k, ..)) => {
                        let full = join(path, k);
                        entries.push(Entry {
                            path: full,
                            line,
                            column,
                        });
                        *key = Some(k.to_string());
                        continue;
                    }
                    (None, Event::MappingEnd) => None,
                    (None, _) => {
                        *key = Some("?".to_string());
                        continue;
                    }
                    (Some(k), _) => Some(join(path, &k)),
                },
                Some(Frame::Seq { path, next }) => match &event {
                    Event::SequenceEnd => None,
                    _ => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        entries.push(Entry {
                            path: p.clone(),
                            line,
                            column,
                        });
                        Some(p)
                    }
                },
                None => Some(String::new()),
            };
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map {
                    path: value_path.unwrap_or_default(),
                    key: None,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq {
                    path: value_path.unwrap_or_default(),
                    next: 0,
                }),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        YamlIndex { entries }
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

    /// The key path of the last node starting at or before a position.
    pub fn path_at(&self, line: usize, column: usize) -> Option<&str> {
        self.entry_at(line, column).map(|e| e.path.as_str())
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
