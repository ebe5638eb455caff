//! The reactor: lifecycle events become MCP calls that are never lost.
//!
//! One task turns each event into actions (the configured calls, with the
//! event's values) and commits them to the [`Outbox`]; one dispatcher task
//! per MCP server sends what is due, in order, and records the outcome. The
//! tracker only hands events over a channel, so a slow or dead MCP server
//! delays nothing on the control connection: the outbox absorbs it.
//!
//! What the daemon shows in tmux, all set by `$id`:
//! `@agent-goal-id` (kept from the register call), `@agent-state`
//! (`active`, `detached`, `saving`, `error: <reason>`), `@agent-saved` (time
//! of the last successful save) on the session; `@agent-pending` (actions not
//! yet delivered) globally.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actions::{ActionMap, priority};
use super::context::{self, CaptureOptions, SessionContext};
use super::outbox::{Action, NewAction, Outbox, OutboxError, Priority};
use super::template;
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::options::parse_options;
use crate::state::{EventKind, LifecycleEvent, Model};

/// Why a tool call failed, as the reactor needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// A failure that a retry cannot fix (`isError`, invalid arguments).
    pub permanent: bool,
    pub message: String,
}

/// Something that can call MCP tools: the MCP pool in the daemon.
pub trait ToolCaller: Send + Sync + 'static {
    /// Calls `tool` on `server`; the result is the tool's structured output.
    fn call(
        &self,
        server: &str,
        tool: &str,
        args: Value,
    ) -> impl Future<Output = Result<Value, CallFailure>> + Send;
}

impl ToolCaller for crate::mcp::McpPool {
    async fn call(&self, server: &str, tool: &str, args: Value) -> Result<Value, CallFailure> {
        use crate::mcp::CallError;
        match self.call_tool(server, tool, args, Default::default()).await {
            Ok(output) => Ok(output.value),
            Err(err) => {
                // Only what the server itself rejected is permanent. A server
                // missing from the config stays pending: fixing the config
                // and reloading delivers what waited.
                let permanent = match &err {
                    CallError::ToolError { .. } | CallError::BadArguments { .. } => true,
                    // Invalid params, method not found: the call as built
                    // will never succeed.
                    CallError::JsonRpc { code, .. } => (-32602..=-32600).contains(code),
                    _ => false,
                };
                Err(CallFailure {
                    permanent,
                    message: err.to_string(),
                })
            }
        }
    }
}

/// What the reactor needs to know besides the actions.
#[derive(Debug, Clone)]
pub struct ReactorSettings {
    pub actions: ActionMap,
    pub capture: CaptureOptions,
    /// Save a checkpoint of every attached session this often.
    pub checkpoint_interval: Option<Duration>,
    /// The most actions one MCP server may have waiting; past it new
    /// checkpoints are dropped (never lifecycle calls).
    pub max_pending: u64,
    /// The defaults for a session without `@agent-goal` / `@agent-type`.
    pub default_goal: String,
    pub default_type: String,
}

impl Default for ReactorSettings {
    fn default() -> Self {
        Self {
            actions: ActionMap::new(),
            capture: CaptureOptions::default(),
            checkpoint_interval: None,
            max_pending: 10_000,
            default_goal: "tmux session {session}".to_owned(),
            default_type: "session".to_owned(),
        }
    }
}

