//! Transfers on a grantee's behalf: the capability's grant for a side
//! narrows that side's own config-paths ([`ferry_mover::narrowed_policy`])
//! for every path the attempt touches. A hub that signs a wider grant than
//! the owner shared (it is compromised, or wrong) reaches nothing more:
//! these capabilities are signed with the test hub key, as a compromised
//! hub would sign them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use ferry_proto::share::{ShareGrant, ShareMode};
use ferry_proto::task::{TaskReport, TransferItem, TransferOptions};
use ferry_proto::wire_path::WirePath;
use support::{World, attempt, item, world};

fn grant(root: &str, mode: ShareMode) -> Option<ShareGrant> {
    Some(ShareGrant {
        permission_id: "forged-permission".into(),
        root: WirePath::from_bytes(root),
        mode,
        grantee: "mallory".into(),
    })
}

/// The destination's verdict on one attempt into b for a grantee.
async fn into_b(
    w: &mut World,
    attempt_no: u32,
    items: Vec<TransferItem>,
    options: TransferOptions,
    destination_grant: Option<ShareGrant>,
) -> TaskReport {
    let sealed = w.capability_with_grants(attempt_no, items, options, None, destination_grant);
    let (_, verdict) = attempt(w, sealed).await;
    verdict.expect("the destination gave no verdict")
}

fn failed_with(verdict: &TaskReport, words: &str) {
    match verdict {
        TaskReport::Failed { message, .. } => {
            assert!(message.contains(words), "{message:?} lacks {words:?}")
        }
        other => panic!("expected a failure ({words}), got {other:?}"),
    }
}

