//! Notifications: an e-mail to a task's owner when it ends or waits
//! (`ferry transfer --notify`), over the relay `[smtp]` in `hub.toml`
//! names; and a signed POST to each of the owner's webhooks.
//!
//! The scheduler hands news over with [`Notifier::tell`], which never
//! waits: a bounded queue in memory feeds one tokio task that claims the
//! news in the store (so the same news is never told twice, a restart
//! included), builds the messages and delivers each in a task of its own,
//! retried with capped backoff. A relay or receiver that is down or slow
//! delays only its own deliveries; when the queue is full, news is dropped
//! with a warning rather than stalling the scheduler. What was queued but
//! not delivered when the hub stops is lost: news is told at most once.
//!
//! A webhook's POST carries `X-Ferry-Timestamp: T` (Unix seconds) and
//! `X-Ferry-Signature: sha256=HEX`, the HMAC-SHA256 under the webhook's
//! secret of `T`, a `.`, then the body's bytes: a receiver recomputes it,
//! compares in constant time, and refuses a timestamp far from its clock,
//! so a captured request cannot be replayed later.

use crate::authz::{Action, Refusal, Resource, authorize};
use crate::grants::Principal;
use crate::server::Hub;
use crate::state::{HubDir, SmtpConfig};
use crate::store::{Storage, StoreError, TaskEventRow, TaskRow, WebhookRow};
use ferry_proto::backoff::Backoff;
use ferry_proto::human;
use ferry_proto::notify::{NotifyEvent, NotifyEvents};
use ferry_proto::task::TaskStatus;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// News waiting for the notifier, at most.
pub const QUEUE: usize = 1024;
/// Deliveries under way at once.
pub const IN_FLIGHT: usize = 16;
/// Tries of one delivery, the first included.
pub const TRIES: u32 = 6;
/// The first and the longest wait between tries.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
pub const RETRY_CAP: Duration = Duration::from_secs(60);
/// Errors a message lists, the first ones.
pub const FIRST_ERRORS: usize = 5;
/// Longest line of outside text (a label, an error) a message carries.
pub const MAX_TEXT: usize = 400;
/// Longest webhook URL.
pub const MAX_WEBHOOK_URL: usize = 2048;
/// Webhooks one user may have.
pub const MAX_WEBHOOKS: usize = 16;
/// How long a webhook receiver or the relay has for one delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest e-mail address.
pub const MAX_ADDRESS: usize = 254;

/// What happened to a task that its owner may want to hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// It ended SUCCEEDED or FAILED.
    Ended(TaskStatus),
    /// It waits, moving nothing; why.
    Inactive(String),
}

impl News {
    fn event(&self) -> Option<NotifyEvent> {
        match self {
            News::Ended(TaskStatus::Succeeded) => Some(NotifyEvent::Succeeded),
            News::Ended(TaskStatus::Failed) => Some(NotifyEvent::Failed),
            News::Ended(_) => None,
            News::Inactive(_) => Some(NotifyEvent::Inactive),
        }
    }

    /// How the store remembers it was told.
    fn notice(&self) -> &'static str {
        match self {
            News::Ended(status) => status.as_str(),
            News::Inactive(_) => "INACTIVE",
        }
    }
}

#[derive(Debug)]
enum Job {
    News {
        task_id: String,
        news: News,
    },
    /// The task started an attempt: a later wait is news again.
    Moving {
        task_id: String,
    },
}

/// The scheduler's end of the queue.
#[derive(Debug)]
pub struct Notifier {
    tx: mpsc::Sender<Job>,
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Queues news of a task; never waits.
    pub fn tell(&self, task_id: &str, news: News) {
        self.send(Job::News {
            task_id: task_id.to_string(),
            news,
        });
    }

    /// Queues that a task moves again; never waits.
    pub fn moving(&self, task_id: &str) {
        self.send(Job::Moving {
            task_id: task_id.to_string(),
        });
    }

    fn send(&self, job: Job) {
        if let Err(e) = self.tx.try_send(job) {
            tracing::warn!(error = %e, "notifications are backed up; news of a task is dropped");
        }
    }
}

