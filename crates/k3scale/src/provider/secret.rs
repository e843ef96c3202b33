//! Secrets (the K3s token, webhook URLs) read from a file or an environment
//! variable, never printed.

use std::fmt;

/// A secret value: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Read from `file` (trailing newline removed) or the environment variable `env`.
    pub fn load(file: Option<&str>, env: Option<&str>) -> Result<Secret, String> {
        let value = match (file, env) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {path}: {}", e.kind()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            (None, None) => return Err("no secret source configured".to_string()),
        };
        if value.is_empty() {
            return Err("the secret is empty".to_string());
        }
        Ok(Secret(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of this secret replaced.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "[redacted]")
        }
    }

    /// The part of `text` that ends it, at most `keep` bytes, redacted first
    /// and cut after: a secret that straddled the cut never leaves a piece.
    /// `text` must be the tail of a longer stream (what came before is gone),
    /// so a piece of the secret at its very start is redacted too.
    pub fn redact_tail(&self, text: &str, keep: usize) -> String {
        let mut out = self.redact(text);
        if let Some(piece) = self.leading_piece(&out) {
            out.replace_range(..piece, "[redacted]");
        }
        if out.len() > keep {
            let mut start = out.len() - keep;
            while !out.is_char_boundary(start) {
                start += 1;
            }
            out.drain(..start);
        }
        out
    }

    /// The first `keep` characters of `text`, redacted before the cut.
    pub fn redact_head(&self, text: &str, keep: usize) -> String {
        self.redact(text).chars().take(keep).collect()
    }

    /// Length of the longest end piece of the secret that `text` starts with.
    fn leading_piece(&self, text: &str) -> Option<usize> {
        (1..self.0.len())
            .rev()
            .filter(|&n| self.0.is_char_boundary(self.0.len() - n))
            .find(|&n| text.starts_with(&self.0[self.0.len() - n..]))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_cut_by_a_tail_or_head_leaves_no_piece() {
        let s = Secret::new("K10abcdefghij::server:s3cr3t");
        let stream = format!("noise {} more noise {} end", s.expose(), s.expose());
        // Every cut point, including those inside either occurrence.
        for keep in 0..stream.len() {
            let start = stream.len() - keep;
            // What a bounded reader kept: the raw end of the stream, plus a margin.
            let margin = start.saturating_sub(s.expose().len());
            let tail = s.redact_tail(&stream[margin..], keep + "[redacted]".len());
            for piece in 6..=s.expose().len() {
                for at in 0..=s.expose().len() - piece {
                    let frag = &s.expose()[at..at + piece];
                    assert!(!tail.contains(frag), "keep {keep}: {tail:?} holds {frag:?}");
                }
            }
            let head = s.redact_head(&stream, keep);
            assert!(
                !head.contains("s3cr3t") && !head.contains("K10abcdefghij::"),
                "{head:?}"
            );
        }
    }

    #[test]
    fn never_printed_and_redacted_from_text() {
        let s = Secret::new("K10abc::server:s3cr3t");
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
        assert_eq!(
            s.redact("join with K10abc::server:s3cr3t failed"),
            "join with [redacted] failed"
        );
    }

    #[test]
    fn loads_from_file_without_newline_and_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("k3scale-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "tok\n").unwrap();
        assert_eq!(Secret::load(path.to_str(), None).unwrap().expose(), "tok");
        let err = Secret::load(Some("/nonexistent/k3s-token"), None).unwrap_err();
        assert_eq!(
            err,
            "cannot read secret file /nonexistent/k3s-token: entity not found"
        );
        assert!(
            Secret::load(None, Some("K3SCALE_TEST_UNSET_VAR"))
                .unwrap_err()
                .contains("K3SCALE_TEST_UNSET_VAR")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
