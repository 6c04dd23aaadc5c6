//! Broadcast routes across instances through Redis Streams
//! (`--ws PATH=broadcast,bus=redis://…`, docs/bus.md), with a real
//! redis-server and a real HAProxy: every client on every instance gets
//! every message once, all in one order, through a `kill -9` of Redis and
//! an upgrade of one instance; and a message Redis cannot take in time is
//! refused to its sender (1013), never dropped without a word.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// A redis-server of the test's own on a free port, its data in `dir`
/// (append-only file, fsync'd on every write: a `kill -9` loses nothing
/// it answered), killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        Self::start_on(dir, free_port())
    }

    fn start_on(dir: &Path, port: u16) -> Redis {
        let child = Self::spawn(dir, port);
        let r = Redis {
            child,
            port,
            dir: dir.into(),
        };
        r.wait_ready();
        r
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's package; scripts/test.sh installs it)")
    }

    fn wait_ready(&self) {
        assert!(
            wait_until(Duration::from_secs(10), || self.ping()),
            "redis-server did not answer:\n{}",
            std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Started again on the same port, from its append-only file.
    fn restart(&mut self) {
        self.child = Self::spawn(&self.dir, self.port);
        self.wait_ready();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn connect(addr: SocketAddr, path: &str) -> Ws {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), s).expect("handshake");
    ws
}

/// Three instances on one Redis, each with a plain listener (the senders)
/// and a PROXY v2 one (HAProxy), and `--metrics` for HAProxy's checks.
fn instances(redis: &Redis, site: &Path) -> Vec<Handoff> {
    (0..3)
        .map(|_| {
            Handoff::start(&[
                "--root",
                &root_arg(site),
                "--listen",
                "127.0.0.1:0,proxy=v2",
                "--metrics",
                "127.0.0.1:0",
                "--ws",
                &format!("/chat=broadcast,bus={}", redis.url()),
                "--ws-workers",
                "2",
            ])
        })
        .collect()
}

/// Both of the bus's threads (reader, publisher) reach Redis within 5 s.
fn assert_connected(h: &Handoff) {
    assert!(
        wait_until(Duration::from_secs(5), || h
            .log()
            .matches("connected to Redis")
            .count()
            == 2),
        "{}",
        h.log()
    );
}

fn metrics_port(h: &Handoff) -> u16 {
    h.lines
        .iter()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .and_then(|a| a.trim_end_matches("/metrics").parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no metrics line: {:?}", h.lines))
        .port()
}

fn metric(h: &Handoff, name: &str) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", metrics_port(h))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The numbers of each sender's messages not in `got`, as ranges.
fn missing(got: &[String], sent: &[usize]) -> String {
    let mut out = String::new();
    for (i, &n) in sent.iter().enumerate() {
        let have: std::collections::HashSet<&str> = got.iter().map(String::as_str).collect();
        let mut run: Option<(usize, usize)> = None;
        for m in 0..n {
            if have.contains(format!("s{i}-{m}").as_str()) {
                if let Some((a, b)) = run.take() {
                    out += &format!("s{i}:{a}-{b} ");
                }
            } else {
                run = Some(run.map_or((m, m), |(a, _)| (a, m)));
            }
        }
        if let Some((a, b)) = run {
            out += &format!("s{i}:{a}-{b} ");
        }
    }
    out
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs redis-server and haproxy"]
fn thirty_clients_on_three_instances_get_every_message_once_in_one_order_through_a_redis_kill_and_an_upgrade()
 {
    let site = site();
    let data = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(data.path());
    let hs = instances(&redis, site.path());
    for h in &hs {
        assert!(
            wait_until(Duration::from_secs(10), || metric(h, "handoff_bus_down")
                == Some(0)),
            "the bus did not connect\n{}",
            h.log()
        );
    }
    let front = free_port();
    let servers: String = hs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!(
                "    server h{i} {} send-proxy-v2 check port {} inter 200ms\n",
                h.nth_addr(1),
                metrics_port(h)
            )
        })
        .collect();
    let ha = haproxy(&format!(
        "global
    log stderr format raw local0
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
frontend chat
    bind 127.0.0.1:{front}
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /metrics
{servers}"
    ));
    let via: SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    // All three up in HAProxy's eyes before the clients come.
    std::thread::sleep(Duration::from_millis(1500));
    let want = Arc::new(Mutex::new(None));
    let listeners: Vec<_> = (0..30)
        .map(|_| listener(connect(via, "/chat"), want.clone()))
        .collect();
    // HAProxy spread them: each instance took some.
    for (i, h) in hs.iter().enumerate() {
        let taken = h.log().matches("\"GET /chat HTTP/1.1\" 101").count();
        assert!(
            (5..=15).contains(&taken),
            "instance {i} took {taken} of 30\n{}",
            ha.said()
        );
    }

    // One sender on each instance: numbered messages every 2 ms for 10 s.
    // It hears every message too; what has come is read between sends.
    let stop = Arc::new(AtomicBool::new(false));
    // All connected before any sends: one that joins later does not hear
    // what was sent before it came.
    let sockets: Vec<Ws> = hs.iter().map(|h| connect(h.addr, "/chat")).collect();
    let senders: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0usize;
                let mut heard = Vec::new();
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = ws.send(Message::text(format!("s{i}-{n}"))) {
                        return (n, Some(format!("send: {e}")), heard, ws);
                    }
                    n += 1;
                    ws.get_ref().set_nonblocking(true).unwrap();
                    while let Ok(m) = ws.read() {
                        if let Message::Text(t) = m {
                            heard.push(t.to_string());
                        }
                    }
                    ws.get_ref().set_nonblocking(false).unwrap();
                    let next = start + Duration::from_millis(2 * n as u64);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                (n, None, heard, ws)
            })
        })
        .collect();

    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    // Redis killed for 2 s, then started again from its append-only file.
    redis.kill9();
    std::thread::sleep(Duration::from_secs(2));
    redis.restart();
    std::thread::sleep(Duration::from_secs(2));
    // An upgrade of the second instance while the messages flow.
    let old = hs[1].pid() as i32;
    hs[1].signal(nix::sys::signal::Signal::SIGUSR2);
    let new = wait_for_new(&hs[1]);
    assert!(
        wait_until(Duration::from_secs(20), || !alive(old)),
        "the old process did not hand everything over\n{}",
        hs[1].log()
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    let mut heard = Vec::new();
    for (i, s) in senders.into_iter().enumerate() {
        let (n, error, so_far, ws) = s.join().unwrap();
        assert_eq!(error, None, "sender {i}");
        sent.push(n);
        heard.push((so_far, ws));
    }
    let total: usize = sent.iter().sum();
    *want.lock().unwrap() = Some(total);
    // The senders hear the rest.
    let mut clients: Vec<(String, Vec<String>)> = Vec::new();
    for (i, (mut got, mut ws)) in heard.into_iter().enumerate() {
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        while got.len() < total {
            match ws.read() {
                Ok(Message::Text(t)) => got.push(t.to_string()),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("sender {i} after {} of {total}: {e}", got.len());
                    break;
                }
            }
        }
        clients.push((format!("sender {i}"), got));
    }
    for (k, l) in listeners.into_iter().enumerate() {
        let (got, error, _) = l.join().unwrap();
        assert_eq!(error, None, "listener {k} after {} messages", got.len());
        clients.push((format!("listener {k}"), got));
    }

    let mut first: Option<Vec<String>> = None;
    for (k, got) in clients {
        let mut seen = std::collections::HashSet::new();
        for m in &got {
            assert!(seen.insert(m.clone()), "listener {k} got {m} twice");
        }
        assert_eq!(
            got.len(),
            total,
            "{k}: {} of {total}; missing {}",
            got.len(),
            missing(&got, &sent)
        );
        // Each sender's messages in the order it sent them.
        for (i, &n) in sent.iter().enumerate() {
            let prefix = format!("s{i}-");
            let mine: Vec<usize> = got
                .iter()
                .filter_map(|m| m.strip_prefix(&prefix)?.parse().ok())
                .collect();
            assert_eq!(mine, (0..n).collect::<Vec<_>>(), "listener {k}, sender {i}");
        }
        match &first {
            None => first = Some(got),
            Some(f) => assert!(f == &got, "listener {k} saw another order"),
        }
    }
    assert!(total > 3 * 2000, "sent {sent:?}");
    for h in &hs {
        let log = h.log();
        assert!(log.contains("Redis lost"), "{log}");
        assert!(!log.contains("lost: the stream"), "{log}");
    }
    drop(ha);
    drop(new);
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs redis-server"]
fn without_redis_messages_wait_up_to_the_queue_and_past_it_the_sender_is_closed_with_1013() {
    let site = site();
    let data = tempfile::tempdir().unwrap();
    // Nothing listens there yet.
    let port = free_port();
    let mut n = NotifySocket::new();
    let h = Handoff::start_env(
        &[n.env(), ("WATCHDOG_USEC", "300000")],
        &[
            "--root",
            &root_arg(site.path()),
            "--metrics",
            "127.0.0.1:0",
            "--ws",
            &format!("/chat=broadcast,bus=redis://127.0.0.1:{port}/,bus-queue=5"),
        ],
    );
    // Said in the log, the metrics and STATUS=.
    assert!(
        wait_until(Duration::from_secs(5), || h.log().contains("no Redis")),
        "{}",
        h.log()
    );
    assert_eq!(metric(&h, "handoff_bus_down"), Some(2));
    assert!(
        n.wait_for("broadcast bus: no Redis", Duration::from_secs(5))
            .is_some(),
        "{:?}",
        n.got
    );
    let mut listener = connect(h.addr, "/chat");
    let mut sender = connect(h.addr, "/chat");
    for i in 0..8 {
        if sender.send(Message::text(format!("m{i}"))).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The sixth did not fit: its sender is closed with 1013, try again later.
    sender
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let close = loop {
        match sender.read() {
            Ok(Message::Close(c)) => break c,
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}\n{}", h.log()),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
    assert!(metric(&h, "handoff_bus_messages_total{way=\"refused\"}").unwrap_or(0) >= 1);

    // Redis comes: the five that waited go out, in order, and the other
    // client (never closed) hears exactly those.
    let redis = Redis::start_on(data.path(), port);
    listener
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        match listener.read() {
            Ok(Message::Text(t)) => got.push(t.to_string()),
            Ok(_) => {}
            Err(e) => panic!("after {got:?}: {e}\n{}", h.log()),
        }
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &h,
        "handoff_bus_down"
    ) == Some(0)));
    // A later STATUS= no longer says so.
    let cleared = |m: &[String]| {
        m.iter()
            .rposition(|x| x.contains("broadcast bus"))
            .is_some_and(|last| {
                m[last..]
                    .iter()
                    .any(|x| x.contains("STATUS=") && !x.contains("broadcast bus"))
            })
    };
    assert!(n.until(Duration::from_secs(5), cleared), "{:?}", n.got);
    // Nothing more, and nothing refused twice.
    listener
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(listener.read().is_err(), "a sixth message");
    drop(redis);
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs redis-server, redis-cli, openssl"]
fn a_bus_over_tls_with_a_password_and_a_key_prefix_never_logs_the_password() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_localhost_cert(dir.path());
    let port = free_port();
    let _redis = Killed(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--requirepass",
                "s3cret",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .args(["--tls-auth-clients", "no", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&ca)
            .args(["-p", &port.to_string(), "-a", "s3cret", "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(wait_until(Duration::from_secs(10), || cli(&["PING"]) == "PONG"));
    let route = |password: &str| {
        format!(
            "/chat=broadcast,bus=rediss://:{password}@localhost:{port}/,bus-prefix=site1:,bus-ca={}",
            ca.display()
        )
    };
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--ws", &route("s3cret")]);
    assert_connected(&h);
    let mut a = connect(h.addr, "/chat");
    let mut b = connect(h.addr, "/chat");
    a.send(Message::text("over tls")).unwrap();
    for ws in [&mut a, &mut b] {
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match ws.read().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), "over tls"),
            m => panic!("{m:?}"),
        }
    }
    // The stream is under the prefix; the message is its `d` field.
    assert_eq!(cli(&["XLEN", "site1:/chat"]), "1");
    assert!(cli(&["XRANGE", "site1:/chat", "-", "+"]).contains("over tls"));
    let log = h.log();
    assert!(log.contains("rediss://:***@localhost"), "{log}");
    assert!(!log.contains("s3cret"), "the password was logged:\n{log}");

    // A wrong password: no Redis, said (without the password), retried.
    let wrong = Handoff::start(&["--root", &root_arg(site.path()), "--ws", &route("wrong")]);
    assert!(
        wait_until(Duration::from_secs(5), || wrong.log().contains("no Redis")),
        "{}",
        wrong.log()
    );
    assert!(!wrong.log().contains("wrong@"), "{}", wrong.log());
}

