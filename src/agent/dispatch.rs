//! Delivery: one dispatcher task per MCP server sends that server's due
//! actions from the outbox and records each outcome (delivered with the
//! values to keep, failed for good, or pending again after a [`backoff`]
//! delay).
//!
//! One task per server, not per call: a server that is down holds up only
//! its own queue. Per-session order to a server is the outbox's rule, so a
//! dispatcher keeps up to the server's `concurrency` calls in flight, each
//! of a different session, and a session's calls go one after another. A
//! batch of calls is claimed in flight in one transaction and a batch of
//! answers recorded in one, each batch being whatever is there: a
//! dispatcher never waits to fill one. The dispatchers never stop for a
//! reload (actions already committed for a server no longer named are
//! still delivered); they stop at shutdown, after the calls in flight.
//!
//! What the caller is, is the [`ToolCaller`] trait: the daemon's
//! [`McpPool`](crate::mcp::McpPool), or a scripted fake in the unit tests.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::supervise::{Restarts, supervise};

use super::decide;
use super::identity::ServerIdentity;
use super::outbox::{Action, Claimed, Outbox, OutboxError, Outcome, Priority, SharedOutbox};
use super::pending::PendingGauge;
use super::template;
use super::trigger::Trigger;
use crate::backoff;
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::{ControlError, ControlHandle};
use crate::mcp::CallError;
use crate::schema::{self, AgentState};

/// How long a dispatcher with nothing due sleeps before it looks again
/// (it is woken at once when actions are committed for its server).
const IDLE_WAIT: Duration = backoff::MAX;
/// How long a dispatcher waits after the outbox could not be read.
const UNREADABLE_WAIT: Duration = backoff::START;
/// How often the drain at shutdown looks whether anything is still due.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Something that can call MCP tools: the MCP pool in the daemon.
pub trait ToolCaller: Send + Sync + 'static {
    /// Calls `tool` on `server`; the result is the tool's structured output.
    /// [`CallError::is_permanent`] decides between failing and retrying.
    fn call(
        &self,
        server: &str,
        tool: &str,
        args: Value,
    ) -> impl Future<Output = Result<Value, CallError>> + Send;

    /// How many calls `server` takes at once: a dispatcher keeps up to
    /// this many in flight (of different sessions).
    fn concurrency(&self, _server: &str) -> usize {
        1
    }

    /// Calls to `server` are about to be committed: a caller that connects
    /// on the first call may begin connecting now.
    fn expect_calls(&self, _server: &str) {}
}

impl ToolCaller for crate::mcp::McpPool {
    async fn call(&self, server: &str, tool: &str, args: Value) -> Result<Value, CallError> {
        self.call_tool(server, tool, args, Default::default())
            .await
            .map(|output| output.value)
    }

    fn concurrency(&self, server: &str) -> usize {
        self.spec(server)
            .map_or(1, |spec| spec.settings.concurrency.max(1))
    }

    /// Still lazy: this is the first call's connection, begun while the
    /// reactor commits the call (a spawned server's start and `initialize`
    /// took 34 ms of a start-up on 500 sessions, after the commit).
    fn expect_calls(&self, server: &str) {
        let pool = self.clone();
        let server = server.to_owned();
        tokio::spawn(async move {
            if let Err(err) = pool.connect(&server).await {
                tracing::debug!(%err, server, "could not connect ahead of the first call; the call will say why");
            }
        });
    }
}

/// What every dispatcher task shares.
struct Link<C> {
    control: ControlHandle,
    outbox: SharedOutbox,
    caller: Arc<C>,
    identity: ServerIdentity,
    stamps: StateStamps,
    pending: PendingGauge,
}

/// When each session's `@agent-state` was last set by a lifecycle event
/// (Unix ms of the event), so that a save or checkpoint decided before it
/// and delivered after it (late: a backlog, a server down, a restart)
/// does not overwrite the newer state with its own. The reactor records
/// what events set; the dispatchers only read.
#[derive(Debug, Clone, Default)]
pub(crate) struct StateStamps(Arc<Mutex<HashMap<SessionId, i64>>>);

impl StateStamps {
    /// An event of `at_ms` set the session's state (a later stamp stays).
    pub fn set_by_event(&self, id: SessionId, at_ms: i64) {
        let mut stamps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = stamps.entry(id).or_insert(at_ms);
        *stamp = (*stamp).max(at_ms);
    }

