//! Why `serve` could not start, for the exit status (`cli` maps it),
//! and `handoff check`: the same configuration steps `serve` takes first,
//! without a socket, so an operator catches a broken certificate or root
//! before `systemctl reload` touches the running server (nginx's `-t`).
//! The unit runs no `ExecStartPre=handoff check` (systemd restarts a
//! failing `ExecStartPre=` despite `RestartPreventExitStatus=`; README).

use std::fmt;
use std::io;

use super::{ServeConfig, default_root};
use crate::files::StaticFiles;
use crate::tls;

/// Where starting failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The configuration is wrong (root, certificates, log file): starting
    /// again will not help.
    Config,
    /// A socket could not be had (an address in use or not ours, a path
    /// not writable): may pass once the other holder is gone.
    Bind,
}

/// An error marked with its stage, carried inside an `io::Error`.
#[derive(Debug)]
struct Staged {
    stage: Stage,
    error: io::Error,
}

impl fmt::Display for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Staged {}

/// Marks `e` as failing at `stage` (its kind and message stay).
pub(crate) fn staged(stage: Stage, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), Staged { stage, error: e })
}

/// Marks `e` as a configuration error (for `cli`: options that do not
/// go together).
pub fn staged_config(e: io::Error) -> io::Error {
    staged(Stage::Config, e)
}

/// The stage an error from `serve` or `check` was marked with, if any
/// (unmarked: a failure at run time).
pub fn stage_of(e: &io::Error) -> Option<Stage> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Staged>())
        .map(|s| s.stage)
}

/// The root folder, as `serve` finds it.
pub(crate) fn root(cfg: &ServeConfig) -> io::Result<(std::path::PathBuf, &'static str)> {
    let (root, whence) = match &cfg.root {
        Some(r) => (r.clone(), "--root"),
        None => default_root().map_err(|e| staged(Stage::Config, e))?,
    };
    let files = StaticFiles::new(&root, cfg.file_cache.clone()).map_err(|e| {
        staged(
            Stage::Config,
            io::Error::new(e.kind(), format!("root {}: {e}", root.display())),
        )
    })?;
    // The error pages open beneath it, or the start stops naming the one.
    let files = files
        .with_error_pages(&cfg.error_pages)
        .map_err(|e| staged(Stage::Config, e))?;
    Ok((files.root().to_path_buf(), whence))
}

/// `handoff check`: the root, the certificates, the log file. Returns what
/// was checked, a line each; the first failure is marked `Stage::Config`.
pub fn check(cfg: &ServeConfig) -> io::Result<Vec<String>> {
    let mut said = Vec::new();
    let (root, whence) = root(cfg)?;
    said.push(format!("root {} ({whence})", root.display()));
    if !cfg.tls_certs.is_empty() {
        tls::load_all(&cfg.tls_certs).map_err(|e| staged(Stage::Config, e))?;
        for c in &cfg.tls_certs {
            said.push(format!(
                "certificate {} with key {}",
                c.cert.display(),
                c.key.display()
            ));
        }
    }
    if let Some(p) = &cfg.log.file {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .map_err(|e| {
                staged(
                    Stage::Config,
                    io::Error::new(e.kind(), format!("log file {}: {e}", p.display())),
                )
            })?;
        said.push(format!("log file {}", p.display()));
    }
    for r in &cfg.ws.routes {
        said.push(format!("WebSocket route {}", r.path));
    }
    if let Some(u) = &cfg.user {
        let r = crate::sys::privileges::RunAs::resolve(u).map_err(|e| staged(Stage::Config, e))?;
        said.push(format!("runs as uid {} gid {} once bound", r.uid, r.gid));
    }
    super::auth::BasicAuth::new(&cfg.basic_auth, true).map_err(|e| staged(Stage::Config, e))?;
    for rule in &cfg.basic_auth {
        said.push(format!(
            "basic auth for {} from {}",
            rule.realm,
            rule.file.display()
        ));
    }
    super::cgi::Cgi::new(&cfg.cgi).map_err(|e| staged(Stage::Config, e))?;
    for rule in &cfg.cgi.rules {
        said.push(format!(
            "CGI scripts for {} in {}",
            rule.prefix,
            rule.dir.display()
        ));
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_survives_inside_an_io_error_and_plain_errors_have_none() {
        let e = staged(
            Stage::Bind,
            io::Error::new(io::ErrorKind::AddrInUse, "127.0.0.1:80: in use"),
        );
        assert_eq!(stage_of(&e), Some(Stage::Bind));
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(e.to_string(), "127.0.0.1:80: in use");
        assert_eq!(stage_of(&io::Error::other("x")), None);
    }
}
