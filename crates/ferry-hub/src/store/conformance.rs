//! The storage conformance suite: the contract of [`Storage`], as checks
//! that take a store and panic where a backend breaks it. Every backend
//! runs [`run`] on fresh, empty stores and [`reopen`] on one database
//! opened twice; the SQLite backend does, in memory and on disk
//! (`store::sqlite::tests`).

use super::*;

/// One check of the contract, on a fresh, empty store.
pub type Check = fn(&dyn Storage);

/// Every check that needs only a fresh store.
pub const CHECKS: &[(&str, Check)] = &[
    ("users_are_unique", users_are_unique),
    (
        "audit_events_are_kept_per_endpoint_newest_and_pruned_in_batches",
        audit_events_are_kept_per_endpoint_newest_and_pruned_in_batches,
    ),
    (
        "users_are_found_by_name_and_id",
        users_are_found_by_name_and_id,
    ),
    (
        "clients_are_unique_and_keep_their_secret_hash",
        clients_are_unique_and_keep_their_secret_hash,
    ),
    (
        "apps_are_listed_by_owner_rotated_and_deleted_with_their_tokens",
        apps_are_listed_by_owner_rotated_and_deleted_with_their_tokens,
    ),
    (
        "consents_are_remembered_and_revoking_one_revokes_its_tokens",
        consents_are_remembered_and_revoking_one_revokes_its_tokens,
    ),
    (
        "a_code_works_once_and_its_replay_revokes_its_tokens",
        a_code_works_once_and_its_replay_revokes_its_tokens,
    ),
    (
        "tokens_live_until_they_expire_or_are_revoked",
        tokens_live_until_they_expire_or_are_revoked,
    ),
    ("a_refresh_token_rotates_once", a_refresh_token_rotates_once),
    (
        "sessions_live_until_they_expire_or_end",
        sessions_live_until_they_expire_or_end,
    ),
    (
        "purging_keeps_tokens_a_day_for_replay_detection",
        purging_keeps_tokens_a_day_for_replay_detection,
    ),
    (
        "setup_keys_work_once_before_expiry",
        setup_keys_work_once_before_expiry,
    ),
    (
        "nodes_are_named_once_per_endpoint_and_registered_by_their_key",
        nodes_are_named_once_per_endpoint_and_registered_by_their_key,
    ),
    (
        "what_refers_to_a_missing_row_is_not_found",
        what_refers_to_a_missing_row_is_not_found,
    ),
    (
        "endpoint_names_are_unique_per_owner_and_searchable",
        endpoint_names_are_unique_per_owner_and_searchable,
    ),
    (
        "a_deleted_endpoint_is_revoked_hidden_and_frees_its_name",
        a_deleted_endpoint_is_revoked_hidden_and_frees_its_name,
    ),
    (
        "revoked_endpoints_are_counted_and_listed_newest_first",
        revoked_endpoints_are_counted_and_listed_newest_first,
    ),
    (
        "a_registered_certificate_replaces_the_older_one",
        a_registered_certificate_replaces_the_older_one,
    ),
    (
        "a_failed_task_keeps_the_running_attempts_counters_and_its_reason",
        a_failed_task_keeps_the_running_attempts_counters_and_its_reason,
    ),
    (
        "a_tasks_latest_attempt_says_over_how_many_nodes_it_ran",
        a_tasks_latest_attempt_says_over_how_many_nodes_it_ran,
    ),
    (
        "task_lists_are_per_owner_newest_first_and_bounded",
        task_lists_are_per_owner_newest_first_and_bounded,
    ),
    (
        "tasks_are_found_by_a_literal_id_prefix_oldest_first",
        tasks_are_found_by_a_literal_id_prefix_oldest_first,
    ),
    (
        "task_ids_are_unique_and_a_task_needs_its_endpoints",
        task_ids_are_unique_and_a_task_needs_its_endpoints,
    ),
    (
        "events_are_capped_but_a_tasks_end_is_always_kept",
        events_are_capped_but_a_tasks_end_is_always_kept,
    ),
    (
        "a_task_round_trips_every_field_exactly",
        a_task_round_trips_every_field_exactly,
    ),
    (
        "tasks_of_one_second_list_in_order_of_submission",
        tasks_of_one_second_list_in_order_of_submission,
    ),
    (
        "task_stats_count_each_state_and_sum_the_tasks_totals",
        task_stats_count_each_state_and_sum_the_tasks_totals,
    ),
    (
        "personal_tokens_list_their_owners_live_grants_newest_first",
        personal_tokens_list_their_owners_live_grants_newest_first,
    ),
    (
        "a_user_can_end_every_session_but_the_one_in_use",
        a_user_can_end_every_session_but_the_one_in_use,
    ),
    (
        "permissions_reach_their_grantees_until_deleted_or_expired",
        permissions_reach_their_grantees_until_deleted_or_expired,
    ),
    (
        "a_timers_due_run_is_claimed_once_and_it_finishes",
        a_timers_due_run_is_claimed_once_and_it_finishes,
    ),
    (
        "timers_are_per_owner_and_keep_their_latest_events",
        timers_are_per_owner_and_keep_their_latest_events,
    ),
    (
        "each_news_of_a_task_is_claimed_once_and_a_wait_again_after_it_moved",
        each_news_of_a_task_is_claimed_once_and_a_wait_again_after_it_moved,
    ),
    (
        "users_addresses_and_webhooks_are_kept_per_user",
        users_addresses_and_webhooks_are_kept_per_user,
    ),
    (
        "identities_link_to_one_account_and_sign_ins_remember_theirs",
        identities_link_to_one_account_and_sign_ins_remember_theirs,
    ),
    (
        "an_endpoints_allowed_domains_are_kept_and_cleared",
        an_endpoints_allowed_domains_are_kept_and_cleared,
    ),
    (
        "a_codes_openid_request_is_kept_until_purged",
        a_codes_openid_request_is_kept_until_purged,
    ),
    (
        "a_submission_id_names_one_task_of_its_owner",
        a_submission_id_names_one_task_of_its_owner,
    ),
    (
        "a_task_is_held_by_one_instance_until_its_lease_ends",
        a_task_is_held_by_one_instance_until_its_lease_ends,
    ),
    (
        "a_task_goes_to_the_live_instance_holding_its_sources_link",
        a_task_goes_to_the_live_instance_holding_its_sources_link,
    ),
    (
        "a_claim_holds_while_its_instance_lives_and_sweeps_hear_only_changes",
        a_claim_holds_while_its_instance_lives_and_sweeps_hear_only_changes,
    ),
    (
        "a_shared_key_is_the_first_one_stored",
        a_shared_key_is_the_first_one_stored,
    ),
    (
        "node_links_name_the_live_instance_holding_each_node",
        node_links_name_the_live_instance_holding_each_node,
    ),
    (
        "links_are_found_by_token_listed_per_creator_and_charged_within_budget",
        links_are_found_by_token_listed_per_creator_and_charged_within_budget,
    ),
    (
        "a_message_between_instances_is_taken_once_answered_and_purged",
        a_message_between_instances_is_taken_once_answered_and_purged,
    ),
    (
        "failed_sign_ins_count_in_a_window_and_clear",
        failed_sign_ins_count_in_a_window_and_clear,
    ),
    (
        "a_task_driver_sees_the_links_other_instances_hold_of_its_endpoints",
        a_task_driver_sees_the_links_other_instances_hold_of_its_endpoints,
    ),
];

/// Runs every check, each on a store `fresh` makes, naming the one that
/// fails.
pub fn run(fresh: &dyn Fn() -> Box<dyn Storage>) {
    for (name, check) in CHECKS {
        let store = fresh();
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*store)))
        {
            eprintln!("storage conformance: {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

/// The checks that need the same database opened again (`open` opens it,
/// empty the first time), as after a restart or `kill -9`.
pub fn reopen(open: &dyn Fn() -> Box<dyn Storage>) {
    tasks_and_their_counters_survive_a_reopen_and_are_the_furthest_attempts(open);
    instances_claiming_at_once_never_hold_the_same_task(open);
}

pub fn links_are_found_by_token_listed_per_creator_and_charged_within_budget(s: &dyn Storage) {
    let alice = two_endpoints(s);
    let bob = s.add_user("bob", "hash", 0).unwrap();
    let link = |id: &str, hash: &str, by: i64, max_bytes| LinkRow {
        id: id.into(),
        token_hash: hash.into(),
        endpoint_id: "e1".into(),
        path: b"/~/pub/r\xffsults".to_vec(),
        created_by: by,
        created: 10,
        expires: Some(100),
        deleted: false,
        max_bytes,
        bytes_served: 0,
    };
    let a = link("l-a", "hash-a", alice, Some(100));
    s.put_link(&a).unwrap();
    s.put_link(&link("l-b", "hash-b", bob, None)).unwrap();
    assert!(
        s.put_link(&link("l-c", "hash-a", alice, None)).is_err(),
        "a token names one link"
    );
    assert_eq!(s.link_by_token("hash-a").unwrap(), Some(a.clone()));
    assert_eq!(s.link_by_token("hash-x").unwrap(), None);
    let ids = |uid| -> Vec<String> { s.links_of(uid).unwrap().into_iter().map(|l| l.id).collect() };
    assert_eq!(ids(alice), ["l-a"]);
    assert_eq!(ids(bob), ["l-b"]);
    // Within its budget, then refused without counting.
    assert!(s.charge_link("l-a", 60).unwrap());
    assert!(s.charge_link("l-a", 40).unwrap());
    assert!(!s.charge_link("l-a", 1).unwrap());
    assert_eq!(
        s.link_by_token("hash-a").unwrap().unwrap().bytes_served,
        100
    );
    assert!(
        s.charge_link("l-b", 1 << 40).unwrap(),
        "no budget: no limit"
    );
    // Only its creator deletes it, once; it stays findable, deleted.
    assert!(!s.delete_link(bob, "l-a").unwrap());
    assert!(s.delete_link(alice, "l-a").unwrap());
    assert!(!s.delete_link(alice, "l-a").unwrap());
    assert!(s.link_by_token("hash-a").unwrap().unwrap().deleted);
    assert!(ids(alice).is_empty());
}

fn two_endpoints(s: &dyn Storage) -> i64 {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.create_endpoint("e2", uid, "cluster", 0).unwrap();
    uid
}

pub fn new_timer(id: &str, owner_id: i64, start: i64) -> NewTimer {
    NewTimer {
        id: id.into(),
        owner_id,
        submission: "{}".into(),
        label: None,
        interval: 10,
        start,
        stop_after_runs: Some(2),
        stop_after_date: Some(1_000),
        run_deadline: None,
        created: start,
    }
}

pub fn a_timers_due_run_is_claimed_once_and_it_finishes(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let mut timer = new_timer("t1", uid, 100);
    timer.label = Some("nightly".into());
    timer.run_deadline = Some(60);
    s.create_timer(&timer).unwrap();
    let row = s.timer("t1").unwrap().unwrap();
    assert_eq!(row.timer, timer, "every field round-trips");
    assert_eq!(
        (row.next_run, row.runs, row.skipped, row.status),
        (Some(100), 0, 0, TimerStatus::Active)
    );
    assert!(s.due_timers(99, 10).unwrap().is_empty(), "not yet due");
    assert_eq!(s.due_timers(100, 10).unwrap().len(), 1);
    // Two hubs read the same due time; one takes it.
    assert!(s.claim_timer_run("t1", 100, Some(110), false).unwrap());
    assert!(!s.claim_timer_run("t1", 100, Some(110), false).unwrap());
    s.record_timer_run("t1", "task-1").unwrap();
    assert!(s.claim_timer_run("t1", 110, Some(120), true).unwrap());
    let row = s.timer("t1").unwrap().unwrap();
    assert_eq!(
        (
            row.next_run,
            row.runs,
            row.skipped,
            row.last_task_id.as_deref()
        ),
        (Some(120), 1, 1, Some("task-1"))
    );
    assert!(s.claim_timer_run("t1", 120, None, false).unwrap());
    let row = s.timer("t1").unwrap().unwrap();
    assert_eq!((row.next_run, row.status), (None, TimerStatus::Finished));
    assert!(s.due_timers(i64::MAX, 10).unwrap().is_empty());
    assert!(!s.claim_timer_run("t1", 120, None, false).unwrap());
    assert!(matches!(
        s.create_timer(&timer).unwrap_err(),
        StoreError::Conflict { what: "timer id" }
    ));
    assert!(matches!(
        s.record_timer_run("none", "task").unwrap_err(),
        StoreError::NotFound
    ));
}

pub fn timers_are_per_owner_and_keep_their_latest_events(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "hash", 0).unwrap();
    s.create_timer(&new_timer("b", alice, 2)).unwrap();
    s.create_timer(&new_timer("a", alice, 1)).unwrap();
    s.create_timer(&new_timer("c", bob, 1)).unwrap();
    let ids = |rows: Vec<TimerRow>| rows.into_iter().map(|r| r.timer.id).collect::<Vec<_>>();
    assert_eq!(ids(s.timers_of(alice, 10).unwrap()), ["a", "b"]);
    assert_eq!(ids(s.timers_of(alice, 1).unwrap()), ["a"]);
    assert_eq!(ids(s.timers_of(bob, 10).unwrap()), ["c"]);
    assert_eq!(ids(s.due_timers(5, 10).unwrap()), ["a", "c", "b"]);
    for n in 0..MAX_TIMER_EVENTS + 5 {
        s.add_timer_event("a", "SKIPPED", &format!("skip {n}"), n as i64)
            .unwrap();
    }
    let events = s.timer_events("a", 1000).unwrap();
    assert_eq!(events.len() as u64, MAX_TIMER_EVENTS);
    assert_eq!(
        events.last().unwrap().description,
        format!("skip {}", MAX_TIMER_EVENTS + 4)
    );
    assert_eq!(s.timer_events("a", 2).unwrap()[1].seq, MAX_TIMER_EVENTS + 5);
    assert!(s.delete_timer("a").unwrap());
    assert!(!s.delete_timer("a").unwrap());
    assert!(s.timer("a").unwrap().is_none());
    assert!(s.timer_events("a", 10).unwrap().is_empty());
    assert_eq!(ids(s.timers_of(alice, 10).unwrap()), ["b"]);
}

pub fn users_are_found_by_name_and_id(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "h2", 0).unwrap();
    assert_ne!(uid, bob);
    let row = s.user_by_name("alice").unwrap().unwrap();
    assert_eq!((row.id, row.password_hash.as_str()), (uid, "hash"));
    assert_eq!(s.user_by_id(bob).unwrap().unwrap().name, "bob");
    assert_eq!(s.user_by_name("carol").unwrap(), None);
    assert_eq!(s.user_by_id(bob + 100).unwrap(), None);
}

