//! Self-tests of the fault-injection proxy, against a plain TCP echo server.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::fault_proxy::{Direction, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Upper bound for things that must happen.
const BOUND: Duration = Duration::from_secs(10);
/// How long we watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

async fn setup() -> (FaultProxy, TcpStream) {
    let proxy = FaultProxy::start(echo_server().await);
    let sock = TcpStream::connect(proxy.addr()).await.unwrap();
    (proxy, sock)
}

async fn roundtrip(sock: &mut TcpStream, msg: &[u8]) {
    sock.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    timeout(BOUND, sock.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .unwrap();
    assert_eq!(buf, msg);
}

async fn assert_silent(sock: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = timeout(QUIET, sock.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
}

#[tokio::test]
async fn forwards_and_counts_connections() {
    let (proxy, mut a) = setup().await;
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut a, b"hello").await;
    roundtrip(&mut b, b"world").await;
    assert_eq!((proxy.connections(), proxy.active()), (2, 2));
    assert_eq!(proxy.url("/ws"), format!("ws://{}/ws", proxy.addr()));
    drop(b);
    timeout(BOUND, proxy.wait_until(|c| c.active == 1))
        .await
        .expect("closed connection still counted as active");
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test]
async fn cut_sends_eof_and_new_connections_work() {
    let (proxy, mut sock) = setup().await;
    roundtrip(&mut sock, b"before").await;
    proxy.cut();
    assert_eq!(proxy.active(), 0);
    let mut buf = [0u8; 16];
    let n = timeout(BOUND, sock.read(&mut buf)).await.expect("no EOF");
    assert_eq!(n.unwrap(), 0);
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut again, b"after").await;
}

#[tokio::test]
async fn reset_sends_rst() {
    let (proxy, mut sock) = setup().await;
    roundtrip(&mut sock, b"before").await;
    proxy.reset();
    let mut buf = [0u8; 16];
    let err = timeout(BOUND, sock.read(&mut buf))
        .await
        .expect("no reset")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn blackhole_swallows_bytes_but_keeps_tcp_open() {
    let (proxy, mut sock) = setup().await;
    roundtrip(&mut sock, b"alive").await;
    proxy.blackhole(true);
    sock.write_all(b"lost").await.unwrap();
    assert_silent(&mut sock).await;
    // New connections are accepted too, and get no answer either.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    fresh.write_all(b"anyone?").await.unwrap();
    assert_silent(&mut fresh).await;
    assert_eq!(proxy.active(), 2);
    proxy.blackhole(false);
    // The swallowed bytes are gone: only what is sent now comes back.
    roundtrip(&mut sock, b"back").await;
}

#[tokio::test]
async fn refuse_refuses_until_turned_off() {
    let (proxy, mut sock) = setup().await;
    proxy.refuse(true);
    let err = timeout(BOUND, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect hung")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    roundtrip(&mut sock, b"existing connections live on").await;
    proxy.refuse(false);
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut again, b"back up").await;
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test]
async fn slice_delivers_every_byte_in_order() {
    let (proxy, sock) = setup().await;
    proxy.slice(Some(7));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = sock.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&sent).await });
    let mut got = vec![0; data.len()];
    timeout(BOUND, r.read_exact(&mut got))
        .await
        .expect("sliced echo timed out")
        .unwrap();
    assert!(got == data, "bytes reordered or corrupted");
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn delay_adds_latency_each_way() {
    let (proxy, mut sock) = setup().await;
    proxy.delay(Duration::from_millis(150));
    let start = Instant::now();
    roundtrip(&mut sock, b"slow").await;
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    proxy.delay(Duration::ZERO);
    let start = Instant::now();
    roundtrip(&mut sock, b"fast").await;
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn stall_server_to_client_holds_replies() {
    let (proxy, mut sock) = setup().await;
    proxy.stall(Direction::ServerToClient, true);
    sock.write_all(b"held").await.unwrap();
    assert_silent(&mut sock).await;
    proxy.stall(Direction::ServerToClient, false);
    let mut buf = [0u8; 4];
    timeout(BOUND, sock.read_exact(&mut buf))
        .await
        .expect("held reply never came")
        .unwrap();
    assert_eq!(&buf, b"held");
}

#[tokio::test]
async fn stall_client_to_server_builds_backpressure() {
    const TOTAL: usize = 32 << 20; // far more than the socket buffers on the way
    let (proxy, sock) = setup().await;
    proxy.stall(Direction::ClientToServer, true);
    let (mut r, mut w) = sock.into_split();
    let writer = tokio::spawn(async move { w.write_all(&vec![7u8; TOTAL]).await });
    let mut buf = vec![0u8; 1 << 16];
    assert!(
        timeout(QUIET, r.read(&mut buf)).await.is_err(),
        "bytes passed a stall"
    );
    assert!(!writer.is_finished(), "writer saw no backpressure");
    proxy.stall(Direction::ClientToServer, false);
    let mut echoed = 0;
    timeout(BOUND, async {
        while echoed < TOTAL {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
            echoed += n;
        }
    })
    .await
    .expect("stalled bytes were not all forwarded");
    timeout(BOUND, writer).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let (proxy, mut sock) = setup().await;
    roundtrip(&mut sock, b"hi").await;
    let addr = proxy.addr();
    drop(proxy);
    let mut buf = [0u8; 4];
    let read = timeout(BOUND, sock.read(&mut buf))
        .await
        .expect("still open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn works_from_sync_tests() {
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = FaultProxy::start(echo.local_addr().unwrap());
    let _client = std::net::TcpStream::connect(proxy.addr()).unwrap();
    let (_server_side, _) = echo.accept().unwrap();
    proxy.wait_until_blocking(BOUND, |c| c.active == 1);
    proxy.cut();
    assert_eq!(proxy.active(), 0);
}
