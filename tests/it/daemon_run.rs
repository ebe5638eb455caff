//! `daemon::run` in-process, against a real tmux server: it attaches, shows
//! itself in `@agent-daemon`, registers a new session with the recording
//! MCP server, answers over its socket, and stops when its token is
//! cancelled (or a `stop` request comes), leaving no option or socket
//! behind. Every file it uses is in the test's own HOME: the settings name
//! them, so nothing reads the process's environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tmux_agent::control::server::ServerSocket;
use tmux_agent::daemon::{self, DaemonError, DaemonSettings, Exit, ReloadTrigger};
use tmux_agent::ipc::{Endpoint, EndpointError, Request, Response};
use tmux_agent::mcp::discovery::DiscoveryInput;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::rig::read_calls;
use crate::support::{PATIENCE, TEST_SERVER, TmuxServer, wait_for, write_config};

/// How long a stopping daemon may take: nothing is left to deliver, so
/// well under its 5 s drain grace.
const STOP_WITHIN: Duration = Duration::from_secs(4);

/// A daemon running in this process on the server's runtime, with the
/// files it uses.
struct InProcess {
    runtime: Runtime,
    shutdown: CancellationToken,
    running: JoinHandle<Result<Exit, DaemonError>>,
    endpoint: Endpoint,
    record: PathBuf,
    /// What SIGHUP does in the binary.
    reload: ReloadTrigger,
}

impl InProcess {
    /// Starts `daemon::run` on `server`, calling the recording server `rec`
    /// on each session created, with every file under the server's HOME.
    fn start(server: &TmuxServer) -> Self {
        // The test thread polls tmux with blocking calls; the daemon has
        // its own threads.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let home = server.home.path();
        let record = home.join("record.jsonl");
        let shutdown = CancellationToken::new();
        let socket = ServerSocket::Name(server.name.clone());
        let (reload, reloads) = daemon::reload_channel();
        let settings = DaemonSettings {
            reloads,
            ..settings(home, &record)
        };
        let endpoint = Endpoint::in_dir(settings.runtime_dir.clone(), &socket);
        let running = runtime.spawn(daemon::run(settings, socket, shutdown.clone()));
        Self {
            runtime,
            shutdown,
            running,
            endpoint,
            record,
            reload,
        }
    }

    /// One request over the daemon's socket, as the CLI makes it.
    fn request(&self, request: &Request) -> Response {
        self.runtime
            .block_on(tmux_agent::ipc::request(&self.endpoint, request))
            .expect("the daemon answers")
    }

    /// Waits for `run` to return, at most `within`.
    fn ended(self, within: Duration) -> Result<Exit, DaemonError> {
        let InProcess {
            runtime, running, ..
        } = self;
        runtime
            // The timer is made inside the runtime: it needs its clock.
            .block_on(async { tokio::time::timeout(within, running).await })
            .unwrap_or_else(|_| panic!("daemon::run did not return within {within:?}"))
            .expect("daemon::run panicked")
    }
}

/// Settings that keep the daemon inside `home`: its config (the recording
/// server and one action), its outbox, its socket.
fn settings(home: &Path, record: &Path) -> DaemonSettings {
    let config = format!(
        "[mcp]\nimport_claude = false\n\n[reactor]\npreset = \"none\"\n\n\
         [servers.rec]\ncommand = {TEST_SERVER:?}\nargs = [\"--record\", {record:?}]\n\
         connect_timeout = \"5s\"\ncall_timeout = \"5s\"\n\n\
         [[on.session-created]]\nserver = \"rec\"\ntool = \"echo\"\n\
         args = {{ step = \"register\", name = \"{{session}}\" }}\n",
        record = record.display().to_string(),
    );
    let config_file = write_config(home, &config);
    let vars = HashMap::from([
        ("HOME".to_owned(), home.display().to_string()),
        (
            "XDG_CONFIG_HOME".to_owned(),
            home.join(".config").display().to_string(),
        ),
    ]);
    let discovery = DiscoveryInput {
        home: home.to_path_buf(),
        cwd: home.to_path_buf(),
        config_file: Some(config_file),
        vars,
    };
    DaemonSettings {
        outbox: home.join("state/outbox.db"),
        runtime_dir: home.join("run"),
        ..DaemonSettings::new(&ServerSocket::Default, discovery)
    }
}