/// The process that took over from `h` in an upgrade, ended (SIGTERM)
/// when dropped.
fn wait_for_new(h: &Handoff) -> Term {
    let mut pid = 0;
    assert!(
        wait_until(Duration::from_secs(20), || {
            pid = new_pids(&h.log()).last().copied().unwrap_or(0);
            pid != 0
        }),
        "no new process\n{}",
        h.log()
    );
    Term(pid)
}

struct Term(i32);

impl Drop for Term {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a certificate for localhost it signed, made by openssl in
/// `dir`: (ca.pem, cert.pem, key.pem). (webpki takes no self-signed CA
/// certificate as a server's own.)
fn ca_and_localhost_cert(
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "cert.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(p("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

/// A TCP proxy to Redis that, once `cut` is set, swallows the next answer
/// Redis sends on a connection that has sent an `XADD` (the publisher's)
/// and closes that connection: the entries went in, their answer is lost.
fn cutting_proxy(redis_port: u16, cut: Arc<AtomicBool>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                continue;
            };
            let publisher = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let seen = publisher.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if buf[..n].windows(4).any(|w| w == b"XADD") {
                        seen.store(true, Ordering::SeqCst);
                    }
                }
                let _ = s_out.shutdown(std::net::Shutdown::Both);
            });
            let cut = cut.clone();
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if publisher.load(Ordering::SeqCst) && cut.swap(false, Ordering::SeqCst) {
                        break; // swallowed
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Both);
                let _ = s_in.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs redis-server"]
