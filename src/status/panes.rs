//! The agents as tmux's pane options show them: what `show`, `whoami` and
//! `next-waiting` read, with or without a daemon (the daemon, or the hook
//! without one, writes them; see [`crate::schema::pane`]).

use serde::Serialize;

use super::model::AgentStatus;
use crate::control::{PaneId, SessionId};

/// One line per pane: its id, session, the agent options, and the session's
/// name last (it is the one value that may hold a tab).
pub const FORMAT: &str =
    "#{pane_id}\t#{session_id}\t#{@agent-status}\t#{@agent-kind}\t#{@agent-since}\t#{session_name}";

/// A pane whose `@agent-status` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaneStatus {
    pub pane: PaneId,
    pub session_id: SessionId,
    pub session: String,
    pub status: AgentStatus,
    /// `@agent-kind`, as written (a config may name any agent).
    pub kind: Option<String>,
    /// `@agent-since`, Unix seconds.
    pub since: Option<i64>,
}

/// The panes of a [`FORMAT`] listing that have an agent status; lines
/// that are not ours (a status someone else wrote) are skipped.
pub fn parse(listing: &str) -> Vec<PaneStatus> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, '\t');
            let pane = fields.next()?.parse().ok()?;
            let session_id = fields.next()?.parse().ok()?;
            let status = fields.next()?.parse().ok()?;
            let kind = Some(fields.next()?.to_owned()).filter(|k| !k.is_empty());
            let since = fields.next()?.parse().ok();
            let session = fields.next().unwrap_or_default().to_owned();
            Some(PaneStatus {
                pane,
                session_id,
                session,
                status,
                kind,
                since,
            })
        })
        .collect()
}

/// The waiting agent that has waited longest (oldest `@agent-since`; one
/// without a time last, then by pane id).
pub fn longest_waiting(panes: &[PaneStatus]) -> Option<&PaneStatus> {
    panes
        .iter()
        .filter(|p| p.status == AgentStatus::Waiting)
        .min_by_key(|p| (p.since.unwrap_or(i64::MAX), p.pane))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_read_and_the_longest_wait_found() {
        let listing = "%1\t$0\twaiting\tclaude\t200\twork\n\
                       %2\t$0\t\t\t\twork\n\
                       %3\t$1\twaiting\tcodex\t100\tother\tname\n\
                       %4\t$1\tbusy\tx\t1\tother\n\
                       %5\t$2\tidle\t\t\tthird\n";
        let panes = parse(listing);
        assert_eq!(panes.len(), 3);
        assert_eq!(panes[1].session, "other\tname");
        assert_eq!(panes[2].kind, None);
        assert_eq!(longest_waiting(&panes).unwrap().pane, PaneId(3));
        assert_eq!(longest_waiting(&panes[2..]), None);
    }
}
