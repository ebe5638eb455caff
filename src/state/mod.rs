//! The model of the tmux server's sessions and clients, and the lifecycle
//! events derived from it.
//!
//! - [`event`]: the events and their JSON form.
//! - [`model`]: sessions and clients, and the diff between two listings.
//! - [`tracker`]: the task that owns the model and drives it from the
//!   control connection.

pub mod event;
pub mod model;
pub mod tracker;

pub use event::{EventKind, LifecycleEvent};
pub use model::Model;
pub use tracker::{TrackEnd, Tracker};
