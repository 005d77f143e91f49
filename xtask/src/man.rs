//! Man pages: ferry(1), ferry-hub(8), config-paths(5).
//!
//! Each page is a hand-written roff template in `packaging/man/` with a few
//! lines that are a single `@WORD@` placeholder, filled from the clap
//! definitions: the `.TH` title and NAME come from clap_mangen, the
//! SYNOPSIS, COMMANDS, OPTIONS and ENVIRONMENT from walking the clap
//! `Command`, spelled as users type them ([`Spelling`]). clap_mangen's own
//! SYNOPSIS and OPTIONS would show `ferry start --dir DIR`, which is not the
//! contract's spelling, hence the walk.

use crate::roff::{bold, escape, italic, paragraphs};
use crate::spelling::{Spelling, built, listed};
use crate::{VERSION, read_root_file, write_file};
use anyhow::{Context, Result, bail};
use clap::{Arg, Command};
use std::collections::BTreeMap;
use std::path::Path;

/// One rendered page.
#[derive(Debug)]
pub struct Page {
    /// File name, e.g. `ferry.1`.
    pub file: String,
    /// Man section, e.g. `1`.
    pub section: &'static str,
    pub text: String,
}

pub fn write_all(out: &Path) -> Result<()> {
    for page in pages()? {
        let path = out.join(&page.file);
        write_file(&path, &page.text)?;
        println!("{}", path.display());
    }
    Ok(())
}

pub fn pages() -> Result<Vec<Page>> {
    let date = ferry_proto::human::utc_date(i64::try_from(crate::source_date_epoch()).unwrap_or(0));
    Ok(vec![
        ferry_page(&date)?,
        hub_page(&date)?,
        config_paths_page(&date)?,
    ])
}

fn ferry_page(date: &str) -> Result<Page> {
    let cmd = built(ferry_cli::command());
    Spelling::FERRY.check(&cmd)?;
    documented(&cmd)?;
    let (title, name) = title_and_name(&cmd, "1", date)?;
    let text = fill(
        "packaging/man/ferry.1.in",
        &[
            ("@TITLE@", title),
            ("@NAME@", name),
            ("@SYNOPSIS@", synopsis(&cmd, Spelling::FERRY)),
            ("@COMMANDS@", commands(&cmd, Spelling::FERRY)),
            ("@ENVIRONMENT@", environment(&cmd, Spelling::FERRY)),
        ],
    )?;
    Ok(Page {
        file: "ferry.1".into(),
        section: "1",
        text,
    })
}

fn hub_page(date: &str) -> Result<Page> {
    let cmd = built(ferry_hub::command());
    documented(&cmd)?;
    let (title, name) = title_and_name(&cmd, "8", date)?;
    let text = fill(
        "packaging/man/ferry-hub.8.in",
        &[
            ("@TITLE@", title),
            ("@NAME@", name),
            ("@SYNOPSIS@", synopsis(&cmd, Spelling::PLAIN)),
            ("@COMMANDS@", commands(&cmd, Spelling::PLAIN)),
            ("@ENVIRONMENT@", environment(&cmd, Spelling::PLAIN)),
        ],
    )?;
    Ok(Page {
        file: "ferry-hub.8".into(),
        section: "8",
        text,
    })
}

fn config_paths_page(date: &str) -> Result<Page> {
    let page = Command::new("config-paths").about("which paths ferry transfers may reach");
    let (title, _) = title_and_name(&page, "5", date)?;
    let ferry = built(ferry_cli::command());
    let restrict = ferry
        .find_subcommand("start")
        .and_then(|s| {
            s.get_arguments()
                .find(|a| a.get_long() == Some("restrict-paths"))
        })
        .and_then(|a| a.get_long_help().or(a.get_help()))
        .context("ferry -start has no -restrict-paths help to quote")?;
    let text = fill(
        "packaging/man/config-paths.5.in",
        &[
            ("@TITLE@", title),
            ("@RESTRICT_PATHS@", paragraphs(&restrict.to_string(), false)),
        ],
    )?;
    Ok(Page {
        file: "config-paths.5".into(),
        section: "5",
        text,
    })
}

/// The `.TH` line and the NAME section, from clap_mangen.
fn title_and_name(cmd: &Command, section: &str, date: &str) -> Result<(String, String)> {
    let man = clap_mangen::Man::new(cmd.clone())
        .title(cmd.get_name().to_uppercase())
        .section(section)
        .date(date)
        .source(format!("ferry {VERSION}"))
        .manual("ferry manual");
    let mut title = Vec::new();
    man.render_title(&mut title)?;
    let mut name = Vec::new();
    man.render_name_section(&mut name)?;
    Ok((String::from_utf8(title)?, String::from_utf8(name)?))
}

