//! Loading the path policy the daemon enforces: `config-paths`, or
//! `-restrict-paths` when given at start (which then replaces it entirely).

use crate::DaemonError;
use ferry_endpoint::EndpointDir;
use ferry_paths::Policy;
use ferry_proto::local_api::PolicySource;
use std::path::Path;

/// Which source the daemon was told to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChoice {
    ConfigPaths,
    RestrictPaths(String),
}

/// Reads and parses the chosen policy. A malformed file is an error naming
/// the line; the caller decides whether that stops a start or is logged
/// while the old policy stays (SIGHUP).
pub fn load_policy(
    choice: &PolicyChoice,
    dir: &EndpointDir,
    home: &Path,
) -> Result<(Policy, PolicySource), DaemonError> {
    match choice {
        PolicyChoice::RestrictPaths(spec) => {
            let policy = Policy::from_restrict_paths(spec, home, dir.root()).map_err(|source| {
                DaemonError::Policy {
                    file: "-restrict-paths".into(),
                    source,
                }
            })?;
            let rules = policy.rules().len();
            Ok((
                policy,
                PolicySource::RestrictPaths {
                    spec: spec.clone(),
                    rules,
                },
            ))
        }
        PolicyChoice::ConfigPaths => {
            let file = dir.config_paths();
            let text = std::fs::read_to_string(&file).map_err(DaemonError::io("read", &file))?;
            let policy = Policy::from_config_paths(&text, home, dir.root()).map_err(|source| {
                DaemonError::Policy {
                    file: file.display().to_string(),
                    source,
                }
            })?;
            let rules = policy.rules().len();
            Ok((
                policy,
                PolicySource::ConfigPaths {
                    file: file.display().to_string(),
                    rules,
                },
            ))
        }
    }
}
