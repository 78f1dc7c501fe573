//! Typed access to what a resolver may read from its context: the app state (schema data) and the
//! per-request viewer and client address (request data).

use async_graphql::Context;

use std::sync::Arc;

use super::fanout::ViewerProbe;
use crate::auth::{ClientAddr, Identity, Viewer};
use crate::error::{Error, Result};
use crate::state::AppState;

/// Typed helpers on `async_graphql::Context`.
pub trait ContextExt {
    /// The app state.
    fn state(&self) -> Result<&AppState>;
    /// Who is calling (anonymous when the transport attached no viewer). In a shared subscription
    /// execution this marks the execution as depending on its caller (see `fanout`).
    fn viewer(&self) -> &Viewer;
    /// The signed-in caller, or UNAUTHENTICATED.
    fn identity(&self) -> Result<Identity> {
        self.viewer().require()
    }
    /// The client's network address, when the transport knows it.
    fn client_addr(&self) -> Option<std::net::IpAddr>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> Result<&AppState> {
        self.data::<AppState>()
            .map_err(|_| Error::internal(anyhow::anyhow!("AppState missing from schema data")))
    }

    fn viewer(&self) -> &Viewer {
        static ANONYMOUS: Viewer = Viewer::Anonymous;
        if let Some(probe) = self.data_opt::<Arc<ViewerProbe>>() {
            probe.touch();
        }
        self.data_opt::<Viewer>().unwrap_or(&ANONYMOUS)
    }

    fn client_addr(&self) -> Option<std::net::IpAddr> {
        self.data_opt::<ClientAddr>().map(|addr| addr.0)
    }
}
