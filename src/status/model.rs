//! The agent model (DESIGN.md D15): which agent runs in which pane, what it
//! is doing, since when, and the merge of what the hooks, the pane activity
//! and the process tree say about it.
//!
//! Everything that learns something about an agent says it as an
//! [`Observation`] (a pane, a status, where it came from and when the
//! evidence is from); the [`Board`] merges them under one rule:
//!
//! **Hooks win.** An agent's own hook is exact; pane activity and the
//! process tree are guesses. So an [`Source::Activity`] or
//! [`Source::Process`] observation never overrides a [`Source::Hook`]
//! status whose evidence is as young as its own or younger: a fallback that
//! saw the screen settle at 10:00:00.2 does not undo the `PreToolUse` hook
//! of 10:00:00.5, but it does correct a hook status of 09:58 that no later
//! hook followed (an agent killed by a signal runs no hook). The one
//! exception is [`AgentStatus::Exited`] from the process tree: a pane whose
//! agent is gone has no agent, whatever its last hook said.
//!
//! Hooks can also arrive out of order (two hook processes race to the
//! daemon); a hook older than the pane's last hook is dropped.
//!
//! The board also keeps the per-session aggregate (waiting beats working
//! beats idle beats exited beats unknown) and the global count of waiting
//! agents, and says when either changed, so the keeper writes an option
//! only when its value changes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::{PaneId, SessionId};

/// The agent in a pane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum AgentKind {
    /// Claude Code (`claude`).
    Claude,
    /// OpenAI Codex CLI (`codex`).
    Codex,
    /// Google Gemini CLI (`gemini`).
    Gemini,
    /// aider (`aider`).
    Aider,
    /// opencode (`opencode`).
    Opencode,
    /// An agent named in the config, or announced by a hook under a name
    /// tmux-agent does not know.
    Other(String),
}

impl AgentKind {
    /// The agents tmux-agent knows by name.
    pub const KNOWN: [AgentKind; 5] = [
        AgentKind::Claude,
        AgentKind::Codex,
        AgentKind::Gemini,
        AgentKind::Aider,
        AgentKind::Opencode,
    ];

    /// The name in `@agent-kind`, in JSON and on the command line.
    pub fn as_str(&self) -> &str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Codex => "codex",
            AgentKind::Gemini => "gemini",
            AgentKind::Aider => "aider",
            AgentKind::Opencode => "opencode",
            AgentKind::Other(name) => name,
        }
    }

    /// The kind a name stands for: a known agent, or [`AgentKind::Other`].
    pub fn named(name: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or_else(|| AgentKind::Other(name.to_owned()))
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<AgentKind> for String {
    fn from(kind: AgentKind) -> String {
        kind.as_str().to_owned()
    }
}

impl From<String> for AgentKind {
    fn from(name: String) -> Self {
        AgentKind::named(&name)
    }
}

/// What an agent is doing.
///
/// The order of the variants is the aggregate's: a session is `waiting` if
/// any of its agents is, else `working` if any is, and so on
/// ([`AgentStatus::aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Needs the user: a permission prompt, or a question.
    Waiting,
    /// Its turn is running (thinking, calling tools).
    Working,
    /// Its turn is done; it waits for a prompt, but nothing is asked.
    Idle,
    /// The agent has left the pane (or the pane is gone).
    Exited,
    /// An agent is (or was) there; what it is doing is not known.
    Unknown,
}

impl AgentStatus {
    /// Every status, in aggregate order.
    pub const ALL: [AgentStatus; 5] = [
        AgentStatus::Waiting,
        AgentStatus::Working,
        AgentStatus::Idle,
        AgentStatus::Exited,
        AgentStatus::Unknown,
    ];

    /// The name in `@agent-status`, JSON and events (`agent-waiting`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Waiting => "waiting",
            AgentStatus::Working => "working",
            AgentStatus::Idle => "idle",
            AgentStatus::Exited => "exited",
            AgentStatus::Unknown => "unknown",
        }
    }

    /// The status of a group of agents (a session's panes): the first in
    /// [`AgentStatus::ALL`]'s order that any of them has; `None` for none.
    pub fn aggregate(statuses: impl IntoIterator<Item = AgentStatus>) -> Option<AgentStatus> {
        statuses.into_iter().min()
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`AgentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an agent status (waiting, working, idle, exited, unknown)")]
pub struct InvalidStatus(pub String);

impl FromStr for AgentStatus {
    type Err = InvalidStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| InvalidStatus(s.to_owned()))
    }
}

/// Where an observation comes from, most exact first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The agent's own hook (`tmux-agent hook claude`): exact.
    Hook,
    /// The pane's activity and screen (the fallback): a guess.
    Activity,
    /// The pane's process tree (`#{pane_current_command}`, the pane's
    /// children, the pane's exit): says which agent runs, and when it left.
    Process,
}

