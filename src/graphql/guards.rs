//! GraphQL guards: the authorization rules written on resolvers (`#[graphql(guard = "SignedIn")]`).

use async_graphql::{Context, Guard};

use super::ContextExt;
use crate::error::Error;

/// The caller must hold a valid access token.
pub struct SignedIn;

impl Guard for SignedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        ctx.identity()?;
        Ok(())
    }
}

/// The caller must be an admin.
pub struct AdminOnly;

impl Guard for AdminOnly {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if ctx.identity()?.is_admin {
            Ok(())
        } else {
            Err(Error::Forbidden("admins only").into())
        }
    }
}
