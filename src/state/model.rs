//! The sidecar's picture of the server: sessions and clients, and the diff
//! that turns two pictures into lifecycle events.
//!
//! tmux has no `%session-created`, `%session-closed` or `%client-attached`
//! line (DESIGN.md D2), so events are derived: the tracker lists sessions and
//! clients whenever something may have changed, and [`Model::reconcile`]
//! compares the new listing with the old one. Session ids are never reused
//! while a server lives, so "new id" means created and "missing id" means
//! closed. A session counts as attached while at least one non-control client
//! is on it: control clients (ours, iTerm2's, other tools') are not people.
//!
//! Ids also only grow, so a gap says something the listings could not: a
//! session that was created and killed between two of them. Each listing
//! carries tmux's `#{next_session_id}`, so the model knows which ids tmux
//! had handed out by then: an id handed out since the previous listing
//! that the new listing does not show is such a session, and becomes a
//! `session-missed` event. Ids handed out before the first listing are
//! not: those sessions ended before we looked (a daemon that starts on a
//! server whose sessions came and went knows nothing of them). Nor is the
//! sidecar's own session.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::event::{EventKind, LifecycleEvent};
use crate::control::SessionId;

/// A session as `list-sessions` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    /// The name as tmux stores it (vis-escaped: never contains a newline).
    pub name: String,
    /// Creation time, Unix seconds.
    pub created: i64,
}

/// A client as `list-clients` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// `/dev/pts/3` for a terminal, `client-<pid>` for a control client.
    pub name: String,
    pub pid: u32,
    /// A control-mode client (ours, or another tool's).
    pub control: bool,
    /// The session the client is on, if it has one yet.
    pub session: Option<SessionId>,
}

/// One listing of the server: what the tracker reads after a notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub sessions: Vec<SessionInfo>,
    pub clients: Vec<ClientInfo>,
    /// tmux's `#{next_session_id}` read just before the sessions: every id
    /// below it had been handed out. `None` when not read (then the highest
    /// id listed stands in for it).
    pub next_id: Option<u32>,
}

/// A tracked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub info: SessionInfo,
    /// Non-control clients on the session.
    pub clients: BTreeSet<String>,
}

impl Session {
    pub fn is_attached(&self) -> bool {
        !self.clients.is_empty()
    }
}

/// The model of one tmux server, without the sidecar's own session.
#[derive(Debug, Clone)]
pub struct Model {
    sidecar: SessionId,
    sessions: BTreeMap<SessionId, Session>,
    /// Non-control clients by name, with the session they are on.
    clients: BTreeMap<String, SessionId>,
    /// The first id tmux had not handed out at the last listing: ids below
    /// it are accounted for. `None` before the first listing.
    allocated: Option<u32>,
    /// How many sessions were missed (see the module doc).
    missed: u64,
}

impl Model {
    /// An empty model for a server whose sidecar session is `sidecar`.
    pub fn new(sidecar: SessionId) -> Self {
        Self {
            sidecar,
            sessions: BTreeMap::new(),
            clients: BTreeMap::new(),
            allocated: None,
            missed: 0,
        }
    }

    /// How many sessions lived and died between two listings, unseen.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The sidecar's own session, which never appears in the model.
    pub fn sidecar(&self) -> SessionId {
        self.sidecar
    }

    /// Changes which session is the sidecar's: a reconnected daemon's
    /// client may be in a new one (the old one ends a second after its
    /// client; within that second the daemon joins it again). Neither is
    /// ever in the model.
    pub fn set_sidecar(&mut self, sidecar: SessionId) {
        self.sidecar = sidecar;
        self.sessions.remove(&sidecar);
    }

