//! CGI routes (`--cgi`, RFC 3875) with real scripts: shell ones here,
//! Python ones and curl over HTTP/2 in the full tier. What a script sees,
//! what its output becomes, and what its failures become (a deadline, no
//! output, a client that leaves, more requests than `--cgi-max`), with no
//! process and no fd left behind.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes an executable script.
fn script(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A site and a CGI folder with the scripts most tests use.
fn cgi_site() -> (tempfile::TempDir, tempfile::TempDir) {
    let bin = tempfile::tempdir().unwrap();
    let b = bin.path();
    script(
        b,
        "env.sh",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\nX-Script: env\\n\\n'\nenv | sort\nif [ -n \"$CONTENT_LENGTH\" ]; then echo body:; cat; fi\n",
    );
    script(
        b,
        "redirect.sh",
        "#!/bin/sh\nprintf 'Status: 302 Found\\nLocation: https://example.org/elsewhere?x=1\\n\\n'\n",
    );
    script(
        b,
        "absolute.sh",
        "#!/bin/sh\nprintf 'Location: http://example.org/\\r\\n\\r\\n'\n",
    );
    script(
        b,
        "missing.sh",
        "#!/bin/sh\nprintf 'Status: 404 Not Here\\nContent-Type: text/plain\\nContent-Length: 999\\n\\nno such thing\\n'\n",
    );
    script(b, "silent.sh", "#!/bin/sh\nexit 0\n");
    script(
        b,
        "garbage.sh",
        "#!/bin/sh\necho 'this is not a head'\necho\n",
    );
    script(
        b,
        "fails.sh",
        "#!/bin/sh\necho 'something broke' >&2\nexit 3\n",
    );
    script(
        b,
        "hang.sh",
        "#!/bin/sh\necho $$ > \"$PIDS\"\nsleep 300 &\necho $! >> \"$PIDS\"\nsleep 300\n",
    );
    script(
        b,
        "half.sh",
        "#!/bin/sh\necho $$ > \"$PIDS\"\nprintf 'Content-Type: text/plain\\n\\nstarted\\n'\nsleep 300\n",
    );
    script(
        b,
        "endless.sh",
        "#!/bin/sh\necho $$ > \"$PIDS\"\nprintf 'Content-Type: text/plain\\n\\n'\nexec yes 'a line of output that never ends'\n",
    );
    script(
        b,
        "slow.sh",
        "#!/bin/sh\nsleep 0.3\nprintf 'Content-Type: text/plain\\n\\nslow\\n'\n",
    );
    std::fs::write(b.join("plain.txt"), "not executable\n").unwrap();
    std::fs::create_dir(b.join("sub")).unwrap();
    script(
        &b.join("sub"),
        "deep.sh",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s|%s\\n' \"$SCRIPT_NAME\" \"$PATH_INFO\"\n",
    );
    std::os::unix::fs::symlink("/bin/sh", b.join("out.sh")).unwrap();
    (site(), bin)
}

fn start(site: &Path, bin: &Path, extra: &[&str]) -> Handoff {
    let cgi = format!("/cgi-bin={}", bin.display());
    let mut args = vec!["--root", site.to_str().unwrap(), "--cgi", &cgi];
    args.extend_from_slice(extra);
    Handoff::start(&args)
}

/// Like `start`, the scripts told where to write their PIDs (`$PIDS`).
fn start_telling_pids(site: &Path, bin: &Path, pids: &Path, extra: &[&str]) -> Handoff {
    let cgi = format!("/cgi-bin={}", bin.display());
    let mut args = vec![
        "--root",
        site.to_str().unwrap(),
        "--cgi",
        &cgi,
        "--cgi-passenv",
        "PIDS",
    ];
    args.extend_from_slice(extra);
    Handoff::start_env(&[("PIDS", pids.to_str().unwrap())], &args)
}

fn post(h: &Handoff, path: &str, body: &[u8]) -> Response {
    let mut s = h.connect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s).unwrap()
}

/// Every script the server started has been reaped, within 5 s.
fn all_reaped(h: &Handoff) -> bool {
    wait_until(Duration::from_secs(5), || {
        children_of(h.pid() as i32).is_empty()
    })
}

