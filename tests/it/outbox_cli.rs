//! `tmux-agent outbox` on a real outbox, and the daemon's pruning of what it
//! delivered: failed calls are kept until a person retries or drops them;
//! delivered calls lose their payloads after `[outbox] keep`, their history
//! rows staying.

use std::path::PathBuf;

use crate::support::daemon::{agent, agent_err, agent_ok, json};
use crate::support::rig::Rig;
use crate::support::{PATIENCE, eventually};

/// Every session's registration fails for good (`isError`).
const FAILING: &str = r#"
[[on.session-created]]
server = "rec"
tool = "fail"
args = { message = "no goal for {session}", key = "{idempotency_key}" }
"#;

/// A short retention, and a registration that is delivered.
const PRUNED_FAST: &str = r#"
[outbox]
keep = "1s"

[[on.session-created]]
server = "rec"
tool = "echo"
args = { step = "register", name = "{session}", padding = "some payload to prune", key = "{idempotency_key}" }
"#;

fn outbox_file(rig: &Rig) -> PathBuf {
    crate::support::outbox_file(rig.server.home.path())
}

#[test]
fn failed_calls_are_listed_retried_and_dropped() {
    let rig = Rig::new(FAILING);
    // Before any daemon: nothing to list, and nothing to retry, said so.
    let listed = agent_ok(&rig.server, &["outbox", "list"]);
    assert!(listed.contains("no outbox yet"), "{listed}");
    let err = agent_err(&rig.server, &["outbox", "retry", "--all-failed"]);
    assert!(err.contains("no daemon has run on this server"), "{err}");

    let daemon = rig.start_daemon();
    rig.wait_calls(1);
    eventually(PATIENCE, "status counts the failure", || {
        (rig.status()["actions"]["failed"] == 1).then_some(())
    });
    daemon.stop(&rig.server);

    let failed = json(&agent_ok(
        &rig.server,
        &["outbox", "list", "--failed", "--json"],
    ));
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let entry = &failed[0];
    assert_eq!(
        (entry["state"].as_str(), entry["tool"].as_str()),
        (Some("failed"), Some("fail"))
    );
    assert!(
        entry["error"]
            .as_str()
            .unwrap()
            .contains("no goal for base"),
        "{entry}"
    );
    let id = entry["id"].as_i64().unwrap().to_string();
    let text = agent_ok(&rig.server, &["outbox", "list"]);
    assert!(
        text.contains("failed") && text.contains("tmux-agent outbox retry ID"),
        "{text}"
    );

    // Clear refusals: a missing id, no id at all.
    let err = agent_err(&rig.server, &["outbox", "retry", "99999"]);
    assert!(err.contains("no action 99999"), "{err}");
    let err = agent_err(&rig.server, &["outbox", "drop"]);
    assert!(err.contains("--all-failed"), "{err}");

    let retried = agent_ok(&rig.server, &["outbox", "retry", &id]);
    assert!(retried.contains("1 call pending again"), "{retried}");
    let pending = json(&agent_ok(
        &rig.server,
        &["outbox", "list", "--pending", "--json"],
    ));
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    let err = agent_err(&rig.server, &["outbox", "drop", &id]);
    assert!(err.contains("is pending, not failed"), "{err}");

    // The next daemon sends it again, with the same key; it fails again.
    let daemon = rig.start_daemon();
    let calls = rig.wait_calls(2);
    assert_eq!(
        calls[0]["arguments"]["key"], calls[1]["arguments"]["key"],
        "{calls:#?}"
    );
    eventually(PATIENCE, "the retry failed again", || {
        (rig.status()["actions"]["failed"] == 1).then_some(())
    });
    daemon.stop(&rig.server);

    let dropped = agent_ok(&rig.server, &["outbox", "drop", "--all-failed"]);
    assert!(dropped.contains("1 failed call dropped"), "{dropped}");
    let all = json(&agent_ok(&rig.server, &["outbox", "list", "--json"]));
    assert_eq!(all, serde_json::json!([]));
    let out = agent(&rig.server, &["outbox", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("retry"));
}

#[test]
fn delivered_payloads_are_pruned_after_the_retention_and_the_history_stays() {
    let rig = Rig::new(PRUNED_FAST);
    let _daemon = rig.start_daemon();
    rig.wait_calls(1);
    let outbox = outbox_file(&rig);
    let payload = || -> Option<(String, i64)> {
        let db = rusqlite::Connection::open_with_flags(
            &outbox,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        db.query_row(
            "SELECT a.state, (SELECT COUNT(*) FROM payloads p WHERE p.action_id = a.id)
             FROM actions a",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    };
    // Its payload row is deleted; its history row stays.
    eventually(PATIENCE, "the delivered call's payload pruned", || {
        payload().filter(|(state, payloads)| state == "delivered" && *payloads == 0)
    });
    let show = json(&agent_ok(&rig.server, &["show", "-t", "base", "--json"]));
    let history = show["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{show:#}");
    assert_eq!(history[0]["state"], "delivered");
    assert_eq!(history[0]["tool"], "echo");
}
