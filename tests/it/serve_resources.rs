//! Live tmux sessions as resources of the built-in server
//! (`tmux-agent://sessions`, `tmux-agent://session/{name}`) on a real tmux
//! server on a private socket, over stdio: listed and read, hostile names
//! round-tripping through percent-encoded URIs without anything being run,
//! and `notifications/resources/list_changed` / `updated` when sessions
//! come, go and are renamed, with no daemon (the server's own 1 Hz
//! listing) and beside a running daemon (its event stream), over stdio and
//! Streamable HTTP.

use rmcp::RoleClient;
use rmcp::model::{
    ClientConfig, ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
    SubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::serve::{client_config, connect_with, serve_command};
use crate::support::{Daemon, PATIENCE, TmuxServer};

/// A notification the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Notice {
    ListChanged,
    Updated(String),
}

/// A client handler that records resource notifications.
struct Recorder(mpsc::UnboundedSender<Notice>);

impl rmcp::ClientHandler for Recorder {
    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.0.send(Notice::ListChanged);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Notice::Updated(params.uri));
    }

    fn get_info(&self) -> ClientConfig {
        client_config()
    }
}

type Client = RunningService<RoleClient, Recorder>;

/// `mcp serve <extra>` for `server`'s sessions, with the test server's HOME
/// and runtime directory (where a daemon of that server has its socket).
fn serve_command_for(server: &TmuxServer, extra: &[&str]) -> tokio::process::Command {
    let home = server.home.path();
    let mut cmd = serve_command(&home.join("builtin-resources.db"), extra);
    cmd.env("TMUX", server.tmux_env())
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", home.join("run"));
    cmd
}

/// The server over stdio, and what it notifies.
async fn serve(server: &TmuxServer) -> (Client, mpsc::UnboundedReceiver<Notice>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let cmd = serve_command_for(server, &[]);
    (connect_with(cmd, Recorder(tx)).await, rx)
}

/// Reads a resource's JSON text.
async fn read(client: &Client, uri: &str) -> Result<Value, rmcp::ServiceError> {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await?;
    match &result.contents[..] {
        [ResourceContents::TextResourceContents { text, uri: got, .. }] => {
            assert_eq!(got, uri);
            Ok(serde_json::from_str(text).expect("JSON text"))
        }
        other => panic!("one text content, not {other:?}"),
    }
}

/// The URIs of the live sessions in `resources/list`.
async fn listed_sessions(client: &Client) -> Vec<String> {
    client
        .list_all_resources()
        .await
        .expect("resources/list")
        .into_iter()
        .map(|r| r.uri.clone())
        .filter(|uri| uri.starts_with("tmux-agent://session/"))
        .collect()
}

/// Creates a session and returns its id.
fn new_session(server: &TmuxServer, name: &str) -> String {
    let out = server.tmux(&["new-session", "-d", "-P", "-F", "#{session_id}", "-s", name]);
    out.trim_end().to_owned()
}

/// Waits for notifications until `done` holds after a `list_changed` (a
/// change must be followed by a notification, not merely be visible) and,
/// when `updated` names a URI, `notifications/resources/updated` for it
/// came too, in either order.
async fn after_list_change(
    client: &Client,
    notices: &mut mpsc::UnboundedReceiver<Notice>,
    updated: Option<&str>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (mut listed, mut told) = (false, updated.is_none());
    while !(listed && told) {
        let notice = tokio::time::timeout_at(deadline, notices.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("timed out: list_changed after which {what}: {listed}; updated {updated:?}: {told}")
            })
            .expect("the server is still there");
        match notice {
            Notice::ListChanged => listed = listed || done(&listed_sessions(client).await),
            Notice::Updated(uri) => told = told || updated == Some(uri.as_str()),
        }
    }
}

