//! Who may do what: the one place every access rule of the hub lives.
//!
//! A request's principal asks [`authorize`] before it acts: a user's
//! [`Principal`] (from a bearer token, or a browser session's cookie, for
//! the API and the pages alike), or an endpoint's [`EndpointPrincipal`]
//! (from the certificate it presented on the control channel). A user's
//! is asked first whether its grant covers the [`Action`] at all (the
//! token's scopes), then whether it may do it to the [`Resource`]; an
//! endpoint may only act on itself. Today the rule is ownership; shares,
//! groups, allowed identity domains and app scopes join here, and nowhere
//! else. A refusal is typed, and says no more than the caller may know:
//! someone else's endpoint or task is [`Refusal::Hidden`], answered as if
//! it did not exist.

use crate::grants::{EndpointPrincipal, Principal};
use crate::store::{ClientRow, EndpointRow, PermissionRow, TaskRow, TimerRow, WebhookRow};
use ferry_proto::api::{SCOPE_MY_ENDPOINTS, SCOPE_SETUP, SCOPE_SHARED_WITH_ME, SCOPE_TRANSFER};

/// What a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create an endpoint (and its setup key) or register one with a CSR.
    CreateEndpoint,
    /// Find, show or name an endpoint.
    SeeEndpoint,
    /// Delete an endpoint, or share it (permissions).
    ManageEndpoint,
    /// Change an endpoint's display name or its identity policy
    /// (`allowed_domains`): its owner may, whatever the policy, so a
    /// domain set by mistake cannot lock them out.
    ConfigureEndpoint,
    /// List, read or change files on an endpoint, or move data from or to it.
    UseEndpoint,
    /// Submit a transfer task.
    SubmitTask,
    /// List tasks, show one, read its events.
    SeeTask,
    /// Cancel a task.
    CancelTask,
    /// Sign a new certificate for an endpoint's key: only the endpoint
    /// itself asks, with the certificate registered for it now.
    RenewCertificate,
    /// Add, list or delete webhooks that tell of one's own tasks.
    ManageWebhooks,
    /// Create groups, list one's groups, add or remove their members.
    ManageGroups,
    /// Register, list, show, rotate or delete one's own apps, and list or
    /// revoke what one let apps do.
    ManageApps,
}

/// Scopes that let a token see endpoints without doing anything to them:
/// its user's own, or those shared with them.
const SEE_MINE: &[&str] = &[SCOPE_SETUP, SCOPE_TRANSFER, SCOPE_MY_ENDPOINTS];
const SEE_SHARED: &[&str] = &[SCOPE_SETUP, SCOPE_TRANSFER, SCOPE_SHARED_WITH_ME];

impl Action {
    /// The scopes whose grant covers the action, any one of them.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            // `ferry -setup` logs in for setup alone; the full CLI's login
            // (transfer) may set endpoints up too.
            Action::CreateEndpoint
            | Action::ManageEndpoint
            | Action::ConfigureEndpoint
            | Action::ManageGroups => &[SCOPE_SETUP, SCOPE_TRANSFER],
            // An app may be let see endpoints alone: which ones, the
            // resource decides (`SEE_MINE`, `SEE_SHARED`).
            Action::SeeEndpoint => &[
                SCOPE_SETUP,
                SCOPE_TRANSFER,
                SCOPE_MY_ENDPOINTS,
                SCOPE_SHARED_WITH_ME,
            ],
            Action::UseEndpoint
            | Action::SubmitTask
            | Action::SeeTask
            | Action::CancelTask
            | Action::ManageWebhooks
            | Action::ManageApps => &[SCOPE_TRANSFER],
            // No user's grant covers it, whatever it holds.
            Action::RenewCertificate => &[],
        }
    }
}

/// What a route or page does, for the extractors that check, before the
/// request's body is read, that the principal's grant covers it
/// (`api::Caller`, `page_auth::SignedIn`).
pub trait Route {
    const ACTION: Action;
}

macro_rules! routes_doing {
    ($($(#[$doc:meta])* $name:ident => $action:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl Route for $name {
            const ACTION: Action = $action;
        }
    )*};
}

