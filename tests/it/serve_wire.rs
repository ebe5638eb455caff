//! The built-in server never goes silent: every line (stdio) or body (HTTP)
//! it cannot handle gets a JSON-RPC error answer, and the connection works
//! after it. Raw bytes, because no well-behaved client sends these.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::PATIENCE;
use crate::support::serve::serve_command;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

/// The cap the tests run the server with, so "too long" stays small.
const MAX: usize = 65_536;

/// Every kind of input the server cannot handle, with the error code it
/// must answer and the id the answer must carry (`None`: no id readable).
fn bad_inputs() -> Vec<(&'static str, Vec<u8>, i64, Option<Value>)> {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{{"name":"whoami","arguments":{{"x":{}0{}}}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":"long","method":"ping","params":{{"pad":"{}"}}}}"#,
        "a".repeat(MAX * 2)
    );
    vec![
        ("garbage", b"this is not json".to_vec(), -32700, None),
        (
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\xfe\"}".to_vec(),
            -32700,
            None,
        ),
        ("truncated JSON", br#"{"jsonrpc":"2.0","id":"#.to_vec(), -32700, None),
        ("a batch", br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(), -32600, None),
        (
            "no jsonrpc field",
            br#"{"id":"nojsonrpc","method":"ping"}"#.to_vec(),
            -32600,
            Some(json!("nojsonrpc")),
        ),
        ("too long", long.into_bytes(), -32600, None),
        ("too deep", deep.into_bytes(), -32600, Some(json!("deep"))),
        (
            "tools/call without a string name",
            br#"{"jsonrpc":"2.0","id":"badname","method":"tools/call","params":{"name":5}}"#
                .to_vec(),
            -32602,
            Some(json!("badname")),
        ),
        (
            "tools/call with string arguments",
            br#"{"jsonrpc":"2.0","id":"badargs","method":"tools/call","params":{"name":"whoami","arguments":"x"}}"#
                .to_vec(),
            -32602,
            Some(json!("badargs")),
        ),
    ]
}

fn check_answer(what: &str, answer: &Value, code: i64, id: &Option<Value>) {
    assert_eq!(answer["jsonrpc"], "2.0", "{what}: {answer}");
    assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: an error says why: {answer}"
    );
    match id {
        Some(id) => assert_eq!(&answer["id"], id, "{what}: {answer}"),
        None => assert!(
            answer.get("id").is_none_or(Value::is_null),
            "{what}: {answer}"
        ),
    }
}

#[tokio::test]
async fn stdio_answers_every_line_it_cannot_handle() {
    let dir = tempfile::tempdir().unwrap();
    let max = MAX.to_string();
    let mut cmd = serve_command(&dir.path().join("b.db"), &["--max-message-bytes", &max]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async |line: &[u8]| {
        stdin.write_all(line).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    };
    let mut next = async || -> Value {
        let line = tokio::time::timeout(PATIENCE, stdout.next_line())
            .await
            .expect("the server went silent")
            .unwrap()
            .expect("the server closed stdout");
        serde_json::from_str(&line).unwrap()
    };

    send(INITIALIZE.as_bytes()).await;
    assert_eq!(next().await["result"]["serverInfo"]["name"], "tmux-agent");
    send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;

    for (n, (what, line, code, id)) in bad_inputs().into_iter().enumerate() {
        send(&line).await;
        check_answer(what, &next().await, code, &id);
        // The session still works after each one.
        send(format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"ping"}}"#).as_bytes()).await;
        let pong = next().await;
        assert_eq!(pong["id"], n, "{what}: ping after it: {pong}");
        assert_eq!(pong["result"], json!({}), "{what}: ping after it: {pong}");
    }
    send(br#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#).await;
    let tools = next().await;
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() > 5),
        "{tools}"
    );
    // Claude Code and Ajv (strict) warn about formats JSON Schema does not
    // define, such as schemars' `int64`/`uint32`.
    let text = tools.to_string();
    assert!(
        !text.contains(r#""format":"int"#) && !text.contains(r#""format":"uint"#),
        "{text}"
    );
    drop(stdin);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "exits cleanly when stdin closes: {status}"
    );
}

/// A raw HTTP/1.1 answer.
struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Sends one request on its own connection (`Connection: close`) and reads
/// the whole answer.
async fn request(addr: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} /mcp HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Accept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server went silent")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
    out
}

/// The JSON-RPC message in a response that is JSON or one SSE event.
fn message_of(answer: &Answer) -> Value {
    let text = String::from_utf8_lossy(&answer.body);
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| !d.trim().is_empty());
    match data {
        Some(data) => serde_json::from_str(data.trim()).unwrap(),
        None => answer.json(),
    }
}

#[tokio::test]
async fn http_answers_every_body_it_cannot_handle_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let max = MAX.to_string();
    let mut cmd = serve_command(
        &dir.path().join("b.db"),
        &["--http", "127.0.0.1:0", "--max-message-bytes", &max],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(PATIENCE, async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("exited early");
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();

    // A session to keep using between the bad bodies.
    let init = request(&addr, "POST", &[], INITIALIZE.as_bytes()).await;
    assert_eq!(init.status, 200);
    let session = init.header("mcp-session-id").expect("a session id");
    assert_eq!(
        message_of(&init)["result"]["serverInfo"]["name"],
        "tmux-agent"
    );
    let with_session = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = request(
        &addr,
        "POST",
        &with_session,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert!(initialized.status < 300, "{}", initialized.status);

    let mut inputs = bad_inputs();
    inputs.push(("an empty body", Vec::new(), -32700, None));
    for (n, (what, body, code, id)) in inputs.into_iter().enumerate() {
        let answer = request(&addr, "POST", &with_session, &body).await;
        assert_eq!(
            answer.status,
            400,
            "{what}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            answer
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {}",
            answer.headers
        );
        check_answer(what, &answer.json(), code, &id);
        let ping = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"ping"}}"#);
        let pong = request(&addr, "POST", &with_session, ping.as_bytes()).await;
        assert_eq!(pong.status, 200, "{what}: ping after it");
        assert_eq!(message_of(&pong)["id"], n, "{what}: ping after it");
    }

    // Ending the session: 200, then 404 for a session that is gone or never was.
    let bye = request(&addr, "DELETE", &with_session, b"").await;
    assert_eq!(bye.status, 200, "DELETE of a live session");
    let again = request(&addr, "DELETE", &with_session, b"").await;
    assert_eq!(again.status, 404, "DELETE of an ended session");
    let never = request(
        &addr,
        "DELETE",
        &[
            ("mcp-session-id", "no-such-session"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        b"",
    )
    .await;
    assert_eq!(never.status, 404, "DELETE of an unknown session");
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let gone = request(&addr, "POST", &with_session, ping).await;
    assert_eq!(gone.status, 404, "a request on an ended session");
}
