//! Drives `RootedFs` through a tree full of hostile symlinks and checks that
//! every escape is refused and that nothing outside the allowed areas changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Debug;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ferry_paths::{EntryKind, FsError, Policy, RootedFs};

const CONFIG_PATHS: &str = "\
# the whole home, read-write
~/,0,1
~/ro,0,0
~/shared,0,1
~/proj/locked,0,0
";

struct Tree {
    _temp: tempfile::TempDir,
    top: PathBuf,
    home: PathBuf,
    fs: RootedFs,
}

impl Tree {
    /// The same tree seen through a plain rooted filesystem, through one
    /// that keeps its rule roots open, and through one that also holds
    /// parent directories across a batch (as the mover's): all must hold
    /// every invariant.
    fn both() -> [Tree; 3] {
        [Tree::new(0), Tree::new(1), Tree::new(2)]
    }

    fn new(held: u8) -> Tree {
        let temp = tempfile::tempdir().unwrap();
        // Canonical, so the expected real locations match what the kernel reports.
        let top = temp.path().canonicalize().unwrap();
        let home = top.join("home");
        let outside = top.join("outside");
        let config_dir = home.join(".ferry");
        for dir in [
            &outside,
            &config_dir,
            &home.join(".ssh"),
            &home.join("data/sub"),
            &home.join("ro/deep"),
            &home.join("shared/sub"),
            &home.join("proj/locked"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(outside.join("secret.txt"), "outside secret").unwrap();
        fs::write(home.join(".ssh/id"), "private key").unwrap();
        fs::write(config_dir.join("config-paths"), CONFIG_PATHS).unwrap();
        fs::write(home.join("ro/file"), "read-only content").unwrap();
        fs::write(home.join("proj/locked/file"), "locked").unwrap();
        for area in ["data", "shared"] {
            let area_dir = home.join(area);
            fs::write(area_dir.join("sub/file.txt"), "inside").unwrap();
            fs::write(area_dir.join("victim"), "victim").unwrap();
            let links: &[(&str, PathBuf)] = &[
                ("leaf_abs", outside.join("secret.txt")),
                ("dir_abs", outside.clone()),
                ("rel_up", "../../outside/secret.txt".into()),
                ("rel_up_dir", "../../outside".into()),
                ("to_ssh", "../.ssh".into()),
                ("to_ssh_file", "../.ssh/id".into()),
                ("to_config", "../.ferry".into()),
                ("to_ro", "../ro".into()),
                ("loop_a", "loop_b".into()),
                ("loop_b", "loop_a".into()),
                ("self_loop", "self_loop".into()),
                ("proc_root", "/proc/self/root".into()),
                ("good_rel", "sub/file.txt".into()),
                ("good_dir", "sub".into()),
                // Stays beneath the `~/` root for `data`, escapes the `~/shared` root.
                ("up", "..".into()),
            ];
            for (name, target) in links {
                symlink(target, area_dir.join(name)).unwrap();
            }
        }
        let policy = Policy::from_config_paths(CONFIG_PATHS, &home, &config_dir).unwrap();
        Tree {
            _temp: temp,
            top,
            home,
            fs: match held {
                0 => RootedFs::new(Arc::new(policy)),
                1 => RootedFs::with_cached_roots(Arc::new(policy)),
                _ => RootedFs::with_cached_roots(Arc::new(policy)).holding_dirs(),
            },
        }
    }

    fn at(&self, relative_to_home: &str) -> PathBuf {
        self.home.join(relative_to_home)
    }

    /// Everything an escape could read or change, recorded without following symlinks.
    fn protected_snapshot(&self) -> BTreeMap<PathBuf, (String, u64, SystemTime, Vec<u8>)> {
        let mut snapshot = BTreeMap::new();
        for root in [
            self.top.join("outside"),
            self.home.join(".ssh"),
            self.home.join(".ferry"),
            self.home.join("ro"),
            self.home.join("proj"),
        ] {
            record(&root, &mut snapshot);
        }
        // No new entries may appear next to home either.
        for entry in fs::read_dir(&self.top).unwrap() {
            record(&entry.unwrap().path(), &mut snapshot);
        }
        snapshot
    }
}

fn record(path: &Path, snapshot: &mut BTreeMap<PathBuf, (String, u64, SystemTime, Vec<u8>)>) {
    let metadata = fs::symlink_metadata(path).unwrap();
    let content = if metadata.is_file() {
        fs::read(path).unwrap()
    } else {
        Vec::new()
    };
    snapshot.insert(
        path.to_path_buf(),
        (
            format!("{:?}", metadata.file_type()),
            metadata.len(),
            metadata.modified().unwrap(),
            content,
        ),
    );
    if metadata.is_dir() && !path.ends_with("home") {
        for entry in fs::read_dir(path).unwrap() {
            record(&entry.unwrap().path(), snapshot);
        }
    }
}

#[track_caller]
fn assert_not_allowed<T: Debug>(what: &str, result: Result<T, FsError>) {
    match result {
        Err(FsError::NotAllowed { reason, .. }) => assert!(!reason.is_empty()),
        other => panic!("{what}: expected NotAllowed, got {other:?}"),
    }
}

#[track_caller]
fn assert_refused<T: Debug>(what: &str, result: Result<T, FsError>) {
    assert!(
        result.is_err(),
        "{what}: expected a refusal, got {result:?}"
    );
}

fn read_all(mut file: fs::File) -> String {
    let mut content = String::new();
    file.read_to_string(&mut content).unwrap();
    content
}

/// Directory symlinks that leave their rule's area, with a file name that exists at their target.
const ESCAPING_DIRS: &[(&str, &str)] = &[
    ("dir_abs", "secret.txt"),
    ("rel_up_dir", "secret.txt"),
    ("to_ssh", "id"),
    ("to_config", "config-paths"),
    ("proc_root", "etc"),
    ("loop_a", "x"),
    ("self_loop", "x"),
];

/// Leaf symlinks that leave their rule's area (or never resolve).
const ESCAPING_LEAVES: &[&str] = &[
    "leaf_abs",
    "rel_up",
    "to_ssh_file",
    "proc_root",
    "loop_a",
    "self_loop",
];

#[test]
fn escaping_directory_symlinks_are_refused_for_every_operation() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        // `data` sits under the `~/` rule, which has nested rules (symlinks there are
        // checked by real location); `shared` is a rule without nested rules (the
        // kernel's RESOLVE_BENEATH alone must hold).
        for area in ["data", "shared"] {
            for (link, existing) in ESCAPING_DIRS {
                let dir = tree.at(&format!("{area}/{link}"));
                let inside = dir.join(existing);
                let what = |op: &str| format!("{op} {}", inside.display());
                assert_not_allowed(&what("read_dir"), fs.read_dir(&dir));
                assert_not_allowed(&what("open_dir"), fs.open_dir(&dir));
                assert_not_allowed(&what("open_read"), fs.open_read(&inside));
                assert_not_allowed(&what("stat"), fs.stat(&inside));
                assert_not_allowed(&what("open_write"), fs.open_write(&inside));
                assert_not_allowed(
                    &what("create_file"),
                    fs.create_file(&dir.join("new"), 0o644),
                );
                assert_not_allowed(&what("mkdir"), fs.mkdir(&dir.join("newdir"), 0o755));
                assert_not_allowed(&what("remove_file"), fs.remove_file(&inside));
                assert_not_allowed(&what("remove_dir"), fs.remove_dir(&inside));
                assert_not_allowed(
                    &what("rename from"),
                    fs.rename(&inside, &tree.at(&format!("{area}/stolen"))),
                );
                assert_not_allowed(
                    &what("rename to"),
                    fs.rename(&tree.at(&format!("{area}/victim")), &dir.join("planted")),
                );
            }
        }
        assert_eq!(before, tree.protected_snapshot());
        assert_eq!(
            fs::read_to_string(tree.at("data/victim")).unwrap(),
            "victim"
        );
        assert!(!tree.at("data/stolen").exists());
    }
}