/// The server's log says `what` within 5 s.
fn assert_logged(h: &Handoff, what: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || h.log().contains(what)),
        "{what:?} not logged:\n{}",
        h.log()
    );
}

fn var<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn runs_the_script_a_path_names_with_the_request_in_its_environment() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &[]);
    let r = h.get_with(
        "/cgi-bin/env.sh/extra/path?a=1&b=two",
        "Proxy: http://evil.example/\r\nX-Custom: yes\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-script"), Some("env"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let t = r.text();
    for (name, value) in [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/cgi-bin/env.sh"),
        ("PATH_INFO", "/extra/path"),
        ("QUERY_STRING", "a=1&b=two"),
        ("REQUEST_URI", "/cgi-bin/env.sh/extra/path?a=1&b=two"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_PORT", &h.addr.port().to_string()),
        ("HTTP_X_CUSTOM", "yes"),
        ("HTTP_HOST", "t"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ] {
        assert_eq!(var(&t, name), Some(value), "{name} in\n{t}");
    }
    let file = bin.path().canonicalize().unwrap().join("env.sh");
    assert_eq!(var(&t, "SCRIPT_FILENAME"), Some(file.to_str().unwrap()));
    // httpoxy: no HTTP_PROXY; nothing of the server's own environment.
    assert_eq!(var(&t, "HTTP_PROXY"), None, "{t}");
    assert_eq!(var(&t, "HOME"), None, "{t}");
    assert_eq!(var(&t, "CONTENT_LENGTH"), None, "{t}");
    // A script in a folder under the prefix, with PATH_INFO.
    let r = h.get("/cgi-bin/sub/deep.sh/x/y");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/cgi-bin/sub/deep.sh|/x/y\n")
    );
}

#[test]
fn a_posted_body_reaches_the_scripts_stdin_with_its_length_and_type() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &[]);
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = post(&h, "/cgi-bin/env.sh", &body);
    assert_eq!(r.status, 200);
    let t = r.body;
    let at = t
        .windows(6)
        .position(|w| w == b"body:\n")
        .expect("the body echoed");
    let env = String::from_utf8_lossy(&t[..at]).into_owned();
    assert_eq!(var(&env, "REQUEST_METHOD"), Some("POST"));
    assert_eq!(var(&env, "CONTENT_LENGTH"), Some("200000"));
    assert_eq!(var(&env, "CONTENT_TYPE"), Some("text/x-test"));
    assert_eq!(var(&env, "HTTP_CONTENT_LENGTH"), None);
    assert!(&t[at + 6..] == body.as_slice(), "the body came back whole");
    // A chunked body is read whole first, so the script has its length.
    let mut s = h.connect();
    s.write_all(b"POST /cgi-bin/env.sh HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    let t = r.text();
    assert_eq!(var(&t, "CONTENT_LENGTH"), Some("11"), "{t}");
    assert!(t.ends_with("body:\nhello world"), "{t}");
}

#[test]
fn a_body_over_max_body_gets_413_and_no_script_runs() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &["--max-body", "1000"]);
    let r = post(&h, "/cgi-bin/env.sh", &[b'x'; 1001]);
    assert_eq!(r.status, 413);
    // No script was started for it (it would print its environment).
    assert!(children_of(h.pid() as i32).is_empty());
    assert!(!h.log().contains("CGI"), "{}", h.log());
    let r = post(&h, "/cgi-bin/env.sh", &[b'x'; 1000]);
    assert_eq!(r.status, 200);
    // Reaped once it has exited, a moment after its answer.
    assert!(all_reaped(&h));
}

