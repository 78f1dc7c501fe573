//! The games part of the schema: score and blur games, their rounds, `gameUpdated`, and the games'
//! DataLoaders.
//!
//! Uses the GraphQL toolkit and the games service; names the GraphQL types the schema links a game
//! to (`Event`, `User`). [`games_of`] is what `Event.games` calls.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, Enum, ID, Object, SimpleObject, Subscription, Upload};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::model::{GameState, parse_points, parse_title};
use super::service;
use crate::accounts::graphql::{User, UserLoader};
use crate::accounts::model::Handle;
use crate::entity::{blur_round, game, game_player};
use crate::error::{Error, Result};
use crate::events::graphql::{Event, EventLoader};
use crate::graphql::loaders::{grouped, loader};
use crate::graphql::{ContextExt, SignedIn, ids, upload};
use crate::state::AppState;

/// Games of events, by event id, oldest first.
pub struct GamesLoader(pub AppState);

impl Loader<Uuid> for GamesLoader {
    type Value = Vec<game::Model>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>> {
        let rows = service::for_events(&self.0, keys).await?;
        Ok(grouped(keys, rows, |g| g.event_id))
    }
}

/// Players of games, by game id.
pub struct PlayersLoader(pub AppState);

impl Loader<Uuid> for PlayersLoader {
    type Value = Vec<game_player::Model>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>> {
        let rows = service::players_of(&self.0, keys).await?;
        Ok(grouped(keys, rows, |p| p.game_id))
    }
}

/// Blur rounds of games, by game id, newest first.
pub struct RoundsLoader(pub AppState);

impl Loader<Uuid> for RoundsLoader {
    type Value = Vec<blur_round::Model>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>> {
        let rows = service::rounds_of(&self.0, keys).await?;
        Ok(grouped(keys, rows, |r| r.game_id))
    }
}

/// The games of an event, oldest first: what `Event.games` resolves to.
pub async fn games_of(ctx: &Context<'_>, event: Uuid) -> Result<Vec<Game>> {
    Ok(loader::<GamesLoader>(ctx)?
        .load_one(event)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(Game::from)
        .collect())
}

/// Kind of game.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "game::Kind")]
pub enum GameKind {
    /// The game master awards points.
    Score,
    /// Guess who is in the blurred photo.
    Blur,
}

/// Where a game is.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "game::Status")]
pub enum GameStatus {
    /// Created; nothing happened yet.
    Pending,
    /// Points or rounds under way.
    Running,
    /// Over; no more points.
    Finished,
}

/// A game between guests at an event.
pub struct Game(GameState);

impl From<GameState> for Game {
    fn from(game: GameState) -> Self {
        Self(game)
    }
}

impl From<game::Model> for Game {
    fn from(row: game::Model) -> Self {
        Self(row.into())
    }
}

async fn user(ctx: &Context<'_>, id: Uuid) -> Result<User> {
    loader::<UserLoader>(ctx)?
        .load_one(id)
        .await?
        .map(User::from)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("missing user")))
}

#[Object]
impl Game {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// The event.
    async fn event(&self, ctx: &Context<'_>) -> Result<Event> {
        loader::<EventLoader>(ctx)?
            .load_one(self.0.event_id)
            .await?
            .map(Event::from)
            .ok_or_else(|| Error::NotFound("no such event"))
    }

    /// SCORE or BLUR.
    async fn kind(&self) -> GameKind {
        self.0.kind.into()
    }

    /// Shown to players.
    async fn title(&self) -> &str {
        &self.0.title
    }

    /// PENDING, RUNNING or FINISHED.
    async fn status(&self) -> GameStatus {
        self.0.status.into()
    }

    /// The players and the points they won in this game.
    async fn players(&self, ctx: &Context<'_>) -> Result<Vec<GamePlayer>> {
        Ok(loader::<PlayersLoader>(ctx)?
            .load_one(self.0.id)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(GamePlayer)
            .collect())
    }

    /// BLUR games only: the rounds, newest first.
    async fn rounds(&self, ctx: &Context<'_>) -> Result<Vec<BlurRound>> {
        Ok(loader::<RoundsLoader>(ctx)?
            .load_one(self.0.id)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(BlurRound)
            .collect())
    }

    /// Grows with each committed change.
    async fn version(&self) -> i64 {
        self.0.version
    }
}

/// A player and their points in one game.
pub struct GamePlayer(game_player::Model);

#[Object]
impl GamePlayer {
    /// Who.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        user(ctx, self.0.user_id).await
    }

    /// Points won in this game.
    async fn points(&self) -> i32 {
        self.0.points
    }
}

/// A photo shown blurred; each reveal step makes it sharper; the first right guess wins the round.
pub struct BlurRound(blur_round::Model);

#[Object]
impl BlurRound {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// The game.
    async fn game(&self, ctx: &Context<'_>) -> Result<Game> {
        service::find(ctx.state()?, self.0.game_id)
            .await?
            .map(Game::from)
            .ok_or_else(|| Error::NotFound("no such game"))
    }

    /// Current blur level, 10 = unrecognisable, 0 = sharp.
    async fn level(&self) -> i32 {
        self.0.level
    }

    /// URL of the photo rendered at the current level (server-side blur; sharp once solved).
    async fn image_url(&self, ctx: &Context<'_>) -> Result<String> {
        let level = if self.0.solved_by.is_some() {
            0
        } else {
            self.0.level
        };
        Ok(ctx.state()?.media.blur_url(self.0.id, level))
    }

