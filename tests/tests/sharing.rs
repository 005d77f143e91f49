//! Sharing a folder, as users do it: alice shares `/~/project/results` on
//! her endpoint `src` read-only with bob and read-write with her group
//! `lab` (carol); bob finds it under shared-with-me, lists it and copies
//! from it into his own endpoint, and can do nothing else; carol writes
//! into it; a folder under a config-paths line with SHARING 0 cannot be
//! shared; deleting bob's permission cuts him off, mid-task included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_tests::{Lab, Ran, User};
use serde_json::Value;
use std::fs;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// One line on stderr that says why, and a non-zero exit.
fn refused<'a>(ran: &'a Ran, says: &str) -> &'a str {
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains(says), "wanted {says:?}: {ran:?}");
    &ran.stderr
}

/// The endpoint id `ferry -setup` wrote.

#[test]
fn a_shared_folder_is_all_a_grantee_reaches_and_deleting_the_share_cuts_them_off() {
    let lab = Lab::new();
    let project = lab.src.home.join("project");
    fs::create_dir_all(project.join("results/run1")).unwrap();
    fs::write(project.join("results/run1/data.csv"), b"a,b\n1,2\n").unwrap();
    fs::write(project.join("results/big.bin"), vec![7u8; 6_000_000]).unwrap();
    fs::write(project.join("secret.txt"), b"not shared").unwrap();
    // The owner allows sharing beneath ~/project/results only.
    fs::write(
        lab.src.dir.join("config-paths"),
        "~/,0,1\n~/project/results,1,1\n",
    )
    .unwrap();
    lab.src.run(&["-reload"]).ok();
    let src_id = lab.src.endpoint_id();

    // Bob and carol, each with an endpoint of their own.
    lab.hub.add_user("bob", "bobs password 1");
    lab.hub.add_user("carol", "carols password 1");
    let bob = User::new();
    let (_, key) = lab.hub.endpoint_key("bob", "bobs-laptop", &[]);
    bob.setup_with_key(&key, "bobs-laptop").ok();
    let _bobs_daemon = bob.start_foreground(&[]);
    bob.wait_hub_state("connected", LIMIT);
    let bob_token = lab.hub.token("bob");
    let carol_token = lab.hub.token("carol");
    let as_bob = |args: &[&str]| bob.run_as(&lab.hub, &bob_token, args);
    let as_carol = |args: &[&str]| bob.run_as(&lab.hub, &carol_token, args);

    // Alice shares: read-only with bob, read-write with her group lab.
    let out = lab.ferry(&[
        "endpoint",
        "permission",
        "create",
        "src:/~/project/results",
        "--permissions",
        "r",
        "--identity",
        "bob",
    ]);
    let bobs_permission = out
        .ok()
        .trim()
        .strip_prefix("Permission ID: ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .to_string();
    lab.ferry(&["group", "create", "lab"]).ok();
    lab.ferry(&["group", "member", "add", "lab", "carol"]).ok();
    lab.ferry(&[
        "endpoint",
        "permission",
        "create",
        "src:/~/project/results",
        "--permissions",
        "rw",
        "--group",
        "lab",
    ])
    .ok();
    let listed: Value = serde_json::from_str(
        lab.ferry(&["endpoint", "permission", "list", "src", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // A folder the endpoint does not let her share is refused by the hub,
    // in the endpoint's own words.
    refused(
        &lab.ferry(&[
            "endpoint",
            "permission",
            "create",
            "src:/~/project",
            "--permissions",
            "r",
            "--identity",
            "bob",
        ]),
        "SHARING",
    );

    // Bob finds it under shared-with-me, by its id.
    let shared: Value = serde_json::from_str(
        as_bob(&[
            "endpoint",
            "search",
            "--filter-scope",
            "shared-with-me",
            "--json",
        ])
        .ok(),
    )
    .unwrap();
    assert_eq!(shared[0]["id"], src_id.as_str(), "{shared}");
    assert_eq!(shared.as_array().unwrap().len(), 1);
    let results = format!("{src_id}:/~/project/results");
    let listing = as_bob(&["ls", &results]).ok().to_string();
    assert!(
        listing.contains("run1/") && listing.contains("big.bin"),
        "{listing}"
    );

    // He copies from it into his own endpoint.
    let out = as_bob(&[
        "transfer",
        "-r",
        &format!("{results}/run1"),
        "bobs-laptop:/~/copy",
    ]);
    let copy = out
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("Task ID: "))
        .unwrap_or_else(|| panic!("{out:?}"))
        .trim()
        .to_string();
    as_bob(&["task", "wait", &copy, "--timeout", "120"]).ok();
    assert_eq!(
        fs::read(bob.home.join("copy/data.csv")).unwrap(),
        b"a,b\n1,2\n"
    );

    // Nothing else: not the folder above, not a way round, no writes.
    refused(
        &as_bob(&["ls", &format!("{src_id}:/~/project")]),
        "outside what is shared",
    );
    refused(
        &as_bob(&["ls", &format!("{src_id}:/~/")]),
        "outside what is shared",
    );
    refused(
        &as_bob(&["ls", &format!("{results}/../")]),
        "outside what is shared",
    );
    refused(&as_bob(&["mkdir", &format!("{results}/mine")]), "read-only");
    refused(&as_bob(&["rm", &format!("{results}/big.bin")]), "read-only");
    refused(
        &as_bob(&[
            "transfer",
            "bobs-laptop:/~/copy/data.csv",
            &format!("{results}/x.csv"),
        ]),
        "read-only",
    );
    refused(&as_bob(&["endpoint", "permission", "list", &src_id]), "");
    // Alice's other endpoint is not his to know of.
    refused(&as_bob(&["ls", "dst:/~/"]), "no endpoint");

    // Carol, through the group, writes into it.
    as_carol(&["mkdir", &format!("{results}/from-carol")]).ok();
    assert!(project.join("results/from-carol").is_dir());
    refused(
        &as_carol(&["mkdir", &format!("{src_id}:/~/project/x")]),
        "outside what is shared",
    );

    // A long copy of bob's is running when alice stops sharing with him.
    let out = as_bob(&[
        "transfer",
        &format!("{results}/big.bin"),
        "bobs-laptop:/~/big.bin",
        "--bwlimit",
        "100K",
    ]);
    let task = out
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("Task ID: "))
        .unwrap_or_else(|| panic!("{out:?}"))
        .trim()
        .to_string();
    ferry_tests::wait_until(LIMIT, "bob's copy to start", || {
        let shown = as_bob(&["task", "show", &task, "--json"]);
        serde_json::from_str::<Value>(&shown.stdout)
            .is_ok_and(|t| t["bytes_transferred"].as_u64().unwrap_or(0) > 0)
    });
    let out = lab.ferry(&["endpoint", "permission", "delete", "src", &bobs_permission]);
    assert!(
        out.ok().contains(&task),
        "the task that used it is named: {out:?}"
    );
    let ended = as_bob(&["task", "wait", &task, "--timeout", "60"]);
    assert_ne!(ended.code, Some(0), "{ended:?}");
    let shown: Value =
        serde_json::from_str(&as_bob(&["task", "show", &task, "--json"]).stdout).unwrap();
    assert_eq!(shown["status"], "FAILED", "{shown}");
    let events = as_bob(&["task", "events", &task]).stdout;
    assert!(events.contains("permission"), "{events}");
    refused(&as_bob(&["ls", &results]), "no endpoint");
    // Carol's access stays.
    as_carol(&["ls", &results]).ok();
}