    /// The user's sessions, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// Whether the server holds no session but the sidecar's.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Replaces the model with `listing` and returns the events that lead
    /// from the old picture to the new one, in causal order: clients leave,
    /// sessions detach and close, then sessions appear, are renamed, and
    /// clients arrive and sessions attach.
    pub fn reconcile(&mut self, listing: &Listing, now: DateTime<Utc>) -> Vec<LifecycleEvent> {
        let (sessions, clients) = self.picture(listing);
        let mut events = Vec::new();
        let event = |kind, session: &SessionInfo, client: Option<&str>| LifecycleEvent {
            kind,
            session_id: session.id,
            session: session.name.clone(),
            time: now,
            client: client.map(str::to_owned),
            old_name: None,
            session_created: Some(session.created),
            late: false,
            agent: None,
        };

        // Clients that went away, or moved off a session.
        for (client, old_session) in &self.clients {
            if clients.get(client) != Some(old_session)
                && let Some(session) = self.sessions.get(old_session)
            {
                events.push(event(
                    EventKind::ClientDetached,
                    &session.info,
                    Some(client),
                ));
            }
        }
        // Sessions that lost their last client but still exist.
        for (id, old) in &self.sessions {
            if let Some(new) = sessions.get(id)
                && old.is_attached()
                && !new.is_attached()
            {
                events.push(event(EventKind::SessionDetached, &new.info, None));
            }
        }
        for (id, old) in &self.sessions {
            if !sessions.contains_key(id) {
                events.push(event(EventKind::SessionClosed, &old.info, None));
            }
        }
        for id in self.skipped(listing) {
            events.push(LifecycleEvent {
                kind: EventKind::SessionMissed,
                session_id: id,
                session: String::new(),
                time: now,
                client: None,
                old_name: None,
                session_created: None,
                agent: None,
                late: false,
            });
        }
        self.missed += events
            .iter()
            .filter(|e| e.kind == EventKind::SessionMissed)
            .count() as u64;
        for (id, new) in &sessions {
            match self.sessions.get(id) {
                None => events.push(event(EventKind::SessionCreated, &new.info, None)),
                Some(old) if old.info.name != new.info.name => {
                    let mut renamed = event(EventKind::SessionRenamed, &new.info, None);
                    renamed.old_name = Some(old.info.name.clone());
                    events.push(renamed);
                }
                Some(_) => {}
            }
        }
        // Clients that arrived, or moved onto a session.
        for (client, new_session) in &clients {
            if self.clients.get(client) != Some(new_session)
                && let Some(session) = sessions.get(new_session)
            {
                events.push(event(
                    EventKind::ClientAttached,
                    &session.info,
                    Some(client),
                ));
            }
        }
        for (id, new) in &sessions {
            let was_attached = self.sessions.get(id).is_some_and(Session::is_attached);
            if new.is_attached() && !was_attached {
                events.push(event(EventKind::SessionAttached, &new.info, None));
            }
        }

        self.sessions = sessions;
        self.clients = clients;
        events
    }

    /// The ids handed out since the last listing that `listing` does not
    /// show, and what is handed out now. An empty listing (the server
    /// exited) skips nothing.
    fn skipped(&mut self, listing: &Listing) -> Vec<SessionId> {
        let Some(top) = listing.sessions.iter().map(|s| s.id.0).max() else {
            return Vec::new();
        };
        let now = listing.next_id.unwrap_or(0).max(top + 1);
        let before = self.allocated;
        self.allocated = Some(before.map_or(now, |before| before.max(now)));
        let Some(before) = before else {
            // The first listing: what it skips ended before we looked.
            return Vec::new();
        };
        let listed: BTreeSet<u32> = listing.sessions.iter().map(|s| s.id.0).collect();
        (before..now)
            .filter(|id| !listed.contains(id) && *id != self.sidecar.0)
            .map(SessionId)
            .collect()
    }

