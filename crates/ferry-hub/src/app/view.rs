//! The web app's markup: plain functions from values to HTML, written as
//! maud templates, which escape every value they splice into text or an
//! attribute. Names from endpoints are bytes: they reach the page through
//! [`shown_name`] (what a person reads) and [`WirePath::encode`] (what a
//! form sends back, exactly).

use super::{Nav, Notice, PanelState, Sort};
use crate::control::Link;
use crate::store::{
    EndpointRow, Grantee, PermissionRow, PersonalTokenRow, SessionListing, TaskEventRow, TaskRow,
};
use ferry_proto::api::{FsEntry, FsEntryKind};
use ferry_proto::human;
use ferry_proto::task::TaskStatus;
use ferry_proto::wire_path::WirePath;
use maud::{DOCTYPE, Markup, html};

/// Who is signed in, for the frame of every page.
pub struct Frame<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub nav: Nav,
}

/// A whole page: the header with navigation and sign-out, then `body`.
pub fn page(frame: &Frame<'_>, title: &str, body: Markup) -> String {
    let link = |nav: Nav, href: &str, text: &str| {
        html! {
            @if frame.nav == nav {
                a href=(href) aria-current="page" { (text) }
            } @else {
                a href=(href) { (text) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " - ferry" }
                link rel="stylesheet" href="/assets/app.css";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                script src="/assets/app.js" defer {}
            }
            body {
                header class="top" {
                    a class="brand" href="/files" { "ferry" }
                    nav aria-label="Main" {
                        (link(Nav::Files, "/files", "File Manager"))
                        (link(Nav::Activity, "/activity", "Activity"))
                        (link(Nav::Endpoints, "/endpoints", "Endpoints"))
                        (link(Nav::Developers, "/developers", "Developers"))
                        (link(Nav::Account, "/account", "Account"))
                    }
                    form class="signout" method="post" action="/logout" {
                        span { "Signed in as " strong { (frame.user) } }
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button type="submit" class="link" { "Sign out" }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
    .into_string()
}

/// A name as a person reads it: UTF-8 as itself, any other byte as `\xNN`.
pub fn shown_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// `<time>` in UTC; the page's script shows it in the reader's own zone.
fn when(secs: i64) -> Markup {
    let iso = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    html! { time datetime=(iso) { (human::utc_minutes(secs)) " UTC" } }
}

/// A problem's sentence, with the page where an identity is linked made
/// a link to follow: an endpoint's identity policy refuses with "link one
/// at HUB/account" (`authz`), and the fix is one click away.
pub(super) fn alert_text(message: &str) -> Markup {
    const LEAD: &str = "link one at ";
    if let Some(at) = message.find(LEAD) {
        let (said, rest) = message.split_at(at + LEAD.len());
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (url, after) = rest.split_at(end);
        if (url.starts_with("https://") || url.starts_with("http://")) && url.ends_with("/account")
        {
            return html! { (said) a href=(url) { (url) } (after) };
        }
    }
    html! { (message) }
}

fn notice(notice: &Option<Notice>) -> Markup {
    html! {
        @match notice {
            Some(Notice::Error(message)) => p class="alert error" role="alert" { (alert_text(message)) },
            Some(Notice::Done(message)) => p class="alert ok" role="status" { (message) },
            Some(Notice::Link { url, expires, max_bytes }) => div class="alert ok" role="status" {
                p {
                    "Anyone holding this link can download what you checked, read-only, "
                    @match expires {
                        Some(at) => { "until " (when(*at)) }
                        None => "until you delete it",
                    }
                    @if let Some(n) = max_bytes { ", up to " (human::bytes(*n)) " in all" }
                    ". ferry link list shows it again; ferry link delete ends it."
                }
                input type="text" readonly aria-label="Link URL" value=(url);
                " "
                a href=(url) { "Open the link" }
            },
            Some(Notice::Started { task_id, label }) => p class="alert ok" role="status" {
                "Transfer started: "
                a href={ "/activity/" (task_id) } data-task-id=(task_id) {
                    @if let Some(label) = label { (label) " (" (task_id) ")" } @else { "task " (task_id) }
                }
                ". Its progress is on its page and in the task list."
            },
            None => {},
        }
    }
}

/// Both panels' state as hidden fields, so a form posted from the page
/// brings it back (the answer shows the same two directories).
fn state_fields(panels: &[PanelState; 2]) -> Markup {
    html! {
        @for p in panels {
            input type="hidden" name={ "c" (p.n) } value=(p.collection);
            input type="hidden" name={ "o" (p.n) } value=(p.open_id.as_deref().unwrap_or(""));
            input type="hidden" name={ "p" (p.n) } value=(p.path);
            input type="hidden" name={ "s" (p.n) } value=(p.sort.as_str());
        }
    }
}

/// What one panel shows below its Collection and Path boxes.
pub enum Listing {
    /// No collection chosen yet.
    Empty,
    Entries {
        entries: Vec<FsEntry>,
        truncated: bool,
    },
    /// Why the directory cannot be shown; one sentence.
    Problem(String),
}

pub struct FileManager<'a> {
    pub panels: [PanelState; 2],
    pub listings: [Listing; 2],
    pub notice: Option<Notice>,
    /// The user's endpoints, for the Collection boxes' suggestions.
    pub endpoints: &'a [EndpointRow],
}

pub fn file_manager(frame: &Frame<'_>, fm: &FileManager<'_>) -> String {
    page(
        frame,
        "File Manager",
        html! {
            h1 { "File Manager" }
            (notice(&fm.notice))
            // Every panel's checkboxes and buttons post this one form; its
            // first button is disabled, so Enter in a text box of it sends
            // nothing (a panel's own boxes submit the panel's form).
            form id="act" method="post" action="/files/transfer" {
                button type="submit" disabled hidden aria-hidden="true" {}
                input type="hidden" name="csrf" value=(frame.csrf);
                (state_fields(&fm.panels))
            }
            datalist id="collections" {
                @for e in fm.endpoints { option value=(e.display_name) {} }
            }
            div class="panels" {
                @for i in 0..2 {
                    (panel(&fm.panels, i, &fm.listings[i]))
                }
            }
            (transfer_options())
        },
    )
}

fn panel(panels: &[PanelState; 2], i: usize, listing: &Listing) -> Markup {
    let p = &panels[i];
    let other = &panels[1 - i];
    let n = p.n;
    html! {
        section class="panel" aria-label={ "panel " (n) } {
            form class="browse" method="get" action="/files" {
                // The other panel stays where it is.
                input type="hidden" name={ "c" (other.n) } value=(other.collection);
                input type="hidden" name={ "o" (other.n) } value=(other.open_id.as_deref().unwrap_or(""));
                input type="hidden" name={ "p" (other.n) } value=(other.path);
                input type="hidden" name={ "s" (other.n) } value=(other.sort.as_str());
                input type="hidden" name={ "o" (n) } value=(p.open_id.as_deref().unwrap_or(""));
                input type="hidden" name={ "s" (n) } value=(p.sort.as_str());
                div class="field" {
                    label for={ "collection" (n) } { "Collection" }
                    input type="text" id={ "collection" (n) } name={ "c" (n) } value=(p.collection)
                        list="collections" autocomplete="off" data-collection
                        placeholder="an endpoint's name or id";
                }
                div class="field" {
                    label for={ "path" (n) } { "Path" }
                    input type="text" id={ "path" (n) } name={ "p" (n) } value=(p.path)
                        autocomplete="off" spellcheck="false";
                }
                button type="submit" { "Open" }
            }
            @if p.open_id.is_some() {
                (breadcrumbs(panels, i))
            }
            @match listing {
                Listing::Empty => p class="empty" {
                    "Type an endpoint's name in Collection and press Enter, or pick one from the suggestions."
                },
                Listing::Problem(message) => p class="alert error" role="alert" { (alert_text(message)) },
                Listing::Entries { entries, truncated } => {
                    (entry_table(panels, i, entries))
                    @if *truncated {
                        p class="note" { "Only the first " (entries.len()) " entries are shown." }
                    }
                    (panel_actions(n, p.mine))
                }
            }
        }
    }
}

fn breadcrumbs(panels: &[PanelState; 2], i: usize) -> Markup {
    let p = &panels[i];
    let path = WirePath::decode(&p.path).unwrap_or_default();
    let bytes = path.as_bytes();
    let mut crumbs = Vec::new();
    let mut at = 0;
    for part in bytes.split(|b| *b == b'/') {
        at += part.len() + 1;
        if part.is_empty() {
            continue;
        }
        let upto = WirePath::from_bytes(&bytes[..at.min(bytes.len())]).encode();
        let upto = if upto.ends_with('/') {
            upto
        } else {
            format!("{upto}/")
        };
        crumbs.push((shown_name(part), upto));
    }
    let up = crumbs
        .len()
        .checked_sub(2)
        .map(|k| crumbs[k].1.clone())
        .unwrap_or_else(|| "/".into());
    html! {
        nav class="crumbs" aria-label={ "panel " (p.n) " location" } {
            a href=(panel_link(panels, i, "/", p.sort)) { "/" }
            @for (name, upto) in &crumbs {
                " " a href=(panel_link(panels, i, upto, p.sort)) { (name) } " /"
            }
            @if !crumbs.is_empty() {
                " " a class="up" href=(panel_link(panels, i, &up, p.sort)) { "Up" }
            }
        }
    }
}

/// The File Manager with panel `i` at `path` sorted by `sort`, the other
/// panel unchanged.
fn panel_link(panels: &[PanelState; 2], i: usize, path: &str, sort: Sort) -> String {
    super::files_url(panels, Some((i, path, sort)), &[])
}

fn entry_table(panels: &[PanelState; 2], i: usize, entries: &[FsEntry]) -> Markup {
    let p = &panels[i];
    let n = p.n;
    let header = |key: Sort, text: &str| {
        let next = if p.sort == key { key.reversed() } else { key };
        let sorted = if p.sort.key() == key.key() {
            if p.sort.descending() {
                "descending"
            } else {
                "ascending"
            }
        } else {
            "none"
        };
        html! {
            th scope="col" aria-sort=(sorted) {
                a href=(panel_link(panels, i, &p.path, next)) { (text) }
            }
        }
    };
    html! {
        @if entries.is_empty() {
            p class="empty" { "This directory is empty." }
        } @else {
            table class="entries" {
                thead {
                    tr {
                        th scope="col" class="pick" { span class="sr" { "Select" } }
                        (header(Sort::Name, "Name"))
                        (header(Sort::Size, "Size"))
                        (header(Sort::Time, "Modified"))
                    }
                }
                tbody {
                    @for e in entries {
                        @let name = shown_name(e.name.as_bytes());
                        @let dir = e.kind == FsEntryKind::Dir;
                        @let value = format!("{}:{}", if dir { "d" } else { "f" }, e.name.encode());
                        tr {
                            td class="pick" {
                                input type="checkbox" form="act" name={ "sel" (n) } value=(value)
                                    aria-label=(name);
                            }
                            td class="name" {
                                @if dir {
                                    @let inside = format!("{}{}/", p.path, e.name.encode());
                                    a class="dir" href=(panel_link(panels, i, &inside, p.sort)) { (name) "/" }

                                } @else if e.kind == FsEntryKind::Symlink {
                                    span class="link" { (name) " @" }
                                } @else {
                                    span { (name) }
                                }
                            }
                            td class="size" {
                                @if dir { "-" } @else { (human::bytes(e.size)) }
                            }
                            td class="time" { (when(e.mtime)) }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn panel_actions(n: u8, mine: bool) -> Markup {
    html! {
        div class="actions" {
            button type="submit" form="act" name="from" value=(n) class="primary" { "Start" }
            button type="submit" form="act" name="from" value=(n) formaction="/files/delete" { "Delete" }
        }
        details class="more" {
            summary { "New folder, rename" }
            div class="field inline" {
                label for={ "mkdir" (n) } { "New folder name" }
                input type="text" id={ "mkdir" (n) } name={ "mkdir" (n) } form="act" autocomplete="off";
                button type="submit" form="act" name="from" value=(n) formaction="/files/mkdir" { "Make folder" }
            }
            div class="field inline" {
                label for={ "rename" (n) } { "New name for the checked entry" }
                input type="text" id={ "rename" (n) } name={ "rename" (n) } form="act" autocomplete="off";
                button type="submit" form="act" name="from" value=(n) formaction="/files/rename" { "Rename" }
            }
            @if mine {
                p {
                    button type="submit" form="act" name="from" value=(n) formaction="/files/share" { "Share the checked folder" }
                }
                div class="field inline" {
                    label for={ "link_expires" (n) } { "Link expires" }
                    select id={ "link_expires" (n) } name={ "link_expires" (n) } form="act" {
                        option value="" selected { "when deleted" }
                        option value="3600" { "in 1 hour" }
                        option value="86400" { "in 1 day" }
                        option value="604800" { "in 7 days" }
                        option value="2592000" { "in 30 days" }
                    }
                }
                div class="field inline" {
                    label for={ "link_max_bytes" (n) } { "Link serves at most" }
                    input type="text" id={ "link_max_bytes" (n) } name={ "link_max_bytes" (n) } form="act" placeholder="e.g. 10G" autocomplete="off";
                    button type="submit" form="act" name="from" value=(n) formaction="/files/link" { "Get link" }
                }
            }
        }
    }
}

fn transfer_options() -> Markup {
    html! {
        section class="options" aria-label="Transfer options" {
            h2 { "Transfer options" }
            p class="note" { "Start in a panel sends its checked entries into the other panel's directory." }
            div class="grid" {
                div class="field" {
                    label for="label" { "Label" }
                    input type="text" id="label" name="label" form="act" maxlength="128" autocomplete="off";
                }
                div class="field" {
                    label for="sync" { "Sync level" }
                    select id="sync" name="sync" form="act" {
                        option value="" selected { "Copy everything" }
                        option value="exists" { "Skip files that exist" }
                        option value="size" { "Skip files of the same size" }
                        option value="mtime" { "Skip files of the same size and time" }
                        option value="checksum" { "Skip files with the same checksum" }
                    }
                }
                div class="field" {
                    label for="deadline" { "Deadline" }
                    select id="deadline" name="deadline" form="act" {
                        option value="" selected { "None" }
                        option value="3600" { "1 hour" }
                        option value="21600" { "6 hours" }
                        option value="86400" { "1 day" }
                        option value="604800" { "1 week" }
                    }
                }
                div class="field" {
                    label for="repeat" { "Repeat every" }
                    select id="repeat" name="repeat" form="act" {
                        option value="" selected { "Don't repeat" }
                        option value="3600" { "Hour" }
                        option value="86400" { "Day" }
                        option value="604800" { "Week" }
                    }
                }
                div class="field" {
                    label for="exclude" { "Leave out (one pattern a line)" }
                    textarea id="exclude" name="exclude" form="act" rows="2" spellcheck="false"
                        placeholder="*.tmp\nscratch/" {}
                }
                div class="field" {
                    label for="bwlimit" { "Bandwidth cap" }
                    input type="text" id="bwlimit" name="bwlimit" form="act" autocomplete="off" placeholder="none, or e.g. 50M (bytes/s)";
                }
                div class="checks" {
                    label { input type="checkbox" name="delete" value="on" form="act"; " Delete extra files" }
                    label { input type="checkbox" name="skip_errors" value="on" form="act"; " Skip source errors" }
                    label { input type="checkbox" name="keep_mtime" value="on" form="act" checked; " Keep modification times" }
                }
            }
        }
    }
}

/// "Delete these?" before anything is removed.
pub fn confirm_delete(
    frame: &Frame<'_>,
    panels: &[PanelState; 2],
    fields: &[(String, String)],
    endpoint: &str,
    names: &[String],
) -> String {
    let back = panel_link(panels, 0, &panels[0].path, panels[0].sort);
    page(
        frame,
        "Delete",
        html! {
            h1 { "Delete " (names.len()) " " @if names.len() == 1 { "entry" } @else { "entries" } "?" }
            p { "From " strong { (endpoint) } ". Directories are deleted with everything in them. This cannot be undone." }
            ul class="names" { @for name in names { li { (name) } } }
            form method="post" action="/files/delete" {
                @for (k, v) in fields {
                    @if k != "confirm" { input type="hidden" name=(k) value=(v); }
                }
                input type="hidden" name="confirm" value="yes";
                button type="submit" class="danger" { "Delete" }
                " "
                a href=(back) { "Keep them" }
            }
        },
    )
}

pub fn status_word(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Active => "ACTIVE",
        TaskStatus::Succeeded => "SUCCEEDED",
        TaskStatus::Failed => "FAILED",
        TaskStatus::Canceled => "CANCELED",
    }
}

fn status(status: TaskStatus) -> Markup {
    let word = status_word(status);
    html! { span class={ "status " (word.to_ascii_lowercase()) } data-status=(word) { (word) } }
}

/// Average rate over the task's life so far.
fn rate(row: &TaskRow, now: i64) -> String {
    let bytes = row.totals().bytes_transferred;
    let secs = row.completed.unwrap_or(now) - row.created;
    if bytes == 0 || secs <= 0 {
        return "-".into();
    }
    format!("{}/s", human::bytes(bytes / secs as u64))
}

fn progress_text(row: &TaskRow) -> String {
    let t = row.totals();
    let files = if t.walk_done || row.status.is_final() {
        format!("{} of {} files", t.files_transferred, t.files)
    } else {
        format!("{} files so far", t.files_transferred)
    };
    format!(
        "{files}, {} of {}",
        human::bytes(t.bytes_transferred),
        human::bytes(t.bytes)
    )
}

fn task_name(row: &TaskRow) -> String {
    match &row.label {
        Some(label) => label.clone(),
        None => format!("Task {}", &row.id[..8.min(row.id.len())]),
    }
}

pub fn activity(frame: &Frame<'_>, rows: &[TaskRow], now: i64) -> String {
    page(
        frame,
        "Activity",
        html! {
            h1 { "Activity" }
            p { a href="/timers" { "Timers" } ": transfers that run again and again." }
            @if rows.is_empty() {
                p class="empty" {
                    "No transfers yet. In the File Manager, pick a collection in each panel, check what to send and press Start."
                }
            } @else {
                table class="tasks" {
                    thead { tr {
                        th scope="col" { "Task" } th scope="col" { "Status" } th scope="col" { "Progress" }
                        th scope="col" { "Rate" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Submitted" }
                    } }
                    tbody {
                        @for row in rows {
                            tr data-task-row=(row.id) {
                                td { a href={ "/activity/" (row.id) } { (task_name(row)) } }
                                td { (status(row.status)) }
                                td { (progress_text(row)) }
                                td { (rate(row, now)) }
                                td { (row.source_name) }
                                td { (row.destination_name) }
                                td { (when(row.created)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The user's timers (recurring transfers), each with its schedule, its
/// runs and a `Delete` button; each run is a task in Activity.
pub fn timers(
    frame: &Frame<'_>,
    rows: &[crate::store::TimerRow],
    notice_line: Option<Notice>,
) -> String {
    page(
        frame,
        "Timers",
        html! {
            h1 { "Timers" }
            (notice(&notice_line))
            p class="back" { a href="/activity" { "Back to Activity" } }
            @if rows.is_empty() {
                p class="empty" {
                    "No timers. Make one with " code { "ferry timer create transfer SRC_EP:PATH DST_EP:PATH --interval 1d" } "."
                }
            } @else {
                table class="tasks timers" {
                    thead { tr {
                        th scope="col" { "Timer" } th scope="col" { "Status" } th scope="col" { "Every" }
                        th scope="col" { "Next run" } th scope="col" { "Runs" } th scope="col" { "Skipped" }
                        th scope="col" { "Last task" } th scope="col" { span class="visually-hidden" { "Actions" } }
                    } }
                    tbody {
                        @for row in rows {
                            @let name = row.timer.label.clone().unwrap_or_else(|| format!("Timer {}", &row.timer.id[..8.min(row.timer.id.len())]));
                            tr data-timer-row=(row.timer.id) {
                                td { (name) }
                                td { span class="status" data-status=(row.status.as_str()) { (row.status.as_str()) } }
                                td { (human::duration(row.timer.interval.unsigned_abs())) }
                                td { @match row.next_run { Some(next) => (when(next)), None => "-" } }
                                td { (row.runs) }
                                td { (row.skipped) }
                                td { @if let Some(task) = &row.last_task_id { a href={ "/activity/" (task) } { (&task[..8.min(task.len())]) } } }
                                td {
                                    form method="post" action={ "/timers/" (row.timer.id) "/delete" } {
                                        input type="hidden" name="csrf" value=(frame.csrf);
                                        button type="submit" class="danger" aria-label={ "Delete " (name) } { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What a task's page shows live: status, progress, events. The page's
/// script fetches this again while the task is ACTIVE.
pub fn task_live(
    frame_csrf: &str,
    row: &TaskRow,
    waiting_for: Option<&str>,
    events: &[TaskEventRow],
    now: i64,
) -> Markup {
    let t = row.totals();
    html! {
        div id="live" data-final=(row.status.is_final()) {
            dl class="facts" {
                dt { "Status" } dd { (status(row.status)) }
                @if let Some(waiting) = waiting_for { dt { "Waiting" } dd { (waiting) "; start it with " code { "ferry -start" } "." } }
                dt { "Progress" } dd {
                    (progress_text(row))
                    @if t.bytes > 0 && t.walk_done {
                        " " progress max=(t.bytes) value=(t.bytes_transferred.min(t.bytes)) aria-label="Bytes transferred" {}
                    }
                }
                dt { "Rate" } dd { (rate(row, now)) }
                @if t.files_skipped > 0 { dt { "Skipped" } dd { (t.files_skipped) " files already there (" (human::bytes(t.bytes_skipped)) ")" } }
                @if row.nodes > 1 { dt { "Nodes" } dd { (row.nodes) " per endpoint: the latest attempt was spread over several machines of each" } }
                @if row.bytes_relayed > 0 { dt { "Relayed" } dd { (human::bytes(row.bytes_relayed)) " through the hub, encrypted end to end (the endpoints could not connect directly)" } }
                dt { "Faults" } dd { (row.faults) }
                @if let Some(fault) = &row.last_fault { dt { "Last fault" } dd { (fault) } }
                @if let Some(error) = &row.fatal_error { dt { "Error" } dd class="error-text" { (error) } }
                @if let Some(done) = row.completed { dt { "Ended" } dd { (when(done)) } }
            }
            @if row.status == TaskStatus::Active {
                form method="post" action={ "/activity/" (row.id) "/cancel" } {
                    input type="hidden" name="csrf" value=(frame_csrf);
                    button type="submit" class="danger" { "Cancel" }
                }
            }
            h2 { "Events" }
            @if events.is_empty() {
                p class="empty" { "No events yet." }
            } @else {
                table class="events" {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Event" } th scope="col" { "Description" } } }
                    tbody {
                        @for e in events {
                            tr class=[crate::tasks::is_error(&e.code).then_some("error-row")] {
                                td { (when(e.time)) } td { code { (e.code) } } td { (e.description) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn task_page(
    frame: &Frame<'_>,
    row: &TaskRow,
    live: Markup,
    notice_: Option<Notice>,
) -> String {
    page(
        frame,
        &task_name(row),
        html! {
            p class="back" { a href="/activity" { "Back to the task list" } }
            h1 { (task_name(row)) }
            (notice(&notice_))
            dl class="facts" {
                dt { "Task id" } dd { code { (row.id) } }
                dt { "From" } dd { (row.source_name) }
                dt { "To" } dd { (row.destination_name) }
                dt { "Items" } dd { (row.item_count) }
                dt { "Submitted" } dd { (when(row.created)) }
                @if let Some(deadline) = row.deadline { dt { "Deadline" } dd { (when(deadline)) } }
            }
            section aria-label="Progress" data-live={ "/activity/" (row.id) "/live" } {
                (live)
            }
        },
    )
}

pub struct EndpointLine {
    pub row: EndpointRow,
    pub link: Link,
}

/// "connected", "connected, paused" or "not connected" (and since when).
fn link_status(link: Link, long: bool) -> Markup {
    html! {
        @match link {
            Link::Connected { since, paused } => {
                span class="on" { "connected" }
                @if paused { ", " span class="paused" { "paused" } }
                @if long { " since " (when(since)) }
                @if paused && long { " (its owner ran " code { "ferry -pause" } "; " code { "ferry -unpause" } " resumes its transfers)" }
            },
            Link::Offline { last_seen } => {
                span class="off" { "not connected" }
                @if let Some(seen) = last_seen { @if long { ", last seen " (when(seen)) } }
                @if long { " (start it on its machine with " code { "ferry -start" } ")" }
            },
        }
    }
}

/// A setup key just made, shown once.
pub struct NewKey {
    pub name: String,
    pub key: String,
}

pub fn endpoints(
    frame: &Frame<'_>,
    lines: &[EndpointLine],
    new_key: Option<&NewKey>,
    notice_: Option<Notice>,
) -> String {
    page(
        frame,
        "Endpoints",
        html! {
            h1 { "Endpoints" }
            (notice(&notice_))
            @if let Some(k) = new_key {
                section class="newkey" aria-label="Setup key" {
                    h2 { "Set up " (k.name) }
                    p { "On the machine that will be this endpoint, run:" }
                    pre { code { "ferry -setup " span data-setup-key=(k.key) { (k.key) } } }
                    p class="note" { "The key works once, within 24 hours, and is shown only now. Then start the endpoint with " code { "ferry -start" } "." }
                }
            }
            @if lines.is_empty() {
                p class="empty" { "You have no endpoints yet. Create one below, then run " code { "ferry -setup KEY" } " on its machine." }
            } @else {
                table class="endpoints" {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Owner" } th scope="col" { "Id" } th scope="col" { "Created" } } }
                    tbody {
                        @for l in lines {
                            tr {
                                td { a href={ "/endpoints/" (l.row.id) } { (l.row.display_name) } }
                                td { (link_status(l.link, false)) }
                                td { (l.row.owner_name) }
                                td { code { (l.row.id) } }
                                td { (when(l.row.created)) }
                            }
                        }
                    }
                }
            }
            section aria-label="Create an endpoint" {
                h2 { "Create an endpoint" }
                form method="post" action="/endpoints/new" {
                    input type="hidden" name="csrf" value=(frame.csrf);
                    div class="field inline" {
                        label for="endpoint-name" { "Endpoint name" }
                        input type="text" id="endpoint-name" name="name" maxlength="128" autocomplete="off"
                            placeholder="optional, e.g. lab-server";
                        button type="submit" class="primary" { "Create endpoint" }
                    }
                }
            }
        },
    )
}

/// What the owner sees of an endpoint's sharing.
pub struct Sharing<'a> {
    /// A folder to put in the Share form (from the File Manager's Share).
    pub proposed: Option<&'a str>,
    pub permissions: &'a [PermissionRow],
    /// (time, action, detail), oldest first.
    /// The endpoint's audit log, newest last.
    pub history: &'a [ferry_proto::api::AuditEvent],
}

fn sharing(frame: &Frame<'_>, endpoint_id: &str, sharing: &Sharing<'_>) -> Markup {
    html! {
        section aria-label="Sharing" {
            h2 { "Shared with" }
            @if sharing.permissions.is_empty() {
                p class="empty" { "Nobody else. Share a folder below: the people you name find this endpoint under shared-with-me and reach only that folder." }
            } @else {
                table class="permissions" {
                    thead { tr { th scope="col" { "Folder" } th scope="col" { "Access" } th scope="col" { "With" } th scope="col" { "Expires" } th scope="col" { span class="sr" { "Action" } } } }
                    tbody {
                        @for p in sharing.permissions {
                            tr {
                                td { code { (shown_name(&p.path)) } }
                                td { @if p.mode.allows_write() { "read-write" } @else { "read-only" } }
                                td {
                                    @match &p.grantee {
                                        Grantee::Identity { name, .. } => { (name) },
                                        Grantee::Group { name, .. } => { "group " (name) },
                                        Grantee::AllAuthenticated => { "everyone signed in" },
                                        Grantee::Anonymous => { "anyone with a link" },
                                    }
                                }
                                td { @if let Some(e) = p.expires { (when(e)) } @else { "never" } }
                                td {
                                    form method="post" action={ "/endpoints/" (endpoint_id) "/permissions/" (p.id) "/delete" } {
                                        input type="hidden" name="csrf" value=(frame.csrf);
                                        button type="submit" class="danger" aria-label={ "Stop sharing " (shown_name(&p.path)) } { "Stop sharing" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action={ "/endpoints/" (endpoint_id) "/permissions" } {
                input type="hidden" name="csrf" value=(frame.csrf);
                div class="grid" {
                    div class="field" {
                        label for="share-path" { "Folder to share" }
                        input type="text" id="share-path" name="path" required autocomplete="off" placeholder="/~/project/results"
                            value=[sharing.proposed];
                    }
                    div class="field" {
                        label for="share-with" { "Share with (user name, or group:NAME)" }
                        input type="text" id="share-with" name="with" required autocomplete="off" placeholder="bob";
                    }
                    div class="field" {
                        label for="share-mode" { "Access" }
                        select id="share-mode" name="mode" {
                            option value="r" selected { "read-only" }
                            option value="rw" { "read-write" }
                        }
                    }
                }
                button type="submit" class="primary" { "Share" }
            }
            @if !sharing.history.is_empty() {
                details {
                    summary { "Audit log" }
                    ul class="history" {
                        @for e in sharing.history {
                            li {
                                (when(e.time)) ": " (e.identity) " " (e.action.replace('_', " "))
                                @if let Some(path) = &e.path { " " (path) }
                                @if let Some(task) = &e.task_id { " (task " (task) ")" }
                                @if !e.detail.is_empty() { ", " (e.detail) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn endpoint(
    frame: &Frame<'_>,
    line: &EndpointLine,
    nodes: &[ferry_proto::api::NodeInfo],
    confirm_revoke: bool,
    shared: Option<&Sharing<'_>>,
    notice_: Option<Notice>,
) -> String {
    let row = &line.row;
    page(
        frame,
        &row.display_name,
        html! {
            p class="back" { a href="/endpoints" { "Back to the list" } }
            h1 { (row.display_name) }
            (notice(&notice_))
            dl class="facts" {
                dt { "Status" } dd { (link_status(line.link, true)) }
                dt { "Id" } dd { code { (row.id) } }
                dt { "Owner" } dd { (row.owner_name) }
                dt { "Created" } dd { (when(row.created)) }
                dt { "Set up" } dd { @if row.cert_sha256.is_some() { "yes" } @else { "not yet: run " code { "ferry -setup KEY" } " with its key" } }
            }
            @if nodes.len() > 1 {
                section aria-label="Nodes" {
                    h2 { "Nodes" }
                    table class="nodes" {
                        thead { tr { th scope="col" { "Node" } th scope="col" { "State" } } }
                        tbody {
                            @for node in nodes {
                                tr {
                                    td { code { (node.name) } }
                                    td {
                                        @if node.connected {
                                            span class="on" { "connected" }
                                            @if let Some(since) = node.since { " since " (when(since)) }
                                        } @else if !node.registered {
                                            span class="off" { "not set up yet" }
                                        } @else {
                                            span class="off" { "not connected" }
                                            @if let Some(seen) = node.last_seen { ", last seen " (when(seen)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if confirm_revoke {
                section class="confirm" aria-label="Confirm revoke" {
                    h2 { "Revoke " (row.display_name) "?" }
                    p { "Its machine can no longer connect or move data, and the name is free again. This cannot be undone." }
                    form method="post" action={ "/endpoints/" (row.id) "/revoke" } {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        input type="hidden" name="confirm" value="yes";
                        button type="submit" class="danger" { "Revoke" }
                        " " a href={ "/endpoints/" (row.id) } { "Keep it" }
                    }
                }
            } @else {
                section aria-label="Rename" {
                    h2 { "Rename" }
                    form method="post" action={ "/endpoints/" (row.id) "/rename" } {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        div class="field inline" {
                            label for="new-name" { "New name" }
                            input type="text" id="new-name" name="name" value=(row.display_name) maxlength="128" required;
                            button type="submit" { "Rename" }
                        }
                    }
                }
                @if let Some(shared) = shared { (sharing(frame, &row.id, shared)) }
                section aria-label="Revoke" {
                    h2 { "Revoke" }
                    form method="post" action={ "/endpoints/" (row.id) "/revoke" } {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button type="submit" class="danger" { "Revoke endpoint" }
                    }
                }
            }
        },
    )
}

/// What the account page shows besides the frame.
pub struct Account<'a> {
    pub hub_url: &'a str,
    pub tokens: &'a [PersonalTokenRow],
    /// A token just made: shown this once.
    pub new_token: Option<&'a str>,
    /// The user's live sessions and whether each is this browser's.
    pub sessions: &'a [(SessionListing, bool)],
    pub notice: Option<Notice>,
    /// What `ferry whoami` says: the account's identities and those this
    /// session authenticated.
    pub whoami: &'a ferry_proto::api::WhoAmI,
    /// The upstream identity providers (name, display name) one may link from.
    pub providers: &'a [(String, String)],
    /// The apps the user let act for them.
    pub connected: &'a [crate::store::ConsentRow],
}

pub fn account(frame: &Frame<'_>, a: &Account<'_>) -> String {
    let others = a.sessions.iter().filter(|(_, this)| !this).count();
    page(
        frame,
        "Account",
        html! {
            h1 { "Account" }
            (notice(&a.notice))
            dl class="facts" {
                dt { "User name" } dd { (frame.user) }
                dt { "Identity" } dd { (a.whoami.identity) }
                dt { "Hub" } dd { code { (a.hub_url) } }
            }
            section aria-label="Identities" {
                h2 { "Identities" }
                p class="note" { "An endpoint may require an identity from a given domain, signed in to recently. Link one here; then run " code { "ferry login" } " again for the command line." }
                table class="identities" {
                    thead { tr { th scope="col" { "Identity" } th scope="col" { "Vouched for by" } th scope="col" { "Signed in with this session" } } }
                    tbody {
                        @for l in &a.whoami.linked_identities {
                            tr {
                                td { (l.identity) }
                                td { (l.provider) }
                                td {
                                    @match a.whoami.session_identities.iter().find(|s| s.identity == l.identity) {
                                        Some(s) => { (when(s.authenticated)) }
                                        None => { "no" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if !a.providers.is_empty() {
                    p { "Link an identity:" }
                    ul {
                        @for (name, display_name) in a.providers {
                            li { a class="button" href={ "/auth/oidc/" (name) "/start?link=1" } { "Link an identity from " (display_name) } }
                        }
                    }
                }
            }
            section aria-label="Access tokens" {
                h2 { "Access tokens for scripts" }
                @if let Some(token) = a.new_token {
                    div class="newkey" {
                        p { strong { "Your new token" } ", shown only now: keep it like a password." }
                        pre { code { "export FERRY_HUB=" (a.hub_url) "\nexport FERRY_TOKEN=" span data-access-token=(token) { (token) } } }
                        p class="note" { "Scripts and the " code { "ferry" } " command then act as you. Revoke it below when it is no longer needed." }
                    }
                }
                @if a.tokens.is_empty() {
                    p class="empty" { "No access tokens. Make one for a script or a notebook below; it works until it expires or you revoke it." }
                } @else {
                    table class="tokens" {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Made" } th scope="col" { "Expires" } th scope="col" { span class="sr" { "Action" } } } }
                        tbody {
                            @for t in a.tokens {
                                tr {
                                    td { (t.label) }
                                    td { (when(t.created)) }
                                    td { (when(t.expires)) }
                                    td {
                                        form method="post" action={ "/account/tokens/" (t.grant_id) "/revoke" } {
                                            input type="hidden" name="csrf" value=(frame.csrf);
                                            button type="submit" class="danger" aria-label={ "Revoke " (t.label) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/account/tokens" {
                    input type="hidden" name="csrf" value=(frame.csrf);
                    div class="grid" {
                        div class="field" {
                            label for="token-name" { "Token name" }
                            input type="text" id="token-name" name="label" maxlength="100" required autocomplete="off"
                                placeholder="e.g. nightly copy script";
                        }
                        div class="field" {
                            label for="token-life" { "Valid for" }
                            select id="token-life" name="days" {
                                option value="30" selected { "30 days" }
                                option value="90" { "90 days" }
                                option value="365" { "1 year" }
                            }
                        }
                    }
                    button type="submit" class="primary" { "Create token" }
                }
            }
            section aria-label="Browser sessions" {
                h2 { "Browser sessions" }
                p {
                    @if others == 0 { "You are signed in in this browser only." }
                    @else { "You are signed in in this browser and " (others) " other" @if others > 1 { "s" } "." }
                }
                ul class="sessions" {
                    @for (session, this) in a.sessions {
                        li { @if *this { strong { "This browser" } } @else { "Another browser" } ", until " (when(session.expires)) }
                    }
                }
                @if others > 0 {
                    form method="post" action="/account/sessions/end-others" {
                        input type="hidden" name="csrf" value=(frame.csrf);
                        button type="submit" class="danger" { "Sign out other browsers" }
                    }
                }
            }
            section aria-label="Connected apps" {
                h2 { "Connected apps" }
                @if a.connected.is_empty() {
                    p class="empty" { "No app acts for you. When you approve an app's request, it is listed here until you revoke it." }
                } @else {
                    table class="connected" {
                        thead { tr { th scope="col" { "App" } th scope="col" { "May" } th scope="col" { "Since" } th scope="col" { span class="sr" { "Action" } } } }
                        tbody {
                            @for c in a.connected {
                                tr {
                                    td { (c.client_name) }
                                    td { (crate::oauth::scope_words(&c.scope).join("; ")) }
                                    td { (when(c.created)) }
                                    td {
                                        form method="post" action={ "/account/apps/" (c.client_id) "/revoke" } {
                                            input type="hidden" name="csrf" value=(frame.csrf);
                                            button type="submit" class="danger" aria-label={ "Revoke " (c.client_name) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    p class="note" { "Revoking ends the app's access at once; it must ask you again." }
                }
            }
            section aria-label="Command line" {
                h2 { "The command line" }
                p { "Sign the " code { "ferry" } " command in with:" }
                pre { code { "ferry login --hub " (a.hub_url) } }
            }
            section aria-label="Developers" {
                h2 { "Developers" }
                p { "The REST API is at " code { (a.hub_url) "/api/v1" } "; an access token (" code { "Authorization: Bearer TOKEN" } ") and a signed-in browser reach it alike. Register apps on the " a href="/developers" { "Developers" } " page." }
            }
        },
    )
}

/// What the Developers page shows.
pub struct Developers<'a> {
    pub hub_url: &'a str,
    pub apps: &'a [crate::apps::App],
    /// An app just registered or whose secret was just rotated: its
    /// secret, shown this once.
    pub fresh: Option<&'a crate::apps::App>,
    pub notice: Option<Notice>,
}

pub fn developers(frame: &Frame<'_>, d: &Developers<'_>) -> String {
    page(
        frame,
        "Developers",
        html! {
            h1 { "Developers" }
            (notice(&d.notice))
            p { "Apps use this hub's OAuth 2.0 server: authorization at " code { (d.hub_url) "/authorize" } ", tokens at " code { (d.hub_url) "/token" } ", then the REST API at " code { (d.hub_url) "/api/v1" } " with the scopes each user allowed." }
            @if let Some(app) = d.fresh {
                @if let Some(secret) = &app.secret {
                    div class="newkey" {
                        p { strong { "The secret of " (app.row.name) } ", shown only now: keep it like a password." }
                        pre { code { "client_id=" (app.row.client_id) "\nclient_secret=" span data-client-secret=(secret) { (secret) } } }
                    }
                }
            }
            section aria-label="Your apps" {
                h2 { "Your apps" }
                @if d.apps.is_empty() {
                    p class="empty" { "No apps yet. Register one below." }
                } @else {
                    table class="apps" {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Client ID" } th scope="col" { "Redirects or identity" } th scope="col" { span class="sr" { "Actions" } } } }
                        tbody {
                            @for app in d.apps {
                                tr {
                                    td { (app.row.name) }
                                    td { (app.row.kind.as_str()) }
                                    td { code { (app.row.client_id) } }
                                    td {
                                        @if let Some(identity) = &app.identity { code { (identity) } }
                                        @for uri in &app.row.redirect_uris { code { (uri) } " " }
                                        @if app.row.kind == crate::store::ClientKind::Native { "any loopback port, or the code page" }
                                    }
                                    td {
                                        @if app.row.secret_hash.is_some() {
                                            form method="post" action={ "/developers/apps/" (app.row.client_id) "/rotate-secret" } {
                                                input type="hidden" name="csrf" value=(frame.csrf);
                                                button type="submit" aria-label={ "New secret for " (app.row.name) } { "New secret" }
                                            }
                                        }
                                        form method="post" action={ "/developers/apps/" (app.row.client_id) "/delete" } {
                                            input type="hidden" name="csrf" value=(frame.csrf);
                                            button type="submit" class="danger" aria-label={ "Delete " (app.row.name) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-label="Register an app" {
                h2 { "Register an app" }
                form method="post" action="/developers/apps" {
                    input type="hidden" name="csrf" value=(frame.csrf);
                    div class="grid" {
                        div class="field" {
                            label for="app-name" { "App name" }
                            input type="text" id="app-name" name="name" maxlength="100" required autocomplete="off"
                                placeholder="e.g. Lab portal";
                        }
                        div class="field" {
                            label for="app-type" { "Type" }
                            select id="app-type" name="type" {
                                option value="portal" selected { "Portal (a web site: secret, exact redirect URIs)" }
                                option value="native" { "Native app (on the user's computer: PKCE, loopback redirects)" }
                                option value="service" { "Service account (acts as itself: secret, client credentials)" }
                            }
                        }
                    }
                    div class="field" {
                        label for="app-redirects" { "Redirect URIs (a portal's, one per line)" }
                        textarea id="app-redirects" name="redirect_uris" rows="3" placeholder="https://portal.example.org/callback" {}
                    }
                    button type="submit" class="primary" { "Register app" }
                }
                p class="note" { "Scopes an app may ask for: openid, profile, email, transfer, offline_access (a refresh token), my-endpoints, shared-with-me, endpoint:setup." }
            }
        },
    )
}
