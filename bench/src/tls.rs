//! The `rtt.tls` case's certificates, made at bench time with rcgen: a
//! CA and a broker certificate for 127.0.0.1, written into the case's
//! temporary directory. The broker gets the certificate and key
//! (`--tls-cert`, `--tls-key`); the publisher and caller roles trust the
//! CA through `SBBENCH_TLS_CA`, which they inherit.

use crate::fail;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// The variable naming the CA file the roles trust.
pub(crate) const CA_VAR: &str = "SBBENCH_TLS_CA";

fn bad<T>(e: rcgen::Error) -> T {
    fail(format!("cannot make the TLS certificates: {e}"))
}

/// Writes `ca.pem`, `broker.pem` and `broker.key` into `dir`: the
/// broker's certificate and key files.
pub(crate) fn make_certs(dir: &Path) -> (PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap_or_else(bad);
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(bad);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "sbbench CA");
    let ca = params.self_signed(&ca_key).unwrap_or_else(bad);
    let key = KeyPair::generate().unwrap_or_else(bad);
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap_or_else(bad);
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap_or_else(bad);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| fail(format!("cannot write {}: {e}", path.display())));
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    std::env::set_var(CA_VAR, &ca_file);
    (
        write("broker.pem", cert.pem()),
        write("broker.key", key.serialize_pem()),
    )
}

/// The CA the roles trust for `tls://` addresses, if the case made one.
pub(crate) fn client_tls() -> stagebus::ClientTls {
    stagebus::ClientTls {
        ca: std::env::var_os(CA_VAR).map(PathBuf::from),
        ..Default::default()
    }
}
