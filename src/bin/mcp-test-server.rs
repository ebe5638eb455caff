//! `mcp-test-server`: a deliberately controllable MCP server for tests, built
//! on rmcp's server side.
//!
//! It speaks newline-delimited JSON-RPC on stdin/stdout (default) or, with
//! `--socket PATH`, on every connection to a Unix socket it listens on. It
//! prints one banner line to stderr at start (`mcp-test-server: ready pid=N`)
//! so tests can see stderr being forwarded.
//!
//! # Tools
//!
//! | tool | arguments | does |
//! |---|---|---|
//! | `echo` | any object | returns the arguments as `structuredContent` (and as JSON text) |
//! | `sleep` | `{ms}` | waits `ms` milliseconds, or until cancelled; a cancel is recorded as a `tool-cancelled` event |
//! | `fail` | `{message}` | returns an `isError` result with `message` as its text |
//! | `big` | `{bytes}` | returns a text block of `bytes` bytes (one huge JSON line) |
//! | `crash` | `{}` | exits the process (status 3) without answering |
//! | `garbage` | `{lines?: 1, respond?: true}` | writes `lines` non-JSON lines to stdout, then answers `"ok"` (or never, with `respond: false`) |
//!
//! # Flags
//!
//! * `--record FILE` (or `$MCP_TEST_RECORD`): append the recording below.
//! * `--hang-initialize`: read and record everything, answer nothing.
//! * `--garbage-stdout`: write non-JSON lines to stdout before anything else.
//! * `--protocol-version V`: answer `initialize` with version `V` whatever
//!   was asked (to test the client's version check).
//! * `--modern`: also support 2026-07-28 (`server/discover`); without it the
//!   server supports up to 2025-11-25, like the npm servers.
//! * `--ignore-stdin-eof`: keep running after stdin closes (tests SIGTERM).
//! * `--ignore-sigterm`: ignore SIGTERM (tests SIGKILL).
//! * `--spawn-grandchild`: start `sleep 3600` in the server's process group
//!   and record its pid (tests that the whole group is killed).
//! * `--down-if-exists PATH`: exit at once while `PATH` exists (a server
//!   that is down), recording a `down` event.
//!
//! # Recording format
//!
//! One JSON object per line, appended to the record file as things happen
//! (each line is written with a single `write` on a file opened for append,
//! so several server processes can share one file). Every line has:
//!
//! * `t`: seconds since the Unix epoch, as a float (microsecond precision);
//! * `pid`: the server process that wrote it;
//! * `event`: one of the kinds below.
//!
//! | `event` | other fields | when |
//! |---|---|---|
//! | `start` | `pgid`, `argv`, `grandchild_pid` (or null) | the process started |
//! | `request` | `method`, `id`, and for `tools/call`: `tool`, `arguments`, `in_flight` | a JSON-RPC request arrived (before it is handled) |
//! | `notification` | `method`, `params` | a JSON-RPC notification arrived (e.g. `notifications/cancelled` with `params.requestId`, `params.reason`) |
//! | `unparsable` | `line` (first 200 bytes) | a line that is not JSON arrived |
//! | `tool-cancelled` | `tool`, `id` | a running tool (`sleep`, `garbage`) saw its cancellation |
//! | `stdin-closed` | | stdin closed but `--ignore-stdin-eof` keeps the process running |
//! | `exit` | `reason` | the process is about to exit on its own (`stdin closed`, `crash tool`) |
//! | `down` | | the process exits at once because the `--down-if-exists` file exists |
//!
//! `in_flight` counts the `tools/call` requests received on this process
//! and neither answered nor cancelled yet, including the one just received.
//! A client that allows N concurrent calls never makes it exceed N.
//! Responses are not recorded.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "mcp-test-server",
    about = "A controllable MCP server for tests"
)]
struct Args {
    /// Listen on this Unix socket instead of using stdin/stdout.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Append a JSON-lines recording of what arrives to this file.
    #[arg(long, value_name = "FILE", env = "MCP_TEST_RECORD")]
    record: Option<PathBuf>,
    /// Never answer anything (initialize included).
    #[arg(long)]
    hang_initialize: bool,
    /// Write non-JSON lines to stdout before anything else.
    #[arg(long)]
    garbage_stdout: bool,
    /// Answer initialize with this protocol version.
    #[arg(long, value_name = "VERSION")]
    protocol_version: Option<String>,
    /// Also support protocol 2026-07-28 (server/discover).
    #[arg(long)]
    modern: bool,
    /// Keep running after stdin closes.
    #[arg(long)]
    ignore_stdin_eof: bool,
    /// Ignore SIGTERM.
    #[arg(long)]
    ignore_sigterm: bool,
    /// Start `sleep 3600` in this process group.
    #[arg(long)]
    spawn_grandchild: bool,
    /// Exit at once (status 1, recording a `down` event) while this file
    /// exists: a server that is down, for tests of what waits for it.
    #[arg(long, value_name = "PATH")]
    down_if_exists: Option<PathBuf>,
}