/// Errors that stop the reactor.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("reading the tmux server's identity: {0}")]
    Control(#[from] ControlError),
    #[error(transparent)]
    Command(#[from] crate::control::command::CommandError),
}

/// What the reactor remembers of a session: what close-time calls need
/// after tmux has forgotten the session.
#[derive(Debug, Clone, Default)]
struct Memo {
    name: String,
    created: i64,
    /// The `@agent-*` options as last read.
    options: BTreeMap<String, String>,
    /// The last context captured.
    context: Option<SessionContext>,
    attached: bool,
}

/// The identity of the tmux server the daemon serves: session ids are only
/// unique within one server's lifetime, so keys include its start time.
#[derive(Debug, Clone)]
struct ServerIdentity {
    host: String,
    start_time: String,
}

impl ServerIdentity {
    fn session_key(&self, id: SessionId) -> String {
        format!("{}:{}:{}", self.host, self.start_time, id)
    }
}

/// The state shared by the reactor task and the dispatchers.
struct Shared<C> {
    control: ControlHandle,
    outbox: Mutex<Outbox>,
    caller: Arc<C>,
    identity: ServerIdentity,
    /// One wake-up per MCP server, poked when actions are enqueued.
    wake: HashMap<String, Arc<Notify>>,
}

/// Runs the reactor until `events` closes or `shutdown` fires.
///
/// `model` is the tracker's picture at start: sessions that exist but have
/// no actions in the outbox yet are registered as if just created, so
/// starting the daemon on a busy server tracks everything.
pub async fn run<C: ToolCaller>(
    settings: ReactorSettings,
    control: ControlHandle,
    mut outbox: Outbox,
    caller: Arc<C>,
    model: Model,
    mut events: mpsc::Receiver<LifecycleEvent>,
    shutdown: CancellationToken,
) -> Result<(), ReactorError> {
    let identity = server_identity(&control, model.sidecar()).await?;
    let recovered = outbox.recover()?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "re-sending calls whose answer a previous daemon never saw"
        );
    }
    let servers: Vec<String> = {
        let mut names: Vec<String> = settings
            .actions
            .values()
            .flatten()
            .map(|s| s.server.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let shared = Arc::new(Shared {
        control,
        outbox: Mutex::new(outbox),
        caller,
        identity,
        wake: servers
            .iter()
            .map(|s| (s.clone(), Arc::new(Notify::new())))
            .collect(),
    });

    let tasks = TaskTracker::new();
    for server in &servers {
        tasks.spawn(dispatch(shared.clone(), server.clone(), shutdown.clone()));
    }

    let mut reactor = Reactor {
        settings,
        shared: shared.clone(),
        memos: HashMap::new(),
        sequence: 0,
    };
    reactor.adopt(&model).await;
    publish_pending(&shared).await;

    let mut checkpoints = reactor.settings.checkpoint_interval.map(|every| {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => reactor.on_event(event).await,
                None => break,
            },
            _ = async { checkpoints.as_mut().expect("guarded").tick().await }, if checkpoints.is_some() => {
                reactor.checkpoint().await;
            }
            () = shutdown.cancelled() => break,
        }
    }
    // The events have ended (the server or the daemon is going): deliver
    // what is due while the caller's grace lasts, then stop the dispatchers.
    // What is left stays in the outbox for the next daemon.
    if !shutdown.is_cancelled() {
        drain(&shared, &servers, &shutdown).await;
    }
    shutdown.cancel();
    for wake in shared.wake.values() {
        wake.notify_one();
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Waits until no action is due or in flight, or until `shutdown` fires.
async fn drain<C>(shared: &Shared<C>, servers: &[String], shutdown: &CancellationToken) {
    loop {
        let busy = {
            let outbox = shared.outbox.lock().expect("outbox lock");
            let now = Utc::now().timestamp_millis();
            servers
                .iter()
                .any(|server| outbox.has_due(server, now).unwrap_or(false))
        };
        if !busy {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

struct Reactor<C> {
    settings: ReactorSettings,
    shared: Arc<Shared<C>>,
    memos: HashMap<SessionId, Memo>,
    /// Makes idempotency keys unique among events of the same millisecond.
    sequence: u64,
}

impl<C: ToolCaller> Reactor<C> {
    /// Takes over the sessions that exist at start.
    async fn adopt(&mut self, model: &Model) {
        for session in model.sessions() {
            let id = session.info.id;
            let mut memo = Memo {
                name: session.info.name.clone(),
                created: session.info.created,
                attached: session.is_attached(),
                ..Memo::default()
            };
            memo.options = self.read_options(id).await.unwrap_or_default();
            let key = self.shared.identity.session_key(id);
            let known = {
                let outbox = self.shared.outbox.lock().expect("outbox lock");
                outbox
                    .history(&key, 1)
                    .map(|h| !h.is_empty())
                    .unwrap_or(true)
            };
            self.memos.insert(id, memo);
            if !known {
                tracing::info!(session_id = %id, session = %session.info.name, "tracking a session that existed before the daemon");
                let event = LifecycleEvent {
                    kind: EventKind::SessionCreated,
                    session_id: id,
                    session: session.info.name.clone(),
                    time: Utc::now(),
                    client: None,
                    old_name: None,
                    session_created: Some(session.info.created),
                };
                self.enqueue(&event, "session-created", None).await;
            }
        }
    }

    async fn on_event(&mut self, event: LifecycleEvent) {
        let id = event.session_id;
        match event.kind {
            EventKind::SessionCreated => {
                let options = self.read_options(id).await.unwrap_or_default();
                self.memos.insert(
                    id,
                    Memo {
                        name: event.session.clone(),
                        created: event.session_created.unwrap_or_default(),
                        options,
                        ..Memo::default()
                    },
                );
                self.set_state(id, "active").await;
            }
            EventKind::SessionRenamed => {
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.name = event.session.clone();
                }
            }
            EventKind::SessionAttached => {
                self.refresh_options(id).await;
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.attached = true;
                }
                self.set_state(id, "active").await;
            }
            EventKind::SessionDetached => {
                self.refresh_options(id).await;
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.attached = false;
                }
                self.set_state(id, "detached").await;
            }
            _ => {}
        }
        let trigger = event.kind.as_str();
        let needs_context = self.needs_context(trigger);
        let context = if needs_context && event.kind != EventKind::SessionClosed {
            self.capture(id).await
        } else {
            None
        };
        self.enqueue(&event, trigger, context).await;
        if event.kind == EventKind::SessionClosed {
            self.memos.remove(&id);
        }
    }

    /// Saves a checkpoint of every attached session.
    async fn checkpoint(&mut self) {
        if !self.settings.actions.contains_key("checkpoint") {
            return;
        }
        let attached: Vec<(SessionId, String, i64)> = self
            .memos
            .iter()
            .filter(|(_, m)| m.attached)
            .map(|(id, m)| (*id, m.name.clone(), m.created))
            .collect();
        for (id, name, created) in attached {
            let server_backlog = self.backlogged();
            if server_backlog {
                tracing::warn!(session_id = %id, "queue full: skipping a checkpoint");
                continue;
            }
            let context = if self.needs_context("checkpoint") {
                self.capture(id).await
            } else {
                None
            };
            let event = LifecycleEvent {
                kind: EventKind::SessionAttached,
                session_id: id,
                session: name,
                time: Utc::now(),
                client: None,
                old_name: None,
                session_created: Some(created),
            };
            self.enqueue(&event, "checkpoint", context).await;
        }
    }

    /// Whether any server's queue is over the bound.
    fn backlogged(&self) -> bool {
        let outbox = self.shared.outbox.lock().expect("outbox lock");
        self.shared.wake.keys().any(|server| {
            outbox
                .counts(Some(server))
                .map(|c| c.pending + c.inflight >= self.settings.max_pending)
                .unwrap_or(false)
        })
    }

    fn needs_context(&self, trigger: &str) -> bool {
        self.settings.actions.get(trigger).is_some_and(|specs| {
            specs.iter().any(|s| {
                let text = s.args.to_string();
                text.contains("{context}") || text.contains("{observations}")
            })
        })
    }

    async fn capture(&mut self, id: SessionId) -> Option<SessionContext> {
        let memo = self.memos.get(&id)?;
        match context::capture(
            &self.shared.control,
            id,
            &memo.name,
            memo.created,
            &self.settings.capture,
        )
        .await
        {
            Ok(context) => {
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.context = Some(context.clone());
                }
                Some(context)
            }
            Err(err) => {
                tracing::warn!(session_id = %id, %err, "could not capture the session's context; using what was kept");
                None
            }
        }
    }

    async fn read_options(&self, id: SessionId) -> Option<BTreeMap<String, String>> {
        let reply = self
            .shared
            .control
            .run(Command::show_options(id))
            .await
            .ok()?;
        parse_options(reply.lines.iter().map(|l| l.as_ref()), "@agent-").ok()
    }

    async fn refresh_options(&mut self, id: SessionId) {
        if let Some(options) = self.read_options(id).await
            && let Some(memo) = self.memos.get_mut(&id)
        {
            memo.options = options;
        }
    }

    async fn set_state(&self, id: SessionId, state: &str) {
        set_session_option(&self.shared.control, id, "@agent-state", state).await;
    }

    /// Builds the event's values and commits its actions.
    async fn enqueue(
        &mut self,
        event: &LifecycleEvent,
        trigger: &str,
        context: Option<SessionContext>,
    ) {
        let Some(specs) = self.settings.actions.get(trigger).filter(|s| !s.is_empty()) else {
            return;
        };
        let id = event.session_id;
        let memo = self.memos.get(&id).cloned().unwrap_or_else(|| Memo {
            name: event.session.clone(),
            created: event.session_created.unwrap_or_default(),
            ..Memo::default()
        });
        let key = self.shared.identity.session_key(id);
        let context = context
            .or_else(|| memo.context.clone())
            .unwrap_or_else(|| minimal_context(id, &memo));
        let vars = self.vars(event, trigger, &memo, &key, &context);
        self.sequence += 1;
        let stamp = format!("{}-{}", event.time.timestamp_millis(), self.sequence);
        let actions: Vec<NewAction> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| NewAction {
                idempotency_key: format!("{key}/{trigger}/{stamp}/{i}"),
                session_key: key.clone(),
                session_id: id.to_string(),
                event: trigger.to_owned(),
                priority: priority(trigger),
                server: spec.server.clone(),
                tool: spec.tool.clone(),
                template: spec.args.clone(),
                vars: vars.clone(),
                keep: serde_json::to_value(&spec.keep).unwrap_or_default(),
            })
            .collect();
        let now = Utc::now().timestamp_millis();
        let result = {
            let mut outbox = self.shared.outbox.lock().expect("outbox lock");
            if trigger == "session-created" {
                // The entity name of memory presets is fixed at creation.
                let _ = outbox.keep(&key, "created_name", &Value::String(memo.name.clone()));
            }
            outbox.enqueue(&actions, now)
        };
        match result {
            Ok(_) => {
                for spec in specs {
                    if let Some(wake) = self.shared.wake.get(&spec.server) {
                        wake.notify_one();
                    }
                }
            }
            Err(err) => {
                tracing::error!(%err, session_id = %id, trigger, "could not commit actions: they are lost");
                set_session_option(
                    &self.shared.control,
                    id,
                    "@agent-state",
                    &short_error(&err.to_string()),
                )
                .await;
            }
        }
        publish_pending(&self.shared).await;
    }

    fn vars(
        &self,
        event: &LifecycleEvent,
        trigger: &str,
        memo: &Memo,
        key: &str,
        context: &SessionContext,
    ) -> Value {
        let option = |name: &str| memo.options.get(name).filter(|v| !v.is_empty()).cloned();
        let goal = option("@agent-goal")
            .unwrap_or_else(|| self.settings.default_goal.replace("{session}", &memo.name));
        let agent_type =
            option("@agent-type").unwrap_or_else(|| self.settings.default_type.clone());
        let time = event.time.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut vars = Map::new();
        vars.insert("session".into(), json!(event.session));
        vars.insert("session_id".into(), json!(event.session_id.to_string()));
        vars.insert("session_created".into(), json!(memo.created));
        vars.insert("session_key".into(), json!(key));
        vars.insert("goal".into(), json!(goal));
        vars.insert("type".into(), json!(agent_type));
        vars.insert("group".into(), json!(option("@agent-group")));
        vars.insert("role".into(), json!(option("@agent-role")));
        vars.insert("time".into(), json!(time));
        vars.insert("host".into(), json!(self.shared.identity.host));
        vars.insert("event".into(), json!(trigger));
        vars.insert("client".into(), json!(event.client));
        vars.insert("old_name".into(), json!(event.old_name));
        vars.insert(
            "context".into(),
            serde_json::to_value(context).unwrap_or_default(),
        );
        vars.insert(
            "observations".into(),
            json!(observations(trigger, &time, &goal, &agent_type, context)),
        );
        Value::Object(vars)
    }
}

