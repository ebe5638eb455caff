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
//!
//! The settings come through a `watch` channel: a reload takes effect for
//! the next event, and a dispatcher starts for every newly named MCP server
//! (dispatchers are never stopped: actions already in the outbox for a
//! server no longer named are still delivered). Requests from the CLI come
//! through [`ReactorCommand`]s.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actions::{ActionMap, ActionSpec, priority};
use super::context::{self, CaptureOptions, SessionContext};
use super::outbox::{Action, NewAction, OutboxError, Priority, SharedOutbox};
use super::template;
use crate::backoff;
use crate::control::SessionId;
use crate::control::command::Command;
use crate::control::connection::{ControlError, ControlHandle};
use crate::control::options::parse_options;
use crate::schema::{self, AgentState};
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
        self.call_tool(server, tool, args, Default::default())
            .await
            .map(|output| output.value)
            .map_err(|err| CallFailure {
                permanent: err.is_permanent(),
                message: err.to_string(),
            })
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

/// What the reactor receives.
pub struct Inputs {
    /// The settings in force; a new value applies from the next event.
    pub settings: watch::Receiver<Arc<ReactorSettings>>,
    /// The tracker's lifecycle events, in order. The reactor runs until
    /// this closes (or shutdown).
    pub events: mpsc::Receiver<LifecycleEvent>,
    /// Requests from the CLI, through the daemon.
    pub commands: mpsc::Receiver<ReactorCommand>,
}

/// A request to the reactor.
#[derive(Debug)]
pub enum ReactorCommand {
    /// Save the session's context now: its `checkpoint` actions (or, when
    /// the config has none, the `session-detached` actions that carry the
    /// context: `{context}` or `{observations}`), committed at save
    /// priority under the event name `save`. Answers with the idempotency
    /// keys of the actions committed, or why nothing was.
    Save {
        session: SessionId,
        reply: oneshot::Sender<Result<Vec<String>, String>>,
    },
}

/// The event name under which a requested save is recorded.
pub const SAVE_EVENT: &str = "save";

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
    /// Shared with the daemon's status and save hooks.
    outbox: SharedOutbox,
    caller: Arc<C>,
    identity: ServerIdentity,
    /// One wake-up per MCP server with a dispatcher, poked when actions
    /// are enqueued. Grows when a reload names new servers.
    wake: Mutex<HashMap<String, Arc<Notify>>>,
}

impl<C> Shared<C> {
    fn wake(&self, server: &str) {
        if let Some(wake) = self.wake.lock().expect("wake lock").get(server) {
            wake.notify_one();
        }
    }

    fn servers(&self) -> Vec<String> {
        self.wake
            .lock()
            .expect("wake lock")
            .keys()
            .cloned()
            .collect()
    }
}

