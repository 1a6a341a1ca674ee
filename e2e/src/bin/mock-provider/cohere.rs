//! Placeholder: being written.

use axum::Router;

/// The routes of this wire format.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
}
