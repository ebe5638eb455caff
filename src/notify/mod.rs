//! Notifications (issue #12 item 4): when an agent's status becomes one the
//! user asked to hear about (`[notify] on`, default `waiting`), tell them.
//!
//! The [`Notifier`] task takes the status keeper's [`Change`]s and, for
//! each one that passes the filters (the status, `coordinator_only`, the
//! rate limit per session or group), does what `[notify]` turns on:
//!
//! - `display`: a `display-message` on every terminal client attached to
//!   *another* session (the user looking at the agent's own session sees
//!   it already), and `bell`: a BEL written to those clients' terminals;
//! - `desktop`: `notify-send`, if it is on `PATH` (looked up once);
//! - `webhook`: the event as JSON, POSTed through the outbox
//!   ([`webhook`]): durable, retried with the one backoff.
//!
//! Each costs at most a few tmux commands per notification, and nothing
//! while no status changes.

pub mod settings;
pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::dispatch::Dispatchers;
use crate::agent::identity::ServerIdentity;
use crate::agent::outbox::{NewAction, Priority, SharedOutbox};
use crate::agent::pending::PendingGauge;
use crate::control::command::Command;
use crate::control::connection::ControlHandle;
use crate::status::{AgentStatus, Change};
use crate::supervise::Restarts;

pub use settings::{NotifySection, NotifySettings, RateLimitPer};
pub use webhook::Webhook;

/// What tmux says about the pane of a change, read once per notification.
const PLACE_FORMAT: &str = "#{session_id}\t#{session_name}\t#{window_index}\t#{pane_index}\t#{@agent-group}\t#{@agent-role}";
const CLIENTS_FORMAT: &str = "#{client_name}\t#{session_id}\t#{client_control_mode}\t#{client_tty}";

/// Where a change's pane is, as tmux says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    session_id: String,
    session_name: String,
    window: String,
    pane_index: String,
    group: String,
    role: String,
}

impl Place {
    fn parse(line: &str) -> Option<Place> {
        let mut fields = line.split('\t');
        let mut next = || fields.next().map(str::to_owned);
        Some(Place {
            session_id: next()?,
            session_name: next()?,
            window: next()?,
            pane_index: next()?,
            group: next().unwrap_or_default(),
            role: next().unwrap_or_default(),
        })
    }
}

/// The webhook's delivery: its own dispatcher on the daemon's outbox.
/// What the webhook's calls go through: the daemon's outbox, its
/// `@agent-pending`, and the count of restarted dispatchers.
pub struct Queue {
    pub outbox: SharedOutbox,
    pub pending: PendingGauge,
    pub restarts: Restarts,
}

struct WebhookQueue {
    outbox: SharedOutbox,
    dispatchers: Dispatchers<Webhook>,
    identity: ServerIdentity,
}

/// The notification task (see the module doc).
pub struct Notifier {
    settings: NotifySettings,
    control: ControlHandle,
    webhook: Option<WebhookQueue>,
    notify_send: Option<PathBuf>,
    /// When each session (or group) last notified.
    last: HashMap<String, Instant>,
}

impl Notifier {
    /// A notifier; with a webhook in `settings`, its dispatcher is started
    /// on `outbox` (and stopped with `shutdown`).
    pub fn new(
        settings: NotifySettings,
        control: ControlHandle,
        queue: Queue,
        identity: ServerIdentity,
        shutdown: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let Queue {
            outbox,
            pending,
            restarts,
        } = queue;
        let webhook = match &settings.webhook {
            Some(url) => {
                let caller = Arc::new(Webhook::new(url, settings.webhook_timeout)?);
                let dispatchers = Dispatchers::new(
                    control.clone(),
                    outbox.clone(),
                    caller,
                    identity.clone(),
                    shutdown,
                    restarts,
                    pending,
                );
                dispatchers.start(&[webhook::SERVER.to_owned()]);
                Some(WebhookQueue {
                    outbox,
                    dispatchers,
                    identity,
                })
            }
            None => None,
        };
        let notify_send = settings
            .desktop
            .then(|| find_on_path("notify-send"))
            .flatten();
        Ok(Self {
            settings,
            control,
            webhook,
            notify_send,
            last: HashMap::new(),
        })
    }

