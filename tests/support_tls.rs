//! Self-tests of the generated test PKI.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::tls::{CLIENT_CN, TestPki};
use openssl::x509::X509;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_native_tls::native_tls;

const BOUND: Duration = Duration::from_secs(10);

/// Serves one TLS connection that echoes one chunk; returns whether the handshake worked.
async fn serve_once(pki: &TestPki) -> (u16, tokio::task::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.server_acceptor();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(mut tls) = acceptor.accept(tcp).await else {
            return false;
        };
        let mut buf = [0u8; 5];
        if tls.read_exact(&mut buf).await.is_ok() {
            let _ = tls.write_all(&buf).await;
        }
        true
    });
    (port, server)
}

#[tokio::test]
async fn client_trusting_the_ca_completes_handshake() {
    let pki = TestPki::generate();
    for host in ["localhost", "127.0.0.1"] {
        let (port, server) = serve_once(&pki).await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = timeout(BOUND, pki.client_connector().connect(host, tcp))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("handshake as {host}: {e}"));
        tls.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        timeout(BOUND, tls.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"hello");
        assert!(timeout(BOUND, server).await.unwrap().unwrap());
    }
}

#[tokio::test]
async fn client_not_trusting_the_ca_fails() {
    let pki = TestPki::generate();
    let (port, server) = serve_once(&pki).await;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let system_roots_only: tokio_native_tls::TlsConnector =
        native_tls::TlsConnector::new().unwrap().into();
    let err = timeout(BOUND, system_roots_only.connect("localhost", tcp))
        .await
        .unwrap()
        .expect_err("untrusted CA was accepted");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
    assert!(!timeout(BOUND, server).await.unwrap().unwrap());
}

#[test]
fn files_are_written_and_parse() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_to(dir.path());
    for (path, name) in [
        (&files.ca, "ca.pem"),
        (&files.server_cert, "server.pem"),
        (&files.server_key, "server.key"),
        (&files.client_cert, "client.pem"),
        (&files.client_key, "client.key"),
    ] {
        assert_eq!(path.file_name().unwrap(), name);
    }
    let ca = X509::from_pem(&std::fs::read(&files.ca).unwrap()).unwrap();
    let server = X509::from_pem(&std::fs::read(&files.server_cert).unwrap()).unwrap();
    assert!(server.verify(&ca.public_key().unwrap()).unwrap());
    assert!(
        std::fs::read_to_string(&files.server_key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

/// native-tls cannot require client certificates, so an openssl server checks the client
/// identity that tether's `--cert/--key` would present.
#[test]
fn client_identity_passes_mutual_tls() {
    let pki = TestPki::generate();
    for with_identity in [true, false] {
        let acceptor = pki.mutual_tls_acceptor().build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(BOUND)).unwrap();
            let mut tls = acceptor.accept(tcp).ok()?;
            let peer = tls.ssl().peer_certificate()?;
            let cn = peer
                .subject_name()
                .entries()
                .next()?
                .data()
                .as_slice()
                .to_vec();
            tls.write_all(b"ok").ok()?;
            String::from_utf8(cn).ok()
        });

        let ca = native_tls::Certificate::from_pem(pki.ca_pem()).unwrap();
        let mut builder = native_tls::TlsConnector::builder();
        builder.add_root_certificate(ca);
        if with_identity {
            builder.identity(pki.client_identity());
        }
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(BOUND)).unwrap();
        // With TLS 1.3 the client may finish its handshake before the server rejects it.
        if let Ok(mut tls) = builder.build().unwrap().connect("localhost", tcp) {
            let _ = tls.read(&mut [0u8; 2]);
        }
        let cn = server.join().unwrap();
        if with_identity {
            assert_eq!(cn.as_deref(), Some(CLIENT_CN));
        } else {
            assert_eq!(cn, None, "server accepted a client without a certificate");
        }
    }
}
