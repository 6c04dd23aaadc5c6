//! Helpers for integration tests: start the real binary on port 0, read the
//! address it prints, and speak raw bytes to it.
#![allow(dead_code)]

pub mod h2raw;
pub mod tls_client;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Handoff {
    pub child: Child,
    pub addr: SocketAddr,
    /// What it printed at start-up (addresses, a self-signed fingerprint).
    pub lines: Vec<String>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Handoff {
    /// `handoff serve --listen 127.0.0.1:0 ARGS…`
    pub fn start(args: &[&str]) -> Handoff {
        Self::start_cmd(Command::new(env!("CARGO_BIN_EXE_handoff")), args)
    }

    /// Like `start`, with extra environment variables.
    pub fn start_env(env: &[(&str, &str)], args: &[&str]) -> Handoff {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff"));
        cmd.envs(env.iter().copied());
        Self::start_cmd(cmd, args)
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Waits for the server to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(within, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// Like `start`, with `prefix` run in front (e.g. `prlimit …`).
    pub fn start_wrapped(prefix: &[&str], args: &[&str]) -> Handoff {
        let mut cmd = Command::new(prefix[0]);
        cmd.args(&prefix[1..]).arg(env!("CARGO_BIN_EXE_handoff"));
        Self::start_cmd(cmd, args)
    }

    fn start_cmd(mut cmd: Command, args: &[&str]) -> Handoff {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        // Debug lines unless the test chose its own level.
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "debug");
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().expect("start handoff");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // One "listening on" line per --listen (ours comes first); other
        // lines ("control on …", a fingerprint) may come between.
        let want = 1 + args.iter().filter(|a| **a == "--listen").count();
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        while lines
            .iter()
            .filter(|l| l.starts_with("listening on"))
            .count()
            < want
        {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line.trim().to_string());
        }
        let line = lines
            .iter()
            .find(|l| l.starts_with("listening on http://"))
            .cloned()
            .unwrap_or_default();
        // Keep reading what follows, so the server never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            panic!(
                "handoff did not print its address: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Handoff {
            addr: addr.parse().unwrap(),
            child,
            log,
            lines,
            _dir: dir,
        }
    }

