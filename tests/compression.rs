//! Text files compressed for clients that take brotli, zstd or gzip:
//! precompressed siblings first, on the fly otherwise (`--compress`).

mod common;
use common::*;
use std::io::Read;
use std::process::Command;

/// A stylesheet worth compressing (20 KiB of repeated rules), and a
/// script with precompressed siblings whose bytes are not its own
/// compression (so a test can tell a sibling from on-the-fly work).
fn compress_site() -> (tempfile::TempDir, String) {
    let site = site();
    let css = "body { color: #333; margin: 0 auto; max-width: 40em }\n".repeat(400);
    std::fs::write(site.path().join("style.css"), &css).unwrap();
    std::fs::write(site.path().join("app.js"), "console.log(1);\n".repeat(100)).unwrap();
    std::fs::write(site.path().join("app.js.br"), b"BROTLI-SIBLING").unwrap();
    std::fs::write(site.path().join("app.js.zst"), b"ZSTD-SIBLING").unwrap();
    std::fs::write(site.path().join("app.js.gz"), b"GZIP-SIBLING").unwrap();
    std::fs::write(site.path().join("photo.png"), vec![0x89u8; 4096]).unwrap();
    (site, css)
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_text_file_goes_out_in_brotli_to_a_client_that_takes_it_and_as_it_is_to_one_that_does_not() {
    let (site, css) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let br = h.get_with("/style.css", "Accept-Encoding: gzip, deflate, br\r\n");
    assert_eq!(br.status, 200);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert_eq!(br.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(br.body.len() < css.len() / 10, "{} bytes", br.body.len());
    assert_eq!(unbrotli(&br.body), css.as_bytes());

    let plain = h.get_with("/style.css", "");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    assert_eq!(plain.body, css.as_bytes());
    assert_ne!(
        plain.header("etag"),
        br.header("etag"),
        "each coding its own tag"
    );

    // The client's weights decide; gzip when it prefers it.
    let gz = h.get_with("/style.css", "Accept-Encoding: br;q=0.5, gzip\r\n");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), css.as_bytes());
    // br;q=0 refuses it.
    let none = h.get_with("/style.css", "Accept-Encoding: br;q=0\r\n");
    assert_eq!(none.header("content-encoding"), None);
}

#[test]
fn small_files_and_images_go_out_as_they_are_without_vary() {
    let (site, _) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    for path in ["/a.txt", "/photo.png"] {
        let r = h.get_with(path, "Accept-Encoding: br, gzip\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None, "{path}");
        assert_eq!(r.header("vary"), None, "{path}");
    }
}

#[test]
fn a_precompressed_sibling_is_served_for_its_coding_zstd_included() {
    let (site, _) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    for (accept, coding, body) in [
        ("br, gzip, zstd", "br", &b"BROTLI-SIBLING"[..]),
        ("zstd, gzip", "zstd", b"ZSTD-SIBLING"),
        ("gzip", "gzip", b"GZIP-SIBLING"),
    ] {
        let r = h.get_with("/app.js", &format!("Accept-Encoding: {accept}\r\n"));
        assert_eq!(r.header("content-encoding"), Some(coding), "{accept}");
        assert_eq!(r.body, body, "{accept}");
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8"),
            "the file's type, not the sibling's"
        );
    }
}

#[test]
fn a_range_request_gets_the_file_as_it_is() {
    let (site, css) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let r = h.get_with("/style.css", "Accept-Encoding: br\r\nRange: bytes=5-9\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, css.as_bytes()[5..10].to_vec());
}

#[test]
fn a_coded_response_is_revalidated_by_its_own_tag_and_its_304_says_vary() {
    let (site, _) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let br = h.get_with("/style.css", "Accept-Encoding: br\r\n");
    let tag = br.header("etag").unwrap().to_string();
    let again = h.get_with(
        "/style.css",
        &format!("Accept-Encoding: br\r\nIf-None-Match: {tag}\r\n"),
    );
    assert_eq!(again.status, 304);
    assert_eq!(again.header("vary"), Some("Accept-Encoding"));
    assert_eq!(again.header("etag"), Some(&tag[..]));
    // The brotli tag does not validate the plain file.
    let plain = h.get_with("/style.css", &format!("If-None-Match: {tag}\r\n"));
    assert_eq!(plain.status, 200);
}

#[test]
fn compress_off_leaves_text_as_it_is_but_still_serves_siblings() {
    let (site, css) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path()), "--compress", "off"]);
    let r = h.get_with("/style.css", "Accept-Encoding: br, gzip\r\n");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.body, css.as_bytes());
    let s = h.get_with("/app.js", "Accept-Encoding: br\r\n");
    assert_eq!(s.body, b"BROTLI-SIBLING");
}

#[test]
fn a_sibling_put_beside_a_file_is_served_when_the_file_is_opened_again() {
    let (site, _) = compress_site();
    // No cache: every request opens the file again.
    let h = Handoff::start(&[
        "--root",
        &root_arg(site.path()),
        "--compress",
        "off",
        "--file-cache",
        "0",
    ]);
    assert_eq!(
        h.get_with("/style.css", "Accept-Encoding: gzip\r\n")
            .header("content-encoding"),
        None
    );
    std::fs::write(site.path().join("style.css.gz"), b"NEW-GZIP").unwrap();
    let r = h.get_with("/style.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, b"NEW-GZIP");
}

#[test]
#[ignore = "full tier (scripts/test.sh): needs curl"]
fn curl_decodes_what_it_asked_for_over_http11_and_http2() {
    let (site, css) = compress_site();
    let h = Handoff::start(&["--root", &root_arg(site.path())]);
    let url = format!("http://{}/style.css", h.addr);
    for (version, accept, coding) in [
        ("--http1.1", "br", "br"),
        ("--http1.1", "gzip", "gzip"),
        ("--http2-prior-knowledge", "br", "br"),
        ("--http2-prior-knowledge", "gzip", "gzip"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let headers = dir.path().join("h");
        let out = Command::new("curl")
            .args(["-sS", version, "--compressed", "-H"])
            .arg(format!("Accept-Encoding: {accept}"))
            .arg("-D")
            .arg(&headers)
            .arg(&url)
            .output()
            .expect("curl must be installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, css.as_bytes(), "{version} {accept}");
        let head = std::fs::read_to_string(&headers).unwrap().to_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {coding}\r\n")),
            "{version}: {head}"
        );
        assert!(head.contains("vary: accept-encoding\r\n"), "{head}");
    }
}
