//! The accounts part of the schema: `me`, `user`, `users`, sign-up, sessions and profiles.
//! Resolvers parse arguments, check the guard, call [`service`] and map the result.

use async_graphql::connection::Connection;
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject, Upload};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{Bio, BodyWeightKg, DisplayName, Email, Handle, Login, Password};
use super::service::{self, NewAccount, ProfileChanges, Session};
use crate::entity::user;
use crate::error::{Error, Result};
use crate::graphql::loaders::by_key;
use crate::graphql::pagination::{self, PageRequest};
use crate::graphql::{ContextExt, SignedIn, upload};
use crate::state::AppState;

/// Users by id (registered by the schema assembly).
pub struct UserLoader(pub AppState);

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, user::Model>> {
        Ok(by_key(service::find_many(&self.0, keys).await?, |user| {
            user.id
        }))
    }
}

/// A user's permission level.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "user::Role")]
pub enum Role {
    /// Everyone.
    User,
    /// Keeps the event catalogue and sees private fields.
    Admin,
}

/// Body type, used only for the blood alcohol estimate.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "user::BodyType")]
pub enum BodyType {
    /// Body water ratio 0.55.
    Female,
    /// Body water ratio 0.68.
    Male,
    /// Body water ratio 0.62.
    Unspecified,
}

/// A person with an account.
#[derive(Clone)]
pub struct User {
    model: user::Model,
    /// Private fields are shown regardless of the viewer: the payload of the user's own sign-in.
    own_session: bool,
}

impl User {
    /// The user with this id, through the loader (NOT_FOUND when there is none).
    pub async fn load(ctx: &Context<'_>, id: Uuid) -> Result<Self> {
        crate::graphql::loaders::loader::<UserLoader>(ctx)?
            .load_one(id)
            .await?
            .map(Self::from)
            .ok_or(Error::NotFound("no such user"))
    }
}

impl From<user::Model> for User {
    fn from(model: user::Model) -> Self {
        Self {
            model,
            own_session: false,
        }
    }
}

#[Object]
impl User {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }

    /// Unique, 3-30 chars of [a-z0-9_], compared case-insensitively.
    async fn handle(&self) -> &str {
        &self.model.handle
    }

    /// Name shown to others.
    async fn display_name(&self) -> &str {
        &self.model.display_name
    }

    /// Free text about the user.
    async fn bio(&self) -> Option<&str> {
        self.model.bio.as_deref()
    }

    /// URL of the avatar picture (re-encoded, cacheable forever).
    async fn avatar_url(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let state = ctx.state()?;
        Ok(self
            .model
            .avatar_key
            .as_deref()
            .map(|key| state.media.url(key)))
    }

    /// Permission level.
    async fn role(&self) -> Role {
        self.model.role.into()
    }

    /// When the account was made.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }

    /// Only for the user themself (and admins); null for anyone else.
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let admin = ctx.caller()?.is_some_and(|me| me.is_admin);
        let visible = admin || self.only_for_self(ctx)?;
        Ok(visible.then_some(self.model.email.as_str()))
    }

    /// Token wallet (runs/mining); only for the user themself, null for anyone else.
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Option<crate::runs::graphql::Wallet>> {
        if !self.only_for_self(ctx)? {
            return Ok(None);
        }
        Ok(Some(
            crate::runs::graphql::Wallet::of(ctx, self.model.id).await?,
        ))
    }

    /// Body weight for the blood alcohol estimate; only for the user themself.
    async fn body_weight_kg(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        Ok(self
            .only_for_self(ctx)?
            .then_some(self.model.body_weight_kg)
            .flatten())
    }

    /// Body type for the blood alcohol estimate; only for the user themself.
    async fn body_type(&self, ctx: &Context<'_>) -> Result<Option<BodyType>> {
        Ok(self
            .only_for_self(ctx)?
            .then_some(self.model.body_type.map(Into::into))
            .flatten())
    }
}

impl User {
    fn only_for_self(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.own_session || ctx.caller()?.is_some_and(|me| me.user_id == self.model.id))
    }
}

/// A signed-in session.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Short-lived JWT (HS256 by default).
    access_token: String,
    /// When the access token stops working.
    access_token_expires_at: DateTime<Utc>,
    /// Opaque, single use: refreshSession rotates it. Stored only as a hash.
    refresh_token: String,
    /// Who signed in.
    user: User,
}

impl From<Session> for AuthPayload {
    fn from(session: Session) -> Self {
        Self {
            access_token: session.access.token,
            access_token_expires_at: session.access.expires_at,
            refresh_token: session.refresh_token,
            user: User {
                model: session.user,
                own_session: true,
            },
        }
    }
}

/// A new account.
#[derive(InputObject)]
pub struct SignupInput {
    /// Unique, 3-30 chars of [a-z0-9_], compared case-insensitively.
    handle: String,
    /// Unique; used to log in and never shown to others.
    email: String,
    /// 8 to 128 characters; hashed with argon2id.
    password: String,
    /// Defaults to the handle.
    display_name: Option<String>,
}

