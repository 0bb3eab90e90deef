//! Reading a config file, with errors printed as `file:line:col: path: message`.

use egress_core::config::load::load_bytes_from_env;
use egress_core::config::{Config, ConfigErrors};
use std::path::{Path, PathBuf};

/// A loaded config and the file it came from (relative cert paths resolve against its folder).
pub struct Source {
    pub path: PathBuf,
    pub config: Config,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{} has {} error(s)", .path, .errors.len())]
    Invalid { path: String, errors: ConfigErrors },
}

impl SourceError {
    /// Prints every error, one per line, prefixed with the file name.
    pub fn report(&self) {
        match self {
            SourceError::Read { .. } => eprintln!("egressctl: error: {self}"),
            SourceError::Invalid { path, errors } => {
                for e in errors.iter() {
                    eprintln!("{path}:{e}");
                }
                eprintln!(
                    "egressctl: {path}: {} error(s); nothing was written",
                    errors.len()
                );
            }
        }
    }
}

pub fn load(path: &Path) -> Result<Source, SourceError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|err| SourceError::Read {
        path: shown.clone(),
        err,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = load_bytes_from_env(&bytes, Some(dir)).map_err(|errors| SourceError::Invalid {
        path: shown,
        errors,
    })?;
    Ok(Source {
        path: path.to_path_buf(),
        config,
    })
}

impl Source {
    /// Resolves a path written in the config against the config file's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let joined = base.join(path);
        std::path::absolute(&joined).unwrap_or(joined)
    }
}
