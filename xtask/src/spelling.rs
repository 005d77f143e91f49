//! How a user types each verb and option: `ferry` uses the contract's
//! one-dash spellings (`-start`, `-dir DIR`) that its rewrite layer maps
//! onto clap's forms (`start`, `--dir`); `ferry-hub` is plain clap.
//!
//! The one-dash lists repeat `ferry_cli`'s rewrite table (which is private
//! to that crate); [`Spelling::check`] fails when a word here no longer
//! exists in the clap definition, so the two cannot silently drift.

use anyhow::{Result, bail};
use clap::{Arg, Command};

/// The contract's one-dash verbs (clap subcommands).
const FERRY_VERBS: &[&str] = &[
    "setup", "start", "stop", "status", "pause", "unpause", "reload",
];
/// The contract's one-dash options (clap long options).
const FERRY_OPTIONS: &[&str] = &[
    "version",
    "help",
    "dir",
    "detach",
    "restrict-paths",
    "debug",
    "trace",
];

/// A command line's spelling rules.
#[derive(Debug, Clone, Copy)]
pub struct Spelling {
    verbs: &'static [&'static str],
    options: &'static [&'static str],
}

impl Spelling {
    pub const FERRY: Spelling = Spelling {
        verbs: FERRY_VERBS,
        options: FERRY_OPTIONS,
    };
    pub const PLAIN: Spelling = Spelling {
        verbs: &[],
        options: &[],
    };

    /// How a user types this subcommand.
    pub fn verb(&self, name: &str) -> String {
        if self.verbs.contains(&name) {
            format!("-{name}")
        } else {
            name.to_string()
        }
    }

    /// How a user types this option (`-s` for short-only options).
    pub fn option(&self, arg: &Arg) -> Option<String> {
        if let Some(long) = arg.get_long() {
            Some(if self.options.contains(&long) {
                format!("-{long}")
            } else {
                format!("--{long}")
            })
        } else {
            arg.get_short().map(|s| format!("-{s}"))
        }
    }

    /// Fails unless every one-dash word names a subcommand or an option of
    /// `cmd` (which must be built, so help and version exist).
    pub fn check(&self, cmd: &Command) -> Result<()> {
        for verb in self.verbs {
            if !cmd.get_subcommands().any(|s| s.get_name() == *verb) {
                bail!(
                    "`{}` has no subcommand `{verb}` any more; update xtask/src/spelling.rs",
                    cmd.get_name()
                );
            }
        }
        let mut longs = Vec::new();
        collect_longs(cmd, &mut longs);
        for option in self.options {
            if !longs.iter().any(|l| l == option) {
                bail!(
                    "`{}` has no option `--{option}` any more; update xtask/src/spelling.rs",
                    cmd.get_name()
                );
            }
        }
        Ok(())
    }
}

fn collect_longs(cmd: &Command, out: &mut Vec<String>) {
    out.extend(
        cmd.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string)),
    );
    for sub in cmd.get_subcommands() {
        collect_longs(sub, out);
    }
}

/// The command, built (help, version and global options propagated).
pub fn built(mut cmd: Command) -> Command {
    cmd.build();
    cmd
}

/// Whether an argument belongs in a per-command listing: not hidden, not
/// clap's own help/version, not a global one (listed once).
pub fn listed(arg: &Arg) -> bool {
    !arg.is_hide_set()
        && !arg.is_global_set()
        && !matches!(arg.get_id().as_str(), "help" | "version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_one_dash_word_exists_in_the_clap_definition() {
        Spelling::FERRY.check(&built(ferry_cli::command())).unwrap();
    }

    #[test]
    fn verbs_and_options_are_spelled_as_the_contract_says() {
        let cmd = built(ferry_cli::command());
        assert_eq!(Spelling::FERRY.verb("start"), "-start");
        assert_eq!(Spelling::FERRY.verb("paths"), "paths");
        let start = cmd.find_subcommand("start").unwrap();
        let spelled: Vec<String> = start
            .get_arguments()
            .filter_map(|a| Spelling::FERRY.option(a))
            .collect();
        assert!(spelled.contains(&"-detach".to_string()), "{spelled:?}");
        assert!(spelled.contains(&"-dir".to_string()), "{spelled:?}");
        let setup = cmd.find_subcommand("setup").unwrap();
        let spelled: Vec<String> = setup
            .get_arguments()
            .filter_map(|a| Spelling::FERRY.option(a))
            .collect();
        assert!(spelled.contains(&"--hub-ca".to_string()), "{spelled:?}");
    }
}
