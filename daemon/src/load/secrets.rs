//! Secrets of routes, read where the config says: an environment variable or a file. The policy
//! compiler asks for them through [`SecretSource`]; this is the one implementation that reads the
//! process's environment and the filesystem.

use crate::domain::policy::SecretSource;

/// Reads the process's environment and files.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemSecrets;

impl SecretSource for SystemSecrets {
    fn env(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }

    fn file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }
}
