//! Started by real socket owners: systemd-socket-activate in its -l, -a,
//! --fdname and --inetd modes, and xinetd in the foreground with the configs
//! shipped in xinetd/. Also: the shipped systemd units pass
//! `systemd-analyze verify` without a word.

mod common;
use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_handoff");

/// A port that was free a moment ago (the owner under test binds it).
struct Owner(Child);
impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn activate(args: &[&str], log: &std::path::Path) -> Owner {
    let child = Command::new("systemd-socket-activate")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("systemd-socket-activate must be installed (scripts/test.sh installs systemd)");
    Owner(child)
}

/// `handoff serve` on a test site under systemd-socket-activate: `flags`
/// for it (`-a`, `--inetd`), `serve` after `--root`.
struct Activated {
    port: u16,
    log: std::path::PathBuf,
    owner: Owner,
    _dir: tempfile::TempDir,
    _site: tempfile::TempDir,
}

fn serve_activated(flags: &[&str], serve: &[&str]) -> Activated {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let root = root_arg(site.path());
    let (child, ports) = socket_activate(1, &log, |p| {
        let mut args = vec!["-l".to_string(), format!("127.0.0.1:{}", p[0])];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend([BIN, "serve", "--root", root.as_str()].map(String::from));
        args.extend(serve.iter().map(|f| f.to_string()));
        args
    });
    wait_for_port(ports[0]);
    Activated {
        port: ports[0],
        log,
        owner: Owner(child),
        _dir: dir,
        _site: site,
    }
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_to_close(&mut s)
}

