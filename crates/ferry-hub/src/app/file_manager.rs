//! The File Manager: two panels, each an endpoint's directory; `Start`
//! sends one panel's checked entries into the other's directory, with the
//! transfer options. Listing, mkdir, rename and delete go through
//! [`files::operate`], transfers through [`task_service::submit`].

use super::view::{self, FileManager, Listing};
use super::{AppError, Fields, Nav, Notice, PanelState, Posted, Said, Sort, Visitor};
use crate::authz::Action;
use crate::authz::{SubmitsTasks, UsesEndpoints};
use crate::files;
use crate::grants;
use crate::page_auth::SignedIn;
use crate::server::Hub;
use crate::task_service;
use crate::tasks::Wake;
use crate::timers;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ferry_proto::api::{FsEntry, FsEntryKind, FsOp, FsOutcome};
use ferry_proto::filter::FilterRule;
use ferry_proto::rate::parse_rate;
use ferry_proto::task::{
    ChecksumAlgorithm, CreateTimer, SubmitTask, SyncLevel, TransferItem, TransferOptions,
};
use ferry_proto::wire_path::WirePath;
use std::sync::Arc;

/// Where a panel opens an endpoint: its owner's home.
const HOME: &str = "/~/";
/// Most endpoints the Collection suggestions list.
const SUGGESTED: usize = 1000;

/// `GET /files`: both panels as the query says.
pub async fn show(
    State(hub): State<Arc<Hub>>,
    signed_in: SignedIn<UsesEndpoints>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let visitor = Visitor::from(signed_in);
    let fields = Fields(query);
    let notice = match (fields.get("started"), fields.get("done")) {
        (Some(id), _) => task_service::find(&*hub.store, &visitor.who, id, Action::SeeTask)
            .ok()
            .map(|row| Notice::Started {
                task_id: row.id,
                label: row.label,
            }),
        (None, Some(done)) => done_notice(done).map(|s| Notice::Done(s.into())),
        _ => None,
    };
    render(&hub, &visitor, &fields, notice, StatusCode::OK).await
}

/// `/` for a signed-in browser: the File Manager, both panels empty.
pub(crate) async fn home(hub: &Arc<Hub>, signed_in: SignedIn) -> Response {
    let visitor = Visitor::from(signed_in);
    let mut response = match render(hub, &visitor, &Fields::default(), None, StatusCode::OK).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    // `/` is routed with the sign-in pages, whose policy allows no script:
    // this page brings the app's own.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::APP_CSP),
    );
    response
}

fn done_notice(code: &str) -> Option<&'static str> {
    match code {
        "mkdir" => Some("Folder made."),
        "rename" => Some("Renamed."),
        "delete" => Some("Deleted."),
        "timer" => Some(
            "Timer created: the transfer runs now and again at every interval. Activity links to your timers.",
        ),
        _ => None,
    }
}

/// A panel's directory text as the hub keeps it: absolute (a relative
/// one is taken from the home directory) and ending in `/`.
fn normalize(path: &str) -> String {
    let path = path.trim();
    let mut path = if path.is_empty() {
        HOME.to_string()
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{HOME}{path}")
    };
    if !path.ends_with('/') {
        path.push('/');
    }
    path
}

/// The two panels as the request's fields give them, not yet looked up.
fn panels(fields: &Fields) -> [PanelState; 2] {
    [1u8, 2].map(|n| PanelState {
        n,
        collection: fields
            .get(&format!("c{n}"))
            .unwrap_or("")
            .trim()
            .to_string(),
        open_id: fields
            .get(&format!("o{n}"))
            .filter(|id| !id.is_empty())
            .map(str::to_string),
        path: normalize(fields.get(&format!("p{n}")).unwrap_or("")),
        sort: Sort::parse(fields.get(&format!("s{n}")).unwrap_or("")),
        mine: false,
    })
}

