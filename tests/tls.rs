//! TLS with clients we did not write: curl (--cacert, and -k against a
//! self-signed certificate), Python's ssl, openssl s_client (ALPN, SNI);
//! auto mode; wrong protocols; a stalled handshake; reload on SIGHUP; a TLS
//! connection handed over on the control socket; wss:// through the relay.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A test CA and leaf certificates signed by it, made with the openssl CLI.
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=handoff test CA",
            ],
        );
        Pki { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A leaf for `name` (and 127.0.0.1), as (cert, key) paths.
    fn leaf(&self, name: &str, tag: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        let (key, csr, crt, ext) = (
            format!("{tag}.key"),
            format!("{tag}.csr"),
            format!("{tag}.crt"),
            format!("{tag}.ext"),
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(
            d.join(&ext),
            format!("subjectAltName=DNS:{name},IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &ext,
            ],
        );
        (d.join(crt), d.join(key))
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl, python3"]
fn curl_with_the_ca_and_python_ssl_verify_the_certificate_and_get_http11() {
    let pki = Pki::new();
    let (crt, key) = pki.leaf("localhost", "leaf");
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        s(&crt),
        "--tls-key",
        s(&key),
    ]);
    let a = h.addr_of("https");
    let resolve = format!("localhost:{}:127.0.0.1", a.port());
    let url = format!("https://localhost:{}/a.txt", a.port());
    assert_eq!(
        curl(&["--cacert", s(&pki.ca()), "--resolve", &resolve, &url]),
        (true, "alpha\n".to_string())
    );
    // TLS 1.2 too.
    let out = Command::new("curl")
        .args([
            "-sSv",
            "-m",
            "5",
            "--tls-max",
            "1.2",
            "--cacert",
            s(&pki.ca()),
            "--resolve",
            &resolve,
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alpha\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLSv1.2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA, curl refuses: the verification is real.
    assert!(!curl(&["--resolve", &resolve, &url]).0);

    let script = r#"
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
# An HTTP/1.1-only client offers http/1.1 alone (the server prefers h2).
ctx.set_alpn_protocols(["http/1.1"])
c = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=ctx, timeout=10)
c.request("GET", "/b.txt"); r = c.getresponse(); body = r.read()
assert r.status == 200 and body == b"bravo\n", (r.status, body)
assert c.sock.selected_alpn_protocol() == "http/1.1", c.sock.selected_alpn_protocol()
c.request("GET", "/c.txt"); r = c.getresponse(); assert r.read() == b"charlie\n"
print(c.sock.version())
"#;
    let out = Command::new("python3")
        .args(["-c", script, s(&pki.ca()), &a.port().to_string()])
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        v.trim(),
        "TLSv1.3",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn serves_a_self_signed_certificate_whose_fingerprint_it_prints() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
    ]);
    let a = h.addr_of("https");
    assert_eq!(
        curl(&["-k", &format!("https://{a}/a.txt")]),
        (true, "alpha\n".to_string())
    );
    let printed = h.printed_fingerprint();
    let served = served_fingerprint(a);
    assert!(
        served.contains(&printed),
        "printed {printed}, served {served}"
    );
    assert!(h.log().contains("self-signed"));
}

