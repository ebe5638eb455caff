//! The integration tests, as one test binary: every file here is a module
//! rather than its own crate under `tests/`, because each such crate is a
//! separate binary linking the whole library and rmcp, and on a 2-core
//! machine 24 links took far longer than the tests themselves. Shared
//! fixtures live in [`support`].
//!
//! Run one area with a filter on its module, e.g. `cargo test reactor::`.

mod support;

mod agent_status;
mod bad_input;
mod builtin_default;
mod burst;
mod claude_code;
mod closed_stdout;
mod codec;
mod command_tmux;
mod commands;
mod conformance_client;
mod daemon_run;
mod faults;
mod groups;
mod ipc;
mod journal;
mod lifecycle;
mod listing;
mod mcp_agents;
mod mcp_cli;
mod mcp_config;
mod mcp_memory;
mod mcp_npm;
mod mcp_pool;
mod mcp_reconfigure;
mod messages;
mod notify;
mod options;
mod outbox_cli;
mod pane_delivery;
mod reactor;
mod reactor_memory;
mod reconnect;
mod restore;
mod serve_agent;
mod serve_concurrency;
mod serve_contexts;
mod serve_errors;
mod serve_goals;
mod serve_http;
mod serve_prompts;
mod serve_resources;
mod serve_wire;
mod sessions_file;
mod shell;
mod state_files;
mod status_fallback;
mod targets;
mod tpm;
