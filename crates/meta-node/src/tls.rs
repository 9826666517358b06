//! TLS (rustls with the *ring* provider; no OpenSSL): the client API over
//! HTTPS, mutually authenticated peers, and the certificate tooling behind
//! `meta-node certs`.
//!
//! **Node identity.** A node certificate, signed by the cluster CA, names
//! its node id as the DNS name `node-<id>.meta-node.invalid` ([`node_name`];
//! `.invalid` is a reserved TLD, so it can never be a real host) next to
//! the hosts it serves. A peer connection is accepted only with a client
//! certificate from the cluster CA, and every Raft message must come from
//! the node its certificate names: a certificate for node 2 cannot speak
//! for node 3. The caller side checks the same of the node it dials.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::NodeError;
use crate::files;

/// Suffix of the DNS names that carry node ids in certificates.
pub const NODE_NAME_SUFFIX: &str = "meta-node.invalid";

/// The DNS name a certificate carries to prove it belongs to node `id`.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.{NODE_NAME_SUFFIX}")
}

/// The three files a node's TLS needs (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate: verifies peers.
    pub ca: PathBuf,
    /// This node's certificate, signed by the CA.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `meta-node certs` writes into `dir`: `ca.pem`,
    /// `node.pem`, `node.key`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: String, problem: impl std::fmt::Display) -> NodeError {
    NodeError::Tls {
        what,
        problem: problem.to_string(),
    }
}

/// The certificates in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NodeError> {
    let what = || format!("certificate file {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(what(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what(), e))?;
    if certs.is_empty() {
        return Err(tls_error(what(), "holds no PEM certificate"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, NodeError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_error(format!("private key file {}", path.display()), e))
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, NodeError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("CA file {}", ca.display()), e))?;
    }
    Ok(Arc::new(roots))
}

/// The client API's server side: HTTPS with the node's certificate.
pub fn api_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, NodeError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions".into(), e))?
        .with_no_client_auth()
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| tls_error(format!("certificate {}", files.cert.display()), e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The peer transport's server side: a client certificate from the cluster
/// CA is required.
pub fn peer_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, NodeError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider())
        .build()
        .map_err(|e| tls_error(format!("CA file {}", files.ca.display()), e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions".into(), e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| tls_error(format!("certificate {}", files.cert.display()), e))?;
    Ok(Arc::new(config))
}

/// The peer transport's client side: trusts only the cluster CA and
/// presents the node's certificate.
pub fn peer_client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, NodeError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions".into(), e))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| tls_error(format!("certificate {}", files.cert.display()), e))?;
    Ok(Arc::new(config))
}

/// An HTTPS client's configuration that trusts only `ca` (the CLI's
/// `--ca`).
pub fn https_client_config(ca: &Path) -> Result<ClientConfig, NodeError> {
    meta_client::client_config(ca).map_err(|e| tls_error("the HTTPS client".into(), e))
}

/// The one node `cert` (already verified against the cluster CA) proves
/// to be: its single DNS name under [`NODE_NAME_SUFFIX`], which must be
/// exactly `node-<id>.meta-node.invalid`. A certificate naming no node,
/// several nodes, or a wildcard under the suffix proves nothing (`None`),
/// whatever a CA was made to sign.
pub fn cert_node_id(cert: &CertificateDer<'_>) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let sans = parsed.subject_alternative_name().ok()??;
    let mut ids = Vec::new();
    for name in &sans.value.general_names {
        let x509_parser::extensions::GeneralName::DNSName(dns) = name else {
            continue;
        };
        let dns = dns.trim_end_matches('.').to_ascii_lowercase();
        if !dns.ends_with(NODE_NAME_SUFFIX) {
            continue;
        }
        let id = dns
            .strip_prefix("node-")
            .and_then(|rest| rest.strip_suffix(&format!(".{NODE_NAME_SUFFIX}")))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .filter(|id| node_name(*id) == dns);
        // Anything else under the suffix (a wildcard, a bad name) spoils
        // the whole certificate.
        ids.push(id?);
    }
    match ids.as_slice() {
        [id] => Some(*id),
        _ => None,
    }
}

