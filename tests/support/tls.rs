//! A throwaway PKI for `wss://` tests.
//!
//! tether must reject a self-signed server unless `--cacert` or `-k` is given, and must
//! present `--cert/--key` as a client identity. Testing that needs a CA the system does not
//! trust, a server certificate for `localhost` and `127.0.0.1`, and a client certificate,
//! all generated fresh by each test run with `openssl` (EC P-256 keys, PKCS#8 PEM, which
//! `native_tls::Identity::from_pkcs8` accepts).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};
use tokio_native_tls::native_tls;

/// Common names used in the generated certificates.
pub const CA_CN: &str = "tether test CA";
pub const SERVER_CN: &str = "localhost";
pub const CLIENT_CN: &str = "tether test client";

/// A CA plus a server and a client certificate signed by it, all as PEM.
pub struct TestPki {
    ca_cert: Vec<u8>,
    ca_key: Vec<u8>,
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
    client_cert: Vec<u8>,
    client_key: Vec<u8>,
}

/// Where [`TestPki::write_to`] put the files.
#[derive(Clone, Debug)]
pub struct TestPkiFiles {
    /// `ca.pem`
    pub ca: PathBuf,
    /// `server.pem`
    pub server_cert: PathBuf,
    /// `server.key`
    pub server_key: PathBuf,
    /// `client.pem`
    pub client_cert: PathBuf,
    /// `client.key`
    pub client_key: PathBuf,
}

enum Role {
    Ca,
    Server,
    Client,
}

impl TestPki {
    /// Generates a fresh CA, server and client certificate, valid from an hour ago for 30 days.
    pub fn generate() -> TestPki {
        let (ca, ca_key) = issue(CA_CN, Role::Ca, None);
        let (server, server_key) = issue(SERVER_CN, Role::Server, Some((&ca, &ca_key)));
        let (client, client_key) = issue(CLIENT_CN, Role::Client, Some((&ca, &ca_key)));
        let pem = |c: &X509| c.to_pem().expect("certificate PEM");
        let key = |k: &PKey<Private>| k.private_key_to_pem_pkcs8().expect("PKCS#8 PEM");
        TestPki {
            ca_cert: pem(&ca),
            ca_key: key(&ca_key),
            server_cert: pem(&server),
            server_key: key(&server_key),
            client_cert: pem(&client),
            client_key: key(&client_key),
        }
    }

    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_cert
    }

    /// Writes `ca.pem`, `ca.key`, `server.pem`, `server.key`, `client.pem`, `client.key`.
    pub fn write_to(&self, dir: &Path) -> TestPkiFiles {
        let write = |name: &str, data: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        write("ca.key", &self.ca_key);
        TestPkiFiles {
            ca: write("ca.pem", &self.ca_cert),
            server_cert: write("server.pem", &self.server_cert),
            server_key: write("server.key", &self.server_key),
            client_cert: write("client.pem", &self.client_cert),
            client_key: write("client.key", &self.client_key),
        }
    }

    /// The server identity (certificate and key) for native-tls.
    pub fn server_identity(&self) -> native_tls::Identity {
        native_tls::Identity::from_pkcs8(&self.server_cert, &self.server_key)
            .expect("server identity")
    }

    /// The client identity (certificate and key) for native-tls.
    pub fn client_identity(&self) -> native_tls::Identity {
        native_tls::Identity::from_pkcs8(&self.client_cert, &self.client_key)
            .expect("client identity")
    }

    /// An openssl acceptor, for mutual TLS (native-tls cannot ask for client certificates):
    /// it presents the server certificate and requires a client certificate from the test
    /// CA. Set anything else on the builder, then build it.
    pub fn mutual_tls_acceptor(&self) -> openssl::ssl::SslAcceptorBuilder {
        use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("openssl acceptor");
        let cert = X509::from_pem(&self.server_cert).expect("server certificate");
        let key = PKey::private_key_from_pem(&self.server_key).expect("server key");
        acceptor
            .set_certificate(&cert)
            .expect("setting the certificate");
        acceptor.set_private_key(&key).expect("setting the key");
        let ca = X509::from_pem(&self.ca_cert).expect("CA certificate");
        acceptor
            .cert_store_mut()
            .add_cert(ca)
            .expect("trusting the CA");
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        acceptor
    }

    /// A TLS acceptor presenting the server certificate. native-tls cannot ask for client
    /// certificates; use [`TestPki::mutual_tls_acceptor`] or nginx for mutual TLS.
    pub fn server_acceptor(&self) -> tokio_native_tls::TlsAcceptor {
        native_tls::TlsAcceptor::new(self.server_identity())
            .expect("TLS acceptor")
            .into()
    }

    /// A TLS connector that trusts only the test CA (no system roots).
    pub fn client_connector(&self) -> tokio_native_tls::TlsConnector {
        let ca = native_tls::Certificate::from_pem(&self.ca_cert).expect("CA certificate");
        native_tls::TlsConnector::builder()
            .add_root_certificate(ca)
            .disable_built_in_roots(true)
            .build()
            .expect("TLS connector")
            .into()
    }
}

fn issue(cn: &str, role: Role, issuer: Option<(&X509, &PKey<Private>)>) -> (X509, PKey<Private>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey");
    let mut name = X509NameBuilder::new().expect("name builder");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
    let name = name.build();

    let mut b = X509::builder().expect("X509 builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bignum");
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&name, |(ca, _)| ca.subject_name()))
        .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now - 3600).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time"))
        .expect("not after");

    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|(ca, _)| &**ca), None))
        .expect("SKI");
    b.append_extension(ski).expect("SKI");
    match role {
        Role::Ca => {
            let bc = BasicConstraints::new().critical().ca().build().expect("BC");
            b.append_extension(bc).expect("BC");
            let ku = KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build();
            b.append_extension(ku.expect("KU")).expect("KU");
        }
        Role::Server | Role::Client => {
            let ctx = b.x509v3_context(issuer.map(|(ca, _)| &**ca), None);
            let aki = AuthorityKeyIdentifier::new().keyid(false).build(&ctx);
            let aki = aki.expect("AKI");
            let san = match role {
                Role::Server => SubjectAlternativeName::new()
                    .dns("localhost")
                    .ip("127.0.0.1")
                    .build(&ctx),
                _ => SubjectAlternativeName::new()
                    .dns("tether-client")
                    .build(&ctx),
            };
            let san = san.expect("SAN");
            b.append_extension(aki).expect("AKI");
            b.append_extension(san).expect("SAN");
            let bc = BasicConstraints::new().critical().build().expect("BC");
            b.append_extension(bc).expect("BC");
            let ku = KeyUsage::new().critical().digital_signature().build();
            b.append_extension(ku.expect("KU")).expect("KU");
            let mut eku = ExtendedKeyUsage::new();
            match role {
                Role::Server => eku.server_auth(),
                _ => eku.client_auth(),
            };
            b.append_extension(eku.build().expect("EKU")).expect("EKU");
        }
    }
    let signer = issuer.map_or(&key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).expect("sign");
    (b.build(), key)
}