/// Looks a panel's collection up and lists its directory: a newly chosen
/// collection opens at its home; the Collection box then shows the name.
async fn open(hub: &Hub, who: &grants::Principal, mut panel: PanelState) -> (PanelState, Listing) {
    if panel.collection.is_empty() {
        panel.open_id = None;
        return (panel, Listing::Empty);
    }
    let path = match WirePath::decode(&panel.path) {
        Ok(path) => path,
        Err(_) => {
            return (
                panel,
                Listing::Problem("The path has a bad %-escape: write a % sign as %25.".into()),
            );
        }
    };
    // The endpoint the panel has open, while its box still shows that
    // endpoint's name (names are per owner: an endpoint shared with the
    // user is found by its id); else what the box says, a name or an id.
    let open = panel
        .open_id
        .as_deref()
        .and_then(|id| crate::endpoints::find(&*hub.store, who, id, Action::UseEndpoint).ok())
        .filter(|row| row.display_name == panel.collection || row.id == panel.collection);
    let found = match open {
        Some(row) => Ok(row),
        None => crate::endpoints::find(&*hub.store, who, &panel.collection, Action::UseEndpoint),
    };
    let row = match found {
        Ok(row) => row,
        Err(e) => {
            panel.open_id = None;
            return (panel, problem(Said::from(e)));
        }
    };
    let path = if panel.open_id.as_deref() == Some(row.id.as_str()) {
        path
    } else {
        panel.path = HOME.into();
        WirePath::decode(HOME).unwrap_or_default()
    };
    panel.collection = row.display_name.clone();
    panel.open_id = Some(row.id.clone());
    panel.mine = row.owner_id == who.user_id;
    match files::operate(hub, who, &row.id, FsOp::List { path }).await {
        Ok((
            _,
            FsOutcome::Listing {
                mut entries,
                truncated,
            },
        )) => {
            sort(&mut entries, panel.sort);
            (panel, Listing::Entries { entries, truncated })
        }
        Ok(_) => (
            panel,
            Listing::Problem("The endpoint did not answer with a listing.".into()),
        ),
        Err(e) => (panel, problem(Said::from(e))),
    }
}

fn problem(said: Said) -> Listing {
    match said {
        Said::Sentence(s) => Listing::Problem(s),
        Said::Page(e) => {
            Listing::Problem(format!("The hub could not look this up ({e}); try again."))
        }
    }
}

/// Directories first, then by the key; names as bytes.
fn sort(entries: &mut [FsEntry], order: Sort) {
    entries.sort_by(|a, b| {
        let dirs_first = (b.kind == FsEntryKind::Dir).cmp(&(a.kind == FsEntryKind::Dir));
        let by_key = match order.key() {
            "size" => a.size.cmp(&b.size),
            "time" => a.mtime.cmp(&b.mtime),
            _ => a.name.as_bytes().cmp(b.name.as_bytes()),
        };
        let by_key = if order.descending() {
            by_key.reverse()
        } else {
            by_key
        };
        dirs_first
            .then(by_key)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });
}

async fn render(
    hub: &Arc<Hub>,
    visitor: &Visitor,
    fields: &Fields,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let [one, two] = panels(fields);
    let ((one, first), (two, second)) =
        tokio::join!(open(hub, &visitor.who, one), open(hub, &visitor.who, two));
    let endpoints = hub
        .store
        .search_endpoints(Some(visitor.who.user_id), "", SUGGESTED)?;
    let page = view::file_manager(
        &visitor.frame(Nav::Files),
        &FileManager {
            panels: [one, two],
            listings: [first, second],
            notice,
            endpoints: &endpoints,
        },
    );
    Ok((status, Html(page)).into_response())
}

