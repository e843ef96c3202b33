//! Text for a terminal. Node, pod and pool names, taints and reasons come
//! from the cluster and its users: printed raw, an escape sequence in one of
//! them could recolour, move the cursor or retitle the reader's terminal.

use std::borrow::Cow;

/// `text` with every control character but newline and tab, and every
/// bidirectional override, written as a visible escape (`\u{1b}`).
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if unsafe_char(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_overrides_become_visible_text() {
        assert_eq!(
            terminal_safe("node \u{1b}]0;owned\u{7}x\u{9b}2J"),
            "node \\u{1b}]0;owned\\u{7}x\\u{9b}2J"
        );
        assert_eq!(terminal_safe("a\u{202e}b\rc"), "a\\u{202e}b\\u{d}c");
        assert!(matches!(terminal_safe("pool web\n\tok ü"), Cow::Borrowed(_)));
    }
}
