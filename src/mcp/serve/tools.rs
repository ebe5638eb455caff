//! The MCP surface of the built-in server: the tool list, each tool's
//! schema and annotations, and the checks every call passes first (the tool
//! exists, no argument is over the size cap). Tools are thin: the work is
//! in [`super::goals`], [`super::contexts`], [`super::agent`] and
//! [`super::groups`], and
//! database work runs on the blocking pool.
//!
//! Every failure a caller can cause or fix is a tool result with `isError`
//! and a sentence saying what was wrong (MCP 2025-11-25), never a protocol
//! error: an unknown tool, arguments that do not fit the schema, a value over
//! the cap, a missing goal, a state change that is not allowed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::handler::server::tool::{ToolCallContext, ToolRouter};
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;

use super::agent::{self, CompleteMyGoalArgs, SetGoalArgs, TmuxEnv, WhoAmI, WhoAmIArgs};
use super::agents::{self, AgentList, ListAgentsArgs, LookArgs, Looked};
use super::contexts::{
    self, ContextHistory, GetContext, SaveContext, SaveReceipt, SearchContext, SearchResults,
};
use super::goals::{
    self, CompleteGoal, Goal, GoalId, GoalList, ListGoals, RegisterGoal, UpdateGoal,
};
use super::groups::{self, GroupArgs, GroupContext, GroupPeers, GroupShareArgs, GroupShared};
use super::messages::{
    self, AckMessageArgs, BroadcastArgs, Inbox, MessageView, ReadMessagesArgs, SendMessageArgs,
    Sent,
};
use super::store::{Store, StoreError};
use super::watch::{Change, SessionWatch};

/// Limits on what one call may store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest serialised size of any one argument, in bytes.
    pub max_value_bytes: usize,
    /// Saves kept per session; older ones are dropped.
    pub keep_saves: u32,
}

/// The built-in MCP server: one per connection, sharing the store.
#[derive(Clone)]
pub struct BuiltinServer {
    store: Arc<Mutex<Store>>,
    limits: Limits,
    tmux: Arc<TmuxEnv>,
    /// Sessions coming and going, shared by every connection.
    sessions: SessionWatch,
    /// The resource URIs this connection's client subscribed to.
    subscribed: Arc<Mutex<HashSet<String>>>,
    /// Set once this connection tells its client of changes.
    telling: Arc<tokio::sync::OnceCell<()>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for BuiltinServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinServer")
            .field("limits", &self.limits)
            .field("tmux", &self.tmux)
            .finish_non_exhaustive()
    }
}

type ToolResult<T> = Result<Json<T>, String>;

#[tool_router]
impl BuiltinServer {
    /// A server over an open store, telling its client what `sessions`
    /// sees change.
    pub fn new(
        store: Arc<Mutex<Store>>,
        limits: Limits,
        tmux: TmuxEnv,
        sessions: SessionWatch,
    ) -> Self {
        // The snapshot tools are their own router (`super::snapshots`).
        let mut tool_router = Self::tool_router() + Self::snapshot_router();
        for route in tool_router.map.values_mut() {
            let tool = &mut route.attr;
            tool.input_schema = Arc::new(portable_schema(&tool.input_schema));
            if let Some(output) = &tool.output_schema {
                tool.output_schema = Some(Arc::new(portable_schema(output)));
            }
        }
        Self {
            store,
            limits,
            tmux: Arc::new(tmux),
            sessions,
            subscribed: Arc::default(),
            telling: Arc::default(),
            tool_router,
        }
    }

    #[tool(
        description = "Register a new goal (status active) and return it with its id. \
                       Pass idempotency_key to make a retried call return the same goal.",
        annotations(
            title = "Register goal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn register_goal(
        &self,
        Parameters(args): Parameters<RegisterGoal>,
    ) -> Result<Json<Goal>, String> {
        let key = args.idempotency_key.clone();
        self.write_once("register_goal", key, args, goals::register)
            .await
    }

    #[tool(
        description = "Set a goal's status (active, detached, completed, failed) with an \
                       optional note. A completed or failed goal stays finished.",
        annotations(
            title = "Update goal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_goal(
        &self,
        Parameters(args): Parameters<UpdateGoal>,
    ) -> Result<Json<Goal>, String> {
        let key = args.idempotency_key.clone();
        self.write_once("update_goal", key, args, goals::update)
            .await
    }

    #[tool(
        description = "Mark a goal completed with its outcome. Completing a finished goal \
                       returns it unchanged.",
        annotations(
            title = "Complete goal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn complete_goal(
        &self,
        Parameters(args): Parameters<CompleteGoal>,
    ) -> Result<Json<Goal>, String> {
        let key = args.idempotency_key.clone();
        self.write_once("complete_goal", key, args, goals::complete)
            .await
    }