#[tokio::test]
async fn sessions_are_listed_and_read_with_their_agent_options() {
    let server = TmuxServer::start_with_session("work");
    let work = server.session_id("work");
    server.tmux(&[
        "set-option",
        "-t",
        &work,
        "@agent-goal",
        "ship #(the) parser; today",
    ]);
    server.tmux(&["set-option", "-t", &work, "@agent-group", "build"]);
    server.tmux(&["set-option", "-t", &work, "@agent-role", "coordinator"]);
    server.tmux(&["set-option", "-t", &work, "@agent-peers", "docs, tests"]);
    let other = new_session(&server, "other");
    let (client, _notices) = serve(&server).await;

    let info = client.peer_info().unwrap();
    let resources = info.capabilities.resources.as_ref().expect("resources");
    assert_eq!(resources.list_changed, Some(true));
    assert_eq!(resources.subscribe, Some(true));
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "tmux-agent://session/{name}"),
        "{templates:?}"
    );
    assert_eq!(
        listed_sessions(&client).await,
        ["tmux-agent://session/other", "tmux-agent://session/work"]
    );

    let list = read(&client, "tmux-agent://sessions").await.unwrap();
    assert_eq!(
        list,
        json!({"sessions": [
            {"session_id": other, "session_name": "other", "uri": "tmux-agent://session/other"},
            {"session_id": work, "session_name": "work", "uri": "tmux-agent://session/work"},
        ]})
    );
    let one = read(&client, "tmux-agent://session/work").await.unwrap();
    assert_eq!(one["session_id"], work.as_str());
    assert_eq!(one["session_name"], "work");
    assert_eq!(one["goal"], "ship #(the) parser; today");
    assert_eq!(one["group"], "build");
    assert_eq!(one["role"], "coordinator");
    assert_eq!(one["peers"], json!(["docs", "tests"]));
    assert_eq!(one["state"], Value::Null);
    assert_eq!(one["options"]["@agent-group"], "build");
    assert_eq!(one["agents"], json!([]));
    // By id as well, when no session has that name.
    assert_eq!(
        read(&client, &format!("tmux-agent://session/%24{}", &work[1..]))
            .await
            .unwrap()["session_name"],
        "work"
    );
    // Names are matched exactly: tmux's target prefix match is not used.
    assert!(read(&client, "tmux-agent://session/wor").await.is_err());
    assert!(read(&client, "tmux-agent://session/nothing").await.is_err());
    assert!(read(&client, "tmux-agent://session/%FF").await.is_err());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn hostile_session_names_round_trip_in_uris_and_run_nothing() {
    let server = TmuxServer::start_with_session("base");
    let marker = server.path("ran");
    let touch = format!("touch {}", marker.display());
    let names = [
        "say \"hi\" 'there'".to_owned(),
        format!("a; {touch}"),
        format!("#{{session_id}} #({touch})"),
        format!("$({touch}) `{touch}`"),
        "two\nlines".to_owned(),
        "a/b?c#d%41 e".to_owned(),
        "n".repeat(1000),
    ];
    let mut made = Vec::new();
    for name in &names {
        // `new-session -s` expands formats in the name: `##` is a `#`.
        let id = new_session(&server, &name.replace('#', "##"));
        // tmux may keep a name differently (3.3a turns a newline into
        // `\012`); the resource must hold what tmux holds.
        let stored = server.display(&id, "#{session_name}");
        server.tmux(&[
            "set-option",
            "-t",
            &id,
            "@agent-goal",
            &format!("#({touch})"),
        ]);
        made.push((id, stored));
    }
    let (client, _notices) = serve(&server).await;

    for (id, stored) in &made {
        let view = read(&client, &find_uri(&client, id).await).await.unwrap();
        assert_eq!(view["session_id"], id.as_str());
        assert_eq!(&view["session_name"], stored.as_str());
        assert_eq!(view["goal"], format!("#({touch})"));
    }
    assert!(
        !marker.exists(),
        "a session name or option value was run as a command"
    );
    client.cancel().await.unwrap();
}

