//! A rustls client that trusts one certificate: the integration tests'
//! and the TLS unit tests' (`src/tls/pump.rs` includes this file by path),
//! so both speak to the server the way one client does.

use std::sync::Arc;

/// A client configuration (ring, TLS 1.2 and 1.3) trusting only the
/// certificate in `pem`.
pub fn trusting(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pem).expect("a PEM certificate"))
        .expect("a certificate rustls takes");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring's protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(cfg)
}
