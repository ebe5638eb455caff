//! Commands to tmux: one quoting function for every argument, and typed
//! builders that each produce one command line.