/// The template with each placeholder line replaced; every placeholder
/// must occur exactly once, on a line of its own.
fn fill(template: &str, parts: &[(&str, String)]) -> Result<String> {
    let text = read_root_file(template)?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = parts.iter().find(|(k, _)| *k == line.trim()) {
            *seen.entry(*key).or_insert(0) += 1;
            out.push_str(value.trim_end());
            out.push('\n');
        } else {
            if is_placeholder(line.trim()) {
                bail!("{template}: unknown placeholder line {line:?}");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    for (key, _) in parts {
        if seen.get(key) != Some(&1) {
            bail!("{template}: the line {key} must occur exactly once");
        }
    }
    Ok(out)
}

fn is_placeholder(line: &str) -> bool {
    line.len() > 2
        && line.starts_with('@')
        && line.ends_with('@')
        && line[1..line.len() - 1]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_')
}

/// Every leaf command: its path of subcommand names and the command.
fn leaves<'a>(cmd: &'a Command, path: Vec<&'a str>, out: &mut Vec<(Vec<&'a str>, &'a Command)>) {
    // clap's generated `help` subcommand is not worth a man page entry.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let mut p = path.clone();
        p.push(sub.get_name());
        if sub.has_subcommands() {
            leaves(sub, p, out);
        } else {
            out.push((p, sub));
        }
    }
}

/// A usage line in roff: literal words bold, UPPERCASE placeholders italic,
/// brackets and bars plain.
fn usage_roff(usage: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let placeholder = word.chars().any(|c| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == '.');
        out.push_str(&if placeholder {
            italic(word)
        } else {
            bold(word)
        });
        word.clear();
    };
    for c in usage.chars() {
        if matches!(c, '[' | ']' | '|' | '(' | ')' | '{' | '}' | '<' | '>' | ' ') {
            flush(&mut word, &mut out);
            out.push_str(&escape(&c.to_string()));
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

/// An option as typed: `-detach`, `-restrict-paths SPEC`, `--hub URL`.
fn option_usage(arg: &Arg, spelling: Spelling) -> Option<String> {
    let word = spelling.option(arg)?;
    Some(if arg.get_action().takes_values() {
        format!("{word} {}", value_name(arg))
    } else {
        word
    })
}

/// A usage line made from the arguments, for commands without an
/// overridden usage.
fn generated_usage(bin: &str, words: &[String], cmd: &Command, spelling: Spelling) -> String {
    let mut line = format!("{bin} {}", words.join(" "));
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
    {
        if let Some(usage) = option_usage(arg, spelling) {
            if arg.is_required_set() {
                line.push_str(&format!(" {usage}"));
            } else {
                line.push_str(&format!(" [{usage}]"));
            }
        }
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let name = value_name(arg);
        if arg.is_required_set() {
            line.push_str(&format!(" {name}"));
        } else {
            line.push_str(&format!(" [{name}]"));
        }
    }
    line
}

fn synopsis(cmd: &Command, spelling: Spelling) -> String {
    let bin = cmd.get_name();
    let mut all = Vec::new();
    leaves(cmd, Vec::new(), &mut all);
    let mut lines = Vec::new();
    for (path, sub) in all {
        let words: Vec<String> = path.iter().map(|w| spelling.verb(w)).collect();
        let usage = match sub.get_overridden_usage() {
            Some(u) => u.to_string(),
            None => generated_usage(bin, &words, sub, spelling),
        };
        lines.push(usage_roff(usage.trim()));
    }
    let top: Vec<String> = cmd
        .get_arguments()
        .filter(|a| matches!(a.get_id().as_str(), "help" | "version"))
        .filter_map(|a| spelling.option(a))
        .collect();
    if !top.is_empty() {
        lines.push(usage_roff(&format!("{bin} {}", top.join(" | "))));
    }
    // No hyphenation or justification inside command lines.
    format!(".nh\n.ad l\n{}\n.ad\n.hy", lines.join("\n.br\n"))
}

/// Help text as a sentence: clap's help lines often lack the full stop
/// that the man page's running text needs.
fn sentence(text: &str) -> String {
    let trimmed = text.trim_end();
    match trimmed.chars().last() {
        Some(c) if c.is_alphanumeric() || c == ')' || c == '`' => format!("{trimmed}."),
        _ => trimmed.to_string(),
    }
}

/// One `.TP` item for an argument: its usage, its help, its default.
fn arg_item(arg: &Arg, spelling: Spelling) -> String {
    let head = if arg.is_positional() {
        italic(&value_name(arg))
    } else {
        match option_usage(arg, spelling) {
            Some(usage) => usage_roff(&usage),
            None => return String::new(),
        }
    };
    let mut out = format!(".TP\n{head}\n");
    if let Some(help) = arg.get_long_help().or(arg.get_help()) {
        out.push_str(&paragraphs(&sentence(&help.to_string()), true));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() && !arg.is_hide_default_value_set() {
        out.push_str(&format!("Default: {}.\n", italic(&defaults.join(", "))));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| bold(v.get_name()))
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() && !arg.is_hide_possible_values_set() {
        out.push_str(&format!("One of {}.\n", values.join(", ")));
    }
    if let Some(env) = arg.get_env().filter(|_| !arg.is_hide_env_set()) {
        out.push_str(&format!("Also set by {}.\n", bold(&env.to_string_lossy())));
    }
    out
}

fn commands(cmd: &Command, spelling: Spelling) -> String {
    let mut all = Vec::new();
    leaves(cmd, Vec::new(), &mut all);
    let mut out = String::new();
    for (path, sub) in all {
        let words: Vec<String> = path.iter().map(|w| spelling.verb(w)).collect();
        out.push_str(&format!(".TP\n{}\n", usage_roff(&words.join(" "))));
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            out.push_str(&paragraphs(&sentence(&about.to_string()), true));
        }
        let args: Vec<&Arg> = sub.get_arguments().filter(|a| listed(a)).collect();
        if !args.is_empty() {
            out.push_str(".RS\n");
            for arg in args {
                out.push_str(&arg_item(arg, spelling));
            }
            out.push_str(".RE\n");
        }
    }
    let globals: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
        .collect();
    if !globals.is_empty() {
        out.push_str(".SH OPTIONS\n");
        if globals.iter().any(|a| a.is_global_set()) {
            out.push_str("These options apply to every command.\n");
        }
        for arg in globals {
            out.push_str(&arg_item(arg, spelling));
        }
    }
    out
}

fn collect_env<'a>(cmd: &'a Command, out: &mut BTreeMap<String, &'a Arg>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env().filter(|_| !arg.is_hide_env_set()) {
            out.entry(env.to_string_lossy().into_owned()).or_insert(arg);
        }
    }
    for sub in cmd.get_subcommands() {
        collect_env(sub, out);
    }
}

