//! Identities: `name@domain`, linked to accounts, authenticated by
//! sign-ins, and asked for by endpoints' identity policies.
//!
//! Every account has its local identity, `NAME@LOCAL_DOMAIN`
//! (`local_domain` in `hub.toml`, by default the host of the hub's URL),
//! which a password sign-in authenticates; an upstream OpenID provider
//! (`[[identity_provider]]`, see [`crate::oidc`]) vouches for identities
//! of its `domains`, which are linked to accounts in the store. A sign-in
//! (a browser session; the tokens issued through one carry a copy) records
//! each identity it authenticated and when. An endpoint whose owner set
//! `allowed_domains` is then usable only by a principal whose sign-in
//! authenticated an identity of one of those domains within
//! `identity_max_age_hours`: `authz` decides it, with the
//! [`SignInProof`] every [`crate::grants::Principal`] carries.

use crate::grants::Principal;
use crate::store::{IdentityRow, Storage, StoreError, UserRow};
use ferry_proto::api::{LinkedIdentity, SessionIdentity, WhoAmI};

/// The provider name of accounts' own identities, in listings.
pub const LOCAL_PROVIDER: &str = "local";
/// Most domains one endpoint's policy names.
pub const MAX_ALLOWED_DOMAINS: usize = 16;
/// The password hash of accounts made by a federated sign-in: never a
/// PHC string, so no password ever matches it.
pub const NO_PASSWORD: &str = "!federated";

/// What the hub's configuration says about identities, for every place
/// that builds a principal or words a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRules {
    /// The domain of accounts' own identities.
    pub local_domain: String,
    /// How recent an authentication an endpoint's policy accepts.
    pub max_age_secs: i64,
    /// The page where a signed-in user links another identity.
    pub link_page: String,
}

impl IdentityRules {
    pub fn local_identity(&self, user_name: &str) -> String {
        format!("{user_name}@{}", self.local_domain)
    }
}

/// What a principal's sign-in proved, judged against the hub's rules when
/// the principal was built: what `authz` asks of it for an endpoint with
/// allowed domains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignInProof {
    /// The sign-in (a session's hash, or a token's grant); empty for none.
    pub login_id: String,
    /// Identities the sign-in authenticated within the age limit.
    pub fresh: Vec<String>,
    /// The age limit, in hours, for the words of a refusal.
    pub max_age_hours: i64,
    /// Where a user links another identity, for the words of a refusal.
    pub link_page: String,
}

impl SignInProof {
    /// The proof of sign-in `login_id` (a session's hash, or the grant of
    /// tokens issued through one) at `now`.
    pub fn load(
        store: &dyn Storage,
        rules: &IdentityRules,
        login_id: &str,
        now: i64,
    ) -> Result<Self, StoreError> {
        let fresh = store
            .login_identities(login_id)?
            .into_iter()
            .filter(|(_, at)| now.saturating_sub(*at) <= rules.max_age_secs)
            .map(|(identity, _)| identity)
            .collect();
        Ok(Self {
            login_id: login_id.to_string(),
            fresh,
            max_age_hours: rules.max_age_secs / 3600,
            link_page: rules.link_page.clone(),
        })
    }

    /// Whether an identity of one of `domains` is among the fresh ones.
    pub fn has_domain(&self, domains: &[String]) -> bool {
        self.fresh.iter().any(|identity| {
            domain_of(identity).is_some_and(|d| domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
        })
    }
}

/// The domain of `name@domain`.
pub fn domain_of(identity: &str) -> Option<&str> {
    identity
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

/// Why an identity or a domain list was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{0:?} is not a domain name: use letters, digits, '-' and '.', like example.org (at most 253 bytes)"
    )]
    BadDomain(String),
    #[error("at most {MAX_ALLOWED_DOMAINS} allowed domains")]
    TooManyDomains,
    #[error("the identity {0} is already linked to another account")]
    LinkedElsewhere(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A domain name as `hub.toml` and `--allowed-domains` name one, lowercased.
pub fn check_domain(domain: &str) -> Result<String, IdentityError> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if d.is_empty() || d.len() > 253 || !d.split('.').all(label_ok) {
        return Err(IdentityError::BadDomain(domain.chars().take(80).collect()));
    }
    Ok(d)
}