/// The context of a session that can no longer be read from tmux: what the
/// reactor kept.
fn minimal_context(id: SessionId, memo: &Memo) -> SessionContext {
    let option = |name: &str| memo.options.get(name).cloned();
    SessionContext {
        session: memo.name.clone(),
        session_id: id,
        created: memo.created,
        goal: option("@agent-goal"),
        agent_type: option("@agent-type"),
        group: option("@agent-group"),
        role: option("@agent-role"),
        windows: Vec::new(),
        captured_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        truncated: false,
    }
}

/// One line per fact, for memory servers that store observations as text.
fn observations(
    trigger: &str,
    time: &str,
    goal: &str,
    agent_type: &str,
    context: &SessionContext,
) -> Vec<String> {
    let mut lines = vec![
        format!("{trigger} at {time}"),
        format!("goal: {goal}"),
        format!("type: {agent_type}"),
    ];
    if let Some(group) = &context.group {
        lines.push(format!(
            "group: {group} ({})",
            context.role.as_deref().unwrap_or("member")
        ));
    }
    for window in &context.windows {
        lines.push(format!(
            "window {}: {} ({} panes)",
            window.index,
            window.name,
            window.panes.len()
        ));
        for pane in &window.panes {
            lines.push(format!(
                "pane {}.{}: {} in {}",
                window.index, pane.index, pane.command, pane.path
            ));
            if !pane.lines.is_empty() {
                lines.push(format!(
                    "pane {}.{} last lines:\n{}",
                    window.index,
                    pane.index,
                    pane.lines.join("\n")
                ));
            }
        }
    }
    lines
}

