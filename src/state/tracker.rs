//! The tracker: the one task that owns the [`Model`], reads the server
//! whenever a notification says something may have changed, and publishes the
//! lifecycle events the diff yields.
//!
//! Triggers are `%sessions-changed`, `%session-renamed`,
//! `%client-session-changed`, `%client-detached`, and a 1 Hz poll of a
//! digest of every session's id, attached count, name and user-editable
//! `@agent-*` options ([`watch_format`]). The poll catches what tmux does not notify at all
//! (sessions created by hooks, `tmux set @agent-group ...`) and anything
//! missed. Notifications that arrive while a listing is in flight are
//! coalesced into the next listing: a listing is the whole truth, so one is
//! enough however many notifications asked for it. The connection does the
//! coalescing (a flag, see [`crate::control::connection::Notifications`]),
//! so however long a listing or a slow reactor keeps the tracker busy, the
//! connection goes on reading tmux: the tracker waits on the connection
//! (replies) and on the reactor (room for events), and neither waits on it.

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::model::{ClientInfo, Listing, Model, SessionInfo, SessionOptions};
use super::{EventKind, LifecycleEvent};
use crate::control::command::{Command, CommandError};
use crate::control::connection::{
    Connection, ControlError, ControlHandle, ExitReason, Incoming, Notifications,
};
use crate::control::options::{decode_listed, listed_option, parse_options};
use crate::control::server::ServerSocket;
use crate::control::{Notification, SessionId};
use crate::schema;

/// How often the tracker compares the sessions' digest ([`watch_format`])
/// with the last one, to catch what tmux does not notify.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// `list-sessions` format: fields whose values never hold a tab or newline
/// first, the (vis-escaped) name last, so a tab in it cannot shift fields.
const SESSION_FORMAT: &str = "#{session_id}\t#{session_created}\t#{session_name}";

/// `list-sessions` format of the options listing: the id, then each of
/// [`schema::session::LISTED`], percent-encoded
/// ([`crate::control::options::listed_option`]), tab-separated.
fn options_format() -> String {
    let mut format = String::from("#{session_id}");
    for option in schema::session::LISTED {
        format.push('\t');
        format.push_str(&listed_option(option));
    }
    format
}

/// The id tmux will give the next session (`$N`).
const NEXT_SESSION_ID: &str = "#{next_session_id}";

/// `list-clients` format.
const CLIENT_FORMAT: &str = "#{client_name}\t#{client_pid}\t#{client_control_mode}\t#{session_id}";

/// Errors that stop the tracker.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// tmux printed a listing line this version cannot read.
    #[error("unexpected {what} line from tmux: {line:?}")]
    Listing { what: &'static str, line: String },
}

/// How the tracker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackEnd {
    /// The user's last session closed; the tracker killed the sidecar's
    /// session so the server could exit as the user expects.
    LastSessionClosed,
    /// The tmux server exited (killed, or crashed) with sessions still in
    /// it: each got its `session-closed` event, since nothing else would
    /// ever close their goals.
    ServerExited { sessions: usize },
    /// The connection ended for another reason, the server still running
    /// (or, for [`ExitReason::Cancelled`], not asked).
    Connection(ExitReason),
}

impl std::fmt::Display for TrackEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LastSessionClosed => write!(f, "the last tmux session closed"),
            Self::ServerExited { sessions } => {
                write!(
                    f,
                    "the tmux server exited; its {sessions} session(s) closed with it"
                )
            }
            Self::Connection(reason) => reason.fmt(f),
        }
    }
}

/// Holds the moment between deciding to close the sidecar's session and
/// closing it open for this many milliseconds, for the test of a session
/// created in it (`tests/it/reconnect.rs`); never set outside tests.
pub const SELF_KILL_DELAY_ENV: &str = "TMUX_AGENT_FAULT_SELF_KILL_DELAY_MS";

