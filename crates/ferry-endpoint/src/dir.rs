//! The config dir (default `~/.ferry`) and where each file lives in it.

use crate::{EndpointIdentity, SetupError, write_atomic};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An endpoint's config dir. Every path the daemon and the CLI use inside
/// it comes from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDir {
    root: PathBuf,
    /// Chosen with `-dir`/`FERRY_DIR` and not the default: every hint that
    /// tells the user what to run must name it again.
    named: bool,
}

impl EndpointDir {
    /// The dir given with `-dir`/`FERRY_DIR`, made absolute (without
    /// resolving symlinks) so it stays valid after the daemon changes its
    /// working directory; else `~/.ferry`.
    pub fn resolve(explicit: Option<&Path>, home: &Path) -> Result<Self, SetupError> {
        let default = home.join(".ferry");
        let root = match explicit {
            Some(dir) => std::path::absolute(dir).map_err(SetupError::io("resolve", dir))?,
            None => default.clone(),
        };
        let named = root != default;
        Ok(Self { root, named })
    }

    /// The `ferry` command line that does `args` for this endpoint, as a
    /// hint to print: `ferry -stop`, or `ferry -stop -dir /scratch/ep`
    /// when this is not the default dir (a hint without it would act on
    /// another endpoint).
    pub fn command(&self, args: &str) -> String {
        if !self.named {
            return format!("ferry {args}");
        }
        // `-start &`: the dir goes before the shell's `&`.
        let (args, background) = match args.strip_suffix(" &") {
            Some(args) => (args, " &"),
            None => (args, ""),
        };
        let dir = self.root.to_string_lossy();
        let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%~".contains(c);
        if dir.chars().all(safe) {
            format!("ferry {args} -dir {dir}{background}")
        } else {
            let quoted = dir.replace('\'', "'\\''");
            format!("ferry {args} -dir '{quoted}'{background}")
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_paths(&self) -> PathBuf {
        self.root.join("config-paths")
    }
    pub fn identity_file(&self) -> PathBuf {
        self.root.join("endpoint.toml")
    }
    pub fn key_file(&self) -> PathBuf {
        self.root.join("endpoint.key")
    }
    pub fn cert_file(&self) -> PathBuf {
        self.root.join("endpoint.crt")
    }
    pub fn hub_ca_file(&self) -> PathBuf {
        self.root.join("hub-ca.crt")
    }
    /// The CA that signs endpoint certificates (for endpoint-to-endpoint TLS).
    pub fn endpoint_ca_file(&self) -> PathBuf {
        self.root.join("endpoint-ca.crt")
    }
    /// Per-task journals of the data mover.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    /// The local API socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("ferry.sock")
    }
    /// Held (flock) by the running daemon; contains its pid.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("ferry.lock")
    }
    /// Where a detached daemon logs.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("ferry.log")
    }

    /// Creates the dir with mode 0700 if missing, and tightens an existing
    /// one: it holds the private key and the control socket. Returns the old
    /// mode when it had to be tightened, so the caller can say so.
    pub fn ensure_private(&self) -> Result<Option<u32>, SetupError> {
        match fs::metadata(&self.root) {
            Ok(meta) if !meta.is_dir() => Err(SetupError::Io {
                op: "use as config dir",
                path: self.root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            }),
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o077 == 0 {
                    return Ok(None);
                }
                fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                    .map_err(SetupError::io("chmod 700", &self.root))?;
                Ok(Some(mode))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.root)
                    .map_err(SetupError::io("create", &self.root))?;
                // `recursive` applies the umask to the last component too.
                fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                    .map_err(SetupError::io("chmod 700", &self.root))?;
                Ok(None)
            }
            Err(e) => Err(SetupError::io("inspect", &self.root)(e)),
        }
    }

    /// True once `endpoint.toml` exists, whatever its state.
    pub fn looks_set_up(&self) -> bool {
        self.identity_file().exists()
    }

    /// Loads the identity and checks that the credential files exist and that
    /// the private key is not readable by others (as ssh refuses such keys).
    pub fn load_identity(&self) -> Result<EndpointIdentity, SetupError> {
        let file = self.identity_file();
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SetupError::NotSetUp {
                    dir: self.root.clone(),
                    setup: self.command("-setup"),
                });
            }
            Err(e) => return Err(SetupError::io("read", &file)(e)),
        };
        let identity =
            EndpointIdentity::parse(&text).map_err(|reason| SetupError::InvalidIdentity {
                file: file.clone(),
                reason,
            })?;
        for needed in [self.key_file(), self.cert_file(), self.hub_ca_file()] {
            if !needed.exists() {
                return Err(SetupError::MissingFile {
                    file: needed,
                    setup: self.command("-setup --force"),
                });
            }
        }
        let key = self.key_file();
        let mode = fs::metadata(&key)
            .map_err(SetupError::io("inspect", &key))?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SetupError::KeyTooOpen { file: key, mode });
        }
        Ok(identity)
    }

    /// Writes `endpoint.toml` atomically, mode 0600.
    pub fn write_identity(&self, identity: &EndpointIdentity) -> Result<(), SetupError> {
        let file = self.identity_file();
        write_atomic(&file, identity.render().as_bytes(), 0o600)
            .map_err(SetupError::io("write", &file))
    }

    /// Writes the default `config-paths` unless one exists; a user's edited
    /// file is never replaced. Returns whether it wrote one.
    pub fn write_default_config_paths(&self) -> Result<bool, SetupError> {
        let file = self.config_paths();
        if file.exists() {
            return Ok(false);
        }
        write_atomic(&file, crate::DEFAULT_CONFIG_PATHS.as_bytes(), 0o600)
            .map_err(SetupError::io("write", &file))?;
        Ok(true)
    }
}

