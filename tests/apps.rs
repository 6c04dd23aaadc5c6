//! App processes (`--app`): `examples/app_worker.rs` behind `exec:` and
//! `unix:` routes answers on the client's own socket, keeps it for the
//! client's next requests under its prefix and gives it back for any
//! other, so one keep-alive connection alternates between the app and the
//! files; an app killed under load is replaced, and only what it held
//! fails.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The example app, built beside the binary by `cargo test`.
fn app_worker() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_handoff"));
    let p = bin.parent().unwrap().join("examples/app_worker");
    assert!(p.exists(), "{} is built by cargo test", p.display());
    p
}

fn start_exec(site: &std::path::Path, extra: &[&str]) -> Handoff {
    start_app(
        site,
        &format!("/api=exec:{}", app_worker().display()),
        extra,
    )
}

/// `--app APP` (two processes) and `extra`, once both are ready.
fn start_app(site: &std::path::Path, app: &str, extra: &[&str]) -> Handoff {
    let mut args = vec!["--root", site.to_str().unwrap(), "--app", app];
    args.extend_from_slice(extra);
    let h = Handoff::start(&args);
    // Its processes say they are ready in the log.
    assert!(
        wait_until(Duration::from_secs(10), || h
            .log()
            .matches("app process ready")
            .count()
            >= 2),
        "{}",
        h.log()
    );
    h
}

fn get(s: &mut std::net::TcpStream, path: &str) -> Response {
    // One write: `write!` makes several, and Nagle holds the rest of the
    // request for the server's delayed ACK.
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(s).unwrap()
}

#[test]
fn one_keep_alive_connection_alternates_between_the_app_and_the_files_a_thousand_times() {
    let site = site();
    let h = start_exec(site.path(), &[]);
    let kids: BTreeSet<String> = children_of(h.pid() as i32)
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(kids.len(), 2, "two app processes by default");
    let mut s = h.connect();
    let mut pids = BTreeSet::new();
    for i in 0..500 {
        let r = get(&mut s, &format!("/api/item/{i}?q={i}"));
        assert_eq!(r.status, 200, "request {i}");
        let pid = r
            .header("x-app-pid")
            .expect("answered by the app")
            .to_string();
        assert!(kids.contains(&pid), "{pid} is one of ours: {kids:?}");
        assert_eq!(
            r.text(),
            format!("GET /api/item/{i}?q={i} answered by app {pid} (0 bytes of body)\n")
        );
        pids.insert(pid);
        let r = get(&mut s, "/a.txt");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "alpha\n"),
            "request {i}"
        );
        assert_eq!(
            r.header("x-app-pid"),
            None,
            "the file is ours, not the app's"
        );
    }
    assert_eq!(
        pids.len(),
        2,
        "given back each time, lent afresh: both apps served"
    );
    // A body goes with the request: what came with the head, and the rest
    // read by the app from the socket.
    write!(
        s,
        "POST /api/form HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"world").unwrap();
    let r = read_response(&mut s).unwrap();
    assert!(r.text().ends_with("(10 bytes of body)\n"), "{}", r.text());
    assert_eq!(get(&mut s, "/b.txt").text(), "bravo\n");
    // Not under the prefix by whole segments: a file (404 here).
    assert_eq!(get(&mut s, "/apix").status, 404);
    drop(s);
    let log = h.log();
    assert_eq!(
        log.matches("\"GET /api/item/").count(),
        500,
        "one access line per request lent"
    );
}