/// Every name in `dir`, temporaries included.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_destination_grant_writes_nothing() {
    let mut w = world().await;
    w.b.set_config_paths("~/,1,1\n");
    std::fs::write(w.a.home.join("f"), b"data").unwrap();
    std::fs::create_dir(w.a.home.join("tree")).unwrap();
    std::fs::write(w.a.home.join("tree/g"), b"data").unwrap();
    std::fs::create_dir(w.b.home.join("inbox")).unwrap();
    let read = grant("/~/inbox", ShareMode::Read);
    let verdict = into_b(
        &mut w,
        1,
        vec![item("/~/f", "/~/inbox/f", false)],
        TransferOptions::default(),
        read.clone(),
    )
    .await;
    failed_with(&verdict, "shared with you read-only");
    let verdict = into_b(
        &mut w,
        2,
        vec![item("/~/tree", "/~/inbox/tree", true)],
        TransferOptions::default(),
        read,
    )
    .await;
    failed_with(&verdict, "shared with you read-only");
    assert!(names(&w.b.home.join("inbox")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_grant_keeps_every_write_beneath_its_folder() {
    let mut w = world().await;
    w.b.set_config_paths("~/,1,1\n");
    std::fs::write(w.a.home.join("f"), b"data").unwrap();
    std::fs::create_dir(w.b.home.join("inbox")).unwrap();
    let inbox = grant("/~/inbox", ShareMode::ReadWrite);
    let verdict = into_b(
        &mut w,
        1,
        vec![item("/~/f", "/~/inbox/f", false)],
        TransferOptions::default(),
        inbox.clone(),
    )
    .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    assert_eq!(std::fs::read(w.b.home.join("inbox/f")).unwrap(), b"data");
    let outside = format!(
        "outside the folder shared with you ({})",
        w.b.home.join("inbox").display()
    );
    let verdict = into_b(
        &mut w,
        2,
        vec![item("/~/f", "/~/elsewhere/f", false)],
        TransferOptions::default(),
        inbox.clone(),
    )
    .await;
    failed_with(&verdict, &outside);
    // The folder itself is no file's name: its temporary would lie beside it.
    let verdict = into_b(
        &mut w,
        3,
        vec![item("/~/f", "/~/inbox", false)],
        TransferOptions::default(),
        grant("/~/inbox/f", ShareMode::ReadWrite),
    )
    .await;
    assert!(matches!(verdict, TaskReport::Failed { .. }), "{verdict:?}");
    assert!(!w.b.home.join("elsewhere").exists());
    assert_eq!(names(&w.b.home), [".ferry", "inbox"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_under_a_rule_with_sharing_0_and_a_policy_reload_both_count() {
    let mut w = world().await;
    // The support's owner policy is `~/,0,1`: nothing shared.
    std::fs::write(w.a.home.join("f"), b"data").unwrap();
    std::fs::create_dir(w.b.home.join("inbox")).unwrap();
    let inbox = grant("/~/inbox", ShareMode::ReadWrite);
    let verdict = into_b(
        &mut w,
        1,
        vec![item("/~/f", "/~/inbox/f", false)],
        TransferOptions::default(),
        inbox.clone(),
    )
    .await;
    failed_with(
        &verdict,
        "config-paths line 1 (~/,0,1) does not allow sharing (its SHARING flag is 0)",
    );
    // The owner shares (a SIGHUP reload): the next attempt goes through.
    w.b.set_config_paths("~/,0,1\n~/inbox,1,1\n");
    let verdict = into_b(
        &mut w,
        2,
        vec![item("/~/f", "/~/inbox/f", false)],
        TransferOptions::default(),
        inbox.clone(),
    )
    .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    // And stops sharing again: refused again.
    w.b.set_config_paths("~/,0,1\n~/inbox,0,1\n");
    let verdict = into_b(
        &mut w,
        3,
        vec![item("/~/f", "/~/inbox/g", false)],
        TransferOptions::default(),
        inbox,
    )
    .await;
    failed_with(
        &verdict,
        "config-paths line 2 (~/inbox,0,1) does not allow sharing",
    );
    assert_eq!(names(&w.b.home.join("inbox")), ["f"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_a_grantee_leaves_what_the_owner_did_not_share() {
    let mut w = world().await;
    w.b.set_config_paths("~/,1,1\n~/inbox/keep,0,1\n");
    std::fs::create_dir(w.a.home.join("tree")).unwrap();
    std::fs::write(w.a.home.join("tree/a"), b"a").unwrap();
    std::fs::create_dir_all(w.b.home.join("inbox/keep")).unwrap();
    std::fs::write(w.b.home.join("inbox/keep/k"), b"owner's").unwrap();
    std::fs::write(w.b.home.join("inbox/extra"), b"extra").unwrap();
    let options = TransferOptions {
        delete: true,
        ..TransferOptions::default()
    };
    let verdict = into_b(
        &mut w,
        1,
        vec![item("/~/tree", "/~/inbox", true)],
        options,
        grant("/~/inbox", ShareMode::ReadWrite),
    )
    .await;
    assert!(
        matches!(verdict, TaskReport::Succeeded { .. }),
        "{verdict:?}"
    );
    assert_eq!(names(&w.b.home.join("inbox")), ["a", "keep"]);
    assert_eq!(
        std::fs::read(w.b.home.join("inbox/keep/k")).unwrap(),
        b"owner's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_grant_reads_only_beneath_its_folder() {
    let mut w = world().await;
    w.a.set_config_paths("~/,1,1\n");
    w.b.set_config_paths("~/,0,1\n");
    std::fs::create_dir_all(w.a.home.join("results")).unwrap();
    std::fs::create_dir_all(w.a.home.join("secret")).unwrap();
    std::fs::write(w.a.home.join("results/r"), b"shared").unwrap();
    std::fs::write(w.a.home.join("secret/s"), b"owner only").unwrap();
    let results = grant("/~/results", ShareMode::Read);
    let sealed = w.capability_with_grants(
        1,
        vec![item("/~/secret/s", "/~/got", false)],
        TransferOptions::default(),
        results.clone(),
        None,
    );
    let (sent, _) = attempt(&mut w, sealed).await;
    let refused = sent.unwrap_err().to_string();
    assert!(
        refused.contains("outside the folder shared with you"),
        "{refused}"
    );
    assert!(!w.b.home.join("got").exists());
    let sealed = w.capability_with_grants(
        2,
        vec![item("/~/results/r", "/~/got", false)],
        TransferOptions::default(),
        results,
        None,
    );
    let (sent, verdict) = attempt(&mut w, sealed).await;
    sent.unwrap();
    assert!(
        matches!(verdict, Some(TaskReport::Succeeded { .. })),
        "{verdict:?}"
    );
    assert_eq!(std::fs::read(w.b.home.join("got")).unwrap(), b"shared");
    // A grant whose root climbs out is refused before anything is read.
    let sealed = w.capability_with_grants(
        3,
        vec![item("/~/results/r", "/~/got2", false)],
        TransferOptions::default(),
        grant("/~/results/..", ShareMode::Read),
        None,
    );
    let (sent, _) = attempt(&mut w, sealed).await;
    let refused = sent.unwrap_err().to_string();
    assert!(refused.contains("is not usable"), "{refused}");
    assert!(!w.b.home.join("got2").exists());
}