#[test]
fn escaping_leaf_symlinks_are_never_followed() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        for area in ["data", "shared"] {
            for link in ESCAPING_LEAVES {
                let path = tree.at(&format!("{area}/{link}"));
                let what = |op: &str| format!("{op} {}", path.display());
                assert_not_allowed(&what("open_read"), fs.open_read(&path));
                assert_not_allowed(&what("open_write"), fs.open_write(&path));
                // The name exists (as a symlink), so creating there must fail without following it.
                assert_refused(&what("create_file"), fs.create_file(&path, 0o644));
                assert_refused(&what("mkdir"), fs.mkdir(&path, 0o755));
                assert_refused(&what("remove_dir"), fs.remove_dir(&path));
                let metadata = fs.stat(&path).unwrap();
                assert_eq!(metadata.kind, EntryKind::Symlink, "{}", what("stat"));
            }
        }
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn removing_or_renaming_a_leaf_symlink_affects_only_the_link() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        tree.fs.remove_file(&tree.at("data/leaf_abs")).unwrap();
        tree.fs
            .rename(&tree.at("shared/rel_up"), &tree.at("shared/renamed"))
            .unwrap();
        assert!(fs::symlink_metadata(tree.at("data/leaf_abs")).is_err());
        assert_eq!(
            fs::read_link(tree.at("shared/renamed")).unwrap(),
            PathBuf::from("../../outside/secret.txt")
        );
        // Following the renamed link is still an escape.
        assert_not_allowed(
            "read renamed",
            tree.fs.open_read(&tree.at("shared/renamed")),
        );
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn dot_dot_paths_are_refused_before_resolution() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        for path in [
            "data/../.ssh/id",
            "data/sub/../../../outside/secret.txt",
            "shared/..",
            "../outside/secret.txt",
        ] {
            let path = tree.at(path);
            let what = |op: &str| format!("{op} {}", path.display());
            assert_not_allowed(&what("open_read"), fs.open_read(&path));
            assert_not_allowed(&what("stat"), fs.stat(&path));
            assert_not_allowed(&what("open_write"), fs.open_write(&path));
            assert_not_allowed(&what("create_file"), fs.create_file(&path.join("n"), 0o644));
            assert_not_allowed(&what("mkdir"), fs.mkdir(&path.join("d"), 0o755));
            assert_not_allowed(&what("remove_file"), fs.remove_file(&path));
        }
        assert_not_allowed(
            "relative path",
            fs.open_read(Path::new("data/sub/file.txt")),
        );
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn built_in_denies_hold_and_are_hidden_from_listings() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        assert_not_allowed("read ~/.ssh/id", fs.open_read(&tree.at(".ssh/id")));
        assert_not_allowed("list ~/.ssh", fs.read_dir(&tree.at(".ssh")));
        assert_not_allowed("stat ~/.ssh", fs.stat(&tree.at(".ssh")));
        assert_not_allowed(
            "write config",
            fs.open_write(&tree.at(".ferry/config-paths")),
        );
        assert_not_allowed(
            "create in ~/.ssh",
            fs.create_file(&tree.at(".ssh/x"), 0o600),
        );
        assert_not_allowed(
            "create ~/.profile",
            fs.create_file(&tree.at(".profile"), 0o600),
        );
        assert_not_allowed(
            "outside every rule",
            fs.open_read(&tree.top.join("outside/secret.txt")),
        );
        let names: Vec<OsString> = fs
            .read_dir(&tree.home)
            .unwrap()
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        assert!(names.contains(&"data".into()));
        assert!(!names.contains(&".ssh".into()), "{names:?}");
        assert!(!names.contains(&".ferry".into()), "{names:?}");
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn read_only_subtree_stays_read_only_directly_and_through_symlinks() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        for ro in ["ro", "data/to_ro"] {
            let file = tree.at(&format!("{ro}/file"));
            let what = |op: &str| format!("{op} {}", file.display());
            assert_eq!(read_all(fs.open_read(&file).unwrap()), "read-only content");
            assert!(fs.read_dir(&tree.at(ro)).is_ok());
            assert_not_allowed(&what("open_write"), fs.open_write(&file));
            assert_not_allowed(
                &what("create_file"),
                fs.create_file(&tree.at(&format!("{ro}/new")), 0o644),
            );
            assert_not_allowed(
                &what("mkdir"),
                fs.mkdir(&tree.at(&format!("{ro}/newdir")), 0o755),
            );
            assert_not_allowed(&what("remove_file"), fs.remove_file(&file));
            assert_not_allowed(
                &what("remove_dir"),
                fs.remove_dir(&tree.at(&format!("{ro}/deep"))),
            );
            assert_not_allowed(
                &what("rename from"),
                fs.rename(&file, &tree.at("data/moved")),
            );
            assert_not_allowed(
                &what("rename to"),
                fs.rename(&tree.at("data/victim"), &tree.at(&format!("{ro}/planted"))),
            );
        }
        // The rule root itself and the directory holding another rule's area cannot be moved away.
        assert_not_allowed("rename ro root", fs.rename(&tree.at("ro"), &tree.at("ro2")));
        assert_not_allowed("remove shared root", fs.remove_dir(&tree.at("shared")));
        assert_not_allowed(
            "rename shared root",
            fs.rename(&tree.at("shared"), &tree.at("s2")),
        );
        assert_not_allowed(
            "rename onto shared root",
            fs.rename(&tree.at("data/sub"), &tree.at("shared")),
        );
        assert_not_allowed(
            "rename proj",
            fs.rename(&tree.at("proj"), &tree.at("proj2")),
        );
        assert_eq!(
            fs::read_to_string(tree.at("data/victim")).unwrap(),
            "victim"
        );
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn symlink_to_an_ancestor_cannot_reach_nested_rule_areas() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        // `data/up` -> `..` is home: allowed in itself, but what lies beneath it is
        // judged by where it really is.
        assert!(fs.read_dir(&tree.at("data/up")).is_ok());
        assert_eq!(
            read_all(fs.open_read(&tree.at("data/up/data/victim")).unwrap()),
            "victim"
        );
        assert_eq!(
            read_all(fs.open_read(&tree.at("data/up/ro/file")).unwrap()),
            "read-only content"
        );
        assert_not_allowed(
            "read .ssh via up",
            fs.open_read(&tree.at("data/up/.ssh/id")),
        );
        assert_not_allowed("stat .ssh via up", fs.stat(&tree.at("data/up/.ssh")));
        assert_not_allowed(
            "list .ferry via up",
            fs.read_dir(&tree.at("data/up/.ferry")),
        );
        assert_not_allowed(
            "create .bashrc via up",
            fs.create_file(&tree.at("data/up/.bashrc"), 0o644),
        );
        assert_not_allowed(
            "write ro via up",
            fs.open_write(&tree.at("data/up/ro/file")),
        );
        assert_not_allowed(
            "mkdir in ro via up",
            fs.mkdir(&tree.at("data/up/ro/d"), 0o755),
        );
        assert_not_allowed(
            "remove ro file via up",
            fs.remove_file(&tree.at("data/up/ro/file")),
        );
        assert_not_allowed(
            "remove shared root via up",
            fs.remove_dir(&tree.at("data/up/shared")),
        );
        assert_not_allowed(
            "rename proj via up",
            fs.rename(&tree.at("data/up/proj"), &tree.at("data/proj2")),
        );
        assert_not_allowed(
            "rename onto shared root via up",
            fs.rename(&tree.at("data/sub"), &tree.at("data/up/shared")),
        );
        let names: Vec<OsString> = fs
            .read_dir(&tree.at("data/up"))
            .unwrap()
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        assert!(
            names.contains(&"data".into()) && !names.contains(&".ssh".into()),
            "{names:?}"
        );
        // Leaving the `~/shared` root through `..` is an escape.
        assert_not_allowed(
            "up from shared",
            fs.open_read(&tree.at("shared/up/data/victim")),
        );
        assert_eq!(
            fs::read_to_string(tree.at("data/victim")).unwrap(),
            "victim"
        );
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn normal_operations_inside_allowed_areas_work() {
    for tree in Tree::both() {
        let before = tree.protected_snapshot();
        let fs = &tree.fs;
        for area in ["data", "shared"] {
            let at = |p: &str| tree.at(&format!("{area}/{p}"));
            let mut created = fs.create_file(&at("new.txt"), 0o644).unwrap();
            created.write_all(b"hello").unwrap();
            drop(created);
            assert_eq!(read_all(fs.open_read(&at("new.txt")).unwrap()), "hello");
            let mut appended = fs.open_write(&at("new.txt")).unwrap();
            appended.write_all(b"HE").unwrap();
            drop(appended);
            assert_eq!(fs::read_to_string(at("new.txt")).unwrap(), "HEllo");
            assert_eq!(fs.stat(&at("new.txt")).unwrap().size, 5);
            assert_eq!(fs.stat(&at("new.txt")).unwrap().kind, EntryKind::File);

            fs.mkdir(&at("dir"), 0o755).unwrap();
            assert_eq!(fs.stat(&at("dir")).unwrap().kind, EntryKind::Dir);
            fs.rename(&at("new.txt"), &at("dir/moved.txt")).unwrap();
            assert_eq!(fs::read_to_string(at("dir/moved.txt")).unwrap(), "HEllo");
            let listing = fs.read_dir(&at("dir")).unwrap();
            assert_eq!(listing.len(), 1);
            assert_eq!(listing[0].name, OsString::from("moved.txt"));
            assert_eq!(listing[0].metadata.kind, EntryKind::File);
            assert_refused("remove non-empty dir", fs.remove_dir(&at("dir")));
            fs.remove_file(&at("dir/moved.txt")).unwrap();
            fs.remove_dir(&at("dir")).unwrap();
            assert!(!at("dir").exists());

            // Symlinks that stay inside the same rule's area work for reading.
            assert_eq!(read_all(fs.open_read(&at("good_rel")).unwrap()), "inside");
            assert_eq!(
                read_all(fs.open_read(&at("good_dir/file.txt")).unwrap()),
                "inside"
            );
            let names: Vec<OsString> = fs
                .read_dir(&at("good_dir"))
                .unwrap()
                .into_iter()
                .map(|entry| entry.name)
                .collect();
            assert_eq!(names, vec![OsString::from("file.txt")]);

            // Listing shows symlinks as symlinks, without following them.
            let listing = fs.read_dir(&tree.at(area)).unwrap();
            let leaf_abs = listing.iter().find(|e| e.name == "leaf_abs").unwrap();
            assert_eq!(leaf_abs.metadata.kind, EntryKind::Symlink);
            assert!(
                fs.open_read(&tree.at(area))
                    .unwrap()
                    .metadata()
                    .unwrap()
                    .is_dir()
            );
        }
        // The rule root can be listed and read through its own path.
        assert!(!fs.read_dir(&tree.at("shared")).unwrap().is_empty());
        assert_eq!(before, tree.protected_snapshot());
    }
}