routes_doing! {
    CreatesEndpoints => Action::CreateEndpoint;
    SeesEndpoints => Action::SeeEndpoint;
    ManagesEndpoints => Action::ManageEndpoint;
    ConfiguresEndpoints => Action::ConfigureEndpoint;
    UsesEndpoints => Action::UseEndpoint;
    SubmitsTasks => Action::SubmitTask;
    SeesTasks => Action::SeeTask;
    CancelsTasks => Action::CancelTask;
    ManagesWebhooks => Action::ManageWebhooks;
    ManagesGroups => Action::ManageGroups;
    ManagesApps => Action::ManageApps;
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A user, by a token or a browser session.
    User(&'a Principal),
    /// An endpoint's daemon, by its certificate.
    Endpoint(&'a EndpointPrincipal),
}

impl<'a> From<&'a Principal> for Who<'a> {
    fn from(user: &'a Principal) -> Self {
        Who::User(user)
    }
}

impl<'a> From<&'a EndpointPrincipal> for Who<'a> {
    fn from(endpoint: &'a EndpointPrincipal) -> Self {
        Who::Endpoint(endpoint)
    }
}

/// What the action is done to.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// Nothing in particular yet: the grant alone decides (a list, a
    /// search, a submission before its endpoints are named).
    Any,
    Endpoint(&'a EndpointRow),
    /// An endpoint and the live permissions on it that reach the
    /// principal (a grantee sees and uses it; only its owner manages it).
    SharedEndpoint {
        endpoint: &'a EndpointRow,
        reaching: &'a [PermissionRow],
    },
    Task(&'a TaskRow),
    /// A timer: its owner's alone, as a task is.
    Timer(&'a TimerRow),
    Webhook(&'a WebhookRow),
    /// An app a user registered: its owner's alone.
    App(&'a ClientRow),
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The grant does not cover the action: 403, naming the scopes.
    #[error("the access token lacks the scope {}", .needs.join(" or "))]
    Scope { needs: &'static [&'static str] },
    /// Not the principal's to see: answered as absent (404), so nobody
    /// learns whether another user's object exists.
    #[error("not found")]
    Hidden,
    /// Not a thing this kind of principal does, whatever its grant: 403.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The endpoint was revoked or deleted: it acts no more.
    #[error("the endpoint was revoked")]
    Revoked,
    /// A grantee asked for more than was shared with them: 403, saying
    /// what was shared (they may know that much).
    #[error("{0}")]
    NotShared(String),
    /// The endpoint's identity policy wants an identity the principal's
    /// sign-in did not authenticate recently: 403, saying which domains
    /// and where to link one.
    #[error("{0}")]
    IdentityRequired(String),
}

/// The access decision for every route, page and service call.
pub fn authorize<'a>(
    who: impl Into<Who<'a>>,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), Refusal> {
    match who.into() {
        Who::User(user) => authorize_user(user, action, resource),
        Who::Endpoint(endpoint) => authorize_endpoint(endpoint, action, resource),
    }
}

fn authorize_user(who: &Principal, action: Action, resource: Resource<'_>) -> Result<(), Refusal> {
    if action == Action::RenewCertificate {
        return Err(Refusal::Forbidden(
            "only an endpoint renews its certificate, over its control channel",
        ));
    }
    let needs = action.scopes();
    if !needs.iter().any(|scope| who.has_scope(scope)) {
        return Err(Refusal::Scope { needs });
    }
    let owner = match resource {
        Resource::Any => return Ok(()),
        Resource::Endpoint(endpoint) => {
            if endpoint.owner_id != who.user_id {
                return Err(Refusal::Hidden);
            }
            see_scope(who, action, SEE_MINE)?;
            return identity_policy(who, action, endpoint);
        }
        Resource::SharedEndpoint { endpoint, reaching } => {
            if endpoint.owner_id == who.user_id {
                see_scope(who, action, SEE_MINE)?;
            } else {
                if !reaching.is_empty() {
                    see_scope(who, action, SEE_SHARED)?;
                }
                // A grantee may find and use an endpoint shared with them
                // (each path is then asked of `authorize_paths`); managing
                // it stays its owner's. Without a permission it is not there.
                match action {
                    _ if reaching.is_empty() => return Err(Refusal::Hidden),
                    Action::SeeEndpoint | Action::UseEndpoint => {}
                    _ => {
                        return Err(Refusal::Forbidden("only the endpoint's owner may do that"));
                    }
                }
            }
            return identity_policy(who, action, endpoint);
        }
        Resource::Task(task) => task.owner_id,
        Resource::Timer(timer) => timer.timer.owner_id,
        Resource::Webhook(webhook) => webhook.owner_id,
        Resource::App(app) => match app.owner_id {
            Some(owner) => owner,
            // An admin's client is nobody's to manage here.
            None => return Err(Refusal::Hidden),
        },
    };
    if owner == who.user_id {
        Ok(())
    } else {
        Err(Refusal::Hidden)
    }
}

/// Seeing an endpoint under a grant that covers only seeing some: its
/// user's own (`my-endpoints`) or those shared with them (`shared-with-me`).
fn see_scope(
    who: &Principal,
    action: Action,
    covering: &'static [&'static str],
) -> Result<(), Refusal> {
    if action == Action::SeeEndpoint && !covering.iter().any(|s| who.has_scope(s)) {
        return Err(Refusal::Scope {
            needs: &covering[2..],
        });
    }
    Ok(())
}

/// Whether `who`'s grant lets it list its own endpoints (`mine`) and those
/// shared with it (`shared`): a listing of both needs both.
pub fn may_list_endpoints(who: &Principal, mine: bool, shared: bool) -> Result<(), Refusal> {
    authorize_user(who, Action::SeeEndpoint, Resource::Any)?;
    for (wanted, covering) in [(mine, SEE_MINE), (shared, SEE_SHARED)] {
        if wanted {
            see_scope(who, Action::SeeEndpoint, covering)?;
        }
    }
    Ok(())
}

/// An endpoint with `allowed_domains` is used (its files, transfers from
/// or to it, its links and permissions, deleting it), by its owner too,
/// only under a sign-in that authenticated an identity of one of them
/// within the hub's age limit. Seeing it, and its owner changing its name
/// or the policy itself, need none. Asked only once the principal may
/// otherwise act on it: whoever may not learns nothing of the policy.
fn identity_policy(who: &Principal, action: Action, endpoint: &EndpointRow) -> Result<(), Refusal> {
    let domains = &endpoint.allowed_domains;
    let exempt = matches!(action, Action::SeeEndpoint | Action::ConfigureEndpoint);
    if exempt || domains.is_empty() || who.sign_in.has_domain(domains) {
        return Ok(());
    }
    let wanted = match domains.as_slice() {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        [] => String::new(),
    };
    Err(Refusal::IdentityRequired(format!(
        "endpoint {} requires an identity from {wanted} authenticated within {}h: link one at {} (then `ferry login` again)",
        endpoint.display_name, who.sign_in.max_age_hours, who.sign_in.link_page
    )))
}

/// Whether `path` (an endpoint path, bytes) is `root` or lies beneath it,
/// component by component (`/a/bc` is not beneath `/a/b`). Paths with a
/// `..` component are beneath nothing.
pub fn is_beneath(path: &[u8], root: &[u8]) -> bool {
    let components = |p: &[u8]| -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for c in p.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return None,
                c => out.push(c.to_vec()),
            }
        }
        Some(out)
    };
    match (components(path), components(root)) {
        (Some(path), Some(root)) => path.starts_with(&root),
        _ => false,
    }
}

