//! The browser session and its CSRF defences, for every page that acts for
//! a signed-in user: the `__Host-` session cookie and the session it names
//! ([`SessionUser`]), the per-session CSRF token, the sign-in form's
//! HMAC-bound CSRF cookie and field ([`LoginCsrf`]), and the check that a
//! posted form came from the hub's own pages ([`check_origin`]).
//!
//! Every secret is stored hashed; cookies are `Secure`, `HttpOnly` and
//! `__Host-`, so browsers take them only from this origin over HTTPS.

use crate::grants::Principal;
use crate::identities::{IdentityRules, SignInProof};
use crate::secrets::{MacKey, constant_time_eq, random_token, token_hash};
use crate::store::{Storage, StoreError};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use ferry_proto::api::{SCOPE_SETUP, SCOPE_TRANSFER, https_host_port};

/// A browser session lasts a working day.
pub const SESSION_TTL: i64 = 12 * 3600;
/// `__Host-`: browsers accept the cookie only from this origin over HTTPS,
/// with `Path=/` and no `Domain`, so no other service on a sibling host (or
/// plain HTTP on this one) can set or replace it.
pub const SESSION_COOKIE: &str = "__Host-ferry_session";
/// The client id a browser session acts under: the hub's own pages.
pub const SESSION_CLIENT: &str = "ferry-web";
/// The sign-in form has no session yet: its CSRF token is a cookie the hub
/// made and tagged, and the form carries a second tag over that cookie
/// (see [`LoginCsrf`]).
pub const LOGIN_CSRF_COOKIE: &str = "__Host-ferry_login_csrf";
/// How long a sign-in form stays good; a form shown again within half of
/// it keeps the cookie the browser holds, so two open sign-in tabs work.
pub const LOGIN_FORM_TTL: i64 = 3600;
pub(crate) const LOGIN_COOKIE_PURPOSE: &str = "ferry-hub login csrf cookie v1";
const LOGIN_FIELD_PURPOSE: &str = "ferry-hub login csrf field v1";
/// Longest cookie value looked at; the hub's own are far shorter.
const MAX_COOKIE: usize = 2048;

/// The session could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("no randomness: {0}")]
    Randomness(#[from] getrandom::Error),
}

/// Why a posted form is refused before anything it asks for is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// The browser says the form was posted from another site or origin.
    #[error("the form was posted from another site")]
    CrossOrigin,
    /// The form's token is missing, wrong, expired or not the hub's.
    #[error("the form's CSRF token is missing or wrong")]
    BadToken,
}

/// The signed-in user of a browser whose cookie names a live session.
#[derive(Debug)]
pub struct SessionUser {
    pub user_id: i64,
    pub user_name: String,
    csrf: String,
    hash: String,
    sign_in: SignInProof,
}

impl SessionUser {
    /// The session the request's cookie names, if it is live at `now`.
    pub fn from_request(
        store: &dyn Storage,
        rules: &IdentityRules,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Option<Self>, SessionError> {
        let Some(value) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let hash = token_hash(value);
        let Some(row) = store.session(&hash, now)? else {
            return Ok(None);
        };
        let sign_in = SignInProof::load(store, rules, &hash, now)?;
        Ok(Some(SessionUser {
            user_id: row.user_id,
            user_name: row.user_name,
            csrf: row.csrf,
            hash,
            sign_in,
        }))
    }

    /// The sign-in this session is: what names the identities it
    /// authenticated in the store.
    pub fn login_id(&self) -> &str {
        &self.hash
    }

    /// Who the session acts for, to [`crate::authz::authorize`], for the
    /// API and the pages alike: the user, with everything the user may do
    /// (it is the user at the hub's own pages).
    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.user_id,
            user_name: self.user_name.clone(),
            client_id: SESSION_CLIENT.into(),
            scopes: vec![SCOPE_TRANSFER.into(), SCOPE_SETUP.into()],
            sign_in: self.sign_in.clone(),
        }
    }

    /// The token every form of this session carries (field `csrf`).
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether a posted form carries this session's token.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), CsrfError> {
        if tokens_match(given, &self.csrf) {
            Ok(())
        } else {
            Err(CsrfError::BadToken)
        }
    }

    /// Ends the session in the store; [`clear`] takes the cookie away.
    pub fn end(&self, store: &dyn Storage) -> Result<(), SessionError> {
        Ok(store.delete_session(&self.hash)?)
    }

    /// Whether a listed session (by its stored hash) is this one.
    pub fn is(&self, session_hash: &str) -> bool {
        constant_time_eq(self.hash.as_bytes(), session_hash.as_bytes())
    }

    /// Ends every other session of this user (a lost laptop, a shared
    /// computer); this one stays. How many ended.
    pub fn end_others(&self, store: &dyn Storage) -> Result<u64, SessionError> {
        Ok(store.end_other_sessions(self.user_id, &self.hash)?)
    }
}

