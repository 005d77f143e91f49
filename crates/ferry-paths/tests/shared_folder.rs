//! A grantee's rooted filesystem on a real tree: the owner's policy
//! narrowed to one shared folder ([`Policy::for_grant`]) keeps every
//! operation inside it, also through symlinks that stay beneath the
//! owner's rule but leave the share, and a read-only permission changes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_paths::{FsError, Policy, RootedFs, Temporary};

const CONFIG_PATHS: &str = "~/,1,1\n~/project/results/private,0,1\n";
const TASK: &str = "0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11";

struct Tree {
    _temp: tempfile::TempDir,
    home: PathBuf,
    owner: Policy,
}

impl Tree {
    fn new() -> Tree {
        let temp = tempfile::tempdir().unwrap();
        // Canonical, so real locations match what the kernel reports.
        let home = temp.path().canonicalize().unwrap().join("home");
        let results = home.join("project/results");
        for dir in [
            results.join("sub"),
            results.join("private"),
            home.join("project/secret"),
            home.join(".ferry"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(results.join("f"), "shared data").unwrap();
        fs::write(results.join("private/k"), "not shared").unwrap();
        fs::write(home.join("project/secret/plan"), "owner only").unwrap();
        fs::write(home.join("project/notes"), "owner only").unwrap();
        // Beneath the owner's rule `~/` but outside the share.
        symlink("../secret", results.join("up")).unwrap();
        symlink("../notes", results.join("notes_link")).unwrap();
        symlink(".", results.join("here")).unwrap();
        let owner = Policy::from_config_paths(CONFIG_PATHS, &home, &home.join(".ferry")).unwrap();
        Tree {
            _temp: temp,
            home,
            owner,
        }
    }

    fn grantee(&self, write: bool) -> RootedFs {
        let narrowed = self
            .owner
            .for_grant(Path::new("/~/project/results"), write)
            .unwrap();
        RootedFs::new(Arc::new(narrowed))
    }

    fn at(&self, below_home: &str) -> PathBuf {
        self.home.join(below_home)
    }
}

fn refused(result: Result<impl std::fmt::Debug, FsError>, words: &str) {
    match result {
        Err(e @ FsError::NotAllowed { .. }) => {
            assert!(e.to_string().contains(words), "{e} lacks {words:?}")
        }
        other => panic!("expected a refusal ({words}), got {other:?}"),
    }
}

#[test]
fn nothing_outside_the_shared_folder_is_reachable() {
    let tree = Tree::new();
    let fs = tree.grantee(true);
    let names: Vec<_> = fs
        .read_dir(&tree.at("project/results"))
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect();
    // The deeper SHARING=0 rule's area is left out of the listing.
    assert_eq!(names, ["f", "here", "notes_link", "sub", "up"]);
    let outside = "outside the folder shared with you";
    refused(fs.read_dir(&tree.at("project")), outside);
    refused(fs.read_dir(&tree.home), outside);
    refused(fs.open_read(&tree.at("project/notes")), outside);
    refused(fs.stat(&tree.at("project/secret/plan")), outside);
    refused(
        fs.read_dir(&tree.at("project/results/private")),
        "does not allow sharing (its SHARING flag is 0)",
    );
    refused(
        fs.open_read(&tree.at("project/results/../notes")),
        "`..` components are not allowed",
    );
}

#[test]
fn a_symlink_out_of_the_share_is_refused_though_it_stays_under_the_owners_rule() {
    let tree = Tree::new();
    let fs = tree.grantee(true);
    refused(fs.read_dir(&tree.at("project/results/up")), "symlink");
    refused(fs.open_read(&tree.at("project/results/up/plan")), "symlink");
    refused(
        fs.open_read(&tree.at("project/results/notes_link")),
        "symlink",
    );
    refused(
        fs.create_file(&tree.at("project/results/up/new"), 0o600),
        "symlink",
    );
    let through = Temporary::new(&tree.at("project/results/up/new"), TASK);
    refused(fs.create_temporary(&through, 0o600), "symlink");
    assert_eq!(fs::read_dir(tree.at("project/secret")).unwrap().count(), 1);
    // A link that stays inside the share works as for the owner.
    assert!(fs.open_read(&tree.at("project/results/here/f")).is_ok());
}

#[test]
fn a_read_write_grantee_changes_what_is_inside_but_not_the_folder_itself() {
    let tree = Tree::new();
    let fs = tree.grantee(true);
    fs.mkdir(&tree.at("project/results/new"), 0o755).unwrap();
    fs.rename(
        &tree.at("project/results/f"),
        &tree.at("project/results/new/g"),
    )
    .unwrap();
    let temp = Temporary::new(&tree.at("project/results/new/h"), TASK);
    fs.create_temporary(&temp, 0o600).unwrap();
    fs.commit_temporary(&temp).unwrap();
    fs.remove_file(&tree.at("project/results/new/h")).unwrap();
    let root = "the folder shared with you, which cannot be removed or renamed";
    refused(fs.remove_dir(&tree.at("project/results")), root);
    refused(fs.check_removable(&tree.at("project/results")), root);
    refused(fs.check_removable(&tree.at("project")), "outside");
    fs.check_removable(&tree.at("project/results/sub")).unwrap();
    assert!(tree.at("project/results/sub").is_dir());
    refused(
        fs.rename(&tree.at("project/results/sub"), &tree.at("project/results")),
        root,
    );
    refused(
        fs.rename(&tree.at("project/results/new/g"), &tree.at("project/g")),
        "outside the folder shared with you",
    );
    let beside = Temporary::new(&tree.at("project/results"), TASK);
    refused(
        fs.create_temporary(&beside, 0o600),
        "outside the folder shared with you",
    );
    assert!(tree.at("project/results/new/g").is_file());
}

#[test]
fn a_read_only_grantee_changes_nothing() {
    let tree = Tree::new();
    let fs = tree.grantee(false);
    assert!(fs.open_read(&tree.at("project/results/f")).is_ok());
    let read_only = "shared with you read-only";
    refused(fs.mkdir(&tree.at("project/results/new"), 0o755), read_only);
    refused(
        fs.create_file(&tree.at("project/results/new"), 0o600),
        read_only,
    );
    refused(fs.open_write(&tree.at("project/results/f")), read_only);
    refused(fs.remove_file(&tree.at("project/results/f")), read_only);
    refused(
        fs.rename(&tree.at("project/results/f"), &tree.at("project/results/g")),
        read_only,
    );
    let temp = Temporary::new(&tree.at("project/results/f"), TASK);
    refused(fs.create_temporary(&temp, 0o600), read_only);
    assert_eq!(
        fs::read_to_string(tree.at("project/results/f")).unwrap(),
        "shared data"
    );
    assert!(!tree.at("project/results/new").exists());
}