#[test]
fn an_app_killed_under_load_is_replaced_and_only_what_it_held_fails() {
    let site = site();
    let h = start_exec(site.path(), &[]);
    let addr = h.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    for _ in 0..20 {
                        match s
                            .write_all(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
                            .map_err(drop)
                            .and_then(|()| read_response(&mut s).map_err(drop))
                        {
                            Ok(r) if r.status == 200 => ok += 1,
                            Ok(r) => {
                                assert!(matches!(r.status, 502 | 503), "{}", r.status);
                                failed += 1;
                                break;
                            }
                            // The app had it when it died: the connection
                            // went with it.
                            Err(()) => {
                                failed += 1;
                                break;
                            }
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let victim = children_of(h.pid() as i32)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for t in load {
        let (o, f) = t.join().unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 200, "{ok} answered");
    assert!(
        failed <= 8,
        "{failed} failed: more than the killed app could hold"
    );
    // Replaced: two apps again, the victim not among them, and both serve.
    assert!(wait_until(Duration::from_secs(5), || {
        let kids = children_of(h.pid() as i32);
        kids.len() == 2 && !kids.contains(&victim)
    }));
    let began = Instant::now();
    let mut pids = BTreeSet::new();
    while pids.len() < 2 && began.elapsed() < Duration::from_secs(5) {
        // A new connection each time: an app keeps the one it answers.
        let r = get(&mut h.connect(), "/api/after");
        assert_eq!(r.status, 200);
        pids.insert(r.header("x-app-pid").unwrap().to_string());
    }
    assert!(!pids.contains(&victim.to_string()));
    assert_eq!(pids.len(), 2);
}

#[test]
fn an_app_on_its_own_socket_serves_and_when_it_is_gone_the_client_gets_503() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let mut app = std::process::Command::new(app_worker())
        .arg(&sock)
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let route = format!("/api=unix:{}", sock.display());
    let h = Handoff::start(&["--root", site.path().to_str().unwrap(), "--app", &route]);
    assert!(wait_until(Duration::from_secs(5), || h
        .log()
        .contains("app process ready")));
    let mut s = h.connect();
    for _ in 0..50 {
        let r = get(&mut s, "/api/own");
        assert_eq!(r.header("x-app-pid"), Some(app.id().to_string().as_str()));
        assert_eq!(get(&mut s, "/c.txt").text(), "charlie\n");
    }
    let _ = app.kill();
    let _ = app.wait();
    assert!(wait_until(Duration::from_secs(5), || h
        .log()
        .contains("app process lost")));
    let r = get(&mut s, "/api/own");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("no app process for /api"), "{}", r.text());
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn an_app_started_by_socket_activation_takes_connections_on_its_own_socket() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let mut app = std::process::Command::new("systemd-socket-activate")
        .arg("--seqpacket")
        .arg("-l")
        .arg(&sock)
        .arg(app_worker())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("systemd-socket-activate");
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    let route = format!("/api=unix:{}", sock.display());
    let h = Handoff::start(&["--root", site.path().to_str().unwrap(), "--app", &route]);
    assert!(wait_until(Duration::from_secs(5), || h
        .log()
        .contains("app process ready")));
    let mut s = h.connect();
    for i in 0..100 {
        let r = get(&mut s, &format!("/api/activated/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        // systemd-socket-activate execs the app: the same PID.
        assert_eq!(r.header("x-app-pid"), Some(app.id().to_string().as_str()));
        assert_eq!(get(&mut s, "/a.txt").text(), "alpha\n");
    }
    let _ = app.kill();
    let _ = app.wait();
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl, openssl"]
fn http2_streams_and_tls_requests_are_relayed_to_the_app_over_a_socketpair() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let app = format!("/api=exec:{}", app_worker().display());
    let h = Handoff::start(&[
        "--root",
        site.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--app",
        &app,
    ]);
    assert!(wait_until(Duration::from_secs(10), || h
        .log()
        .matches("app process ready")
        .count()
        >= 2));
    let tls = h.addr_of("https");
    let plain = h.addr;
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-i",
                "--max-time",
                "10",
                "--cacert",
                cert.to_str().unwrap(),
            ])
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", tls.port())])
            .args(args)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let https = |p: &str| format!("https://localhost:{}{p}", tls.port());
    // HTTP/2 without TLS, HTTP/1.1 and HTTP/2 over TLS: each relayed.
    for (args, proto) in [
        (
            vec![
                "--http2-prior-knowledge".to_string(),
                format!("http://{plain}/api/one?x=1"),
            ],
            "HTTP/2 200",
        ),
        (
            vec!["--http1.1".to_string(), https("/api/one?x=1")],
            "HTTP/1.1 200",
        ),
        (
            vec!["--http2".to_string(), https("/api/one?x=1")],
            "HTTP/2 200",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let said = curl(&args);
        assert!(said.starts_with(proto), "{said}");
        assert!(said.to_ascii_lowercase().contains("x-app-pid: "), "{said}");
        assert!(said.contains("GET /api/one?x=1 answered by app "), "{said}");
    }
    // A body goes along; a HEAD gets the head only.
    let said = curl(&[
        "--http2",
        "--data-binary",
        "0123456789",
        &https("/api/post"),
    ]);
    assert!(
        said.contains("POST /api/post answered by app") && said.contains("(10 bytes of body)"),
        "{said}"
    );
    let said = curl(&["--http2", "-I", &https("/api/head")]);
    assert!(
        said.starts_with("HTTP/2 200") && said.to_ascii_lowercase().contains("x-app-pid"),
        "{said}"
    );
    // The same TLS connection goes on with the files between app requests.
    let said = curl(&[
        "--http1.1",
        &https("/api/a"),
        &https("/a.txt"),
        &https("/api/b"),
    ]);
    assert!(
        said.contains("GET /api/a answered")
            && said.contains("alpha\n")
            && said.contains("GET /api/b answered"),
        "{said}"
    );
}

#[test]
fn upgrades_under_load_lose_no_request_while_apps_hold_connections() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let site = site();
    let mut h = start_exec(site.path(), &[]);
    let first_apps = children_of(h.pid() as i32);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (addr, stop) = (h.addr, stop.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let (mut ok, mut pids) = (0, BTreeSet::new());
                while !stop.load(Ordering::Relaxed) {
                    let r = get(&mut s, "/api/during");
                    assert_eq!(r.status, 200, "after {ok}: {}", r.text());
                    pids.insert(r.header("x-app-pid").unwrap().to_string());
                    if i % 2 == 1 {
                        // Only the app's: its connection is kept there,
                        // idle between requests when the old process
                        // asks for everything back.
                        std::thread::sleep(Duration::from_millis(5));
                        ok += 1;
                        continue;
                    }
                    let r = get(&mut s, "/a.txt");
                    assert_eq!(
                        (r.status, r.text().as_str()),
                        (200, "alpha\n"),
                        "after {ok}"
                    );
                    ok += 1;
                }
                (ok, pids)
            })
        })
        .collect();
    let serving = upgrade_in_a_row(&mut h, 3, Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut all = BTreeSet::new();
    for c in clients {
        let (ok, pids) = c
            .join()
            .unwrap_or_else(|_| panic!("a client saw a failure\n{}", h.log()));
        assert!(ok > 20, "{ok}");
        all.extend(pids);
    }
    // Each process had its own apps; those of the old ones are gone.
    assert!(all.len() >= 4, "{all:?}");
    assert!(first_apps.iter().all(|&p| !alive(p)), "{first_apps:?}");
    let apps = children_of(serving);
    assert_eq!(apps.len(), 2);
    // A drain: the apps hold nothing, the process exits, its apps with it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serving),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(serving)),
        "{}",
        h.log()
    );
    assert!(wait_until(Duration::from_secs(5), || apps
        .iter()
        .all(|&p| !alive(p))));
}