/// Follows one tmux server through its control connection.
pub struct Tracker {
    control: ControlHandle,
    notifications: Notifications,
    closed: tokio::task::JoinHandle<ExitReason>,
    model: Model,
    snapshots: watch::Sender<Model>,
    /// Asked, when the connection ends, whether the server is still there.
    server: ServerSocket,
    /// Set once we have asked tmux to kill the sidecar's session.
    leaving: bool,
    /// The sidecar session's name, to go back to it (see [`Tracker::go_home`]).
    sidecar_name: String,
    /// The last [`watch_format`] digest read, `None` if it could not be.
    digest: Option<Vec<u8>>,
}

impl Tracker {
    /// Subscribes, reads the server once, and returns a tracker whose model
    /// already holds every existing session (no events for those).
    pub async fn start(connection: Connection, server: ServerSocket) -> Result<Self, TrackError> {
        let session = connection.session;
        let (snapshots, _) = watch::channel(Model::new(session));
        let (tracker, _) = Self::resume(connection, server, snapshots).await?;
        Ok(tracker)
    }

    /// [`Tracker::start`] on a new connection to a server this model has
    /// already followed (the daemon reconnecting after tmux dropped its
    /// client): the model is the last one `snapshots` holds, its receivers
    /// keep receiving, and what changed while no connection watched comes
    /// back as events from the diff, to send before [`Tracker::run`].
    pub async fn resume(
        connection: Connection,
        server: ServerSocket,
        snapshots: watch::Sender<Model>,
    ) -> Result<(Self, Vec<LifecycleEvent>), TrackError> {
        let Connection {
            handle,
            notifications,
            session,
            session_name,
            closed,
        } = connection;
        let mut model = snapshots.borrow().clone();
        // A new client may sit in a new sidecar session (the old one ends
        // a second after its client).
        model.set_sidecar(session);
        // The digest before the listing: a change between the two is in the
        // listing, and the first poll then lists once more, harmlessly.
        let digest = read_digest(&handle, session).await;
        let missed = model.reconcile(&list(&handle).await?, Utc::now());
        snapshots.send_replace(model.clone());
        let tracker = Self {
            control: handle,
            notifications,
            closed,
            model,
            snapshots,
            server,
            leaving: false,
            sidecar_name: session_name,
            digest,
        };
        Ok((tracker, missed))
    }

    /// The sender of [`Tracker::snapshots`], to hand to
    /// [`Tracker::resume`] after this tracker has ended.
    pub fn snapshot_sender(&self) -> watch::Sender<Model> {
        self.snapshots.clone()
    }

    /// The model as it stands.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// A handle for sending commands over the same connection.
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// Snapshots of the model, updated after every reconcile. Receivers are
    /// woken after *every* listing, even one that changed nothing in the
    /// model: a listing follows each change of the poll (which
    /// watches `@agent-group`), so this is also the group reconciler's
    /// "something may have changed" signal.
    pub fn snapshots(&self) -> watch::Receiver<Model> {
        self.snapshots.subscribe()
    }

    /// Runs until the connection ends or `shutdown` fires, sending events to
    /// `events` in the order they happened.
    ///
    /// `shutdown` ends it at once, whatever it was waiting for (a listing's
    /// reply, room in `events`): events not yet sent are dropped, which is
    /// what a stop means (the outbox holds what was already decided).
    pub async fn run(
        mut self,
        events: mpsc::Sender<LifecycleEvent>,
        shutdown: CancellationToken,
    ) -> Result<TrackEnd, TrackError> {
        let tracking = async {
            let reason = self.track(&events).await?;
            Ok(self.end(reason, &events).await)
        };
        tokio::select! {
            end = tracking => end,
            () = shutdown.cancelled() => Ok(TrackEnd::Connection(ExitReason::Cancelled)),
        }
    }

