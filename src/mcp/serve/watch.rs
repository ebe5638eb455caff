//! How the built-in server learns that tmux sessions came, went or changed,
//! for `notifications/resources/list_changed` and
//! `notifications/resources/updated` (docs/ARCHITECTURE.md, "The built-in
//! server watches sessions").
//!
//! One watch per server process, shared by every connection (each
//! subscribes to its [`broadcast`] at its client's first resources
//! request), started by the first, and it works only while someone
//! listens:
//!
//! - when the daemon runs, it follows the daemon's event stream (the IPC
//!   request `events`, what `watch` follows): no tmux command at all, and
//!   a change is told as soon as the daemon acts on it;
//! - when no daemon runs, it compares one `list-sessions` of ids and names
//!   every [`POLL`] (1 s, the daemon tracker's own digest rate) with the
//!   last, and looks for a daemon at each tick. A session created and
//!   killed between two listings is not told (the list did not change).
//!
//! Not a control client of its own: tmux sends a control client its
//! notifications only once it is attached to a session, so the server
//! would make a session of its own (as the daemon does) in every user's
//! `tmux ls`, and control-client churn is what crashes tmux 3.5a–3.7c
//! (docs/COMPATIBILITY.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;

use super::agent::TmuxEnv;
use super::live;
use crate::events::DaemonEvent;
use crate::ipc::Endpoint;
use crate::ipc::client::{self, StreamLine};
use crate::state::EventKind;

/// How often the sessions are listed when no daemon runs.
pub const POLL: Duration = Duration::from_secs(1);

/// What a connection tells its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Sessions came or went: `notifications/resources/list_changed`.
    List,
    /// This resource changed: `notifications/resources/updated` for the
    /// connections subscribed to it.
    Updated(String),
}

/// The shared watch: connections subscribe; it starts with the first
/// subscriber and runs until `shutdown`.
#[derive(Debug, Clone)]
pub struct SessionWatch {
    env: TmuxEnv,
    shutdown: CancellationToken,
    changes: Arc<OnceCell<broadcast::Sender<Change>>>,
}

impl SessionWatch {
    /// A watch of the sessions of `env`'s server, not started yet.
    pub fn new(env: TmuxEnv, shutdown: CancellationToken) -> Self {
        Self {
            env,
            shutdown,
            changes: Arc::default(),
        }
    }

    /// The changes from now on. The first subscriber starts the watch, and
    /// its first look (the daemon's stream, else a listing) is taken before
    /// this returns, so a change made after it is told.
    pub async fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes
            .get_or_init(|| async {
                let (changes, _) = broadcast::channel(256);
                let endpoint = Endpoint::for_server(&self.env.server);
                let first = look(&self.env, &endpoint).await;
                tokio::spawn(run(
                    self.env.clone(),
                    endpoint,
                    changes.clone(),
                    self.shutdown.clone(),
                    first,
                ));
                changes
            })
            .await
            .subscribe()
    }
}

/// The sessions by id, as one listing gave them.
type Listing = BTreeMap<String, String>;

/// Where changes come from now.
enum Source {
    /// The daemon's event stream.
    Daemon(Box<client::EventFollower>),
    /// Listings, compared with the last one (`None`: it could not be read).
    Listings(Option<Listing>),
}

/// The daemon's stream when a daemon runs, else a listing.
async fn look(env: &TmuxEnv, endpoint: &Endpoint) -> Source {
    match client::subscribe(endpoint, None).await {
        Ok(follower) => {
            tracing::debug!(
                pid = follower.pid,
                "built-in server follows the daemon's events"
            );
            Source::Daemon(Box::new(follower))
        }
        Err(_) => Source::Listings(listing(env).await.ok()),
    }
}