/// The server's host name and start time, which make session keys unique.
async fn server_identity(
    control: &ControlHandle,
    sidecar: SessionId,
) -> Result<ServerIdentity, ReactorError> {
    let reply = control
        .run(Command::display_message(sidecar, "#{host}\t#{start_time}")?)
        .await?;
    let text = reply.text();
    let (host, start_time) = text.split_once('\t').unwrap_or((text.as_str(), "0"));
    Ok(ServerIdentity {
        host: host.to_owned(),
        start_time: start_time.trim().to_owned(),
    })
}

/// Sets a session option, ignoring a session that has gone away meanwhile.
async fn set_session_option(control: &ControlHandle, id: SessionId, name: &str, value: &str) {
    let Ok(command) = Command::set_option(id, name, value) else {
        return;
    };
    match control.run(command).await {
        Ok(_) | Err(ControlError::Command { .. } | ControlError::Closed) => {}
        Err(err) => tracing::warn!(%err, session_id = %id, option = name, "could not set option"),
    }
}

/// Publishes the count of undelivered actions in `@agent-pending`.
async fn publish_pending<C>(shared: &Shared<C>) {
    let pending = {
        let outbox = shared.outbox.lock().expect("outbox lock");
        outbox
            .counts(None)
            .map(|c| c.pending + c.inflight)
            .unwrap_or(0)
    };
    if let Ok(command) = Command::set_global_option("@agent-pending", &pending.to_string()) {
        let _ = shared.control.run(command).await;
    }
}

