//! Telling systemd how the daemon is doing, for `Type=notify` units:
//! `READY=1` once the socket answers, `STATUS=` lines as the hub link
//! changes, `STOPPING=1` on the way out. Outside systemd (`NOTIFY_SOCKET`
//! unset) every call is a no-op.

use crate::hub_link::HubView;
use sd_notify::NotifyState;
use tokio::sync::watch;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "could not notify the service manager");
    }
}

fn status_line(view: &HubView) -> String {
    match &view.detail {
        Some(detail) => format!("Hub: {} ({detail})", view.state.as_str()),
        None => format!("Hub: {}", view.state.as_str()),
    }
}

pub(crate) fn ready(view: &HubView) {
    send(&[NotifyState::Ready, NotifyState::Status(&status_line(view))]);
}

pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Forwards each change of the hub link as a `STATUS=` line until the link
/// task ends.
pub(crate) async fn follow_hub(mut hub: watch::Receiver<HubView>) {
    while hub.changed().await.is_ok() {
        let line = status_line(&hub.borrow_and_update());
        send(&[NotifyState::Status(&line)]);
    }
}