    /// The address of the listener announced with this scheme
    /// (`https`, `http+https`).
    /// The fingerprint of the self-signed certificate it printed
    /// (`tls self-signed sha256 AB:…`).
    pub fn printed_fingerprint(&self) -> String {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("tls self-signed sha256 "))
            .expect("a fingerprint line")
            .to_string()
    }

    /// The address of the `n`th `http://` listener announced (the one
    /// `start` adds is first).
    pub fn nth_addr(&self, n: usize) -> SocketAddr {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("listening on http://"))
            .nth(n)
            .unwrap_or_else(|| panic!("{:?}", self.lines))
            .parse()
            .unwrap()
    }

    pub fn addr_of(&self, scheme: &str) -> SocketAddr {
        let prefix = format!("listening on {scheme}://");
        let l = self
            .lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {scheme} listener: {:?}", self.lines));
        l[prefix.len()..].parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open fds of the server process, files left out: the open-file
    /// cache keeps files open by design (bounded; `file_cache.rs` counts
    /// them with `all_fds`), and with several loops which loop caches a
    /// file is the kernel's choice. Sockets, pipes and epoll fds are what a
    /// leak would show.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| !target.starts_with("/"))
            .count()
    }

    /// Every open fd of the server process.
    pub fn all_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Opens `paths` once (a HEAD each), so the open-file cache holds them
    /// before a test counts fds: a cached fd is no leak.
    pub fn warm(&self, paths: &[&str]) {
        for p in paths {
            let r = self.exchange(
                format!("HEAD {p} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            assert!(r.starts_with("HTTP/1.1 200 "), "{p}: {r}");
        }
    }

    /// Open fds once the count has stopped changing (connections that were
    /// just closed by a client take a moment to be closed by the server).
    pub fn settled_fds(&self) -> usize {
        let mut last = self.fds();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.fds();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// User+system CPU time of the server process so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `req` on a new connection and returns everything until the
    /// server closes it.
    pub fn exchange(&self, req: &[u8]) -> String {
        let mut s = self.connect();
        s.write_all(req).unwrap();
        read_to_close(&mut s)
    }

    pub fn get(&self, path: &str) -> Response {
        self.get_with(path, "")
    }

    /// A GET with more header lines (`Name: value\r\n` each).
    pub fn get_with(&self, path: &str, extra: &str) -> Response {
        let mut s = self.connect();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s).unwrap()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the first line a started `handoff` printed on its (piped) stdout,
/// `listening on http://ADDR`, and returns the address.
pub fn announced_addr(child: &mut Child) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("no address announced: {line:?}"))
        .parse()
        .unwrap()
}

/// Everything until EOF (or an error such as a reset), as text.
pub fn read_to_close(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// True if the server closed the connection (EOF or reset) within `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn read_line(s: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.push(b[0]);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

/// Reads one response (not for HEAD requests: use `read_head`).
pub fn read_response(s: &mut TcpStream) -> std::io::Result<Response> {
    let mut r = read_head(s)?;
    if let Some(len) = r.header("content-length") {
        let mut body = vec![0; len.parse().unwrap()];
        s.read_exact(&mut body)?;
        r.body = body;
    } else if r.header("transfer-encoding").is_some() {
        loop {
            let size =
                usize::from_str_radix(read_line(s)?.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                while !read_line(s)?.is_empty() {}
                break;
            }
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk)?;
            r.body.extend_from_slice(&chunk[..size]);
        }
    } else if !(r.status == 204 || r.status == 304 || r.status < 200) {
        s.read_to_end(&mut r.body)?;
    }
    Ok(r)
}

/// Reads a status line and header fields.
pub fn read_head(s: &mut TcpStream) -> std::io::Result<Response> {
    let status_line = read_line(s)?;
    let status = status_line
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let l = read_line(s)?;
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Ok(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

/// A folder of files to serve, removed when dropped.
pub fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(p.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(p.join("b.txt"), "bravo\n").unwrap();
    std::fs::write(p.join("c.txt"), "charlie\n").unwrap();
    std::fs::write(p.join("data.json"), "{}\n").unwrap();
    std::fs::write(p.join("ten.bin"), b"0123456789").unwrap();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::write(p.join("sub/index.html"), "<p>sub</p>\n").unwrap();
    dir
}

pub fn root_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Every PID the serving processes logged for their successors (an
/// upgrade), in order.
pub fn new_pids(log: &str) -> Vec<i32> {
    log.lines()
        .filter(|l| l.contains("the new process is ready"))
        .filter_map(|l| {
            l.split("pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Is the process running (a zombie has exited)?
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The PIDs of a process's children (`pgrep -P`).
pub fn children_of(pid: i32) -> Vec<i32> {
    // Each thread's children, as the kernel lists them (no pgrep needed).
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids: Vec<i32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    kids.sort();
    kids
}

/// Whether the log has an access line from `client` (its start, the
/// Combined Log Format's host field and a space) that contains `has`.
pub fn logged(log: &str, client: &str, has: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with(client) && l.contains(has))
}

/// A stand-in for systemd's notify socket: what handoff sends to
/// `NOTIFY_SOCKET`, one datagram a message, kept in order.
pub struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: std::os::unix::net::UnixDatagram,
    pub got: Vec<String>,
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            _dir: dir,
            path,
            sock,
            got: Vec::new(),
        }
    }

    /// The variable that points handoff here.
    pub fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }

    /// Reads messages until `until` holds of all that came, or `within`
    /// has passed; says whether it holds.
    pub fn until(&mut self, within: Duration, until: impl Fn(&[String]) -> bool) -> bool {
        let end = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !until(&self.got) && Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.got
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        until(&self.got)
    }

    /// Reads until a message containing `has` came (`within`), and gives
    /// its index.
    pub fn wait_for(&mut self, has: &str, within: Duration) -> Option<usize> {
        self.until(within, |m| m.iter().any(|x| x.contains(has)));
        self.position(has)
    }

    /// The index of the first message containing `has`.
    pub fn position(&self, has: &str) -> Option<usize> {
        self.got.iter().position(|x| x.contains(has))
    }
}

/// What `handoff ARGS` said on stderr when it would not start (it must
/// not).
pub fn refused_start(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A free TCP port on 127.0.0.1 (free when asked: bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// systemd-socket-activate listening on `ports` TCP ports that were free a
/// moment ago, its stderr in `log`; `args` makes its arguments from the
/// ports. A port can be taken between `free_port` and the bind (a parallel
/// test's listener, a client's source port): then systemd-socket-activate
/// fails to listen, and this starts it again on fresh ports rather than
/// let the test talk to somebody else's server.
pub fn socket_activate(
    ports: usize,
    log: &Path,
    args: impl Fn(&[u16]) -> Vec<String>,
) -> (Child, Vec<u16>) {
    let listening = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("Listening on ")
            .count()
    };
    for _ in 0..5 {
        let p: Vec<u16> = (0..ports).map(|_| free_port()).collect();
        let mut child = Command::new("systemd-socket-activate")
            .args(args(&p))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("systemd-socket-activate must be installed (scripts/test.sh installs systemd)");
        let mut exited = false;
        wait_until(Duration::from_secs(5), || {
            exited = child.try_wait().unwrap().is_some();
            exited || listening() >= ports
        });
        if !exited && listening() >= ports {
            return (child, p);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "systemd-socket-activate did not listen on fresh ports five times:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A real HAProxy, killed when dropped.
pub struct Haproxy(Child, tempfile::TempDir);

impl Haproxy {
    /// What it wrote on stderr so far.
    pub fn said(&self) -> String {
        std::fs::read_to_string(self.1.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts haproxy with `config` (`@DIR@` replaced by its directory).
pub fn haproxy(config: &str) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config.replace("@DIR@", dir.path().to_str().unwrap())).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .expect("haproxy (Debian's package; scripts/test.sh installs it)");
    Haproxy(child, dir)
}

/// A tool the test command installs into `.venv-py` (`scripts/test-deps.sh`),
/// or where the variable `var` points.
pub fn venv_tool(var: &str, name: &str) -> String {
    let path = std::env::var(var)
        .unwrap_or_else(|_| format!("{}/.venv-py/bin/{name}", env!("CARGO_MANIFEST_DIR")));
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: scripts/test.sh installs it"
    );
    path
}

/// The SHA-256 fingerprint of the certificate served at `addr`, as
/// `openssl x509 -fingerprint` writes it (`sha256 Fingerprint=AB:…`).
pub fn served_fingerprint(addr: SocketAddr) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A self-signed P-256 certificate for `localhost` and its key, made by
/// openssl in `dir`: (cert.pem, key.pem).
pub fn localhost_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// A WebSocket upgrade request for `path` on `h`, with `Host` and `extra`
/// header fields, for `tungstenite::client`.
pub fn upgrade_request(
    h: &Handoff,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> tungstenite::http::Request<()> {
    let mut req = tungstenite::http::Request::builder()
        .uri(format!("ws://{}{path}", h.addr))
        .header("Host", host)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        );
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    req.body(()).unwrap()
}

/// `handoff serve --root SITE EXTRA…` on the test site (`site()`), which
/// lives as long as the folder returned with it.
pub fn serve_site(extra: &[&str]) -> (Handoff, tempfile::TempDir) {
    let site = site();
    let root = root_arg(site.path());
    let mut args = vec!["--root", root.as_str()];
    args.extend_from_slice(extra);
    (Handoff::start(&args), site)
}

/// Upgrades the binary `rounds` times in a row, `pause` apart: SIGUSR2 to
/// `h`'s process, then to each new one once the one before has handed
/// over and exited. Returns the PID serving at the end.
pub fn upgrade_in_a_row(h: &mut Handoff, rounds: usize, pause: Duration) -> i32 {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    std::thread::sleep(pause);
    h.signal(Signal::SIGUSR2);
    assert!(
        h.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        h.log()
    );
    let mut serving = *new_pids(&h.log()).last().expect("a new process");
    for round in 2..=rounds {
        std::thread::sleep(pause);
        kill(Pid::from_raw(serving), Signal::SIGUSR2).unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || !alive(serving)),
            "round {round}: {serving} did not hand over\n{}",
            h.log()
        );
        let pids = new_pids(&h.log());
        assert_eq!(pids.len(), round, "{}", h.log());
        serving = pids[round - 1];
    }
    std::thread::sleep(pause);
    serving
}

/// Runs a library `Server` on its own thread, listening on a loopback
/// port; it ends with the test.
pub fn serve_in_background(
    opts: handoff::Options,
    handler: impl Fn(&handoff::Request<'_>, &mut handoff::Response<'_>) + Send + 'static,
) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = handoff::Server::new(opts, handler).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        tx.send(l.local_addr().unwrap()).unwrap();
        s.add_socket(std::os::fd::OwnedFd::from(l)).unwrap();
        loop {
            s.step(Some(Duration::from_millis(50))).unwrap();
        }
    });
    rx.recv().unwrap()
}

/// Waits until something accepts on the loopback `port`.
pub fn wait_for_port(port: u16) {
    assert!(
        wait_until(Duration::from_secs(5), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on {port}"
    );
}

/// A PROXY v2 header (TCP over IPv4) naming `src:sport` as the client.
pub fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

/// A connection to `addr` that begins with a PROXY v1 header naming
/// `client` (IPv4 or IPv6).
pub fn via_proxy(addr: SocketAddr, client: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let (family, to) = if client.contains(':') {
        ("TCP6", "::1")
    } else {
        ("TCP4", "127.0.0.1")
    };
    write!(s, "PROXY {family} {client} {to} 40000 {}\r\n", addr.port()).unwrap();
    s
}

/// A broadcast client on its own thread: every text it receives, until it
/// has `want` (set by the test once the senders are done) and nothing more
/// (a message twice) comes for 500 ms, or nothing at all comes for 15 s;
/// then the texts, the first failure (a close, an error) and the socket.
pub fn listener(
    mut ws: tungstenite::WebSocket<TcpStream>,
    want: std::sync::Arc<std::sync::Mutex<Option<usize>>>,
) -> std::thread::JoinHandle<(
    Vec<String>,
    Option<String>,
    tungstenite::WebSocket<TcpStream>,
)> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        // Short reads, to look at `want` between them (tungstenite keeps a
        // frame read in part across a timeout).
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut quiet_since = Instant::now();
        loop {
            let wanted = *want.lock().unwrap();
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    got.push(t.to_string());
                    quiet_since = Instant::now();
                }
                Ok(tungstenite::Message::Close(c)) => {
                    return (got, Some(format!("closed: {c:?}")), ws);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Some(w) = wanted
                        && (got.len() >= w && quiet_since.elapsed() > Duration::from_millis(500)
                            || quiet_since.elapsed() > Duration::from_secs(15))
                    {
                        return (got, None, ws);
                    }
                }
                Err(e) => return (got, Some(e.to_string()), ws),
            }
        }
    })
}