pub fn clients_are_unique_and_keep_their_secret_hash(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let client = ClientRow {
        client_id: "svc-1".into(),
        name: "robot".into(),
        secret_hash: Some("sh".into()),
        user_id: uid,
        scopes: "transfer".into(),
        kind: ClientKind::Admin,
        owner_id: None,
        redirect_uris: vec![],
    };
    s.add_client(&client, 0).unwrap();
    assert_eq!(s.client("svc-1").unwrap(), Some(client.clone()));
    assert!(matches!(
        s.add_client(&client, 1),
        Err(StoreError::Conflict { what: "client id" })
    ));
    assert_eq!(s.client("svc-2").unwrap(), None);
}

fn app(id: &str, owner: i64, kind: ClientKind, secret: Option<&str>) -> ClientRow {
    ClientRow {
        client_id: id.into(),
        name: format!("app {id}"),
        secret_hash: secret.map(str::to_string),
        user_id: owner,
        scopes: String::new(),
        kind,
        owner_id: Some(owner),
        redirect_uris: vec![
            "https://portal.example/cb".into(),
            "https://p.example/x?y".into(),
        ],
    }
}

pub fn apps_are_listed_by_owner_rotated_and_deleted_with_their_tokens(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "hash", 0).unwrap();
    let portal = app("p1", alice, ClientKind::Portal, Some("old"));
    let native = app("n1", alice, ClientKind::Native, None);
    s.add_client(&portal, 1).unwrap();
    s.add_client(&native, 2).unwrap();
    s.add_client(&app("b1", bob, ClientKind::Service, Some("s")), 3)
        .unwrap();
    assert_eq!(
        s.clients_of(alice).unwrap(),
        [portal.clone(), native.clone()]
    );
    assert_eq!(s.client("p1").unwrap(), Some(portal.clone()));
    assert!(s.set_client_secret("p1", "new").unwrap());
    assert_eq!(
        s.client("p1").unwrap().unwrap().secret_hash.as_deref(),
        Some("new")
    );
    assert!(
        !s.set_client_secret("n1", "x").unwrap(),
        "a public app has none"
    );
    assert!(!s.set_client_secret("zz", "x").unwrap());
    let mut t = token(bob, "pt", TokenKind::Access, 100, "g1");
    t.client_id = "p1".into();
    s.put_token(&t).unwrap();
    let mut other = token(bob, "ot", TokenKind::Access, 100, "g2");
    other.client_id = "b1".into();
    s.put_token(&other).unwrap();
    s.put_consent(bob, "p1", "transfer", 4).unwrap();
    assert!(s.delete_client("p1").unwrap());
    assert!(!s.delete_client("p1").unwrap());
    assert_eq!(s.client("p1").unwrap(), None);
    assert_eq!(s.token("pt", TokenKind::Access, 0).unwrap(), None);
    assert!(s.token("ot", TokenKind::Access, 0).unwrap().is_some());
    assert_eq!(s.consent(bob, "p1").unwrap(), None);
    assert_eq!(s.clients_of(alice).unwrap(), [native]);

    // A service account and its own account come together, or not at all.
    let robot = app("s1", alice, ClientKind::Service, Some("s"));
    let robot_id = s
        .add_service_account("s1@clients.hub", "!svc", &robot, 5)
        .unwrap();
    assert_ne!(robot_id, alice);
    let stored = s.client("s1").unwrap().unwrap();
    assert_eq!(stored.user_id, robot_id);
    assert_eq!(
        s.user_by_id(robot_id).unwrap().unwrap().name,
        "s1@clients.hub"
    );
    let taken = app("n1", alice, ClientKind::Service, Some("s"));
    assert!(matches!(
        s.add_service_account("n1@clients.hub", "!svc", &taken, 6),
        Err(StoreError::Conflict { what: "client id" })
    ));
    assert_eq!(
        s.user_by_name("n1@clients.hub").unwrap(),
        None,
        "no account left behind"
    );
}

pub fn consents_are_remembered_and_revoking_one_revokes_its_tokens(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "hash", 0).unwrap();
    s.add_client(&app("p1", alice, ClientKind::Portal, Some("h")), 1)
        .unwrap();
    s.add_client(&app("p2", alice, ClientKind::Portal, Some("h")), 1)
        .unwrap();
    assert_eq!(s.consent(bob, "p1").unwrap(), None);
    s.put_consent(bob, "p1", "transfer", 5).unwrap();
    s.put_consent(bob, "p1", "offline_access transfer", 6)
        .unwrap();
    s.put_consent(bob, "p2", "openid", 7).unwrap();
    s.put_consent(alice, "p1", "openid", 8).unwrap();
    assert_eq!(
        s.consent(bob, "p1").unwrap().as_deref(),
        Some("offline_access transfer")
    );
    let listed = s.consents_of(bob).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| (
                c.client_id.as_str(),
                c.client_name.as_str(),
                c.scope.as_str(),
                c.created
            ))
            .collect::<Vec<_>>(),
        [
            ("p1", "app p1", "offline_access transfer", 6),
            ("p2", "app p2", "openid", 7)
        ]
    );
    let mut mine = token(bob, "r1", TokenKind::Refresh, 100, "g1");
    mine.client_id = "p1".into();
    s.put_token(&mine).unwrap();
    let mut theirs = token(alice, "r2", TokenKind::Refresh, 100, "g2");
    theirs.client_id = "p1".into();
    s.put_token(&theirs).unwrap();
    let mut elsewhere = token(bob, "r3", TokenKind::Refresh, 100, "g3");
    elsewhere.client_id = "p2".into();
    s.put_token(&elsewhere).unwrap();
    assert!(s.revoke_consent(bob, "p1").unwrap());
    assert!(!s.revoke_consent(bob, "p1").unwrap());
    assert_eq!(s.consent(bob, "p1").unwrap(), None);
    assert_eq!(s.token("r1", TokenKind::Refresh, 0).unwrap(), None);
    assert!(s.token("r2", TokenKind::Refresh, 0).unwrap().is_some());
    assert!(s.token("r3", TokenKind::Refresh, 0).unwrap().is_some());
    assert_eq!(s.consent(alice, "p1").unwrap().as_deref(), Some("openid"));
}

fn token(uid: i64, hash: &str, kind: TokenKind, expires: i64, grant: &str) -> TokenRow {
    TokenRow {
        token_hash: hash.into(),
        kind,
        user_id: uid,
        user_name: "alice".into(),
        client_id: "ferry-cli".into(),
        scope: "transfer".into(),
        expires,
        grant_id: grant.into(),
    }
}

pub fn tokens_live_until_they_expire_or_are_revoked(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let access = token(uid, "a", TokenKind::Access, 100, "g1");
    s.put_token(&access).unwrap();
    s.put_token(&token(uid, "b", TokenKind::Access, 100, "g1"))
        .unwrap();
    s.put_token(&token(uid, "c", TokenKind::Access, 100, "g2"))
        .unwrap();
    assert_eq!(s.token("a", TokenKind::Access, 100).unwrap(), Some(access));
    assert_eq!(
        s.token("a", TokenKind::Access, 101).unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.token("a", TokenKind::Refresh, 50).unwrap(),
        None,
        "another kind"
    );
    assert_eq!(s.token_was_revoked("a").unwrap(), None);
    s.revoke_token("a").unwrap();
    assert_eq!(s.token("a", TokenKind::Access, 50).unwrap(), None);
    assert_eq!(s.token_was_revoked("a").unwrap().as_deref(), Some("g1"));
    s.revoke_grant("g1").unwrap();
    assert_eq!(
        s.token("b", TokenKind::Access, 50).unwrap(),
        None,
        "same grant"
    );
    assert!(
        s.token("c", TokenKind::Access, 50).unwrap().is_some(),
        "other grant"
    );
    assert_eq!(s.token_was_revoked("never issued").unwrap(), None);
}