impl Source {
    /// The name in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hook => "hook",
            Source::Activity => "activity",
            Source::Process => "process",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing learnt about the agent in a pane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub pane: PaneId,
    /// The agent, if the observer knows it (a hook always does; activity
    /// may not).
    pub kind: Option<AgentKind>,
    pub status: AgentStatus,
    pub source: Source,
    /// When the evidence is from: the hook's run, the activity's last
    /// change, the pane's exit. Not when it reached the board.
    pub at: DateTime<Utc>,
    /// The agent's own session id, when it says (Claude's `session_id`).
    pub agent_session_id: Option<String>,
    /// The agent's transcript, when it says (Claude's `transcript_path`).
    pub transcript_path: Option<PathBuf>,
}

impl Observation {
    /// An observation with no agent session id or transcript.
    pub fn new(
        pane: PaneId,
        kind: Option<AgentKind>,
        status: AgentStatus,
        source: Source,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            pane,
            kind,
            status,
            source,
            at,
            agent_session_id: None,
            transcript_path: None,
        }
    }
}

/// What the board knows about one pane's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaneAgent {
    pub pane: PaneId,
    /// The session the pane is in, once the keeper has placed it.
    pub session: Option<SessionId>,
    pub kind: Option<AgentKind>,
    pub status: AgentStatus,
    /// Where the current status came from.
    pub source: Source,
    /// Since when the status holds (the evidence time of the observation
    /// that set it).
    pub since: DateTime<Utc>,
    /// The evidence time of the last hook heard from the pane.
    pub last_hook: Option<DateTime<Utc>>,
    pub agent_session_id: Option<String>,
    pub transcript_path: Option<PathBuf>,
}

/// A pane's status changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub pane: PaneId,
    /// The pane's session, if placed.
    pub session: Option<SessionId>,
    pub kind: Option<AgentKind>,
    /// `None` for a pane the board did not know.
    pub old: Option<AgentStatus>,
    pub new: AgentStatus,
    pub source: Source,
    pub since: DateTime<Utc>,
}

/// What one observation changed, for the keeper to write out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The pane's status changed.
    pub change: Option<Change>,
    /// Something about the pane besides its status changed (its kind, its
    /// agent session id): its options need writing even without a change.
    pub details_changed: bool,
    /// The sessions whose aggregate changed, with the new aggregate
    /// (`None`: no agent left in it).
    pub sessions: Vec<(SessionId, Option<AgentStatus>)>,
    /// The count of waiting agents changed: the new count.
    pub waiting: Option<usize>,
}

impl Outcome {
    /// Whether anything needs writing.
    pub fn is_empty(&self) -> bool {
        self.change.is_none()
            && !self.details_changed
            && self.sessions.is_empty()
            && self.waiting.is_none()
    }
}

/// Why an observation was not applied (logged at debug by the keeper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// A guess older than (or as old as) the pane's last hook.
    HookIsYounger,
    /// A hook older than the pane's last hook (hooks raced).
    StaleHook,
}

/// The agents on one tmux server, merged from observations.
#[derive(Debug, Clone, Default)]
pub struct Board {
    panes: BTreeMap<PaneId, PaneAgent>,
    /// The aggregate last reported per session.
    aggregates: BTreeMap<SessionId, AgentStatus>,
    /// The waiting count last reported.
    waiting: usize,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pane's agent, if it has one.
    pub fn pane(&self, pane: PaneId) -> Option<&PaneAgent> {
        self.panes.get(&pane)
    }

    /// Every pane with an agent, in pane order.
    pub fn panes(&self) -> impl Iterator<Item = &PaneAgent> {
        self.panes.values()
    }

    /// The panes of `session`.
    pub fn panes_of(&self, session: SessionId) -> impl Iterator<Item = &PaneAgent> {
        self.panes
            .values()
            .filter(move |agent| agent.session == Some(session))
    }

    /// The aggregate status of `session`'s agents, `None` if it has none.
    pub fn session_status(&self, session: SessionId) -> Option<AgentStatus> {
        AgentStatus::aggregate(self.panes_of(session).map(|agent| agent.status))
    }