/// The File Manager again after a form, with the panels where they were.
fn back_to(panels: &[PanelState; 2], extra: &[(&str, &str)]) -> Response {
    let location = super::files_url(panels, None, extra);
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// A failed action: the File Manager again, saying why.
async fn refused(
    hub: &Arc<Hub>,
    visitor: &Visitor,
    fields: &Fields,
    said: Said,
) -> Result<Response, AppError> {
    match said {
        Said::Sentence(s) => {
            render(
                hub,
                visitor,
                fields,
                Some(Notice::Error(s)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Said::Page(e) => Err(e),
    }
}

fn say(text: &str) -> Said {
    Said::Sentence(text.into())
}

/// The panel a button was pressed in (its `from`), and the other one.
fn from_panel(fields: &Fields) -> Result<(usize, usize), Said> {
    match fields.get("from") {
        Some("1") => Ok((0, 1)),
        Some("2") => Ok((1, 0)),
        _ => Err(say("Press the button in the panel you mean.")),
    }
}

/// A checked entry: its name (one path component, exactly as the endpoint
/// listed it) and whether it is a directory.
fn checked(fields: &Fields, n: u8) -> Result<Vec<(WirePath, bool)>, Said> {
    fields
        .all(&format!("sel{n}"))
        .map(|value| {
            let (dir, encoded) = match value.split_once(':') {
                Some(("d", name)) => (true, name),
                Some(("f", name)) => (false, name),
                _ => return Err(say("A checked entry was not understood: reload the page.")),
            };
            let name = WirePath::decode(encoded)
                .map_err(|_| say("A checked entry was not understood: reload the page."))?;
            check_component(name.as_bytes())?;
            Ok((name, dir))
        })
        .collect()
}

/// One name inside a directory: not empty, no `/`, not `.` or `..`.
fn check_component(name: &[u8]) -> Result<(), Said> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(say(
            "A name must not be empty, “.” or “..”, and must not contain “/”.",
        ));
    }
    Ok(())
}

fn join(dir: &str, name: &WirePath) -> Result<WirePath, Said> {
    let mut bytes = WirePath::decode(dir)
        .map_err(|_| say("The path has a bad %-escape: write a % sign as %25."))?
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(name.as_bytes());
    Ok(WirePath::from_bytes(bytes))
}

fn open_id(panel: &PanelState, which: &str) -> Result<String, Said> {
    panel.open_id.clone().ok_or_else(|| {
        Said::Sentence(format!(
            "Open a collection in the {which} panel first: type its name in Collection and press Enter."
        ))
    })
}

/// The submission the form describes.
fn submission(fields: &Fields, now: i64) -> Result<SubmitTask, Said> {
    let panels = panels(fields);
    let (from, to) = from_panel(fields)?;
    let (src, dst) = (&panels[from], &panels[to]);
    let source_endpoint = open_id(src, "this")?;
    let destination_endpoint = open_id(dst, "other")?;
    let names = checked(fields, src.n)?;
    if names.is_empty() {
        return Err(say(
            "Check the entries to transfer first, then press Start in their panel.",
        ));
    }
    let items = names
        .iter()
        .map(|(name, dir)| {
            Ok(TransferItem {
                source: join(&src.path, name)?,
                destination: join(&dst.path, name)?,
                recursive: *dir,
            })
        })
        .collect::<Result<Vec<_>, Said>>()?;
    let sync_level = match fields.get("sync").unwrap_or("") {
        "" => None,
        text => {
            Some(SyncLevel::parse(text).ok_or_else(|| say("Choose a sync level from the list."))?)
        }
    };
    let deadline = match fields.get("deadline").unwrap_or("") {
        "" => None,
        secs => Some(
            now + secs
                .parse::<i64>()
                .map_err(|_| say("Choose a deadline from the list."))?,
        ),
    };
    // What a directory's copy leaves out, one pattern a line (as
    // `--exclude`); the hub checks the patterns as it checks the CLI's.
    let filters = fields
        .get("exclude")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|pattern| FilterRule::exclude(pattern.as_bytes()))
        .collect();
    let bwlimit = match fields.get("bwlimit").map(str::trim).unwrap_or("") {
        "" => None,
        text => {
            Some(parse_rate(text).map_err(|e| Said::Sentence(super::sentence(&e.to_string())))?)
        }
    };
    Ok(SubmitTask {
        submission_id: None,
        source_endpoint,
        destination_endpoint,
        items,
        options: TransferOptions {
            sync_level,
            delete: fields.checked("delete"),
            skip_source_errors: fields.checked("skip_errors"),
            preserve_mtime: fields.checked("keep_mtime"),
            filters,
            bwlimit,
            // A new submission, as the CLI's: the faster digest.
            checksum_algorithm: ChecksumAlgorithm::PREFERRED,
            ..TransferOptions::default()
        },
        label: fields
            .get("label")
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string),
        deadline,
        notify: None,
    })
}