pub fn a_refresh_token_rotates_once(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.put_token(&token(uid, "r", TokenKind::Refresh, 100, "g"))
        .unwrap();
    assert!(s.revoke_live_token("r").unwrap());
    assert!(!s.revoke_live_token("r").unwrap(), "a second rotation");
    assert!(!s.revoke_live_token("unknown").unwrap());
}

pub fn sessions_live_until_they_expire_or_end(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.put_session("s1", uid, "csrf", 100).unwrap();
    let row = s.session("s1", 100).unwrap().unwrap();
    assert_eq!(
        (
            row.user_id,
            row.user_name.as_str(),
            row.csrf.as_str(),
            row.expires
        ),
        (uid, "alice", "csrf", 100)
    );
    assert_eq!(s.session("s1", 101).unwrap(), None);
    s.delete_session("s1").unwrap();
    assert_eq!(s.session("s1", 50).unwrap(), None);
    s.delete_session("s1").unwrap();
}

pub fn personal_tokens_list_their_owners_live_grants_newest_first(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "hash", 0).unwrap();
    for (grant, user, label, created, expires) in [
        ("g-old", alice, "laptop script", 10, 1_000),
        ("g-new", alice, "nightly ☾", 20, 2_000),
        ("g-short", alice, "expires soon", 30, 50),
        ("g-bob", bob, "bob's", 40, 1_000),
    ] {
        s.put_token(&token(
            user,
            &format!("hash-{grant}"),
            TokenKind::Access,
            expires,
            grant,
        ))
        .unwrap();
        s.put_personal_token(grant, user, label, created).unwrap();
    }
    // An OAuth grant of alice's is no personal token.
    s.put_token(&token(alice, "hash-cli", TokenKind::Access, 1_000, "g-cli"))
        .unwrap();
    let listed = |user, now| -> Vec<(String, String, i64, i64)> {
        s.personal_tokens(user, now)
            .unwrap()
            .into_iter()
            .map(|t| (t.grant_id, t.label, t.created, t.expires))
            .collect()
    };
    assert_eq!(
        listed(alice, 100),
        vec![
            ("g-new".into(), "nightly ☾".into(), 20, 2_000),
            ("g-old".into(), "laptop script".into(), 10, 1_000),
        ],
        "newest first, the expired one gone"
    );
    s.revoke_grant("g-new").unwrap();
    assert_eq!(listed(alice, 100).len(), 1, "a revoked one is gone");
    assert_eq!(listed(bob, 100).len(), 1);
    assert_eq!(s.personal_tokens(alice, 100).unwrap()[0].scope, "transfer");
}

pub fn a_user_can_end_every_session_but_the_one_in_use(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "hash", 0).unwrap();
    s.put_session("here", alice, "c", 300).unwrap();
    s.put_session("phone", alice, "c", 200).unwrap();
    s.put_session("old", alice, "c", 50).unwrap();
    s.put_session("bobs", bob, "c", 300).unwrap();
    let hashes = |user| -> Vec<String> {
        s.sessions_of(user, 100)
            .unwrap()
            .into_iter()
            .map(|l| l.session_hash)
            .collect()
    };
    assert_eq!(
        hashes(alice),
        ["here", "phone"],
        "live ones, longest-lived first"
    );
    assert_eq!(s.end_other_sessions(alice, "here").unwrap(), 2);
    assert_eq!(hashes(alice), ["here"]);
    assert_eq!(hashes(bob), ["bobs"], "another user's sessions stay");
    assert!(s.session("here", 100).unwrap().is_some());
}