/// Waits until the daemon shows itself as running.
fn wait_running(server: &TmuxServer) {
    let running = wait_for(PATIENCE, || {
        (server.global_option("@agent-daemon").as_deref() == Some("running")).then_some(())
    });
    assert!(running.is_some(), "@agent-daemon never became `running`");
}

/// Creates a session and waits until the daemon has registered it: the
/// recording server got its call, and status counts it.
fn create_and_wait_registered(server: &TmuxServer, daemon: &InProcess, name: &str) {
    server.tmux(&["new-session", "-d", "-s", name]);
    let registered = wait_for(PATIENCE, || {
        read_calls(&daemon.record)
            .iter()
            .any(|c| c["arguments"]["name"] == name)
            .then_some(())
    });
    assert!(
        registered.is_some(),
        "the recording server never got {name}'s register call: {:#?}",
        read_calls(&daemon.record)
    );
    match daemon.request(&Request::Status) {
        // `base` and the new one; the daemon's own session is not counted.
        Response::Status(status) => assert_eq!(status.sessions, 2, "{status:?}"),
        other => panic!("status answered {other:?}"),
    }
}

/// What it leaves on a server that lives on: no `running`, no socket, its
/// own session for the next daemon.
fn assert_nothing_left(server: &TmuxServer, endpoint: &Endpoint) {
    assert!(server.is_running());
    assert_eq!(
        server.global_option("@agent-daemon").unwrap_or_default(),
        ""
    );
    assert!(
        !endpoint.socket.exists(),
        "the socket file {} is left",
        endpoint.socket.display()
    );
}

#[test]
fn cancelling_the_token_stops_run_and_clears_its_option() {
    let server = TmuxServer::start();
    let daemon = InProcess::start(&server);
    wait_running(&server);
    create_and_wait_registered(&server, &daemon, "probe");
    // A reload through the trigger is answered like a `reload` request.
    let reloaded = daemon
        .runtime
        .block_on(daemon.reload.reload())
        .expect("the reload succeeds");
    assert!(
        reloaded.contains("1 action for session-created (unchanged)")
            && reloaded.contains("groups rebuilt"),
        "{reloaded}"
    );

    daemon.shutdown.cancel();
    let endpoint = daemon.endpoint.clone();
    let exit = daemon.ended(STOP_WITHIN).expect("run returns Ok");
    assert_eq!(exit, Exit::Stopped);
    assert_nothing_left(&server, &endpoint);
}

#[test]
fn a_stop_request_ends_run_and_frees_the_server_for_the_next_daemon() {
    let server = TmuxServer::start();
    let daemon = InProcess::start(&server);
    wait_running(&server);
    create_and_wait_registered(&server, &daemon, "probe");

    // A second daemon for the same server is refused at once, by name.
    let second = daemon.runtime.block_on(daemon::run(
        settings(server.home.path(), &daemon.record),
        ServerSocket::Name(server.name.clone()),
        CancellationToken::new(),
    ));
    match second {
        Err(DaemonError::Endpoint(EndpointError::Held { pid, .. })) => {
            assert_eq!(pid, Some(std::process::id()));
        }
        other => panic!("a second daemon on the same server: {other:?}"),
    }

    match daemon.request(&Request::Stop) {
        Response::Stopping { pid } => assert_eq!(pid, std::process::id()),
        other => panic!("stop answered {other:?}"),
    }
    // The caller's token is the caller's: a `stop` does not cancel it.
    let caller = daemon.shutdown.clone();
    let endpoint = daemon.endpoint.clone();
    let exit = daemon.ended(STOP_WITHIN).expect("run returns Ok");
    assert_eq!(exit, Exit::Stopped);
    assert!(!caller.is_cancelled());
    assert_nothing_left(&server, &endpoint);

    // The lock went with it: the next daemon starts and sees both sessions.
    let next = InProcess::start(&server);
    wait_running(&server);
    match next.request(&Request::Status) {
        Response::Status(status) => assert_eq!(status.sessions, 2, "{status:?}"),
        other => panic!("status answered {other:?}"),
    }
    next.shutdown.cancel();
    assert_eq!(
        next.ended(STOP_WITHIN).expect("run returns Ok"),
        Exit::Stopped
    );
}
