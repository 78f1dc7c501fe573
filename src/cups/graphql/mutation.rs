//! Cup mutations: the gateway's.

use async_graphql::{Context, ID, InputObject, Object};

use super::types::CupSession;
use crate::accounts::model::Handle;
use crate::cups::model::{Drink, parse_cheers};
use crate::cups::service;
use crate::error::{Error, Result};
use crate::graphql::{ContextExt, SignedIn, ids};

/// A drink as the gateway reports it.
#[derive(InputObject)]
pub struct DrinkInput {
    /// 1 to 80 characters.
    name: String,
    /// 1 to 2000 ml.
    volume_ml: i32,
    /// Alcohol by volume, 0 to 100 percent.
    abv: f64,
    /// 0 to 100000 cents.
    price_cents: i32,
    /// kcal; estimated from the alcohol (7 kcal/g) when absent.
    calories: Option<i32>,
}

/// Cup mutations (the gateway's).
#[derive(Default)]
pub struct CupsMutation;

#[Object]
impl CupsMutation {
    /// Staff: a guest asks for a cup. Returns the guest's OPEN session at this event if there is one,
    /// else opens one. The event must be LIVE (else CONFLICT).
    #[graphql(guard = "SignedIn")]
    async fn open_cup_session(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
    ) -> Result<CupSession> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let handle = Handle::parse(&handle, "handle")
            .map_err(|_| Error::NotFound("no user with this handle"))?;
        let session = service::open(ctx.state()?, me, event, &handle).await?;
        Ok(CupSession::private(session))
    }

    /// Staff: count cheers (clinks) for a session; 1 to 100 per call.
    #[graphql(guard = "SignedIn")]
    async fn record_cheers(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        #[graphql(default = 1)] count: Option<i32>,
    ) -> Result<CupSession> {
        let me = ctx.identity()?;
        let count = parse_cheers(count.unwrap_or(1))?;
        let id = ids::require(&session_id, "no such cup session")?;
        let session = service::record_cheers(ctx.state()?, me, id, count).await?;
        Ok(CupSession::private(session))
    }

    /// Staff: the guest ordered a drink; bill, calories, alcohol and BAC follow.
    #[graphql(guard = "SignedIn")]
    async fn record_drink(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        drink: DrinkInput,
    ) -> Result<CupSession> {
        let me = ctx.identity()?;
        let drink = Drink::parse(
            &drink.name,
            drink.volume_ml,
            drink.abv,
            drink.price_cents,
            drink.calories,
            "drink",
        )?;
        let id = ids::require(&session_id, "no such cup session")?;
        let session = service::record_drink(ctx.state()?, me, id, drink).await?;
        Ok(CupSession::private(session))
    }

    /// Staff or the guest: close the session; later updates get CONFLICT.
    #[graphql(guard = "SignedIn")]
    async fn close_cup_session(&self, ctx: &Context<'_>, session_id: ID) -> Result<CupSession> {
        let me = ctx.identity()?;
        let id = ids::require(&session_id, "no such cup session")?;
        let session = service::close(ctx.state()?, me, id).await?;
        Ok(CupSession::private(session))
    }
}