pub fn permissions_reach_their_grantees_until_deleted_or_expired(s: &dyn Storage) {
    let alice = two_endpoints(s);
    let bob = s.add_user("bob", "hash", 0).unwrap();
    let carol = s.add_user("carol", "hash", 0).unwrap();
    let dave = s.add_user("dave", "hash", 0).unwrap();
    s.create_group("g1", "lab", alice, 0).unwrap();
    assert!(matches!(
        s.create_group("g2", "lab", bob, 0),
        Err(StoreError::Conflict { .. })
    ));
    assert!(s.add_group_member("g1", carol).unwrap());
    assert!(
        !s.add_group_member("g1", carol).unwrap(),
        "already a member"
    );
    let permission = |id: &str, path: &[u8], grantee: Grantee, expires| PermissionRow {
        id: id.into(),
        endpoint_id: "e1".into(),
        path: path.to_vec(),
        mode: ferry_proto::share::ShareMode::Read,
        grantee,
        expires,
        created: 10,
        created_by: alice,
    };
    let odd_path = b"/~/project/r\xffsults";
    s.put_permission(&permission(
        "p-bob",
        odd_path,
        Grantee::Identity {
            user_id: bob,
            name: String::new(),
        },
        None,
    ))
    .unwrap();
    s.put_permission(&permission(
        "p-lab",
        b"/~/lab",
        Grantee::Group {
            group_id: "g1".into(),
            name: String::new(),
        },
        Some(500),
    ))
    .unwrap();
    let ids = |user, now| -> Vec<String> {
        s.permissions_for(user, "e1", now)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(bob, 100), ["p-bob"]);
    assert_eq!(ids(carol, 100), ["p-lab"], "through the group");
    assert!(ids(carol, 501).is_empty(), "expired");
    assert!(ids(dave, 100).is_empty());
    let read = s.permission("p-bob").unwrap().unwrap();
    assert_eq!(read.path, odd_path, "bytes exactly");
    assert_eq!(
        read.grantee,
        Grantee::Identity {
            user_id: bob,
            name: "bob".into()
        }
    );
    assert_eq!(
        s.permission("p-lab").unwrap().unwrap().grantee,
        Grantee::Group {
            group_id: "g1".into(),
            name: "lab".into()
        }
    );
    let shared: Vec<String> = s
        .shared_with(bob, "", 100, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(shared, ["e1"]);
    assert!(
        s.shared_with(alice, "", 100, 10).unwrap().is_empty(),
        "not one's own"
    );
    assert_eq!(s.endpoint_permissions("e1", 100).unwrap().len(), 2);
    let groups = s.groups_of(carol).unwrap();
    assert_eq!(
        (
            groups[0].name.as_str(),
            groups[0].owner_name.as_str(),
            groups[0].members.clone()
        ),
        ("lab", "alice", vec!["carol".to_string()])
    );
    // A task acting under a permission is found by it while ACTIVE.
    s.create_task(&new_task("t1", bob, 10), "SUBMITTED", "x")
        .unwrap();
    s.put_task_grant("t1", "source", "p-bob").unwrap();
    assert_eq!(
        s.task_grants("t1").unwrap(),
        [("source".to_string(), "p-bob".to_string())]
    );
    assert_eq!(s.active_tasks_of_permission("p-bob").unwrap(), ["t1"]);
    assert!(s.delete_permission("e1", "p-bob").unwrap());
    assert!(!s.delete_permission("e1", "p-bob").unwrap());
    assert!(ids(bob, 100).is_empty(), "deleted");
    assert!(s.remove_group_member("g1", carol).unwrap());
    assert!(ids(carol, 100).is_empty(), "left the group");
}

pub fn audit_events_are_kept_per_endpoint_newest_and_pruned_in_batches(s: &dyn Storage) {
    let alice = s.add_user("alice", "h", 0).unwrap();
    let event = |time: i64, endpoint: &str, action: &str, path: Option<&[u8]>| AuditRow {
        time,
        endpoint_id: endpoint.into(),
        actor_id: Some(alice),
        identity: "alice".into(),
        action: action.into(),
        path: path.map(<[u8]>::to_vec),
        task_id: (action == "read").then(|| "t1".to_string()),
        detail: String::new(),
    };
    s.record_audit(&[]).unwrap();
    // Names are bytes: one that is not UTF-8 comes back exactly.
    let odd: &[u8] = b"/~/d\xff/\x01";
    s.record_audit(&[
        event(10, "e1", "ls", Some(b"/~/d")),
        event(10, "e1", "read", Some(odd)),
        event(20, "e2", "mkdir", Some(b"/x")),
        event(30, "e1", "permission_create", None),
    ])
    .unwrap();
    let e1 = s.audit_events("e1", 0, 100).unwrap();
    assert_eq!(
        e1,
        [
            event(10, "e1", "ls", Some(b"/~/d")),
            event(10, "e1", "read", Some(odd)),
            event(30, "e1", "permission_create", None),
        ],
        "oldest first, in the order recorded, only this endpoint's"
    );
    assert_eq!(s.audit_events("e1", 11, 100).unwrap(), e1[2..], "since");
    assert_eq!(s.audit_events("e1", 0, 2).unwrap(), e1[1..], "the newest");
    assert!(s.audit_events("e3", 0, 100).unwrap().is_empty());
    // Pruning takes the oldest first, at most `limit` at a time.
    assert_eq!(s.prune_audit(25, 2).unwrap(), 2);
    assert_eq!(s.prune_audit(25, 2).unwrap(), 1);
    assert_eq!(s.prune_audit(25, 2).unwrap(), 0);
    assert_eq!(s.audit_events("e1", 0, 100).unwrap(), e1[2..]);
    assert!(s.audit_events("e2", 0, 100).unwrap().is_empty());

    // A permission's expiry is found once it passed, and recorded once.
    s.create_endpoint("e4", alice, "laptop", 0).unwrap();
    let expiring = |id: &str, expires: Option<i64>| PermissionRow {
        id: id.into(),
        endpoint_id: "e4".into(),
        path: b"/p".to_vec(),
        mode: ferry_proto::share::ShareMode::Read,
        grantee: Grantee::AllAuthenticated,
        expires,
        created: 0,
        created_by: alice,
    };
    s.put_permission(&expiring("p-b", Some(40))).unwrap();
    s.put_permission(&expiring("p-a", Some(50))).unwrap();
    s.put_permission(&expiring("p-later", Some(99))).unwrap();
    s.put_permission(&expiring("p-never", None)).unwrap();
    let due = |now| -> Vec<String> {
        s.unrecorded_expiries(now, 10)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(due(99), ["p-b", "p-a"], "soonest first; live at its expiry");
    assert_eq!(s.unrecorded_expiries(99, 1).unwrap().len(), 1);
    let expired = event(40, "e4", "permission_expire", Some(b"/p"));
    assert!(s.record_expiry("p-b", &expired).unwrap());
    assert!(!s.record_expiry("p-b", &expired).unwrap(), "once");
    assert_eq!(due(99), ["p-a"]);
    assert_eq!(s.audit_events("e4", 0, 10).unwrap(), [expired]);
}

pub fn purging_keeps_tokens_a_day_for_replay_detection(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let now = 1_000_000;
    s.put_session("old", uid, "c", now - 1).unwrap();
    s.put_session("live", uid, "c", now + 10).unwrap();
    s.put_token(&token(uid, "recent", TokenKind::Refresh, now - 10, "g"))
        .unwrap();
    s.put_token(&token(
        uid,
        "ancient",
        TokenKind::Refresh,
        now - 90_000,
        "g",
    ))
    .unwrap();
    s.revoke_grant("g").unwrap();
    s.purge_expired(now).unwrap();
    assert!(s.session("live", now).unwrap().is_some());
    assert_eq!(s.session("old", 0).unwrap(), None);
    assert!(s.token_was_revoked("recent").unwrap().is_some());
    assert_eq!(s.token_was_revoked("ancient").unwrap(), None);
}

pub fn what_refers_to_a_missing_row_is_not_found(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    assert!(matches!(
        s.create_endpoint("e1", uid + 1, "laptop", 0),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.put_setup_key("k", "no such endpoint", 0),
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.endpoint("e1").unwrap(), None);
    assert!(!s.revoke_endpoint("e1").unwrap());
    assert!(!s.rename_endpoint("e1", "x").unwrap());
    assert_eq!(s.delete_endpoint("e1").unwrap(), DeleteOutcome::Missing);
    assert_eq!(s.task("t1").unwrap(), None);
    assert_eq!(s.task_work("t1").unwrap(), None);
    assert!(!s.begin_attempt("t1", 1).unwrap());
    assert!(!s.note_fault("t1", "x").unwrap());
    assert!(
        !s.finish_task("t1", TaskStatus::Canceled, None, None, 1)
            .unwrap()
    );
    assert!(s.task_events("t1", 10).unwrap().is_empty());
}

pub fn revoked_endpoints_are_counted_and_listed_newest_first(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        s.create_endpoint(id, uid, id, i as i64).unwrap();
    }
    assert_eq!(s.revoked_endpoint_count().unwrap(), 0);
    assert!(s.revoke_endpoint("a").unwrap());
    assert!(s.revoke_endpoint("c").unwrap());
    assert_eq!(s.revoked_endpoint_count().unwrap(), 2);
    assert_eq!(s.revoked_endpoints(10).unwrap(), ["c", "a"]);
    assert_eq!(s.revoked_endpoints(1).unwrap(), ["c"]);
}

pub fn a_registered_certificate_replaces_the_older_one(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    assert_eq!(s.endpoint("e1").unwrap().unwrap().cert_sha256, None);
    s.set_endpoint_cert("e1", "aa", 1).unwrap();
    s.set_endpoint_cert("e1", "bb", 2).unwrap();
    let row = s.endpoint("e1").unwrap().unwrap();
    assert_eq!(row.cert_sha256.as_deref(), Some("bb"));
    assert_eq!((row.owner_name.as_str(), row.created), ("alice", 0));
}

pub fn tasks_are_found_by_a_literal_id_prefix_oldest_first(s: &dyn Storage) {
    let uid = two_endpoints(s);
    let bob = s.add_user("bob", "h", 0).unwrap();
    for (i, id) in ["ab12-2", "ab12-1", "ab%x", "cd"].iter().enumerate() {
        s.create_task(&new_task(id, uid, i as i64), "SUBMITTED", "x")
            .unwrap();
    }
    s.create_task(&new_task("ab12-bob", bob, 9), "SUBMITTED", "x")
        .unwrap();
    let ids = |prefix: &str, limit| -> Vec<String> {
        s.tasks_with_prefix(uid, prefix, limit)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(ids("ab12", 10), ["ab12-2", "ab12-1"]);
    assert_eq!(ids("ab12", 1), ["ab12-2"]);
    assert_eq!(ids("ab%", 10), ["ab%x"], "% matches itself");
    assert_eq!(ids("a_", 10), Vec::<String>::new(), "_ matches itself");
}

pub fn task_ids_are_unique_and_a_task_needs_its_endpoints(s: &dyn Storage) {
    let uid = two_endpoints(s);
    s.create_task(&new_task("t1", uid, 0), "SUBMITTED", "x")
        .unwrap();
    assert!(matches!(
        s.create_task(&new_task("t1", uid, 1), "SUBMITTED", "x"),
        Err(StoreError::Conflict { .. })
    ));
    let mut orphan = new_task("t2", uid, 2);
    orphan.destination_id = "nowhere".into();
    assert!(matches!(
        s.create_task(&orphan, "SUBMITTED", "x"),
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.task("t2").unwrap(), None, "nothing of it stays");
    assert_eq!(s.task_events("t1", 10).unwrap().len(), 1);
    assert_eq!(
        s.task_work("t1").unwrap(),
        Some(TaskWork {
            items: new_task("t1", uid, 0).items,
            options: TransferOptions::default(),
        })
    );
}

pub fn users_are_unique(s: &dyn Storage) {
    s.add_user("alice", "hash", 0).unwrap();
    assert!(matches!(
        s.add_user("alice", "h", 0),
        Err(StoreError::Conflict { .. })
    ));
}

pub fn a_code_works_once_and_its_replay_revokes_its_tokens(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let code = AuthCodeRow {
        code_hash: "c".into(),
        client_id: "ferry-cli".into(),
        user_id: uid,
        redirect_uri: "r".into(),
        challenge: "x".into(),
        scope: "transfer".into(),
        expires: 100,
    };
    s.put_auth_code(&code).unwrap();
    assert_eq!(s.take_auth_code("c", 200).unwrap(), CodeUse::Expired);
    assert_eq!(
        s.take_auth_code("c", 50).unwrap(),
        CodeUse::Fresh(code.clone())
    );
    let token = TokenRow {
        token_hash: "t".into(),
        kind: TokenKind::Access,
        user_id: uid,
        user_name: "alice".into(),
        client_id: "ferry-cli".into(),
        scope: "transfer".into(),
        expires: 1000,
        grant_id: "c".into(),
    };
    s.put_token(&token).unwrap();
    assert_eq!(s.token("t", TokenKind::Access, 50).unwrap(), Some(token));
    assert_eq!(s.token("t", TokenKind::Refresh, 50).unwrap(), None);
    assert_eq!(s.take_auth_code("c", 50).unwrap(), CodeUse::Reused);
    assert_eq!(
        s.token("t", TokenKind::Access, 50).unwrap(),
        None,
        "replay must revoke"
    );
    assert_eq!(s.take_auth_code("nope", 50).unwrap(), CodeUse::Unknown);
}

pub fn a_codes_openid_request_is_kept_until_purged(s: &dyn Storage) {
    let with_nonce = OidcCodeRow {
        code_hash: "c1".into(),
        nonce: Some("n-0".into()),
        auth_time: 40,
        expires: 100,
    };
    let without = OidcCodeRow {
        code_hash: "c2".into(),
        nonce: None,
        auth_time: 41,
        expires: 200_000,
    };
    s.put_oidc_code(&with_nonce).unwrap();
    s.put_oidc_code(&without).unwrap();
    assert!(s.put_oidc_code(&with_nonce).is_err(), "one per code");
    assert_eq!(s.oidc_code("c1").unwrap(), Some(with_nonce));
    assert_eq!(s.oidc_code("c2").unwrap(), Some(without.clone()));
    assert_eq!(s.oidc_code("nope").unwrap(), None);
    // Kept a day past expiry, as the codes themselves are.
    s.purge_expired(100 + 86_400 + 1).unwrap();
    assert_eq!(s.oidc_code("c1").unwrap(), None);
    assert_eq!(s.oidc_code("c2").unwrap(), Some(without));
}

pub fn setup_keys_work_once_before_expiry(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.put_setup_key("k", "e1", 100).unwrap();
    assert_eq!(
        s.take_setup_key("k", 200).unwrap(),
        SetupKeyUse::Expired {
            endpoint_id: "e1".into(),
            node: None,
        }
    );
    assert_eq!(
        s.take_setup_key("k", 10).unwrap(),
        SetupKeyUse::Fresh {
            endpoint_id: "e1".into(),
            node: None,
        }
    );
    assert_eq!(
        s.take_setup_key("k", 10).unwrap(),
        SetupKeyUse::Used {
            endpoint_id: "e1".into(),
            node: None,
        }
    );
    assert_eq!(s.take_setup_key("other", 10).unwrap(), SetupKeyUse::Unknown);
}

pub fn nodes_are_named_once_per_endpoint_and_registered_by_their_key(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "cluster", 0).unwrap();
    s.create_endpoint("e2", uid, "laptop", 0).unwrap();
    assert_eq!(s.endpoint_nodes("e1").unwrap(), vec![]);
    s.add_endpoint_node("e1", "node-2", "k2", 100, 5).unwrap();
    assert!(matches!(
        s.add_endpoint_node("e1", "node-2", "k3", 100, 6),
        Err(StoreError::Conflict { what: "node name" })
    ));
    assert!(matches!(
        s.add_endpoint_node("no such endpoint", "node-2", "k4", 100, 6),
        Err(StoreError::NotFound)
    ));
    // Another endpoint may have a node of the same name.
    s.add_endpoint_node("e2", "node-2", "k5", 100, 6).unwrap();
    assert_eq!(
        s.take_setup_key("k2", 10).unwrap(),
        SetupKeyUse::Fresh {
            endpoint_id: "e1".into(),
            node: Some("node-2".into()),
        }
    );
    assert!(s.set_node_cert("e1", "node-2", "abcd", 11).unwrap());
    assert!(!s.set_node_cert("e1", "node-9", "abcd", 11).unwrap());
    s.add_endpoint_node("e1", "dtn3", "k6", 100, 7).unwrap();
    let nodes = s.endpoint_nodes("e1").unwrap();
    assert_eq!(
        nodes,
        vec![
            NodeRow {
                endpoint_id: "e1".into(),
                name: "node-2".into(),
                cert_sha256: Some("abcd".into()),
                created: 5,
                registered: Some(11),
            },
            NodeRow {
                endpoint_id: "e1".into(),
                name: "dtn3".into(),
                cert_sha256: None,
                created: 7,
                registered: None,
            },
        ]
    );
    // A removed node's unused key registers nothing.
    assert!(s.remove_endpoint_node("e1", "dtn3").unwrap());
    assert!(!s.remove_endpoint_node("e1", "dtn3").unwrap());
    assert_eq!(
        s.take_setup_key("k6", 10).unwrap(),
        SetupKeyUse::Used {
            endpoint_id: "e1".into(),
            node: Some("dtn3".into()),
        }
    );
    assert_eq!(s.endpoint_nodes("e1").unwrap().len(), 1);
    assert_eq!(s.endpoint_nodes("e2").unwrap().len(), 1);
    // A node's key past its day says which node it was for.
    s.add_endpoint_node("e1", "dtn4", "k7", 100, 8).unwrap();
    assert_eq!(
        s.take_setup_key("k7", 200).unwrap(),
        SetupKeyUse::Expired {
            endpoint_id: "e1".into(),
            node: Some("dtn4".into()),
        }
    );
}

pub fn endpoint_names_are_unique_per_owner_and_searchable(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "h", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 1).unwrap();
    s.create_endpoint("e2", bob, "laptop", 2).unwrap();
    assert!(matches!(
        s.create_endpoint("e3", uid, "laptop", 3),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.search_endpoints(Some(uid), "", 10).unwrap().len(), 1);
    assert_eq!(s.search_endpoints(None, "lap", 10).unwrap().len(), 2);
    assert_eq!(
        s.search_endpoints(None, "LapTop", 10).unwrap().len(),
        2,
        "search ignores ASCII case"
    );
    assert_eq!(
        s.search_endpoints(None, "%", 10).unwrap().len(),
        0,
        "LIKE wildcards are escaped"
    );
    assert_eq!(s.endpoint_by_name(bob, "laptop").unwrap().unwrap().id, "e2");
    assert!(s.revoke_endpoint("e1").unwrap());
    assert!(s.endpoint("e1").unwrap().unwrap().revoked);
}

pub fn a_deleted_endpoint_is_revoked_hidden_and_frees_its_name(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 1).unwrap();
    s.create_endpoint("e2", uid, "cluster", 2).unwrap();
    assert!(matches!(
        s.rename_endpoint("e2", "laptop"),
        Err(StoreError::Conflict { .. })
    ));
    assert!(s.rename_endpoint("e2", "hpc").unwrap());
    let mut task = new_task("t1", uid, 3);
    task.source_id = "e1".into();
    task.destination_id = "e2".into();
    s.create_task(&task, "SUBMITTED", "x").unwrap();
    assert_eq!(
        s.delete_endpoint("e2").unwrap(),
        DeleteOutcome::Busy(vec!["t1".into()])
    );
    assert!(!s.endpoint("e2").unwrap().unwrap().deleted);
    s.finish_task("t1", TaskStatus::Canceled, None, None, 4)
        .unwrap();
    assert_eq!(s.delete_endpoint("e2").unwrap(), DeleteOutcome::Deleted);
    assert_eq!(s.delete_endpoint("e2").unwrap(), DeleteOutcome::Missing);
    let row = s.endpoint("e2").unwrap().unwrap();
    assert!(row.deleted && row.revoked, "{row:?}");
    assert!(s.endpoint_by_name(uid, "hpc").unwrap().is_none());
    assert_eq!(s.search_endpoints(Some(uid), "", 10).unwrap().len(), 1);
    assert!(!s.rename_endpoint("e2", "again").unwrap());
    s.create_endpoint("e3", uid, "hpc", 5).unwrap();
}

pub fn a_failed_task_keeps_the_running_attempts_counters_and_its_reason(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.create_endpoint("e2", uid, "cluster", 0).unwrap();
    s.create_task(&new_task("t1", uid, 5), "SUBMITTED", "x")
        .unwrap();
    s.begin_attempt("t1", 1).unwrap();
    s.set_progress("t1", 1, &counters(3, 2, 0, 20)).unwrap();
    assert!(s.note_fault("t1", "no data address").unwrap());
    s.finish_task("t1", TaskStatus::Failed, None, Some("deadline passed"), 9)
        .unwrap();
    let row = s.task("t1").unwrap().unwrap();
    assert_eq!(row.totals(), counters(3, 2, 0, 20));
    assert_eq!(row.current, TaskCounters::default());
    assert_eq!(row.fatal_error.as_deref(), Some("deadline passed"));
    assert_eq!(row.faults, 1);
}

pub fn a_tasks_latest_attempt_says_over_how_many_nodes_it_ran(s: &dyn Storage) {
    let uid = two_endpoints(s);
    s.create_task(&new_task("t1", uid, 5), "SUBMITTED", "x")
        .unwrap();
    assert_eq!(s.task("t1").unwrap().unwrap().nodes, 1, "not started yet");
    assert!(s.begin_attempt("t1", 1).unwrap());
    assert!(s.spread_attempt("t1", 1, 3).unwrap());
    assert_eq!(s.task("t1").unwrap().unwrap().nodes, 3);
    assert!(
        !s.spread_attempt("t1", 7, 2).unwrap(),
        "not the running attempt"
    );
    assert!(s.end_attempt("t1", 1, Some("node gone")).unwrap());
    assert_eq!(
        s.task("t1").unwrap().unwrap().nodes,
        3,
        "the latest attempt's"
    );
    // The next attempt runs on one machine of each endpoint.
    assert!(s.begin_attempt("t1", 2).unwrap());
    assert_eq!(s.task("t1").unwrap().unwrap().nodes, 1);
    assert!(s.begin_attempt("t1", 3).unwrap());
    assert!(s.spread_attempt("t1", 3, 2).unwrap());
    assert!(
        s.finish_task("t1", TaskStatus::Succeeded, None, None, 9)
            .unwrap()
    );
    assert_eq!(
        s.task("t1").unwrap().unwrap().nodes,
        2,
        "kept once it ended"
    );
    assert!(!s.spread_attempt("t1", 3, 4).unwrap(), "it ended");
    assert_eq!(s.tasks_of(uid, 10).unwrap()[0].nodes, 2);
}

pub fn task_lists_are_per_owner_newest_first_and_bounded(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "h", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.create_endpoint("e2", uid, "cluster", 0).unwrap();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        s.create_task(&new_task(id, uid, i as i64), "SUBMITTED", "x")
            .unwrap();
    }
    s.create_task(&new_task("bobs", bob, 10), "SUBMITTED", "x")
        .unwrap();
    let ids: Vec<String> = s
        .tasks_of(uid, 10)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["c", "b", "a"]);
    assert_eq!(s.tasks_of(uid, 2).unwrap().len(), 2);
    assert_eq!(s.tasks_of(bob, 10).unwrap().len(), 1);
}

