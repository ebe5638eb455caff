//! The model of the tmux server's sessions and clients, and the lifecycle
//! events derived from it.
