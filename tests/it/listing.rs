//! The tracker's listing carries each session's `@agent-*` options, so the
//! reactor acts on an event without a `show-options` per session. These
//! tests read a real server's listing through a real control connection
//! and check that hostile values come back byte for byte as tmux stores
//! them (what `show-options` would have said).

use std::os::unix::ffi::OsStrExt as _;

use tmux_agent::control::SessionId;
use tmux_agent::control::connection::{ConnectOptions, Connection};
use tmux_agent::control::server::ServerSocket;
use tmux_agent::schema::session::{GOAL, GROUP, STATE, TYPE};
use tmux_agent::state::Tracker;
use tokio_util::sync::CancellationToken;

use crate::support::TmuxServer;

/// The options the tracker's first listing read for `session`.
fn listed(
    server: &TmuxServer,
    session: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let id: SessionId = server.session_id(session).parse().expect("an id");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let socket = ServerSocket::Name(server.name.clone());
        let connection = Connection::open(ConnectOptions::new(socket.clone()), shutdown.clone())
            .await
            .expect("attach");
        let tracker = Tracker::start(connection, socket).await.expect("a listing");
        let options = tracker
            .model()
            .session(id)
            .expect("listed")
            .info
            .options
            .clone();
        shutdown.cancel();
        options
    })
}

#[test]
fn hostile_option_values_come_back_from_the_listing_as_tmux_stores_them() {
    let server = TmuxServer::start();
    // Each byte the listing's encoding must carry: its own escape
    // character, tab, CR, LF, a line that looks like protocol, and more.
    let goal = format!(
        "50% done%0A\tx\r\n%end 1795276358 12 1\n%begin 1 2 3\n#{{session_name}}#(id) ;\"'\\ \x1b[31m{}",
        "é".repeat(1_000)
    );
    server.tmux(&["new-session", "-d", "-s", "work"]);
    server.tmux(&["set-option", "-t", "work", GOAL, &goal]);
    server.tmux(&["set-option", "-t", "work", TYPE, "%25"]);
    // Not UTF-8: read as the reactor always has, lossily.
    let status = server
        .command()
        .args(["set-option", "-t", "work", GROUP])
        .arg(std::ffi::OsStr::from_bytes(b"g\xff\xfeh"))
        .status()
        .expect("tmux");
    assert!(status.success());

    let options = listed(&server, "work").expect("the listing read the options");
    assert_eq!(options.get(GOAL), Some(&goal));
    assert_eq!(options.get(TYPE).map(String::as_str), Some("%25"));
    assert_eq!(
        options.get(GROUP).map(String::as_str),
        Some(String::from_utf8_lossy(b"g\xff\xfeh").as_ref())
    );
    // Unset options are absent, as in `show-options`.
    assert_eq!(options.get(STATE), None);
    assert_eq!(options.len(), 3, "{options:?}");
}

#[test]
fn a_session_without_options_is_listed_with_none_set() {
    let server = TmuxServer::start();
    assert_eq!(listed(&server, "base"), Some(Default::default()));
}
