//! Shared by the `serve_*` tests: spawn the real `tmux-agent mcp serve`
//! binary on a private database, talk to it over stdio with rmcp's client,
//! and check results the way a caller would (isError, structuredContent,
//! and the text block that must carry the same JSON).

use std::path::Path;

use super::PATIENCE;

use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    Implementation, ProtocolVersion,
};
use rmcp::service::{RunningService, ServiceExt};
use rmcp::transport::TokioChildProcess;
use serde_json::Value;

/// A connected client; dropping it ends the server (stdin closes).
pub type Client = RunningService<RoleClient, ClientConfig>;

/// `tmux-agent mcp serve --db <db> <extra...>` as a command, with no tmux
/// or database settings leaking in from the environment running the tests.
pub fn serve_command(db: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(super::AGENT);
    cmd.args(["mcp", "serve", "--db"])
        .arg(db)
        .args(extra)
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .env_remove("TMUX_AGENT_DB")
        .env("TMUX_AGENT_LOG", "warn");
    cmd
}

/// Spawns the server and completes the MCP handshake, asking for the
/// protocol version the daemon asks for.
pub async fn connect(cmd: tokio::process::Command) -> Client {
    connect_with(cmd, client_config()).await
}

/// The client's side of the handshake: its name and the protocol version
/// the daemon asks for.
pub fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("serve-test", "0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25)
}

/// [`connect`] with a client handler of the test's own (one that records
/// the server's notifications); its `get_info` should be [`client_config`].
pub async fn connect_with<H: rmcp::ClientHandler>(
    cmd: tokio::process::Command,
    handler: H,
) -> RunningService<RoleClient, H> {
    let transport = TokioChildProcess::new(cmd).expect("spawn tmux-agent mcp serve");
    let client = tokio::time::timeout(PATIENCE, handler.serve(transport))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    let info = client.peer_info().expect("server info after handshake");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("tmux-agent")
    );
    client
}

/// Spawns the server on `db` and connects.
pub async fn start(db: &Path) -> Client {
    connect(serve_command(db, &[])).await
}

/// Calls a tool; a protocol-level error fails the test.
pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("tool arguments must be a JSON object")
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
    tokio::time::timeout(PATIENCE, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} timed out"))
        .unwrap_or_else(|err| panic!("{tool}: protocol error {err}"))
}

/// Calls a tool that must succeed; returns its structuredContent after
/// checking that the text block carries the same JSON (MCP 2025-06-18).
pub async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {}",
        text_of(&result)
    );
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool} returned no structuredContent"));
    let text: Value = serde_json::from_str(&text_of(&result))
        .unwrap_or_else(|err| panic!("{tool}: text block is not JSON: {err}"));
    assert_eq!(
        text, structured,
        "{tool}: text block differs from structuredContent"
    );
    structured
}

/// Calls a tool that must fail with a tool error; returns the message.
pub async fn tool_error(client: &Client, tool: &str, args: Value) -> String {
    let result = call(client, tool, args).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should have failed but returned {:?}",
        result.structured_content
    );
    let message = text_of(&result);
    assert!(!message.is_empty(), "{tool}: error without a message");
    message
}

/// The text of a result's first text block.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .find_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.clone()),
            _ => None,
        })
        .unwrap_or_default()
}