    /// Who guessed right first.
    async fn solved_by(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.0.solved_by {
            Some(id) => Ok(Some(user(ctx, id).await?)),
            None => Ok(None),
        }
    }

    /// The person in the photo; set once solved.
    async fn answer(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        if self.0.solved_by.is_none() {
            return Ok(None);
        }
        Ok(Some(user(ctx, self.0.answer_id).await?))
    }

    /// Points the winner got (0 until solved).
    async fn points_awarded(&self) -> i32 {
        self.0.points_awarded
    }
}

/// What a guess did.
#[derive(SimpleObject)]
pub struct GuessResult {
    /// Whether it named the person in the photo.
    correct: bool,
    /// Points won (only the first right guess wins).
    points_awarded: i32,
    /// The round after the guess.
    round: BlurRound,
}

fn handle(raw: &str, field: &str) -> Result<Handle> {
    Handle::parse(raw, field).map_err(|_| Error::bad_input(field, "not a player of this game"))
}

/// Game queries.
#[derive(Default)]
pub struct GamesQuery;

#[Object]
impl GamesQuery {
    /// A game by id; null when there is none. Public.
    async fn game(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Game>> {
        let Some(id) = ids::parse(&id) else {
            return Ok(None);
        };
        Ok(service::find(ctx.state()?, id).await?.map(Game::from))
    }
}

/// Game mutations.
#[derive(Default)]
pub struct GamesMutation;

#[Object]
impl GamesMutation {
    /// Staff (GAME_MASTER or organizer): a game between guests who have a cup at the event.
    #[graphql(guard = "SignedIn")]
    async fn create_game(
        &self,
        ctx: &Context<'_>,
        event_id: ID,
        kind: GameKind,
        title: String,
        players: Vec<String>,
    ) -> Result<Game> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let title = parse_title(&title);
        Ok(Game::from(
            service::create(ctx.state()?, me, event, kind.into(), title, &players).await?,
        ))
    }

    /// Staff: replaces the players (those who stay keep their points).
    #[graphql(guard = "SignedIn")]
    async fn set_game_players(
        &self,
        ctx: &Context<'_>,
        game_id: ID,
        players: Vec<String>,
    ) -> Result<Game> {
        let me = ctx.identity()?;
        let id = ids::require(&game_id, "no such game")?;
        Ok(Game::from(
            service::set_players(ctx.state()?, me, id, &players).await?,
        ))
    }

    /// Staff: 1 to 1000 points to a player; they go into the player's score at the event.
    #[graphql(guard = "SignedIn")]
    async fn award_points(
        &self,
        ctx: &Context<'_>,
        game_id: ID,
        handle: String,
        points: i32,
    ) -> Result<Game> {
        let me = ctx.identity()?;
        let id = ids::require(&game_id, "no such game")?;
        let points = parse_points(points);
        let handle = self::handle(&handle, "handle");
        Ok(Game::from(
            service::award(ctx.state()?, me, id, handle, points).await?,
        ))
    }

    /// Staff: ends the game.
    #[graphql(guard = "SignedIn")]
    async fn finish_game(&self, ctx: &Context<'_>, game_id: ID) -> Result<Game> {
        let me = ctx.identity()?;
        Ok(Game::from(
            service::finish(ctx.state()?, me, ids::require(&game_id, "no such game")?).await?,
        ))
    }

    /// Staff: a BLUR round with a photo of one player (the answer); starts at level 10.
    #[graphql(guard = "SignedIn")]
    async fn start_blur_round(
        &self,
        ctx: &Context<'_>,
        game_id: ID,
        photo: Upload,
        answer: String,
    ) -> Result<BlurRound> {
        let me = ctx.identity()?;
        let id = ids::require(&game_id, "no such game")?;
        let answer = self::handle(&answer, "answer");
        let photo = upload::read(ctx, &photo, "photo");
        Ok(BlurRound(
            service::start_round(ctx.state()?, me, id, photo, answer).await?,
        ))
    }

    /// Staff: one step sharper.
    #[graphql(guard = "SignedIn")]
    async fn reveal_blur_round(&self, ctx: &Context<'_>, round_id: ID) -> Result<BlurRound> {
        let me = ctx.identity()?;
        Ok(BlurRound(
            service::reveal(ctx.state()?, me, ids::require(&round_id, "no such round")?).await?,
        ))
    }

    /// Players only; the first right guess wins points (level + 1) and solves the round.
    #[graphql(guard = "SignedIn")]
    async fn guess_blur_round(
        &self,
        ctx: &Context<'_>,
        round_id: ID,
        handle: String,
    ) -> Result<GuessResult> {
        let me = ctx.identity()?;
        let id = ids::require(&round_id, "no such round")?;
        let guess = service::guess(ctx.state()?, me, id, &handle).await?;
        Ok(GuessResult {
            correct: guess.correct,
            points_awarded: guess.points,
            round: BlurRound(guess.round),
        })
    }
}

/// Game subscriptions.
#[derive(Default)]
pub struct GamesSubscription;

#[Subscription]
impl GamesSubscription {
    /// The game now, then after every change (players, points, rounds, status). Public.
    async fn game_updated(
        &self,
        ctx: &Context<'_>,
        game_id: ID,
    ) -> Result<impl Stream<Item = Game>> {
        let id = ids::require(&game_id, "no such game")?;
        Ok(service::follow(ctx.state()?, id).await?.map(Game::from))
    }
}
