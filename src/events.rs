//! The daemon's event stream: every event the daemon acts on, live or late,
//! for whoever follows it over the socket (`{"request":"events"}`): `watch`
//! today, the dashboard (DESIGN.md D18) next.
//!
//! [`DaemonEvent`] is the one type for whatever the daemon tells. Today
//! that is lifecycle events, the late ones its start makes from the journal
//! included; agent-status and message events (issues #12, #13) become
//! variants of their own, each with its own `event` name. On the wire each
//! is one JSON object per line in its variant's own shape (untagged): a
//! lifecycle event is exactly what `watch --json` prints.
//!
//! The stream keeps the last [`KEPT`] events with the time each was
//! published, so that a subscriber that comes a moment late can ask for
//! what it missed ([`EventStream::subscribe`] with `since`): a `watch` that
//! sees a daemon start comes after the late events of its start. The
//! replay and the live events are taken under one lock, so a subscriber
//! sees every event once, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::state::LifecycleEvent;

/// How many published events the stream keeps for late subscribers.
pub const KEPT: usize = 1024;

/// How many events a subscriber may fall behind before it is told it
/// missed some (`{"response":"lagged"}`).
const BACKLOG: usize = 1024;

/// Something the daemon tells its subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DaemonEvent {
    /// A session or client event, as the reactor acted on it.
    Lifecycle(LifecycleEvent),
    /// What happened to a message (`message-queued`, `-delivered`,
    /// `-read`, `-failed`).
    Message(crate::messages::MessageEvent),
}

/// The publishing end, shared by the reactor (which publishes) and the
/// IPC handler (which subscribes for each follower).
#[derive(Debug, Clone)]
pub struct EventStream {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// The last [`KEPT`] events, oldest first, with when each was published.
    kept: VecDeque<(DateTime<Utc>, DaemonEvent)>,
    live: broadcast::Sender<DaemonEvent>,
}

/// What a new subscriber gets: the kept events it asked for, then every
/// event published after them.
#[derive(Debug)]
pub struct Subscription {
    pub replay: Vec<DaemonEvent>,
    pub live: broadcast::Receiver<DaemonEvent>,
}

impl Default for EventStream {
    fn default() -> Self {
        let (live, _) = broadcast::channel(BACKLOG);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                kept: VecDeque::with_capacity(KEPT),
                live,
            })),
        }
    }
}

impl EventStream {
    /// Tells every subscriber `event` (none listening is fine) and keeps it.
    pub fn publish(&self, event: DaemonEvent) {
        let mut inner = self.lock();
        if inner.kept.len() == KEPT {
            inner.kept.pop_front();
        }
        inner.kept.push_back((Utc::now(), event.clone()));
        let _ = inner.live.send(event);
    }

    /// A new subscriber: the kept events published at or after `since`
    /// (none without it), then the live ones.
    pub fn subscribe(&self, since: Option<DateTime<Utc>>) -> Subscription {
        let inner = self.lock();
        let replay = match since {
            Some(since) => inner
                .kept
                .iter()
                .filter(|(at, _)| *at >= since)
                .map(|(_, event)| event.clone())
                .collect(),
            None => Vec::new(),
        };
        Subscription {
            replay,
            live: inner.live.subscribe(),
        }
    }

    /// Held only to push or copy: a panic cannot leave it half-changed.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::SessionId;
    use crate::state::EventKind;

    fn event(id: u32) -> DaemonEvent {
        DaemonEvent::Lifecycle(LifecycleEvent {
            kind: EventKind::SessionClosed,
            session_id: SessionId(id),
            session: format!("s{id}"),
            time: DateTime::from_timestamp_millis(1_795_276_800_000).unwrap(),
            client: None,
            old_name: None,
            session_created: None,
            late: id.is_multiple_of(2),
            options: None,
            agent: None,
        })
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_replay_it_asks_for_then_the_live_events_once() {
        let stream = EventStream::default();
        let before = Utc::now() - chrono::Duration::seconds(1);
        stream.publish(event(1));
        stream.publish(event(2));
        let mut fresh = stream.subscribe(None);
        let mut late = stream.subscribe(Some(before));
        let mut future = stream.subscribe(Some(Utc::now() + chrono::Duration::seconds(60)));
        stream.publish(event(3));
        assert!(fresh.replay.is_empty());
        assert_eq!(late.replay, vec![event(1), event(2)]);
        assert!(future.replay.is_empty());
        for sub in [&mut fresh, &mut late, &mut future] {
            assert_eq!(sub.live.recv().await.unwrap(), event(3));
            assert!(sub.live.try_recv().is_err());
        }
    }

    #[test]
    fn only_the_last_kept_events_are_replayed() {
        let stream = EventStream::default();
        let before = Utc::now() - chrono::Duration::seconds(1);
        for id in 0..(KEPT as u32 + 10) {
            stream.publish(event(id));
        }
        let replay = stream.subscribe(Some(before)).replay;
        assert_eq!(replay.len(), KEPT);
        assert_eq!(replay[0], event(10));
    }

    #[test]
    fn a_lifecycle_event_reads_back_in_the_shape_watch_prints() {
        let event = event(2);
        let line = serde_json::to_string(&event).unwrap();
        assert!(
            line.starts_with(r#"{"event":"session-closed","session_id":"$2""#),
            "{line}"
        );
        assert!(line.contains(r#""late":true"#), "{line}");
        let back: DaemonEvent = serde_json::from_str(&line).unwrap();
        // The time keeps its milliseconds only.
        let (DaemonEvent::Lifecycle(a), DaemonEvent::Lifecycle(b)) = (&back, &event) else {
            panic!("a lifecycle event read back as another kind: {back:?}");
        };
        assert_eq!(
            (a.kind, a.session_id, &a.session, a.late),
            (b.kind, b.session_id, &b.session, b.late)
        );
    }

    #[test]
    fn a_message_event_reads_back_as_one() {
        let line = r#"{"event":"message-delivered","id":"m-0123456789abcdef","send_id":"m-0123456789abcdef","from":"user","to":"$2","to_session":"$2","pane":"%4","thread":"m-0123456789abcdef","state":"delivered","via":"pane","attempts":1,"time":"2026-12-01T10:00:00.000Z"}"#;
        let event: DaemonEvent = serde_json::from_str(line).unwrap();
        let DaemonEvent::Message(message) = &event else {
            panic!("read as {event:?}");
        };
        assert_eq!(message.event, "message-delivered");
        assert_eq!(serde_json::to_string(&event).unwrap(), line);
    }
}
