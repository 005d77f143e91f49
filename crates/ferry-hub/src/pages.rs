//! The hub's HTML pages: landing, login, consent, the copy-the-code page and
//! errors. Plain functions from values to markup; every value that reaches
//! the markup goes through [`escape`], so no caller can forget it.

use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Code elements wrap anywhere: a CA fingerprint (95 characters, no
/// spaces) or a redirect URL would otherwise run out of the card.
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:28rem;margin:4rem auto;background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:2rem 2.25rem}\
h1{font-size:1.35rem;margin:0 0 1rem}p{line-height:1.45}\
label{display:block;margin:.9rem 0 .3rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #b9c0cc;border-radius:4px;font-size:1rem}\
button{margin-top:1.2rem;padding:.55rem 1.2rem;border-radius:4px;border:1px solid #2f5bd3;background:#2f5bd3;color:#fff;font-size:1rem;cursor:pointer}\
button.secondary{background:#fff;color:#2f5bd3;margin-left:.5rem}\
.error{background:#fdecec;border:1px solid #e5a4a4;color:#8a1f1f;padding:.6rem .8rem;border-radius:4px}\
.code{display:block;font-size:1.25rem;padding:.8rem;background:#eef1f6;border-radius:4px;word-break:break-all;user-select:all}\
ul{padding-left:1.2rem}small{color:#5b6473}\
code{font-family:ui-monospace,monospace;overflow-wrap:anywhere}";

/// A whole page around `body` (already markup).
fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{} - ferry hub</title><style>{STYLE}</style></head>\
<body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

fn error_box(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default()
}

fn hidden_fields(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    out
}

/// `/`: who is signed in, where the CA certificate is.
pub fn landing(user: Option<&str>, csrf: Option<&str>, ca_fingerprint: &str) -> String {
    let account = match (user, csrf) {
        (Some(user), Some(csrf)) => format!(
            "<p>Signed in as <strong>{}</strong>.</p>\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Sign out</button></form>",
            escape(user),
            escape(csrf)
        ),
        _ => "<p><a href=\"/login\">Sign in</a></p>".to_string(),
    };
    layout(
        "ferry hub",
        &format!(
            "<h1>ferry hub</h1><p>Research data transfer between your endpoints. \
Set up an endpoint with <code>ferry -setup</code>; it sends you here to sign in.</p>{account}\
<p><small>Hub CA certificate: <a href=\"/ca.crt\">ca.crt</a>, SHA-256 <code>{}</code></small></p>",
            escape(ca_fingerprint)
        ),
    )
}

/// The login form. `carry` are hidden fields that take the original request
/// through the POST.
pub fn login(csrf: &str, user: &str, carry: &[(String, String)], error: Option<&str>) -> String {
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in to ferry hub</h1>{}\
<form method=\"post\" action=\"/login\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
<label for=\"username\">User name</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" required autofocus>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
            error_box(error),
            escape(csrf),
            hidden_fields(carry),
            escape(user)
        ),
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
    local_program: bool,
    csrf: &str,
    carry: &[(String, String)],
) -> String {
    let items: String = wants
        .iter()
        .map(|w| format!("<li>{}</li>", escape(w)))
        .collect();
    let whose = if local_program {
        "a program on this computer"
    } else {
        "a page that shows it for you to copy"
    };
    layout(
        "Approve access",
        &format!(
            "<h1>Approve access</h1>\
<p><strong>{}</strong> wants to:</p><ul>{items}</ul><p>as <strong>{}</strong>.</p>\
<p>If you approve, a one-time code goes to <strong><code>{}</code></strong> ({whose}). \
Approve only if you started this sign-in yourself.</p>\
<form method=\"post\" action=\"/authorize\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>\
<p><small>Not {}? <a href=\"/\">Sign out first</a>.</small></p>",
            escape(client_name),
            escape(user),
            escape(destination),
            escape(csrf),
            hidden_fields(carry),
            escape(user)
        ),
    )
}

/// The copy-the-code page: scripts read the element with `id="auth-code"`.
pub fn auth_code(code: Option<&str>, error: Option<&str>) -> String {
    let body = match (code, error) {
        (Some(code), None) => format!(
            "<h1>Your one-time code</h1>\
<p>Copy this code and paste it into the terminal where ferry asks for it:</p>\
<code class=\"code\" id=\"auth-code\">{}</code>\
<p><small>It works once, within 5 minutes. You can close this page afterwards.</small></p>",
            escape(code)
        ),
        (_, Some(error)) => format!(
            "<h1>Sign-in did not complete</h1>{}<p>Run the command in your terminal again to get a new link.</p>",
            error_box(Some(error))
        ),
        (None, None) => {
            "<h1>No code here</h1><p>This page shows the code after you approve a sign-in. \
Start from the link your terminal printed.</p>"
                .to_string()
        }
    };
    layout("Sign-in code", &body)
}

/// An error we cannot send back to the client, so we show it.
pub fn error(title: &str, message: &str) -> String {
    layout(
        title,
        &format!("<h1>{}</h1>{}", escape(title), error_box(Some(message))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_attribute_breaks() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ü"), "plain ü");
    }

    #[test]
    fn pages_escape_every_value() {
        let evil = "\"><script>x</script>";
        let carry = vec![(evil.to_string(), evil.to_string())];
        for page in [
            login(evil, evil, &carry, Some(evil)),
            consent(evil, evil, &[evil], evil, true, evil, &carry),
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
            true,
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
            false,
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