/// Profile changes: an absent field is kept; null clears bio, body weight and body type.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// 1 to 80 characters.
    display_name: Option<String>,
    /// At most 500 characters; null or empty clears it.
    bio: MaybeUndefined<String>,
    /// Optional, used only for the blood alcohol estimate of cup sessions.
    body_weight_kg: MaybeUndefined<f64>,
    /// Optional: FEMALE, MALE or UNSPECIFIED; used only for the blood alcohol estimate.
    body_type: MaybeUndefined<BodyType>,
}

/// Account queries.
#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The signed-in user; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(me) = ctx.caller()? else {
            return Ok(None);
        };
        Ok(service::find_by_id(ctx.state()?, me.user_id)
            .await?
            .map(User::from))
    }

    /// A user by handle (case-insensitive); null when there is none. Signed-in users only.
    #[graphql(guard = "SignedIn")]
    async fn user(&self, ctx: &Context<'_>, handle: String) -> Result<Option<User>> {
        let Ok(handle) = Handle::parse(&handle, "handle") else {
            return Ok(None);
        };
        Ok(service::find_by_handle(ctx.state()?, &handle)
            .await?
            .map(User::from))
    }

    /// Users ordered by handle, optionally matching `search` in handle or display name.
    /// Signed-in users only.
    #[graphql(
        guard = "SignedIn",
        complexity = "pagination::complexity(first, child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, User>> {
        let page = PageRequest::parse(first, after.as_deref())?;
        if search
            .as_ref()
            .is_some_and(|s| s.chars().any(char::is_control))
        {
            return Err(Error::bad_input(
                "search",
                "search has no control characters",
            ));
        }
        if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
            return Err(Error::bad_input(
                "search",
                "search has at most 100 characters",
            ));
        }
        let (rows, more) = service::list(
            ctx.state()?,
            search.as_deref(),
            page.after.as_deref(),
            page.limit,
        )
        .await?;
        Ok(pagination::connection(
            &page,
            rows,
            more,
            |row| row.handle.clone(),
            User::from,
        ))
    }
}

/// Account mutations.
#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// Creates an account and signs it in. A taken handle or email is CONFLICT naming the field.
    async fn signup(&self, ctx: &Context<'_>, input: SignupInput) -> Result<AuthPayload> {
        let account = NewAccount {
            handle: Handle::parse(&input.handle, "input.handle")?,
            email: Email::parse(&input.email, "input.email")?,
            password: Password::parse(input.password, "input.password")?,
            display_name: input
                .display_name
                .as_deref()
                .map(|name| DisplayName::parse(name, "input.displayName"))
                .transpose()?,
        };
        let session = service::signup(ctx.state()?, ctx.client_addr(), account).await?;
        Ok(session.into())
    }

    /// login is a handle or an email. A wrong login and a wrong password give the same error.
    async fn login(
        &self,
        ctx: &Context<'_>,
        login: String,
        password: String,
    ) -> Result<AuthPayload> {
        if login.len() > 254 || password.len() > 1024 {
            return Err(Error::Unauthenticated("wrong login or password"));
        }
        let session = service::login(
            ctx.state()?,
            ctx.client_addr(),
            Login::parse(&login),
            password,
        )
        .await?;
        Ok(session.into())
    }

    /// Rotates a refresh token: the old one stops working, a new one comes back. Reusing an old
    /// token revokes the whole session.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<AuthPayload> {
        Ok(service::refresh(ctx.state()?, &refresh_token).await?.into())
    }

    /// Ends the session of this refresh token (every token rotated from the same login).
    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        service::logout(ctx.state()?, &refresh_token).await?;
        Ok(true)
    }

    /// Changes the caller's profile.
    #[graphql(guard = "SignedIn")]
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let me = ctx.identity()?;
        let changes = ProfileChanges {
            display_name: input
                .display_name
                .as_deref()
                .map(|name| DisplayName::parse(name, "input.displayName"))
                .transpose()?,
            bio: match input.bio {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(Bio::parse("", "input.bio")?),
                MaybeUndefined::Value(bio) => Some(Bio::parse(&bio, "input.bio")?),
            },
            body_weight_kg: match input.body_weight_kg {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(kg) => {
                    Some(Some(BodyWeightKg::parse(kg, "input.bodyWeightKg")?))
                }
            },
            body_type: match input.body_type {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(body_type) => Some(Some(body_type.into())),
            },
        };
        Ok(service::update_profile(ctx.state()?, me.user_id, changes)
            .await?
            .into())
    }

    /// Sets the caller's avatar from an uploaded PNG, JPEG, GIF or WebP picture; it is scaled to at
    /// most 512 px and re-encoded, so no metadata of the original survives.
    #[graphql(guard = "SignedIn")]
    async fn upload_avatar(&self, ctx: &Context<'_>, file: Upload) -> Result<User> {
        let me = ctx.identity()?;
        let bytes = upload::read(ctx, &file, "file")?;
        Ok(service::set_avatar(ctx.state()?, me.user_id, bytes)
            .await?
            .into())
    }
}
