//! The HTTP server's own limits, on a real socket: a connection that never finishes its
//! headers is closed after the header timeout, a kept-alive connection that goes idle is
//! closed too, and connections beyond the cap wait until one closes.

use mnemo_api::http::{ServerLimits, serve_with};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(limits: ServerLimits) -> String {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_with(listener, app, std::future::pending(), limits));
    addr
}

/// Reads until the server closes the connection; what it sent, and when it closed.
async fn until_closed(c: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_idle_connections_and_the_connection_cap() {
    let addr = server(ServerLimits {
        header_timeout: Duration::from_millis(1500),
        max_connections: 4,
    })
    .await;
    // Slowloris: headers started, never finished. Each is closed after the timeout.
    let start = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(c);
    }
    // A fifth connection is over the cap: not served while the four hold their slots.
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    fifth
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(400), fifth.read(&mut buf))
            .await
            .is_err(),
        "the fifth connection was served over the cap"
    );
    for c in &mut slow {
        let (_, closed) = until_closed(c, Duration::from_secs(5))
            .await
            .expect("a connection that never finished its headers stayed open");
        assert!(closed - start >= Duration::from_millis(1400));
    }
    // Their slots are free: the fifth is served now.
    let n = tokio::time::timeout(Duration::from_secs(5), fifth.read(&mut buf))
        .await
        .expect("the fifth connection was never served")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);

    // A kept-alive connection is served, then closed once idle past the timeout.
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let served = Instant::now();
    let (got, closed) = until_closed(&mut c, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection stayed open");
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(closed - served >= Duration::from_millis(1400));
}
