//! Rebuilding the PostgreSQL view from the chains.

/// Placeholder until the rebuild lands.
pub async fn rebuild() {}