    /// How many agents are waiting, on every session.
    pub fn waiting_count(&self) -> usize {
        self.panes
            .values()
            .filter(|agent| agent.status == AgentStatus::Waiting)
            .count()
    }

    /// The waiting agents, the one that has waited longest first.
    pub fn waiting_longest_first(&self) -> Vec<&PaneAgent> {
        let mut waiting: Vec<_> = self
            .panes
            .values()
            .filter(|agent| agent.status == AgentStatus::Waiting)
            .collect();
        waiting.sort_by_key(|agent| (agent.since, agent.pane));
        waiting
    }

    /// Says which session `pane` is in (the keeper resolves it with tmux);
    /// a pane moved to another session (`join-pane`) is placed again.
    /// Returns the aggregates this changed.
    pub fn place(&mut self, pane: PaneId, session: SessionId) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(agent) = self.panes.get_mut(&pane) else {
            return outcome;
        };
        let old = agent.session.replace(session);
        if old == Some(session) {
            return outcome;
        }
        if let Some(old) = old {
            self.refresh_aggregate(old, &mut outcome);
        }
        self.refresh_aggregate(session, &mut outcome);
        outcome
    }

    /// Merges one observation (see the module doc for the rule).
    pub fn apply(&mut self, observation: Observation) -> Result<Outcome, Ignored> {
        let Observation {
            pane,
            kind,
            status,
            source,
            at,
            agent_session_id,
            transcript_path,
        } = observation;
        let mut outcome = Outcome::default();
        let (old, session) = match self.panes.get(&pane) {
            Some(agent) => {
                check_precedence(agent, source, status, at)?;
                (Some(agent.status), agent.session)
            }
            None => (None, None),
        };
        let agent = self.panes.entry(pane).or_insert_with(|| PaneAgent {
            pane,
            session: None,
            kind: None,
            status,
            source,
            since: at,
            last_hook: None,
            agent_session_id: None,
            transcript_path: None,
        });
        if source == Source::Hook {
            agent.last_hook = Some(at);
        }
        if kind.is_some() && agent.kind != kind {
            agent.kind = kind;
            outcome.details_changed = true;
        }
        if agent_session_id.is_some() && agent.agent_session_id != agent_session_id {
            agent.agent_session_id = agent_session_id;
            outcome.details_changed = true;
        }
        if transcript_path.is_some() && agent.transcript_path != transcript_path {
            agent.transcript_path = transcript_path;
            outcome.details_changed = true;
        }
        if old != Some(status) {
            agent.status = status;
            agent.source = source;
            agent.since = at;
            outcome.change = Some(Change {
                pane,
                session,
                kind: agent.kind.clone(),
                old,
                new: status,
                source,
                since: at,
            });
        } else {
            // The same status confirmed: `since` stays, the source is the
            // best that has said it.
            if source == Source::Hook {
                agent.source = Source::Hook;
            }
        }
        if let Some(session) = session {
            self.refresh_aggregate(session, &mut outcome);
        }
        self.refresh_waiting(&mut outcome);
        Ok(outcome)
    }

    /// Forgets a pane (it closed and its `exited` was written, or its
    /// session closed). Returns the aggregates this changed.
    pub fn forget(&mut self, pane: PaneId) -> Outcome {
        let mut outcome = Outcome::default();
        if let Some(agent) = self.panes.remove(&pane) {
            if let Some(session) = agent.session {
                self.refresh_aggregate(session, &mut outcome);
            }
            self.refresh_waiting(&mut outcome);
        }
        outcome
    }

    /// Forgets every pane of a closed session. Returns the waiting count if
    /// it changed (the session's own options went with it).
    pub fn forget_session(&mut self, session: SessionId) -> Outcome {
        let mut outcome = Outcome::default();
        self.panes.retain(|_, agent| agent.session != Some(session));
        self.aggregates.remove(&session);
        self.refresh_waiting(&mut outcome);
        outcome
    }

    fn refresh_aggregate(&mut self, session: SessionId, outcome: &mut Outcome) {
        let now = self.session_status(session);
        let before = self.aggregates.get(&session).copied();
        if now == before {
            return;
        }
        match now {
            Some(status) => self.aggregates.insert(session, status),
            None => self.aggregates.remove(&session),
        };
        outcome.sessions.push((session, now));
    }

    fn refresh_waiting(&mut self, outcome: &mut Outcome) {
        let now = self.waiting_count();
        if now != self.waiting {
            self.waiting = now;
            outcome.waiting = Some(now);
        }
    }
}