    /// The session is gone: `$id` may be another session's one day.
    pub fn forget(&self, id: SessionId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Whether an action decided at `decided_ms` is older than the state
    /// an event has set since.
    fn is_stale(&self, id: SessionId, decided_ms: i64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .is_some_and(|&stamp| stamp > decided_ms)
    }
}

/// The dispatchers of one reactor: one task per MCP server, started on
/// demand, each with a wake-up the reactor pokes when it commits actions.
pub(crate) struct Dispatchers<C> {
    link: Arc<Link<C>>,
    /// Grows when a reload names new servers; never shrinks.
    wake: Mutex<HashMap<String, Arc<Notify>>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Counts the dispatchers restarted after a panic (`status`).
    restarts: Restarts,
}

impl<C: ToolCaller> Dispatchers<C> {
    /// Tells the caller that calls to `server` are about to be committed
    /// (see [`ToolCaller::expect_calls`]).
    pub fn expect_calls(&self, server: &str) {
        self.link.caller.expect_calls(server);
    }

    pub fn new(
        control: ControlHandle,
        outbox: SharedOutbox,
        caller: Arc<C>,
        identity: ServerIdentity,
        shutdown: CancellationToken,
        restarts: Restarts,
        pending: PendingGauge,
    ) -> Self {
        Self {
            link: Arc::new(Link {
                control,
                outbox,
                caller,
                identity,
                stamps: StateStamps::default(),
                pending,
            }),
            wake: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
            restarts,
        }
    }

    /// Starts a dispatcher for each server in `servers` that has none yet.
    pub fn start(&self, servers: &[String]) {
        let mut wake = self.wakes();
        for server in servers {
            if wake.contains_key(server) {
                continue;
            }
            let notify = Arc::new(Notify::new());
            wake.insert(server.clone(), notify.clone());
            // A dispatcher that panicked would leave its server's calls
            // undelivered: it is started again, on the same wake-up. (An
            // action it had claimed stays `inflight`, for the next daemon's
            // recovery to send again.)
            let (link, name, shutdown) = (self.link.clone(), server.clone(), self.shutdown.clone());
            self.tasks.spawn(supervise(
                format!("dispatcher {server}"),
                self.restarts.clone(),
                self.shutdown.clone(),
                move || {
                    let run =
                        dispatch(link.clone(), name.clone(), notify.clone(), shutdown.clone());
                    async move {
                        run.await;
                        Ok::<(), std::convert::Infallible>(())
                    }
                },
            ));
        }
    }
}

impl<C> Dispatchers<C> {
    /// The state stamps the dispatchers guard `@agent-state` with: the
    /// reactor records in them what its events set.
    pub fn stamps(&self) -> StateStamps {
        self.link.stamps.clone()
    }

    /// Where `@agent-pending` is told that the count moved.
    pub fn pending(&self) -> &PendingGauge {
        &self.link.pending
    }

    /// Tells `server`'s dispatcher that actions were committed.
    pub fn wake(&self, server: &str) {
        if let Some(wake) = self.wakes().get(server) {
            wake.notify_one();
        }
    }

    /// The servers with a dispatcher.
    pub fn servers(&self) -> Vec<String> {
        self.wakes().keys().cloned().collect()
    }