/// The URI `tmux-agent://sessions` gives for session `id`.
async fn find_uri(client: &Client, id: &str) -> String {
    let list = read(client, "tmux-agent://sessions").await.unwrap();
    let uri = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {list}"))["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let segment = &uri["tmux-agent://session/".len()..];
    assert!(
        segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "{uri} is percent-encoded"
    );
    uri
}

/// Creates, renames and kills a session while `client` listens.
async fn sessions_coming_and_going_are_told(
    server: &TmuxServer,
    client: &Client,
    notices: &mut mpsc::UnboundedReceiver<Notice>,
) {
    let new_uri = "tmux-agent://session/new%20one";
    // A client that cares lists first; changes from then on are told.
    assert!(!listed_sessions(client).await.iter().any(|u| u == new_uri));
    new_session(server, "new one");
    after_list_change(client, notices, None, "the new session is listed", |uris| {
        uris.iter().any(|u| u == new_uri)
    })
    .await;

    // resources/subscribe is MCP 2025-11-25's; rmcp 3.9 calls it legacy
    // next to the 2026-07-28 draft's subscriptions/listen.
    #[allow(deprecated)]
    client
        .subscribe(SubscribeRequestParams::new(new_uri))
        .await
        .expect("resources/subscribe");
    server.tmux(&["rename-session", "-t", "=new one", "renamed"]);
    let renamed = "the renamed session is listed";
    after_list_change(client, notices, Some(new_uri), renamed, |uris| {
        uris.iter().any(|u| u == "tmux-agent://session/renamed")
            && !uris.iter().any(|u| u == new_uri)
    })
    .await;

    server.tmux(&["kill-session", "-t", "=renamed"]);
    after_list_change(
        client,
        notices,
        None,
        "the killed session is gone",
        |uris| !uris.iter().any(|u| u == "tmux-agent://session/renamed"),
    )
    .await;
}

#[tokio::test]
async fn list_changed_when_sessions_come_and_go_without_a_daemon() {
    let server = TmuxServer::start_with_session("base");
    let (client, mut notices) = serve(&server).await;
    sessions_coming_and_going_are_told(&server, &client, &mut notices).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn list_changed_when_sessions_come_and_go_beside_a_daemon() {
    let server = TmuxServer::start_with_session("base");
    let daemon = Daemon::start(&server);
    let (client, mut notices) = serve(&server).await;
    // tmux-agent's own session is not a resource.
    assert_eq!(
        listed_sessions(&client).await,
        ["tmux-agent://session/base"]
    );
    sessions_coming_and_going_are_told(&server, &client, &mut notices).await;
    client.cancel().await.unwrap();
    daemon.stop(&server);
}

#[tokio::test]
async fn list_changed_over_streamable_http_to_each_client() {
    use rmcp::service::ServiceExt;
    let server = TmuxServer::start_with_session("base");
    let http =
        crate::serve_http::start_http_with(serve_command_for(&server, &["--http", "127.0.0.1:0"]))
            .await;
    let connect = async || {
        let (tx, notices) = mpsc::unbounded_channel();
        let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(http.url.clone());
        let client = tokio::time::timeout(PATIENCE, Recorder(tx).serve(transport))
            .await
            .expect("HTTP handshake timed out")
            .expect("HTTP handshake failed");
        (client, notices)
    };
    // Two MCP sessions on one server share its watch; each is told.
    let (client, mut notices) = connect().await;
    let (other, mut other_notices) = connect().await;
    listed_sessions(&other).await;
    sessions_coming_and_going_are_told(&server, &client, &mut notices).await;
    after_list_change(
        &other,
        &mut other_notices,
        None,
        "the other client saw it all",
        |uris| uris == ["tmux-agent://session/base"],
    )
    .await;
    client.cancel().await.unwrap();
    other.cancel().await.unwrap();
    drop(http);
}