#[test]
fn the_scripts_status_location_and_fields_reach_the_client_but_not_its_framing() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &[]);
    let r = h.get("/cgi-bin/redirect.sh");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://example.org/elsewhere?x=1")
    );
    let r = h.get("/cgi-bin/absolute.sh");
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("http://example.org/"))
    );
    // Its Content-Length was wrong: dropped, the engine frames the body.
    let r = h.get("/cgi-bin/missing.sh");
    assert_eq!((r.status, r.text().as_str()), (404, "no such thing\n"));
    assert_eq!(r.header("content-length"), None);
    // HEAD: the head only.
    let mut s = h.connect();
    s.write_all(b"HEAD /cgi-bin/env.sh HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_head(&mut s).unwrap();
    assert_eq!((r.status, r.header("x-script")), (200, Some("env")));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn a_local_redirect_is_answered_as_the_server_answers_that_path() {
    let (site, bin) = cgi_site();
    let big: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(site.path().join("big.bin"), &big).unwrap();
    // RFC 3875 §6.2.2: a Location that is a path, and no Status. What it
    // printed after the head is not the answer.
    for (name, to) in [
        ("local.sh", "/a.txt?x=1"),
        ("big.sh", "/big.bin"),
        ("gone.sh", "/no-such-file"),
        ("again.sh", "/cgi-bin/env.sh"),
    ] {
        script(
            bin.path(),
            name,
            &format!("#!/bin/sh\nprintf 'Location: {to}\\n\\n'\necho not this\n"),
        );
    }
    let h = start(site.path(), bin.path(), &[]);
    let r = h.get("/cgi-bin/local.sh");
    assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
    assert_eq!(r.header("location"), None);
    assert_eq!(r.header("content-length"), Some("6"));
    // Asked again as a GET, the body having been the script's; the
    // request's fields go along (a range here).
    let r = post(&h, "/cgi-bin/local.sh", b"some=form");
    assert_eq!((r.status, r.text().as_str()), (200, "alpha\n"));
    let mut s = h.connect();
    s.write_all(b"GET /cgi-bin/local.sh HTTP/1.1\r\nHost: t\r\nRange: bytes=1-3\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!((r.status, r.text().as_str()), (206, "lph"));
    // The connection goes on, and so does a HEAD, as a HEAD.
    s.write_all(b"HEAD /cgi-bin/local.sh HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(
        rest.to_ascii_lowercase().contains("content-length: 6\r\n"),
        "{rest}"
    );
    assert!(rest.ends_with("\r\n\r\n"), "{rest}");
    // A large file, streamed, byte for byte.
    let r = h.get("/cgi-bin/big.sh");
    assert_eq!(r.status, 200);
    assert!(r.body == big, "{} bytes", r.body.len());
    // Whatever the path gets from the server, the client gets.
    assert_eq!(h.get("/cgi-bin/gone.sh").status, 404);
    // A path answered later (another script) is not followed.
    let r = h.get("/cgi-bin/again.sh");
    assert_eq!(r.status, 502);
    assert_logged(&h, "local redirect not followed");
    // Every script was reaped.
    assert!(all_reaped(&h));
}

#[test]
fn a_path_that_names_no_executable_below_the_folder_is_refused_before_any_process() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &[]);
    for (path, status) in [
        ("/cgi-bin/nothing.sh", 404),
        ("/cgi-bin/plain.txt", 403),
        ("/cgi-bin/", 404),
        ("/cgi-bin/sub", 404),
        // `..` is refused, as the files handler refuses it.
        ("/cgi-bin/../cgi-bin/env.sh", 404),
        ("/cgi-bin/%2e%2e/etc/passwd", 404),
        // A symlink out of the folder is not followed.
        ("/cgi-bin/out.sh", 404),
    ] {
        assert_eq!(h.get(path).status, status, "{path}");
    }
    // Not under the prefix by whole segments: a file.
    assert_eq!(h.get("/cgi-binary").status, 404);
    assert_eq!(h.get("/a.txt").text(), "alpha\n");
}

#[test]
fn a_script_without_a_head_or_that_fails_gets_502_and_its_stderr_is_logged() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &[]);
    for path in [
        "/cgi-bin/silent.sh",
        "/cgi-bin/garbage.sh",
        "/cgi-bin/fails.sh",
    ] {
        assert_eq!(h.get(path).status, 502, "{path}");
    }
    assert_logged(&h, "something broke");
    assert!(all_reaped(&h));
}

