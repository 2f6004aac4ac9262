//! Certificates for the TLS tests of other languages (C, C++, Perl),
//! made once per test binary with rcgen into a directory named by
//! [`tls_dir`], which those programs are given as `STAGEBUS_TEST_TLS`:
//!
//! * `ca.pem`: the CA that issued the rest;
//! * `broker.pem`, `broker.key`: the broker's, for 127.0.0.1 and
//!   localhost;
//! * `alice.pem`, `alice.key`: a client certificate, subject `CN=alice`;
//! * `other-ca.pem`: a CA that issued nothing here (a client trusting
//!   only it refuses the broker).

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

fn issue(
    by: &(rcgen::Certificate, KeyPair),
    cn: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &by.0, &by.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The directory of the certificates (made on the first call).
pub fn tls_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        let main = ca("stagebus test CA");
        let other = ca("some other CA");
        write("ca.pem", &main.0.pem());
        write("other-ca.pem", &other.0.pem());
        let (cert, key) = issue(
            &main,
            "broker",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("broker.pem", &cert);
        write("broker.key", &key);
        let (cert, key) = issue(&main, "alice", &[], ExtendedKeyUsagePurpose::ClientAuth);
        write("alice.pem", &cert);
        write("alice.key", &key);
        dir
    })
}