/// The invoking user's home: `$HOME` when set and absolute (as every shell
/// tool does), else the password database.
pub fn user_home() -> Result<PathBuf, SetupError> {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.is_absolute()
    {
        return Ok(home);
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.dir),
        _ => Err(SetupError::NoHome { uid: uid.as_raw() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_up(dir: &EndpointDir) {
        dir.ensure_private().unwrap();
        dir.write_identity(&EndpointIdentity {
            id: "0b5e3a52-8d1c-4a53-9c1e-2f0d2a9b7c11".into(),
            name: "laptop".into(),
            hub_url: "https://127.0.0.1:8443".into(),
            data_ports: None,
            data_address: None,
            node: None,
        })
        .unwrap();
        for f in [dir.key_file(), dir.cert_file(), dir.hub_ca_file()] {
            write_atomic(&f, b"-----BEGIN-----\n", 0o600).unwrap();
        }
    }

    #[test]
    fn a_fresh_dir_is_not_set_up_and_says_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EndpointDir::resolve(Some(&tmp.path().join("ep")), tmp.path()).unwrap();
        let err = dir.load_identity().unwrap_err();
        assert!(err.to_string().contains("ferry -setup"), "{err}");
    }

    #[test]
    fn identity_round_trips_and_open_keys_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EndpointDir::resolve(Some(&tmp.path().join("ep")), tmp.path()).unwrap();
        set_up(&dir);
        assert_eq!(dir.load_identity().unwrap().name, "laptop");
        fs::set_permissions(dir.key_file(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = dir.load_identity().unwrap_err();
        assert!(
            matches!(err, SetupError::KeyTooOpen { mode: 0o644, .. }),
            "{err}"
        );
        fs::remove_file(dir.cert_file()).unwrap();
        assert!(matches!(
            dir.load_identity(),
            Err(SetupError::MissingFile { .. })
        ));
    }

    #[test]
    fn private_dir_is_created_0700_and_loose_dirs_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EndpointDir::resolve(Some(&tmp.path().join("a/b")), tmp.path()).unwrap();
        assert_eq!(dir.ensure_private().unwrap(), None);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.root()), 0o700);
        fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(dir.ensure_private().unwrap(), Some(0o755));
        assert_eq!(mode(dir.root()), 0o700);
    }

    #[test]
    fn default_config_paths_never_replaces_a_users_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EndpointDir::resolve(Some(tmp.path()), tmp.path()).unwrap();
        assert!(dir.write_default_config_paths().unwrap());
        assert!(
            fs::read_to_string(dir.config_paths())
                .unwrap()
                .contains("\n~/,0,1\n")
        );
        fs::write(dir.config_paths(), "/data,0,0\n").unwrap();
        assert!(!dir.write_default_config_paths().unwrap());
        assert_eq!(
            fs::read_to_string(dir.config_paths()).unwrap(),
            "/data,0,0\n"
        );
    }

    #[test]
    fn relative_dirs_become_absolute() {
        let dir = EndpointDir::resolve(Some(Path::new("rel/ep")), Path::new("/h")).unwrap();
        assert!(dir.root().is_absolute());
        let default = EndpointDir::resolve(None, Path::new("/h")).unwrap();
        assert_eq!(default.command("-stop"), "ferry -stop");
        let same = EndpointDir::resolve(Some(Path::new("/h/.ferry")), Path::new("/h")).unwrap();
        assert_eq!(same.command("-stop"), "ferry -stop");
        let other = EndpointDir::resolve(Some(Path::new("/s/ep-1")), Path::new("/h")).unwrap();
        assert_eq!(other.command("-stop"), "ferry -stop -dir /s/ep-1");
        let spaced =
            EndpointDir::resolve(Some(Path::new("/s/it's here")), Path::new("/h")).unwrap();
        assert_eq!(
            spaced.command("-start &"),
            "ferry -start -dir '/s/it'\\''s here' &"
        );
        assert_eq!(default.root(), Path::new("/h/.ferry"));
    }
}
