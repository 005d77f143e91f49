//! The hub's HTML pages: landing, login, consent, the copy-the-code page and
//! errors. Plain functions from values to markup, written as maud templates:
//! maud escapes every value spliced into text or an attribute, so no page
//! can forget to.

use maud::{Markup, PreEscaped, html};

/// Code elements wrap anywhere: a CA fingerprint (95 characters, no
/// spaces) or a redirect URL would otherwise run out of the card.
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:28rem;margin:4rem auto;background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:2rem 2.25rem}\
h1{font-size:1.35rem;margin:0 0 1rem}p{line-height:1.45}\
label{display:block;margin:.9rem 0 .3rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #b9c0cc;border-radius:4px;font-size:1rem}\
button{margin-top:1.2rem;padding:.55rem 1.2rem;border-radius:4px;border:1px solid #2f5bd3;background:#2f5bd3;color:#fff;font-size:1rem;cursor:pointer}\
button.secondary{background:#fff;color:#2f5bd3;margin-left:.5rem}\
a.button{display:inline-block;margin-top:.5rem;padding:.55rem 1.2rem;border-radius:4px;border:1px solid #2f5bd3;color:#2f5bd3;text-decoration:none}\
.error{background:#fdecec;border:1px solid #e5a4a4;color:#8a1f1f;padding:.6rem .8rem;border-radius:4px}\
.code{display:block;font-size:1.25rem;padding:.8rem;background:#eef1f6;border-radius:4px;word-break:break-all;user-select:all}\
ul{padding-left:1.2rem}ul.providers{list-style:none;padding:0}small{color:#5b6473}\
code{font-family:ui-monospace,monospace;overflow-wrap:anywhere}";

/// A whole page around `body`.
fn layout(title: &str, body: Markup) -> String {
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " - ferry hub" }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
        "\n"
    }
    .into_string()
}

fn error_box(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p class="error" role="alert" { (error) }
        }
    }
}

fn hidden_fields(fields: &[(String, String)]) -> Markup {
    html! {
        @for (name, value) in fields {
            input type="hidden" name=(name) value=(value);
        }
    }
}

/// `/`: who is signed in, where the CA certificate is.
pub fn landing(user: Option<&str>, csrf: Option<&str>, ca_fingerprint: &str) -> String {
    layout(
        "ferry hub",
        html! {
            h1 { "ferry hub" }
            p {
                "Research data transfer between your endpoints. Set up an endpoint with "
                code { "ferry -setup" }
                "; it sends you here to sign in."
            }
            @if let (Some(user), Some(csrf)) = (user, csrf) {
                p { "Signed in as " strong { (user) } "." }
                form method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign out" }
                }
            } @else {
                p { a href="/login" { "Sign in" } }
            }
            p {
                small {
                    "Hub CA certificate: " a href="/ca.crt" { "ca.crt" } ", SHA-256 "
                    code { (ca_fingerprint) }
                }
            }
        },
    )
}

/// The login form. `carry` are hidden fields that take the original request
/// through the POST.
/// `providers` are the upstream identity providers (name, display name),
/// offered beside the password form.
pub fn login(
    csrf: &str,
    user: &str,
    carry: &[(String, String)],
    providers: &[(String, String)],
    error: Option<&str>,
) -> String {
    let carried: Vec<(&str, &str)> = carry
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let query = crate::oauth::encode_form(&carried);
    layout(
        "Sign in",
        html! {
            h1 { "Sign in to ferry hub" }
            (error_box(error))
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                (hidden_fields(carry))
                label for="username" { "User name" }
                input type="text" id="username" name="username" value=(user)
                    autocomplete="username" autocapitalize="none" required autofocus;
                label for="password" { "Password" }
                input type="password" id="password" name="password"
                    autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            @if !providers.is_empty() {
                section aria-label="Sign in with" {
                    p { "Or sign in with:" }
                    ul class="providers" {
                        @for (name, display_name) in providers {
                            li {
                                a class="button" href={ "/auth/oidc/" (name) "/start" @if !query.is_empty() { "?" (query) } } {
                                    (display_name)
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// "CLIENT wants to: ..." with Approve and Deny, and where the code goes:
/// `destination` is the origin the browser is sent to with it, and
/// `local_program` says it is a loopback address on the user's computer.
pub fn consent(
    client_name: &str,
    user: &str,
    wants: &[&str],
    destination: &str,
    whose: &str,
    csrf: &str,
    carry: &[(String, String)],
) -> String {
    layout(
        "Approve access",
        html! {
            h1 { "Approve access" }
            p { strong { (client_name) } " wants to:" }
            ul {
                @for want in wants {
                    li { (want) }
                }
            }
            p { "as " strong { (user) } "." }
            p {
                "If you approve, a one-time code goes to "
                strong { code { (destination) } }
                " (" (whose) "). Approve only if you started this sign-in yourself."
            }
            form method="post" action="/authorize" {
                input type="hidden" name="csrf" value=(csrf);
                (hidden_fields(carry))
                button type="submit" name="decision" value="approve" { "Approve" }
                button type="submit" name="decision" value="deny" class="secondary" { "Deny" }
            }
            p { small { "Not " (user) "? " a href="/" { "Sign out first" } "." } }
        },
    )
}

/// The copy-the-code page: scripts read the element with `id="auth-code"`.
pub fn auth_code(code: Option<&str>, error: Option<&str>) -> String {
    let body = match (code, error) {
        (Some(code), None) => html! {
            h1 { "Your one-time code" }
            p { "Copy this code and paste it into the terminal where ferry asks for it:" }
            code class="code" id="auth-code" { (code) }
            p { small { "It works once, within 5 minutes. You can close this page afterwards." } }
        },
        (_, Some(error)) => html! {
            h1 { "Sign-in did not complete" }
            (error_box(Some(error)))
            p { "Run the command in your terminal again to get a new link." }
        },
        (None, None) => html! {
            h1 { "No code here" }
            p {
                "This page shows the code after you approve a sign-in. "
                "Start from the link your terminal printed."
            }
        },
    };
    layout("Sign-in code", body)
}

/// An error we cannot send back to the client, so we show it.
pub fn error(title: &str, message: &str) -> String {
    layout(
        title,
        html! {
            h1 { (title) }
            (error_box(Some(message)))
        },
    )
}

/// An error page of the web app: the same, with the way back to it.
pub fn app_error(title: &str, message: &str) -> String {
    layout(
        title,
        html! {
            h1 { (title) }
            (error_box(Some(message)))
            p { a href="/" { "Back to ferry" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each text a user or a link controls (user name, client name,
    /// redirect URI, error text, carried parameters, the code), in each page
    /// that shows one, comes out as text: in element content and in
    /// double-quoted attributes alike.
    #[test]
    fn user_controlled_text_is_escaped_in_every_page() {
        let evil = "<script>\"'&";
        let escaped = "&lt;script&gt;&quot;'&amp;";
        let carry = vec![
            ("redirect_uri".to_string(), evil.to_string()),
            ("state".to_string(), evil.to_string()),
        ];
        for (what, page) in [
            ("login: user name", login("t", evil, &[], &[], None)),
            ("login: error", login("t", "", &[], &[], Some(evil))),
            (
                "login: carried redirect URI",
                login("t", "", &carry, &[], None),
            ),
            (
                "consent: client name",
                consent(evil, "alice", &[], "https://h", "a page", "t", &[]),
            ),
            (
                "consent: user name",
                consent("c", evil, &[], "https://h", "a page", "t", &[]),
            ),
            (
                "consent: redirect origin",
                consent("c", "alice", &[], evil, "a program", "t", &[]),
            ),
            (
                "consent: carried redirect URI",
                consent("c", "alice", &[], "https://h", "a page", "t", &carry),
            ),
            ("code page: code", auth_code(Some(evil), None)),
            ("code page: error", auth_code(None, Some(evil))),
            ("error: title and text", error(evil, evil)),
            (
                "landing: user name",
                landing(Some(evil), Some("t"), "ab:cd"),
            ),
        ] {
            assert!(!page.contains("<script>"), "{what}: {page}");
            assert!(page.contains(escaped), "{what}: {page}");
        }
    }

    #[test]
    fn pages_escape_every_value() {
        let evil = "\"><script>x</script>";
        let carry = vec![(evil.to_string(), evil.to_string())];
        for page in [
            login(
                evil,
                evil,
                &carry,
                &[("campus".to_string(), evil.to_string())],
                Some(evil),
            ),
            consent(evil, evil, &[evil], evil, evil, evil, &carry),
            auth_code(Some(evil), None),
            auth_code(None, Some(evil)),
            error(evil, evil),
            landing(Some(evil), Some(evil), evil),
        ] {
            assert!(!page.contains("<script>"), "{page}");
            assert!(page.contains("&lt;script&gt;"), "{page}");
        }
    }

    #[test]
    fn the_consent_page_says_where_the_code_goes() {
        let page = consent(
            "ferry-cli",
            "alice",
            &["register endpoints"],
            "http://127.0.0.1:4711",
            "a program on this computer",
            "t",
            &[],
        );
        assert!(
            page.contains("goes to <strong><code>http://127.0.0.1:4711</code></strong> (a program on this computer)"),
            "{page}"
        );
        let page = consent(
            "c",
            "alice",
            &[],
            "https://hub.example:8443",
            "a page that shows it for you to copy",
            "t",
            &[],
        );
        assert!(page.contains("https://hub.example:8443"), "{page}");
        assert!(!page.contains("this computer"), "{page}");
    }

    #[test]
    fn the_code_page_marks_the_code_for_scripts() {
        let page = auth_code(Some("abc-_123"), None);
        assert!(page.contains("id=\"auth-code\">abc-_123</code>"), "{page}");
        assert!(!auth_code(None, Some("access_denied")).contains("auth-code\""));
    }
}
