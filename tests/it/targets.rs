//! `-t NAME` reaches every session name tmux allows: an exact name is looked
//! up in a listing before tmux's own target syntax gets a say, so names that
//! look like ids (`$1`), pane or window ids (`%0`, `@1`), tokens (`{last}`),
//! or an exact-match prefix (`=x`) still name their session.

use crate::support::daemon::{agent_err, agent_ok, json, new_session};
use crate::support::tmux::TmuxServer;

#[test]
fn an_exact_name_wins_over_what_tmux_would_read_into_it() {
    let server = TmuxServer::start_with_session("base");
    // The first is named like the id another one gets (`$5`); tmux expands
    // formats in `new-session -s`, so `##{...}` makes a name with `#{...}`.
    let awkward = [
        "$5",
        "%0",
        "@1",
        "{last}",
        "=x",
        "a;b",
        "##{session_id}",
        "quote\"d 'name'",
        "ünï code",
        "-dash",
    ];
    let mut ids = Vec::new();
    for name in awkward {
        ids.push(new_session(&server, name));
    }
    let names = awkward.map(|n| n.replace("##", "#"));
    for (name, id) in names.iter().zip(&ids) {
        let shown = json(&agent_ok(&server, &["peers", "-t", name, "--json"]));
        assert_eq!(shown["session"]["id"], id.as_str(), "-t {name:?}: {shown}");
        assert_eq!(
            shown["session"]["name"],
            name.as_str(),
            "-t {name:?}: {shown}"
        );
    }
    // A session's id still works when no session is named like it.
    let shown = json(&agent_ok(&server, &["peers", "-t", &ids[2], "--json"]));
    assert_eq!(shown["session"]["name"], "@1");
    // A prefix still works when it names one session (tmux's own rule),
    // and an ambiguous one is an error that says so.
    let shown = json(&agent_ok(&server, &["peers", "-t", "ün", "--json"]));
    assert_eq!(shown["session"]["name"], "ünï code");
    new_session(&server, "basement");
    let err = agent_err(&server, &["peers", "-t", "bas"]);
    assert!(err.contains("no session \"bas\""), "{err}");
    assert_eq!(ids[0], "$1");
    assert_eq!(ids[4], "$5");
    // Writing through the resolved id: the options land on that session,
    // `$5` by name, not the session whose id is `$5`.
    agent_ok(&server, &["join", "-t", "$5", "g1"]);
    assert_eq!(
        server.option(&ids[0], "@agent-group").as_deref(),
        Some("g1")
    );
    assert_eq!(server.option(&ids[4], "@agent-group"), None);
    // The sidecar's session is refused by exact name as well.
    new_session(&server, "tmux-agent");
    let err = agent_err(&server, &["join", "-t", "tmux-agent", "g1"]);
    assert!(err.contains("tmux-agent's own session"), "{err}");
}