/// Starts a session for `user_id` and sets its cookie on `response`. A
/// session the browser already held ends, so a cookie planted before the
/// sign-in is worth nothing after it. The session records `identity` as
/// authenticated now (the one the sign-in proved).
pub fn begin(
    store: &dyn Storage,
    headers: &HeaderMap,
    user_id: i64,
    identity: &str,
    now: i64,
    response: &mut Response,
) -> Result<(), SessionError> {
    let token = random_token(32)?;
    let csrf = random_token(32)?;
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        store.delete_session(&token_hash(old))?;
    }
    store.put_session(&token_hash(&token), user_id, &csrf, now + SESSION_TTL)?;
    store.note_login_identity(&token_hash(&token), identity, now)?;
    set_cookie(
        response,
        &format!(
            "{SESSION_COOKIE}={token}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={SESSION_TTL}"
        ),
    );
    Ok(())
}

/// Tells the browser to drop its session cookie.
pub fn clear(response: &mut Response) {
    set_cookie(
        response,
        &format!("{SESSION_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    );
}

/// The sign-in form's CSRF pair: a cookie `ISSUED.NONCE.TAG` tagged with
/// the hub's key, and a form field that is a second tag over that cookie.
/// Only the hub can make either, so a cookie and field planted by another
/// service on this host never match.
#[derive(Debug)]
pub struct LoginCsrf {
    cookie: String,
    field: String,
}

impl LoginCsrf {
    /// The pair for a sign-in form shown now. A recent cookie of the hub's
    /// that the browser already holds is kept, so two open sign-in tabs
    /// both work.
    pub fn issue(key: &MacKey, headers: &HeaderMap, now: i64) -> Result<Self, SessionError> {
        let held = cookie(headers, LOGIN_CSRF_COOKIE)
            .filter(|c| login_cookie_age(key, c, now).is_some_and(|age| age < LOGIN_FORM_TTL / 2));
        let cookie = match held {
            Some(held) => held.to_string(),
            None => {
                let body = format!("{now}.{}", random_token(24)?);
                let tag = key.tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
                format!("{body}.{tag}")
            }
        };
        let field = login_field(key, &cookie);
        Ok(Self { cookie, field })
    }

    /// The value of the form's `csrf` field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Sets the cookie half on the response that shows the form.
    pub fn set_cookie(&self, response: &mut Response) {
        set_cookie(
            response,
            &format!(
                "{LOGIN_CSRF_COOKIE}={}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={LOGIN_FORM_TTL}",
                self.cookie
            ),
        );
    }

    /// Whether a posted sign-in form carries the field that goes with a
    /// live cookie of the hub's.
    pub fn check(
        key: &MacKey,
        headers: &HeaderMap,
        given: Option<&str>,
        now: i64,
    ) -> Result<(), CsrfError> {
        let issued = cookie(headers, LOGIN_CSRF_COOKIE)
            .filter(|c| login_cookie_age(key, c, now).is_some_and(|age| age < LOGIN_FORM_TTL));
        if issued.is_some_and(|c| tokens_match(given, &login_field(key, c))) {
            Ok(())
        } else {
            Err(CsrfError::BadToken)
        }
    }

    /// Tells the browser to drop the cookie once it has signed in.
    pub fn clear(response: &mut Response) {
        set_cookie(
            response,
            &format!("{LOGIN_CSRF_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        );
    }
}

/// How old a sign-in cookie is, if this hub made it (and not in the future).
fn login_cookie_age(key: &MacKey, cookie: &str, now: i64) -> Option<i64> {
    let (body, tag) = cookie.rsplit_once('.')?;
    let expected = key.tag_text(LOGIN_COOKIE_PURPOSE, body.as_bytes());
    if !constant_time_eq(tag.as_bytes(), expected.as_bytes()) {
        return None;
    }
    let issued: i64 = body.split_once('.')?.0.parse().ok()?;
    Some(now - issued).filter(|age| *age >= -60)
}

pub(crate) fn login_field(key: &MacKey, cookie: &str) -> String {
    key.tag_text(LOGIN_FIELD_PURPOSE, cookie.as_bytes())
}

/// Whether a form posted with `headers` came from the hub's own pages
/// (`hub_url` is its configured URL); call it before anything an unsafe
/// method asks for is done.
///
/// Browsers say where a request comes from (Fetch Metadata): a form posted
/// from another site, or from a sibling on this site (another port or
/// subdomain, which could also have planted cookies), is refused whatever
/// tokens it carries. A browser too old for Fetch Metadata still sends
/// `Origin` with a POST, which must then be the hub's. Clients that say
/// neither are not browsers acting for someone else, and are judged by
/// their tokens.
pub fn check_origin(headers: &HeaderMap, hub_url: &str) -> Result<(), CsrfError> {
    let allowed = if let Some(site) = headers.get("sec-fetch-site") {
        matches!(site.as_bytes(), b"same-origin" | b"none")
    } else if let Some(origin) = headers.get(header::ORIGIN) {
        origin
            .to_str()
            .is_ok_and(|origin| same_origin(origin, hub_url))
    } else {
        true
    };
    if allowed {
        Ok(())
    } else {
        Err(CsrfError::CrossOrigin)
    }
}

/// Whether two `https://` URLs have the same origin: hosts compared
/// without case, an absent port taken as 443. Paths do not matter.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (https_host_port(a), https_host_port(b)) {
        (Ok((host, port)), Ok((other_host, other_port))) => {
            host.eq_ignore_ascii_case(&other_host) && port == other_port
        }
        _ => false,
    }
}

fn tokens_match(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE)
}

pub(crate) fn set_cookie(response: &mut Response, cookie: &str) {
    match HeaderValue::try_from(cookie) {
        Ok(value) => {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Err(e) => tracing::error!(error = %e, "unusable cookie"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountStore;
    use axum::response::IntoResponse;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn set_cookies(response: &Response) -> Vec<String> {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    const HUB: &str = "https://Hub.Example:8443";

    fn rules() -> IdentityRules {
        IdentityRules {
            local_domain: "hub".into(),
            max_age_secs: 3600,
            link_page: "https://hub/account".into(),
        }
    }

    #[test]
    fn only_forms_from_the_hubs_own_origin_pass() {
        for (given, expected) in [
            (vec![], Ok(())),
            (vec![("sec-fetch-site", "same-origin")], Ok(())),
            (vec![("sec-fetch-site", "none")], Ok(())),
            (
                vec![("sec-fetch-site", "same-site")],
                Err(CsrfError::CrossOrigin),
            ),
            (
                vec![("sec-fetch-site", "cross-site")],
                Err(CsrfError::CrossOrigin),
            ),
            // Fetch Metadata decides when a browser sends it.
            (
                vec![
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://hub.example:8443"),
                ],
                Err(CsrfError::CrossOrigin),
            ),
            (vec![("origin", "https://hub.example:8443")], Ok(())),
            (vec![("origin", "https://HUB.example:8443")], Ok(())),
            (
                vec![("origin", "https://hub.example")],
                Err(CsrfError::CrossOrigin),
            ),
            (
                vec![("origin", "https://evil.example:8443")],
                Err(CsrfError::CrossOrigin),
            ),
            (
                vec![("origin", "http://hub.example:8443")],
                Err(CsrfError::CrossOrigin),
            ),
            (vec![("origin", "null")], Err(CsrfError::CrossOrigin)),
        ] {
            assert_eq!(check_origin(&headers(&given), HUB), expected, "{given:?}");
        }
        assert!(same_origin("https://h:443/x", "https://H/"));
    }

    #[test]
    fn a_session_is_found_by_its_cookie_checks_its_token_and_ends() {
        let store = crate::store::SqliteStore::in_memory().unwrap();
        let user = store.add_user("alice", "hash", 0).unwrap();
        let mut response = ().into_response();
        begin(
            &store,
            &HeaderMap::new(),
            user,
            "alice@hub",
            100,
            &mut response,
        )
        .unwrap();
        let set = set_cookies(&response);
        assert_eq!(set.len(), 1);
        assert!(set[0].starts_with("__Host-ferry_session="), "{set:?}");
        assert!(set[0].contains("; Secure; HttpOnly; SameSite=Lax; Path=/"));
        let jar = set[0].split(';').next().unwrap().to_string();
        let request = headers(&[("cookie", &format!("other=1; {jar}"))]);

        let session = SessionUser::from_request(&store, &rules(), &request, 100)
            .unwrap()
            .unwrap();
        assert_eq!(session.user_name, "alice");
        assert_eq!(session.user_id, user);
        assert_eq!(session.principal().sign_in.fresh, ["alice@hub"]);
        let token = session.csrf_token().to_string();
        assert_eq!(session.check_csrf(Some(&token)), Ok(()));
        assert_eq!(session.check_csrf(None), Err(CsrfError::BadToken));
        assert_eq!(session.check_csrf(Some("x")), Err(CsrfError::BadToken));
        assert!(
            SessionUser::from_request(&store, &rules(), &request, 100 + SESSION_TTL + 1)
                .unwrap()
                .is_none(),
            "expired"
        );

        // Signing in again ends the session the browser held.
        let mut again = ().into_response();
        begin(&store, &request, user, "alice@hub", 200, &mut again).unwrap();
        assert!(
            SessionUser::from_request(&store, &rules(), &request, 200)
                .unwrap()
                .is_none()
        );
        let jar = set_cookies(&again)[0]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let request = headers(&[("cookie", &jar)]);
        let session = SessionUser::from_request(&store, &rules(), &request, 200)
            .unwrap()
            .unwrap();
        session.end(&store).unwrap();
        assert!(
            SessionUser::from_request(&store, &rules(), &request, 200)
                .unwrap()
                .is_none()
        );
        let mut cleared = ().into_response();
        clear(&mut cleared);
        assert!(set_cookies(&cleared)[0].contains("Max-Age=0"));
    }

    #[test]
    fn the_login_pair_is_the_hubs_and_a_held_cookie_is_kept() {
        let key = MacKey::generate().unwrap();
        let csrf = LoginCsrf::issue(&key, &HeaderMap::new(), 1000).unwrap();
        let mut response = ().into_response();
        csrf.set_cookie(&mut response);
        let jar = set_cookies(&response)[0]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let request = headers(&[("cookie", &jar)]);
        let field = csrf.field().to_string();
        assert_eq!(LoginCsrf::check(&key, &request, Some(&field), 1000), Ok(()));
        assert_eq!(
            LoginCsrf::check(&key, &request, Some(&field), 1000 + LOGIN_FORM_TTL),
            Err(CsrfError::BadToken),
            "expired"
        );
        assert_eq!(
            LoginCsrf::check(&key, &HeaderMap::new(), Some(&field), 1000),
            Err(CsrfError::BadToken),
            "no cookie"
        );
        let other = MacKey::generate().unwrap();
        assert_eq!(
            LoginCsrf::check(&other, &request, Some(&field), 1000),
            Err(CsrfError::BadToken),
            "another hub's"
        );
        // A second tab shown soon after keeps the browser's cookie, so the
        // first tab's field still matches.
        let second = LoginCsrf::issue(&key, &request, 1000 + LOGIN_FORM_TTL / 2 - 1).unwrap();
        assert_eq!(second.field(), field);
        let later = LoginCsrf::issue(&key, &request, 1000 + LOGIN_FORM_TTL / 2).unwrap();
        assert_ne!(later.field(), field);
    }
}