#[test]
fn non_utf8_names_round_trip() {
    for tree in Tree::both() {
        let name = OsString::from_vec(b"caf\xe9 \xff\xfe\n.bin".to_vec());
        for area in ["data", "shared"] {
            let path = tree.at(area).join(&name);
            tree.fs
                .create_file(&path, 0o600)
                .unwrap()
                .write_all(b"bytes")
                .unwrap();
            let listing = tree.fs.read_dir(&tree.at(area)).unwrap();
            let entry = listing.iter().find(|entry| entry.name == name).unwrap();
            assert_eq!(entry.metadata.size, 5);
            let on_disk = fs::symlink_metadata(&path).unwrap();
            assert_eq!(entry.metadata.mode, on_disk.permissions().mode() & 0o7777);
            assert_eq!(read_all_bytes(tree.fs.open_read(&path).unwrap()), b"bytes");
            let renamed = tree
                .at(area)
                .join(OsString::from_vec(b"\x80renamed".to_vec()));
            tree.fs.rename(&path, &renamed).unwrap();
            tree.fs.remove_file(&renamed).unwrap();
        }
    }
}

#[test]
fn special_files_are_not_opened_as_files() {
    for tree in Tree::both() {
        let fifo = tree.at("data/fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Without O_NONBLOCK this would hang forever waiting for a writer.
        match tree.fs.open_read(&fifo) {
            Err(FsError::WrongKind { found, .. }) => assert_eq!(found, EntryKind::Other),
            other => panic!("expected WrongKind, got {other:?}"),
        }
        assert_refused("open_write fifo", tree.fs.open_write(&fifo));
    }
}

fn read_all_bytes(mut file: fs::File) -> Vec<u8> {
    let mut content = Vec::new();
    file.read_to_end(&mut content).unwrap();
    content
}