pub fn events_are_capped_but_a_tasks_end_is_always_kept(s: &dyn Storage) {
    let uid = s.add_user("alice", "hash", 0).unwrap();
    s.create_endpoint("e1", uid, "laptop", 0).unwrap();
    s.create_endpoint("e2", uid, "cluster", 0).unwrap();
    s.create_task(&new_task("t1", uid, 0), "SUBMITTED", "x")
        .unwrap();
    for i in 0..MAX_TASK_EVENTS + 10 {
        s.add_task_event("t1", "SKIPPED", &format!("f{i}"), 1, false)
            .unwrap();
    }
    s.add_task_event("t1", "SUCCEEDED", "done", 2, true)
        .unwrap();
    let events = s.task_events("t1", 3).unwrap();
    let codes: Vec<&str> = events.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["SKIPPED", "EVENTS_TRUNCATED", "SUCCEEDED"]);
    assert_eq!(events[2].seq, MAX_TASK_EVENTS + 1);
}

pub fn tasks_and_their_counters_survive_a_reopen_and_are_the_furthest_attempts(
    open: &dyn Fn() -> Box<dyn Storage>,
) {
    {
        let s = open();
        let uid = s.add_user("alice", "h", 0).unwrap();
        s.create_endpoint("e1", uid, "laptop", 0).unwrap();
        s.create_endpoint("e2", uid, "cluster", 0).unwrap();
        s.create_task(&new_task("t1", uid, 5), "SUBMITTED", "1 item")
            .unwrap();
        assert!(s.begin_attempt("t1", 1).unwrap());
        assert!(s.set_progress("t1", 1, &counters(10, 4, 1, 400)).unwrap());
        assert!(s.end_attempt("t1", 1, Some("connection reset")).unwrap());
        assert!(!s.end_attempt("t1", 7, None).unwrap(), "not the attempt");
        assert!(s.begin_attempt("t1", 2).unwrap());
        assert!(
            !s.set_progress("t1", 1, &counters(1, 1, 1, 1)).unwrap(),
            "a stale attempt's progress is refused"
        );
        assert!(s.set_progress("t1", 2, &counters(12, 3, 5, 300)).unwrap());
        s.add_task_event("t1", "FAULT", "attempt 1: reset", 6, false)
            .unwrap();
        assert_eq!(s.task("t1").unwrap().unwrap().bytes_relayed, 0);
        s.add_task_bytes_relayed("t1", 1000).unwrap();
        s.add_task_bytes_relayed("t1", 24).unwrap();
        s.add_task_bytes_relayed("no such task", 5).unwrap();
    }
    // As after kill -9: only what was committed.
    let s = open();
    let row = s.task("t1").unwrap().unwrap();
    assert_eq!(
        row.bytes_relayed, 1024,
        "relayed bytes add up over attempts"
    );
    assert_eq!(row.status, TaskStatus::Active);
    assert_eq!(row.attempt, 2);
    assert_eq!(row.faults, 1);
    assert_eq!(row.last_fault.as_deref(), Some("connection reset"));
    // Each attempt counts the task (what earlier ones committed
    // included): nothing adds up twice.
    assert_eq!(row.totals(), counters(12, 4, 5, 400));
    assert_eq!(row.label.as_deref(), Some("run 7"));
    assert_eq!(row.deadline, Some(9999));
    let active = s.active_tasks().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].attempt, active[0].deadline), (2, Some(9999)));
    assert_eq!(
        s.task_work("t1").unwrap().unwrap().items,
        new_task("t1", 0, 5).items
    );

    // The destination's final counters for the attempt replace its progress.
    assert!(
        s.finish_task(
            "t1",
            TaskStatus::Succeeded,
            Some(&counters(12, 8, 4, 800)),
            None,
            50
        )
        .unwrap()
    );
    let row = s.task("t1").unwrap().unwrap();
    assert_eq!(row.status, TaskStatus::Succeeded);
    assert_eq!(row.completed, Some(50));
    assert_eq!(row.totals(), counters(12, 8, 4, 800));
    assert!(
        !s.finish_task("t1", TaskStatus::Canceled, None, None, 60)
            .unwrap(),
        "an ended task stays ended"
    );
    assert!(!s.begin_attempt("t1", 3).unwrap());
    assert!(!s.note_fault("t1", "late").unwrap());
    assert!(s.active_tasks().unwrap().is_empty());
    let events = s.task_events("t1", 10).unwrap();
    let codes: Vec<&str> = events.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["SUBMITTED", "FAULT"]);
    assert_eq!(events[1].seq, 2);
}

