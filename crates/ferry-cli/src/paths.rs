//! `ferry paths check PATH`: which rule allows or denies a path, and
//! whether read-only, from the policy the daemon enforces.

use crate::Invocation;
use crate::endpoint::ask_quietly;
use anyhow::Context as _;
use ferry_daemon::{PolicyChoice, load_policy};
use ferry_paths::Access;
use ferry_proto::local_api::{PolicySource, Response};
use std::path::Path;
use std::process::ExitCode;

pub fn check(
    ctx: &Invocation,
    path: &Path,
    restrict: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // With a daemon running, use the source it enforces (-restrict-paths
    // replaces config-paths for its lifetime); else config-paths on disk.
    let (choice, from) = match restrict {
        Some(spec) => (
            PolicyChoice::RestrictPaths(spec),
            "-restrict-paths given here".to_string(),
        ),
        None => match ask_quietly(ctx, ferry_proto::local_api::Request::Status) {
            Some(Response::Status(report)) => match report.policy {
                PolicySource::RestrictPaths { spec, .. } => (
                    PolicyChoice::RestrictPaths(spec),
                    format!(
                        "the -restrict-paths of the running daemon (pid {})",
                        report.pid
                    ),
                ),
                PolicySource::ConfigPaths { file, .. } => (
                    PolicyChoice::ConfigPaths,
                    format!(
                        "{file}, enforced by the running daemon (pid {}) since its last start or reload",
                        report.pid
                    ),
                ),
            },
            _ => (
                PolicyChoice::ConfigPaths,
                format!("{} (no daemon running)", ctx.dir.config_paths().display()),
            ),
        },
    };
    let (policy, _) = load_policy(&choice, &ctx.dir, &ctx.home)?;
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let decision = policy.decide(&absolute)?;
    if json {
        let doc = serde_json::json!({
            "path": decision.path.to_string_lossy(),
            "access": decision.access.to_string(),
            "allowed": decision.allows_read(),
            "writable": decision.allows_write(),
            "rule": decision.rule.as_ref().map(|r| r.to_string()),
            "explanation": decision.explain(),
            "policy": from,
        });
        outln!("{doc}");
    } else {
        outln!("{}", decision.explain());
        outln!("  policy: {from}");
    }
    Ok(if decision.access == Access::Deny {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
