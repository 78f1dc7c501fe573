//! GraphQL guards: the authorization rules written on resolvers (`#[graphql(guard = "SignedIn")]`).

use async_graphql::{Context, Guard};

use super::Viewer;
use crate::error::Error;

/// The caller must hold a valid access token.
pub struct SignedIn;

impl Guard for SignedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        viewer(ctx).require()?;
        Ok(())
    }
}

/// The caller must be an admin.
pub struct AdminOnly;

impl Guard for AdminOnly {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if viewer(ctx).require()?.is_admin {
            Ok(())
        } else {
            Err(Error::Forbidden("admins only").into())
        }
    }
}

fn viewer<'a>(ctx: &'a Context<'_>) -> &'a Viewer {
    static ANONYMOUS: Viewer = Viewer::Anonymous;
    ctx.data_opt::<Viewer>().unwrap_or(&ANONYMOUS)
}