/// `POST /files/transfer`: `Start` in a panel.
pub async fn transfer(
    State(hub): State<Arc<Hub>>,
    wake: Option<Extension<Wake>>,
    Posted {
        visitor, fields, ..
    }: Posted<SubmitsTasks>,
) -> Result<Response, AppError> {
    let now = grants::now();
    let repeat = match fields.get("repeat").unwrap_or("") {
        "" => Ok(None),
        secs => secs
            .parse::<i64>()
            .map(Some)
            .map_err(|_| say("Choose how often to repeat from the list.")),
    };
    let repeat = match repeat {
        Ok(repeat) => repeat,
        Err(said) => return refused(&hub, &visitor, &fields, said).await,
    };
    if let Some(interval) = repeat {
        // "Repeat every": a timer whose first run is now; the deadline
        // chosen is each run's.
        let created = submission(&fields, now).and_then(|mut submit| {
            let run_deadline = submit.deadline.take().map(|d| d - now);
            let create = CreateTimer {
                transfer: submit,
                interval,
                start: None,
                stop_after_runs: None,
                stop_after_date: None,
                run_deadline,
            };
            timers::create(&*hub.store, &visitor.who, create, now).map_err(Said::from)
        });
        return match created {
            Ok(_) => Ok(back_to(&panels(&fields), &[("done", "timer")])),
            Err(said) => refused(&hub, &visitor, &fields, said).await,
        };
    }
    let submitted = submission(&fields, now).and_then(|submit| {
        task_service::submit(&*hub.store, &hub.control, &visitor.who, submit, now)
            .map(|s| s.task_id)
            .map_err(Said::from)
    });
    match submitted {
        Ok(task_id) => {
            if let Some(Extension(wake)) = wake {
                wake.wake();
            }
            Ok(back_to(&panels(&fields), &[("started", &task_id)]))
        }
        Err(said) => refused(&hub, &visitor, &fields, said).await,
    }
}

/// Runs one file operation in panel `from`'s endpoint.
async fn operate(hub: &Hub, visitor: &Visitor, panel: &PanelState, op: FsOp) -> Result<(), Said> {
    let id = open_id(panel, "this")?;
    files::operate(hub, &visitor.who, &id, op)
        .await
        .map(drop)
        .map_err(Said::from)
}

/// `POST /files/mkdir`.
pub async fn mkdir(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<UsesEndpoints>,
) -> Result<Response, AppError> {
    let panels = panels(&fields);
    let done = async {
        let (from, _) = from_panel(&fields)?;
        let panel = &panels[from];
        let name = fields
            .get(&format!("mkdir{}", panel.n))
            .unwrap_or("")
            .trim();
        check_component(name.as_bytes())?;
        let path = join(&panel.path, &WirePath::from_bytes(name))?;
        operate(&hub, &visitor, panel, FsOp::Mkdir { path }).await
    }
    .await;
    match done {
        Ok(()) => Ok(back_to(&panels, &[("done", "mkdir")])),
        Err(said) => refused(&hub, &visitor, &fields, said).await,
    }
}

/// `POST /files/rename`: the one checked entry gets the new name.
pub async fn rename(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<UsesEndpoints>,
) -> Result<Response, AppError> {
    let panels = panels(&fields);
    let done = async {
        let (from, _) = from_panel(&fields)?;
        let panel = &panels[from];
        let mut names = checked(&fields, panel.n)?;
        if names.len() != 1 {
            return Err(say("Check exactly one entry to rename."));
        }
        let (old, _) = names.remove(0);
        let new = fields
            .get(&format!("rename{}", panel.n))
            .unwrap_or("")
            .trim();
        check_component(new.as_bytes())?;
        let op = FsOp::Rename {
            from: join(&panel.path, &old)?,
            to: join(&panel.path, &WirePath::from_bytes(new))?,
        };
        operate(&hub, &visitor, panel, op).await
    }
    .await;
    match done {
        Ok(()) => Ok(back_to(&panels, &[("done", "rename")])),
        Err(said) => refused(&hub, &visitor, &fields, said).await,
    }
}

/// `POST /files/delete`: asks first, then removes the checked entries.
pub async fn delete(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<UsesEndpoints>,
) -> Result<Response, AppError> {
    let panels = panels(&fields);
    let confirmed = fields.get("confirm") == Some("yes");
    let done = async {
        let (from, _) = from_panel(&fields)?;
        let panel = &panels[from];
        let names = checked(&fields, panel.n)?;
        if names.is_empty() {
            return Err(say("Check the entries to delete first."));
        }
        if !confirmed {
            let shown: Vec<String> = names
                .iter()
                .map(|(n, dir)| {
                    let name = view::shown_name(n.as_bytes());
                    if *dir { format!("{name}/") } else { name }
                })
                .collect();
            return Ok(Some(view::confirm_delete(
                &visitor.frame(Nav::Files),
                &panels,
                &fields.0,
                &panel.collection,
                &shown,
            )));
        }
        for (name, dir) in &names {
            let path = join(&panel.path, name)?;
            operate(
                &hub,
                &visitor,
                panel,
                FsOp::Remove {
                    path,
                    recursive: *dir,
                },
            )
            .await?;
        }
        Ok(None)
    }
    .await;
    match done {
        Ok(Some(confirm)) => Ok(Html(confirm).into_response()),
        Ok(None) => Ok(back_to(&panels, &[("done", "delete")])),
        Err(said) => refused(&hub, &visitor, &fields, said).await,
    }
}

