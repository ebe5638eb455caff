//! `tmux-agent restore`: sessions brought back from their snapshots.
