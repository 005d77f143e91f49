//! The contract's one-dash spellings (`-start`, `-dir DIR`, ...), rewritten
//! into what clap parses (`start`, `--dir DIR`) before clap sees them.
//!
//! Only the exact spellings in the tables below are rewritten, and never a
//! token that is an option's value (`--name -start` names an endpoint
//! "-start"). Which options take values is read off the clap definition
//! itself, so the two cannot drift apart. Any other one-dash word is refused
//! here with a message that lists the real ones, since clap would otherwise
//! split `-foo` into `-f -o -o` and complain about `-f`.

use clap::Command;
use std::collections::HashSet;
use std::ffi::OsString;

/// One-dash verbs and the subcommands they become.
const VERBS: &[(&str, &str)] = &[
    ("-setup", "setup"),
    ("-start", "start"),
    ("-stop", "stop"),
    ("-status", "status"),
    ("-pause", "pause"),
    ("-unpause", "unpause"),
    ("-reload", "reload"),
];

/// One-dash options and their two-dash forms.
const OPTIONS: &[(&str, &str)] = &[
    ("-version", "--version"),
    ("-help", "--help"),
    ("-dir", "--dir"),
    ("-detach", "--detach"),
    ("-restrict-paths", "--restrict-paths"),
    ("-debug", "--debug"),
    ("-trace", "--trace"),
];

/// A one-dash word that is not part of the contract.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownOption(pub String);

impl std::fmt::Display for UnknownOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `--start`: a habit from other tools; the verb takes one dash.
        if let Some((one, _)) = self
            .0
            .strip_prefix('-')
            .and_then(|one_dash| VERBS.iter().find(|(one, _)| *one == one_dash))
        {
            return write!(
                f,
                "unknown option '{}'; did you mean `ferry {one}`?",
                self.0
            );
        }
        let known: Vec<&str> = VERBS.iter().chain(OPTIONS).map(|(one, _)| *one).collect();
        write!(
            f,
            "unknown option '{}'; one-dash options are {}",
            self.0,
            known.join(" ")
        )
    }
}

/// Every `--long` and `-s` of `cmd` and its subcommands that takes a value.
fn options_with_values(cmd: &Command, out: &mut HashSet<String>) {
    for arg in cmd.get_arguments() {
        if arg.is_positional() || !arg.get_action().takes_values() {
            continue;
        }
        if let Some(long) = arg.get_long() {
            out.insert(format!("--{long}"));
        }
        for alias in arg.get_all_aliases().into_iter().flatten() {
            out.insert(format!("--{alias}"));
        }
        if let Some(short) = arg.get_short() {
            out.insert(format!("-{short}"));
        }
    }
    for sub in cmd.get_subcommands() {
        options_with_values(sub, out);
    }
}

/// Rewrites `args` (program name first) for clap.
pub fn rewrite(args: Vec<OsString>, cmd: &Command) -> Result<Vec<OsString>, UnknownOption> {
    let mut takes_value = HashSet::new();
    options_with_values(cmd, &mut takes_value);
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    let mut value_next = false;
    let mut verbatim = false;
    for arg in iter {
        if verbatim || value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            verbatim = true;
            out.push(arg);
            continue;
        }
        let (name, inline_value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let rewritten = if let Some((_, sub)) = VERBS.iter().find(|(one, _)| *one == text) {
            OsString::from(*sub)
        } else if let Some((_, two)) = OPTIONS.iter().find(|(one, _)| *one == name) {
            match inline_value {
                Some(v) => OsString::from(format!("{two}={v}")),
                None => OsString::from(*two),
            }
        } else if is_unknown_one_dash(text) || is_two_dash_verb(text) {
            return Err(UnknownOption(text.to_string()));
        } else {
            arg.clone()
        };
        let flag = rewritten.to_str().unwrap_or_default().to_string();
        value_next = inline_value.is_none() && takes_value.contains(&flag);
        out.push(rewritten);
    }
    Ok(out)
}

/// `--start` for `-start`: refused with a hint rather than left to clap.
fn is_two_dash_verb(text: &str) -> bool {
    text.strip_prefix('-')
        .is_some_and(|one_dash| VERBS.iter().any(|(one, _)| *one == one_dash))
}