/// Waits for the HTTP process's access log to show `n` requests lent.
fn assert_lent(h: &Handoff, n: usize) {
    assert!(
        wait_until(Duration::from_secs(2), || lent(h) == n),
        "{n} lent, not {}:\n{}",
        lent(h),
        h.log()
    );
}

/// How many requests under `/api/` the HTTP process's access log shows:
/// those it lent, not those an app answered on a connection it kept.
fn lent(h: &Handoff) -> usize {
    // A lent request's line has no status of ours: `"GET … HTTP/1.1" - -`.
    h.log()
        .lines()
        .filter(|l| l.contains("\"GET /api/") && l.contains("HTTP/1.1\" - -"))
        .count()
}

#[test]
fn an_app_keeps_a_connection_for_its_own_requests_and_gives_back_the_others() {
    let site = site();
    let h = start_exec(site.path(), &[]);
    let mut s = h.connect();
    let mut pids = BTreeSet::new();
    for i in 0..1000 {
        let r = get(&mut s, &format!("/api/kept/{i}"));
        assert_eq!(r.status, 200);
        pids.insert(r.header("x-app-pid").unwrap().to_string());
    }
    // One app answered all of them, lent once: no hop through us after.
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_lent(&h, 1);
    // A request that is not the app's goes back unread and is ours.
    let r = get(&mut s, "/b.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "bravo\n"));
    assert!(r.header("x-app-pid").is_none());
    // Not under the prefix by whole segments, nor once decoded.
    assert_eq!(get(&mut s, "/api/x").status, 200);
    assert_eq!(get(&mut s, "/apix").status, 404);
    let r = get(&mut s, "/api/x");
    let pid = r.header("x-app-pid").unwrap().to_string();
    // The app's path written otherwise is still the app's, kept; one that
    // leaves the prefix once decoded is not.
    let r = get(&mut s, "/%61pi//./y");
    assert_eq!(r.header("x-app-pid"), Some(pid.as_str()));
    let r = get(&mut s, "/api/../b.txt");
    assert!(r.header("x-app-pid").is_none());
    let ours = get(&mut h.connect(), "/api/../b.txt");
    assert_eq!((r.status, r.text()), (ours.status, ours.text()));
    assert_lent(&h, 3);
}

#[test]
fn with_app_keep_off_every_request_of_an_app_is_lent_and_logged_here() {
    let site = site();
    let h = start_exec(site.path(), &["--app-keep", "off"]);
    let mut s = h.connect();
    for i in 0..50 {
        assert_eq!(get(&mut s, &format!("/api/each/{i}")).status, 200);
    }
    assert_lent(&h, 50);
}

#[test]
fn a_route_under_basic_auth_is_not_kept_so_every_request_is_checked_here() {
    let site = site();
    let file = site.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-cbB", file.to_str().unwrap(), "alice", "wonderland"])
        .output()
        .expect("htpasswd (apache2-utils) must be installed");
    assert!(out.status.success());
    let rule = format!("/api={}", file.display());
    let h = start_exec(
        site.path(),
        &["--basic-auth", &rule, "--basic-auth-insecure"],
    );
    let mut s = h.connect();
    let with =
        "GET /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\n\r\n";
    s.write_all(with.as_bytes()).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-app-pid").is_some());
    // Had the app kept it, it would have answered this one unchecked.
    let r = get(&mut s, "/api/x");
    assert_eq!(r.status, 401);
    assert!(r.header("x-app-pid").is_none());
    // Nor does a request pipelined behind a lent one reach the app
    // unchecked: it comes back with its bytes.
    let mut s = h.connect();
    s.write_all(format!("{with}GET /api/y HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let first = read_response(&mut s).unwrap();
    assert_eq!(first.status, 200);
    assert!(first.header("x-app-pid").is_some());
    let second = read_response(&mut s).unwrap();
    assert_eq!(second.status, 401, "{}", second.text());
}

#[test]
fn a_request_pipelined_behind_an_apps_one_is_routed_here_with_its_body() {
    let site = site();
    let h = start_exec(site.path(), &[]);
    let mut s = h.connect();
    s.write_all(
        b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /api/form HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    assert!(r.header("x-app-pid").is_some());
    let r = read_response(&mut s).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "bravo\n"));
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("(5 bytes of body)\n"), "{}", r.text());
    let r = read_response(&mut s).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
}

#[test]
fn a_kept_connection_idle_past_the_apps_timeout_goes_back_and_is_served_here() {
    let site = site();
    let app = format!(
        "/api=exec:env APP_IDLE_SECONDS=1 {}",
        app_worker().display()
    );
    let h = start_app(site.path(), &app, &[]);
    let mut s = h.connect();
    assert_eq!(get(&mut s, "/api/one").status, 200);
    assert_eq!(get(&mut s, "/api/two").status, 200);
    assert_lent(&h, 1);
    // Past the app's idle timeout it is ours again, open: the next
    // request of the app's is lent anew, and a file is served here.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&mut s, "/api/three").status, 200);
    assert_lent(&h, 2);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get(&mut s, "/b.txt").text(), "bravo\n");
}

#[test]
fn an_address_rule_at_or_above_the_prefix_lets_the_app_keep_one_inside_does_not() {
    let site = site();
    // The same verdict for every path under /api, for the connection's
    // one client: kept.
    let h = start_exec(site.path(), &["--deny", "10.0.0.0/8"]);
    let mut s = h.connect();
    for i in 0..20 {
        assert_eq!(get(&mut s, &format!("/api/kept/{i}")).status, 200);
    }
    assert_lent(&h, 1);
    // A rule inside /api judges some of its paths only: not kept, and
    // the rule is applied to each request.
    let h = start_exec(site.path(), &["--deny", "/api/private=127.0.0.0/8"]);
    let mut s = h.connect();
    assert_eq!(get(&mut s, "/api/open").status, 200);
    assert_eq!(get(&mut s, "/api/private/x").status, 403);
    assert_eq!(get(&mut s, "/api/open").status, 200);
    assert_lent(&h, 2);
}