    /// Re-lists whenever the inbox says something may have changed, until
    /// the connection ends; returns why it ended.
    async fn track(
        &mut self,
        events: &mpsc::Sender<LifecycleEvent>,
    ) -> Result<ExitReason, TrackError> {
        self.leave_if_alone().await?;
        let mut poll =
            tokio::time::interval_at(tokio::time::Instant::now() + POLL_INTERVAL, POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                incoming = self.notifications.recv() => match incoming {
                    Some(incoming) => incoming,
                    None => return Ok((&mut self.closed).await.unwrap_or(ExitReason::Eof)),
                },
                _ = poll.tick() => match self.poll_changed().await {
                    // Something no notification reported: list as if one had.
                    true => Incoming::Changed,
                    false => continue,
                },
            };
            // Everything already in the inbox is answered by one listing.
            let mut dirty = false;
            let mut moved = false;
            let mut next = Some(first);
            while let Some(incoming) = next {
                if let Some(exit) = self.take(incoming, &mut dirty, &mut moved) {
                    return Ok(exit);
                }
                next = self.notifications.try_recv().ok();
            }
            if moved && !self.leaving {
                self.go_home().await?;
                // Its `%session-changed` came before its reply: taken now,
                // the new sidecar is not listed as a user's session.
                while let Ok(incoming) = self.notifications.try_recv() {
                    if let Some(exit) = self.take(incoming, &mut dirty, &mut moved) {
                        return Ok(exit);
                    }
                }
            }
            if !dirty {
                continue;
            }
            let listing = match list(&self.control).await {
                Ok(listing) => listing,
                // The connection closed under us: the next recv says why.
                Err(TrackError::Control(ControlError::Closed)) => continue,
                Err(err) => return Err(err),
            };
            let mut found = self.model.reconcile(&listing, Utc::now());
            self.name_missed(&mut found, listing.next_id).await;
            for event in found {
                tracing::info!(event = %event.kind, session_id = %event.session_id, session = %event.session, client = ?event.client, "lifecycle");
                // A consumer that went away does not stop tracking.
                let _ = events.send(event).await;
            }
            self.snapshots.send_replace(self.model.clone());
            self.leave_if_alone().await?;
        }
    }

    /// Reads the [`watch_format`] digest of all sessions; whether it changed
    /// since the last read. A failed read is not a change: the connection's
    /// end, if that is why, comes through the notifications.
    async fn poll_changed(&mut self) -> bool {
        let Some(now) = read_digest(&self.control, self.model.sidecar()).await else {
            return false;
        };
        let changed = self.digest.as_ref() != Some(&now);
        self.digest = Some(now);
        changed
    }

    /// Gives each `session-missed` event in `events` the name the daemon's
    /// hook kept for it (`@agent-name-$N`, see `schema::global`), and
    /// unsets the names of ids below `next_id`, which this listing has
    /// accounted for (a later id's name may be needed by the next one).
    /// Without the hook (a `watch` on its own) there are none, and one
    /// `show-options -g` per listing with new ids is all it costs.
    async fn name_missed(&self, events: &mut [LifecycleEvent], next_id: Option<u32>) {
        if !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::SessionCreated | EventKind::SessionMissed))
        {
            return;
        }
        let Ok(reply) = self.control.run(Command::show_global_options()).await else {
            return;
        };
        let prefix = schema::global::SESSION_NAME_PREFIX;
        let Ok(names) = parse_options(reply.lines.iter().map(|l| l.as_ref()), prefix) else {
            return;
        };
        for event in events
            .iter_mut()
            .filter(|e| e.kind == EventKind::SessionMissed)
        {
            if let Some(name) = names.get(&format!("{prefix}{}", event.session_id)) {
                event.session = name.clone();
            }
        }
        for option in names.keys() {
            let id = option
                .strip_prefix(prefix)
                .and_then(|id| SessionId::try_from(id.to_owned()).ok());
            let accounted = match (id, next_id) {
                (Some(id), Some(next)) => id.0 < next,
                (Some(_), None) => true,
                // Not a name the hook wrote: not ours to keep.
                (None, _) => true,
            };
            if accounted && let Ok(unset) = Command::unset_global_option(option) {
                let _ = self.control.queue(unset).await;
            }
        }
    }

    /// Takes one item of the inbox into `dirty` (list again) and `moved`
    /// (our client is off the sidecar's session); the reason when it is
    /// the connection's `%exit`.
    fn take(
        &mut self,
        incoming: Incoming,
        dirty: &mut bool,
        moved: &mut bool,
    ) -> Option<ExitReason> {
        match incoming {
            Incoming::Changed => *dirty = true,
            Incoming::Overflowed { dropped } => {
                tracing::warn!(
                    dropped,
                    "notifications from tmux were dropped; re-reading the server"
                );
                *dirty = true;
            }
            Incoming::Notification(Notification::Exit { reason }) => {
                return Some(ExitReason::Exit(reason));
            }
            // Our own client's session changed: back home (a sidecar
            // session, maybe a new one), or moved away.
            Incoming::Notification(Notification::SessionChanged { session, name }) => {
                if name == self.sidecar_name {
                    self.model.set_sidecar(session);
                    *moved = false;
                } else if session != self.model.sidecar() {
                    *moved = true;
                }
                *dirty = true;
            }
            Incoming::Notification(notification) => *dirty |= is_trigger(&notification),
        }
        None
    }

    /// Another client moved ours onto a user's session (`switch-client -c
    /// CLIENT -t SESSION`, by a person or a plugin): there it counts in the
    /// session's `#{session_attached}`, goes with a `detach-client -s` of
    /// that session, and the sidecar's session ends a second later (its
    /// pane sees it unattached), so a status line would show no daemon.
    /// Go back: join the sidecar's session, or make a new one; its
    /// `%session-changed` then names it the sidecar. The daemon is attached
    /// all along, so `@agent-daemon` stays `running`.
    async fn go_home(&mut self) -> Result<(), TrackError> {
        tracing::warn!(
            session = %self.sidecar_name,
            "another client moved the control client off its session; going back"
        );
        let home = crate::control::connection::sidecar_command(&self.sidecar_name)?;
        match self.control.run(home).await {
            // The connection's end, if that is why, comes next.
            Ok(_) | Err(ControlError::Closed) => Ok(()),
            Err(ControlError::Command { .. }) => {
                tracing::warn!("could not go back to the sidecar's session");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// When only the sidecar's session is left it is the one thing keeping
    /// the server alive: kill it, so the server exits as the user expects.
    async fn leave_if_alone(&mut self) -> Result<(), TrackError> {
        if self.leaving || !self.model.is_empty() {
            return Ok(());
        }
        self.leaving = true;
        tracing::info!("only the sidecar's session is left; closing it");
        // A user session created in this moment keeps the server alive
        // (see `daemon::link`); the test of that window holds it open.
        crate::fault::delay(SELF_KILL_DELAY_ENV).await;
        match self
            .control
            .run(Command::kill_session(self.model.sidecar()))
            .await
        {
            // Another sidecar client (a `watch` beside the daemon) may have
            // killed it first, or the server is already going.
            Ok(_) | Err(ControlError::Command { .. } | ControlError::Closed) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Says how tracking ended. A bare `%exit` or EOF can mean the server
    /// exited or only our session or client went away; asking the server
    /// tells which. Sessions that went down with their server are closed in
    /// the model, so their `session-closed` actions (complete the goal, save
    /// the context) still happen.
    async fn end(&mut self, reason: ExitReason, events: &mpsc::Sender<LifecycleEvent>) -> TrackEnd {
        if !matches!(reason, ExitReason::Exit(_) | ExitReason::Eof) {
            return TrackEnd::Connection(reason);
        }
        if self.leaving {
            return TrackEnd::LastSessionClosed;
        }
        // A server that was just killed may still answer for a moment while
        // it shuts down: ask twice before believing it is still running.
        let running = async || self.server.is_running().await.unwrap_or(false);
        if running().await {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if running().await {
                return TrackEnd::Connection(reason);
            }
        }
        let closed = self.model.reconcile(&Listing::default(), Utc::now());
        let sessions = closed
            .iter()
            .filter(|e| e.kind == super::EventKind::SessionClosed)
            .count();
        tracing::warn!(sessions, "the tmux server exited; closing its sessions");
        for event in closed {
            tracing::info!(event = %event.kind, session_id = %event.session_id, session = %event.session, client = ?event.client, "lifecycle");
            let _ = events.send(event).await;
        }
        self.snapshots.send_replace(self.model.clone());
        TrackEnd::ServerExited { sessions }
    }
}

/// Whether a queued notification may mean the sessions or clients changed
/// (the change signals never reach here: the inbox turns them into
/// [`Incoming::Changed`]).
fn is_trigger(notification: &Notification) -> bool {
    matches!(
        notification,
        Notification::SessionsChanged
            | Notification::SessionRenamed { .. }
            | Notification::ClientSessionChanged { .. }
            | Notification::ClientDetached { .. }
            | Notification::SessionChanged { .. }
    )
}

/// The 1 Hz reconciliation digest over all sessions: their ids, attached
/// counts, names and user-editable `@agent-*` options, in one
/// `display-message`.
///
/// This was a `refresh-client -B` subscription, which tmux evaluates
/// itself; but tmux ≤ 3.6 crashes (tmux#4916: the subscription timer reads
/// the client's session without a NULL check) when the session of a
/// control client with a subscription is destroyed before the client is
/// gone: `kill-session -t tmux-agent` took the whole server down about one
/// time in two on 3.3a (10 tries by hand), and tmux-agent reconnects after
/// exactly that.
/// Polling costs one command a second (≈0.1 ms) and has no such window.
fn watch_format() -> String {
    let mut format = String::from("#{S:#{session_id}=#{session_attached}=#{session_name}");
    for option in schema::session::USER_EDITABLE {
        // `\x01-\x1f` travel as real control characters inside the bracket
        // expression; the quoting of the command line escapes them.
        format.push_str(&format!("=#{{s/[\x01-\x1f]/?/:{option}}}"));
    }
    format.push_str(";}");
    format
}

/// The [`watch_format`] digest, `None` if tmux would not give it.
async fn read_digest(control: &ControlHandle, sidecar: SessionId) -> Option<Vec<u8>> {
    let command = Command::display_message(sidecar, &watch_format()).ok()?;
    Some(control.run(command).await.ok()?.lines.concat())
}

/// Lists sessions (with their options) and clients, with tmux's next
/// session id; the four commands go out back to back.
///
/// The options come in a listing of their own: a session's fields stay
/// readable even if its options are not, and a session made or killed
/// between the two listings just has no options read ([`SessionInfo::options`]
/// is `None`, and the reactor asks tmux for them).
async fn list(control: &ControlHandle) -> Result<Listing, TrackError> {
    // The next id first: a session made between the two commands is then
    // listed with an id at or above it, or, if already gone, counted as
    // missed at the next listing (see `Model`).
    let (next_id, sessions, options, clients) = tokio::join!(
        control.run(Command::display_server(NEXT_SESSION_ID)?),
        control.run(Command::list_sessions(SESSION_FORMAT)?),
        control.run(Command::list_sessions(&options_format())?),
        control.run(Command::list_clients(CLIENT_FORMAT)?),
    );
    let next_id = next_id?
        .text()
        .trim()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok());
    let mut sessions: Vec<SessionInfo> = sessions?
        .lines
        .iter()
        .map(|line| parse_session(&String::from_utf8_lossy(line)))
        .collect::<Result<_, _>>()?;
    match options {
        // Lines cut by the codec's limit would misname a value: read none.
        Ok(reply) if reply.dropped_lines == 0 => {
            let mut by_id: std::collections::HashMap<SessionId, SessionOptions> = reply
                .lines
                .iter()
                .filter_map(|line| parse_options_line(line))
                .collect();
            for session in &mut sessions {
                session.options = by_id.remove(&session.id);
            }
        }
        Ok(_) => tracing::warn!("an options listing was too long to read; asking per session"),
        Err(ControlError::Closed) => return Err(ControlError::Closed.into()),
        Err(err) => {
            tracing::warn!(%err, "could not list the sessions' options; asking per session")
        }
    }
    let clients = clients?
        .lines
        .iter()
        .map(|line| parse_client(&String::from_utf8_lossy(line)))
        .collect::<Result<_, _>>()?;
    Ok(Listing {
        sessions,
        clients,
        next_id,
    })
}

fn parse_session(line: &str) -> Result<SessionInfo, TrackError> {
    let bad = || TrackError::Listing {
        what: "list-sessions",
        line: line.to_owned(),
    };
    let mut fields = line.splitn(3, '\t');
    let id = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let created = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let name = fields.next().ok_or_else(bad)?.to_owned();
    Ok(SessionInfo {
        id,
        name,
        created,
        options: None,
    })
}

/// One line of the [`options_format`] listing: the session and its set
/// options (an empty value counts as unset, as everywhere else).
fn parse_options_line(line: &[u8]) -> Option<(SessionId, SessionOptions)> {
    let mut fields = line.split(|&b| b == b'\t');
    let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let mut options = SessionOptions::new();
    for name in schema::session::LISTED {
        let value = decode_listed(fields.next()?);
        if !value.is_empty() {
            options.insert(name.to_owned(), value);
        }
    }
    fields.next().is_none().then_some((id, options))
}

fn parse_client(line: &str) -> Result<ClientInfo, TrackError> {
    let bad = || TrackError::Listing {
        what: "list-clients",
        line: line.to_owned(),
    };
    let mut fields = line.splitn(4, '\t');
    let name = fields
        .next()
        .filter(|f| !f.is_empty())
        .ok_or_else(bad)?
        .to_owned();
    let pid = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let control = fields.next().ok_or_else(bad)? == "1";
    let session = match fields.next().ok_or_else(bad)? {
        "" => None,
        id => Some(id.parse::<SessionId>().map_err(|_| bad())?),
    };
    Ok(ClientInfo {
        name,
        pid,
        control,
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_parse() {
        let s = parse_session("$3\t1795276358\tmy\tname with tab").unwrap();
        assert_eq!(
            (s.id, s.created, s.name.as_str()),
            (SessionId(3), 1795276358, "my\tname with tab")
        );
        assert!(parse_session("3\t1\tx").is_err());
        let c = parse_client("/dev/pts/3\t4242\t0\t$1").unwrap();
        assert_eq!(
            c,
            ClientInfo {
                name: "/dev/pts/3".into(),
                pid: 4242,
                control: false,
                session: Some(SessionId(1))
            }
        );
        assert_eq!(parse_client("client-9\t9\t1\t").unwrap().session, None);
        assert!(parse_client("x\ty\t0\t$1").is_err());
    }

    #[test]
    fn options_lines_parse() {
        let mut line = b"$4\tship it%0A%25 done".to_vec();
        line.extend(
            std::iter::repeat_n(b"\t".as_slice(), schema::session::LISTED.len() - 1).flatten(),
        );
        let (id, options) = parse_options_line(&line).unwrap();
        assert_eq!(id, SessionId(4));
        assert_eq!(
            options.into_iter().collect::<Vec<_>>(),
            [(
                schema::session::GOAL.to_owned(),
                "ship it\n% done".to_owned()
            )]
        );
        // A field too few or too many is no reading.
        assert!(parse_options_line(&line[..line.len() - 1]).is_none());
        line.extend_from_slice(b"\tx");
        assert!(parse_options_line(&line).is_none());
    }
}
