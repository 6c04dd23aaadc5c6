//! Clients we did not write: curl and Python's http.client.

mod common;
use common::*;
use std::io::Write;
use std::process::Command;

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_reuses_one_connection_for_several_urls_and_resumes_a_range() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let base = format!("http://{}", h.addr);
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-w", "%{http_code} %{num_connects}\\n"])
        .arg(format!("{base}/a.txt"))
        .arg(format!("{base}/b.txt"))
        .arg(format!("{base}/"))
        .output()
        .expect("curl must be installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text, "alpha\n200 1\nbravo\n200 0\n<h1>home</h1>\n200 0\n",
        "curl made new connections"
    );

    let out = Command::new("curl")
        .args(["-sS", "-r", "3-", &format!("{base}/ten.bin")])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"3456789");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "x",
        ])
        .arg(format!("{base}/a.txt"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"405");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs python3"]
fn python_http_client_keeps_alive_and_sees_conditional_requests() {
    let site = site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let script = r#"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
c.request("GET", "/a.txt"); r = c.getresponse(); body = r.read()
assert r.status == 200 and body == b"alpha\n", (r.status, body)
etag = r.getheader("ETag")
sock = c.sock
c.request("GET", "/a.txt", headers={"If-None-Match": etag}); r = c.getresponse(); r.read()
assert r.status == 304, r.status
c.request("HEAD", "/b.txt"); r = c.getresponse(); r.read()
assert r.status == 200 and r.getheader("Content-Length") == "6"
c.request("POST", "/a.txt", body=iter([b"chunk1", b"chunk2"]), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
r = c.getresponse(); r.read()
assert r.status == 405, r.status
assert c.sock is sock, "connection was not kept alive"
print("ok")
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &h.addr.ip().to_string(),
            &h.addr.port().to_string(),
        ])
        .output()
        .expect("python3 must be installed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bare_lf_in_the_head_is_refused_with_400_and_a_close() {
    let h = Handoff::start(&[]);
    // A proxy splitting on CRLF sees one field "Host: x\nContent-Length: 5".
    let mut c = h.connect();
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_to_close(&mut c);
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    assert!(got.contains("Connection: close"), "{got}");
    assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{got}");
    // The log is written at the end of the loop's turn, after the answer.
    assert!(
        wait_until(std::time::Duration::from_secs(2), || h
            .log()
            .contains("bare LF")),
        "{}",
        h.log()
    );
}
