//! GraphQL: the toolkit every domain's resolvers use, and, apart, the assembly of the one schema
//! with its transports.
//!
//! **Toolkit** (domains import these, they import no domain): [`ContextExt`] (state, caller,
//! registered data), [`guards`], [`ids`], [`pagination`], [`loaders`] (how DataLoaders batch),
//! [`upload`], [`response`] (every error gets a contract code), query [`limits`], operation
//! [`telemetry`], parsed [`documents`] and spec [`nulls`] (a failed field is null, never a missing
//! key); what they check and record is applied per request by `execution`, not by engine
//! extensions.
//!
//! **Assembly** (only `main`, startup, the HTTP router and the transports import these): [`schema`] (the
//! merged roots, the one builder shared with `rally schema`, the SDL, loader registration),
//! [`execution`] (the engine with Rally's rules around it, for every transport), [`http`] (GraphQL
//! over HTTP), [`ws`] (both websocket protocols) and [`fanout`] (shared
//! subscription executions).

mod context;
pub mod documents;
pub mod guards;
pub mod ids;
pub mod limits;
pub mod loaders;
pub mod nulls;
pub mod pagination;
pub mod response;
pub mod telemetry;
pub mod upload;
pub mod variables;

pub mod execution;
pub mod fanout;
pub mod http;
pub mod schema;
pub mod ws;

pub use context::{Caller, ContextExt, ViewerProbe};
pub use guards::{AdminOnly, SignedIn};
