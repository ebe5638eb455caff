//! `[notify]`'s webhook through a real daemon on a real tmux: an agent's
//! hook says it waits (Claude's `Notification` / `permission_prompt`), and
//! a local HTTP server (hyper, in the test) receives the event, once; with
//! the server down, the POST is retried through the outbox and arrives once
//! the server is back.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::tmux::TmuxServer;
use crate::support::{PATIENCE, eventually, write_config};

/// A local webhook receiver: every POST's JSON body, in arrival order.
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Listens on `addr` (port 0: any free port); the address it got.
    fn start(addr: SocketAddr) -> (Self, SocketAddr) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind the webhook receiver");
        let addr = listener.local_addr().unwrap();
        let recorded = bodies.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            recorded.lock().unwrap().push(json);
                            Ok::<_, hyper::Error>(Response::new(String::from("ok")))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (Self { bodies, runtime }, addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Nothing of it may still listen when the next test binds the port.
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

fn config(addr: SocketAddr) -> String {
    format!(
        r#"
[notify]
webhook = "http://{addr}/hook"
webhook_timeout = "2s"
display = false
bell = false
desktop = false
rate_limit = 0
"#
    )
}

/// A pane in session `agents` with the fake Claude showing its permission
/// dialog (so the activity fallback, reading the screen, agrees with the
/// hook).
fn agent_pane(server: &TmuxServer) -> String {
    let pane = server.fake_claude_window("agents", &server.path("agent"));
    server.tmux(&["send-keys", "-t", &pane, "ask", "Enter"]);
    eventually(PATIENCE, "the fake agent shows its dialog", || {
        server
            .tmux(&["capture-pane", "-p", "-t", &pane])
            .contains("Do you want to proceed?")
            .then_some(())
    });
    pane
}

/// Claude's hook saying it waits for a permission, run as Claude runs it.
fn claude_asks(server: &TmuxServer, pane: &str) -> Output {
    let mut cmd = server.agent();
    cmd.args(["hook", "claude"])
        .env("TMUX_PANE", pane)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run tmux-agent hook claude");
    let payload = br#"{"hook_event_name":"Notification","notification_type":"permission_prompt","session_id":"s-1","transcript_path":"/tmp/t.jsonl","cwd":"/tmp","message":"Claude needs your permission to use Bash"}"#;
    child.stdin.take().unwrap().write_all(payload).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the hook failed: {out:?}");
    out
}

fn waiting_events(bodies: &[Value], pane: &str) -> usize {
    bodies
        .iter()
        .filter(|body| body["event"] == "agent-waiting" && body["pane"] == pane)
        .count()
}

#[test]
fn a_webhook_receives_the_waiting_event_once() {
    let (receiver, addr) = Receiver::start("127.0.0.1:0".parse().unwrap());
    let server = TmuxServer::start_with_session("agents");
    write_config(server.home.path(), &config(addr));
    let daemon = Daemon::start(&server);
    let pane = agent_pane(&server);
    claude_asks(&server, &pane);
    let body = eventually(PATIENCE, "the webhook receives the waiting event", || {
        receiver
            .bodies()
            .into_iter()
            .find(|b| b["event"] == "agent-waiting")
    });
    assert_eq!(body["pane"], pane.as_str());
    assert_eq!(body["session"], "agents");
    assert_eq!(body["status"], "waiting");
    assert_eq!(body["kind"], "claude");
    assert_eq!(body["source"], "hook");
    // The same hook again is no new status: no second POST. A second pane
    // of the same session that starts waiting afterwards is the barrier:
    // its POST comes after anything the repeated hook could have caused
    // (one notifier, one queue per session, in order).
    claude_asks(&server, &pane);
    let second = agent_pane(&server);
    claude_asks(&server, &second);
    eventually(PATIENCE, "the second pane's waiting event", || {
        (waiting_events(&receiver.bodies(), &second) == 1).then_some(())
    });
    daemon.stop(&server);
    assert_eq!(
        waiting_events(&receiver.bodies(), &pane),
        1,
        "{:?}",
        receiver.bodies()
    );
}

#[test]
fn a_webhook_that_is_down_gets_the_event_when_it_is_back() {
    // A free port, with nothing listening on it yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TmuxServer::start_with_session("agents");
    write_config(server.home.path(), &config(addr));
    let mut daemon = Daemon::start(&server);
    let pane = agent_pane(&server);
    claude_asks(&server, &pane);
    assert!(
        daemon.process.wait_stderr("will retry", PATIENCE),
        "the POST failed and is to be retried: {}",
        daemon.process.stderr()
    );
    let (receiver, _) = Receiver::start(addr);
    eventually(PATIENCE, "the retried POST arrives", || {
        (waiting_events(&receiver.bodies(), &pane) > 0).then_some(())
    });
    daemon.stop(&server);
    assert_eq!(
        waiting_events(&receiver.bodies(), &pane),
        1,
        "{:?}",
        receiver.bodies()
    );
}