/// Starts the notifier on the current runtime; fails when `[smtp]` cannot
/// be used (its password file unreadable).
pub fn spawn(hub: Arc<Hub>, dir: &HubDir) -> anyhow::Result<()> {
    let mailer = match &hub.config.smtp {
        Some(smtp) => Some(Mailer::new(smtp, dir, &hub.config.url)?),
        None => None,
    };
    let posts = Posts::new(hub.config.webhook_private_addresses)?;
    let rx = hub
        .notifier
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some(rx) = rx else {
        anyhow::bail!("the notifier was started twice");
    };
    tokio::spawn(run(hub, rx, mailer.map(Arc::new), posts));
    Ok(())
}

async fn run(
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<Job>,
    mailer: Option<Arc<Mailer>>,
    posts: Posts,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(job) = rx.recv().await {
        let (task_id, news) = match job {
            Job::Moving { task_id } => {
                if let Err(e) = hub.store.rearm_task_notice(&task_id) {
                    tracing::warn!(task = %task_id, error = %e, "cannot re-arm the task's notifications");
                }
                continue;
            }
            Job::News { task_id, news } => (task_id, news),
        };
        let deliveries = match prepare(&hub, &task_id, &news, mailer.is_some()) {
            Ok(deliveries) => deliveries,
            Err(e) => {
                tracing::warn!(task = %task_id, error = %e, "cannot prepare the task's notifications");
                continue;
            }
        };
        for delivery in deliveries {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (mailer, posts) = (mailer.clone(), posts.clone());
            tokio::spawn(async move {
                deliver(delivery, mailer.as_deref(), &posts).await;
                drop(slot);
            });
        }
    }
}

/// One message to one recipient.
#[derive(Debug)]
enum Delivery {
    Mail {
        task_id: String,
        to: String,
        mail: Mail,
    },
    Post {
        task_id: String,
        webhook_id: String,
        url: String,
        secret: String,
        event: NotifyEvent,
        body: Vec<u8>,
        /// The same for every try, so a receiver can tell a retry.
        delivery_id: String,
    },
}

/// Claims the news and builds what goes to whom; nothing when it was told
/// already or nobody asked for it.
fn prepare(
    hub: &Hub,
    task_id: &str,
    news: &News,
    can_mail: bool,
) -> Result<Vec<Delivery>, StoreError> {
    let Some(event) = news.event() else {
        return Ok(Vec::new());
    };
    let Some(wanted) = hub.store.claim_task_notice(task_id, news.notice())? else {
        return Ok(Vec::new());
    };
    let Some(task) = hub.store.task(task_id)? else {
        return Ok(Vec::new());
    };
    let now = crate::grants::now();
    let errors = first_errors(
        &hub.store
            .task_events(task_id, crate::store::MAX_TASK_EVENTS as usize)?,
    );
    let mut out = Vec::new();
    if can_mail
        && wanted.contains(event)
        && let Some(to) = hub.store.user_email(task.owner_id)?
    {
        out.push(Delivery::Mail {
            task_id: task_id.to_string(),
            to,
            mail: mail(&hub.config.url, &task, news, &errors, now),
        });
    }
    let hooks: Vec<WebhookRow> = hub
        .store
        .webhooks_of(task.owner_id)?
        .into_iter()
        .filter(|w| w.events.contains(event))
        .collect();
    if !hooks.is_empty() {
        let body = webhook_body(&hub.config.url, &task, news, &errors, now);
        for hook in hooks {
            out.push(Delivery::Post {
                task_id: task_id.to_string(),
                webhook_id: hook.id,
                url: hook.url,
                secret: hook.secret,
                event,
                body: body.clone(),
                delivery_id: uuid::Uuid::new_v4().to_string(),
            });
        }
    }
    Ok(out)
}

