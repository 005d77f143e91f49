//! Who may do what: the one place every access rule of the hub lives.
//!
//! A request's [`Principal`] (from its bearer token, or its browser
//! session's cookie) asks [`authorize`] before it acts: first whether its grant covers
//! the [`Action`] at all (the token's scopes), then whether the principal
//! may do it to the [`Resource`]. Today the rule is ownership; shares,
//! groups, allowed identity domains and app scopes join here, and nowhere
//! else. A refusal is typed, and says no more than the caller may know:
//! someone else's endpoint or task is [`Refusal::Hidden`], answered as if
//! it did not exist.

use crate::grants::Principal;
use crate::store::{EndpointRow, TaskRow};
use ferry_proto::api::{SCOPE_SETUP, SCOPE_TRANSFER};

/// What a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create an endpoint (and its setup key) or register one with a CSR.
    CreateEndpoint,
    /// Find, show or name an endpoint.
    SeeEndpoint,
    /// Rename or delete an endpoint.
    ManageEndpoint,
    /// List, read or change files on an endpoint, or move data from or to it.
    UseEndpoint,
    /// Submit a transfer task.
    SubmitTask,
    /// List tasks, show one, read its events.
    SeeTask,
    /// Cancel a task.
    CancelTask,
}

impl Action {
    /// The scopes whose grant covers the action, any one of them.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            // `ferry -setup` logs in for setup alone; the full CLI's login
            // (transfer) may set endpoints up too.
            Action::CreateEndpoint | Action::SeeEndpoint | Action::ManageEndpoint => {
                &[SCOPE_SETUP, SCOPE_TRANSFER]
            }
            Action::UseEndpoint | Action::SubmitTask | Action::SeeTask | Action::CancelTask => {
                &[SCOPE_TRANSFER]
            }
        }
    }
}

/// What the action is done to.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// Nothing in particular yet: the grant alone decides (a list, a
    /// search, a submission before its endpoints are named).
    Any,
    Endpoint(&'a EndpointRow),
    Task(&'a TaskRow),
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
}

/// The access decision for every route, page and service call.
pub fn authorize(who: &Principal, action: Action, resource: Resource<'_>) -> Result<(), Refusal> {
    let needs = action.scopes();
    if !needs.iter().any(|scope| who.has_scope(scope)) {
        return Err(Refusal::Scope { needs });
    }
    let owner = match resource {
        Resource::Any => return Ok(()),
        Resource::Endpoint(endpoint) => endpoint.owner_id,
        Resource::Task(task) => task.owner_id,
    };
    if owner == who.user_id {
        Ok(())
    } else {
        Err(Refusal::Hidden)
    }
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
        }
    }

    const EVERY_ACTION: [Action; 7] = [
        Action::CreateEndpoint,
        Action::SeeEndpoint,
        Action::ManageEndpoint,
        Action::UseEndpoint,
        Action::SubmitTask,
        Action::SeeTask,
        Action::CancelTask,
    ];

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
    fn a_setup_grant_sets_endpoints_up_and_moves_no_data() {
        let setup = principal(1, &[SCOPE_SETUP]);
        let laptop = endpoint(1);
        for action in EVERY_ACTION {
            let decision = authorize(&setup, action, Resource::Endpoint(&laptop));
            let allowed = matches!(
                action,
                Action::CreateEndpoint | Action::SeeEndpoint | Action::ManageEndpoint
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
}
