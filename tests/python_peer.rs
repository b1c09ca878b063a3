//! Self-tests of the Python `websockets` peer, driven by tokio-tungstenite.

use std::time::Duration;

use crate::support::python::{ECHO, PythonServer, close_with};
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn echo_keeps_text_and_binary_apart() {
    let server = PythonServer::start(ECHO);
    let (mut ws, _) = connect_async(server.url("/echo")).await.unwrap();
    for msg in [
        Message::text("héllo"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let got = timeout(BOUND, ws.next())
            .await
            .expect("no echo")
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn close_with_sends_code_and_reason() {
    let server = PythonServer::start(&close_with(4001, "going \"away\""));
    let (mut ws, _) = connect_async(server.url("x")).await.unwrap();
    ws.send(Message::text("first")).await.unwrap();
    let echo = timeout(BOUND, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echo, Message::text("first"));
    let close = timeout(BOUND, ws.next()).await.unwrap().unwrap().unwrap();
    let Message::Close(Some(frame)) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(frame.code, CloseCode::from(4001));
    assert_eq!(frame.reason.as_str(), "going \"away\"");
}

#[tokio::test]
async fn restart_comes_back_on_the_same_port() {
    let mut server = PythonServer::start(ECHO);
    let port = server.port();
    server.restart();
    assert_eq!(server.port(), port);
    let (mut ws, _) = connect_async(server.url("/")).await.unwrap();
    ws.send(Message::text("again")).await.unwrap();
    let got = timeout(BOUND, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("again"));
}

#[test]
fn a_broken_handler_panics_with_stderr() {
    let err = std::panic::catch_unwind(|| PythonServer::start("def handler(:")).err();
    let msg = err
        .and_then(|e| e.downcast::<String>().ok())
        .expect("start did not panic");
    assert!(msg.contains("SyntaxError"), "{msg}");
}