    #[tool(
        description = "List goals, newest first, optionally only those with a status or of \
                       a session key.",
        annotations(title = "List goals", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_goals(
        &self,
        Parameters(args): Parameters<ListGoals>,
    ) -> Result<Json<GoalList>, String> {
        self.read(move |tx| goals::list(tx, &args)).await
    }

    #[tool(
        description = "Save a tmux session's context (windows, panes, captured lines, group, \
                       goal) under its session key: it becomes the session's current context \
                       and is kept in its history.",
        annotations(
            title = "Save context",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn save_context(
        &self,
        Parameters(args): Parameters<SaveContext>,
    ) -> Result<Json<SaveReceipt>, String> {
        let key = args.idempotency_key.clone();
        let keep = self.limits.keep_saves;
        self.write_once("save_context", key, args, move |tx, args| {
            contexts::save(tx, args, keep)
        })
        .await
    }

    #[tool(
        description = "Get a session's saved context by session key or by session name (the \
                       most recently saved session of that name): the latest save, or with \
                       history=true up to `limit` saves, newest first.",
        annotations(title = "Get context", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_context(
        &self,
        Parameters(args): Parameters<GetContext>,
    ) -> Result<Json<ContextHistory>, String> {
        self.read(move |tx| contexts::get(tx, &args)).await
    }

    #[tool(
        description = "Find saved contexts containing all the words of a query (names, \
                       goals, commands, paths, captured lines). Searches each session's \
                       latest save, or every kept save with history=true.",
        annotations(
            title = "Search contexts",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn search_context(
        &self,
        Parameters(args): Parameters<SearchContext>,
    ) -> Result<Json<SearchResults>, String> {
        self.read(move |tx| contexts::search(tx, &args)).await
    }

    #[tool(
        description = "Who am I: the tmux session this server runs in (or the one named), \
                       with its goal, agent type, goal id, state, group, role and peers from \
                       its @agent-* options, and the goal's record when this server has it.",
        annotations(title = "Who am I", read_only_hint = true, open_world_hint = false)
    )]
    async fn whoami(
        &self,
        Parameters(args): Parameters<WhoAmIArgs>,
    ) -> Result<Json<WhoAmI>, String> {
        self.describe(args.session.as_deref()).await.map(Json)
    }

    #[tool(
        description = "Set the goal of this pane's tmux session (the @agent-goal option), or \
                       of the session named. The goal must be one line.",
        annotations(
            title = "Set my goal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn set_goal(
        &self,
        Parameters(args): Parameters<SetGoalArgs>,
    ) -> Result<Json<WhoAmI>, String> {
        let (session, _) = agent::resolve_session(&self.tmux, args.session.as_deref())
            .await
            .map_err(|err| err.to_string())?;
        agent::set_option(
            &self.tmux,
            session.id,
            crate::schema::session::GOAL,
            &args.goal,
        )
        .await
        .map_err(|err| err.to_string())?;
        self.describe(Some(&session.id.to_string())).await.map(Json)
    }

    #[tool(
        description = "Complete the goal of this pane's tmux session (the goal whose id is in \
                       its @agent-goal-id option) with an outcome.",
        annotations(
            title = "Complete my goal",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn complete_my_goal(
        &self,
        Parameters(args): Parameters<CompleteMyGoalArgs>,
    ) -> Result<Json<Goal>, String> {
        let (session, _) = agent::resolve_session(&self.tmux, args.session.as_deref())
            .await
            .map_err(|err| err.to_string())?;
        let options = agent::read_options(&self.tmux, session.id)
            .await
            .map_err(|err| err.to_string())?;
        let id_text = options.goal_id.ok_or_else(|| {
            format!(
                "session {:?} ({}) has no goal id: {} is not set",
                session.name,
                session.id,
                crate::schema::session::GOAL_ID
            )
        })?;
        let id = id_text.trim().parse().map(GoalId).map_err(|_| {
            format!(
                "{} of session {:?} is {id_text:?}, not a goal id of this server",
                crate::schema::session::GOAL_ID,
                session.name
            )
        })?;
        let args = CompleteGoal {
            id,
            outcome: args.outcome,
            idempotency_key: args.idempotency_key,
        };
        let key = args.idempotency_key.clone();
        self.write_once("complete_my_goal", key, args, goals::complete)
            .await
    }

    #[tool(
        description = "The coordination group of this pane's tmux session (or of the session \
                       named) and the context its members share: KEY -> value, from the \
                       @agent-ctx-KEY options. A session in no group is an error.",
        annotations(
            title = "Group context",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn group_context(
        &self,
        Parameters(args): Parameters<GroupArgs>,
    ) -> Result<Json<GroupContext>, String> {
        groups::context(&self.tmux, args.session.as_deref())
            .await
            .map(Json)
    }

    #[tool(
        description = "Share a value with every member of this pane's session's group (set \
                       as @agent-ctx-KEY on each, and on sessions that join later), or remove \
                       the key with unset=true. KEY is 1 to 64 characters from \
                       A-Z a-z 0-9 _ . -; the value is one line of at most 4096 bytes, kept \
                       as text (never run or expanded).",
        annotations(
            title = "Share with my group",
            read_only_hint = false,
            // It replaces or removes what the group held under the key.
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn group_share(
        &self,
        Parameters(args): Parameters<GroupShareArgs>,
    ) -> Result<Json<GroupShared>, String> {
        groups::share(&self.tmux, args).await.map(Json)
    }

    #[tool(
        description = "This pane's session's place in its coordination group: the group, its \
                       role (coordinator or member), the coordinator, its peers (the other \
                       members, by name and session id) and all members in join order.",
        annotations(title = "Group peers", read_only_hint = true, open_world_hint = false)
    )]
    async fn group_peers(
        &self,
        Parameters(args): Parameters<GroupArgs>,
    ) -> Result<Json<GroupPeers>, String> {
        groups::peers(&self.tmux, args.session.as_deref())
            .await
            .map(Json)
    }

    #[tool(
        description = "Send a message to another agent: `to` is a session name, `$id` or pane \
                       `%id`. It is queued in the daemon's mailbox and typed into the \
                       recipient's pane when it is at its prompt (or handed to it by its hook), \
                       once, after a one-line envelope naming you and the message id. You are \
                       the pane this server runs in. Pass reply_to to answer a message, and \
                       wait_secs (at most 25) to wait for delivered/read/failed: a message \
                       whose recipient closed comes back failed with reason recipient-gone.",
        annotations(
            title = "Send message",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn send_message(
        &self,
        Parameters(args): Parameters<SendMessageArgs>,
    ) -> Result<Json<Sent>, String> {
        messages::send(&self.tmux, args).await.map(Json)
    }

    #[tool(
        description = "Send a message to every other member of this pane's session's \
                       coordination group (one message per member, each delivered on its own).",
        annotations(
            title = "Broadcast",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn broadcast(
        &self,
        Parameters(args): Parameters<BroadcastArgs>,
    ) -> Result<Json<Sent>, String> {
        messages::broadcast(&self.tmux, args).await.map(Json)
    }

    #[tool(
        description = "The messages to this pane's session, oldest first: unread ones only by \
                       default (unread_only: false for all), at most limit (20). Reading marks \
                       nothing: acknowledge each with ack_message.",
        annotations(
            title = "Read messages",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn read_messages(
        &self,
        Parameters(args): Parameters<ReadMessagesArgs>,
    ) -> Result<Json<Inbox>, String> {
        messages::read(&self.tmux, args).await.map(Json)
    }

    #[tool(
        description = "Acknowledge a message to this session by its id: its state becomes \
                       read (the sender sees it). Acknowledging it again changes nothing.",
        annotations(
            title = "Acknowledge message",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ack_message(
        &self,
        Parameters(args): Parameters<AckMessageArgs>,
    ) -> Result<Json<MessageView>, String> {
        messages::ack(&self.tmux, args).await.map(Json)
    }

    #[tool(
        description = "Every agent on this tmux server: its pane, session, kind (claude, \
                       codex, ...), status (working, waiting, idle, exited, unknown), since \
                       when, and its session's coordination group (only one group's with \
                       `group`); `me` marks your own pane.",
        annotations(title = "List agents", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_agents(
        &self,
        Parameters(args): Parameters<ListAgentsArgs>,
    ) -> Result<Json<AgentList>, String> {
        agents::list(&self.tmux, args).await.map(Json)
    }

    #[tool(
        description = "The last lines of a peer's pane text (default 40, at most 2000), with \
                       the [context] redact patterns applied. Target a pane (\"%3\") or a \
                       session (\"$2\", \"=name:\") for its active pane. Only panes of your \
                       own session and of sessions in your coordination group, unless the \
                       config allows any.",
        annotations(
            title = "Look at a pane",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn look(&self, Parameters(args): Parameters<LookArgs>) -> Result<Json<Looked>, String> {
        agents::look(&self.tmux, args).await.map(Json)
    }
}

impl BuiltinServer {
    /// Tells the client what the session watch sees from now until it goes:
    /// every list change, and `updated` for the URIs it subscribed to.
    /// Started by the client's first resources request, so a client that
    /// never looks at resources (the daemon's own connection) costs no
    /// watching.
    /// A request made meanwhile waits for the watch's first look too.
    async fn tell_changes(&self, peer: &rmcp::Peer<RoleServer>) {
        self.telling
            .get_or_init(|| self.start_telling(peer.clone()))
            .await;
    }

    async fn start_telling(&self, peer: rmcp::Peer<RoleServer>) {
        let mut changes = self.sessions.subscribe().await;
        let subscribed = Arc::clone(&self.subscribed);
        tokio::spawn(async move {
            loop {
                let sent = match changes.recv().await {
                    Ok(Change::List) => peer.notify_resource_list_changed().await,
                    Ok(Change::Updated(uri)) => {
                        let wanted = subscribed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .contains(&uri);
                        if !wanted {
                            continue;
                        }
                        peer.notify_resource_updated(
                            rmcp::model::ResourceUpdatedNotificationParam::new(uri),
                        )
                        .await
                    }
                    // Fell behind: the list may have changed meanwhile.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        peer.notify_resource_list_changed().await
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if sent.is_err() {
                    // The client has gone.
                    return;
                }
            }
        });
    }

    /// The tmux server and pane this server runs for.
    pub(super) fn tmux_env(&self) -> &TmuxEnv {
        &self.tmux
    }

    /// Runs a write on the blocking pool, once per idempotency key.
    pub(super) async fn write_once<A, T>(
        &self,
        tool: &'static str,
        key: Option<String>,
        args: A,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &A) -> Result<T, StoreError> + Send + 'static,
    ) -> ToolResult<T>
    where
        A: Serialize + Send + 'static,
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        // What a replay is compared with: the arguments after defaults, without
        // the key itself.
        let mut arguments = serde_json::to_value(&args).map_err(|err| err.to_string())?;
        if let Some(map) = arguments.as_object_mut() {
            map.remove("idempotency_key");
        }
        self.with_store(move |store| {
            store.write_once(tool, key.as_deref(), &arguments, |tx| f(tx, &args))
        })
        .await
        .map(Json)
    }

    /// Runs a read on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Json<T>, String> {
        self.with_store(move |store| store.read(f)).await.map(Json)
    }

    pub(super) async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            // A panic mid-transaction rolled it back when the transaction
            // dropped, so the connection behind a poisoned lock is sound.
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .map_err(|err| format!("internal error: {err}"))?
        .map_err(|err| err.to_string())
    }

    /// The whoami answer for a session (explicit, or this pane's).
    async fn describe(&self, session: Option<&str>) -> Result<WhoAmI, String> {
        let (session, pane) = agent::resolve_session(&self.tmux, session)
            .await
            .map_err(|err| err.to_string())?;
        let options = agent::read_options(&self.tmux, session.id)
            .await
            .map_err(|err| err.to_string())?;
        let goal_record = match options.goal_id.as_deref().map(str::trim).map(str::parse) {
            Some(Ok(id)) => {
                self.with_store(move |store| {
                    store.read(|tx| match goals::get(tx, GoalId(id)) {
                        Ok(goal) => Ok(Some(goal)),
                        Err(StoreError::NotFound(_)) => Ok(None),
                        Err(err) => Err(err),
                    })
                })
                .await?
            }
            _ => None,
        };
        let agent = match pane.as_deref() {
            Some(pane) => agent::read_pane_agent(&self.tmux, pane)
                .await
                .map_err(|err| err.to_string())?,
            None => None,
        };
        Ok(WhoAmI {
            session_id: session.id.to_string(),
            session_name: session.name,
            pane,
            options,
            goal_record,
            agent,
        })
    }

    /// The first argument whose serialised size is over the cap.
    fn oversized_argument(&self, request: &CallToolRequestParams) -> Option<String> {
        let cap = self.limits.max_value_bytes;
        request
            .arguments
            .as_ref()?
            .iter()
            .find_map(|(name, value)| {
                let size = json_size(value);
                (size > cap).then(|| {
                    format!(
                        "argument `{name}` is {size} bytes of JSON, over this server's limit of \
                     {cap} bytes (--max-value-bytes)"
                    )
                })
            })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BuiltinServer {
    // `logging` is advertised for set_level below (deprecated by SEP-2577).
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                // Both are sent: super::watch.
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("tmux-agent", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Goals and saved contexts of tmux sessions, kept in SQLite. \
                 register_goal/update_goal/complete_goal/list_goals track goals; \
                 save_context/get_context/search_context keep what a session looked like. \
                 From inside a tmux pane, whoami/set_goal/complete_my_goal act on the pane's \
                 own session, and group_peers/group_context/group_share on its coordination \
                 group: who the coordinator and peers are, and the values the group shares. \
                 list_agents says which agents run where and what each is doing; look shows \
                 a peer's pane text (redacted), within your group; \
                 send_message/broadcast/read_messages/ack_message exchange messages with the \
                 other agents through the tmux-agent daemon.",
        )
    }

    /// `logging/setLevel`: accepted, so clients of protocol 2025-11-25 that
    /// send it at start (and the conformance suite) get an answer rather
    /// than -32601. The server sends no `notifications/message` (its
    /// diagnostics go to stderr), so there is nothing for the level to
    /// filter; MCP itself deprecates logging (SEP-2577), hence the allow.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        tracing::debug!(level = ?request.level, "client set the MCP log level");
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        self.tell_changes(&context.peer).await;
        let mut all = super::resources::list();
        all.extend(super::live::resources(&self.tmux).await);
        Ok(rmcp::model::ListResourcesResult::with_all_items(all))
    }

    /// `resources/subscribe`: `notifications/resources/updated` for this
    /// URI when the watch sees its session renamed, closed or its agent's
    /// status change (legacy in rmcp 3.9, current in MCP 2025-11-25).
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.tell_changes(&context.peer).await;
        self.subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request.uri);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request.uri);
        Ok(())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        Ok(rmcp::model::ListResourceTemplatesResult::with_all_items(
            super::resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        if uri == super::live::SESSIONS || uri.starts_with(super::live::SESSION) {
            self.tell_changes(&context.peer).await;
        }
        if uri == super::live::SESSIONS {
            let sessions = super::live::sessions(&self.tmux)
                .await
                .map_err(|err| ErrorData::internal_error(err.to_string(), None))?;
            return Ok(super::resources::json(&uri, &super::live::SessionList { sessions }).into());
        }
        if let Some(name) = super::live::name_of(&uri) {
            let view = match name {
                Ok(name) => super::live::read(&self.tmux, &name).await,
                Err(err) => Err(err),
            };
            return view
                .map(|view| super::resources::json(&uri, &view).into())
                .map_err(|err| ErrorData::resource_not_found(err.to_string(), None));
        }
        self.with_store(move |store| store.read(|tx| super::resources::read(tx, &uri)))
            .await
            .map(Into::into)
            .map_err(|message| ErrorData::resource_not_found(message, None))
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Ok(rmcp::model::ListPromptsResult::with_all_items(
            super::prompts::list(),
        ))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        if request.name != super::prompts::RESUME_SESSION {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt {:?}; this server has: {}",
                    request.name,
                    super::prompts::RESUME_SESSION
                ),
                None,
            ));
        }
        let session = request
            .arguments
            .as_ref()
            .and_then(|args| args.get("session"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ErrorData::invalid_params("resume-session needs the argument `session`", None)
            })?;
        self.with_store(move |store| store.read(|tx| super::prompts::resume_session(tx, &session)))
            .await
            .map(Into::into)
            .map_err(|message| ErrorData::invalid_params(message, None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.tool_router.has_route(&request.name) {
            let mut known: Vec<_> = self
                .tool_router
                .list_all()
                .into_iter()
                .map(|tool| tool.name)
                .collect();
            known.sort();
            return Ok(tool_error(format!(
                "unknown tool {:?}; this server has: {}",
                request.name,
                known.join(", ")
            )));
        }
        if let Some(message) = self.oversized_argument(&request) {
            return Ok(tool_error(message));
        }
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }
}

/// Formats JSON Schema defines (2020-12 §7.3). schemars adds `int64`,
/// `uint32` and the like for Rust integer types, which clients that check
/// schemas strictly (Claude Code's `mcp list`, Ajv in strict mode) warn
/// about; the ranges they stand for are kept as `minimum`/`maximum`.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// A tool schema with only standard `format` values, at any depth.
fn portable_schema(schema: &rmcp::model::JsonObject) -> rmcp::model::JsonObject {
    fn clean(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map
                    .get("format")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
                {
                    map.remove("format");
                }
                map.values_mut().for_each(clean);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            _ => {}
        }
    }
    let mut value = serde_json::Value::Object(schema.clone());
    clean(&mut value);
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object stays an object"),
    }
}

fn tool_error(message: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

/// Bytes `value` takes as compact JSON, counted without building the text.
fn json_size(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value to an infallible sink cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}