/// Appends recording lines; shared by every task.
#[derive(Clone)]
struct Recorder {
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl Recorder {
    fn open(path: Option<&PathBuf>) -> std::io::Result<Recorder> {
        let file = match path {
            Some(path) => Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ))),
            None => None,
        };
        Ok(Recorder { file })
    }

    fn record(&self, event: &str, mut fields: Value) {
        let Some(file) = &self.file else { return };
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if let Value::Object(map) = &mut fields {
            map.insert("t".into(), json!(t));
            map.insert("pid".into(), json!(std::process::id()));
            map.insert("event".into(), json!(event));
        }
        let mut line = fields.to_string();
        line.push('\n');
        // One write per line on an O_APPEND file: lines from several
        // processes never interleave.
        if let Ok(mut file) = file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// The `tools/call` requests received and not yet answered or cancelled.
#[derive(Default)]
struct InFlight {
    ids: Mutex<HashSet<String>>,
}

impl InFlight {
    fn add(&self, id: &Value) -> usize {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.insert(id.to_string());
        ids.len()
    }
    fn remove(&self, id: &Value) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.remove(&id.to_string());
    }
}

/// Lines the `garbage` tool asks the stdout writer to emit.
type GarbageTx = mpsc::UnboundedSender<String>;

#[derive(Clone)]
struct TestServer {
    recorder: Recorder,
    garbage: GarbageTx,
    modern: bool,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "echo",
            "Returns its arguments as structuredContent",
            schema(json!({"type":"object"})),
        ),
        Tool::new(
            "sleep",
            "Waits `ms` milliseconds or until cancelled",
            schema(
                json!({"type":"object","properties":{"ms":{"type":"integer"}},"required":["ms"]}),
            ),
        ),
        Tool::new(
            "fail",
            "Returns an isError result carrying `message`",
            schema(json!({"type":"object","properties":{"message":{"type":"string"}}})),
        ),
        Tool::new(
            "big",
            "Returns a text block of `bytes` bytes",
            schema(
                json!({"type":"object","properties":{"bytes":{"type":"integer"}},"required":["bytes"]}),
            ),
        ),
        Tool::new(
            "crash",
            "Exits the server without answering",
            schema(json!({"type":"object"})),
        ),
        Tool::new(
            "garbage",
            "Writes non-JSON lines to stdout, then answers (or not)",
            schema(
                json!({"type":"object","properties":{"lines":{"type":"integer"},"respond":{"type":"boolean"}}}),
            ),
        ),
    ]
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("mcp-test-server", env!("CARGO_PKG_VERSION")),
        )
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        let ceiling = if self.modern {
            ProtocolVersion::V_2026_07_28
        } else {
            ProtocolVersion::V_2025_11_25
        };
        std::borrow::Cow::Borrowed(ProtocolVersion::known_up_to(&ceiling))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let number = |key: &str| args.get(key).and_then(Value::as_u64);
        let result = match request.name.as_ref() {
            "echo" => {
                let mut result = CallToolResult::structured(args.clone());
                result.content = vec![ContentBlock::text(args.to_string())];
                result
            }
            "sleep" => {
                let ms = number("ms").unwrap_or(0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => text_result(format!("slept {ms} ms")),
                    _ = context.ct.cancelled() => {
                        self.recorder.record("tool-cancelled", json!({"tool": "sleep", "id": request_id(&context)}));
                        text_result("cancelled")
                    }
                }
            }
            "fail" => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("failed as asked");
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
            "big" => {
                let bytes = usize::try_from(number("bytes").unwrap_or(0)).unwrap_or(0);
                text_result("x".repeat(bytes))
            }
            "crash" => {
                self.recorder
                    .record("exit", json!({"reason": "crash tool"}));
                std::process::exit(3);
            }
            "garbage" => {
                let lines = number("lines").unwrap_or(1);
                for i in 0..lines {
                    let _ = self.garbage.send(format!("this is not JSON-RPC, line {i}"));
                }
                if args.get("respond").and_then(Value::as_bool).unwrap_or(true) {
                    text_result("ok")
                } else {
                    context.ct.cancelled().await;
                    self.recorder.record(
                        "tool-cancelled",
                        json!({"tool": "garbage", "id": request_id(&context)}),
                    );
                    text_result("cancelled")
                }
            }
            other => {
                CallToolResult::error(vec![ContentBlock::text(format!("unknown tool `{other}`"))])
            }
        };
        Ok(CallToolResponse::Complete(result))
    }
}