/// The merge rule: whether an observation may change what the board says
/// of `agent`.
fn check_precedence(
    agent: &PaneAgent,
    source: Source,
    status: AgentStatus,
    at: DateTime<Utc>,
) -> Result<(), Ignored> {
    let Some(last_hook) = agent.last_hook else {
        return Ok(());
    };
    match source {
        Source::Hook if at < last_hook => Err(Ignored::StaleHook),
        Source::Hook => Ok(()),
        // The agent left: no hook says otherwise about a process that is gone.
        Source::Process if status == AgentStatus::Exited => Ok(()),
        Source::Activity | Source::Process if at <= last_hook => Err(Ignored::HookIsYounger),
        Source::Activity | Source::Process => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    const PANE: PaneId = PaneId(1);
    const SESSION: SessionId = SessionId(3);

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn seen(status: AgentStatus, source: Source, at: i64) -> Observation {
        Observation::new(PANE, Some(AgentKind::Claude), status, source, t(at))
    }

    fn status(board: &Board) -> AgentStatus {
        board.pane(PANE).unwrap().status
    }

    #[test]
    fn statuses_and_kinds_round_trip_through_their_names() {
        for status in AgentStatus::ALL {
            assert_eq!(status.as_str().parse::<AgentStatus>(), Ok(status));
        }
        assert!("busy".parse::<AgentStatus>().is_err());
        for kind in AgentKind::KNOWN {
            assert_eq!(AgentKind::named(kind.as_str()), kind);
        }
        assert_eq!(AgentKind::named("goose"), AgentKind::Other("goose".into()));
        assert_eq!(
            serde_json::to_string(&AgentKind::Claude).unwrap(),
            "\"claude\""
        );
        assert_eq!(
            serde_json::to_string(&AgentStatus::Waiting).unwrap(),
            "\"waiting\""
        );
    }

    #[test]
    fn activity_never_overrides_a_younger_hook() {
        let mut board = Board::new();
        board
            .apply(seen(AgentStatus::Working, Source::Hook, 10))
            .unwrap();
        // The screen settled before the hook ran, or at the same time.
        for at in [5, 10] {
            assert_eq!(
                board.apply(seen(AgentStatus::Idle, Source::Activity, at)),
                Err(Ignored::HookIsYounger)
            );
        }
        assert_eq!(status(&board), AgentStatus::Working);
        assert_eq!(
            board.apply(seen(AgentStatus::Idle, Source::Process, 9)),
            Err(Ignored::HookIsYounger)
        );
    }

    #[test]
    fn activity_younger_than_the_last_hook_corrects_it() {
        let mut board = Board::new();
        board
            .apply(seen(AgentStatus::Working, Source::Hook, 10))
            .unwrap();
        let outcome = board
            .apply(seen(AgentStatus::Idle, Source::Activity, 11))
            .unwrap();
        let change = outcome.change.unwrap();
        assert_eq!(change.old, Some(AgentStatus::Working));
        assert_eq!(change.new, AgentStatus::Idle);
        assert_eq!(change.source, Source::Activity);
        assert_eq!(change.since, t(11));
    }

    #[test]
    fn the_agent_leaving_wins_over_any_hook() {
        let mut board = Board::new();
        board
            .apply(seen(AgentStatus::Waiting, Source::Hook, 10))
            .unwrap();
        let outcome = board
            .apply(seen(AgentStatus::Exited, Source::Process, 3))
            .unwrap();
        assert_eq!(outcome.change.unwrap().new, AgentStatus::Exited);
        assert_eq!(outcome.waiting, Some(0));
    }

    #[test]
    fn a_hook_older_than_the_last_one_is_dropped_and_a_later_one_applies() {
        let mut board = Board::new();
        board
            .apply(seen(AgentStatus::Idle, Source::Hook, 10))
            .unwrap();
        assert_eq!(
            board.apply(seen(AgentStatus::Working, Source::Hook, 9)),
            Err(Ignored::StaleHook)
        );
        assert_eq!(status(&board), AgentStatus::Idle);
        // A hook at the same instant is not older: it applies.
        board
            .apply(seen(AgentStatus::Working, Source::Hook, 10))
            .unwrap();
        assert_eq!(status(&board), AgentStatus::Working);
    }

    #[test]
    fn hooks_override_activity_whatever_its_age() {
        let mut board = Board::new();
        board
            .apply(seen(AgentStatus::Working, Source::Activity, 20))
            .unwrap();
        board
            .apply(seen(AgentStatus::Waiting, Source::Hook, 15))
            .unwrap();
        assert_eq!(status(&board), AgentStatus::Waiting);
    }

    #[test]
    fn the_same_status_again_is_no_change_and_keeps_its_since() {
        let mut board = Board::new();
        board
            .apply(seen(AgentStatus::Working, Source::Activity, 1))
            .unwrap();
        let outcome = board
            .apply(seen(AgentStatus::Working, Source::Hook, 2))
            .unwrap();
        assert_eq!(outcome.change, None);
        let agent = board.pane(PANE).unwrap();
        assert_eq!(agent.since, t(1));
        assert_eq!(agent.source, Source::Hook);
    }

    #[test]
    fn details_from_a_hook_are_kept_and_said_to_have_changed() {
        let mut board = Board::new();
        let mut start = seen(AgentStatus::Idle, Source::Hook, 1);
        start.agent_session_id = Some("abc".into());
        start.transcript_path = Some("/tmp/t.jsonl".into());
        assert!(board.apply(start.clone()).unwrap().change.is_some());
        start.at = t(2);
        assert!(board.apply(start).unwrap().is_empty());
        // A later observation without them keeps them.
        board
            .apply(seen(AgentStatus::Working, Source::Hook, 3))
            .unwrap();
        let agent = board.pane(PANE).unwrap();
        assert_eq!(agent.agent_session_id.as_deref(), Some("abc"));
        assert_eq!(agent.kind, Some(AgentKind::Claude));
    }

    #[test]
    fn the_session_aggregate_is_waiting_then_working_then_idle() {
        let mut board = Board::new();
        let at = |pane, status, s| Observation::new(PaneId(pane), None, status, Source::Hook, t(s));
        board.apply(at(1, AgentStatus::Idle, 0)).unwrap();
        assert_eq!(
            board.place(PaneId(1), SESSION).sessions,
            [(SESSION, Some(AgentStatus::Idle))]
        );
        board.apply(at(2, AgentStatus::Exited, 0)).unwrap();
        assert!(
            board.place(PaneId(2), SESSION).sessions.is_empty(),
            "idle beats exited"
        );
        board.apply(at(3, AgentStatus::Working, 0)).unwrap();
        assert_eq!(
            board.place(PaneId(3), SESSION).sessions,
            [(SESSION, Some(AgentStatus::Working))]
        );
        let outcome = board.apply(at(1, AgentStatus::Waiting, 1)).unwrap();
        assert_eq!(outcome.sessions, [(SESSION, Some(AgentStatus::Waiting))]);
        assert_eq!(outcome.waiting, Some(1));
        // Another pane going idle changes neither.
        let outcome = board.apply(at(3, AgentStatus::Idle, 2)).unwrap();
        assert!(outcome.sessions.is_empty());
        assert_eq!(outcome.waiting, None);
        assert_eq!(board.session_status(SESSION), Some(AgentStatus::Waiting));
        assert_eq!(
            board.forget(PaneId(1)).sessions,
            [(SESSION, Some(AgentStatus::Idle))]
        );
        assert_eq!(board.waiting_count(), 0);
        assert_eq!(AgentStatus::aggregate([]), None);
        assert_eq!(
            AgentStatus::aggregate([AgentStatus::Unknown, AgentStatus::Exited]),
            Some(AgentStatus::Exited)
        );
    }

    #[test]
    fn moving_a_pane_updates_both_sessions_and_closing_one_forgets_its_panes() {
        let mut board = Board::new();
        let other = SessionId(4);
        board
            .apply(seen(AgentStatus::Waiting, Source::Hook, 0))
            .unwrap();
        board.place(PANE, SESSION);
        let outcome = board.place(PANE, other);
        assert_eq!(
            outcome.sessions,
            [(SESSION, None), (other, Some(AgentStatus::Waiting))]
        );
        assert_eq!(board.session_status(SESSION), None);
        let outcome = board.forget_session(other);
        assert_eq!(outcome.waiting, Some(0));
        assert!(board.pane(PANE).is_none());
    }

    #[test]
    fn the_longest_waiting_agent_comes_first() {
        let mut board = Board::new();
        for (pane, at) in [(1, 30), (2, 10), (3, 20)] {
            board
                .apply(Observation::new(
                    PaneId(pane),
                    None,
                    AgentStatus::Waiting,
                    Source::Hook,
                    t(at) + TimeDelta::milliseconds(1),
                ))
                .unwrap();
        }
        let order: Vec<_> = board
            .waiting_longest_first()
            .iter()
            .map(|a| a.pane.0)
            .collect();
        assert_eq!(order, [2, 3, 1]);
    }
}