/// The permission under which `who` may touch every one of `paths`
/// (bytes, and whether the use writes) on `endpoint`: `None` for its
/// owner, else the deepest of the permissions `reaching` them that covers
/// all the paths with the mode they need. The endpoint checks the same
/// again against its own `config-paths` (the grant travels with the
/// request), so this decides what the hub asks for, never more.
pub fn authorize_paths<'p>(
    who: &Principal,
    endpoint: &EndpointRow,
    reaching: &'p [PermissionRow],
    paths: &[(&[u8], bool)],
) -> Result<Option<&'p PermissionRow>, Refusal> {
    if endpoint.owner_id == who.user_id {
        return Ok(None);
    }
    if reaching.is_empty() {
        return Err(Refusal::Hidden);
    }
    let covers = |p: &PermissionRow| {
        paths
            .iter()
            .all(|(path, write)| is_beneath(path, &p.path) && (!write || p.mode.allows_write()))
    };
    if let Some(best) = reaching
        .iter()
        .filter(|p| covers(p))
        .max_by_key(|p| p.path.len())
    {
        return Ok(Some(best));
    }
    let shown = |p: &PermissionRow| {
        format!(
            "{} ({})",
            String::from_utf8_lossy(&p.path),
            if p.mode.allows_write() {
                "read-write"
            } else {
                "read-only"
            }
        )
    };
    let inside_some = paths
        .iter()
        .all(|(path, _)| reaching.iter().any(|p| is_beneath(path, &p.path)));
    let shared = reaching.iter().map(shown).collect::<Vec<_>>().join(", ");
    Err(Refusal::NotShared(if inside_some {
        format!("that needs write access, and what is shared with you there is read-only: {shared}")
    } else {
        format!("that is outside what is shared with you on this endpoint: {shared}")
    }))
}

