//! Durations as the file writes them (`30s`, `5m`, `1h30m`), read once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration key's value: the text as written and what it reads as.
/// Reading never fails, so one bad duration does not hide the file's other
/// errors: `load` reports it with its key, and every `Loaded` config holds
/// only good ones, which code past validation takes with `get`.
#[derive(Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    value: Result<Duration, String>,
}

impl HumanDuration {
    /// The duration (zero for a value `load` refused).
    pub fn get(&self) -> Duration {
        self.value.as_ref().copied().unwrap_or_default()
    }

    /// Why the text is not a duration, if it is not.
    pub fn error(&self) -> Option<&str> {
        self.value.as_ref().err().map(String::as_str)
    }
}

impl From<&str> for HumanDuration {
    fn from(text: &str) -> Self {
        HumanDuration {
            text: text.to_string(),
            value: parse_duration(text),
        }
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration {
            text: format_duration(d),
            value: Ok(d),
        }
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HumanDuration::from(String::deserialize(d)?.as_str()))
    }
}

/// A human duration (`30s`, `5m`, `1h30m`), as every duration in the file is written.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!("negative duration {s:?}: must be zero or more"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 30s, 5m, 1h30m)"))
}

/// `90s`, `5m`, `2h`, `250ms`: the largest whole unit, as durations are written here.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return humantime::format_duration(d).to_string().replace(' ', "");
    }
    match d.as_secs() {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_once_and_keeps_the_text() {
        let d = HumanDuration::from("1h30m");
        assert_eq!(d.get(), Duration::from_secs(5400));
        assert_eq!(d.to_string(), "1h30m");
        assert_eq!(d.error(), None);
        let bad = HumanDuration::from("soon");
        assert_eq!(bad.get(), Duration::ZERO);
        assert!(
            bad.error()
                .is_some_and(|e| e.contains("invalid duration \"soon\""))
        );
        assert!(
            HumanDuration::from("-5m")
                .error()
                .is_some_and(|e| e.contains("negative"))
        );
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        for (secs, text) in [(0, "0s"), (90, "90s"), (300, "5m"), (7200, "2h")] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
        let ms = format_duration(Duration::from_millis(1500));
        assert_eq!(parse_duration(&ms), Ok(Duration::from_millis(1500)), "{ms}");
    }
}
