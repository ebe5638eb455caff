//! The control connection: owns the `tmux -C` child, writes commands and
//! resolves each with its reply block, and publishes notifications.