fn s_client(a: std::net::SocketAddr, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &a.to_string(),
        "-alpn",
        "h2,http/1.1",
    ]);
    match sni {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn openssl_s_client_sees_alpn_and_the_certificate_for_its_sni() {
    let pki = Pki::new();
    let (c1, k1) = pki.leaf("localhost", "one");
    let (c2, k2) = pki.leaf("other.test", "two");
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        s(&c1),
        "--tls-key",
        s(&k1),
        "--tls-cert",
        s(&c2),
        "--tls-key",
        s(&k2),
    ]);
    let a = h.addr_of("https");
    let other = s_client(a, Some("other.test"));
    // h2 is preferred when the client offers it (HTTP/2 is on by default).
    assert!(other.contains("ALPN protocol: h2"), "{other}");
    assert!(
        other.contains("subject=CN = other.test") || other.contains("subject=CN=other.test"),
        "{other}"
    );
    let local = s_client(a, Some("localhost"));
    assert!(
        local.contains("CN = localhost") || local.contains("CN=localhost"),
        "{local}"
    );
    // No SNI, or a name no certificate covers: the first is the default.
    for sni in [None, Some("unknown.test")] {
        let d = s_client(a, sni);
        assert!(
            d.contains("subject=CN = localhost") || d.contains("subject=CN=localhost"),
            "{d}"
        );
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn with_http2_off_alpn_offers_http11_alone() {
    let site = site();
    let root = root_arg(site.path());
    // Off for the server, and off for one listener.
    for args in [
        vec!["--listen", "127.0.0.1:0,tls=on", "--http2", "off"],
        vec!["--listen", "127.0.0.1:0,tls=on,http2=off"],
    ] {
        let mut all = vec!["--root", root.as_str()];
        all.extend(args.iter().copied());
        let h = Handoff::start(&all);
        let out = s_client(h.addr_of("https"), Some("localhost"));
        assert!(out.contains("ALPN protocol: http/1.1"), "{args:?}: {out}");
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn auto_mode_serves_plain_and_tls_clients_on_one_port() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=auto",
    ]);
    let a = h.addr_of("http+https");
    assert_eq!(
        curl(&["-k", &format!("https://{a}/a.txt")]),
        (true, "alpha\n".to_string())
    );
    assert_eq!(
        curl(&[&format!("http://{a}/b.txt")]),
        (true, "bravo\n".to_string())
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn each_wrong_protocol_ends_cleanly_with_a_log_line() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
    ]);
    // Plain HTTP on the TLS port: an alert and a close, at once.
    let mut s = TcpStream::connect(h.addr_of("https")).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let t = Instant::now();
    let got = read_to_close(&mut s);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        got.is_empty() || got.as_bytes()[0] == 0x15,
        "not an alert: {got:?}"
    );
    // TLS on the plain port: a 400 and a close.
    let (ok, _) = curl(&["-k", &format!("https://{}/", h.addr)]);
    assert!(!ok);
    assert!(
        wait_until(Duration::from_secs(2), || {
            let log = h.log();
            log.contains("closing: TLS") && log.contains("a TLS handshake on a plain-HTTP listener")
        }),
        "{}",
        h.log()
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn cuts_off_a_stalled_handshake_at_the_setup_deadline_while_serving_others() {
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--setup-timeout",
        "1.5",
    ]);
    let a = h.addr_of("https");
    let mut stalled = TcpStream::connect(a).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap(); // a ClientHello's first bytes
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            curl(&["-k", &format!("https://{a}/a.txt")]),
            (true, "alpha\n".to_string())
        );
    }
    assert!(
        closed_within(&mut stalled, Duration::from_secs(4)),
        "the stalled handshake was not cut off"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
        "cut off after {took:?}"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl, python3"]
fn reloads_certificates_on_sighup_keeping_open_connections_and_a_broken_file_keeps_the_old_one() {
    let pki = Pki::new();
    let (c1, k1) = pki.leaf("localhost", "first");
    let (c2, k2) = pki.leaf("localhost", "second");
    let work = tempfile::tempdir().unwrap();
    let (crt, key) = (work.path().join("live.crt"), work.path().join("live.key"));
    std::fs::copy(&c1, &crt).unwrap();
    std::fs::copy(&k1, &key).unwrap();
    let site = site();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        s(&crt),
        "--tls-key",
        s(&key),
    ]);
    let script = r#"
import http.client, os, signal, ssl, sys, time
ca, port, pid, crt, key, c2, k2, log = sys.argv[1:9]
port, pid = int(port), int(pid)
def served():
    return ssl.get_server_certificate(("127.0.0.1", port))
def norm(pem):
    return ssl.PEM_cert_to_DER_cert(pem)
def wait_log(text):
    for _ in range(100):
        if text in open(log).read(): return
        time.sleep(0.05)
    raise SystemExit("log never said " + text)