pub fn a_task_round_trips_every_field_exactly(s: &dyn Storage) {
    use ferry_proto::filter::FilterRule;
    use ferry_proto::task::{ChecksumAlgorithm, SyncLevel};
    use ferry_proto::wire_path::WirePath;
    let uid = two_endpoints(s);
    // Paths are bytes, not text: invalid UTF-8, a literal %, an escape's
    // look-alike, a NUL-free control byte, an empty path.
    let odd: [&[u8]; 6] = [
        b"/data/caf\xc3\xa9/r\xe9sum\xe9.txt",
        b"/data/\xff\xfe\x80",
        b"/data/100%25 real/%",
        b"/data/line\nbreak\ttab",
        b"",
        "/données/数据".as_bytes(),
    ];
    let many: Vec<TransferItem> = (0..1500)
        .map(|i| TransferItem {
            source: WirePath::from_bytes(if i < odd.len() {
                odd[i].to_vec()
            } else {
                format!("/src/{i:05}").into_bytes()
            }),
            destination: WirePath::from_bytes(
                [format!("/dst/{i:05}").as_bytes(), b"\xff"].concat(),
            ),
            recursive: i % 3 == 0,
        })
        .collect();
    let levels = [
        None,
        Some(SyncLevel::Exists),
        Some(SyncLevel::Size),
        Some(SyncLevel::Mtime),
        Some(SyncLevel::Checksum),
    ];
    let mut tasks = Vec::new();
    for (i, sync_level) in levels.into_iter().enumerate() {
        let flag = i % 2 == 0;
        tasks.push(NewTask {
            submission_id: None,
            id: format!("t{i}"),
            options: TransferOptions {
                sync_level,
                delete: flag,
                preserve_mtime: !flag,
                preserve_mode: flag,
                skip_source_errors: !flag,
                streams: [None, Some(1), Some(64), Some(u32::MAX), Some(0)][i],
                // Order kept, bytes exact (not UTF-8, a literal %).
                filters: match i {
                    0 => vec![
                        FilterRule::include(&b"keep\xff*"[..]),
                        FilterRule::exclude("*.tmp"),
                        FilterRule::include("100%/"),
                        FilterRule::exclude("*"),
                    ],
                    2 => vec![FilterRule::exclude("scratch/")],
                    _ => Vec::new(),
                },
                bwlimit: [
                    None,
                    Some(10_000),
                    Some(10_000_000),
                    Some(u64::MAX >> 1),
                    None,
                ][i],
                checksum_algorithm: [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Blake3][i % 2],
                on_success: [None, Some("slurm"), None, Some("post_run-2"), None][i]
                    .map(String::from),
            },
            items: match i {
                0 => many.clone(),
                1 => Vec::new(),
                _ => many[..i].to_vec(),
            },
            label: [Some(""), None, Some("ünïcode ✓"), Some("run 7"), Some(" ")][i]
                .map(String::from),
            deadline: [None, Some(0), Some(-1), Some(i64::MAX), Some(1_700_000_000)][i],
            ..new_task("", uid, 100 + i as i64)
        });
    }
    for task in &tasks {
        s.create_task(task, "SUBMITTED", "x").unwrap();
    }
    for task in &tasks {
        let work = s.task_work(&task.id).unwrap().unwrap();
        assert_eq!(work.options, task.options, "{}", task.id);
        assert_eq!(work.items.len(), task.items.len(), "{}", task.id);
        assert_eq!(work.items, task.items, "{}", task.id);
        let row = s.task(&task.id).unwrap().unwrap();
        assert_eq!(row.item_count, task.items.len() as u64);
        assert_eq!(row.on_success, task.options.on_success, "{}", task.id);
        assert_eq!(
            (&row.label, row.deadline, row.created, row.owner_id),
            (&task.label, task.deadline, task.created, uid),
            "{}",
            task.id
        );
        assert_eq!(
            (row.source_id.as_str(), row.destination_id.as_str()),
            ("e1", "e2")
        );
    }
    let row = s.task("t0").unwrap().unwrap();
    assert_eq!(row.label.as_deref(), Some(""), "an empty label is not none");
    assert_eq!(s.task("t1").unwrap().unwrap().label, None);
}

pub fn tasks_of_one_second_list_in_order_of_submission(s: &dyn Storage) {
    let uid = two_endpoints(s);
    // Ids that sort against the order of submission.
    for id in ["zz", "mm", "aa"] {
        s.create_task(&new_task(id, uid, 7), "SUBMITTED", "x")
            .unwrap();
    }
    let ids = |rows: Vec<TaskRow>| -> Vec<String> { rows.into_iter().map(|t| t.id).collect() };
    assert_eq!(ids(s.tasks_of(uid, 10).unwrap()), ["aa", "mm", "zz"]);
    assert_eq!(
        s.active_tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        ["zz", "mm", "aa"]
    );
    assert_eq!(
        ids(s.tasks_with_prefix(uid, "", 10).unwrap()),
        ["zz", "mm", "aa"]
    );
    assert_eq!(
        s.delete_endpoint("e1").unwrap(),
        DeleteOutcome::Busy(vec!["zz".into(), "mm".into(), "aa".into()])
    );
}

pub fn task_stats_count_each_state_and_sum_the_tasks_totals(s: &dyn Storage) {
    assert_eq!(s.task_stats().unwrap(), vec![]);
    let uid = two_endpoints(s);
    for id in ["t1", "t2", "t3"] {
        s.create_task(&new_task(id, uid, 5), "SUBMITTED", "x")
            .unwrap();
    }
    // t1: an attempt that got further than the running one; the totals
    // are the furthest of the two.
    s.begin_attempt("t1", 1).unwrap();
    s.set_progress("t1", 1, &counters(4, 3, 0, 300)).unwrap();
    s.end_attempt("t1", 1, Some("reset")).unwrap();
    s.begin_attempt("t1", 2).unwrap();
    s.set_progress("t1", 2, &counters(4, 1, 0, 100)).unwrap();
    // t2: ended with success; t3 failed with what its attempt reported.
    s.begin_attempt("t2", 1).unwrap();
    s.finish_task(
        "t2",
        TaskStatus::Succeeded,
        Some(&counters(2, 2, 0, 50)),
        None,
        9,
    )
    .unwrap();
    s.begin_attempt("t3", 1).unwrap();
    s.set_progress("t3", 1, &counters(9, 7, 0, 700)).unwrap();
    s.finish_task("t3", TaskStatus::Failed, None, Some("x"), 9)
        .unwrap();
    let stats = |status| {
        s.task_stats()
            .unwrap()
            .into_iter()
            .find(|t| t.status == status)
            .map(|t| (t.tasks, t.bytes_transferred, t.files_transferred))
    };
    assert_eq!(stats(TaskStatus::Active), Some((1, 300, 3)));
    assert_eq!(stats(TaskStatus::Succeeded), Some((1, 50, 2)));
    assert_eq!(stats(TaskStatus::Failed), Some((1, 700, 7)));
    assert_eq!(stats(TaskStatus::Canceled), None);
    // The sums are each task's totals, as a task's page shows them.
    let sum: u64 = ["t1", "t2", "t3"]
        .iter()
        .map(|id| s.task(id).unwrap().unwrap().totals().bytes_transferred)
        .sum();
    assert_eq!(sum, 1050);
}

/// A submission id names at most one task of its owner: a second task
/// with it is a `Conflict` and leaves the first as it was; another
/// owner's, and tasks without one, are not held back.
pub fn a_submission_id_names_one_task_of_its_owner(s: &dyn Storage) {
    let uid = two_endpoints(s);
    let other = s.add_user("bob", "h", 0).unwrap();
    let once = |id: &str, owner: i64| NewTask {
        submission_id: Some("0f8e0a52-3a43-4b53-9a6e-2f6a1c3f4b11".into()),
        ..new_task(id, owner, 5)
    };
    s.create_task(&once("t1", uid), "SUBMITTED", "x").unwrap();
    assert!(matches!(
        s.create_task(&once("t2", uid), "SUBMITTED", "x"),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.task("t2").unwrap(), None, "nothing of the second is kept");
    let found = s
        .task_by_submission(uid, "0f8e0a52-3a43-4b53-9a6e-2f6a1c3f4b11")
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "t1");
    assert_eq!(
        s.task_by_submission(other, "0f8e0a52-3a43-4b53-9a6e-2f6a1c3f4b11")
            .unwrap(),
        None,
        "another owner's id is not hers"
    );
    assert_eq!(s.task_by_submission(uid, "another").unwrap(), None);
    // Bob may use the same id (ids are per owner), on his own endpoints.
    s.create_endpoint("b1", other, "bobs", 0).unwrap();
    s.create_endpoint("b2", other, "bobs-too", 0).unwrap();
    let bobs = NewTask {
        source_id: "b1".into(),
        destination_id: "b2".into(),
        ..once("t3", other)
    };
    s.create_task(&bobs, "SUBMITTED", "x").unwrap();
    // Tasks without an id never conflict with each other.
    s.create_task(&new_task("t4", uid, 6), "SUBMITTED", "x")
        .unwrap();
    s.create_task(&new_task("t5", uid, 7), "SUBMITTED", "x")
        .unwrap();
}

/// A task of one item (copying `/data/in` to `/data/out`, recursively),
/// default options, from `e1` to `e2`.
pub fn new_task(id: &str, owner_id: i64, created: i64) -> NewTask {
    NewTask {
        submission_id: None,
        id: id.into(),
        owner_id,
        source_id: "e1".into(),
        destination_id: "e2".into(),
        items: vec![TransferItem {
            source: ferry_proto::wire_path::WirePath::from_bytes(b"/data/in".to_vec()),
            destination: ferry_proto::wire_path::WirePath::from_bytes(b"/data/out".to_vec()),
            recursive: true,
        }],
        options: TransferOptions::default(),
        label: Some("run 7".into()),
        deadline: Some(9999),
        created,
        notify: Default::default(),
    }
}

pub fn counters(files: u64, transferred: u64, skipped: u64, bytes: u64) -> TaskCounters {
    TaskCounters {
        files,
        files_transferred: transferred,
        files_skipped: skipped,
        bytes_transferred: bytes,
        ..TaskCounters::default()
    }
}

pub fn each_news_of_a_task_is_claimed_once_and_a_wait_again_after_it_moved(s: &dyn Storage) {
    let uid = two_endpoints(s);
    s.create_task(&new_task("t1", uid, 1), "SUBMITTED", "x")
        .unwrap();
    let quiet = NewTask {
        notify: NotifyEvents::parse("inactive").unwrap(),
        ..new_task("t2", uid, 2)
    };
    s.create_task(&quiet, "SUBMITTED", "x").unwrap();
    // The set comes back with the first claim of each news, only then.
    assert_eq!(
        s.claim_task_notice("t1", "INACTIVE").unwrap(),
        Some(NotifyEvents::DEFAULT)
    );
    assert_eq!(s.claim_task_notice("t1", "INACTIVE").unwrap(), None);
    s.rearm_task_notice("t1").unwrap();
    assert!(s.claim_task_notice("t1", "INACTIVE").unwrap().is_some());
    assert!(s.claim_task_notice("t1", "SUCCEEDED").unwrap().is_some());
    // Moving again re-arms a wait, never an end.
    s.rearm_task_notice("t1").unwrap();
    assert_eq!(s.claim_task_notice("t1", "SUCCEEDED").unwrap(), None);
    assert_eq!(
        s.claim_task_notice("t2", "FAILED").unwrap(),
        Some(NotifyEvents::parse("inactive").unwrap())
    );
    assert_eq!(s.claim_task_notice("no-such-task", "FAILED").unwrap(), None);
}

