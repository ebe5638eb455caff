//! `tmux-agent mcp serve --http`: Streamable HTTP on loopback, with rmcp's
//! HTTP client and with raw requests for what a client would not send.

use std::process::Stdio;

use crate::support::PATIENCE;
use crate::support::serve::{ok, serve_command, tool_error};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A running HTTP server and the URL of its endpoint (also used by the
/// `mcp tools --url` tests).
pub(crate) struct HttpServer {
    pub(crate) child: tokio::process::Child,
    pub(crate) url: String,
}

pub(crate) async fn start_http(db: &std::path::Path) -> HttpServer {
    start_http_with(serve_command(db, &["--http", "127.0.0.1:0"])).await
}

/// [`start_http`] of a command the test made (`serve_command` with
/// `--http 127.0.0.1:0` and an environment of its own).
pub(crate) async fn start_http_with(mut cmd: tokio::process::Command) -> HttpServer {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(PATIENCE, async {
        loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .expect("server exited before listening");
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
    })
    .await
    .expect("no listening line");
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    HttpServer { child, url }
}

async fn http_client(url: &str) -> crate::support::serve::Client {
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("http-test", "0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25);
    tokio::time::timeout(
        PATIENCE,
        config.serve(StreamableHttpClientTransport::from_uri(url.to_owned())),
    )
    .await
    .expect("HTTP handshake timed out")
    .expect("HTTP handshake failed")
}

/// Sends one raw HTTP/1.1 request and returns the status code.
async fn raw_status(addr: &str, request: String) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head);
    head[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("bad status line {head:?}"))
}

#[tokio::test]
async fn two_http_clients_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_http(&dir.path().join("b.db")).await;
    assert!(server.url.starts_with("http://127.0.0.1:") && server.url.ends_with("/mcp"));
    let (a, b) = tokio::join!(http_client(&server.url), http_client(&server.url));

    let goal = ok(
        &a,
        "register_goal",
        json!({"name": "over http", "idempotency_key": "h1"}),
    )
    .await;
    let listed = ok(&b, "list_goals", json!({})).await;
    assert_eq!(listed["goals"], json!([goal.clone()]));
    assert_eq!(
        ok(
            &b,
            "register_goal",
            json!({"name": "over http", "idempotency_key": "h1"})
        )
        .await,
        goal
    );
    let message = tool_error(&b, "nope", json!({})).await;
    assert!(message.contains("unknown tool"), "{message}");
    ok(
        &a,
        "save_context",
        json!({"session": "k", "session_name": "s", "context": {"goal": "g"}}),
    )
    .await;
    let got = ok(&b, "get_context", json!({"session_name": "s"})).await;
    assert_eq!(got["saves"][0]["context"]["goal"], "g");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();

    // SIGTERM stops it cleanly.
    let pid = server.child.id().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(PATIENCE, server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn other_paths_and_foreign_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_http(&dir.path().join("b.db")).await;
    let addr = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();

    let status = raw_status(
        &addr,
        format!("GET /other HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 404);

    // A page on another origin that rebinds its DNS name to 127.0.0.1 still
    // sends its own Host: refused before any MCP is spoken.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"evil","version":"0"}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: evil.example:80\r\nOrigin: http://evil.example\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let status = raw_status(&addr, request).await;
    assert!((400..500).contains(&status), "foreign Host got {status}");
}

#[tokio::test]
async fn non_loopback_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let out = serve_command(&dir.path().join("b.db"), &["--http", addr])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{addr} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("only loopback addresses"), "{stderr}");
    }
}