/// An endpoint renews its own certificate and does nothing else here (what
/// it does for its owner's tasks, the capability the hub signed decides).
fn authorize_endpoint(
    who: &EndpointPrincipal,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), Refusal> {
    let (Action::RenewCertificate, Resource::Endpoint(endpoint)) = (action, resource) else {
        return Err(Refusal::Forbidden(
            "an endpoint may only renew its own certificate",
        ));
    };
    if endpoint.id != who.endpoint_id {
        return Err(Refusal::Hidden);
    }
    if endpoint.revoked || endpoint.deleted {
        return Err(Refusal::Revoked);
    }
    // Admission checks the certificate at the hello and at every beat; a
    // renewal between two beats must not outlive a setup done elsewhere
    // meanwhile, which registered another certificate.
    if endpoint.cert_sha256.as_deref() != Some(who.cert_sha256.as_str()) {
        return Err(Refusal::Forbidden(
            "this certificate is no longer the endpoint's: it was set up again elsewhere",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(user_id: i64, scopes: &[&str]) -> Principal {
        Principal {
            user_id,
            user_name: format!("user{user_id}"),
            client_id: "ferry-cli".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            sign_in: Default::default(),
        }
    }

    fn endpoint(owner_id: i64) -> EndpointRow {
        EndpointRow {
            id: "e1".into(),
            owner_id,
            owner_name: format!("user{owner_id}"),
            display_name: "laptop".into(),
            created: 0,
            cert_sha256: None,
            revoked: false,
            deleted: false,
            allowed_domains: Vec::new(),
        }
    }

    const EVERY_ACTION: [Action; 8] = [
        Action::CreateEndpoint,
        Action::SeeEndpoint,
        Action::ManageEndpoint,
        Action::ConfigureEndpoint,
        Action::UseEndpoint,
        Action::SubmitTask,
        Action::SeeTask,
        Action::CancelTask,
    ];

    fn permission(path: &str, mode: ferry_proto::share::ShareMode) -> PermissionRow {
        PermissionRow {
            id: format!("p{path}"),
            endpoint_id: "e1".into(),
            path: path.as_bytes().to_vec(),
            mode,
            grantee: crate::store::Grantee::AllAuthenticated,
            expires: None,
            created: 0,
            created_by: 1,
        }
    }

    #[test]
    fn beneath_is_by_whole_components_and_never_through_dot_dot() {
        assert!(is_beneath(b"/~/project/results", b"/~/project/results"));
        assert!(is_beneath(b"/~/project/results/a/b", b"/~/project/results"));
        assert!(is_beneath(b"/~/project/results/", b"/~/project/results"));
        assert!(is_beneath(
            b"/~/project//results/./x",
            b"/~/project/results"
        ));
        assert!(!is_beneath(b"/~/project/results2", b"/~/project/results"));
        assert!(!is_beneath(b"/~/project", b"/~/project/results"));
        assert!(!is_beneath(
            b"/~/project/results/../secret",
            b"/~/project/results"
        ));
        assert!(is_beneath(b"/anything", b"/"));
    }

    #[test]
    fn a_grantee_reaches_only_beneath_a_permission_and_writes_only_with_rw() {
        use ferry_proto::share::ShareMode::{Read, ReadWrite};
        let bob = principal(2, &[SCOPE_TRANSFER]);
        let laptop = endpoint(1);
        let reaching = [
            permission("/~/project/results", Read),
            permission("/~/project/results/incoming", ReadWrite),
        ];
        let decide = |paths: &[(&[u8], bool)]| authorize_paths(&bob, &laptop, &reaching, paths);
        assert_eq!(
            decide(&[(b"/~/project/results/a.csv", false)])
                .unwrap()
                .map(|p| p.id.as_str()),
            Some("p/~/project/results")
        );
        assert_eq!(
            decide(&[(b"/~/project/results/incoming/new", true)])
                .unwrap()
                .map(|p| p.id.as_str()),
            Some("p/~/project/results/incoming"),
            "the deepest permission that covers it"
        );
        assert!(matches!(
            decide(&[(b"/~/project/results/a.csv", true)]),
            Err(Refusal::NotShared(m)) if m.contains("read-only")
        ));
        assert!(matches!(
            decide(&[(b"/~/project", false)]),
            Err(Refusal::NotShared(m)) if m.contains("outside what is shared")
        ));
        assert!(matches!(
            decide(&[(b"/~/project/results/../notes", false)]),
            Err(Refusal::NotShared(_))
        ));
        // Its owner needs no permission; a stranger without one finds nothing.
        assert_eq!(
            authorize_paths(
                &principal(1, &[SCOPE_TRANSFER]),
                &laptop,
                &[],
                &[(b"/etc", true)]
            ),
            Ok(None)
        );
        assert_eq!(
            authorize_paths(&bob, &laptop, &[], &[(b"/~/project/results", false)]),
            Err(Refusal::Hidden)
        );
        // A grantee sees and uses the endpoint but never manages it.
        let shared = Resource::SharedEndpoint {
            endpoint: &laptop,
            reaching: &reaching,
        };
        assert_eq!(authorize(&bob, Action::UseEndpoint, shared), Ok(()));
        assert!(matches!(
            authorize(&bob, Action::ManageEndpoint, shared),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn owners_may_do_everything_their_grant_covers_and_others_see_nothing() {
        let alice = principal(1, &[SCOPE_TRANSFER]);
        let bob = principal(2, &[SCOPE_TRANSFER, SCOPE_SETUP]);
        let laptop = endpoint(1);
        for action in EVERY_ACTION {
            assert_eq!(
                authorize(&alice, action, Resource::Endpoint(&laptop)),
                Ok(())
            );
            assert_eq!(
                authorize(&bob, action, Resource::Endpoint(&laptop)),
                Err(Refusal::Hidden),
                "{action:?}"
            );
            assert_eq!(authorize(&bob, action, Resource::Any), Ok(()));
        }
    }

    #[test]
    fn allowed_domains_need_a_fresh_identity_of_them_from_owner_and_grantee_alike() {
        use crate::identities::SignInProof;
        let mut laptop = endpoint(1);
        laptop.allowed_domains = vec!["example.org".into(), "example.net".into()];
        let reaching = [permission("/~/x", ferry_proto::share::ShareMode::Read)];
        let proof = |fresh: &[&str]| SignInProof {
            login_id: "l".into(),
            fresh: fresh.iter().map(|s| s.to_string()).collect(),
            max_age_hours: 24,
            link_page: "https://hub/account".into(),
        };
        let mut alice = principal(1, &[SCOPE_TRANSFER]);
        let mut bob = principal(2, &[SCOPE_TRANSFER]);
        let shared = Resource::SharedEndpoint {
            endpoint: &laptop,
            reaching: &reaching,
        };
        for who in [&mut alice, &mut bob] {
            who.sign_in = proof(&["x@example.edu"]);
        }
        for who in [&alice, &bob] {
            let refused = authorize(who, Action::UseEndpoint, shared).unwrap_err();
            assert_eq!(
                refused.to_string(),
                "endpoint laptop requires an identity from example.org or example.net authenticated within 24h: link one at https://hub/account (then `ferry login` again)"
            );
            assert_eq!(authorize(who, Action::SeeEndpoint, shared), Ok(()));
        }
        assert!(matches!(
            authorize(&alice, Action::ManageEndpoint, Resource::Endpoint(&laptop)),
            Err(Refusal::IdentityRequired(_))
        ));
        assert_eq!(
            authorize(
                &alice,
                Action::ConfigureEndpoint,
                Resource::Endpoint(&laptop)
            ),
            Ok(())
        );
        // A stranger learns nothing of the policy.
        assert_eq!(
            authorize(&bob, Action::UseEndpoint, Resource::Endpoint(&laptop)),
            Err(Refusal::Hidden)
        );
        for who in [&mut alice, &mut bob] {
            who.sign_in = proof(&["x@example.edu", "x@EXAMPLE.net"]);
        }
        assert_eq!(authorize(&alice, Action::UseEndpoint, shared), Ok(()));
        assert_eq!(authorize(&bob, Action::UseEndpoint, shared), Ok(()));
        laptop.allowed_domains.clear();
        alice.sign_in = SignInProof::default();
        assert_eq!(
            authorize(&alice, Action::UseEndpoint, Resource::Endpoint(&laptop)),
            Ok(())
        );
    }

    #[test]
    fn a_setup_grant_sets_endpoints_up_and_moves_no_data() {
        let setup = principal(1, &[SCOPE_SETUP]);
        let laptop = endpoint(1);
        for action in EVERY_ACTION {
            let decision = authorize(&setup, action, Resource::Endpoint(&laptop));
            let allowed = matches!(
                action,
                Action::CreateEndpoint
                    | Action::SeeEndpoint
                    | Action::ManageEndpoint
                    | Action::ConfigureEndpoint
            );
            assert_eq!(decision.is_ok(), allowed, "{action:?}: {decision:?}");
            if !allowed {
                assert!(matches!(decision, Err(Refusal::Scope { .. })));
            }
        }
        // The scope is checked before the owner: a token without it learns
        // nothing about whose object it named.
        let stranger = principal(2, &[SCOPE_SETUP]);
        assert!(matches!(
            authorize(&stranger, Action::UseEndpoint, Resource::Endpoint(&laptop)),
            Err(Refusal::Scope { .. })
        ));
        assert!(matches!(
            authorize(&principal(1, &[]), Action::SeeEndpoint, Resource::Any),
            Err(Refusal::Scope { .. })
        ));
    }

    #[test]
    fn an_endpoint_renews_only_itself_with_its_registered_certificate() {
        let mut laptop = endpoint(1);
        laptop.cert_sha256 = Some("aa".into());
        let itself = EndpointPrincipal {
            endpoint_id: "e1".into(),
            cert_sha256: "aa".into(),
            node: None,
        };
        assert_eq!(
            authorize(
                &itself,
                Action::RenewCertificate,
                Resource::Endpoint(&laptop)
            ),
            Ok(())
        );
        let other = EndpointPrincipal {
            endpoint_id: "e2".into(),
            cert_sha256: "aa".into(),
            node: None,
        };
        assert_eq!(
            authorize(
                &other,
                Action::RenewCertificate,
                Resource::Endpoint(&laptop)
            ),
            Err(Refusal::Hidden)
        );
        let superseded = EndpointPrincipal {
            cert_sha256: "bb".into(),
            ..itself.clone()
        };
        assert!(matches!(
            authorize(
                &superseded,
                Action::RenewCertificate,
                Resource::Endpoint(&laptop)
            ),
            Err(Refusal::Forbidden(_))
        ));
        for action in EVERY_ACTION {
            assert!(matches!(
                authorize(&itself, action, Resource::Endpoint(&laptop)),
                Err(Refusal::Forbidden(_))
            ));
        }
        // Its owner, whatever the grant, does not renew for it.
        let owner = principal(1, &[SCOPE_TRANSFER, SCOPE_SETUP]);
        assert!(matches!(
            authorize(
                &owner,
                Action::RenewCertificate,
                Resource::Endpoint(&laptop)
            ),
            Err(Refusal::Forbidden(_))
        ));
        for gone in [
            EndpointRow {
                revoked: true,
                ..laptop.clone()
            },
            EndpointRow {
                deleted: true,
                ..laptop.clone()
            },
        ] {
            assert_eq!(
                authorize(&itself, Action::RenewCertificate, Resource::Endpoint(&gone)),
                Err(Refusal::Revoked)
            );
        }
    }

    #[test]
    fn seeing_scopes_see_endpoints_and_do_nothing_else() {
        let mine = principal(1, &[SCOPE_MY_ENDPOINTS]);
        let shared = principal(1, &[SCOPE_SHARED_WITH_ME]);
        for action in [
            Action::ManageGroups,
            Action::ManageEndpoint,
            Action::UseEndpoint,
            Action::SubmitTask,
            Action::SeeTask,
            Action::ManageApps,
        ] {
            for who in [&mine, &shared] {
                assert!(
                    matches!(
                        authorize(who, action, Resource::Any),
                        Err(Refusal::Scope { .. })
                    ),
                    "{action:?}"
                );
            }
        }
        assert!(may_list_endpoints(&mine, true, false).is_ok());
        assert!(may_list_endpoints(&mine, false, true).is_err());
        assert!(may_list_endpoints(&mine, true, true).is_err());
        assert!(may_list_endpoints(&shared, false, true).is_ok());
        let both = principal(1, &[SCOPE_MY_ENDPOINTS, SCOPE_SHARED_WITH_ME]);
        assert!(may_list_endpoints(&both, true, true).is_ok());
        assert!(may_list_endpoints(&principal(1, &[SCOPE_TRANSFER]), true, true).is_ok());
    }
}
