//! Signing task capabilities with the hub's task-signing key, so the
//! destination of a transfer can check that the hub authorised exactly this
//! task, these two endpoints and these paths.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ferry_proto::task::Capability;
use rcgen::{KeyPair, PublicKeyData, SigningKey};
use std::path::Path;

/// How long a capability authorises new data connections. A source opens
/// its streams as soon as it is told to start, so this is short; it bounds
/// what a destination that missed the end of an attempt (it was offline,
/// or restarted and forgot) could still accept, and leaves room for clocks
/// a little apart.
pub const CAPABILITY_TTL: i64 = 5 * 60;

pub struct TaskSigner {
    key: KeyPair,
}

impl std::fmt::Debug for TaskSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSigner").finish_non_exhaustive()
    }
}

impl TaskSigner {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let key = KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a usable key", path.display()))?;
        Ok(Self { key })
    }

    #[cfg(test)]
    pub fn generate() -> Self {
        Self {
            key: KeyPair::generate().expect("key generation"),
        }
    }

    /// The verifying key endpoints receive in the welcome (SEC1 point).
    pub fn public_key(&self) -> String {
        B64.encode(self.key.der_bytes())
    }

    pub fn sign(&self, capability: &Capability) -> anyhow::Result<String> {
        let body = capability.body();
        let signature = self.key.sign(&body).context("cannot sign the capability")?;
        Ok(Capability::seal(&body, &signature))
    }
}
