//! A very small browser for the hub's pages and the identity providers'
//! (driven over HTTP, as one would be): follows redirects across origins,
//! submits a page's first POST form with its hidden fields plus what the
//! test types, and keeps cookies by name, as one host's jar holds them
//! (the hub and a loopback provider share 127.0.0.1; their cookies'
//! names differ).

use crate::{Hub, html_unescape};
use std::collections::HashMap;

#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

/// `(action, hidden fields)` of the first POST form on a page.
pub fn form(page: &str) -> (String, Vec<(String, String)>) {
    let start = page
        .match_indices("<form")
        .map(|(i, _)| i)
        .find(|&i| {
            let tag = &page[i..i + page[i..].find('>').unwrap()];
            tag.contains("method=\"post\"")
        })
        .unwrap_or_else(|| panic!("no POST form on the page: {page}"));
    let form = &page[start
        ..page[start..]
            .find("</form>")
            .map_or(page.len(), |e| start + e)];
    let tag = &form[..form.find('>').unwrap()];
    let action = attr(tag, "action").unwrap();
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap()];
        if tag.contains("type=\"hidden\"") {
            fields.push((
                attr(tag, "name").unwrap(),
                attr(tag, "value").unwrap_or_default(),
            ));
        }
    }
    (action, fields)
}

/// The value of attribute `name` in an HTML tag, unescaped.
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    tag.find(&key).map(|i| {
        let from = i + key.len();
        html_unescape(&tag[from..from + tag[from..].find('"').unwrap()])
    })
}

/// The `href` of the first link whose text is `text`.
pub fn link(page: &str, text: &str) -> Option<String> {
    page.split("<a ").skip(1).find_map(|a| {
        let close = a.find('>')?;
        let inner = &a[close + 1..a.find("</a>")?];
        (inner.trim() == text).then(|| attr(&format!(" {}", &a[..close]), "href"))?
    })
}

/// The text of the element with `id="auth-code"`: the one-time code.
pub fn auth_code(page: &str) -> String {
    let start = page
        .find("id=\"auth-code\">")
        .expect("no auth-code element")
        + "id=\"auth-code\">".len();
    page[start..start + page[start..].find('<').unwrap()].to_string()
}

impl Browser {
    /// A browser that was given the hub's CA, starting at its URL.
    pub fn new(hub: &Hub) -> Self {
        Browser {
            http: hub.web_client(),
            base: hub.url.clone(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            let lower = text.to_ascii_lowercase();
            let gone = v.trim().is_empty()
                || lower.contains("max-age=0")
                || lower.contains("expires=thu, 01 jan 1970");
            if gone {
                self.cookies.remove(k.trim());
            } else {
                self.cookies
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }

    /// `url` made absolute against the origin of `current`.
    fn absolute(&self, current: &str, url: &str) -> String {
        if url.starts_with("https://") || url.starts_with("http://") {
            return url.to_string();
        }
        let origin_end = current
            .find("://")
            .map(|i| i + 3 + current[i + 3..].find('/').unwrap_or(current.len() - i - 3))
            .unwrap_or(0);
        format!("{}{url}", &current[..origin_end])
    }

    /// GET, following redirects; (final URL, status, page).
    pub async fn visit(&mut self, url: &str) -> (String, reqwest::StatusCode, String) {
        let mut url = self.absolute(&self.base.clone(), url);
        for _ in 0..20 {
            let r = self
                .http
                .get(&url)
                .header("cookie", self.cookie_header())
                .send()
                .await
                .unwrap();
            self.absorb(&r);
            if r.status().is_redirection() {
                url = self.absolute(&url, r.headers()["location"].to_str().unwrap());
                continue;
            }
            let status = r.status();
            return (url, status, r.text().await.unwrap());
        }
        panic!("too many redirects");
    }

    /// GET, following redirects; the final page, which must be a success.
    pub async fn get(&mut self, url: &str) -> String {
        let (url, status, page) = self.visit(url).await;
        assert!(status.is_success(), "GET {url}: {status}: {page}");
        page
    }

    /// Submits the first POST form of `page` (found at `at`) with extra
    /// fields; follows the answer: (final URL, status, page).
    pub async fn submit_at(
        &mut self,
        at: &str,
        page: &str,
        extra: &[(&str, &str)],
    ) -> (String, reqwest::StatusCode, String) {
        let (action, mut fields) = form(page);
        fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let target = self.absolute(at, &action);
        let r = self
            .http
            .post(&target)
            .header("cookie", self.cookie_header())
            .form(&fields)
            .send()
            .await
            .unwrap();
        self.absorb(&r);
        if r.status().is_redirection() {
            let next = self.absolute(&target, r.headers()["location"].to_str().unwrap());
            return self.visit(&next).await;
        }
        let status = r.status();
        (target, status, r.text().await.unwrap())
    }

    /// What the hub's web app does from a page: a JSON POST to the hub's
    /// API with the session cookie and the page's CSRF token (its forms'
    /// hidden `csrf` field). (status, body)
    pub async fn api_post(
        &mut self,
        page: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let csrf = form(page)
            .1
            .into_iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v)
            .expect("no csrf field on the page");
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("x-csrf-token", csrf)
            .header("origin", &self.base)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or_default())
    }

    /// Submits a hub page's first POST form with extra fields; the page
    /// it ends on.
    pub async fn submit(&mut self, page: &str, extra: &[(&str, &str)]) -> String {
        let base = self.base.clone();
        self.submit_at(&base, page, extra).await.2
    }
}