/// Tries a delivery until it goes through or [`TRIES`] are spent.
async fn deliver(delivery: Delivery, mailer: Option<&Mailer>, posts: &Posts) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
    for attempt in 1..=TRIES {
        let result = match &delivery {
            Delivery::Mail { to, mail, .. } => match mailer {
                Some(mailer) => mailer.send(to, mail).await,
                None => return,
            },
            Delivery::Post {
                url,
                secret,
                event,
                body,
                delivery_id,
                ..
            } => post(posts, url, secret, *event, body, delivery_id).await,
        };
        let (task_id, to) = match &delivery {
            Delivery::Mail { task_id, to, .. } => (task_id, to.as_str()),
            Delivery::Post {
                task_id,
                webhook_id,
                ..
            } => (task_id, webhook_id.as_str()),
        };
        match result {
            Ok(()) => {
                tracing::info!(task = %task_id, to, "notification delivered");
                return;
            }
            Err(e) if attempt == TRIES => {
                tracing::warn!(task = %task_id, to, error = %e, "notification not delivered; giving up");
            }
            Err(e) => {
                let wait = backoff.on_failure(getrandom::u64().unwrap_or(0));
                tracing::info!(task = %task_id, to, error = %e, retry_in = ?wait, "notification not delivered; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

// --- messages: pure ---

/// An e-mail's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

/// The task's page in the hub's web app.
pub fn task_link(hub_url: &str, task_id: &str) -> String {
    format!("{}/activity/{task_id}", hub_url.trim_end_matches('/'))
}

/// Outside text fit for one line of a message: control characters (line
/// breaks included) become spaces, and it is cut at [`MAX_TEXT`] bytes.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX_TEXT {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// The task's first events that report something wrong, oldest first.
fn first_errors(events: &[TaskEventRow]) -> Vec<TaskEventRow> {
    events
        .iter()
        .filter(|e| crate::tasks::is_error(&e.code))
        .take(FIRST_ERRORS)
        .cloned()
        .collect()
}

/// How the task is named to its owner: its label, else its id.
fn task_name(task: &TaskRow) -> String {
    match task.label.as_deref().filter(|l| !l.is_empty()) {
        Some(label) => format!("\"{}\"", one_line(label)),
        None => task.id.clone(),
    }
}

/// Seconds from submission to the end, or to `now` for a task still ACTIVE.
fn duration(task: &TaskRow, now: i64) -> u64 {
    let end = task.completed.unwrap_or(now);
    u64::try_from(end.saturating_sub(task.created)).unwrap_or(0)
}

/// The e-mail for `news` of `task`.
pub fn mail(hub_url: &str, task: &TaskRow, news: &News, errors: &[TaskEventRow], now: i64) -> Mail {
    let name = task_name(task);
    let (subject, headline) = match news {
        News::Ended(status) => (
            format!("ferry: task {name} {status}"),
            format!("Your transfer task {name} ended: {status}."),
        ),
        News::Inactive(why) => (
            format!("ferry: task {name} is waiting"),
            format!(
                "Your transfer task {name} is waiting and moves no data: {}",
                one_line(why)
            ),
        ),
    };
    let c = task.totals();
    let mut body = format!(
        "{headline}\n\n\
         Task:      {id}\n\
         From:      {source}\n\
         To:        {destination}\n\
         Status:    {status}\n\
         Files:     {transferred} transferred, {skipped} skipped, {found} found\n\
         Bytes:     {bytes} ({raw} bytes) transferred\n\
         Faults:    {faults}\n\
         Duration:  {duration}\n",
        id = task.id,
        source = one_line(&task.source_name),
        destination = one_line(&task.destination_name),
        status = task.status,
        transferred = c.files_transferred,
        skipped = c.files_skipped,
        found = c.files,
        bytes = human::bytes(c.bytes_transferred),
        raw = c.bytes_transferred,
        faults = task.faults,
        duration = human::clock(duration(task, now)),
    );
    if let Some(error) = &task.fatal_error {
        body.push_str(&format!("Error:     {}\n", one_line(error)));
    }
    if !errors.is_empty() {
        body.push_str("\nFirst errors:\n");
        for e in errors {
            body.push_str(&format!(
                "  {}  {}  {}\n",
                human::utc_seconds(e.time),
                e.code,
                one_line(&e.description)
            ));
        }
    }
    body.push_str(&format!(
        "\nDetails: {}\n\n-- \nYou get this because the task was submitted with notifications on\n(ferry transfer --notify off turns them off).\n",
        task_link(hub_url, &task.id)
    ));
    Mail {
        subject: one_line(&subject),
        body,
    }
}

/// A webhook's JSON body for `news` of `task`.
pub fn webhook_body(
    hub_url: &str,
    task: &TaskRow,
    news: &News,
    errors: &[TaskEventRow],
    now: i64,
) -> Vec<u8> {
    let c = task.totals();
    let event = news.event().map_or("", NotifyEvent::as_str);
    let reason = match news {
        News::Inactive(why) => Some(one_line(why)),
        News::Ended(_) => task.fatal_error.as_deref().map(one_line),
    };
    let body = serde_json::json!({
        "event": event,
        "time": now,
        "task": {
            "id": task.id,
            "label": task.label,
            "status": task.status,
            "source_endpoint": task.source_id,
            "source_name": one_line(&task.source_name),
            "destination_endpoint": task.destination_id,
            "destination_name": one_line(&task.destination_name),
            "files": c.files,
            "files_transferred": c.files_transferred,
            "files_skipped": c.files_skipped,
            "bytes_transferred": c.bytes_transferred,
            "faults": task.faults,
            "created": task.created,
            "completed": task.completed,
            "duration_secs": duration(task, now),
            "url": task_link(hub_url, &task.id),
        },
        "reason": reason,
        "errors": errors.iter().map(|e| serde_json::json!({
            "time": e.time,
            "code": e.code,
            "description": one_line(&e.description),
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `sha256=HEX`: HMAC-SHA256 under `secret` of the timestamp, a `.`, and
/// the body.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; the error cannot happen.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "sha256={}",
        crate::secrets::hex(&mac.finalize().into_bytes())
    )
}

// --- e-mail ---

/// An e-mail address, checked: bounded, one address, no display name.
pub fn parse_address(text: &str) -> Result<lettre::Address, String> {
    if text.len() > MAX_ADDRESS {
        return Err(format!("longer than {MAX_ADDRESS} bytes"));
    }
    text.parse::<lettre::Address>()
        .map_err(|e| format!("not an e-mail address ({e})"))
}

struct Mailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    fn new(smtp: &SmtpConfig, dir: &HubDir, hub_url: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::extension::ClientId;
        type Transport = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
        let builder = if smtp.starttls {
            Transport::starttls_relay(&smtp.host)
                .with_context(|| format!("[smtp] host {:?}", smtp.host))?
        } else {
            Transport::builder_dangerous(&smtp.host)
        };
        // The relay sees the hub's own name in EHLO.
        let hello = crate::state::url_host_port(hub_url)
            .map(|(host, _)| host)
            .unwrap_or_else(|_| "localhost".into());
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(DELIVERY_TIMEOUT))
            .hello_name(ClientId::Domain(hello));
        if let (Some(user), Some(file)) = (&smtp.username, &smtp.password_file) {
            let path = dir.root().join(file);
            let password = std::fs::read_to_string(&path)
                .with_context(|| format!("[smtp] password_file: cannot read {}", path.display()))?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.trim_end_matches(['\r', '\n']).to_string(),
            ));
        }
        let from = parse_address(&smtp.from)
            .map_err(|e| anyhow::anyhow!("[smtp] from {:?}: {e}", smtp.from))?;
        Ok(Self {
            transport: builder.build(),
            from: lettre::message::Mailbox::new(Some("ferry".into()), from),
        })
    }

    async fn send(&self, to: &str, mail: &Mail) -> Result<(), String> {
        use lettre::AsyncTransport;
        let to = parse_address(to)?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(lettre::message::Mailbox::new(None, to))
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| format!("the SMTP relay: {e}"))
    }
}

// --- webhooks ---

/// What webhook POSTs go through.
#[derive(Clone)]
struct Posts {
    client: reqwest::Client,
    allow_private: bool,
}

impl Posts {
    fn new(allow_private: bool) -> anyhow::Result<Self> {
        Ok(Self {
            client: webhook_client(allow_private)?,
            allow_private,
        })
    }
}

/// The client every POST goes through: no redirects followed, bounded in
/// time, and (unless `allow_private`) only to public addresses.
fn webhook_client(allow_private: bool) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder();
    let builder = if allow_private {
        builder
    } else {
        // Names resolve to public addresses only, checked on the
        // addresses the connection will use, so a name that resolves
        // elsewhere later (DNS rebinding) gains nothing.
        builder.dns_resolver(PublicOnly)
    };
    builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("ferry-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the webhook client: {e}"))
}

/// Resolves a webhook's host to its public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = all
                .into_iter()
                .filter(|a| is_public_address(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(not_public(&host).into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn not_public(host: &str) -> String {
    format!(
        "{host} is not a public address: webhooks reach public addresses only \
         (an admin may allow others with webhook_private_addresses = true in hub.toml)"
    )
}

/// Whether a webhook may reach `ip` when private addresses are not
/// allowed: unicast addresses routed on the internet, nothing on the
/// hub's own host or networks.
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    fn v4(ip: Ipv4Addr) -> bool {
        let [a, b, c, _] = ip.octets();
        !(ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip.is_documentation()
            || a == 0
            || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
            || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
            || (a == 198 && (18..20).contains(&b)) // benchmarking
            || a >= 240) // reserved
    }
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return v4(mapped);
            }
            let s = ip.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address inside.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return v4(Ipv4Addr::new(a, b, c, d));
            }
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible, deprecated
        }
    }
}