/// Whether `cert` (already verified against the cluster CA) proves to be
/// node `id` (see [`cert_node_id`]).
pub fn cert_names_node(cert: &CertificateDer<'_>, id: u64) -> bool {
    cert_node_id(cert) == Some(id)
}

/// The name to dial node `id` by (checked against its certificate).
pub fn server_name(id: u64) -> Result<ServerName<'static>, NodeError> {
    ServerName::try_from(node_name(id)).map_err(|e| tls_error(format!("node id {id}"), e))
}

fn rcgen_error(what: &str) -> impl FnOnce(rcgen::Error) -> NodeError + '_ {
    move |e| tls_error(what.to_string(), e)
}

fn validity(params: &mut rcgen::CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that are behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Creates a cluster CA in `dir`: `ca.pem` and `ca.key` (`0600`). Refuses
/// to overwrite an existing CA.
pub fn create_ca(dir: &Path, days: u32) -> Result<(), NodeError> {
    let files = TlsFiles::in_dir(dir);
    let ca_key_path = dir.join("ca.key");
    if files.ca.exists() || ca_key_path.exists() {
        return Err(tls_error(
            format!("CA in {}", dir.display()),
            "exists already (remove it first to make a new one; every node certificate must then be re-issued)",
        ));
    }
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(rcgen_error("CA parameters"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "meta-node cluster CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = rcgen::KeyPair::generate().map_err(rcgen_error("CA key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("CA certificate"))?;
    files::private_dir(dir)?;
    files::write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
    files::write_private(&files.ca, cert.pem().as_bytes())
}

/// Issues a certificate for node `id` from the CA in `ca_dir`, valid for
/// `hosts` (DNS names or IP addresses clients and peers dial) and for the
/// node's identity name. Writes `node.pem`, `node.key` (`0600`) and a copy
/// of `ca.pem` into `out`.
pub fn create_node_cert(
    ca_dir: &Path,
    id: u64,
    hosts: &[String],
    out: &Path,
    days: u32,
) -> Result<TlsFiles, NodeError> {
    if id == 0 {
        return Err(tls_error("node id".into(), "must be at least 1"));
    }
    if let Some(h) = hosts.iter().find(|h| {
        h.trim_end_matches('.')
            .to_ascii_lowercase()
            .ends_with(NODE_NAME_SUFFIX)
    }) {
        return Err(tls_error(
            format!("host `{h}`"),
            format!("names under `{NODE_NAME_SUFFIX}` are reserved for node identities"),
        ));
    }
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.pem"))
        .map_err(|e| NodeError::io(format!("reading {}", ca_dir.join("ca.pem").display()), e))?;
    let ca_key_pem = std::fs::read_to_string(ca_dir.join("ca.key"))
        .map_err(|e| NodeError::io(format!("reading {}", ca_dir.join("ca.key").display()), e))?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(rcgen_error("CA key"))?;
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(rcgen_error("CA certificate"))?;
    let mut names = vec![node_name(id)];
    names.extend(hosts.iter().cloned());
    let mut params =
        rcgen::CertificateParams::new(names).map_err(rcgen_error("node certificate hosts"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("meta-node {id}"));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = rcgen::KeyPair::generate().map_err(rcgen_error("node key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_error("node certificate"))?;
    let files = TlsFiles::in_dir(out);
    files::private_dir(out)?;
    files::write_private(&files.key, key.serialize_pem().as_bytes())?;
    files::write_private(&files.cert, cert.pem().as_bytes())?;
    if files.ca != ca_dir.join("ca.pem") {
        files::write_private(&files.ca, ca_pem.as_bytes())?;
    }
    Ok(files)
}

/// A single node's own TLS material in `<data_dir>/tls/`, created on first
/// start (a CA whose key stays there, so more nodes can be issued from it
/// with `meta-node certs create-node --ca-dir <data_dir>/tls`).
pub fn ensure_self_signed(dir: &Path, id: u64, hosts: &[String]) -> Result<TlsFiles, NodeError> {
    let files = TlsFiles::in_dir(dir);
    if !files.ca.exists() {
        create_ca(dir, 3650)?;
    }
    if !files.cert.exists() || !files.key.exists() {
        create_node_cert(dir, id, hosts, dir, 3650)?;
    }
    Ok(files)
}

/// A TLS listener for the client API (`axum::serve` takes it like a TCP
/// listener). Handshakes run in their own tasks, each bounded by
/// `handshake_timeout`, so a client that never finishes one holds up no
/// other.
pub struct HttpsListener {
    addr: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(HttpsStream, std::net::SocketAddr)>,
    accept_task: tokio::task::JoinHandle<()>,
}

/// One client API connection over TLS, within its budget.
pub type HttpsStream = tokio_rustls::server::TlsStream<crate::conn::Guarded<tokio::net::TcpStream>>;

impl HttpsListener {
    /// Serves TLS with `config` on `listener`, within `budget`.
    pub fn new(
        listener: tokio::net::TcpListener,
        config: Arc<ServerConfig>,
        handshake_timeout: std::time::Duration,
        budget: Arc<crate::conn::Budget>,
    ) -> std::io::Result<HttpsListener> {
        let addr = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accept_task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = budget.accept(&listener).await;
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake from {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake from {peer} timed out"),
                    }
                });
            }
        });
        Ok(HttpsListener {
            addr,
            ready,
            accept_task,
        })
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = HttpsStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task never ends on its own.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate from `ca` with exactly these DNS names (what a CA
    /// could be made to sign, bypassing `create-node`'s checks).
    fn signed(ca: &Path, names: &[&str]) -> CertificateDer<'static> {
        let key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca.join("ca.key")).unwrap()).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            &std::fs::read_to_string(ca.join("ca.pem")).unwrap(),
            key,
        )
        .unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let own = rcgen::KeyPair::generate().unwrap();
        params.signed_by(&own, &issuer).unwrap().der().clone()
    }

    #[test]
    fn only_a_single_exact_node_name_proves_a_node() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        create_ca(&ca, 10).unwrap();
        let cases: [(&[&str], Option<u64>); 7] = [
            (&["node-3.meta-node.invalid", "10.0.0.3"], Some(3)),
            (&["NODE-3.Meta-Node.Invalid."], Some(3)),
            (&["*.meta-node.invalid"], None),
            (
                &["node-3.meta-node.invalid", "node-4.meta-node.invalid"],
                None,
            ),
            (&["node-3.meta-node.invalid", "*.meta-node.invalid"], None),
            (&["node-03.meta-node.invalid"], None),
            (&["example.com"], None),
        ];
        for (names, expected) in cases {
            assert_eq!(cert_node_id(&signed(&ca, names)), expected, "{names:?}");
        }
    }

    #[test]
    fn a_node_certificate_names_its_node_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        create_ca(&ca, 10).unwrap();
        assert!(create_ca(&ca, 10).is_err(), "a CA is never overwritten");
        let files =
            create_node_cert(&ca, 2, &["127.0.0.1".into()], &tmp.path().join("n2"), 10).unwrap();
        let cert = &load_certs(&files.cert).unwrap()[0];
        assert!(cert_names_node(cert, 2));
        assert!(!cert_names_node(cert, 3) && !cert_names_node(cert, 22));
        peer_server_config(&files).unwrap();
        peer_client_config(&files).unwrap();
        api_server_config(&files).unwrap();
        for host in [
            node_name(3),
            "NODE-3.META-NODE.INVALID".into(),
            "*.meta-node.invalid.".into(),
        ] {
            let reserved = create_node_cert(&ca, 2, &[host], &tmp.path().join("x"), 10);
            assert!(reserved.unwrap_err().to_string().contains("reserved"));
        }
    }
}
