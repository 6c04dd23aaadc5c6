//! TLS with rustls (the `ring` provider): configuration, certificates chosen
//! by SNI, a self-signed certificate when none is given (as lua-http does
//! when `.ctx` is nil), reloading, and whether the kernel offers TLS.
//!
//! The TLS session itself runs inside the event loop as a non-blocking
//! state of the connection (`server/connection/`); nothing here blocks.

pub(crate) mod pump;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// lua-http's `.tls`: `nil` → `Auto`, `true` → `On`, `false` → `Off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Sniff the first byte: a TLS handshake record (0x16) or plain HTTP.
    Auto,
    /// TLS only: a plain request gets an alert and a close.
    On,
    /// Plain HTTP only: a ClientHello gets a 400 and a close.
    #[default]
    Off,
}

impl TlsMode {
    /// Parses `auto`, `on` or `off`.
    pub fn parse(s: &str) -> Result<TlsMode, String> {
        match s {
            "auto" => Ok(TlsMode::Auto),
            "on" => Ok(TlsMode::On),
            "off" => Ok(TlsMode::Off),
            _ => Err(format!("{s:?}: TLS mode is auto, on or off")),
        }
    }
}

/// A certificate chain and its key, as files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Loads a PEM chain and key (PKCS#8, PKCS#1 or SEC1) and checks they match.
pub(crate) fn load(files: &CertFiles) -> io::Result<CertifiedKey> {
    let cert = |e: &dyn std::fmt::Display| {
        invalid(format!(
            "--tls-cert {}: the TLS certificate: {e}",
            files.cert.display()
        ))
    };
    let key = |e: &dyn std::fmt::Display| {
        invalid(format!(
            "--tls-key {}: the TLS private key: {e}",
            files.key.display()
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert(&pem_error(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert(&pem_error(e)))?;
    if certs.is_empty() {
        return Err(cert(&"no certificate (PEM) in it"));
    }
    let private = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| key(&pem_error(e)))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| key(&e))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        invalid(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok(ck)
}

/// Chooses a certificate by SNI: the first whose names cover the requested
/// one, else the first (clients without SNI, or asking for an unknown name,
/// get the default rather than a failed handshake).
#[derive(Debug)]
pub(crate) struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    pub(crate) fn new(keys: Vec<CertifiedKey>) -> io::Result<SniResolver> {
        if keys.is_empty() {
            return Err(invalid("no certificate"));
        }
        Ok(SniResolver {
            keys: keys.into_iter().map(Arc::new).collect(),
        })
    }

    fn covers(ck: &CertifiedKey, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        let Some(leaf) = ck.cert.first() else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|c| c.verify_is_valid_for_subject_name(&server_name).is_ok())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name()
            && let Some(k) = self.keys.iter().find(|k| Self::covers(k, name))
        {
            return Some(k.clone());
        }
        self.keys.first().cloned()
    }
}

/// A server configuration: TLS 1.3 and 1.2, ALPN `h2` (preferred) and
/// `http/1.1`. A server with HTTP/2 off offers `http/1.1` alone
/// (`Server::set_tls`).
pub(crate) fn server_config(keys: Vec<CertifiedKey>) -> io::Result<Arc<rustls::ServerConfig>> {
    let resolver = Arc::new(SniResolver::new(keys)?);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(invalid)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Loads every pair; the first error says which file is wrong.
pub(crate) fn load_all(files: &[CertFiles]) -> io::Result<Arc<rustls::ServerConfig>> {
    server_config(files.iter().map(load).collect::<io::Result<Vec<_>>>()?)
}

/// What went wrong reading a PEM file: the OS's words for an I/O error
/// (rustls's own would say "I/O error: …" without saying which file).
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item in it".into(),
        other => other.to_string(),
    }
}

/// A self-signed certificate for `names`, its SHA-256 fingerprint, and the
/// certificate and its key as PEM (the certificate first), which
/// `from_pem` reads back: what an upgrade gives the new process.
#[cfg(feature = "cli")]
pub(crate) fn self_signed(names: &[String]) -> io::Result<(CertifiedKey, String, String)> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(invalid)?;
    let der = cert.der().clone();
    let key = PrivateKeyDer::try_from(signing_key.serialize_der()).map_err(invalid)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(invalid)?;
    let fp = fingerprint(&der);
    let pem = cert.pem() + &signing_key.serialize_pem();
    Ok((CertifiedKey::new(vec![der], signing), fp, pem))
}