/// An endpoint's allowed domains as its owner gave them: each checked,
/// lowercased, duplicates dropped; empty clears the policy.
pub fn check_allowed_domains(given: &[String]) -> Result<Vec<String>, IdentityError> {
    let mut out: Vec<String> = Vec::new();
    for d in given.iter().flat_map(|d| d.split(',')) {
        if d.trim().is_empty() {
            continue;
        }
        let d = check_domain(d)?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.len() > MAX_ALLOWED_DOMAINS {
        return Err(IdentityError::TooManyDomains);
    }
    Ok(out)
}

/// The account's own identity: the one a federated sign-in created it
/// with, or its local identity.
pub fn primary_identity(rules: &IdentityRules, user: &UserRow, linked: &[IdentityRow]) -> String {
    match linked.first() {
        // A service account's name is its identity already.
        _ if user.password_hash == crate::apps::SERVICE_ACCOUNT => user.name.clone(),
        Some(first) if user.password_hash == NO_PASSWORD => first.identity.clone(),
        _ => rules.local_identity(&user.name),
    }
}

/// `ferry whoami`: the caller's identity, every identity linked to the
/// account, and what their sign-in authenticated.
pub fn whoami(
    store: &dyn Storage,
    rules: &IdentityRules,
    who: &Principal,
    login_id: Option<&str>,
) -> Result<WhoAmI, StoreError> {
    let user = store.user_by_id(who.user_id)?.ok_or(StoreError::NotFound)?;
    let linked = store.identities_of(who.user_id)?;
    let primary = primary_identity(rules, &user, &linked);
    let mut linked_identities = Vec::new();
    if user.password_hash != NO_PASSWORD {
        linked_identities.push(LinkedIdentity {
            identity: rules.local_identity(&user.name),
            provider: LOCAL_PROVIDER.into(),
            linked: None,
        });
    }
    linked_identities.extend(linked.into_iter().map(|r| LinkedIdentity {
        identity: r.identity,
        provider: r.provider,
        linked: Some(r.linked_at),
    }));
    let session_identities = match login_id {
        Some(login) => store
            .login_identities(login)?
            .into_iter()
            .map(|(identity, authenticated)| SessionIdentity {
                identity,
                authenticated,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(WhoAmI {
        identity: primary,
        username: user.name,
        linked_identities,
        session_identities,
    })
}

/// What a federated sign-in did with the identity its provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Federated {
    /// Signed in to the account it is linked to.
    Existing { user_id: i64, user_name: String },
    /// A new account, made for it.
    Created { user_id: i64, user_name: String },
}

/// The account `identity` (vouched for by `provider`) signs in to: the
/// one it is linked to, else a new one named after it, with no password.
pub fn sign_in_federated(
    store: &dyn Storage,
    provider: &str,
    identity: &str,
    now: i64,
) -> Result<Federated, IdentityError> {
    if let Some(row) = store.identity(identity)? {
        let user = store.user_by_id(row.user_id)?.ok_or(StoreError::NotFound)?;
        return Ok(Federated::Existing {
            user_id: user.id,
            user_name: user.name,
        });
    }
    let base = username_base(identity);
    for n in 0..100u32 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}{}", n + 1)
        };
        match store.add_user(&name, NO_PASSWORD, now) {
            Ok(user_id) => {
                store.link_identity(identity, user_id, provider, now)?;
                return Ok(Federated::Created {
                    user_id,
                    user_name: name,
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict { what: "user name" }.into())
}

/// Links `identity` to the signed-in account; linking one already linked
/// to it again is no change, to another account a refusal.
pub fn link(
    store: &dyn Storage,
    user_id: i64,
    provider: &str,
    identity: &str,
    now: i64,
) -> Result<(), IdentityError> {
    match store.identity(identity)? {
        Some(row) if row.user_id == user_id => Ok(()),
        Some(_) => Err(IdentityError::LinkedElsewhere(identity.to_string())),
        None => match store.link_identity(identity, user_id, provider, now) {
            Err(StoreError::Conflict { .. }) => {
                Err(IdentityError::LinkedElsewhere(identity.to_string()))
            }
            other => Ok(other?),
        },
    }
}

/// A user name for a new account: the identity's local part, with what
/// user names elsewhere in the hub do not hold replaced by `-`.
fn username_base(identity: &str) -> String {
    let local = identity.rsplit_once('@').map_or(identity, |(l, _)| l);
    let name: String = local
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.trim_matches(['-', '.']).is_empty() {
        "user".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AccountStore, IdentityStore, SqliteStore};

    fn rules() -> IdentityRules {
        IdentityRules {
            local_domain: "hub.example".into(),
            max_age_secs: 3600,
            link_page: "https://hub.example/account".into(),
        }
    }

    #[test]
    fn domains_are_checked_lowercased_and_deduplicated() {
        assert_eq!(
            check_allowed_domains(&["Example.ORG,example.edu".into(), "example.org".into()])
                .unwrap(),
            ["example.org", "example.edu"]
        );
        assert!(check_allowed_domains(&["".into()]).unwrap().is_empty());
        for bad in ["exa mple.org", "-x.org", "a..b", "x@y", "ä.org"] {
            assert!(check_allowed_domains(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(domain_of("a@b.org"), Some("b.org"));
        assert_eq!(domain_of("a@"), None);
    }

    #[test]
    fn a_sign_in_proves_only_what_it_authenticated_recently() {
        let store = SqliteStore::in_memory().unwrap();
        store.note_login_identity("l", "a@old.org", 100).unwrap();
        store.note_login_identity("l", "a@new.org", 3000).unwrap();
        let proof = SignInProof::load(&store, &rules(), "l", 3800).unwrap();
        assert_eq!(proof.fresh, ["a@new.org"]);
        assert!(proof.has_domain(&["NEW.org".into()]));
        assert!(!proof.has_domain(&["old.org".into()]));
        assert_eq!(proof.max_age_hours, 1);
    }

    #[test]
    fn a_federated_identity_makes_one_account_and_links_to_no_other() {
        let store = SqliteStore::in_memory().unwrap();
        store.add_user("x", "hash", 0).unwrap();
        let made = sign_in_federated(&store, "campus", "X@example.edu", 5).unwrap();
        let Federated::Created { user_id, user_name } = made else {
            panic!("{made:?}")
        };
        assert_eq!(user_name, "x2", "x was taken");
        assert_eq!(
            sign_in_federated(&store, "campus", "X@example.edu", 6).unwrap(),
            Federated::Existing {
                user_id,
                user_name: "x2".into()
            }
        );
        let other = store.add_user("bob", "hash", 0).unwrap();
        assert!(matches!(
            link(&store, other, "campus", "X@example.edu", 7),
            Err(IdentityError::LinkedElsewhere(_))
        ));
        link(&store, user_id, "campus", "X@example.edu", 7).unwrap();
        link(&store, user_id, "org", "x@example.org", 8).unwrap();
        let who = Principal {
            user_id,
            user_name: "x2".into(),
            client_id: "t".into(),
            scopes: vec![],
            sign_in: SignInProof::default(),
        };
        let me = whoami(&store, &rules(), &who, None).unwrap();
        assert_eq!(me.identity, "X@example.edu");
        let linked: Vec<_> = me
            .linked_identities
            .iter()
            .map(|l| l.identity.as_str())
            .collect();
        assert_eq!(linked, ["X@example.edu", "x@example.org"]);
        assert_eq!(username_base("Dr. Who!@x"), "dr.-who-");
        assert_eq!(username_base("@x"), "user");
    }
}