async fn run(
    env: TmuxEnv,
    endpoint: Endpoint,
    changes: broadcast::Sender<Change>,
    shutdown: CancellationToken,
    mut source: Source,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        source = match source {
            Source::Daemon(follower) => {
                follow_daemon(*follower, &changes, &shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
                // What happened between the daemon's last event and the
                // next listing is told as one list change.
                let _ = changes.send(Change::List);
                Source::Listings(listing(&env).await.ok())
            }
            Source::Listings(last) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                // No one listens: no command. The last listing stays, so
                // what changed meanwhile is told to the next listener.
                if changes.receiver_count() == 0 {
                    Source::Listings(last)
                } else if let Ok(follower) = client::subscribe(&endpoint, None).await {
                    // A daemon started: it tells from now on; what came
                    // before its stream is told as one list change.
                    let _ = changes.send(Change::List);
                    Source::Daemon(Box::new(follower))
                } else {
                    match listing(&env).await {
                        Ok(now) => {
                            if let Some(before) = &last {
                                tell(&changes, before, &now);
                            }
                            Source::Listings(Some(now))
                        }
                        Err(_) => Source::Listings(last),
                    }
                }
            }
        };
    }
}

/// The sessions' ids and names now.
async fn listing(env: &TmuxEnv) -> Result<Listing, live::LiveError> {
    Ok(live::sessions(env)
        .await?
        .into_iter()
        .map(|s| (s.session_id, s.session_name))
        .collect())
}

/// Tells what differs between two listings: the list when a session came,
/// went or was renamed; each gone or renamed session's resource as updated.
fn tell(changes: &broadcast::Sender<Change>, before: &Listing, now: &Listing) {
    if before == now {
        return;
    }
    let _ = changes.send(Change::List);
    for (id, name) in before {
        if now.get(id) != Some(name) {
            let _ = changes.send(Change::Updated(live::uri(name)));
        }
    }
}

/// Forwards the daemon's session events until its stream ends.
async fn follow_daemon(
    mut follower: client::EventFollower,
    changes: &broadcast::Sender<Change>,
    shutdown: &CancellationToken,
) {
    loop {
        let line = tokio::select! {
            line = follower.next() => line,
            () = shutdown.cancelled() => return,
        };
        let event = match line {
            Ok(Some(StreamLine::Event {
                event: Some(DaemonEvent::Lifecycle(event)),
                ..
            })) => event,
            // Fell behind: something was missed, so the list may differ.
            Ok(Some(StreamLine::Lagged { .. })) => {
                let _ = changes.send(Change::List);
                continue;
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        };
        for change in changes_of(&event) {
            let _ = changes.send(change);
        }
    }
}

/// What one daemon event changes among the resources.
fn changes_of(event: &crate::state::LifecycleEvent) -> Vec<Change> {
    let this = || Change::Updated(live::uri(&event.session));
    match event.kind {
        EventKind::SessionCreated | EventKind::SessionRestored | EventKind::SessionMissed => {
            vec![Change::List]
        }
        EventKind::SessionClosed => vec![Change::List, this()],
        EventKind::SessionRenamed => {
            let mut out = vec![Change::List];
            if let Some(old) = &event.old_name {
                out.push(Change::Updated(live::uri(old)));
            }
            out.push(this());
            out
        }
        EventKind::AgentWaiting
        | EventKind::AgentWorking
        | EventKind::AgentIdle
        | EventKind::AgentExited => vec![this()],
        EventKind::SessionAttached
        | EventKind::SessionDetached
        | EventKind::ClientAttached
        | EventKind::ClientDetached => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, &str)]) -> Listing {
        entries
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect()
    }

    fn told(before: &Listing, now: &Listing) -> Vec<Change> {
        let (tx, mut rx) = broadcast::channel(16);
        tell(&tx, before, now);
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_listing_that_did_not_change_tells_nothing() {
        let same = listing(&[("$1", "a")]);
        assert_eq!(told(&same, &same), []);
    }

    #[test]
    fn sessions_that_come_go_or_are_renamed_change_the_list() {
        let before = listing(&[("$1", "a"), ("$2", "b c")]);
        assert_eq!(
            told(
                &before,
                &listing(&[("$1", "a"), ("$2", "b c"), ("$3", "d")])
            ),
            [Change::List]
        );
        assert_eq!(
            told(&before, &listing(&[("$1", "a")])),
            [Change::List, Change::Updated(live::uri("b c"))]
        );
        assert_eq!(
            told(&before, &listing(&[("$1", "z"), ("$2", "b c")])),
            [Change::List, Change::Updated(live::uri("a"))]
        );
    }
}