    /// Notifies on `changes` until `shutdown`; then lets the webhook's
    /// dispatcher deliver what is due (bounded by the daemon's drain).
    pub async fn run(
        mut self,
        mut changes: broadcast::Receiver<Change>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => self.on_change(&change).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "notifications fell behind the status changes; some were skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = shutdown.cancelled() => break,
            }
        }
        if let Some(queue) = &self.webhook {
            queue.dispatchers.stop().await;
        }
    }

    /// One change: filtered, then each way to notify that is on.
    pub async fn on_change(&mut self, change: &Change) {
        if !self.settings.on.contains(&change.new) || change.old == Some(change.new) {
            return;
        }
        let Some(place) = self.place(change).await else {
            tracing::debug!(pane = %change.pane, "the pane is gone; no notification");
            return;
        };
        if let Err(skip) = admit(&self.settings, &mut self.last, &place, Instant::now()) {
            tracing::debug!(pane = %change.pane, ?skip, "no notification");
            return;
        }
        let text = message(change, &place);
        tracing::info!(pane = %change.pane, status = %change.new, "notifying: {text}");
        if self.settings.display || self.settings.bell {
            self.tell_other_clients(&place, &text).await;
        }
        if let Some(program) = &self.notify_send {
            desktop(program.clone(), text.clone());
        }
        if let Some(queue) = &self.webhook {
            queue.enqueue(change, &place).await;
        }
    }

    async fn place(&self, change: &Change) -> Option<Place> {
        let command = Command::display_message(change.pane, PLACE_FORMAT).ok()?;
        let reply = self.control.run(command).await.ok()?;
        Place::parse(reply.text().lines().next()?)
    }

    /// The message and the bell on the terminal clients of other sessions.
    async fn tell_other_clients(&self, place: &Place, text: &str) {
        let Ok(command) = Command::list_clients(CLIENTS_FORMAT) else {
            return;
        };
        let Ok(reply) = self.control.run(command).await else {
            return;
        };
        for line in reply.text().lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, session, control, tty] = fields[..] else {
                continue;
            };
            if control == "1" || session == place.session_id {
                continue;
            }
            if self.settings.display {
                let ms = self.settings.display_time.as_millis() as u64;
                if let Ok(command) = Command::display_message_on(name, ms, text) {
                    let _ = self.control.run(command).await;
                }
            }
            if self.settings.bell {
                ring(tty);
            }
        }
    }
}

/// Starts the notifier on the daemon's connection and outbox, following
/// `changes` until `stop`. `sidecar` is the daemon's own session (the
/// server's identity, for the webhook's outbox keys, is read through it).
/// A notifier that cannot start (no HTTP client) is logged, and the daemon
/// goes on without it.
pub async fn spawn(
    settings: NotifySettings,
    control: ControlHandle,
    queue: Queue,
    sidecar: crate::control::SessionId,
    changes: broadcast::Receiver<Change>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let identity = server_identity(&control, sidecar).await;
    match Notifier::new(settings, control, queue, identity, stop.clone()) {
        Ok(notifier) => tokio::spawn(notifier.run(changes, stop)),
        Err(err) => {
            tracing::error!(%err, "cannot start the webhook's HTTP client; no notifications");
            tokio::spawn(async {})
        }
    }
}

