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