first, second = open(sys.argv[6]).read(), open(crt).read()
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
c.request("GET", "/a.txt"); assert c.getresponse().read() == b"alpha\n"
assert norm(served()) == norm(open(crt).read())
open(crt, "w").write(open(c2).read()); open(key, "w").write(open(k2).read())
os.kill(pid, signal.SIGHUP); wait_log("certificates reloaded")
assert norm(served()) == norm(open(c2).read()), "new connections do not get the new certificate"
c.request("GET", "/b.txt"); assert c.getresponse().read() == b"bravo\n"   # the open connection goes on
open(crt, "w").write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
os.kill(pid, signal.SIGHUP); wait_log("reload failed")
assert norm(served()) == norm(open(c2).read()), "a broken file replaced the certificate"
c2conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
c2conn.request("GET", "/c.txt"); assert c2conn.getresponse().read() == b"charlie\n"
print("ok")
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            s(&pki.ca()),
            &h.addr_of("https").port().to_string(),
            &h.pid().to_string(),
        ])
        .args([s(&crt), s(&key), s(&c2), s(&k2), s(&h.log)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn serves_tls_on_a_connection_handed_over_marked_tls() {
    use handoff::fdpass;
    use handoff::wire::{self, Kind, Message};
    use std::os::fd::AsFd;
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("c.sock");
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--control",
        s(&ctl),
        "--listen",
        "127.0.0.1:0,tls=on",
    ]);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let client =
        std::thread::spawn(move || curl(&["-k", &format!("https://127.0.0.1:{port}/a.txt")]));
    let (ours, _) = l.accept().unwrap();
    let conn = fdpass::seqpacket_connect(&ctl).unwrap();
    fdpass::set_recv_timeout(conn.as_fd(), Duration::from_secs(10)).unwrap();
    let mut m = Message::new(Kind::PassConnection, 1);
    m.flags = wire::flags::TLS;
    fdpass::send_with_fds(
        conn.as_fd(),
        &[std::io::IoSlice::new(&m.encode())],
        &[ours.as_fd()],
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let r = fdpass::recv_with_fds(conn.as_fd(), &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(Message::decode(&buf[..r.len]).unwrap().kind(), Kind::Ack);
    drop(ours);
    assert_eq!(client.join().unwrap(), (true, "alpha\n".to_string()));
    drop(h);
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn a_client_that_sends_close_notify_after_its_request_gets_the_answer_then_a_close() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("localhost", "hc");
    let h = Handoff::start(&[
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
    ]);
    let mut c = tls_client(h.addr_of("https"), &pki.ca());
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.flush().unwrap();
    // close_notify and FIN right behind the request.
    c.conn.send_close_notify();
    c.conn.complete_io(&mut c.sock).unwrap();
    c.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let r = c.read_to_end(&mut got);
    let took = t.elapsed();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{r:?} {got}");
    // read_to_end ends cleanly only on the server's close_notify.
    assert!(r.is_ok(), "{r:?}");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
}

/// `handoff serve` with a TLS listener (a certificate from a fresh CA) and
/// one echo worker on `/echo`; `extra` arguments added.
fn wss_server(extra: &[&str]) -> (Pki, tempfile::TempDir, Handoff) {
    let pki = Pki::new();
    let (crt, key) = pki.leaf("localhost", "leaf");
    let site = site();
    let root = root_arg(site.path());
    let mut args = vec![
        "--root",
        &root,
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        s(&crt),
        "--tls-key",
        s(&key),
        "--ws",
        "/echo=echo",
        "--ws-workers",
        "1",
    ];
    args.extend_from_slice(extra);
    let h = Handoff::start(&args);
    (pki, site, h)
}

/// A rustls client stream that trusts `ca`.
fn tls_client(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let cfg = common::tls_client::trusting(&std::fs::read(ca).unwrap());
    let conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A `wss://` session to `path` at `a` (a TLS listener), trusting `pki`'s
/// CA: the client's stream and the server's 101.
fn wss(
    pki: &Pki,
    a: std::net::SocketAddr,
    path: &str,
) -> (
    tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    tungstenite::handshake::client::Response,
) {
    tungstenite::client(
        format!("wss://localhost:{}{path}", a.port()),
        tls_client(a, &pki.ca()),
    )
    .unwrap()
}

/// Reads slowly: 64 KiB at a time with a pause between.
struct Slow<S>(S);
impl<S: Read> Read for Slow<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(5));
        let n = buf.len().min(64 * 1024);
        self.0.read(&mut buf[..n])
    }
}
impl<S: Write> Write for Slow<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn an_exec_command_behind_wss_is_told_https_and_the_port_the_client_reached() {
    let (pki, _site, h) = wss_server(&["--ws", "/env=exec:env"]);
    let a = h.addr_of("https");
    let (mut ws, _) = wss(&pki, a, "/env");
    let mut lines = Vec::new();
    while let Ok(m) = ws.read() {
        match m {
            tungstenite::Message::Text(t) => lines.push(t.to_string()),
            tungstenite::Message::Close(_) => break,
            _ => {}
        }
    }
    assert!(lines.contains(&"HTTPS=on".to_string()), "{lines:?}");
    assert!(
        lines.contains(&format!("SERVER_PORT={}", a.port())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"SERVER_NAME=localhost".to_string()),
        "{lines:?}"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn relays_16_mib_each_way_over_wss_to_a_slow_reader_with_bounded_memory() {
    use tungstenite::Message;
    let (pki, _site, h) = wss_server(&[]);
    let a = h.addr_of("https");
    // Warm up (handshake paths, buffers), then measure the peak from here.
    let (mut ws, _) = tungstenite::client(
        format!("wss://localhost:{}/echo", a.port()),
        Slow(tls_client(a, &pki.ca())),
    )
    .unwrap();
    ws.send(Message::text("warm")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("warm"));
    let before = vm_hwm_kib(h.pid());
    let big: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    let t = Instant::now();
    let back = loop {
        match ws.read().unwrap() {
            Message::Binary(b) => break b,
            Message::Ping(_) | Message::Pong(_) => continue,
            m => panic!("unexpected {m:?}"),
        }
    };
    assert!(back[..] == big[..], "the 16 MiB message came back changed");
    let grew = vm_hwm_kib(h.pid()).saturating_sub(before);
    eprintln!(
        "16 MiB each way over wss in {:?}; the HTTP process's peak RSS grew by {grew} KiB",
        t.elapsed()
    );
    assert!(
        grew < 4 * 1024,
        "the HTTP process's peak memory grew by {grew} KiB relaying 16 MiB each way"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn holds_the_same_fds_after_tls_and_websocket_abuse() {
    use tungstenite::Message;
    let (pki, _site, h) = wss_server(&["--setup-timeout", "1"]);
    let a = h.addr_of("https");
    // Warm up every path once, then take the baseline.
    let (mut ws, _) = wss(&pki, a, "/echo");
    ws.send(Message::text("warm")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("warm"));
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    h.warm(&["/a.txt"]);
    let before = h.settled_fds();

    for i in 0..5 {
        // A handshake cut after its first bytes, or never begun.
        let mut c = TcpStream::connect(a).unwrap();
        if i % 2 == 0 {
            c.write_all(&[0x16, 0x03, 0x01]).unwrap();
        }
        drop(c);
        // A finished handshake, then gone without close_notify.
        let mut t = tls_client(a, &pki.ca());
        t.write_all(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = t.read(&mut buf);
        drop(t);
        // wss: a message, then the TCP connection dropped mid-conversation.
        let (mut ws, _) = wss(&pki, a, "/echo");
        ws.send(Message::binary(vec![7u8; 100_000])).unwrap();
        if i % 2 == 0 {
            let _ = ws.read();
        }
        drop(ws);
        // Plain ws handed off, then dropped.
        let mut p = TcpStream::connect(h.addr).unwrap();
        p.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
        let _ = p.read(&mut buf);
        drop(p);
        // A TLS connection that sends nothing: cut at the setup deadline.
        let idle = TcpStream::connect(a).unwrap();
        // Keep the client end open (a copy is leaked on purpose) so that only
        // the server's deadline can end this connection.
        std::mem::forget(idle.try_clone().unwrap());
        drop(idle);
    }
    assert!(
        wait_until(Duration::from_secs(10), || h.fds() == before),
        "fds before {before}, after {}\n{}",
        h.fds(),
        h.log()
    );
    // Still serving.
    assert_eq!(
        curl(&[
            "--cacert",
            s(&pki.ca()),
            "--resolve",
            &format!("localhost:{}:127.0.0.1", a.port()),
            &format!("https://localhost:{}/a.txt", a.port())
        ])
        .1,
        "alpha\n"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn on_sigterm_a_wss_client_gets_the_workers_1001_close_through_the_relay() {
    use tungstenite::Message;
    let (pki, _site, mut h) = wss_server(&["--shutdown-timeout", "10"]);
    let a = h.addr_of("https");
    let (mut ws, _) = wss(&pki, a, "/echo");
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    h.signal(nix::sys::signal::Signal::SIGTERM);
    let code = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, Some(1001));
    let _ = ws.flush();
    let status = h
        .wait_exit(Duration::from_secs(8))
        .expect("the server did not exit");
    assert!(status.success());
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs openssl"]
fn a_wss_session_goes_on_across_an_upgrade_its_relay_kept_by_the_old_process_until_it_ends() {
    use tungstenite::Message;
    let (pki, _site, mut h) = wss_server(&["--shutdown-timeout", "30"]);
    let a = h.addr_of("https");
    let (mut ws, _) = wss(&pki, a, "/echo");
    ws.send(Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("before"));
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    assert!(wait_until(Duration::from_secs(10), || h
        .log()
        .contains("keep their TLS relay in this process")));
    // The session itself has moved to the new process's worker; the old
    // process relays its TLS and stays for it.
    assert!(wait_until(Duration::from_secs(5), || h
        .log()
        .contains("WebSocket session moved in")));
    for i in 0..20 {
        let m = format!("after {i}");
        ws.send(Message::text(m.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(m));
    }
    assert!(
        h.wait_exit(Duration::from_millis(500)).is_none(),
        "the old process left its relay"
    );
    // New https connections are the new process's.
    let mut c = tls_client(a, &pki.ca());
    c.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    let _ = c.read_to_string(&mut got);
    assert!(got.ends_with("alpha\n"), "{got}");
    // The session ends: so does the old process.
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    let status = h
        .wait_exit(Duration::from_secs(10))
        .expect("the old process did not exit once its relay ended");
    assert!(status.success());
    let new_pid = *new_pids(&h.log()).first().expect("the new pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// A library handler that writes back what it knows of the connection.
fn connection_facts(req: &handoff::Request<'_>, res: &mut handoff::Response<'_>) {
    let tls = match req.tls() {
        Some(t) => format!(
            "tls={} sni={} alpn={} cipher={}",
            t.version,
            t.server_name.unwrap_or("-"),
            t.alpn
                .map_or("-".into(), |a| String::from_utf8_lossy(a).into_owned()),
            t.cipher
        ),
        None => "tls=none".into(),
    };
    res.body(format!(
        "{tls} local={} {:?}\n",
        req.local_addr(),
        req.version()
    ));
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn a_handler_sees_the_tls_session_its_sni_name_alpn_and_the_local_address() {
    use rustls::pki_types::pem::PemObject;
    let pki = Pki::new();
    let (crt, key) = pki.leaf("site.test", "site");
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(&crt)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (tx, rx) = std::sync::mpsc::channel();
    // A server is not Send (its handler need not be): it is made where it
    // runs.
    let t = std::thread::spawn(move || {
        let opts = handoff::Options {
            http2: true,
            ..Default::default()
        };
        let mut server = handoff::Server::new(opts, connection_facts).unwrap();
        server.set_tls(std::sync::Arc::new(cfg));
        let mut ports = Vec::new();
        for spec in ["127.0.0.1:0,tls=on", "127.0.0.1:0"] {
            let socket = handoff::app::Listen::parse(spec).unwrap().bind().unwrap();
            match server.add_socket(socket).unwrap() {
                handoff::Added::Listener(handoff::Addr::Inet(a)) => ports.push(a.port()),
                other => panic!("{other:?}"),
            }
        }
        tx.send((ports, server.inbox())).unwrap();
        server.run()
    });
    let (ports, inbox) = rx.recv().unwrap();
    let (tls_port, plain_port) = (ports[0], ports[1]);
    let resolve = format!("site.test:{tls_port}:127.0.0.1");
    let url = format!("https://site.test:{tls_port}/");
    let get = |extra: &[&str]| {
        let ca = pki.ca();
        let mut args = vec!["--cacert", s(&ca), "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        let (ok, body) = curl(&args);
        assert!(ok, "curl {args:?}");
        body
    };
    let local = format!("local=127.0.0.1:{tls_port}");
    let h2 = get(&["--http2"]);
    assert!(
        h2.starts_with("tls=TLSv1_3 sni=site.test alpn=h2 cipher=TLS13_"),
        "{h2}"
    );
    assert!(h2.contains(&local) && h2.contains("Http2"), "{h2}");
    let h1 = get(&["--http1.1", "--tls-max", "1.2"]);
    assert!(
        h1.starts_with("tls=TLSv1_2 sni=site.test alpn=http/1.1 cipher=TLS_ECDHE_"),
        "{h1}"
    );
    assert!(h1.contains(&local) && h1.contains("Http11"), "{h1}");
    // By address: no SNI name to see.
    let (ok, by_ip) = curl(&[
        "--cacert",
        s(&pki.ca()),
        &format!("https://127.0.0.1:{tls_port}/"),
    ]);
    assert!(ok && by_ip.contains("sni=-"), "{by_ip}");
    let (ok, plain) = curl(&[&format!("http://127.0.0.1:{plain_port}/")]);
    assert!(ok, "plain");
    assert_eq!(
        plain,
        format!("tls=none local=127.0.0.1:{plain_port} Http11\n")
    );
    inbox.close().unwrap();
    t.join().unwrap().unwrap();
}