fn request_id(context: &RequestContext<RoleServer>) -> Value {
    serde_json::to_value(&context.id).unwrap_or(Value::Null)
}

/// Reads client lines from `input`, records them, and passes them to rmcp
/// through `to_rmcp` (unless `swallow`: then nothing is ever answered).
async fn pump_in(
    input: impl AsyncRead + Unpin,
    mut to_rmcp: impl AsyncWrite + Unpin,
    recorder: Recorder,
    in_flight: Arc<InFlight>,
    swallow: bool,
) {
    let mut lines = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(message) => {
                let method = message.get("method").and_then(Value::as_str).unwrap_or("");
                match message.get("id") {
                    Some(id) if !method.is_empty() => {
                        let mut fields = json!({"method": method, "id": id});
                        if method == "tools/call" {
                            let params = message.get("params").cloned().unwrap_or(Value::Null);
                            fields["tool"] = params.get("name").cloned().unwrap_or(Value::Null);
                            fields["arguments"] =
                                params.get("arguments").cloned().unwrap_or(json!({}));
                            fields["in_flight"] = json!(in_flight.add(id));
                        }
                        recorder.record("request", fields);
                    }
                    None if !method.is_empty() => {
                        let params = message.get("params").cloned().unwrap_or(Value::Null);
                        if method == "notifications/cancelled"
                            && let Some(id) = params.get("requestId")
                        {
                            in_flight.remove(id);
                        }
                        recorder
                            .record("notification", json!({"method": method, "params": params}));
                    }
                    _ => {}
                }
            }
            Err(_) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                recorder.record("unparsable", json!({"line": shown}));
            }
        }
        if swallow {
            continue;
        }
        if to_rmcp.write_all(&line).await.is_err() {
            return;
        }
    }
}

