//! Who may ask: address rules (`--allow`, `--deny`, by path prefix, with
//! the PROXY header's address), and basic authentication from files
//! Apache's `htpasswd` wrote, tried with curl.

mod common;
use common::*;

use std::io::Write;
use std::process::Command;

/// A GET for `path` through a PROXY v1 header naming `client`.
fn get_as(addr: std::net::SocketAddr, client: &str, path: &str) -> u16 {
    let mut s = via_proxy(addr, client);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut s).unwrap().status
}

#[test]
fn allow_and_deny_decide_by_the_narrowest_network_and_by_path_prefix() {
    let site = site();
    std::fs::create_dir(site.path().join("admin")).unwrap();
    std::fs::write(site.path().join("admin/index.html"), "secret\n").unwrap();
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,proxy=v1",
        "--deny",
        "203.0.113.0/24",
        "--allow",
        "/admin=10.0.0.0/8",
        "--allow",
        "/admin=2001:db8::/32",
        "--deny",
        "/admin/=10.66.0.0/16",
    ]);
    // The second listener announced is the PROXY one.
    let proxied = h.nth_addr(1);
    for (client, path, status) in [
        ("198.51.100.1", "/a.txt", 200),
        ("203.0.113.9", "/a.txt", 403),
        ("198.51.100.1", "/admin/", 403),
        ("10.1.2.3", "/admin/", 200),
        ("10.66.2.3", "/admin/", 403),
        ("10.66.2.3", "/a.txt", 200),
        ("2001:db8::5", "/admin/", 200),
        ("2001:db9::5", "/admin/", 403),
        // Not under /admin by whole segments.
        ("198.51.100.1", "/administrator", 404),
        // Spelled otherwise, the same path.
        ("198.51.100.1", "/%61dmin/", 403),
        ("198.51.100.1", "//admin/./index.html", 403),
        ("198.51.100.1", "/admin/../admin/", 403),
        // A deny for every path holds under /admin too.
        ("203.0.113.9", "/admin/", 403),
    ] {
        assert_eq!(get_as(proxied, client, path), status, "{client} {path}");
    }
    // Without PROXY the socket's peer counts: 127.0.0.1 is in no /admin network.
    assert_eq!(h.get("/admin/").status, 403);
    assert_eq!(h.get("/a.txt").status, 200);
    for (flag, bad, says) in [
        ("--allow", "10.1.2.3/8", "10.0.0.0/8"),
        ("--deny", "admin=10.0.0.0/8", "begins with /"),
        ("--allow", "10.0.0.0/40", "0 to 32"),
    ] {
        let err = refused_start(&["--root", &root_arg(site.path()), flag, bad]);
        assert!(err.contains(says), "{bad}: {err}");
    }
}

/// curl's status code and the WWW-Authenticate it saw.
fn curl_status(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text[text.len() - 3..].parse().unwrap();
    let challenge = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("www-authenticate: ")
                .or(l.strip_prefix("WWW-Authenticate: "))
        })
        .unwrap_or("")
        .trim()
        .to_string();
    (code, challenge)
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs htpasswd, curl"]
fn basic_auth_takes_htpasswd_bcrypt_and_sha_crypt_users_over_tls_only() {
    let site = site();
    std::fs::create_dir(site.path().join("admin")).unwrap();
    std::fs::write(site.path().join("admin/index.html"), "secret\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let add = |flags: &str, user: &str, password: &str| {
        let out = Command::new("htpasswd")
            .args([flags, file.to_str().unwrap(), user, password])
            .output()
            .expect("htpasswd (apache2-utils) must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add("-cbB", "alice", "wonderland");
    add("-b5", "bob", "builder");
    add("-b2", "carol", "singer");
    let rule = format!("/admin={}", file.display());
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--listen",
        "127.0.0.1:0,tls=on",
        "--basic-auth",
        &rule,
    ]);
    let url = format!("https://{}/admin/", h.addr_of("https"));
    for (user, code) in [
        ("alice:wonderland", 200),
        ("bob:builder", 200),
        ("carol:singer", 200),
        ("alice:wrong", 401),
        ("dave:wonderland", 401),
    ] {
        let (got, challenge) = curl_status(&["-u", user, &url]);
        assert_eq!(got, code, "{user}");
        if code == 401 {
            assert_eq!(challenge, "Basic realm=\"/admin\", charset=\"UTF-8\"");
        }
    }
    let (got, challenge) = curl_status(&[&url]);
    assert_eq!((got, &challenge[..6]), (401, "Basic "));
    // HTTP/2 alike.
    assert_eq!(
        curl_status(&["--http2", "-u", "alice:wonderland", &url]).0,
        200
    );
    // Outside the prefix, nothing asked.
    let a = format!("https://{}/a.txt", h.addr_of("https"));
    assert_eq!(curl_status(&[&a]).0, 200);
    // Plain HTTP: never a challenge that would invite a password in clear.
    let plain = format!("http://{}/admin/", h.addr);
    assert_eq!(
        curl_status(&["-u", "alice:wonderland", &plain]),
        (403, String::new())
    );
    // A user added later is read again (the file is looked at once a second).
    add("-bB", "erin", "later");
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        curl_status(&["-u", "erin:later", &url]).0 == 200
    }));
    // A file with an MD5 password stops the start, naming the line.
    add("-bm", "mallory", "md5");
    let err = refused_start(&["--root", &root_arg(site.path()), "--basic-auth", &rule]);
    assert!(err.contains("line 5") && err.contains("MD5"), "{err}");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs htpasswd, curl"]
fn basic_auth_insecure_takes_credentials_over_plain_http() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-cbB", file.to_str().unwrap(), "alice", "wonderland"])
        .output()
        .expect("htpasswd");
    assert!(out.status.success());
    let rule = format!("/={}", file.display());
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--basic-auth",
        &rule,
        "--basic-auth-insecure",
    ]);
    let url = format!("http://{}/a.txt", h.addr);
    assert_eq!(curl_status(&["-u", "alice:wonderland", &url]).0, 200);
    assert_eq!(curl_status(&[&url]).0, 401);
}