/// A URL whose host is an address literal (no resolver is asked): its
/// address must be public unless private ones are allowed.
fn check_literal_host(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = literal.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    if is_public_address(ip) {
        Ok(())
    } else {
        Err(not_public(&ip.to_string()))
    }
}

/// One POST; only a 2xx answer counts. The answer's body is never read.
async fn post(
    posts: &Posts,
    url: &str,
    secret: &str,
    event: NotifyEvent,
    body: &[u8],
    delivery_id: &str,
) -> Result<(), String> {
    // A literal address reaches no resolver: checked here, at each
    // delivery (the admin's setting may have changed since creation).
    check_literal_host(url, posts.allow_private)?;
    let timestamp = crate::grants::now();
    let answer = posts
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Ferry-Event", event.as_str())
        .header("X-Ferry-Delivery", delivery_id)
        .header("X-Ferry-Timestamp", timestamp.to_string())
        .header(
            "X-Ferry-Signature",
            signature(secret.as_bytes(), timestamp, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| format!("POST failed: {}", reqwest_error(e)))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

/// A reqwest error's words without the URL, which may hold a token.
fn reqwest_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    one_line(&text)
}

/// Why a webhook is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook {0:?} among yours")]
    NotFound(String),
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Checks a webhook URL: hostile input until shown otherwise.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_WEBHOOK_URL {
        return Err(format!(
            "the webhook URL is longer than {MAX_WEBHOOK_URL} bytes"
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "a webhook URL starts with https:// or http://, not {}:",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the webhook URL names no host".into());
    }
    if parsed.fragment().is_some() {
        return Err("a webhook URL has no #fragment".into());
    }
    Ok(())
}

/// Adds a webhook for `who`; the row holds the secret, shown this once.
/// `allow_private` is the hub's `webhook_private_addresses`: without it a
/// URL naming a non-public address is refused now (a name's addresses
/// are checked at each delivery).
pub fn create_webhook(
    store: &dyn Storage,
    who: &Principal,
    url: &str,
    events: Option<NotifyEvents>,
    allow_private: bool,
    now: i64,
) -> Result<WebhookRow, WebhookError> {
    authorize(who, Action::ManageWebhooks, Resource::Any).map_err(WebhookError::Refused)?;
    check_webhook_url(url).map_err(WebhookError::Invalid)?;
    check_literal_host(url, allow_private).map_err(WebhookError::Invalid)?;
    let events = events.unwrap_or(NotifyEvents::ALL);
    if events.is_empty() {
        return Err(WebhookError::Invalid(
            "a webhook with no events would never be called: give --events".into(),
        ));
    }
    if store.webhooks_of(who.user_id)?.len() >= MAX_WEBHOOKS {
        return Err(WebhookError::Invalid(format!(
            "you have {MAX_WEBHOOKS} webhooks, the most one user may have; delete one first"
        )));
    }
    let secret = crate::secrets::random_token(32)
        .map_err(|e| StoreError::Internal(format!("no randomness for a webhook secret: {e}")))?;
    let row = WebhookRow {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: who.user_id,
        url: url.to_string(),
        events,
        secret,
        created: now,
    };
    store.put_webhook(&row)?;
    tracing::info!(webhook = %row.id, owner = %who.user_name, "webhook added");
    Ok(row)
}

/// `who`'s webhooks.
pub fn webhooks(store: &dyn Storage, who: &Principal) -> Result<Vec<WebhookRow>, WebhookError> {
    authorize(who, Action::ManageWebhooks, Resource::Any).map_err(WebhookError::Refused)?;
    Ok(store.webhooks_of(who.user_id)?)
}

/// Deletes one of `who`'s webhooks; someone else's is not found.
pub fn delete_webhook(store: &dyn Storage, who: &Principal, id: &str) -> Result<(), WebhookError> {
    let row = store
        .webhook(id)?
        .ok_or_else(|| WebhookError::NotFound(id.to_string()))?;
    authorize(who, Action::ManageWebhooks, Resource::Webhook(&row)).map_err(|r| match r {
        Refusal::Hidden => WebhookError::NotFound(id.to_string()),
        r => WebhookError::Refused(r),
    })?;
    if !store.delete_webhook(id)? {
        return Err(WebhookError::NotFound(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::task::{ChecksumAlgorithm, TaskCounters};

    fn task(label: Option<&str>, status: TaskStatus) -> TaskRow {
        TaskRow {
            id: "0b7e2c1a-1111-4222-8333-444455556666".into(),
            owner_id: 1,
            source_id: "e1".into(),
            source_name: "laptop".into(),
            destination_id: "e2".into(),
            destination_name: "cluster".into(),
            item_count: 1,
            label: label.map(String::from),
            deadline: None,
            checksum_algorithm: ChecksumAlgorithm::Blake3,
            status,
            attempt: 2,
            done: TaskCounters {
                files: 12,
                files_transferred: 10,
                files_skipped: 2,
                bytes_transferred: 3 * 1024 * 1024,
                ..Default::default()
            },
            current: TaskCounters::default(),
            faults: 1,
            created: 1_000,
            completed: Some(1_000 + 3723),
            last_fault: None,
            fatal_error: None,
            bytes_relayed: 0,
            nodes: 1,
            on_success: None,
        }
    }

    fn event(time: i64, code: &str, description: &str) -> TaskEventRow {
        TaskEventRow {
            seq: 0,
            time,
            code: code.into(),
            description: description.into(),
        }
    }

    #[test]
    fn a_success_mail_names_the_task_its_counts_duration_and_page() {
        let m = mail(
            "https://hub.example.org:8443/",
            &task(Some("nightly run"), TaskStatus::Succeeded),
            &News::Ended(TaskStatus::Succeeded),
            &[],
            9_999,
        );
        assert_eq!(m.subject, "ferry: task \"nightly run\" SUCCEEDED");
        for line in [
            "ended: SUCCEEDED",
            "Files:     10 transferred, 2 skipped, 12 found",
            "Bytes:     3.0 MiB (3145728 bytes) transferred",
            "Duration:  1:02:03",
            "From:      laptop",
            "Details: https://hub.example.org:8443/activity/0b7e2c1a-1111-4222-8333-444455556666",
        ] {
            assert!(m.body.contains(line), "{line:?} in:\n{}", m.body);
        }
        assert!(!m.body.contains("First errors"));
    }

    #[test]
    fn a_failure_mail_lists_the_first_errors_only_on_one_line_each() {
        let mut failed = task(None, TaskStatus::Failed);
        failed.fatal_error = Some("'laptop' reported: no such file\r\nBcc: x@evil".into());
        let events: Vec<TaskEventRow> = (0..9)
            .map(|i| event(2_000 + i, "FAULT", &format!("fault {i}\nsecond line")))
            .chain([event(1_500, "STARTED", "not an error")])
            .collect();
        let errors = first_errors(&events);
        let m = mail(
            "https://hub",
            &failed,
            &News::Ended(TaskStatus::Failed),
            &errors,
            9_999,
        );
        assert_eq!(
            m.subject,
            "ferry: task 0b7e2c1a-1111-4222-8333-444455556666 FAILED"
        );
        assert!(
            m.body
                .contains("Error:     'laptop' reported: no such file  Bcc: x@evil\n")
        );
        assert!(m.body.contains("fault 0 second line"), "{}", m.body);
        assert!(m.body.contains("fault 4"));
        assert!(!m.body.contains("fault 5"), "first {FIRST_ERRORS} only");
        assert!(!m.body.contains("not an error"));
    }

    #[test]
    fn outside_text_is_bounded_and_has_no_line_breaks() {
        let long = "é\n".repeat(1000);
        let mut waiting = task(Some(&long), TaskStatus::Active);
        waiting.completed = None;
        let m = mail(
            "https://hub",
            &waiting,
            &News::Inactive("'laptop' is offline\r\n".into()),
            &[],
            1_100,
        );
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
        assert!(m.subject.len() <= MAX_TEXT + 4, "{}", m.subject.len());
        assert!(
            m.body
                .contains("is waiting and moves no data: 'laptop' is offline")
        );
        assert!(
            m.body.contains("Duration:  1:40"),
            "still running: up to now"
        );
    }

    #[test]
    fn webhook_bodies_carry_the_event_counts_and_link() {
        let body = webhook_body(
            "https://hub/",
            &task(Some("x"), TaskStatus::Succeeded),
            &News::Ended(TaskStatus::Succeeded),
            &[event(5, "FAULT", "oops")],
            42,
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["event"], "succeeded");
        assert_eq!(v["task"]["status"], "SUCCEEDED");
        assert_eq!(v["task"]["files_transferred"], 10);
        assert_eq!(v["task"]["bytes_transferred"], 3 * 1024 * 1024);
        assert_eq!(v["task"]["duration_secs"], 3723);
        assert_eq!(
            (
                v["task"]["source_name"].as_str(),
                v["task"]["destination_endpoint"].as_str()
            ),
            (Some("laptop"), Some("e2"))
        );
        assert_eq!(
            v["task"]["url"],
            "https://hub/activity/0b7e2c1a-1111-4222-8333-444455556666"
        );
        assert_eq!(v["errors"][0]["code"], "FAULT");
        let inactive = webhook_body(
            "https://hub",
            &task(None, TaskStatus::Active),
            &News::Inactive("paused".into()),
            &[],
            42,
        );
        let v: serde_json::Value = serde_json::from_slice(&inactive).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["reason"].as_str()),
            (Some("inactive"), Some("paused"))
        );
    }

    #[test]
    fn signatures_are_rfc_4231_hmac_sha256_of_the_timestamp_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?",
        // split here as timestamp-less data would not be: check the vector
        // through the same MAC, then that the timestamp is bound in.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::secrets::hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"event":"failed"}"#;
        let signed = signature(b"s3cret", 1_700_000_000, body);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1700000000.{\"event\":\"failed\"}");
        assert_eq!(
            signed,
            format!(
                "sha256={}",
                crate::secrets::hex(&mac.finalize().into_bytes())
            )
        );
        assert_ne!(
            signed,
            signature(b"s3cret", 1_700_000_001, body),
            "a replay later fails"
        );
        assert_ne!(signed, signature(b"other", 1_700_000_000, body));
    }

    #[test]
    fn webhook_urls_are_http_or_https_bounded_with_a_host() {
        for good in [
            "https://hooks.example.org/ferry",
            "http://127.0.0.1:9000/in?token=abc",
        ] {
            assert_eq!(check_webhook_url(good), Ok(()), "{good}");
        }
        for bad in [
            "ftp://example.org/",
            "file:///etc/passwd",
            "https://",
            "not a url",
            "https://example.org/#frag",
            &format!("https://example.org/{}", "a".repeat(MAX_WEBHOOK_URL)),
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhooks_reach_public_addresses_only_unless_the_admin_allows_others() {
        use std::net::IpAddr;
        for public in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "1.1.1.1",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public_address(ip), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public_address(ip), "{private}");
        }
        for url in [
            "http://127.0.0.1:9000/in",
            "http://[::1]/in",
            "https://169.254.169.254/latest/meta-data",
            "http://[::ffff:192.168.0.1]/",
        ] {
            let refused = check_literal_host(url, false).unwrap_err();
            assert!(refused.contains("webhook_private_addresses"), "{refused}");
            assert_eq!(check_literal_host(url, true), Ok(()), "{url}");
        }
        // A name is checked by the resolver, at each delivery.
        assert_eq!(
            check_literal_host("https://hooks.example.org/", false),
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_private_addresses_is_not_posted_to() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = match PublicOnly.resolve(name).await {
            Ok(addrs) => panic!("resolved: {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(refused.contains("not a public address"), "{refused}");
    }

    #[test]
    fn addresses_are_checked_and_bounded() {
        assert!(parse_address("alice@example.org").is_ok());
        for bad in [
            "alice",
            "Alice <alice@example.org>",
            "a@b\r\nBcc: c@d",
            &format!("{}@example.org", "a".repeat(300)),
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_queue_never_waits_and_drops_what_does_not_fit() {
        let notifier = Notifier::new();
        for i in 0..QUEUE + 10 {
            notifier.tell(&format!("t{i}"), News::Ended(TaskStatus::Succeeded));
        }
        let mut rx = notifier.rx.lock().unwrap().take().unwrap();
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, QUEUE);
    }
}
