//! The request API with clients we did not write: curl -F (several files,
//! a repeated field), a browser-style urlencoded form from Python, query
//! strings, cookies and header views, streaming to disk, a skipped body,
//! and malformed multipart bodies.

mod common;
mod forms_app;
use common::*;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use handoff::Options;

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-m", "20"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn app() -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        forms_app::serve(dir.path().to_path_buf(), Options::default()),
        dir,
    )
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn reads_curl_f_with_several_files_and_a_repeated_field() {
    let (addr, dir) = app();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.bin");
    std::fs::write(&a, "alpha file\n").unwrap();
    std::fs::write(&b, "bravo\r\nbytes").unwrap();
    let out = curl(&[
        "-F",
        "title=Hello world",
        "-F",
        "tag=a",
        "-F",
        "tag=b",
        "-F",
        &format!("files=@{}", a.display()),
        "-F",
        &format!("files=@{};type=application/x-thing", b.display()),
        &format!("http://{addr}/form"),
    ]);
    assert!(
        out.contains("title=Hello world file=None type=None\n"),
        "{out}"
    );
    assert!(out.contains("tags=a,b\n"), "{out}");
    assert!(
        out.contains("files=alpha file\n file=Some(\"a.txt\") type=Some(\"text/plain\")"),
        "{out}"
    );
    assert!(
        out.contains(
            "files=bravo\r\nbytes file=Some(\"b.bin\") type=Some(\"application/x-thing\")"
        ),
        "{out}"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3"]
fn decodes_a_browser_style_urlencoded_form() {
    let (addr, _dir) = app();
    let script = r#"
import sys, urllib.parse, urllib.request
data = urllib.parse.urlencode([("name", "José Ñandú"), ("q", "a+b&c=d %"), ("multi", "1"), ("multi", "2")]).encode()
req = urllib.request.Request("http://%s/form" % sys.argv[1], data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
print(urllib.request.urlopen(req, timeout=10).read().decode(), end="")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &addr.to_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("name=José Ñandú file=None"), "{out}");
    assert!(out.contains("q=a+b&c=d % file=None"), "{out}");
    assert!(
        out.contains("multi=1 ") && out.contains("multi=2 "),
        "{out}"
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn decodes_query_parameters_cookies_and_header_views() {
    let (addr, _dir) = app();
    let out = curl(&[&format!(
        "http://{addr}/query?q=caf%C3%A9+au+lait&x=1&x=2&flag"
    )]);
    assert_eq!(out, "q=café au lait\nx=1\nx=2\nflag=\n");
    let out = curl(&[
        "-H",
        "Cookie: a=1; b=\"two words\"",
        "-H",
        "X-One: 1",
        "-H",
        "X-List: a, b",
        "-H",
        "X-List: c",
        &format!("http://{addr}/headers"),
    ]);
    assert!(
        out.contains("cookie a=Some(\"1\") b=Some(\"two words\")"),
        "{out}"
    );
    assert!(out.contains("value=true several=true"), "{out}");
    assert!(out.contains("csv=Some(\"a, b, c\")"), "{out}");
    assert!(out.contains("table=a|b|c"), "{out}");
    assert!(out.contains("flag=true {\"a\", \"b\", \"c\"}"), "{out}");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn answers_bad_escapes_and_invalid_utf8_with_400() {
    let (addr, _dir) = app();
    for q in ["x=%zz", "x=%C3%28", "%", "x=%+f"] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{addr}/query?{q}"),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "400", "{q}");
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "a=%ff",
            &format!("http://{addr}/form"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn streams_an_uploaded_file_to_disk() {
    let (addr, dir) = app();
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let out = curl(&[
        "-F",
        "title=five megs",
        "-F",
        &format!("upload=@{}", src.display()),
        &format!("http://{addr}/upload"),
    ]);
    assert_eq!(out, "stored 5000000 bytes; title=five megs\n");
    assert!(
        std::fs::read(dir.path().join("upload")).unwrap() == data,
        "the stored file differs"
    );
}

#[test]
fn a_skipped_body_is_answered_at_once_without_100_continue() {
    let (addr, _dir) = app();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /early HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n").unwrap();
    let all = read_to_close(&mut s);
    assert!(all.starts_with("HTTP/1.1 403 "), "{all}");
    assert!(!all.contains("100 Continue") && all.contains("Connection: close"));
}

#[test]
fn malformed_multipart_gets_400_and_the_connection_is_not_reused_wrongly() {
    let (addr, _dir) = app();
    let body_ok = "--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nv\r\n--B--\r\n";
    let cases: Vec<(String, String)> = vec![
        ("multipart/form-data".into(), body_ok.into()), // no boundary
        (
            "multipart/form-data; boundary=B".into(),
            "--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nv".into(),
        ), // truncated
        (
            "multipart/form-data; boundary=B".into(),
            format!(
                "--B\r\nContent-Disposition: form-data; name=\"t\"\r\nX: {}\r\n\r\nv\r\n--B--\r\n",
                "h".repeat(9000)
            ),
        ),
    ];
    for (ct, body) in &cases {
        // Buffered (/form): 400, and the next request on the same
        // connection is answered in step.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}GET /query?ok=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", body.len()).unwrap();
        let all = read_to_close(&mut s);
        assert!(all.starts_with("HTTP/1.1 400 "), "{ct}: {all}");
        assert!(
            all.ends_with("ok=1\n"),
            "{ct}: the next request was not answered in step: {all}"
        );
        // Streamed (/upload): 400 and a close; nothing after is parsed.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}GET /query?hidden=1 HTTP/1.1\r\nHost: t\r\n\r\n", body.len()).unwrap();
        let all = read_to_close(&mut s);
        assert!(all.starts_with("HTTP/1.1 400 "), "{ct}: {all}");
        assert!(!all.contains("hidden"), "{ct}: {all}");
    }
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn keeps_a_semicolon_and_an_escaped_quote_in_an_uploaded_file_name() {
    let (addr, dir) = app();
    let a = dir.path().join("a;b.txt");
    let q = dir.path().join("say \"hi\".txt");
    std::fs::write(&a, "semi\n").unwrap();
    std::fs::write(&q, "quote\n").unwrap();
    // --form-escape: a quote in a file name is sent as \" (RFC 7578 §4.2).
    let out = curl(&[
        "--form-escape",
        "-F",
        &format!("files=@\"{}\"", a.display()),
        "-F",
        &format!(
            "files=@\"{}\"",
            q.display().to_string().replace('"', "\\\"")
        ),
        &format!("http://{addr}/form"),
    ]);
    assert!(out.contains("files=semi\n file=Some(\"a;b.txt\")"), "{out}");
    assert!(
        out.contains("files=quote\n file=Some(\"say \\\"hi\\\".txt\")"),
        "{out}"
    );
}
