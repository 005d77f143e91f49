//! Shell completions.
//!
//! `ferry`'s are hand-written (`packaging/completions/`): its one-dash
//! verbs and options (`-start`, `-dir DIR`) are rewritten into clap's forms
//! before clap parses, so clap_complete would offer `start` and `--dir`,
//! spellings the contract does not document. In exchange, [`check_ferry`]
//! fails when the clap definition has a verb or option that a hand-written
//! script does not offer. `ferry-hub` is plain clap: clap_complete writes
//! its completions.

use crate::spelling::{Spelling, built, listed};
use crate::{read_root_file, write_file};
use anyhow::{Result, bail};
use clap::Command;
use clap_complete::Shell;
use std::collections::BTreeSet;
use std::path::Path;

/// The hand-written scripts: (shell dir, file name, source in the repo).
const FERRY_SCRIPTS: &[(&str, &str, &str)] = &[
    ("bash", "ferry", "packaging/completions/ferry.bash"),
    ("zsh", "_ferry", "packaging/completions/_ferry"),
    ("fish", "ferry.fish", "packaging/completions/ferry.fish"),
];

pub fn write_all(out: &Path) -> Result<()> {
    check_ferry()?;
    for (dir, name, source) in FERRY_SCRIPTS {
        let path = out.join(dir).join(name);
        write_file(&path, read_root_file(source)?)?;
        println!("{}", path.display());
    }
    for (shell, dir, name) in [
        (Shell::Bash, "bash", "ferry-hub"),
        (Shell::Zsh, "zsh", "_ferry-hub"),
        (Shell::Fish, "fish", "ferry-hub.fish"),
    ] {
        let mut cmd = ferry_hub::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "ferry-hub", &mut script);
        let path = out.join(dir).join(name);
        write_file(&path, script)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// What a user may type: (word in bash/zsh, how fish declares it).
fn expected_words(cmd: &Command) -> Vec<(String, String)> {
    let spelling = Spelling::FERRY;
    let mut words = Vec::new();
    walk(cmd, spelling, true, &mut words);
    words
}

fn walk(cmd: &Command, spelling: Spelling, top: bool, out: &mut Vec<(String, String)>) {
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        // Every subcommand has clap's help; only the top level's is a word.
        if arg.is_positional() || (!top && !listed(arg) && !arg.is_global_set()) {
            continue;
        }
        let Some(word) = spelling.option(arg) else {
            continue;
        };
        let fish = if let Some(long) = word.strip_prefix("--") {
            format!("-l {long}")
        } else if word.len() == 2 {
            format!("-s {}", &word[1..])
        } else {
            format!("-o {}", &word[1..])
        };
        out.push((word, fish));
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let word = spelling.verb(sub.get_name());
        let fish = match word.strip_prefix('-') {
            Some(one_dash) => format!("-o {one_dash}"),
            None => word.clone(),
        };
        out.push((word, fish));
        walk(sub, spelling, false, out);
    }
}

/// The words of a script: runs of characters that can make up a verb or
/// an option.
fn words_of(script: &str) -> BTreeSet<&str> {
    script
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Fails when a hand-written script misses a verb or option of `ferry`.
pub fn check_ferry() -> Result<()> {
    let cmd = built(ferry_cli::command());
    Spelling::FERRY.check(&cmd)?;
    let expected = expected_words(&cmd);
    let mut missing = Vec::new();
    for (dir, _, source) in FERRY_SCRIPTS {
        let script = read_root_file(source)?;
        let words = words_of(&script);
        for (word, fish) in &expected {
            let found = if *dir == "fish" {
                script.contains(fish.as_str())
                    || (!fish.starts_with('-') && words.contains(fish.as_str()))
            } else {
                words.contains(word.as_str())
            };
            if !found {
                missing.push(format!("{source} does not offer `{word}`"));
            }
        }
    }
    if !missing.is_empty() {
        missing.dedup();
        bail!(
            "the hand-written completions lag behind `ferry`'s clap definition:\n  {}",
            missing.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_completions_cover_the_clap_definition() {
        check_ferry().unwrap();
    }

    #[test]
    fn expected_words_use_the_contract_spelling() {
        let words: Vec<String> = expected_words(&built(ferry_cli::command()))
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        for word in [
            "-start", "-dir", "-detach", "-version", "-help", "--json", "paths",
        ] {
            assert!(words.iter().any(|w| w == word), "{word} in {words:?}");
        }
        assert!(
            !words.iter().any(|w| w == "start" || w == "--dir"),
            "{words:?}"
        );
    }

    #[test]
    fn words_split_on_shell_punctuation() {
        let words = words_of("case $prev in\n  -dir | --dir) x;;\n opts=\"-start\"");
        assert!(words.contains("-dir") && words.contains("--dir") && words.contains("-start"));
    }
}