/// The longest expiry the File Manager offers for a link (its list's last
/// choice); the CLI and the API take any.
const LINK_EXPIRY_MAX_SECS: i64 = 30 * 24 * 3600;

/// The one entry checked in the panel the form came from: its endpoint,
/// its path, whether it is a folder, and the panel's number; else
/// `refusal`.
fn one_checked(
    fields: &Fields,
    panels: &[PanelState],
    refusal: &str,
) -> Result<(String, WirePath, bool, u8), Said> {
    let (from, _) = from_panel(fields)?;
    let panel = &panels[from];
    let id = open_id(panel, "this")?;
    let mut names = checked(fields, panel.n)?;
    if names.len() != 1 {
        return Err(say(refusal));
    }
    let (name, dir) = names.remove(0);
    Ok((id, join(&panel.path, &name)?, dir, panel.n))
}

/// `POST /files/share`: `Share the checked folder` goes to its endpoint's
/// page with the Share form filled in (sharing is the owner's, there).
pub async fn share(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<UsesEndpoints>,
) -> Result<Response, AppError> {
    let panels = panels(&fields);
    let chosen = one_checked(&fields, &panels, "Check exactly one folder to share.").and_then(
        |(id, path, dir, _)| {
            if !dir {
                return Err(say("Check exactly one folder to share."));
            }
            // Only its owner shares an endpoint's folders.
            crate::endpoints::find(&*hub.store, &visitor.who, &id, Action::ManageEndpoint)
                .map_err(Said::from)?;
            Ok((id, path))
        },
    );
    match chosen {
        Ok((id, path)) => {
            let location = format!(
                "/endpoints/{}?{}",
                id,
                crate::oauth::encode_form(&[("share", &path.encode())])
            );
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
        }
        Err(said) => refused(&hub, &visitor, &fields, said).await,
    }
}

/// `POST /files/link`: `Get link` makes a link to the checked entry (a
/// file, or a folder) and shows its URL, once.
pub async fn link(
    State(hub): State<Arc<Hub>>,
    Posted {
        visitor, fields, ..
    }: Posted<UsesEndpoints>,
) -> Result<Response, AppError> {
    let panels = panels(&fields);
    let chosen = one_checked(
        &fields,
        &panels,
        "Check exactly one file or folder to get a link to.",
    )
    .and_then(|(id, path, _, n)| {
        let expires = match fields.get(&format!("link_expires{n}")).unwrap_or("") {
            "" => None,
            secs => {
                let secs: i64 = secs
                    .parse()
                    .ok()
                    .filter(|s| (1..=LINK_EXPIRY_MAX_SECS).contains(s))
                    .ok_or_else(|| say("Choose when the link expires from the list."))?;
                Some(crate::grants::now() + secs)
            }
        };
        let max_bytes = match fields
            .get(&format!("link_max_bytes{n}"))
            .unwrap_or("")
            .trim()
        {
            "" => None,
            text => Some(
                ferry_proto::rate::parse_scaled(text)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        say("The link's byte budget is a number of bytes with an optional K, M or G (powers of 1000), e.g. 500M or 10G; leave it empty for none.")
                    })?,
            ),
        };
        Ok(crate::links::NewLink {
            endpoint: id,
            path,
            expires,
            max_bytes,
        })
    });
    let new = match chosen {
        Ok(new) => new,
        Err(said) => return refused(&hub, &visitor, &fields, said).await,
    };
    match crate::links::create(&hub, &visitor.who, new).await {
        Ok((row, url)) => {
            render(
                &hub,
                &visitor,
                &fields,
                Some(Notice::Link {
                    url,
                    expires: row.expires,
                    max_bytes: row.max_bytes.and_then(|n| u64::try_from(n).ok()),
                }),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => refused(&hub, &visitor, &fields, Said::Sentence(e.to_string())).await,
    }
}