/// The server's identity as the reactor reads it (`host`, `start_time`).
async fn server_identity(
    control: &ControlHandle,
    sidecar: crate::control::SessionId,
) -> ServerIdentity {
    let text = match Command::display_message(sidecar, crate::agent::identity::IDENTITY_FORMAT) {
        Ok(command) => control
            .run(command)
            .await
            .map(|reply| reply.text())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    ServerIdentity::parse(&text).unwrap_or_else(|| ServerIdentity {
        host: text.trim().to_owned(),
        start_time: "0".to_owned(),
    })
}

impl WebhookQueue {
    /// Commits the POST to the outbox and wakes its dispatcher.
    async fn enqueue(&self, change: &Change, place: &Place) {
        let body = payload(change, place);
        let session_key = match place.session_id.parse() {
            Ok(id) => self.identity.session_key(id).to_string(),
            Err(_) => return,
        };
        let action = NewAction {
            idempotency_key: format!(
                "notify:{session_key}:{}:{}:{}",
                change.pane,
                change.new,
                change.since.timestamp_micros()
            ),
            session_key,
            // The pane, not the session: a webhook's outcome is not the
            // session's `@agent-state` (the dispatcher sets options only
            // for a session id).
            session_id: change.pane.to_string(),
            event: format!("agent-{}", change.new),
            priority: Priority::Register,
            server: webhook::SERVER.to_owned(),
            tool: webhook::TOOL.to_owned(),
            template: json!("{payload}"),
            vars: json!({ "payload": body }),
            keep: json!({}),
            late: false,
        };
        let now = Utc::now().timestamp_millis();
        let committed = self
            .outbox
            .run(move |outbox| outbox.enqueue(&[action], now))
            .await;
        match committed {
            Ok(_) => self.dispatchers.wake(webhook::SERVER),
            Err(err) => tracing::error!(%err, "could not commit the webhook's notification"),
        }
    }
}

/// Why a change that passed the status filter does not notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    NotTheCoordinator,
    RateLimited,
}

/// The `coordinator_only` and rate-limit filters; records the notification
/// in `last` when it passes.
fn admit(
    settings: &NotifySettings,
    last: &mut HashMap<String, Instant>,
    place: &Place,
    now: Instant,
) -> Result<(), Skip> {
    if settings.coordinator_only && !place.group.is_empty() && place.role != "coordinator" {
        return Err(Skip::NotTheCoordinator);
    }
    let key = match settings.rate_limit_per {
        RateLimitPer::Group if !place.group.is_empty() => format!("group:{}", place.group),
        _ => format!("session:{}", place.session_id),
    };
    if let Some(at) = last.get(&key)
        && now.duration_since(*at) < settings.rate_limit
    {
        return Err(Skip::RateLimited);
    }
    last.insert(key, now);
    Ok(())
}

/// The text shown and sent to the desktop.
fn message(change: &Change, place: &Place) -> String {
    let kind = change.kind.as_ref().map_or("agent", |kind| kind.as_str());
    let what = match change.new {
        AgentStatus::Waiting => "is waiting for you",
        AgentStatus::Idle => "is done",
        AgentStatus::Working => "is working",
        AgentStatus::Exited => "has exited",
        AgentStatus::Unknown => "is in an unknown state",
    };
    format!(
        "{kind} in {}:{}.{} {what}",
        place.session_name, place.window, place.pane_index
    )
}

