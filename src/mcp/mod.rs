//! MCP: client configuration, supervised connections, metrics, and the
//! built-in server.

pub mod serve;