/// A reason short enough for a status line.
fn short_error(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    let mut short: String = first.chars().take(60).collect();
    if first.chars().count() > 60 {
        short.push('…');
    }
    format!("error: {short}")
}

/// The first retry waits this long; each further one twice as long.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest wait between retries.
const RETRY_CAP: Duration = Duration::from_secs(60);

fn retry_delay(attempts: u32) -> Duration {
    let exp = RETRY_BASE.saturating_mul(1u32 << attempts.min(6));
    let capped = exp.min(RETRY_CAP);
    // Up to 20% jitter, so a fleet of retries does not arrive together.
    let jitter = capped.as_millis() as u64 * u64::from(jitter_percent()) / 100;
    capped + Duration::from_millis(jitter)
}

fn jitter_percent() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::Instant::now()) % 20) as u32
}

/// Sends the due actions of one MCP server, one at a time, in order.
async fn dispatch<C: ToolCaller>(
    shared: Arc<Shared<C>>,
    server: String,
    shutdown: CancellationToken,
) {
    let wake = shared.wake[&server].clone();
    loop {
        let now = Utc::now().timestamp_millis();
        let next = {
            let mut outbox = shared.outbox.lock().expect("outbox lock");
            outbox
                .next_ready(&server, now)
                .and_then(|a| Ok((a, outbox.next_due(&server)?)))
        };
        let action = match next {
            Ok((Some(action), _)) => action,
            Ok((None, due)) => {
                let wait = due
                    .filter(|due| *due > now)
                    .map(|due| Duration::from_millis((due - now) as u64))
                    .unwrap_or(RETRY_CAP);
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            Err(err) => {
                tracing::error!(%err, server, "outbox unreadable; retrying in a second");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_BASE) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        // A call is never cut short by shutdown: its own timeout bounds it,
        // and the daemon bounds the whole drain. (One cut short anyway, by
        // the daemon being killed, stays `inflight` and is re-sent.)
        deliver(&shared, action).await;
        publish_pending(&shared).await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// Renders, sends and records one action.
async fn deliver<C: ToolCaller>(shared: &Shared<C>, action: Action) {
    let Action { id, new, attempts } = action;
    let session = new.session_id.parse::<SessionId>().ok();
    // Options are only ever set on the server the action was decided on:
    // after a tmux restart, `$3` is somebody else's session.
    let here = new.session_key.starts_with(&format!(
        "{}:{}:",
        shared.identity.host, shared.identity.start_time
    ));
    let target = session.filter(|_| here);

    let mut vars = new.vars.as_object().cloned().unwrap_or_default();
    let kept = {
        let outbox = shared.outbox.lock().expect("outbox lock");
        outbox.kept(&new.session_key).unwrap_or_default()
    };
    vars.extend(kept);
    vars.insert("idempotency_key".into(), json!(new.idempotency_key));
    let now = || Utc::now().timestamp_millis();
    let args = match template::render(&new.template, &vars) {
        Ok(args) => args,
        Err(err) => {
            let reason = format!("cannot build the arguments of {}: {err}", new.tool);
            tracing::warn!(action = id, %reason, "action failed");
            let _ = shared
                .outbox
                .lock()
                .expect("outbox lock")
                .mark_failed(id, &reason, now());
            if let Some(sid) = target {
                set_session_option(&shared.control, sid, "@agent-state", &short_error(&reason))
                    .await;
            }
            return;
        }
    };
    if let Err(err) = shared.outbox.lock().expect("outbox lock").mark_inflight(id) {
        tracing::error!(%err, action = id, "could not mark the action in flight; not sending it now");
        return;
    }
    if new.priority == Priority::Save
        && let Some(sid) = target
    {
        set_session_option(&shared.control, sid, "@agent-state", "saving").await;
    }
    let started = std::time::Instant::now();
    let outcome = shared.caller.call(&new.server, &new.tool, args).await;
    let latency = started.elapsed().as_millis() as i64;
    match outcome {
        Ok(result) => {
            let keep: BTreeMap<String, String> =
                serde_json::from_value(new.keep.clone()).unwrap_or_default();
            let kept: Vec<(String, Value)> = keep
                .iter()
                .filter_map(|(name, path)| {
                    template::extract(&result, path).map(|v| (name.clone(), v.clone()))
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
            if let Err(err) =
                shared
                    .outbox
                    .lock()
                    .expect("outbox lock")
                    .mark_delivered(id, now(), latency, &kept)
            {
                tracing::error!(%err, action = id, "delivered, but could not record it: it may be sent again");
            }
            tracing::info!(
                action = id,
                server = new.server,
                tool = new.tool,
                latency_ms = latency,
                "delivered"
            );
            if let Some(sid) = target {
                for (name, value) in &kept {
                    if name == "goal_id" {
                        let text = value
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| value.to_string());
                        set_session_option(&shared.control, sid, "@agent-goal-id", &text).await;
                    }
                }
                if new.priority == Priority::Save || new.event == "checkpoint" {
                    let saved = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                    set_session_option(&shared.control, sid, "@agent-saved", &saved).await;
                    let state = if new.event == "checkpoint" {
                        "active"
                    } else {
                        "detached"
                    };
                    set_session_option(&shared.control, sid, "@agent-state", state).await;
                }
            }
        }
        Err(failure) if failure.permanent => {
            tracing::warn!(
                action = id,
                server = new.server,
                tool = new.tool,
                reason = failure.message,
                "call failed for good"
            );
            let _ =
                shared
                    .outbox
                    .lock()
                    .expect("outbox lock")
                    .mark_failed(id, &failure.message, now());
            if let Some(sid) = target {
                set_session_option(
                    &shared.control,
                    sid,
                    "@agent-state",
                    &short_error(&failure.message),
                )
                .await;
            }
        }
        Err(failure) => {
            let delay = retry_delay(attempts);
            tracing::info!(action = id, server = new.server, tool = new.tool, reason = failure.message, retry_in = ?delay, "call failed; will retry");
            let retry_at = now() + delay.as_millis() as i64;
            let _ = shared.outbox.lock().expect("outbox lock").mark_retry(
                id,
                &failure.message,
                retry_at,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_cap() {
        assert!(
            retry_delay(0) >= Duration::from_secs(1)
                && retry_delay(0) < Duration::from_millis(1200)
        );
        assert!(retry_delay(3) >= Duration::from_secs(8));
        assert!(retry_delay(30) <= RETRY_CAP + RETRY_CAP / 5);
    }

    #[test]
    fn errors_fit_a_status_line() {
        let long = "x".repeat(200);
        assert_eq!(short_error(&long).chars().count(), "error: ".len() + 61);
        assert_eq!(short_error("a\nb"), "error: a");
    }
}