/// The webhook's JSON: the change, and where it happened.
fn payload(change: &Change, place: &Place) -> Value {
    json!({
        "event": format!("agent-{}", change.new),
        "pane": change.pane.to_string(),
        "session_id": place.session_id,
        "session": place.session_name,
        "window": place.window,
        "group": (!place.group.is_empty()).then_some(&place.group),
        "kind": change.kind.as_ref().map(|kind| kind.as_str()),
        "status": change.new.as_str(),
        "old": change.old.map(AgentStatus::as_str),
        "source": change.source.as_str(),
        "since": change.since.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

/// A BEL on a client's terminal; a terminal that is gone is no matter.
fn ring(tty: &str) {
    if !tty.starts_with("/dev/") {
        return;
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(tty)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"\x07"));
    if let Err(err) = written {
        tracing::debug!(tty, %err, "cannot ring the bell");
    }
}

/// `notify-send`, in the background: a desktop that is slow to answer must
/// not hold up the next notification.
fn desktop(program: PathBuf, text: String) {
    tokio::spawn(async move {
        let run = tokio::process::Command::new(&program)
            .args(["--app-name=tmux-agent", "tmux-agent", &text])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(std::time::Duration::from_secs(5), run).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => tracing::debug!(%status, "notify-send failed"),
            Ok(Err(err)) => tracing::debug!(%err, "cannot run notify-send"),
            Err(_) => tracing::debug!("notify-send did not finish in 5 s"),
        }
    });
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(session: &str, group: &str, role: &str) -> Place {
        Place {
            session_id: session.into(),
            session_name: "s".into(),
            window: "0".into(),
            pane_index: "0".into(),
            group: group.into(),
            role: role.into(),
        }
    }

    #[test]
    fn the_rate_limit_counts_per_session_or_per_group() {
        let mut settings = NotifySettings::default();
        let start = Instant::now();
        let later = start + std::time::Duration::from_secs(31);
        let mut last = HashMap::new();
        let (a, b) = (place("$1", "g", "member"), place("$2", "g", "member"));
        assert_eq!(admit(&settings, &mut last, &a, start), Ok(()));
        assert_eq!(
            admit(&settings, &mut last, &a, start),
            Err(Skip::RateLimited)
        );
        // Per session: another session of the group still notifies.
        assert_eq!(admit(&settings, &mut last, &b, start), Ok(()));
        assert_eq!(admit(&settings, &mut last, &a, later), Ok(()));

        settings.rate_limit_per = RateLimitPer::Group;
        let mut last = HashMap::new();
        assert_eq!(admit(&settings, &mut last, &a, start), Ok(()));
        assert_eq!(
            admit(&settings, &mut last, &b, start),
            Err(Skip::RateLimited)
        );
        // A session in no group counts as itself.
        assert_eq!(
            admit(&settings, &mut last, &place("$3", "", ""), start),
            Ok(())
        );

        settings.rate_limit = std::time::Duration::ZERO;
        assert_eq!(admit(&settings, &mut last, &b, start), Ok(()));
    }

    #[test]
    fn coordinator_only_lets_through_coordinators_and_sessions_in_no_group() {
        let settings = NotifySettings {
            coordinator_only: true,
            rate_limit: std::time::Duration::ZERO,
            ..Default::default()
        };
        let mut last = HashMap::new();
        let now = Instant::now();
        assert_eq!(
            admit(&settings, &mut last, &place("$1", "g", "member"), now),
            Err(Skip::NotTheCoordinator)
        );
        assert_eq!(
            admit(&settings, &mut last, &place("$2", "g", "coordinator"), now),
            Ok(())
        );
        assert_eq!(
            admit(&settings, &mut last, &place("$3", "", ""), now),
            Ok(())
        );
    }

    #[test]
    fn the_message_and_payload_say_what_and_where() {
        let change = Change {
            pane: "%4".parse().unwrap(),
            session: None,
            kind: Some(crate::status::AgentKind::Claude),
            old: Some(AgentStatus::Working),
            new: AgentStatus::Waiting,
            source: crate::status::Source::Activity,
            since: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let place = place("$1", "", "");
        assert_eq!(
            message(&change, &place),
            "claude in s:0.0 is waiting for you"
        );
        let body = payload(&change, &place);
        assert_eq!(body["event"], "agent-waiting");
        assert_eq!(body["old"], "working");
        assert_eq!(body["group"], Value::Null);
        assert_eq!(body["since"], "2027-01-15T08:00:00.000Z");
    }

    #[test]
    fn a_place_reads_back_with_empty_group_and_role() {
        let place = Place::parse("$3\twork\t1\t0\t\t").unwrap();
        assert_eq!(place.session_id, "$3");
        assert_eq!(place.group, "");
        assert!(Place::parse("$3").is_none());
    }
}