fn a_publish_whose_answer_is_lost_is_not_sent_twice() {
    let site = site();
    let data = tempfile::tempdir().unwrap();
    let redis = Redis::start(data.path());
    let cut = Arc::new(AtomicBool::new(false));
    let via = cutting_proxy(redis.port, cut.clone());
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--ws",
        &format!("/chat=broadcast,bus=redis://127.0.0.1:{via}/"),
    ]);
    assert_connected(&h);
    let want = Arc::new(Mutex::new(Some(300)));
    let l = listener(connect(h.addr, "/chat"), want);
    let mut sender = connect(h.addr, "/chat");
    let drain = sender.get_ref().try_clone().unwrap();
    std::thread::spawn(move || std::io::copy(&mut &drain, &mut std::io::sink()));
    for i in 0..300 {
        if i % 100 == 50 {
            cut.store(true, Ordering::SeqCst);
        }
        sender.send(Message::text(format!("m{i}"))).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    let (got, error, _) = l.join().unwrap();
    assert_eq!(error, None);
    let expected: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "{}", h.log());
    let log = h.log();
    assert!(
        log.matches("whose answer was lost were in the stream already")
            .count()
            >= 2,
        "{log}"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs redis-server"]
fn an_upgrade_while_redis_is_away_publishes_what_waited_before_the_old_process_ends() {
    let site = site();
    let data = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(data.path());
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--ws",
        &format!("/chat=broadcast,bus={}", redis.url()),
    ]);
    assert_connected(&h);
    let want = Arc::new(Mutex::new(Some(40)));
    let l = listener(connect(h.addr, "/chat"), want);
    let mut sender = connect(h.addr, "/chat");
    let drain = sender.get_ref().try_clone().unwrap();
    std::thread::spawn(move || std::io::copy(&mut &drain, &mut std::io::sink()));
    let mut send = |from: usize, to: usize| {
        for i in from..to {
            sender.send(Message::text(format!("m{i}"))).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    send(0, 10);
    std::thread::sleep(Duration::from_millis(300));
    redis.kill9();
    // These wait in the old process's publisher.
    send(10, 30);
    let old = h.pid() as i32;
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    let new = wait_for_new(&h);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        alive(old),
        "the old process ended with messages unpublished"
    );
    redis.restart();
    assert!(
        wait_until(Duration::from_secs(20), || !alive(old)),
        "the old process did not end\n{}",
        h.log()
    );
    send(30, 40);
    let (got, error, _) = l.join().unwrap();
    assert_eq!(error, None, "{}", h.log());
    let expected: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "{}", h.log());
    // Its sessions stayed (the new reader had no place to give them)
    // until Redis came back and the waiting messages had gone.
    let log = h.log();
    assert!(
        log.contains("the broadcast bus has not started reading yet"),
        "{log}"
    );
    assert!(!log.contains("they are lost"), "{log}");
    drop(new);
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs redis-server"]
fn a_stopping_instance_waits_for_redis_to_take_what_waited_and_after_ten_seconds_says_what_it_did_not()
 {
    let site = site();
    let data = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(data.path());
    let start = |url: &str| {
        Handoff::start(&[
            "--root",
            &root_arg(site.path()),
            "--ws",
            &format!("/chat=broadcast,bus={url}"),
        ])
    };
    let mut a = start(&redis.url());
    let b = start(&redis.url());
    // C's Redis never comes.
    let mut c = start(&format!("redis://127.0.0.1:{}/", free_port()));
    for h in [&a, &b] {
        assert_connected(h);
    }
    let l = listener(connect(b.addr, "/chat"), Arc::new(Mutex::new(Some(5))));
    redis.kill9();
    for h in [&a, &c] {
        let mut s = connect(h.addr, "/chat");
        for i in 0..5 {
            s.send(Message::text(format!("m{i}"))).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        h.signal(nix::sys::signal::Signal::SIGTERM);
    }
    std::thread::sleep(Duration::from_secs(1));
    for h in [&mut a, &mut c] {
        assert!(h.child.try_wait().unwrap().is_none(), "{}", h.log());
        assert!(
            h.log().contains("waiting for Redis to take these"),
            "{}",
            h.log()
        );
    }
    redis.restart();
    // A publishes its five and ends; B's client hears them.
    assert!(
        a.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        a.log()
    );
    let (got, error, _) = l.join().unwrap();
    assert_eq!(error, None);
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(!a.log().contains("they are lost"), "{}", a.log());
    // C gives up after ten seconds, saying how many it could not publish.
    assert!(
        c.wait_exit(Duration::from_secs(15)).is_some(),
        "{}",
        c.log()
    );
    assert!(c.log().contains("they are lost messages=5"), "{}", c.log());
}
