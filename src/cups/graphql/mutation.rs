//! Cup mutations: the gateway's, and the guest's request for a cup.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::types::CupSession;
use crate::accounts::model::Handle;
use crate::cups::model::{Drink, parse_cheers};
use crate::cups::service;
use crate::error::Result;
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

/// What a guest shows at the bar (as a QR code, say): their consent and presence, for
/// openCupSession.
#[derive(SimpleObject)]
pub struct CupCode {
    /// Eight characters of 2-9 and A-Z without I, L and O; staff may type it with any case, spaces
    /// or dashes.
    code: String,
    /// When it stops working.
    expires_at: DateTime<Utc>,
}

/// Cup mutations (the gateway's and the guest's).
#[derive(Default)]
pub struct CupsMutation;

#[Object]
impl CupsMutation {
    /// The guest: a single-use code, valid a few minutes (`RALLY_CUP_CODE_TTL_SECONDS`), that lets this
    /// event's staff open (or find) their cup. The event must be SCHEDULED or LIVE (else CONFLICT).
    #[graphql(guard = "SignedIn")]
    async fn request_cup_code(&self, ctx: &Context<'_>, event_id: ID) -> Result<CupCode> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let issued = service::request_code(ctx.state()?, me, event).await?;
        Ok(CupCode {
            code: issued.code.as_str().to_owned(),
            expires_at: issued.expires_at,
        })
    }

    /// Staff: a guest asks for a cup and shows their code. Returns the guest's OPEN session at this
    /// event if there is one, else opens one; the event must be LIVE (else CONFLICT). A wrong, used,
    /// expired or other guest's or other event's code is FORBIDDEN, in the same words for every
    /// reason: nobody gets a cup (and so a bill, a BAC estimate or a leaderboard place) without asking
    /// for it. Attempts per staff member are rate limited.
    #[graphql(guard = "SignedIn")]
    async fn open_cup_session(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        handle: String,
        code: String,
    ) -> Result<CupSession> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        // An unparsable handle names nobody: refused like a wrong code (see `service::open`).
        let handle = Handle::parse(&handle, "handle").map_err(|_| service::bad_code())?;
        let session = service::open(ctx.state()?, me, event, &handle, &code).await?;
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
        let id = ids::require(&session_id, "no such cup session")?;
        let count = parse_cheers(count.unwrap_or(1));
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
        let id = ids::require(&session_id, "no such cup session")?;
        let drink = Drink::parse(
            &drink.name,
            drink.volume_ml,
            drink.abv,
            drink.price_cents,
            drink.calories,
            "drink",
        );
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