fn environment(cmd: &Command, spelling: Spelling) -> String {
    let mut vars = BTreeMap::new();
    collect_env(cmd, &mut vars);
    let mut out = String::new();
    for (name, arg) in vars {
        out.push_str(&format!(".TP\n.B {}\n", escape(&name)));
        if let Some(word) = spelling.option(arg) {
            out.push_str(&format!("The default for {}", bold(&word)));
            match arg.get_help() {
                Some(help) => {
                    out.push_str(&format!(": {}\n", escape(&sentence(&help.to_string()))))
                }
                None => out.push_str(".\n"),
            }
        }
    }
    out
}

/// Every argument a user can type, with the command path it belongs to,
/// that has no help text: `-h` and the man page would show it bare.
fn undocumented(cmd: &Command) -> Vec<String> {
    fn walk(cmd: &Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let own = !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version");
            if own && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, cmd.get_name(), &mut out);
    out
}

fn documented(cmd: &Command) -> Result<()> {
    let missing = undocumented(cmd);
    if !missing.is_empty() {
        bail!(
            "arguments without help text (add a doc comment): {}",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_of_every_command_has_help_text() {
        for cmd in [ferry_cli::command(), ferry_hub::command()] {
            let cmd = built(cmd);
            assert_eq!(
                undocumented(&cmd),
                Vec::<String>::new(),
                "{}",
                cmd.get_name()
            );
        }
        // The walk does see arguments without help.
        let bare = built(
            Command::new("t").subcommand(Command::new("sub").arg(Arg::new("bare").long("bare"))),
        );
        assert_eq!(undocumented(&bare), ["t sub bare"]);
    }

    #[test]
    fn ferry_page_uses_the_contract_spelling() {
        let page = ferry_page("2025-01-01").unwrap();
        assert!(page.text.starts_with(".\\\""), "{}", page.text);
        assert!(page.text.contains(".TH FERRY 1"), "{}", page.text);
        // SYNOPSIS and COMMANDS show -start and -dir, never clap's forms.
        assert!(page.text.contains("\\fB\\-start\\fR"), "{}", page.text);
        assert!(
            page.text.contains("\\fB\\-dir\\fR \\fIDIR\\fR"),
            "{}",
            page.text
        );
        assert!(!page.text.contains("\\-\\-dir"), "{}", page.text);
        assert!(!page.text.contains("\\fBstart\\fR"), "{}", page.text);
        assert!(page.text.contains(".B FERRY_DIR"), "{}", page.text);
        // Links, with the --max-bytes extension.
        assert!(
            page.text.contains(
                "\\fBferry\\fR \\fBlink\\fR \\fBcreate\\fR [\\fB\\-\\-expires\\fR \\fIWHEN\\fR] [\\fB\\-\\-max\\-bytes\\fR \\fIBYTES\\fR]"
            ),
            "{}",
            page.text
        );
        assert!(!page.text.lines().any(|l| is_placeholder(l.trim())));
    }

    #[test]
    fn hub_and_config_paths_pages_render() {
        let hub = hub_page("").unwrap();
        assert!(hub.text.contains(".TH FERRY-HUB 8"), "{}", hub.text);
        assert!(hub.text.contains("\\fBserve\\fR"), "{}", hub.text);
        assert!(hub.text.contains(".B FERRY_HUB_DIR"), "{}", hub.text);
        let cp = config_paths_page("").unwrap();
        assert!(cp.text.contains(".TH CONFIG-PATHS 5"), "{}", cp.text);
        assert!(cp.text.contains("GridFTP"), "{}", cp.text);
    }

    #[test]
    fn usage_lines_mark_words_and_placeholders() {
        assert_eq!(
            usage_roff("ferry -stop [-dir DIR]"),
            "\\fBferry\\fR \\fB\\-stop\\fR [\\fB\\-dir\\fR \\fIDIR\\fR]"
        );
    }
}
