//! The games part of the schema: score and blur games, their rounds, and `gameUpdated`.

use async_graphql::{Context, Enum, ID, Object, SimpleObject, Subscription, Upload};
use futures_util::Stream;

use super::model::{parse_points, parse_title};
use super::service;
use crate::accounts::graphql::User;
use crate::accounts::model::Handle;
use crate::auth::SignedIn;
use crate::entity::{blur_round, game, game_player};
use crate::error::Error;
use crate::events::graphql::Event;
use crate::graphql::loaders::{
    EventLoader, PlayersLoader, RoundsLoader, UserLoader, loader, loader_error,
};
use crate::graphql::{ContextExt, ids};
use crate::live::{Signal, Topic};

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
pub struct Game(pub game::Model);

async fn user(ctx: &Context<'_>, id: uuid::Uuid) -> async_graphql::Result<User> {
    loader::<UserLoader>(ctx)?
        .load_one(id)
        .await
        .map_err(loader_error)?
        .map(User::from)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("missing user")).into())
}

#[Object]
impl Game {
    /// Stable id (UUID).
    async fn id(&self) -> ID {
        ids::to_id(self.0.id)
    }

    /// The event.
    async fn event(&self, ctx: &Context<'_>) -> async_graphql::Result<Event> {
        loader::<EventLoader>(ctx)?
            .load_one(self.0.event_id)
            .await
            .map_err(loader_error)?
            .map(Event::from)
            .ok_or_else(|| Error::NotFound("no such event").into())
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
    async fn players(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<GamePlayer>> {
        Ok(loader::<PlayersLoader>(ctx)?
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
            .unwrap_or_default()
            .into_iter()
            .map(GamePlayer)
            .collect())
    }

    /// BLUR games only: the rounds, newest first.
    async fn rounds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<BlurRound>> {
        Ok(loader::<RoundsLoader>(ctx)?
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?
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
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
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
    async fn game(&self, ctx: &Context<'_>) -> async_graphql::Result<Game> {
        service::find(ctx.state()?, self.0.game_id)
            .await?
            .map(Game)
            .ok_or_else(|| Error::NotFound("no such game").into())
    }

    /// Current blur level, 10 = unrecognisable, 0 = sharp.
    async fn level(&self) -> i32 {
        self.0.level
    }

    /// URL of the photo rendered at the current level (server-side blur; sharp once solved).
    async fn image_url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let level = if self.0.solved_by.is_some() {
            0
        } else {
            self.0.level
        };
        Ok(service::photo_url(ctx.state()?, self.0.id, level))
    }

    /// Who guessed right first.
    async fn solved_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        match self.0.solved_by {
            Some(id) => Ok(Some(user(ctx, id).await?)),
            None => Ok(None),
        }
    }

    /// The person in the photo; set once solved.
    async fn answer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
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

fn handle(raw: &str, field: &str) -> crate::error::Result<Handle> {
    Handle::parse(raw, field).map_err(|_| Error::bad_input(field, "not a player of this game"))
}

/// Game queries.
#[derive(Default)]
pub struct GamesQuery;

#[Object]
impl GamesQuery {
    /// A game by id; null when there is none. Public.
    async fn game(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Game>> {
        let Some(id) = ids::parse(&id) else {
            return Ok(None);
        };
        Ok(service::find(ctx.state()?, id).await?.map(Game))
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
    ) -> async_graphql::Result<Game> {
        let me = ctx.identity()?;
        let event = ids::require(&event_id, "no such event")?;
        let title = parse_title(&title)?;
        Ok(Game(
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
    ) -> async_graphql::Result<Game> {
        let me = ctx.identity()?;
        let id = ids::require(&game_id, "no such game")?;
        Ok(Game(
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
    ) -> async_graphql::Result<Game> {
        let me = ctx.identity()?;
        let id = ids::require(&game_id, "no such game")?;
        let points = parse_points(points)?;
        let handle = self::handle(&handle, "handle")?;
        Ok(Game(
            service::award(ctx.state()?, me, id, &handle, points).await?,
        ))
    }

    /// Staff: ends the game.
    #[graphql(guard = "SignedIn")]
    async fn finish_game(&self, ctx: &Context<'_>, game_id: ID) -> async_graphql::Result<Game> {
        let me = ctx.identity()?;
        Ok(Game(
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
    ) -> async_graphql::Result<BlurRound> {
        let me = ctx.identity()?;
        let id = ids::require(&game_id, "no such game")?;
        let answer = self::handle(&answer, "answer")?;
        let photo = photo
            .value(ctx)
            .map_err(|_| Error::bad_input("photo", "the upload is missing"))?;
        Ok(BlurRound(
            service::start_round(ctx.state()?, me, id, photo.content.to_vec(), &answer).await?,
        ))
    }

    /// Staff: one step sharper.
    #[graphql(guard = "SignedIn")]
    async fn reveal_blur_round(
        &self,
        ctx: &Context<'_>,
        round_id: ID,
    ) -> async_graphql::Result<BlurRound> {
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
    ) -> async_graphql::Result<GuessResult> {
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
    ) -> async_graphql::Result<impl Stream<Item = Game>> {
        let state = ctx.state()?.clone();
        let id = ids::require(&game_id, "no such game")?;
        let mut feed = state.live.subscribe(&Topic::game(id));
        let snapshot = service::find(&state, id)
            .await?
            .ok_or(Error::NotFound("no such game"))?;
        Ok(async_stream::stream! {
            let mut version = snapshot.version;
            yield Game(snapshot);
            while let Some(signal) = feed.next().await {
                let game = match signal {
                    Signal::Message(delivery) => match delivery.decode::<game::Model>() {
                        Some(game) => (*game).clone(),
                        None => continue,
                    },
                    Signal::Resync => match service::find(&state, id).await {
                        Ok(Some(game)) => game,
                        _ => break,
                    },
                };
                if game.version <= version {
                    continue;
                }
                version = game.version;
                yield Game(game);
            }
        })
    }
}
