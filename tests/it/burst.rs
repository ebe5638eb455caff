//! Bursts: tmux saying a great deal at once must never wedge the daemon.
//!
//! The daemon used to wedge when one `source-file` created 3,000 sessions:
//! the control connection waited to push each notification into a bounded
//! queue, and while it waited it read nothing from tmux, including the reply
//! the tracker (the queue's one reader) was waiting for. These tests show
//! the connection reading on while its consumer reads nothing, and the
//! whole daemon following bursts of thousands of sessions. Timings are not
//! asserted here (deadlines only); `scripts/bench` measures them.

use std::io::Write as _;
use std::time::Duration;

use tmux_agent::control::command::Command;
use tmux_agent::control::connection::{ConnectOptions, Connection, Empty, Incoming};
use tmux_agent::control::server::ServerSocket;
use tokio_util::sync::CancellationToken;

use crate::support::{PATIENCE, TmuxServer};

/// Writes `lines` as a tmux command file in the server's HOME; returns its path.
fn command_file(server: &TmuxServer, name: &str, lines: impl Iterator<Item = String>) -> String {
    let path = server.path(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for line in lines {
        writeln!(file, "{line}").expect("write");
    }
    file.flush().expect("flush");
    path.display().to_string()
}

/// A consumer that reads no notification at all still gets its replies:
/// 20,000 notifications (five times the old queue) arrive while nobody
/// takes them, and a command sent after them is answered. What waited
/// comes out as one "something changed", not 20,000 entries.
#[test]
fn the_connection_reads_on_while_its_consumer_reads_nothing() {
    let server = TmuxServer::start();
    // Each rename is one `%unlinked-window-renamed` to the control client
    // (the window is not in its session).
    let file = command_file(
        &server,
        "renames.tmux",
        (0..20_000).map(|n| format!("rename-window -t base:0 w{n}")),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let mut connection = Connection::open(
            ConnectOptions::new(ServerSocket::Name(server.name.clone())),
            shutdown.clone(),
        )
        .await
        .expect("attach");
        // Whatever the attach said, taken now, so that what follows is the flood's.
        while connection.notifications.try_recv().is_ok() {}

        server.tmux(&["source-file", &file]);
        // The flood has been sent to the control client when source-file
        // returns (tmux notifies while it runs the file); the reply to this
        // command comes after all of it on the wire.
        let command = Command::display_server("#{window_name}").unwrap();
        let reply = tokio::time::timeout(PATIENCE, connection.handle.run(command))
            .await
            .expect("a reply behind 20,000 unread notifications arrives")
            .expect("display-message succeeds");
        assert!(reply.success);

        assert_eq!(
            connection.notifications.try_recv(),
            Ok(Incoming::Changed),
            "the renames are one wake-up"
        );
        assert_eq!(
            connection.notifications.try_recv(),
            Err(Empty::Waiting),
            "and nothing else was queued for them"
        );
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed).await;
    });
}
