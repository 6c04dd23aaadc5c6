//! An app process for `handoff serve --app`: it answers on the client's own
//! socket (no proxy hop), keeps it for the client's next requests under its
//! prefix and gives it back for any other, or once idle. Its PID is in
//! `X-App-Pid`.
//!
//!     handoff serve --app '/api=exec:target/debug/examples/app_worker'
//!     app_worker /run/app.sock &   # then: --app /api=unix:/run/app.sock
//!     app_worker tcp:127.0.0.1:9000   # the same app behind a proxy
//!
//! Started by `exec:`, its line is `HANDOFF_APP_FD`; under systemd, its
//! `ListenSequentialPacket=` socket; else it listens where it is told.

use handoff::worker::Lines;
use handoff::{Options, Request, Response, Server};

fn main() -> std::io::Result<()> {
    let arg = std::env::args().nth(1);
    // Before any thread: the line is taken from the environment.
    let lines = match arg.as_deref() {
        Some(a) if a.starts_with("tcp:") => None,
        Some(path) => Some(Lines::listen(path.as_ref())?),
        None => Some(Lines::from_env()?),
    };
    let pid = std::process::id().to_string();
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| {
        let body = format!(
            "{} {} answered by app {pid} ({} bytes of body)\n",
            req.method(),
            req.target(),
            req.body().len()
        );
        res.header("X-App-Pid", &pid)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
    };
    let mut opts = Options::default();
    // How long a connection kept here waits, idle, before it goes back.
    if let Some(s) = std::env::var("APP_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts.timeouts.intra_stream = std::time::Duration::from_secs(s);
    }
    let mut server = Server::new(opts, handler)?;
    match (lines, arg) {
        // Until the HTTP process that started us goes (or for ever).
        (Some(lines), _) => lines.run(&mut server),
        (None, Some(tcp)) => {
            server.add_socket(std::net::TcpListener::bind(&tcp["tcp:".len()..])?)?;
            server.run()
        }
        (None, None) => unreachable!("no line only with tcp:"),
    }
}