    /// The listing as this model sees it: the sidecar's session left out,
    /// control clients left out, clients grouped by session.
    fn picture(
        &self,
        listing: &Listing,
    ) -> (BTreeMap<SessionId, Session>, BTreeMap<String, SessionId>) {
        let mut sessions: BTreeMap<SessionId, Session> = listing
            .sessions
            .iter()
            .filter(|s| s.id != self.sidecar)
            .map(|info| {
                let session = Session {
                    info: info.clone(),
                    clients: BTreeSet::new(),
                };
                (info.id, session)
            })
            .collect();
        let mut clients = BTreeMap::new();
        for client in listing.clients.iter().filter(|c| !c.control) {
            let Some(id) = client.session else { continue };
            if let Some(session) = sessions.get_mut(&id) {
                session.clients.insert(client.name.clone());
                clients.insert(client.name.clone(), id);
            }
        }
        (sessions, clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDECAR: SessionId = SessionId(0);

    fn session(id: u32, name: &str) -> SessionInfo {
        SessionInfo {
            id: SessionId(id),
            name: name.into(),
            created: 1_700_000_000 + i64::from(id),
        }
    }

    fn client(name: &str, session: u32) -> ClientInfo {
        ClientInfo {
            name: name.into(),
            pid: 100,
            control: false,
            session: Some(SessionId(session)),
        }
    }

    fn control(name: &str, session: u32) -> ClientInfo {
        ClientInfo {
            control: true,
            ..client(name, session)
        }
    }

    fn kinds(events: &[LifecycleEvent]) -> Vec<(EventKind, u32)> {
        events.iter().map(|e| (e.kind, e.session_id.0)).collect()
    }

    fn listing(sessions: Vec<SessionInfo>, clients: Vec<ClientInfo>) -> Listing {
        Listing {
            sessions,
            clients,
            next_id: None,
        }
    }

    #[test]
    fn create_attach_detach_close() {
        use EventKind::*;
        let now = Utc::now();
        let mut model = Model::new(SIDECAR);
        let ours = control("client-1", 0);
        assert!(
            model
                .reconcile(
                    &listing(vec![session(0, "tmux-agent")], vec![ours.clone()]),
                    now
                )
                .is_empty()
        );
        assert!(
            model.is_empty(),
            "the sidecar's session is never part of the model"
        );

        let created = model.reconcile(
            &listing(
                vec![session(0, "tmux-agent"), session(1, "work")],
                vec![ours.clone()],
            ),
            now,
        );
        assert_eq!(kinds(&created), [(SessionCreated, 1)]);
        assert_eq!(created[0].session, "work");

        let attached = model.reconcile(
            &listing(
                vec![session(1, "work")],
                vec![ours.clone(), client("/dev/pts/3", 1)],
            ),
            now,
        );
        assert_eq!(
            kinds(&attached),
            [(ClientAttached, 1), (SessionAttached, 1)]
        );
        assert_eq!(attached[0].client.as_deref(), Some("/dev/pts/3"));

        let second = model.reconcile(
            &listing(
                vec![session(1, "work")],
                vec![
                    ours.clone(),
                    client("/dev/pts/3", 1),
                    client("/dev/pts/4", 1),
                ],
            ),
            now,
        );
        assert_eq!(
            kinds(&second),
            [(ClientAttached, 1)],
            "a second client does not re-attach the session"
        );

        let one_left = model.reconcile(
            &listing(vec![session(1, "work")], vec![client("/dev/pts/4", 1)]),
            now,
        );
        assert_eq!(kinds(&one_left), [(ClientDetached, 1)]);

        let detached = model.reconcile(&listing(vec![session(1, "work")], vec![]), now);
        assert_eq!(
            kinds(&detached),
            [(ClientDetached, 1), (SessionDetached, 1)]
        );

        let closed = model.reconcile(&listing(vec![], vec![]), now);
        assert_eq!(kinds(&closed), [(SessionClosed, 1)]);
        assert_eq!(
            closed[0].session, "work",
            "a closed session keeps the name it had"
        );
    }

    #[test]
    fn control_clients_never_attach_a_session() {
        let mut model = Model::new(SIDECAR);
        model.reconcile(&listing(vec![session(1, "a")], vec![]), Utc::now());
        let events = model.reconcile(
            &listing(vec![session(1, "a")], vec![control("client-9", 1)]),
            Utc::now(),
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn switching_moves_a_client_between_sessions() {
        use EventKind::*;
        let mut model = Model::new(SIDECAR);
        let sessions = vec![session(1, "a"), session(2, "b")];
        model.reconcile(
            &listing(sessions.clone(), vec![client("/dev/pts/3", 1)]),
            Utc::now(),
        );
        let events = model.reconcile(
            &listing(sessions, vec![client("/dev/pts/3", 2)]),
            Utc::now(),
        );
        assert_eq!(
            kinds(&events),
            [
                (ClientDetached, 1),
                (SessionDetached, 1),
                (ClientAttached, 2),
                (SessionAttached, 2)
            ]
        );
    }

    #[test]
    fn rename_keeps_the_old_name() {
        let mut model = Model::new(SIDECAR);
        model.reconcile(&listing(vec![session(1, "a")], vec![]), Utc::now());
        let events = model.reconcile(&listing(vec![session(1, "b c")], vec![]), Utc::now());
        assert_eq!(kinds(&events), [(EventKind::SessionRenamed, 1)]);
        assert_eq!(events[0].session, "b c");
        assert_eq!(events[0].old_name.as_deref(), Some("a"));
    }

    #[test]
    fn killing_an_attached_session_detaches_its_clients_then_closes_it() {
        use EventKind::*;
        let mut model = Model::new(SIDECAR);
        model.reconcile(
            &listing(
                vec![session(1, "a"), session(2, "b")],
                vec![client("/dev/pts/3", 1)],
            ),
            Utc::now(),
        );
        let events = model.reconcile(
            &listing(vec![session(2, "b")], vec![client("/dev/pts/3", 2)]),
            Utc::now(),
        );
        assert_eq!(
            kinds(&events),
            [
                (ClientDetached, 1),
                (SessionClosed, 1),
                (ClientAttached, 2),
                (SessionAttached, 2)
            ]
        );
    }

    #[test]
    fn a_skipped_id_is_a_missed_session_but_not_before_the_first_listing() {
        use EventKind::*;
        let mut model = Model::new(SessionId(4));
        // $0..$2 ended before we looked; $4 is the sidecar's own.
        model.reconcile(
            &listing(vec![session(3, "a"), session(4, "tmux-agent")], vec![]),
            Utc::now(),
        );
        assert_eq!(model.missed(), 0);
        // $5 and $7 lived and died unseen; $6 is still there.
        let events = model.reconcile(
            &listing(
                vec![session(3, "a"), session(6, "b"), session(8, "c")],
                vec![],
            ),
            Utc::now(),
        );
        assert_eq!(
            kinds(&events),
            [
                (SessionMissed, 5),
                (SessionMissed, 7),
                (SessionCreated, 6),
                (SessionCreated, 8)
            ]
        );
        assert_eq!(events[0].session, "");
        assert_eq!(model.missed(), 2);
        // A listing that only loses sessions skips nothing, nor does the
        // empty listing of a server that exited.
        assert!(
            kinds(&model.reconcile(&listing(vec![session(8, "c")], vec![]), Utc::now()))
                .iter()
                .all(|(kind, _)| *kind == SessionClosed)
        );
        model.reconcile(&Listing::default(), Utc::now());
        assert_eq!(model.missed(), 2);
    }

    #[test]
    fn ids_handed_out_before_the_first_listing_are_no_misses() {
        use EventKind::*;
        // A daemon starting after $4 and $5 came and went: tmux says $6 is
        // next, though the highest id listed is $3.
        let mut model = Model::new(SessionId(1));
        let at = |sessions, next_id| Listing {
            sessions,
            clients: vec![],
            next_id: Some(next_id),
        };
        model.reconcile(
            &at(vec![session(1, "tmux-agent"), session(3, "a")], 6),
            Utc::now(),
        );
        // $6 is created: nothing in between was missed by this model.
        let events = model.reconcile(&at(vec![session(3, "a"), session(6, "b")], 7), Utc::now());
        assert_eq!(kinds(&events), [(SessionCreated, 6)]);
        // $7 made and gone between listings, known only from the next id.
        let events = model.reconcile(&at(vec![session(3, "a"), session(6, "b")], 8), Utc::now());
        assert_eq!(kinds(&events), [(SessionMissed, 7)]);
        assert_eq!(model.missed(), 1);
    }

    #[test]
    fn the_sidecar_skipping_an_id_is_no_miss() {
        // The sidecar's session ($2) was made between the user's $1 and $3
        // and is never listed as the model's.
        let mut model = Model::new(SessionId(2));
        model.reconcile(&listing(vec![session(1, "a")], vec![]), Utc::now());
        let events = model.reconcile(
            &listing(vec![session(1, "a"), session(3, "b")], vec![]),
            Utc::now(),
        );
        assert_eq!(kinds(&events), [(EventKind::SessionCreated, 3)]);
        assert_eq!(model.missed(), 0);
    }

    #[test]
    fn an_unchanged_listing_gives_no_events() {
        let mut model = Model::new(SIDECAR);
        let same = listing(
            vec![session(1, "a"), session(2, "b")],
            vec![client("/dev/pts/3", 1)],
        );
        model.reconcile(&same, Utc::now());
        assert!(model.reconcile(&same, Utc::now()).is_empty());
    }
}
