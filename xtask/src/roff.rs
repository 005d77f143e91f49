//! Just enough roff for the generated parts of the man pages: escaping,
//! and clap help text turned into paragraphs.

/// Escapes text for use inside a roff line: backslashes, hyphens (so they
/// render as ASCII `-` and can be searched for), and a leading `.` or `'`
/// that roff would take for a request. `` `code` `` becomes bold.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut bold = false;
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '`' => {
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            _ => out.push(c),
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// Bold text (a command or option word).
pub fn bold(text: &str) -> String {
    format!("\\fB{}\\fR", escape(text))
}

/// Italic text (a value placeholder).
pub fn italic(text: &str) -> String {
    format!("\\fI{}\\fR", escape(text))
}

/// Help text (possibly several paragraphs separated by blank lines) as
/// roff lines, paragraphs separated with `.PP`... or, inside a `.TP` item,
/// with `.IP` so they stay indented.
pub fn paragraphs(help: &str, inside_item: bool) -> String {
    let mut out = String::new();
    for (i, para) in help
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str(if inside_item { ".IP\n" } else { ".PP\n" });
        }
        let joined: Vec<&str> = para.lines().map(str::trim).collect();
        out.push_str(&escape(&joined.join(" ")));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_roff_would_misread() {
        assert_eq!(escape("-dir"), "\\-dir");
        assert_eq!(escape("a\\b"), "a\\eb");
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("'quoted'"), "\\&'quoted'");
        assert_eq!(escape("run `ferry -stop`"), "run \\fBferry \\-stop\\fR");
        assert_eq!(escape("odd `tick"), "odd \\fBtick\\fR");
    }

    #[test]
    fn paragraphs_are_joined_and_separated() {
        assert_eq!(
            paragraphs("one\ntwo\n\nthree", false),
            "one two\n.PP\nthree\n"
        );
        assert_eq!(paragraphs("a\n\nb", true), "a\n.IP\nb\n");
    }
}