/// Copies rmcp's output lines to `output`, interleaving garbage lines, and
/// marks answered calls as no longer in flight.
async fn pump_out(
    from_rmcp: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    mut garbage: mpsc::UnboundedReceiver<String>,
    in_flight: Arc<InFlight>,
    force_version: Option<String>,
) {
    let mut lines = BufReader::new(from_rmcp);
    let mut line = Vec::new();
    loop {
        line.clear();
        tokio::select! {
            read = lines.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let mut out = std::mem::take(&mut line);
                if let Ok(mut message) = serde_json::from_slice::<Value>(&out) {
                    if let Some(id) = message.get("id") {
                        in_flight.remove(id);
                    }
                    if let Some(version) = &force_version
                        && let Some(result) = message.get_mut("result")
                        && result.get("protocolVersion").is_some()
                    {
                        result["protocolVersion"] = json!(version);
                        out = format!("{message}\n").into_bytes();
                    }
                }
                if output.write_all(&out).await.is_err() || output.flush().await.is_err() {
                    return;
                }
            }
            Some(text) = garbage.recv() => {
                let text = format!("{text}\n");
                if output.write_all(text.as_bytes()).await.is_err() || output.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Serves one connection: the client's bytes come from `input` and
/// answers go to `output`.
async fn serve_connection(
    args: &Args,
    recorder: Recorder,
    in_flight: Arc<InFlight>,
    input: impl AsyncRead + Unpin + Send + 'static,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
) {
    if args.garbage_stdout {
        let _ = output
            .write_all(b"Starting test server...\nnot json: {{{\n")
            .await;
        let _ = output.flush().await;
    }
    let (garbage_tx, garbage_rx) = mpsc::unbounded_channel();
    let (rmcp_in, pump_in_end) = tokio::io::duplex(1 << 16);
    let (rmcp_out, pump_out_end) = tokio::io::duplex(1 << 16);
    let server = TestServer {
        recorder: recorder.clone(),
        garbage: garbage_tx,
        modern: args.modern,
    };
    let reader = tokio::spawn(pump_in(
        input,
        pump_in_end,
        recorder.clone(),
        in_flight.clone(),
        args.hang_initialize,
    ));
    let writer = tokio::spawn(pump_out(
        pump_out_end,
        output,
        garbage_rx,
        in_flight,
        args.protocol_version.clone(),
    ));
    match server.serve((rmcp_in, rmcp_out)).await {
        Ok(running) => {
            let _ = running.waiting().await;
        }
        Err(err) => eprintln!("mcp-test-server: handshake failed: {err}"),
    }
    let _ = reader.await;
    let _ = writer.await;
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let recorder = match Recorder::open(args.record.as_ref()) {
        Ok(recorder) => recorder,
        Err(err) => {
            eprintln!("mcp-test-server: cannot open the record file: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(flag) = &args.down_if_exists
        && flag.exists()
    {
        recorder.record("down", json!({}));
        eprintln!("mcp-test-server: down ({} exists)", flag.display());
        return std::process::ExitCode::FAILURE;
    }
    if args.ignore_sigterm {
        // SAFETY: setting a signal's disposition to SIG_IGN is async-signal
        // safe and done before any thread starts.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    let grandchild = if args.spawn_grandchild {
        std::process::Command::new("sleep")
            .arg("3600")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()
            .map(|child| child.id())
    } else {
        None
    };
    // SAFETY: getpgrp has no preconditions.
    let pgid = unsafe { libc::getpgrp() };
    recorder.record(
        "start",
        json!({"pgid": pgid, "argv": std::env::args().collect::<Vec<_>>(), "grandchild_pid": grandchild}),
    );
    eprintln!("mcp-test-server: ready pid={}", std::process::id());

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcp-test-server: cannot start tokio: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let in_flight = Arc::new(InFlight::default());
        match &args.socket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                let listener = match tokio::net::UnixListener::bind(path) {
                    Ok(listener) => listener,
                    Err(err) => {
                        eprintln!(
                            "mcp-test-server: cannot listen on {}: {err}",
                            path.display()
                        );
                        return std::process::ExitCode::FAILURE;
                    }
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (read, write) = stream.into_split();
                    let args = args.clone();
                    let recorder = recorder.clone();
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        serve_connection(&args, recorder, in_flight, read, write).await;
                    });
                }
            }
            None => {
                serve_connection(
                    &args,
                    recorder.clone(),
                    in_flight,
                    tokio::io::stdin(),
                    tokio::io::stdout(),
                )
                .await;
                if args.ignore_stdin_eof {
                    recorder.record("stdin-closed", json!({}));
                    std::future::pending::<()>().await;
                }
                recorder.record("exit", json!({"reason": "stdin closed"}));
                std::process::ExitCode::SUCCESS
            }
        }
    })
}