#[test]
fn a_script_that_hangs_is_killed_at_the_deadline_with_its_group_and_gets_504() {
    let (site, bin) = cgi_site();
    let pids = tempfile::NamedTempFile::new().unwrap();
    let h = start_telling_pids(
        site.path(),
        bin.path(),
        pids.path(),
        &["--cgi-timeout", "1"],
    );
    let began = Instant::now();
    let r = h.get("/cgi-bin/hang.sh");
    let took = began.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // The script and the job it left in the background are both gone,
    // and reaped: no child of the server, zombie or not.
    let listed = std::fs::read_to_string(pids.path()).unwrap();
    let ids: Vec<i32> = listed
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(wait_until(Duration::from_secs(5), || ids
        .iter()
        .all(|&p| !alive(p))));
    assert!(all_reaped(&h));
    assert!(h.log().contains("ran past --cgi-timeout"), "{}", h.log());

    // Once the body has begun, the deadline cuts the connection instead:
    // a truncated body must not look whole.
    let mut s = h.connect();
    s.write_all(b"GET /cgi-bin/half.sh HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_head(&mut s).unwrap();
    assert_eq!(head.status, 200);
    let rest = read_to_close(&mut s);
    assert!(
        rest.contains("started\n") && !rest.ends_with("0\r\n\r\n"),
        "{rest:?}"
    );
    assert!(all_reaped(&h));
}

#[test]
fn a_client_that_leaves_mid_body_stops_the_script() {
    let (site, bin) = cgi_site();
    let pids = tempfile::NamedTempFile::new().unwrap();
    let h = start_telling_pids(site.path(), bin.path(), pids.path(), &[]);
    let before = h.settled_fds();
    let mut s = h.connect();
    s.write_all(b"GET /cgi-bin/endless.sh HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 1 << 20];
    s.read_exact(&mut got).unwrap();
    // The client reads no more for a while: the script is held back by
    // it (bounded buffers), not read into the server's memory.
    let rss = |pid: u32| -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        st.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    let first = rss(h.pid());
    std::thread::sleep(Duration::from_millis(700));
    let held = rss(h.pid());
    assert!(
        held < first + 2048,
        "RSS {first} KiB → {held} KiB while the client did not read"
    );
    let pid: i32 = std::fs::read_to_string(pids.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    drop(s);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "the script goes with its client"
    );
    assert!(all_reaped(&h));
    assert_eq!(h.settled_fds(), before, "no fd left behind");
}

#[test]
fn a_large_output_arrives_byte_for_byte_at_the_clients_pace() {
    let (site, bin) = cgi_site();
    let data: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = bin.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    script(
        bin.path(),
        "big.sh",
        &format!(
            "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\ncat '{}'\n",
            file.display()
        ),
    );
    let h = start(site.path(), bin.path(), &[]);
    // HTTP/1.0: close-delimited; HTTP/1.1: chunked, the connection kept.
    let mut s = h.connect();
    s.write_all(b"GET /cgi-bin/big.sh HTTP/1.0\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == data, "{} bytes of {}", r.body.len(), data.len());
    let mut s = h.connect();
    for _ in 0..2 {
        s.write_all(b"GET /cgi-bin/big.sh HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let head = read_head(&mut s).unwrap();
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        // Slowly at first.
        std::thread::sleep(Duration::from_millis(200));
        let mut r = head;
        let mut one = std::io::BufReader::new(&mut s);
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut one, &mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            one.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
        r.body = body;
        assert!(r.body == data, "{} bytes of {}", r.body.len(), data.len());
    }
}

#[test]
fn two_hundred_requests_at_once_with_cgi_max_20_are_each_answered_or_refused_with_503() {
    let (site, bin) = cgi_site();
    let h = start(site.path(), bin.path(), &["--cgi-max", "20"]);
    let before = h.settled_fds();
    let addr = h.addr;
    let threads: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(
                    b"GET /cgi-bin/slow.sh HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                let r = read_response(&mut s).unwrap();
                (
                    r.status,
                    r.text(),
                    r.header("retry-after").map(str::to_string),
                )
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for t in threads {
        match t.join().unwrap() {
            (200, body, _) => {
                assert_eq!(body, "slow\n");
                ok += 1;
            }
            (503, _, retry) => {
                assert_eq!(retry.as_deref(), Some("1"));
                busy += 1;
            }
            (s, body, _) => panic!("{s}: {body}"),
        }
    }
    assert_eq!(ok + busy, 200);
    assert!(ok >= 20, "{ok} answered, {busy} refused");
    assert!(
        busy > 0,
        "more than 20 at once were never refused: {ok} answered"
    );
    assert!(all_reaped(&h));
    assert_eq!(h.settled_fds(), before, "no fd left behind");
    // Every place was given back.
    assert_eq!(h.get("/cgi-bin/slow.sh").status, 200);
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3, curl"]
fn a_python_script_answers_get_and_post_over_http_1_1_and_http_2() {
    let (site, bin) = cgi_site();
    script(
        bin.path(),
        "form.py",
        r#"#!/usr/bin/env python3
import os, sys, urllib.parse
q = urllib.parse.parse_qs(os.environ.get("QUERY_STRING", ""))
n = int(os.environ.get("CONTENT_LENGTH") or 0)
form = urllib.parse.parse_qs(sys.stdin.read(n)) if n else {}
if "go" in q:
    sys.stdout.write("Status: 303 See Other\r\nLocation: /cgi-bin/form.py?name=" + q["go"][0] + "\r\n\r\n")
    sys.exit(0)
name = (form.get("name") or q.get("name") or ["nobody"])[0]
sys.stdout.write("Content-Type: text/plain; charset=utf-8\r\n\r\n")
sys.stdout.write(f"hello {name} via {os.environ['REQUEST_METHOD']} {os.environ['SERVER_PROTOCOL']}\n")
"#,
    );
    let h = start(site.path(), bin.path(), &[]);
    let url = |p: &str| format!("http://{}{p}", h.addr);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
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
    assert_eq!(
        curl(&[&url("/cgi-bin/form.py?name=ada")]),
        "hello ada via GET HTTP/1.1\n"
    );
    assert_eq!(
        curl(&["-d", "name=grace", &url("/cgi-bin/form.py")]),
        "hello grace via POST HTTP/1.1\n"
    );
    assert_eq!(
        curl(&[
            "--http2-prior-knowledge",
            "-d",
            "name=h2",
            &url("/cgi-bin/form.py")
        ]),
        "hello h2 via POST HTTP/2\n"
    );
    // Debian 12's curl 7.88 cannot follow a redirect on a reused
    // prior-knowledge connection (curl #10634): the redirect is looked at
    // and followed by hand.
    let said = curl(&[
        "--http2-prior-knowledge",
        "-i",
        &url("/cgi-bin/form.py?go=lin"),
    ]);
    assert!(said.starts_with("HTTP/2 303"), "{said}");
    assert!(
        said.contains("location: /cgi-bin/form.py?name=lin\r\n"),
        "{said}"
    );
    assert_eq!(
        curl(&["--http2-prior-knowledge", &url("/cgi-bin/form.py?name=lin")]),
        "hello lin via GET HTTP/2\n"
    );
    // A local redirect (no Status) is answered here, over HTTP/2 too.
    script(
        bin.path(),
        "local.py",
        "#!/usr/bin/env python3\nprint('Location: /b.txt', end='\\r\\n\\r\\n')\n",
    );
    assert_eq!(
        curl(&["--http2-prior-knowledge", &url("/cgi-bin/local.py")]),
        "bravo\n"
    );
    assert_eq!(curl(&[&url("/cgi-bin/local.py")]), "bravo\n");
    // A large body from curl over HTTP/2 (no content-length framing
    // needed: curl sends one, the script reads it).
    let big = "name=".to_string() + &"z".repeat(300_000);
    let file = bin.path().join("form.txt");
    std::fs::write(&file, &big).unwrap();
    let said = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &format!("@{}", file.display()),
        &url("/cgi-bin/form.py"),
    ]);
    assert_eq!(said.len(), "hello  via POST HTTP/2\n".len() + 300_000);
}

#[test]
fn a_running_script_goes_with_a_server_that_is_killed() {
    let (site, bin) = cgi_site();
    let pids = tempfile::NamedTempFile::new().unwrap();
    let mut h = start_telling_pids(site.path(), bin.path(), pids.path(), &[]);
    let mut s = h.connect();
    s.write_all(b"GET /cgi-bin/half.sh HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_head(&mut s).unwrap().status, 200);
    let pid: i32 = std::fs::read_to_string(pids.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    h.signal(nix::sys::signal::Signal::SIGKILL);
    h.wait_exit(Duration::from_secs(5))
        .expect("the server ended");
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "the script outlived its server"
    );
}