/// The MCP servers the settings' actions name, sorted.
pub fn named_servers(settings: &ReactorSettings) -> Vec<String> {
    let mut names: Vec<String> = settings
        .actions
        .values()
        .flatten()
        .map(|s| s.server.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Starts a dispatcher for each server in `servers` that has none yet.
fn start_dispatchers<C: ToolCaller>(
    shared: &Arc<Shared<C>>,
    servers: &[String],
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let mut wake = shared.wake.lock().expect("wake lock");
    for server in servers {
        if wake.contains_key(server) {
            continue;
        }
        let notify = Arc::new(Notify::new());
        wake.insert(server.clone(), notify.clone());
        tasks.spawn(dispatch(
            shared.clone(),
            server.clone(),
            notify,
            shutdown.clone(),
        ));
    }
}

/// The checkpoint timer of `settings`, if they ask for checkpoints.
fn checkpoint_timer(settings: &ReactorSettings) -> Option<tokio::time::Interval> {
    settings.checkpoint_interval.map(|every| {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

/// Runs the reactor until `events` closes or `shutdown` fires.
///
/// `model` is the tracker's picture at start: sessions that exist but have
/// no actions in the outbox yet are registered as if just created, so
/// starting the daemon on a busy server tracks everything.
pub async fn run<C: ToolCaller>(
    inputs: Inputs,
    control: ControlHandle,
    outbox: SharedOutbox,
    caller: Arc<C>,
    model: Model,
    shutdown: CancellationToken,
) -> Result<(), ReactorError> {
    let Inputs {
        settings: mut settings_rx,
        mut events,
        mut commands,
    } = inputs;
    let settings = settings_rx.borrow_and_update().clone();
    let identity = server_identity(&control, model.sidecar()).await?;
    let recovered = outbox.lock().recover()?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "re-sending calls whose answer a previous daemon never saw"
        );
    }
    let shared = Arc::new(Shared {
        control,
        outbox,
        caller,
        identity,
        wake: Mutex::new(HashMap::new()),
    });

    let servers = named_servers(&settings);
    let mut reactor = Reactor {
        settings,
        shared: shared.clone(),
        memos: HashMap::new(),
        sequence: 0,
    };
    // Adopt the existing sessions before any dispatcher runs, so
    // `@agent-pending` only reaches 0 once their registrations are done
    // (a dispatcher racing the adoption would show 0 in between).
    reactor.adopt(&model).await;
    let tasks = TaskTracker::new();
    start_dispatchers(&shared, &servers, &tasks, &shutdown);
    publish_pending(&shared).await;

    let mut checkpoints = checkpoint_timer(&reactor.settings);
    let (mut settings_open, mut commands_open) = (true, true);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => reactor.on_event(event).await,
                None => break,
            },
            changed = settings_rx.changed(), if settings_open => match changed {
                Ok(()) => {
                    let settings = settings_rx.borrow_and_update().clone();
                    start_dispatchers(&shared, &named_servers(&settings), &tasks, &shutdown);
                    if settings.checkpoint_interval != reactor.settings.checkpoint_interval {
                        checkpoints = checkpoint_timer(&settings);
                    }
                    tracing::info!(servers = ?named_servers(&settings), "reactor settings reloaded");
                    reactor.settings = settings;
                }
                // The daemon keeps the sender while it runs; without it
                // the last settings stay.
                Err(_) => settings_open = false,
            },
            command = commands.recv(), if commands_open => match command {
                Some(ReactorCommand::Save { session, reply }) => {
                    let _ = reply.send(reactor.save(session).await);
                }
                None => commands_open = false,
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
    let servers = shared.servers();
    if !shutdown.is_cancelled() {
        drain(&shared, &servers, &shutdown).await;
    }
    shutdown.cancel();
    for server in &servers {
        shared.wake(server);
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Waits until no action is due or in flight, or until `shutdown` fires.
async fn drain<C>(shared: &Shared<C>, servers: &[String], shutdown: &CancellationToken) {
    loop {
        let busy = {
            let outbox = shared.outbox.lock();
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
    settings: Arc<ReactorSettings>,
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
                let outbox = self.shared.outbox.lock();
                outbox
                    .history(&key, 1)
                    .map(|h| !h.is_empty())
                    .unwrap_or(true)
            };
            // A session the daemon has never marked gets its state now; one
            // it marked before a restart (an error, say) keeps it.
            if !memo.options.contains_key(schema::session::STATE) {
                let state = if memo.attached {
                    AgentState::Active
                } else {
                    AgentState::Detached
                };
                self.set_state(id, state).await;
            }
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
                self.set_state(id, AgentState::Active).await;
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
                self.set_state(id, AgentState::Active).await;
            }
            EventKind::SessionDetached => {
                self.refresh_options(id).await;
                if let Some(memo) = self.memos.get_mut(&id) {
                    memo.attached = false;
                }
                self.set_state(id, AgentState::Detached).await;
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
            let event = synthetic_event(id, name, created);
            self.enqueue(&event, "checkpoint", context).await;
        }
    }

    /// Whether any server's queue is over the bound.
    fn backlogged(&self) -> bool {
        let servers = self.shared.servers();
        let outbox = self.shared.outbox.lock();
        servers.iter().any(|server| {
            outbox
                .counts(Some(server))
                .map(|c| c.pending + c.inflight >= self.settings.max_pending)
                .unwrap_or(false)
        })
    }

    fn needs_context(&self, trigger: &str) -> bool {
        self.settings
            .actions
            .get(trigger)
            .is_some_and(|specs| specs.iter().any(carries_context))
    }

    /// A save the CLI asked for (see [`ReactorCommand::Save`]).
    async fn save(&mut self, id: SessionId) -> Result<Vec<String>, String> {
        let Some(memo) = self.memos.get(&id) else {
            return Err(format!(
                "session {id} is not tracked by the daemon (is it tmux-agent's own session, or did it just close?)"
            ));
        };
        let (name, created) = (memo.name.clone(), memo.created);
        let specs = save_actions(&self.settings.actions);
        if specs.is_empty() {
            return Err(
                "nothing in the configuration saves a session: add [[on.checkpoint]] actions (or session-detached actions that use {context}); see `tmux-agent config check`"
                    .to_owned(),
            );
        }
        self.refresh_options(id).await;
        let context = if specs.iter().any(carries_context) {
            self.capture(id).await
        } else {
            None
        };
        let event = synthetic_event(id, name, created);
        self.commit(&event, SAVE_EVENT, &specs, Priority::Save, context)
            .await
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
        parse_options(reply.lines.iter().map(|l| l.as_ref()), schema::PREFIX).ok()
    }

    async fn refresh_options(&mut self, id: SessionId) {
        if let Some(options) = self.read_options(id).await
            && let Some(memo) = self.memos.get_mut(&id)
        {
            memo.options = options;
        }
    }

    async fn set_state(&self, id: SessionId, state: AgentState) {
        set_session_option(
            &self.shared.control,
            id,
            schema::session::STATE,
            &state.to_string(),
        )
        .await;
    }

    /// Builds the event's values and commits its actions.
    async fn enqueue(
        &mut self,
        event: &LifecycleEvent,
        trigger: &str,
        context: Option<SessionContext>,
    ) {
        let Some(specs) = self
            .settings
            .actions
            .get(trigger)
            .filter(|s| !s.is_empty())
            .cloned()
        else {
            return;
        };
        let _ = self
            .commit(event, trigger, &specs, priority(trigger), context)
            .await;
    }

    /// Commits `specs` as actions of `event` under the name `trigger`;
    /// returns their idempotency keys, or why they could not be committed.
    async fn commit(
        &mut self,
        event: &LifecycleEvent,
        trigger: &str,
        specs: &[ActionSpec],
        priority: Priority,
        context: Option<SessionContext>,
    ) -> Result<Vec<String>, String> {
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
                priority,
                server: spec.server.clone(),
                tool: spec.tool.clone(),
                template: spec.args.clone(),
                vars: vars.clone(),
                keep: serde_json::to_value(&spec.keep).unwrap_or_default(),
            })
            .collect();
        let now = Utc::now().timestamp_millis();
        let result = {
            let mut outbox = self.shared.outbox.lock();
            if trigger == "session-created" {
                // The entity name of memory presets is fixed at creation.
                let _ = outbox.keep(&key, "created_name", &Value::String(memo.name.clone()));
            }
            outbox.enqueue(&actions, now)
        };
        let keys = actions.iter().map(|a| a.idempotency_key.clone()).collect();
        let outcome = match result {
            Ok(_) => {
                for spec in specs {
                    self.shared.wake(&spec.server);
                }
                Ok(keys)
            }
            Err(err) => {
                tracing::error!(%err, session_id = %id, trigger, "could not commit actions: they are lost");
                set_session_option(
                    &self.shared.control,
                    id,
                    schema::session::STATE,
                    &AgentState::error(&err.to_string()).to_string(),
                )
                .await;
                Err(format!("could not commit the actions: {err}"))
            }
        };
        publish_pending(&self.shared).await;
        outcome
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
        let goal = option(schema::session::GOAL)
            .unwrap_or_else(|| self.settings.default_goal.replace("{session}", &memo.name));
        let agent_type =
            option(schema::session::TYPE).unwrap_or_else(|| self.settings.default_type.clone());
        let time = event.time.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut vars = Map::new();
        vars.insert("session".into(), json!(event.session));
        vars.insert("session_id".into(), json!(event.session_id.to_string()));
        vars.insert("session_created".into(), json!(memo.created));
        vars.insert("session_key".into(), json!(key));
        vars.insert("goal".into(), json!(goal));
        vars.insert("type".into(), json!(agent_type));
        vars.insert("group".into(), json!(option(schema::session::GROUP)));
        vars.insert("role".into(), json!(option(schema::session::ROLE)));
        vars.insert("time".into(), json!(time));
        vars.insert("host".into(), json!(self.shared.identity.host));
        vars.insert("event".into(), json!(trigger));
        vars.insert("client".into(), json!(event.client));
        vars.insert("old_name".into(), json!(event.old_name));
        // Not a placeholder: tells `deliver` which state a requested save
        // leaves the session in.
        vars.insert("attached".into(), json!(memo.attached));
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

/// Whether an action sends the session's context.
fn carries_context(spec: &ActionSpec) -> bool {
    let text = spec.args.to_string();
    text.contains("{context}") || text.contains("{observations}")
}

/// The actions a requested save sends: the `checkpoint` actions, else the
/// `session-detached` actions that carry the context.
fn save_actions(actions: &ActionMap) -> Vec<ActionSpec> {
    match actions.get("checkpoint").filter(|s| !s.is_empty()) {
        Some(specs) => specs.clone(),
        None => actions
            .get("session-detached")
            .into_iter()
            .flatten()
            .filter(|s| carries_context(s))
            .cloned()
            .collect(),
    }
}

/// An event for calls tmux did not cause (a checkpoint, a requested save):
/// it carries the session, and the time it was decided.
fn synthetic_event(id: SessionId, name: String, created: i64) -> LifecycleEvent {
    LifecycleEvent {
        kind: EventKind::SessionAttached,
        session_id: id,
        session: name,
        time: Utc::now(),
        client: None,
        old_name: None,
        session_created: Some(created),
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
        goal: option(schema::session::GOAL),
        agent_type: option(schema::session::TYPE),
        group: option(schema::session::GROUP),
        role: option(schema::session::ROLE),
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
///
/// The command is queued, not waited for: the next command on the
/// connection sees the option set, and a dispatcher does not spend a tmux
/// round trip per call (tmux is busiest exactly when calls pile up, in a
/// burst of new sessions).
async fn set_session_option(control: &ControlHandle, id: SessionId, name: &str, value: &str) {
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

/// Publishes the count of undelivered actions in `@agent-pending` (queued,
/// as [`set_session_option`] does).
async fn publish_pending<C>(shared: &Shared<C>) {
    let pending = {
        let outbox = shared.outbox.lock();
        outbox.open_count().unwrap_or(0)
    };
    if let Ok(command) = Command::set_global_option(schema::global::PENDING, &pending.to_string()) {
        let _ = shared.control.queue(command).await;
    }
}

/// Sends the due actions of one MCP server, one at a time, in order.
async fn dispatch<C: ToolCaller>(
    shared: Arc<Shared<C>>,
    server: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let now = Utc::now().timestamp_millis();
        let next = {
            let mut outbox = shared.outbox.lock();
            outbox
                .claim_next(&server, now)
                .and_then(|a| Ok((a, outbox.next_due(&server, now)?)))
        };
        let action = match next {
            Ok((Some(action), _)) => action,
            Ok((None, due)) => {
                let wait = due
                    .filter(|due| *due > now)
                    .map(|due| Duration::from_millis((due - now) as u64))
                    .unwrap_or(backoff::MAX);
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
                    () = tokio::time::sleep(backoff::START) => continue,
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
        let outbox = shared.outbox.lock();
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
            let _ = shared.outbox.lock().mark_failed(id, &reason, now());
            if let Some(sid) = target {
                set_session_option(
                    &shared.control,
                    sid,
                    schema::session::STATE,
                    &AgentState::error(&reason).to_string(),
                )
                .await;
            }
            return;
        }
    };
    if new.priority == Priority::Save
        && let Some(sid) = target
    {
        set_session_option(
            &shared.control,
            sid,
            schema::session::STATE,
            &AgentState::Saving.to_string(),
        )
        .await;
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
            if let Err(err) = shared
                .outbox
                .lock()
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
                        set_session_option(&shared.control, sid, schema::session::GOAL_ID, &text)
                            .await;
                    }
                }
                if new.priority == Priority::Save || new.event == "checkpoint" {
                    let saved = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
                    set_session_option(&shared.control, sid, schema::session::SAVED, &saved).await;
                    let state = match new.event.as_str() {
                        "checkpoint" => AgentState::Active,
                        SAVE_EVENT if new.vars["attached"] == json!(true) => AgentState::Active,
                        _ => AgentState::Detached,
                    };
                    set_session_option(
                        &shared.control,
                        sid,
                        schema::session::STATE,
                        &state.to_string(),
                    )
                    .await;
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
            let _ = shared
                .outbox
                .lock()
                .mark_failed(id, &failure.message, now());
            if let Some(sid) = target {
                set_session_option(
                    &shared.control,
                    sid,
                    schema::session::STATE,
                    &AgentState::error(&failure.message).to_string(),
                )
                .await;
            }
        }
        Err(failure) => {
            // `attempts` counts the sends before this one.
            let delay = backoff::delay(attempts.saturating_add(1));
            tracing::info!(action = id, server = new.server, tool = new.tool, reason = failure.message, retry_in = ?delay, "call failed; will retry");
            let retry_at = now() + delay.as_millis() as i64;
            let _ = shared
                .outbox
                .lock()
                .mark_retry(id, &failure.message, retry_at);
        }
    }
}