    /// The wake-ups. Held only to look up or insert; a panic cannot leave
    /// the map half-changed, so a poisoned lock is taken as it is.
    fn wakes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.wake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers what is due while the shutdown token allows (unless it has
    /// fired already), then stops every dispatcher after its call in
    /// flight. What is left stays in the outbox for the next daemon.
    pub async fn stop(&self) {
        let servers = self.servers();
        if !self.shutdown.is_cancelled() {
            self.drain(&servers).await;
        }
        self.shutdown.cancel();
        for server in &servers {
            self.wake(server);
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Waits until no action is due or in flight, or until shutdown.
    async fn drain(&self, servers: &[String]) {
        loop {
            let now = Utc::now().timestamp_millis();
            let servers = servers.to_vec();
            let busy = self
                .link
                .outbox
                .run(move |outbox| {
                    servers
                        .iter()
                        .any(|server| outbox.has_due(server, now).unwrap_or(false))
                })
                .await;
            if !busy {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(DRAIN_POLL) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }
}

/// A call on its way: boxed, so that the calls of one dispatcher can be
/// awaited together.
type Sending<'a> = Pin<Box<dyn Future<Output = Sent> + Send + 'a>>;

/// Sends the due actions of one MCP server: up to the server's
/// `concurrency` at a time, never two of one session (the outbox's claim
/// takes only the heads of session queues with nothing in flight), each
/// batch claimed in one transaction and each batch of answers recorded in
/// one. A batch is what is there: nothing waits for more.
///
/// A round is one trip to the outbox's thread: the answers that came in
/// are recorded and the next batch is claimed, in that order (a session's next call reads the
/// values its last one kept, and is claimable only once that one is
/// recorded). At a few calls in flight the trips, not the transactions,
/// were what the rate paid for (docs/PERFORMANCE.md, figure 10).
async fn dispatch<C: ToolCaller>(
    link: Arc<Link<C>>,
    server: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut sending: FuturesUnordered<Sending<'_>> = FuturesUnordered::new();
    let mut finished: Vec<Sent> = Vec::new();
    loop {
        // A call is never cut short by shutdown: its own timeout bounds
        // it, and the daemon bounds the whole drain. (One cut short
        // anyway, by the daemon being killed, stays `inflight` and is
        // re-sent.) Nothing new is claimed once it has fired.
        let stopping = shutdown.is_cancelled();
        if stopping && sending.is_empty() && finished.is_empty() {
            return;
        }
        let room = if stopping {
            0
        } else {
            link.caller
                .concurrency(&server)
                .saturating_sub(sending.len())
        };
        let mut wait = IDLE_WAIT;
        if room > 0 || !finished.is_empty() {
            if !finished.is_empty() {
                kill_point(KillPoint::BeforeRecord);
            }
            let ended = std::mem::take(&mut finished);
            let now = Utc::now().timestamp_millis();
            let (outcomes, settled): (Vec<Outcome>, Vec<Settled>) =
                ended.iter().map(|sent| outcome(sent, now)).unzip();
            let answered = !outcomes.is_empty();
            let name = server.clone();
            let round = link
                .outbox
                .run(move |outbox| Round::take(outbox, &outcomes, &name, now, room))
                .await;
            if let Err(err) = &round.recorded {
                tracing::error!(%err, calls = ended.len(), "calls ended, but could not record it: they may be sent again");
            }
            for (sent, settled) in ended.into_iter().zip(settled) {
                show(&link, sent, settled).await;
            }
            if answered {
                link.pending.moved();
            }
            match round.claimed {
                Ok((claimed, due)) => {
                    if !claimed.is_empty() {
                        kill_point(KillPoint::BeforeSend);
                    }
                    for claimed in claimed {
                        match prepare(&link, claimed).await {
                            Ok(ready) => sending.push(Box::pin(send(&link, ready))),
                            Err(unsendable) => finished.push(unsendable),
                        }
                    }
                    if !finished.is_empty() {
                        continue;
                    }
                    if let Some(due) = due.filter(|due| *due > now) {
                        wait = Duration::from_millis((due - now) as u64).min(IDLE_WAIT);
                    }
                }
                Err(err) => {
                    tracing::error!(%err, server, "outbox unreadable; retrying in a second");
                    wait = UNREADABLE_WAIT;
                }
            }
            if answered && sending.is_empty() {
                // This server's queue is done for now: the count is not
                // moving any more, so it is shown at once.
                link.pending.settled();
            }
        }
        if stopping {
            while let Some(sent) = sending.next().await {
                finished.push(sent);
            }
            continue;
        }
        tokio::select! {
            Some(sent) = sending.next(), if !sending.is_empty() => {
                finished.push(sent);
                // Whatever else has answered meanwhile joins the record.
                while let Some(Some(sent)) = sending.next().now_or_never() {
                    finished.push(sent);
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// What one round's trip to the outbox brings back (see [`dispatch`]).
struct Round {
    /// Whether the answers were recorded.
    recorded: Result<(), OutboxError>,
    /// The batch claimed, and when to look again if it was smaller than
    /// the room there was.
    claimed: Result<(Vec<Claimed>, Option<i64>), OutboxError>,
}

impl Round {
    /// Records `outcomes` and claims up to `room` of `server`'s due
    /// actions. The two stay independent: an answer that cannot be
    /// recorded does not keep other sessions' calls from going out.
    fn take(
        outbox: &mut Outbox,
        outcomes: &[Outcome],
        server: &str,
        now: i64,
        room: usize,
    ) -> Self {
        let recorded = if outcomes.is_empty() {
            Ok(())
        } else {
            outbox.record(outcomes)
        };
        let claimed = if room == 0 {
            Ok((Vec::new(), None))
        } else {
            outbox.claim(server, now, room).and_then(|claimed| {
                // When to look again matters only when fewer are ready
                // than there is room for (and it reads every pending
                // action of the server).
                let due = if claimed.len() < room {
                    outbox.next_due(server, now)?
                } else {
                    None
                };
                Ok((claimed, due))
            })
        };
        Round { recorded, claimed }
    }
}

/// Where a test can have the daemon abort itself, to show that nothing is
/// lost there: `TMUX_AGENT_KILL_AT=before-send` aborts once a batch is
/// committed in flight and before any of it is sent;
/// `TMUX_AGENT_KILL_AT=before-record` once a call has been answered and
/// before its answer is recorded. Only in builds with the `test-server`
/// feature (the test suite's); never in an installed binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    BeforeSend,
    BeforeRecord,
}

#[cfg(feature = "test-server")]
fn kill_point(here: KillPoint) {
    static AT: std::sync::OnceLock<Option<KillPoint>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| match std::env::var("TMUX_AGENT_KILL_AT").as_deref() {
        Ok("before-send") => Some(KillPoint::BeforeSend),
        Ok("before-record") => Some(KillPoint::BeforeRecord),
        _ => None,
    });
    if *at == Some(here) {
        eprintln!("tmux-agent: TMUX_AGENT_KILL_AT: aborting at {here:?}");
        std::process::abort();
    }
}

#[cfg(not(feature = "test-server"))]
fn kill_point(_: KillPoint) {}

/// An action ready to send: its arguments rendered.
struct Ready {
    action: Action,
    args: Value,
    /// The session's option target, when it is this server's.
    target: Option<SessionId>,
    /// A save decided before the session's latest event.
    stale: bool,
}

/// A call's end, before it is recorded.
struct Sent {
    action: Action,
    target: Option<SessionId>,
    stale: bool,
    ended: Ended,
}

enum Ended {
    /// The server answered, or the call failed, after `latency_ms`.
    Answered {
        result: Result<Value, CallError>,
        latency_ms: i64,
    },
    /// Never sent: its arguments cannot be built.
    Unsendable(String),
}

/// Renders a claimed action's arguments and marks a save in progress; an
/// action whose arguments cannot be built ends here, for good.
async fn prepare<C: ToolCaller>(link: &Link<C>, claimed: Claimed) -> Result<Ready, Sent> {
    let Claimed { action, kept } = claimed;
    // Options are only ever set on the server the action was decided on:
    // after a tmux restart, `$3` is somebody else's session.
    let target = action
        .new
        .session_id
        .parse::<SessionId>()
        .ok()
        .filter(|_| link.identity.owns(&action.new.session_key));
    // A save decided before the session's latest event says nothing about
    // its state now: that event's state stays.
    let stale = target.is_some_and(|sid| link.stamps.is_stale(sid, action.decided_at));
    let mut vars = action.new.vars.as_object().cloned().unwrap_or_default();
    vars.extend(kept);
    vars.insert("idempotency_key".into(), json!(action.new.idempotency_key));
    super::vars::add_derived(&mut vars);
    match template::render(&action.new.template, &vars) {
        Ok(args) => {
            if action.new.priority == Priority::Save && !stale {
                set_state(link, target, AgentState::Saving).await;
            }
            Ok(Ready {
                action,
                args,
                target,
                stale,
            })
        }
        Err(err) => {
            let reason = format!("cannot build the arguments of {}: {err}", action.new.tool);
            Err(Sent {
                action,
                target,
                stale,
                ended: Ended::Unsendable(reason),
            })
        }
    }
}

/// Sends one call and waits for its end.
async fn send<C: ToolCaller>(link: &Link<C>, ready: Ready) -> Sent {
    let Ready {
        action,
        args,
        target,
        stale,
    } = ready;
    let started = std::time::Instant::now();
    let result = link
        .caller
        .call(&action.new.server, &action.new.tool, args)
        .await;
    Sent {
        action,
        target,
        stale,
        ended: Ended::Answered {
            result,
            latency_ms: started.elapsed().as_millis() as i64,
        },
    }
}

/// What the outbox records of a call's end, and what tmux shows after it.
enum Settled {
    Delivered { kept: Vec<(String, Value)> },
    Retry,
    Failed { reason: String },
}

/// The outcome to record for a call's end.
fn outcome(sent: &Sent, now: i64) -> (Outcome, Settled) {
    let new = &sent.action.new;
    let id = sent.action.id;
    match &sent.ended {
        Ended::Unsendable(reason) => {
            tracing::warn!(action = id, %reason, "action failed");
            failed(id, reason.clone(), now)
        }
        Ended::Answered {
            result: Ok(result),
            latency_ms,
        } => {
            let keep: BTreeMap<String, String> =
                serde_json::from_value(new.keep.clone()).unwrap_or_default();
            let kept: Vec<(String, Value)> = keep
                .iter()
                .filter_map(|(name, path)| {
                    template::extract(result, path).map(|v| (name.clone(), v.clone()))
                })
                .collect();
            for name in keep.keys().filter(|n| !kept.iter().any(|(k, _)| k == *n)) {
                tracing::warn!(
                    action = id,
                    tool = new.tool,
                    keep = name,
                    "the result has no value to keep"
                );
            }
            // One line per call is a debug line: at thousands of calls a
            // second, writing it was a visible share of the daemon's time.
            tracing::debug!(
                action = id,
                server = new.server,
                tool = new.tool,
                latency_ms,
                "delivered"
            );
            (
                Outcome::Delivered {
                    id,
                    at_ms: now,
                    latency_ms: *latency_ms,
                    kept: kept.clone(),
                },
                Settled::Delivered { kept },
            )
        }
        Ended::Answered {
            result: Err(err), ..
        } if err.is_permanent() => {
            let reason = err.to_string();
            tracing::warn!(
                action = id,
                server = new.server,
                tool = new.tool,
                reason,
                "call failed for good"
            );
            failed(id, reason, now)
        }
        Ended::Answered {
            result: Err(err), ..
        } => {
            // `attempts` counts the sends before this one.
            let delay = backoff::delay(sent.action.attempts.saturating_add(1));
            let reason = err.to_string();
            tracing::info!(action = id, server = new.server, tool = new.tool, reason, retry_in = ?delay, "call failed; will retry");
            (
                Outcome::Retry {
                    id,
                    error: reason,
                    retry_at_ms: now + delay.as_millis() as i64,
                },
                Settled::Retry,
            )
        }
    }
}

/// A call that failed for good: recorded failed (not retried again), and
/// shown in `@agent-state`.
fn failed(id: i64, reason: String, now: i64) -> (Outcome, Settled) {
    (
        Outcome::Failed {
            id,
            reason: reason.clone(),
            at_ms: now,
        },
        Settled::Failed { reason },
    )
}

/// Sets what tmux shows after a call's end is recorded.
async fn show<C: ToolCaller>(link: &Link<C>, sent: Sent, settled: Settled) {
    let Sent {
        action,
        target,
        stale,
        ..
    } = sent;
    let new = action.new;
    match settled {
        Settled::Retry => {}
        Settled::Failed { reason } => {
            set_state(link, target, AgentState::error(&reason)).await;
        }
        Settled::Delivered { kept } => {
            let Some(sid) = target else { return };
            for (name, value) in &kept {
                if name == "goal_id" {
                    let text = value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string());
                    set_session_option(&link.control, sid, schema::session::GOAL_ID, &text).await;
                }
            }
            let attached = new.vars["attached"] == json!(true);
            let trigger = new.event.parse::<Trigger>().ok();
            if let Some(state) = decide::state_after_delivery(trigger, new.priority, attached) {
                let saved = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                set_session_option(&link.control, sid, schema::session::SAVED, &saved).await;
                if stale {
                    tracing::debug!(
                        action = action.id,
                        "a late save: the newer @agent-state stays"
                    );
                } else {
                    set_state(link, Some(sid), state).await;
                }
            }
        }
    }
}

/// Sets `@agent-state` on `target`, when the session is this server's.
async fn set_state<C>(link: &Link<C>, target: Option<SessionId>, state: AgentState) {
    if let Some(sid) = target {
        set_session_option(
            &link.control,
            sid,
            schema::session::STATE,
            &state.to_string(),
        )
        .await;
    }
}

/// Sets a session option, ignoring a session that has gone away meanwhile.
///
/// The command is queued, not waited for: the next command on the
/// connection sees the option set, and a dispatcher does not spend a tmux
/// round trip per call (tmux is busiest exactly when calls pile up, in a
/// burst of new sessions).
pub(crate) async fn set_session_option(
    control: &ControlHandle,
    id: SessionId,
    name: &str,
    value: &str,
) {
    let Ok(command) = Command::set_option(id, name, value) else {
        return;
    };
    let Ok(answer) = control.queue(command).await else {
        return;
    };
    let name = name.to_owned();
    tokio::spawn(async move {
        match answer.await {
            Ok(Ok(_) | Err(ControlError::Command { .. } | ControlError::Closed)) | Err(_) => {}
            Ok(Err(err)) => {
                tracing::warn!(%err, session_id = %id, option = name, "could not set option")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::sync::mpsc;

    use super::*;
    use crate::agent::fake::{Call, ScriptedCaller};
    use crate::agent::outbox::{HistoryEntry, NewAction, Outbox};

    const SERVER: &str = "srv";

    /// One action for `server`: `tool` with `template`, on session `$<session>`
    /// of the server `box` started at 100.
    fn action(session: u32, n: usize, tool: &str, template: Value, keep: Value) -> NewAction {
        NewAction {
            idempotency_key: format!("box:100:${session}/session-created/1-1/{n}"),
            session_key: format!("box:100:${session}"),
            session_id: format!("${session}"),
            event: "session-created".into(),
            priority: Priority::Register,
            server: SERVER.into(),
            tool: tool.into(),
            template,
            vars: json!({"session": format!("s{session}")}),
            keep,
            late: false,
        }
    }

    fn simple(session: u32, n: usize, tool: &str) -> NewAction {
        action(session, n, tool, json!({}), json!({}))
    }

    struct Rig {
        outbox: SharedOutbox,
        caller: Arc<ScriptedCaller>,
        dispatchers: Dispatchers<ScriptedCaller>,
        commands: mpsc::UnboundedReceiver<String>,
    }

    impl Rig {
        fn new(caller: ScriptedCaller) -> Rig {
            let (control, commands) = ControlHandle::recording();
            let outbox = SharedOutbox::new(Outbox::in_memory().unwrap());
            let caller = Arc::new(caller);
            let identity = ServerIdentity::parse("box\t100").unwrap();
            let (pending, _) =
                PendingGauge::spawn(control.clone(), outbox.clone(), CancellationToken::new());
            let dispatchers = Dispatchers::new(
                control,
                outbox.clone(),
                caller.clone(),
                identity,
                CancellationToken::new(),
                Default::default(),
                pending,
            );
            Rig {
                outbox,
                caller,
                dispatchers,
                commands,
            }
        }

        /// Commits `actions`, lets the dispatcher deliver them, and returns
        /// their history once every one is delivered or failed.
        async fn run(&mut self, actions: &[NewAction]) -> Vec<HistoryEntry> {
            self.outbox
                .lock()
                .enqueue(actions, Utc::now().timestamp_millis())
                .unwrap();
            self.dispatchers.start(&[SERVER.to_owned()]);
            self.dispatchers.wake(SERVER);
            let keys: Vec<String> = actions.iter().map(|a| a.idempotency_key.clone()).collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let entries = self.outbox.lock().by_keys(&keys).unwrap();
                if entries
                    .iter()
                    .all(|e| e.state == "delivered" || e.state == "failed")
                {
                    self.dispatchers.stop().await;
                    return entries;
                }
                assert!(Instant::now() < deadline, "not done: {entries:#?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        /// The tmux commands the dispatcher sent so far.
        fn tmux(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.commands.try_recv().ok()).collect()
        }
    }

    fn tools_of(calls: &[Call], session: &str) -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.args.get("session").is_none_or(|s| s == session))
            .map(|c| c.tool.clone())
            .collect()
    }

    fn by_tool<'a>(entries: &'a [HistoryEntry], tool: &str) -> &'a HistoryEntry {
        entries.iter().find(|e| e.tool == tool).unwrap()
    }

    fn not_connected() -> CallError {
        CallError::NotConnected {
            server: SERVER.into(),
            retry_in: Duration::from_secs(1),
            last_error: None,
        }
    }

    #[tokio::test]
    async fn calls_of_one_session_go_in_the_order_decided() {
        let mut rig = Rig::new(ScriptedCaller::default());
        let with_session = |session: u32, n, tool: &str| {
            action(session, n, tool, json!({"session": "{session}"}), json!({}))
        };
        let actions = [
            with_session(1, 0, "a"),
            with_session(2, 0, "x"),
            with_session(1, 1, "b"),
            with_session(2, 1, "y"),
            with_session(1, 2, "c"),
        ];
        let entries = rig.run(&actions).await;
        assert!(
            entries.iter().all(|e| e.state == "delivered"),
            "{entries:#?}"
        );
        let calls = rig.caller.calls();
        assert!(calls.iter().all(|c| c.server == SERVER), "{calls:#?}");
        assert_eq!(tools_of(&calls, "s1"), ["a", "b", "c"]);
        assert_eq!(tools_of(&calls, "s2"), ["x", "y"]);
        // `@agent-pending` counts down to nothing, written by its writer
        // once the dispatcher has nothing left.
        let mut pending: Vec<String> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pending.last().is_some_and(|c| c.ends_with(" 0")) {
            assert!(Instant::now() < deadline, "{pending:?}");
            pending.extend(
                rig.tmux()
                    .into_iter()
                    .filter(|c| c.contains(schema::global::PENDING)),
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Different sessions' calls overlap up to the server's concurrency;
    /// one session's never do, and stay in the order decided.
    #[tokio::test]
    async fn sessions_calls_overlap_up_to_the_concurrency_and_each_session_stays_in_order() {
        let caller = ScriptedCaller::overlapping(4, Duration::from_millis(20));
        let mut rig = Rig::new(caller);
        let tools = ["a", "b", "c"];
        let actions: Vec<NewAction> = (0..3)
            .flat_map(|n| {
                (1..=8).map(move |session| {
                    action(
                        session,
                        n,
                        tools[n],
                        json!({"session": "{session}"}),
                        json!({}),
                    )
                })
            })
            .collect();
        let entries = rig.run(&actions).await;
        assert!(
            entries.iter().all(|e| e.state == "delivered"),
            "{entries:#?}"
        );
        let calls = rig.caller.calls();
        for session in 1..=8 {
            assert_eq!(tools_of(&calls, &format!("s{session}")), tools);
        }
        let (most, doubled) = rig.caller.overlap();
        assert_eq!(most, 4, "calls in flight at once");
        assert!(
            doubled.is_empty(),
            "two calls of one session at once: {doubled:?}"
        );
    }

    #[tokio::test]
    async fn a_retryable_failure_backs_off_and_holds_the_session_queue() {
        let caller = ScriptedCaller::default();
        caller
            .answer(SERVER, "register", Err(not_connected()))
            .answer(SERVER, "register", Ok(json!({})));
        let mut rig = Rig::new(caller);
        let entries = rig
            .run(&[simple(1, 0, "register"), simple(1, 1, "update")])
            .await;
        let calls = rig.caller.calls();
        let tools: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
        // The later call waits for the earlier one's retry.
        assert_eq!(tools, ["register", "register", "update"]);
        let waited = calls[1].at - calls[0].at;
        assert!(
            waited >= backoff::START.mul_f64(0.8),
            "retried after {waited:?}"
        );
        let register = by_tool(&entries, "register");
        assert_eq!(
            (register.state.as_str(), register.attempts),
            ("delivered", 2)
        );
        assert_eq!(by_tool(&entries, "update").state, "delivered");
    }

    #[tokio::test]
    async fn a_permanent_failure_is_recorded_and_not_retried() {
        let caller = ScriptedCaller::default();
        caller.answer(
            SERVER,
            "register",
            Err(CallError::ToolError {
                server: SERVER.into(),
                tool: "register".into(),
                message: "no such goal".into(),
                structured: None,
            }),
        );
        let mut rig = Rig::new(caller);
        let entries = rig
            .run(&[simple(1, 0, "register"), simple(1, 1, "update")])
            .await;
        let register = by_tool(&entries, "register");
        assert_eq!((register.state.as_str(), register.attempts), ("failed", 1));
        assert!(
            register
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no such goal")),
            "{register:?}"
        );
        // The session's next call still goes: a failure is final, not a block.
        assert_eq!(by_tool(&entries, "update").state, "delivered");
        let tools: Vec<String> = rig.caller.calls().into_iter().map(|c| c.tool).collect();
        assert_eq!(tools, ["register", "update"]);
        let tmux = rig.tmux();
        assert!(
            tmux.iter().any(|c| c.contains("-t '$1'")
                && c.contains(schema::session::STATE)
                && c.contains("error: ")
                && c.contains("no such goal")),
            "{tmux:#?}"
        );
    }

    #[tokio::test]
    async fn kept_values_reach_later_calls_and_the_goal_id_option() {
        let caller = ScriptedCaller::default();
        caller.answer(SERVER, "register", Ok(json!({"id": "g-1", "other": 2})));
        let mut rig = Rig::new(caller);
        let entries = rig
            .run(&[
                action(1, 0, "register", json!({}), json!({"goal_id": "$.id"})),
                action(
                    1,
                    1,
                    "complete",
                    json!({"id": "{goal_id}", "k": "{idempotency_key}"}),
                    json!({}),
                ),
            ])
            .await;
        assert!(
            entries.iter().all(|e| e.state == "delivered"),
            "{entries:#?}"
        );
        let calls = rig.caller.calls();
        assert_eq!(
            calls[1].args,
            json!({"id": "g-1", "k": "box:100:$1/session-created/1-1/1"})
        );
        let tmux = rig.tmux();
        assert!(
            tmux.iter().any(|c| c.contains("-t '$1'")
                && c.contains(schema::session::GOAL_ID)
                && c.contains("g-1")),
            "{tmux:#?}"
        );
    }

    #[tokio::test]
    async fn saves_mark_the_session_and_foreign_sessions_are_left_alone() {
        let mut save = simple(1, 0, "save");
        save.priority = Priority::Save;
        save.event = Trigger::Save.as_str().into();
        save.vars = json!({"attached": true});
        // A session of an earlier tmux server: `$2` may be someone else now.
        let mut foreign = simple(2, 0, "save");
        foreign.session_key = "box:99:$2".into();
        foreign.priority = Priority::Save;
        let mut rig = Rig::new(ScriptedCaller::default());
        rig.run(&[save, foreign]).await;
        let tmux = rig.tmux();
        let states: Vec<&String> = tmux
            .iter()
            .filter(|c| c.contains(schema::session::STATE))
            .collect();
        assert_eq!(states.len(), 2, "saving, then active: {tmux:#?}");
        assert!(
            states[0].contains("-t '$1'") && states[0].ends_with("saving"),
            "{states:?}"
        );
        assert!(
            states[1].contains("-t '$1'") && states[1].ends_with("active"),
            "{states:?}"
        );
        assert!(
            tmux.iter()
                .any(|c| c.contains(schema::session::SAVED) && c.contains("-t '$1'")),
            "{tmux:#?}"
        );
        assert!(!tmux.iter().any(|c| c.contains("-t '$2'")), "{tmux:#?}");
    }

    /// A save decided before the session's latest event (a detach, say)
    /// and delivered after it leaves that event's `@agent-state` alone.
    #[tokio::test]
    async fn a_late_save_never_overwrites_a_newer_state() {
        let mut late = simple(1, 0, "save");
        late.priority = Priority::Save;
        late.event = Trigger::Checkpoint.as_str().into();
        let mut fresh = simple(2, 0, "save");
        fresh.priority = Priority::Save;
        fresh.event = Trigger::Checkpoint.as_str().into();
        let mut rig = Rig::new(ScriptedCaller::default());
        // $1 was detached after its checkpoint was decided; $2's last event
        // is older than its checkpoint.
        let now = Utc::now().timestamp_millis();
        rig.dispatchers
            .stamps()
            .set_by_event(SessionId(1), now + 60_000);
        rig.dispatchers.stamps().set_by_event(SessionId(2), now - 1);
        let entries = rig.run(&[late, fresh]).await;
        assert!(
            entries.iter().all(|e| e.state == "delivered"),
            "{entries:#?}"
        );
        let tmux = rig.tmux();
        let states = |session: &str| -> Vec<String> {
            tmux.iter()
                .filter(|c| c.contains(schema::session::STATE) && c.contains(session))
                .cloned()
                .collect()
        };
        assert!(states("-t '$1'").is_empty(), "{tmux:#?}");
        assert_eq!(states("-t '$2'").len(), 2, "saving, then active: {tmux:#?}");
        // The save happened all the same: its time is shown.
        assert!(
            tmux.iter()
                .any(|c| c.contains(schema::session::SAVED) && c.contains("-t '$1'")),
            "{tmux:#?}"
        );
    }
}