/// A certificate and its key from PEM (`self_signed`'s), and the
/// certificate's fingerprint.
pub(crate) fn from_pem(pem: &str) -> io::Result<(CertifiedKey, String)> {
    let bad = |e: &dyn std::fmt::Display| invalid(format!("the passed certificate: {e}"));
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| bad(&e))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad(&e))?;
    let ck = CertifiedKey::new(vec![der.clone()], signing);
    ck.keys_match().map_err(|e| bad(&e))?;
    Ok((ck, fingerprint(&der)))
}

/// SHA-256 of a certificate, as `AB:CD:…`.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Does the kernel offer TLS offload (`tls` among the available TCP upper
/// layer protocols)? See docs/ktls.md for what it would allow.
pub(crate) fn kernel_tls_available() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|s| s.split_whitespace().any(|u| u == "tls"))
        || Path::new("/sys/module/tls").exists()
}

/// What a request's handler may learn of the session it came over.
impl crate::http::request::Session for rustls::ServerConnection {
    fn server_name(&self) -> Option<&str> {
        rustls::ServerConnection::server_name(self)
    }
    fn alpn(&self) -> Option<&[u8]> {
        self.alpn_protocol()
    }
    fn version(&self) -> &'static str {
        self.protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
    fn cipher(&self) -> &'static str {
        self.negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an openssl command; its stderr is the failure message.
    fn openssl(cmd: &mut std::process::Command) {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn parses_modes() {
        assert_eq!(TlsMode::parse("auto").unwrap(), TlsMode::Auto);
        assert_eq!(TlsMode::parse("on").unwrap(), TlsMode::On);
        assert_eq!(TlsMode::parse("off").unwrap(), TlsMode::Off);
        assert!(TlsMode::parse("yes").is_err());
    }

    #[test]
    fn a_self_signed_certificate_covers_its_names_only() {
        let (ck, fp, pem) = self_signed(&["localhost".into()]).unwrap();
        assert!(SniResolver::covers(&ck, "localhost"));
        assert!(!SniResolver::covers(&ck, "example.com"));
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let (back, fp_back) = from_pem(&pem).unwrap();
        assert_eq!(fp_back, fp, "the PEM gives back the same certificate");
        assert_eq!(back.cert, ck.cert);
    }

    #[test]
    #[ignore = "full tier (scripts/test.sh): needs openssl"]
    fn loads_keys_in_pkcs8_pkcs1_and_sec1() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        for kind in ["ec-pkcs8", "rsa-pkcs1"] {
            let key = p(&format!("{kind}.key"));
            let k = key.to_str().unwrap();
            let args = match kind {
                "ec-pkcs8" => vec![
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    k,
                ],
                _ => vec!["genrsa", "-traditional", "-out", k, "2048"],
            };
            openssl(std::process::Command::new("openssl").args(&args));
            let cert = p(&format!("{kind}.crt"));
            openssl(
                std::process::Command::new("openssl")
                    .args([
                        "req",
                        "-new",
                        "-x509",
                        "-days",
                        "1",
                        "-subj",
                        "/CN=localhost",
                        "-key",
                    ])
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert),
            );
            let text = std::fs::read_to_string(&key).unwrap();
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            load(&files).unwrap_or_else(|e| panic!("{kind}: {e}"));
            // The EC key as written by ecparam is SEC1; convert it to PKCS#8 too.
            if kind == "ec-pkcs8" {
                assert!(text.contains("BEGIN EC PRIVATE KEY"), "SEC1 expected");
                let p8 = p("ec.p8");
                let out = std::process::Command::new("openssl")
                    .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
                    .arg(&key)
                    .arg("-out")
                    .arg(&p8)
                    .output()
                    .unwrap();
                assert!(out.status.success());
                load(&CertFiles { cert, key: p8 }).unwrap();
            } else {
                assert!(text.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1 expected");
            }
        }
    }

    #[test]
    fn refuses_a_key_that_does_not_match_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, pem) = self_signed(&["a.test".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("c.pem"), pem).unwrap();
        std::fs::write(dir.path().join("k.pem"), other.serialize_pem()).unwrap();
        let e = load(&CertFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
        })
        .unwrap_err();
        assert!(e.to_string().contains("k.pem"), "{e}");
    }
}
