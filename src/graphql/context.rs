//! Typed access to what a resolver may read from its context: the app state (schema data) and the
//! per-request caller and client address (request data).
//!
//! The caller is attached by the transports with [`Caller::attach`] under a key type private to
//! this module, so [`ContextExt::viewer`] is the only way to read it. Shared subscription
//! executions rely on that: every read marks the execution's [`ViewerProbe`], which is how an
//! execution learns that its payloads depend on who is asking (see `fanout`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::{Context, Request};

use crate::auth::{ClientAddr, Identity, Viewer};
use crate::error::{Error, Result};
use crate::state::AppState;

/// The request's caller, readable only through [`ContextExt::viewer`].
struct RequestViewer(Viewer);

/// Marked when a resolver of the execution carrying it asks who is calling.
#[derive(Debug, Default)]
pub struct ViewerProbe(AtomicBool);

impl ViewerProbe {
    /// Whether a resolver asked who is calling.
    pub fn touched(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Who a request runs as, and where it came from: what a transport attaches to a request.
#[derive(Clone)]
pub struct Caller {
    /// Who is calling.
    pub viewer: Viewer,
    /// The client's address (none for a shared execution, which runs for many clients).
    pub addr: Option<ClientAddr>,
}

impl Caller {
    /// Attaches the caller (and, for shared executions, the probe that notes reads of it).
    pub fn attach(self, request: Request, probe: Option<Arc<ViewerProbe>>) -> Request {
        let mut request = request.data(RequestViewer(self.viewer));
        if let Some(addr) = self.addr {
            request = request.data(addr);
        }
        if let Some(probe) = probe {
            request = request.data(probe);
        }
        request
    }
}

/// Typed helpers on `async_graphql::Context`.
pub trait ContextExt {
    /// The app state.
    fn state(&self) -> Result<&AppState>;
    /// Who is calling (anonymous when the transport attached no caller). In a shared subscription
    /// execution this marks the execution as depending on its caller.
    fn viewer(&self) -> &Viewer;
    /// The signed-in caller, `None` when anonymous, UNAUTHENTICATED for a bad token.
    fn caller(&self) -> Result<Option<Identity>> {
        self.viewer().identity()
    }
    /// The signed-in caller, or UNAUTHENTICATED.
    fn identity(&self) -> Result<Identity> {
        self.viewer().require()
    }
    /// The client's network address, when the transport knows it.
    fn client_addr(&self) -> Option<IpAddr>;
    /// Schema data of type `T` that the assembly registered (loaders, per-instance services).
    fn registered<T: Send + Sync + 'static>(&self) -> Result<&T>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> Result<&AppState> {
        self.registered::<AppState>()
    }

    fn viewer(&self) -> &Viewer {
        static ANONYMOUS: Viewer = Viewer::Anonymous;
        if let Some(probe) = self.data_opt::<Arc<ViewerProbe>>() {
            probe.touch();
        }
        self.data_opt::<RequestViewer>()
            .map_or(&ANONYMOUS, |caller| &caller.0)
    }

    fn client_addr(&self) -> Option<IpAddr> {
        self.data_opt::<ClientAddr>().map(|addr| addr.0)
    }

    fn registered<T: Send + Sync + 'static>(&self) -> Result<&T> {
        self.data_opt::<T>().ok_or_else(|| {
            Error::internal(anyhow::anyhow!(
                "{} is not registered as schema data",
                std::any::type_name::<T>()
            ))
        })
    }
}
