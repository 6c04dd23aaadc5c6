//! `handoff serve`: wires the sources, the handler and the loop together.
//! `main.rs` only parses the command line into a [`ServeConfig`].

use std::io::{self, Write};
use std::path::PathBuf;

use crate::files::StaticFiles;
use crate::intake::listen::{self, ListenSpec};
use crate::server::{Added, Options, Server};

pub struct ServeConfig {
    pub listen: Vec<ListenSpec>,
    pub root: PathBuf,
    pub options: Options,
}

/// The demo site kept in the repository, the default root.
pub fn default_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("site")
}

pub fn serve(cfg: ServeConfig) -> io::Result<()> {
    crate::log::init();
    let files = StaticFiles::new(&cfg.root)
        .map_err(|e| io::Error::new(e.kind(), format!("root {}: {e}", cfg.root.display())))?;
    tracing::info!(root = %files.root().display(), "serving files");
    let mut server = Server::new(cfg.options, files)?;
    let mut stdout = io::stdout().lock();
    for spec in &cfg.listen {
        let fd = listen::bind(spec)?;
        if let Added::Listener(addr) = server.add_socket(fd)? {
            // Tests and scripts read this line to learn the port.
            match addr {
                crate::sys::Addr::Inet(a) => writeln!(stdout, "listening on http://{a}")?,
                other => writeln!(stdout, "listening on {other}")?,
            }
        }
    }
    stdout.flush()?;
    drop(stdout);
    server.run()
}
