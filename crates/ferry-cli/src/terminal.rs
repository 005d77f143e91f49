//! Text that crosses to a terminal.
//!
//! Names, labels, event texts and error messages come from other users'
//! files, peers and the hub. Written raw, an ESC sequence in a file name can
//! rewrite the screen, retitle the window or fake a prompt, and a CR or LF
//! can forge a line of output. Every human-readable line built from outside
//! text goes through [`escape`] or [`escape_bytes`]; `--json` output does
//! not (its encoding already carries the bytes exactly).
//!
//! What is escaped: C0 controls, DEL, C1 controls (as characters and as lone
//! bytes, which 8-bit terminals obey), the Unicode bidirectional overrides
//! and isolates (they reorder what is shown), and the backslash itself so an
//! escaped name cannot be confused with a literal one. Everything else,
//! including bytes that are not UTF-8, passes through unchanged: names are
//! bytes and must list exactly.

use std::borrow::Cow;

/// `text` with control characters escaped, borrowed when there are none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// Bytes (a file name) with control characters escaped; bytes that are not
/// UTF-8 stay as they are, except lone C1 bytes (0x80-0x9f).
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let clean = bytes.utf8_chunks().all(|chunk| {
        !chunk.valid().chars().any(needs_escape) && !chunk.invalid().iter().any(is_c1)
    });
    if clean {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        let mut text = String::new();
        for c in chunk.valid().chars() {
            push_char(&mut text, c);
        }
        out.extend_from_slice(text.as_bytes());
        for b in chunk.invalid() {
            if is_c1(b) {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            } else {
                out.push(*b);
            }
        }
    }
    Cow::Owned(out)
}

fn is_c1(b: &u8) -> bool {
    (0x80..=0x9f).contains(b)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || is_bidi_control(c)
}

/// Characters that reorder the text around them (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x100 && needs_escape(c) => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if needs_escape(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("data/run 1.h5"), Cow::Borrowed(_)));
        assert!(matches!(
            escape_bytes("café \u{00e9}".as_bytes()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            escape("a\x1b]0;owned\x07b\r\nc\td\x7f"),
            "a\\x1b]0;owned\\x07b\\r\\nc\\td\\x7f"
        );
        assert_eq!(escape("C1 \u{009b}31m"), "C1 \\x9b31m");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_except_c1() {
        assert_eq!(&*escape_bytes(b"caf\xe9 \xff.dat"), b"caf\xe9 \xff.dat");
        assert_eq!(&*escape_bytes(b"x\x9by\x1bz"), b"x\\x9by\\x1bz");
    }

    #[test]
    fn no_output_byte_is_a_control() {
        for b in 0u8..=255 {
            let input = [b'a', b, b'z'];
            let out = escape_bytes(&input);
            assert!(
                !out.iter().any(|o| *o < 0x20 || *o == 0x7f || is_c1(o)),
                "byte {b:#x} gave {out:?}"
            );
        }
    }
}