/// Two requests on one connection.
fn get_twice(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_to_close(&mut s)
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_one_socket_from_systemd_socket_activate() {
    let a = serve_activated(&[], &[]);
    let port = a.port;
    assert!(get(port, "/a.txt").ends_with("alpha\n"));
    assert!(
        get(port, "/b.txt").ends_with("bravo\n"),
        "the same process keeps serving"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_two_named_sockets_and_takes_a_control_socket_by_name() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let root = root_arg(site.path());
    let (child, ports) = socket_activate(2, &log, |p| {
        [
            "-l",
            &format!("127.0.0.1:{}", p[0]),
            "-l",
            &format!("127.0.0.1:{}", p[1]),
            "--fdname=http:http",
            BIN,
            "serve",
            "--root",
            &root,
        ]
        .map(String::from)
        .to_vec()
    });
    let _o = Owner(child);
    let (p1, p2) = (ports[0], ports[1]);
    wait_for_port(p1);
    assert!(get(p1, "/a.txt").ends_with("alpha\n"));
    assert!(get(p2, "/b.txt").ends_with("bravo\n"));

    // A SOCK_SEQPACKET socket named "control" is the control socket.
    let ctl = dir.path().join("control.sock");
    let ctl_s = ctl.to_str().unwrap().to_string();
    let site2 = common::site();
    let _c = activate(
        &[
            "--seqpacket",
            "-l",
            &ctl_s,
            "--fdname=control",
            BIN,
            "serve",
            "--root",
            &root_arg(site2.path()),
        ],
        &dir.path().join("log2"),
    );
    assert!(wait_until(Duration::from_secs(5), || ctl.exists()));
    let conn = handoff::fdpass::seqpacket_connect(&ctl).unwrap();
    handoff::fdpass::set_recv_timeout(std::os::fd::AsFd::as_fd(&conn), Duration::from_secs(10))
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let msg = handoff::wire::Message::new(handoff::wire::Kind::PassListener, 1);
    handoff::fdpass::send_with_fds(
        std::os::fd::AsFd::as_fd(&conn),
        &[std::io::IoSlice::new(&msg.encode())],
        &[std::os::fd::AsFd::as_fd(&l)],
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let r = handoff::fdpass::recv_with_fds(std::os::fd::AsFd::as_fd(&conn), &mut buf)
        .unwrap()
        .unwrap();
    let answer = handoff::wire::Message::decode(&buf[..r.len]).unwrap();
    assert_eq!(answer.kind(), handoff::wire::Kind::Ack, "{answer:?}");
    assert!(get(addr.port(), "/c.txt").ends_with("charlie\n"));
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_an_accept_yes_connection_with_keep_alive_and_exits() {
    let a = serve_activated(&["-a"], &[]);
    let (port, log) = (a.port, &a.log);
    let both = get_twice(port);
    assert!(
        both.contains("alpha\n") && both.ends_with("bravo\n"),
        "{both}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("died with code 0")),
        "the per-connection process did not exit cleanly:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_inetd_nowait_on_stdin_and_keeps_stdout_clean() {
    let dir = tempfile::tempdir().unwrap();
    let applog = dir.path().join("app.log");
    let a = serve_activated(
        &["-a", "--inetd"],
        &["--inetd", "--log-file", applog.to_str().unwrap()],
    );
    let (port, log) = (a.port, &a.log);
    let both = get_twice(port);
    // Nothing but HTTP reached the client: no log line, no banner.
    assert!(
        both.starts_with("HTTP/1.1 200 OK\r\n") && both.ends_with("bravo\n"),
        "{both}"
    );
    assert_eq!(both.matches("HTTP/1.1 ").count(), 2);
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("died with code 0")
    }));
    assert!(
        std::fs::read_to_string(&applog)
            .unwrap()
            .contains("inetd nowait mode")
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn accepts_from_an_inetd_wait_listener_and_exits_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let applog = dir.path().join("app.log");
    let mut a = serve_activated(
        &["--inetd"],
        &[
            "--inetd",
            "--idle-exit",
            "1",
            "--log-file",
            applog.to_str().unwrap(),
        ],
    );
    let port = a.port;
    assert!(get(port, "/a.txt").ends_with("alpha\n"));
    assert!(get(port, "/b.txt").ends_with("bravo\n"));
    // Without -a, systemd-socket-activate execs handoff itself: it exits 0
    // after a second without connections.
    let status = wait_exit(&mut a.owner.0, Duration::from_secs(5)).expect("did not exit when idle");
    assert!(status.success());
    assert!(
        std::fs::read_to_string(&applog)
            .unwrap()
            .contains("inetd wait mode")
    );
}

fn wait_exit(c: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(within, || {
        status = c.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// The shipped xinetd file with a test's port, binary, root and log.
fn xinetd_service(file: &str, port: u16, root: &str, log: &std::path::Path) -> String {
    let text =
        std::fs::read_to_string(format!("{}/xinetd/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let line = match key {
            "port" => format!("    port        = {port}\n    bind        = 127.0.0.1"),
            "user" => "    user        = root".to_string(),
            "server" => format!("    server      = {BIN}"),
            "server_args" => {
                line.replace("--idle-exit 30", "--idle-exit 1")
                    .replace("/usr/share/handoff/site", root)
                    + &format!(" --log-file {}", log.display())
            }
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs xinetd"]
fn serves_under_a_real_xinetd_in_both_wait_modes() {
    let site = site();
    let root = root_arg(site.path());
    let dir = tempfile::tempdir().unwrap();
    let (pn, pw) = (free_port(), free_port());
    let (logn, logw) = (dir.path().join("nowait.log"), dir.path().join("wait.log"));
    let conf = dir.path().join("xinetd.conf");
    std::fs::write(
        &conf,
        format!(
            "defaults\n{{\n    instances = 20\n}}\n{}\n{}",
            xinetd_service("handoff-nowait", pn, &root, &logn),
            xinetd_service("handoff-wait", pw, &root, &logw)
        ),
    )
    .unwrap();
    let child = Command::new("xinetd")
        .args([
            "-dontfork",
            "-stayalive",
            "-f",
            conf.to_str().unwrap(),
            "-pidfile",
            dir.path().join("pid").to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xinetd must be installed (scripts/test.sh installs it)");
    let _x = Owner(child);
    wait_for_port(pn);
    wait_for_port(pw);

    // nowait: one process per connection, keep-alive within it.
    let both = get_twice(pn);
    assert!(
        both.contains("alpha\n") && both.ends_with("bravo\n"),
        "{both}"
    );
    assert!(get(pn, "/c.txt").ends_with("charlie\n"));
    assert!(wait_until(Duration::from_secs(3), || {
        std::fs::read_to_string(&logn)
            .unwrap_or_default()
            .contains("nowait mode")
    }));

    // wait: handoff accepts itself, exits when idle, and xinetd starts it
    // again on the next connection.
    assert!(get(pw, "/a.txt").ends_with("alpha\n"));
    assert!(get(pw, "/b.txt").ends_with("bravo\n"));
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&logw)
            .unwrap_or_default()
            .contains("idle; exiting")
    }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        get(pw, "/c.txt").ends_with("charlie\n"),
        "xinetd did not take the port back"
    );
    let wlog = std::fs::read_to_string(&logw).unwrap();
    assert_eq!(wlog.matches("inetd wait mode").count(), 2, "{wlog}");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-analyze"]
fn the_shipped_systemd_units_verify_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    // Every unit shipped, so that a new one cannot be forgotten here.
    let mut units: Vec<String> =
        std::fs::read_dir(format!("{}/systemd", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    units.sort();
    assert!(units.len() >= 7, "{units:?}");
    for u in &mut units {
        let text =
            std::fs::read_to_string(format!("{}/systemd/{u}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // verify checks that ExecStart's program exists: point it at ours.
        let text = text.replace("/usr/bin/handoff", BIN);
        std::fs::write(dir.path().join(&*u), &text).unwrap();
        // The several-instances templates are named by their port:
        // verified as an instance (verify's own instance, "i", is no port).
        if u.starts_with("handoff@.") || u.starts_with("handoff-control@.") {
            *u = u.replace("@.", "@8081.");
            std::fs::write(dir.path().join(&*u), &text).unwrap();
        }
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units.iter().map(|u| format!("./{u}")))
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze must be installed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
}

#[test]
fn listen_variables_meant_for_another_process_are_ignored_and_not_passed_on() {
    let site = site();
    let root = root_arg(site.path());
    for pid in ["1", "not-a-pid"] {
        let h = Handoff::start_env(
            &[
                ("LISTEN_PID", pid),
                ("LISTEN_FDS", "2"),
                ("LISTEN_FDNAMES", "http:control"),
            ],
            &[
                "--root",
                &root,
                "--ws",
                "/env=exec:echo \"${LISTEN_PID-unset} ${LISTEN_FDS-unset} ${LISTEN_FDNAMES-unset}\"",
                "--ws-workers",
                "1",
            ],
        );
        assert_eq!(h.get("/a.txt").text(), "alpha\n");
        let (mut ws, _) = tungstenite::client(format!("ws://{}/env", h.addr), h.connect()).unwrap();
        let got = loop {
            match ws.read().unwrap() {
                tungstenite::Message::Text(t) => break t.to_string(),
                _ => continue,
            }
        };
        assert_eq!(got, "unset unset unset", "LISTEN_PID={pid}");
    }
}

// ---- HTTP/2 on each of these sources ----

/// Two streams on one HTTP/2 connection (prior knowledge, a client by
/// hand: Debian's curl cannot reuse such a connection).
fn two_h2_gets(port: u16) {
    let mut c = common::h2raw::H2::connect(([127, 0, 0, 1], port).into());
    c.get(1, "/a.txt");
    assert_eq!(c.response(1).1, b"alpha\n");
    c.get(3, "/b.txt");
    assert_eq!(c.response(3).1, b"bravo\n");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_http2_with_prior_knowledge_on_a_socket_from_systemd() {
    let a = serve_activated(&[], &[]);
    two_h2_gets(a.port);
}

/// The one process of an `Accept=yes` connection serves its streams, and
/// exits when the client has gone.
#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_http2_on_an_accept_yes_connection_and_exits() {
    let a = serve_activated(&["-a"], &[]);
    two_h2_gets(a.port);
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&a.log)
            .unwrap_or_default()
            .contains("died with code 0")),
        "the per-connection process did not exit cleanly:\n{}",
        std::fs::read_to_string(&a.log).unwrap_or_default()
    );
}

/// inetd `nowait`'s stdin speaks HTTP/2 from its first byte.
#[test]
#[ignore = "full tier (scripts/test.sh): needs systemd-socket-activate"]
fn serves_http2_on_inetd_nowait_stdin() {
    let a = serve_activated(&["-a", "--inetd"], &["--inetd"]);
    two_h2_gets(a.port);
}