/// `-foo`: one dash, more than one letter, not a number. Two-letter forms
/// (`-r`, `-l`, `-h`) are clap's short flags and pass through.
fn is_unknown_one_dash(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('-') else {
        return false;
    };
    !rest.starts_with('-')
        && rest.chars().count() > 1
        && rest.starts_with(|c: char| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cmd() -> Command {
        Command::new("ferry")
            .arg(Arg::new("dir").long("dir").global(true))
            .subcommand(
                Command::new("setup")
                    .arg(Arg::new("key"))
                    .arg(Arg::new("name").long("name"))
                    .arg(Arg::new("force").long("force").action(ArgAction::SetTrue)),
            )
            .subcommand(
                Command::new("start")
                    .arg(Arg::new("restrict-paths").long("restrict-paths"))
                    .arg(Arg::new("detach").long("detach").action(ArgAction::SetTrue)),
            )
            .subcommand(Command::new("rm").arg(Arg::new("r").short('r').action(ArgAction::SetTrue)))
    }

    fn rw(args: &[&str]) -> Result<Vec<String>, UnknownOption> {
        let args = std::iter::once("ferry")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        rewrite(args, &cmd()).map(|v| {
            v.into_iter()
                .skip(1)
                .map(|s| s.into_string().unwrap())
                .collect()
        })
    }

    #[test]
    fn every_contract_spelling_is_rewritten() {
        for (one, sub) in VERBS {
            assert_eq!(rw(&[one]).unwrap(), vec![sub.to_string()]);
        }
        for (one, two) in OPTIONS {
            assert_eq!(rw(&["-start", one]).unwrap(), vec!["start", two]);
        }
    }

    #[test]
    fn options_may_come_before_or_after_the_verb() {
        assert_eq!(
            rw(&["-dir", "/d", "-status"]).unwrap(),
            ["--dir", "/d", "status"]
        );
        assert_eq!(
            rw(&["-status", "-dir", "/d"]).unwrap(),
            ["status", "--dir", "/d"]
        );
        assert_eq!(
            rw(&["-start", "-dir=/d", "-detach"]).unwrap(),
            ["start", "--dir=/d", "--detach"]
        );
    }

    #[test]
    fn values_are_never_rewritten() {
        assert_eq!(
            rw(&["-setup", "--name", "-start"]).unwrap(),
            ["setup", "--name", "-start"]
        );
        assert_eq!(
            rw(&["-status", "-dir", "-stop"]).unwrap(),
            ["status", "--dir", "-stop"]
        );
        assert_eq!(
            rw(&["-start", "-restrict-paths", "R/data,N/x"]).unwrap(),
            ["start", "--restrict-paths", "R/data,N/x"]
        );
        // After `--`, everything is an operand.
        assert_eq!(
            rw(&["-setup", "--", "-stop"]).unwrap(),
            ["setup", "--", "-stop"]
        );
    }

    #[test]
    fn unknown_one_dash_words_are_refused_with_the_real_list() {
        let err = rw(&["-strat"]).unwrap_err();
        assert_eq!(err, UnknownOption("-strat".into()));
        assert!(err.to_string().contains("-start"));
        assert!(rw(&["-status", "-json"]).is_err());
        // Short flags, negative numbers, two-dash options and bare words pass.
        assert_eq!(rw(&["rm", "-r", "x"]).unwrap(), ["rm", "-r", "x"]);
        assert_eq!(
            rw(&["-status", "--json", "-1"]).unwrap(),
            ["status", "--json", "-1"]
        );
        assert_eq!(rw(&["-status", "-"]).unwrap(), ["status", "-"]);
    }

    #[test]
    fn two_dash_verbs_get_the_one_dash_spelling_as_a_hint() {
        let err = rw(&["--start"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown option '--start'; did you mean `ferry -start`?"
        );
        assert!(rw(&["--setup", "KEY"]).is_err());
        // As a value it is just a value.
        assert_eq!(
            rw(&["-setup", "--name", "--stop"]).unwrap(),
            ["setup", "--name", "--stop"]
        );
    }

    #[test]
    fn non_utf8_arguments_pass_through_untouched() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'-', 0xff, b'x']);
        let args = vec![
            OsString::from("ferry"),
            OsString::from("-setup"),
            odd.clone(),
        ];
        let out = rewrite(args, &cmd()).unwrap();
        assert_eq!(out[2], odd);
    }
}