pub fn users_addresses_and_webhooks_are_kept_per_user(s: &dyn Storage) {
    let alice = s.add_user("alice", "h", 0).unwrap();
    let bob = s.add_user("bob", "h", 0).unwrap();
    assert_eq!(s.user_email(alice).unwrap(), None);
    assert!(s.set_user_email(alice, Some("alice@example.org")).unwrap());
    assert_eq!(
        s.user_email(alice).unwrap().as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(s.user_email(bob).unwrap(), None);
    assert!(s.set_user_email(alice, None).unwrap());
    assert_eq!(s.user_email(alice).unwrap(), None);
    assert!(!s.set_user_email(bob + 100, Some("x@y")).unwrap());

    let hook = |id: &str, owner: i64, created: i64| WebhookRow {
        id: id.into(),
        owner_id: owner,
        url: format!("https://hooks.example.org/{id}?a=1&b=%20"),
        events: NotifyEvents::parse("failed,inactive").unwrap(),
        secret: format!("secret-{id}"),
        created,
    };
    s.put_webhook(&hook("w2", alice, 20)).unwrap();
    s.put_webhook(&hook("w1", alice, 10)).unwrap();
    s.put_webhook(&hook("w3", bob, 5)).unwrap();
    assert!(matches!(
        s.put_webhook(&hook("w1", bob, 1)),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        s.webhooks_of(alice).unwrap(),
        vec![hook("w1", alice, 10), hook("w2", alice, 20)]
    );
    assert_eq!(s.webhook("w3").unwrap(), Some(hook("w3", bob, 5)));
    assert!(s.delete_webhook("w1").unwrap());
    assert!(!s.delete_webhook("w1").unwrap());
    assert_eq!(s.webhook("w1").unwrap(), None);
    assert_eq!(s.webhooks_of(alice).unwrap().len(), 1);
    assert_eq!(s.webhooks_of(bob).unwrap().len(), 1);
}

pub fn identities_link_to_one_account_and_sign_ins_remember_theirs(s: &dyn Storage) {
    let alice = s.add_user("alice", "hash", 0).unwrap();
    let bob = s.add_user("bob", "hash", 0).unwrap();
    s.link_identity("a@example.org", alice, "org", 20).unwrap();
    s.link_identity("a@example.edu", alice, "campus", 10)
        .unwrap();
    assert!(matches!(
        s.link_identity("a@example.edu", bob, "campus", 30),
        Err(StoreError::Conflict { what: "identity" })
    ));
    assert!(matches!(
        s.link_identity("a@example.edu", alice, "campus", 30),
        Err(StoreError::Conflict { .. })
    ));
    let linked: Vec<_> = s
        .identities_of(alice)
        .unwrap()
        .into_iter()
        .map(|r| (r.identity, r.provider, r.linked_at))
        .collect();
    assert_eq!(
        linked,
        [
            ("a@example.edu".to_string(), "campus".to_string(), 10),
            ("a@example.org".to_string(), "org".to_string(), 20)
        ]
    );
    assert!(s.identities_of(bob).unwrap().is_empty());
    assert_eq!(s.identity("a@example.org").unwrap().unwrap().user_id, alice);
    assert_eq!(s.identity("nobody@example.org").unwrap(), None);
    assert!(matches!(
        s.link_identity("x@example.org", bob + 100, "org", 1),
        Err(StoreError::NotFound)
    ));

    s.note_login_identity("login-1", "a@example.edu", 100)
        .unwrap();
    s.note_login_identity("login-1", "alice@hub", 90).unwrap();
    s.note_login_identity("login-2", "a@example.org", 95)
        .unwrap();
    // A later authentication of the same identity replaces its time.
    s.note_login_identity("login-1", "a@example.edu", 120)
        .unwrap();
    assert_eq!(
        s.login_identities("login-1").unwrap(),
        [
            ("alice@hub".to_string(), 90),
            ("a@example.edu".to_string(), 120)
        ]
    );
    assert_eq!(
        s.login_identities("login-2").unwrap(),
        [("a@example.org".to_string(), 95)]
    );
    assert!(s.login_identities("login-3").unwrap().is_empty());
    // Kept a year, then purged.
    s.purge_expired(90 + LOGIN_IDENTITY_KEPT).unwrap();
    assert_eq!(s.login_identities("login-1").unwrap().len(), 2);
    s.purge_expired(91 + LOGIN_IDENTITY_KEPT).unwrap();
    assert_eq!(
        s.login_identities("login-1").unwrap(),
        [("a@example.edu".to_string(), 120)]
    );
}

pub fn an_endpoints_allowed_domains_are_kept_and_cleared(s: &dyn Storage) {
    two_endpoints(s);
    assert!(
        s.endpoint("e1")
            .unwrap()
            .unwrap()
            .allowed_domains
            .is_empty()
    );
    let domains = vec!["example.org".to_string(), "example.edu".to_string()];
    assert!(s.set_allowed_domains("e1", &domains).unwrap());
    assert_eq!(s.endpoint("e1").unwrap().unwrap().allowed_domains, domains);
    assert!(
        s.endpoint("e2")
            .unwrap()
            .unwrap()
            .allowed_domains
            .is_empty()
    );
    let found = s.search_endpoints(None, "laptop", 10).unwrap();
    assert_eq!(found[0].allowed_domains, domains);
    assert!(s.set_allowed_domains("e1", &[]).unwrap());
    assert!(
        s.endpoint("e1")
            .unwrap()
            .unwrap()
            .allowed_domains
            .is_empty()
    );
    assert!(!s.set_allowed_domains("nope", &domains).unwrap());
}

pub fn a_task_is_held_by_one_instance_until_its_lease_ends(s: &dyn Storage) {
    let uid = two_endpoints(s);
    for (n, id) in ["t1", "t2"].into_iter().enumerate() {
        s.create_task(&new_task(id, uid, n as i64), "SUBMITTED", "x")
            .unwrap();
    }
    assert_eq!(s.claim_tasks("a", 100, 110).unwrap(), ["t1", "t2"]);
    assert!(
        s.claim_tasks("b", 105, 115).unwrap().is_empty(),
        "a live lease is not taken"
    );
    // Renewed: still a's after its first lease would have ended.
    assert_eq!(s.claim_tasks("a", 109, 120).unwrap(), ["t1", "t2"]);
    assert!(s.claim_tasks("b", 115, 125).unwrap().is_empty());
    // a stopped renewing (it died): b takes over once the lease ended.
    assert_eq!(s.claim_tasks("b", 121, 131).unwrap(), ["t1", "t2"]);
    assert!(s.claim_tasks("a", 122, 132).unwrap().is_empty());
    // An ended task is no one's.
    s.finish_task("t1", TaskStatus::Succeeded, None, None, 123)
        .unwrap();
    assert_eq!(s.claim_tasks("b", 124, 134).unwrap(), ["t2"]);
    // A stopping instance lets go at once.
    assert_eq!(s.release_task_claims(Some("a")).unwrap(), 0);
    assert_eq!(s.release_task_claims(Some("b")).unwrap(), 2);
    assert_eq!(s.claim_tasks("a", 125, 135).unwrap(), ["t2"]);
    // A single-instance hub starting forgets every claim.
    assert_eq!(s.release_task_claims(None).unwrap(), 1);
    assert_eq!(s.claim_tasks("c", 126, 136).unwrap(), ["t2"]);
}

/// A claim holds while its instance's lease does, which the instance
/// renews without claiming its tasks again. Each sweep tells what changed
/// since the last (a change may be told twice); an instance whose lease
/// had ended gets the whole picture.
pub fn a_claim_holds_while_its_instance_lives_and_sweeps_hear_only_changes(s: &dyn Storage) {
    use std::collections::BTreeSet;
    let uid = two_endpoints(s);
    for (n, id) in ["t1", "t2"].into_iter().enumerate() {
        s.create_task(&new_task(id, uid, n as i64), "SUBMITTED", "x")
            .unwrap();
    }
    let held =
        |c: &ClaimChanges| -> BTreeSet<String> { c.held.iter().map(|t| t.id.clone()).collect() };
    let set = |ids: &[&str]| -> BTreeSet<String> { ids.iter().map(|id| id.to_string()).collect() };
    let a = s.claim_changes("a", 100, 110, None).unwrap();
    assert!(
        a.whole && a.elsewhere.is_empty() && a.ended.is_empty(),
        "{a:?}"
    );
    assert_eq!(held(&a), set(&["t1", "t2"]));
    let t1 = a.held.iter().find(|t| t.id == "t1").unwrap();
    assert_eq!(
        (
            t1.source_id.as_str(),
            t1.source_name.as_str(),
            t1.destination_name.as_str()
        ),
        ("e1", "laptop", "cluster")
    );
    assert!(!t1.source_revoked && !t1.destination_revoked);
    let b = s.claim_changes("b", 101, 111, None).unwrap();
    assert!(b.whole && b.held.is_empty(), "{b:?}");
    assert_eq!(b.elsewhere.iter().collect::<BTreeSet<_>>().len(), 2);
    let (mut a_since, mut b_since) = (a.next, b.next);
    // a renews its lease for several of its lengths: b never takes its
    // tasks, nor hears that any ended (the backends' own tests check that
    // no task row is rewritten).
    for (round, now) in [105, 114, 123, 132].into_iter().enumerate() {
        let a = s.claim_changes("a", now, now + 10, Some(a_since)).unwrap();
        assert!(!a.whole, "round {round}: a's lease lasted");
        assert!(a.elsewhere.is_empty() && a.ended.is_empty(), "{a:?}");
        assert!(held(&a).is_subset(&set(&["t1", "t2"])), "{a:?}");
        a_since = a.next;
        let b = s
            .claim_changes("b", now + 1, now + 11, Some(b_since))
            .unwrap();
        assert!(!b.whole && b.held.is_empty(), "round {round}: {b:?}");
        assert!(b.ended.is_empty(), "round {round}: {b:?}");
        assert!(
            b.elsewhere.iter().all(|id| id == "t1" || id == "t2"),
            "round {round}: {b:?}"
        );
        b_since = b.next;
    }
    // a ends t1, then stops renewing (it died): b hears of the end, and
    // takes t2 at its first sweep after a's lease ended (at 142).
    s.finish_task("t1", TaskStatus::Succeeded, None, None, 134)
        .unwrap();
    let b = s.claim_changes("b", 142, 152, Some(b_since)).unwrap();
    assert_eq!(
        (b.ended.as_slice(), b.held.len()),
        (&["t1".to_string()][..], 0),
        "{b:?}"
    );
    let b = s.claim_changes("b", 143, 153, Some(b.next)).unwrap();
    assert!(!b.whole, "{b:?}");
    assert_eq!(held(&b), set(&["t2"]));
    assert_eq!(s.task_claim("t2").unwrap().as_deref(), Some("b"));
    // a comes back: its lease had ended, so it hears the whole picture.
    let a = s.claim_changes("a", 144, 154, Some(a_since)).unwrap();
    assert!(a.whole && a.held.is_empty(), "{a:?}");
    assert_eq!(a.elsewhere, ["t2"]);
    // A new task goes to the first to sweep; the other hears it is not its.
    s.create_task(&new_task("t3", uid, 3), "SUBMITTED", "x")
        .unwrap();
    let a = s.claim_changes("a", 145, 155, Some(a.next)).unwrap();
    assert_eq!(held(&a), set(&["t3"]), "{a:?}");
    let b = s.claim_changes("b", 146, 156, Some(b.next)).unwrap();
    assert!(
        !held(&b).contains("t3") && b.elsewhere.contains(&"t3".to_string()),
        "{b:?}"
    );
    // a stops cleanly: b takes its task at its next sweep.
    s.release_task_claims(Some("a")).unwrap();
    let b = s.claim_changes("b", 147, 157, Some(b.next)).unwrap();
    assert!(held(&b).contains("t3"), "{b:?}");
    assert_eq!(s.task_claim("t3").unwrap().as_deref(), Some("b"));
}

/// Two instances (two stores over one database) claiming at the same time,
/// round after round, as their schedulers do at each tick.
pub fn instances_claiming_at_once_never_hold_the_same_task(open: &dyn Fn() -> Box<dyn Storage>) {
    let (a, b) = (open(), open());
    let uid = a.add_user("claimer", "h", 0).unwrap();
    a.create_endpoint("c1", uid, "one", 0).unwrap();
    a.create_endpoint("c2", uid, "two", 0).unwrap();
    let ids: Vec<String> = (0..40).map(|n| format!("claim-{n:02}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let mut task = new_task(id, uid, n as i64);
        task.source_id = "c1".into();
        task.destination_id = "c2".into();
        a.create_task(&task, "SUBMITTED", "x").unwrap();
    }
    let ours = |held: Vec<String>| -> std::collections::BTreeSet<String> {
        held.into_iter()
            .filter(|id| id.starts_with("claim-"))
            .collect()
    };
    for round in 0..5i64 {
        let now = 1_000 + round * 100;
        let (held_a, held_b) = std::thread::scope(|scope| {
            let one = scope.spawn(|| a.claim_tasks("a", now, now + 50).unwrap());
            let two = scope.spawn(|| b.claim_tasks("b", now, now + 50).unwrap());
            (ours(one.join().unwrap()), ours(two.join().unwrap()))
        });
        assert!(
            held_a.is_disjoint(&held_b),
            "round {round}: both hold {:?}",
            held_a.intersection(&held_b).collect::<Vec<_>>()
        );
        // Every lease of the round ends before the next: all are free again.
        assert_eq!(held_a.len() + held_b.len(), ids.len(), "round {round}");
    }
}

pub fn a_task_goes_to_the_live_instance_holding_its_sources_link(s: &dyn Storage) {
    let uid = two_endpoints(s);
    s.create_task(&new_task("t1", uid, 1), "SUBMITTED", "x")
        .unwrap();
    // No instance holds the source: the first to claim takes the task.
    assert_eq!(s.claim_tasks("a", 100, 110).unwrap(), ["t1"]);
    // The source connects to b: a lets go at its next claim, b takes it.
    s.set_control_link("e1", "b", 101).unwrap();
    assert!(
        s.claim_tasks("b", 101, 111).unwrap().is_empty(),
        "a's lease"
    );
    assert!(s.claim_tasks("a", 102, 112).unwrap().is_empty());
    assert_eq!(s.claim_tasks("b", 103, 113).unwrap(), ["t1"]);
    assert!(s.claim_tasks("a", 104, 114).unwrap().is_empty());
    // Only the holder of the link drops it.
    s.drop_control_link("e1", "a").unwrap();
    assert!(s.claim_tasks("a", 105, 115).unwrap().is_empty());
    // b died with the link: once its leases ended, a takes the task.
    assert!(
        s.claim_tasks("a", 113, 123).unwrap().is_empty(),
        "b's lease"
    );
    assert_eq!(s.claim_tasks("a", 114, 124).unwrap(), ["t1"]);
    // A newer link replaces the older one, and a clean stop drops its links.
    s.set_control_link("e1", "c", 115).unwrap();
    s.claim_tasks("c", 115, 125).unwrap();
    assert!(s.claim_tasks("a", 116, 126).unwrap().is_empty());
    s.release_task_claims(Some("c")).unwrap();
    assert_eq!(s.claim_tasks("a", 117, 127).unwrap(), ["t1"]);
    s.drop_control_link("e1", "c").unwrap();
}

pub fn node_links_name_the_live_instance_holding_each_node(s: &dyn Storage) {
    let link = |node: &str, instance: &str, since: i64, features: &[&str]| NodeLinkRow {
        endpoint_id: "e1".into(),
        node: node.into(),
        instance: instance.into(),
        since,
        data_address: Some(format!("{node}:1")),
        features: features.iter().map(|f| f.to_string()).collect(),
    };
    let names = |links: Vec<NodeLinkRow>| -> Vec<(String, String)> {
        links.into_iter().map(|l| (l.node, l.instance)).collect()
    };
    let pair = |node: &str, instance: &str| (node.to_string(), instance.to_string());
    // Both instances alive until 200.
    s.claim_tasks("a", 100, 200).unwrap();
    s.claim_tasks("b", 100, 200).unwrap();
    let a_nodes = [
        link("primary", "a", 100, &[]),
        link("node-2", "a", 101, &["shards", "split_files"]),
    ];
    s.sync_node_links("e1", "a", &a_nodes).unwrap();
    let seen = s.remote_nodes("e1", "b", 150).unwrap();
    assert_eq!(seen, a_nodes, "oldest link first, every field kept");
    assert!(
        s.remote_nodes("e1", "a", 150).unwrap().is_empty(),
        "its own"
    );
    assert!(s.remote_nodes("e2", "b", 150).unwrap().is_empty());
    // node-2 redials and lands on b, and a hears its old link end after:
    // a forgets only what it still held.
    s.sync_node_links("e1", "b", &[link("node-2", "b", 120, &["shards"])])
        .unwrap();
    s.sync_node_links("e1", "a", &a_nodes[..1]).unwrap();
    assert_eq!(
        names(s.remote_nodes("e1", "a", 150).unwrap()),
        [pair("node-2", "b")]
    );
    assert_eq!(
        names(s.remote_nodes("e1", "b", 150).unwrap()),
        [pair("primary", "a")]
    );
    // Only a live instance's links count.
    s.claim_tasks("b", 150, 250).unwrap();
    assert!(s.remote_nodes("e1", "b", 201).unwrap().is_empty(), "a died");
    assert_eq!(
        names(s.remote_nodes("e1", "a", 201).unwrap()),
        [pair("node-2", "b")]
    );
    // A clean stop forgets the instance's links; so does an empty list.
    s.release_task_claims(Some("b")).unwrap();
    s.claim_tasks("a", 202, 300).unwrap();
    assert!(s.remote_nodes("e1", "a", 203).unwrap().is_empty());
    s.claim_tasks("b", 203, 300).unwrap();
    assert_eq!(s.remote_nodes("e1", "b", 204).unwrap().len(), 1);
    s.sync_node_links("e1", "a", &[]).unwrap();
    assert!(s.remote_nodes("e1", "b", 204).unwrap().is_empty());
}

pub fn a_shared_key_is_the_first_one_stored(s: &dyn Storage) {
    assert_eq!(s.shared_key("login_csrf", "k1").unwrap(), "k1");
    assert_eq!(s.shared_key("login_csrf", "k2").unwrap(), "k1");
    assert_eq!(s.shared_key("other", "k3").unwrap(), "k3");
}

pub fn a_message_between_instances_is_taken_once_answered_and_purged(s: &dyn Storage) {
    two_endpoints(s);
    // Only a live instance's link is where an endpoint is.
    s.set_control_link("e1", "b", 100).unwrap();
    assert_eq!(s.control_link("e1", 100).unwrap(), None, "b is not alive");
    s.claim_tasks("b", 100, 110).unwrap();
    assert_eq!(s.control_link("e1", 105).unwrap().as_deref(), Some("b"));
    assert_eq!(s.control_link("e1", 111).unwrap(), None, "b's mark ended");
    assert_eq!(s.control_link("e2", 105).unwrap(), None);

    let first = s.post_message("b", "{\"one\":1}", 100, 110).unwrap();
    let second = s.post_message("b", "two", 101, 111).unwrap();
    let late = s.post_message("b", "late", 90, 99).unwrap();
    s.post_message("c", "for c", 100, 110).unwrap();
    let taken = s.take_messages("b", 100, 10).unwrap();
    let ids: Vec<i64> = taken.iter().map(|m| m.id).collect();
    assert_eq!(ids, [first, second], "oldest first, none past its deadline");
    assert_eq!(taken[0].payload, "{\"one\":1}");
    assert_eq!(taken[0].deadline, 110);
    assert!(
        s.take_messages("b", 100, 10).unwrap().is_empty(),
        "taken once"
    );
    assert_eq!(s.message_reply(first).unwrap(), None);
    s.answer_message(first, "done").unwrap();
    assert_eq!(s.message_reply(first).unwrap().as_deref(), Some("done"));
    s.drop_message(first).unwrap();
    assert_eq!(s.message_reply(first).unwrap(), None);
    s.answer_message(first, "gone").unwrap();
    // The expired and the unanswered go at their deadline.
    s.purge_messages(110, 0).unwrap();
    assert_eq!(s.message_reply(late).unwrap(), None);
    s.answer_message(second, "kept").unwrap();
    assert_eq!(s.message_reply(second).unwrap().as_deref(), Some("kept"));
    s.purge_messages(112, 0).unwrap();
    assert_eq!(s.message_reply(second).unwrap(), None);
    assert!(s.take_messages("c", 111, 10).unwrap().is_empty());
}

pub fn failed_sign_ins_count_in_a_window_and_clear(s: &dyn Storage) {
    assert_eq!(s.login_failures("account:a", 100, 60).unwrap(), None);
    assert_eq!(s.add_login_failure("account:a", 100, 60).unwrap(), 1);
    assert_eq!(s.add_login_failure("account:a", 130, 60).unwrap(), 2);
    assert_eq!(s.add_login_failure("address:x", 130, 60).unwrap(), 1);
    assert_eq!(
        s.login_failures("account:a", 150, 60).unwrap(),
        Some((2, 100))
    );
    // The window ended: the next failure starts another.
    assert_eq!(s.login_failures("account:a", 160, 60).unwrap(), None);
    assert_eq!(s.add_login_failure("account:a", 165, 60).unwrap(), 1);
    assert_eq!(
        s.login_failures("account:a", 170, 60).unwrap(),
        Some((1, 165))
    );
    s.clear_login_failures("account:a").unwrap();
    assert_eq!(s.login_failures("account:a", 170, 60).unwrap(), None);
    assert_eq!(
        s.login_failures("address:x", 170, 60).unwrap(),
        Some((1, 130))
    );
    s.purge_messages(0, 131).unwrap();
    assert_eq!(s.login_failures("address:x", 170, 60).unwrap(), None);
}

pub fn a_task_driver_sees_the_links_other_instances_hold_of_its_endpoints(s: &dyn Storage) {
    let uid = two_endpoints(s);
    s.create_endpoint("e3", uid, "elsewhere", 0).unwrap();
    s.create_task(&new_task("t1", uid, 1), "SUBMITTED", "x")
        .unwrap();
    assert_eq!(s.task_claim("t1").unwrap(), None);
    assert_eq!(s.claim_tasks("a", 100, 200).unwrap(), ["t1"]);
    assert_eq!(s.task_claim("t1").unwrap().as_deref(), Some("a"));
    s.claim_tasks("b", 100, 200).unwrap();
    // The destination's link is b's; e3 is in no task of a's.
    s.set_control_link("e2", "b", 101).unwrap();
    s.set_control_link("e3", "b", 101).unwrap();
    let details = LinkDetails {
        data_address: Some("127.0.0.1:7000".into()),
        relay: true,
        paused: false,
    };
    s.set_link_details("e2", "b", &details).unwrap();
    // Only the holder writes a link's details.
    s.set_link_details("e2", "a", &LinkDetails::default())
        .unwrap();
    let remote = s.remote_links("a", 150).unwrap();
    assert_eq!(
        remote,
        [RemoteLink {
            endpoint_id: "e2".into(),
            instance: "b".into(),
            since: 101,
            details,
        }]
    );
    assert!(
        s.remote_links("b", 150).unwrap().is_empty(),
        "b holds no task"
    );
    assert!(
        s.remote_links("a", 201).unwrap().is_empty(),
        "b's mark ended"
    );
}
