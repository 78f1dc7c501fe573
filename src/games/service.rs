//! Game rules with storage: the only code touching `games`, `game_players` and `blur_rounds`, and
//! the publisher of `game:{id}`.

use std::collections::HashSet;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use sea_orm::prelude::Expr;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::model::{CHANGES, GameState, START_LEVEL, guess_points};
use crate::accounts::model::Handle;
use crate::auth::Identity;
use crate::db::{self, WriteTxn};
use crate::entity::event_staff::StaffRole;
use crate::entity::game::{self, Kind, Status};
use crate::entity::{blur_guess, blur_round, game_player, user};
use crate::error::{Error, Result, UniqueKey};
use crate::live::{self, Change, Missing};
use crate::media::{Renditions, prepare_picture};
use crate::state::AppState;
use crate::{accounts, cups, events};

/// `blur_guesses_pkey` (see the blur-guesses migration): one guess per player per level.
const ONE_GUESS_KEY: UniqueKey = UniqueKey {
    name: "blur_guesses_pkey",
    table: "blur_guesses",
    columns: &["round_id", "user_id", "level"],
};

/// Longest side of a blur photo, in pixels.
pub const PHOTO_SIDE: u32 = 640;

/// Announces a game changed inside `txn` (sent once it commits).
fn announce(txn: &mut WriteTxn, game: &game::Model) {
    txn.publish(&CHANGES.of(game.id), &GameState::from(game.clone()));
}

/// Announces a game changed by a single statement.
fn announce_now(state: &AppState, game: &game::Model) {
    state
        .live
        .publish(&CHANGES.of(game.id), &GameState::from(game.clone()));
}

/// Refuses anyone but the event's game master or organizer.
const NOT_MASTER: &str = "only the event's game master or organizer runs games";

/// The game with this id, if any.
pub async fn find(state: &AppState, id: Uuid) -> Result<Option<game::Model>> {
    Ok(game::Entity::find_by_id(id).one(&state.db).await?)
}

async fn require(db: &impl ConnectionTrait, id: Uuid) -> Result<game::Model> {
    game::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound("no such game"))
}

/// The game, after checking `actor` is its event's game master or organizer.
async fn as_master(state: &AppState, actor: Identity, id: Uuid) -> Result<game::Model> {
    let game = require(&state.db, id).await?;
    events::service::require_crew(
        state,
        actor,
        game.event_id,
        &[StaffRole::GameMaster],
        NOT_MASTER,
    )
    .await?;
    Ok(game)
}

fn not_finished(game: &game::Model) -> Result<()> {
    if game.status == Status::Finished {
        Err(Error::state_conflict("this game is finished"))
    } else {
        Ok(())
    }
}

/// Resolves player handles: each must name a guest with a cup session at the event.
async fn resolve_players(
    state: &AppState,
    event: Uuid,
    handles: &[String],
) -> Result<Vec<user::Model>> {
    if handles.len() > 200 {
        return Err(Error::bad_input("players", "at most 200 players"));
    }
    let mut seen = HashSet::new();
    let mut players = Vec::new();
    for raw in handles {
        let handle = Handle::parse(raw, "players")
            .map_err(|_| Error::bad_input("players", format!("{raw} is not a handle")))?;
        if !seen.insert(handle.as_str().to_owned()) {
            continue;
        }
        let player = accounts::service::find_by_handle(state, &handle)
            .await?
            .ok_or_else(|| Error::bad_input("players", format!("no user {}", handle.as_str())))?;
        if cups::service::latest_session_of(&state.db, event, player.id)
            .await?
            .is_none()
        {
            return Err(Error::bad_input(
                "players",
                format!("{} has no cup at this event", handle.as_str()),
            ));
        }
        players.push(player);
    }
    Ok(players)
}

/// The game's row, locked until `txn` ends. Every transaction that changes a game's players,
/// rounds, guesses or points takes it first, after its event's hold (`create` writes a game no one
/// else sees yet, and `finish` is one conditional update of the row itself): they take turns in one
/// order (never one waiting on a player's row another holds while that one waits on the game), and
/// whether someone is a player, read after it, still holds at commit.
async fn lock(txn: &WriteTxn, id: Uuid) -> Result<()> {
    txn.locking(game::Entity::find_by_id(id))
        .one(&**txn)
        .await?
        .map(drop)
        .ok_or(Error::NotFound("no such game"))
}

/// Whether `user` plays `game`.
async fn is_player(db: &impl ConnectionTrait, game: Uuid, user: Uuid) -> Result<bool> {
    Ok(game_player::Entity::find_by_id((game, user))
        .one(db)
        .await?
        .is_some())
}

async fn add_players(db: &impl ConnectionTrait, game: Uuid, players: &[user::Model]) -> Result<()> {
    if players.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    game_player::Entity::insert_many(players.iter().map(|p| game_player::ActiveModel {
        game_id: Set(game),
        user_id: Set(p.id),
        points: Set(0),
        added_at: Set(now),
    }))
    .on_conflict(
        OnConflict::columns([game_player::Column::GameId, game_player::Column::UserId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Counts a change of a game that is not finished (and starts a pending one when `running`), in the
/// transaction that made the change: a game finished meanwhile makes it CONFLICT, so the change
/// rolls back ("later points get CONFLICT" holds however the two interleave; `finish` is one
/// conditional update of the same row).
async fn bump(db: &impl ConnectionTrait, id: Uuid, running: bool) -> Result<game::Model> {
    let mut update = game::Entity::update_many()
        .col_expr(
            game::Column::Version,
            Expr::col(game::Column::Version).add(1),
        )
        .filter(game::Column::Id.eq(id))
        .filter(game::Column::Status.ne(Status::Finished));
    if running {
        update = update.col_expr(
            game::Column::Status,
            Expr::case(
                Expr::col(game::Column::Status).eq(Status::Pending),
                Expr::value(Status::Running),
            )
            .finally(Expr::col(game::Column::Status))
            .into(),
        );
    }
    if update.exec(db).await?.rows_affected == 0 {
        require(db, id).await?;
        return Err(Error::state_conflict("this game is finished"));
    }
    require(db, id).await
}

/// Game master or organizer: creates a game with its players (guests with a cup at the event).
/// `title` as parsed: its error reaches the crew only.
#[tracing::instrument(skip(state))]
pub async fn create(
    state: &AppState,
    actor: Identity,
    event_id: Uuid,
    kind: Kind,
    title: Result<String>,
    handles: &[String],
) -> Result<game::Model> {
    events::service::require_crew(state, actor, event_id, &[StaffRole::GameMaster], NOT_MASTER)
        .await?;
    let title = title?;
    let players = resolve_players(state, event_id, handles).await?;
    let mut txn = state.begin_write().await?;
    let game = game::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_id: Set(event_id),
        kind: Set(kind),
        title: Set(title),
        status: Set(Status::Pending),
        version: Set(1),
        created_at: Set(Utc::now()),
    }
    .insert(&*txn)
    .await?;
    add_players(&*txn, game.id, &players).await?;
    announce(&mut txn, &game);
    txn.commit().await?;
    Ok(game)
}

/// Replaces the players; those who stay keep their points.
#[tracing::instrument(skip(state))]
pub async fn set_players(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    handles: &[String],
) -> Result<game::Model> {
    let game = as_master(state, actor, id).await?;
    not_finished(&game)?;
    let players = resolve_players(state, game.event_id, handles).await?;
    let keep: Vec<Uuid> = players.iter().map(|p| p.id).collect();
    let mut txn = state.begin_write().await?;
    events::service::hold(&txn, game.event_id).await?;
    lock(&txn, id).await?;
    game_player::Entity::delete_many()
        .filter(game_player::Column::GameId.eq(id))
        .filter(game_player::Column::UserId.is_not_in(keep))
        .exec(&*txn)
        .await?;
    add_players(&*txn, id, &players).await?;
    let game = bump(&*txn, id, false).await?;
    announce(&mut txn, &game);
    txn.commit().await?;
    Ok(game)
}

/// Adds `points` to a player's game points and (through cups) to their cup session score, in
/// `txn`.
async fn credit(txn: &mut WriteTxn, game: &game::Model, player: Uuid, points: i32) -> Result<()> {
    let updated = game_player::Entity::update_many()
        .col_expr(
            game_player::Column::Points,
            Expr::col(game_player::Column::Points).add(points),
        )
        .filter(game_player::Column::GameId.eq(game.id))
        .filter(game_player::Column::UserId.eq(player))
        .exec(&**txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(Error::bad_input("handle", "not a player of this game"));
    }
    cups::service::add_game_points(txn, game.event_id, player, points).await
}

/// Game master or organizer: awards points to a player (they go into the player's score).
/// `handle` and `points` as parsed: their errors reach the crew only.
#[tracing::instrument(skip(state))]
pub async fn award(
    state: &AppState,
    actor: Identity,
    id: Uuid,
    handle: Result<Handle>,
    points: Result<i32>,
) -> Result<game::Model> {
    let game = as_master(state, actor, id).await?;
    let (handle, points) = (handle?, points?);
    not_finished(&game)?;
    let player = accounts::service::find_by_handle(state, &handle)
        .await?
        .ok_or_else(|| Error::bad_input("handle", "not a player of this game"))?;
    let mut txn = state.begin_write().await?;
    events::service::hold(&txn, game.event_id).await?;
    lock(&txn, id).await?;
    credit(&mut txn, &game, player.id, points).await?;
    let game = bump(&*txn, id, true).await?;
    announce(&mut txn, &game);
    txn.commit().await?;
    Ok(game)
}

/// Game master or organizer: ends the game; later points get CONFLICT.
#[tracing::instrument(skip(state))]
pub async fn finish(state: &AppState, actor: Identity, id: Uuid) -> Result<game::Model> {
    as_master(state, actor, id).await?;
    let updated = game::Entity::update_many()
        .col_expr(game::Column::Status, Expr::value(Status::Finished))
        .col_expr(
            game::Column::Version,
            Expr::col(game::Column::Version).add(1),
        )
        .filter(game::Column::Id.eq(id))
        .filter(game::Column::Status.ne(Status::Finished))
        .exec(&*state.one_write().await)
        .await?;
    if updated.rows_affected == 0 {
        return Err(Error::state_conflict("this game is finished"));
    }
    let game = require(&state.db, id).await?;
    announce_now(state, &game);
    Ok(game)
}

/// The game's state: now, then after every committed change; completes when its event is deleted
/// (the game goes with it). NOT_FOUND when there is no such game.
pub async fn follow(
    state: &AppState,
    id: Uuid,
) -> Result<impl Stream<Item = GameState> + Send + 'static> {
    let feed = state.live.subscribe(&CHANGES.of(id));
    let event = require(&state.db, id).await?.event_id;
    // Listening before the first load, which finds no game if the event went just before.
    let deleted = events::service::deleted(state, event);
    let state = state.clone();
    let states = live::follow(
        feed,
        Missing::NotFound("no such game"),
        move || {
            let state = state.clone();
            async move { Ok(find(&state, id).await?.map(GameState::from)) }
        },
        |game: &GameState| Change::State(game.clone()),
    )
    .await?;
    Ok(states.take_until(deleted))
}

/// The games of these events, oldest first.
pub async fn for_events(state: &AppState, events: &[Uuid]) -> Result<Vec<game::Model>> {
    Ok(
        db::find_by_keys(&state.db, "games by event", events, |events| {
            game::Entity::find()
                .filter(game::Column::EventId.is_in(events.iter().copied()))
                .order_by_asc(game::Column::CreatedAt)
        })
        .await?,
    )
}

/// The players of these games, in joining order.
pub async fn players_of(state: &AppState, games: &[Uuid]) -> Result<Vec<game_player::Model>> {
    Ok(game_player::Entity::find()
        .filter(game_player::Column::GameId.is_in(games.iter().copied()))
        .order_by_asc(game_player::Column::AddedAt)
        .order_by_asc(game_player::Column::UserId)
        .all(&state.db)
        .await?)
}

/// The rounds of these games, newest first.
pub async fn rounds_of(state: &AppState, games: &[Uuid]) -> Result<Vec<blur_round::Model>> {
    Ok(blur_round::Entity::find()
        .filter(blur_round::Column::GameId.is_in(games.iter().copied()))
        .order_by_desc(blur_round::Column::CreatedAt)
        .order_by_desc(blur_round::Column::Id)
        .all(&state.db)
        .await?)
}

/// The round with this id, if any.
pub async fn round(state: &AppState, id: Uuid) -> Result<Option<blur_round::Model>> {
    Ok(blur_round::Entity::find_by_id(id).one(&state.db).await?)
}

async fn require_round(db: &impl ConnectionTrait, id: Uuid) -> Result<blur_round::Model> {
    blur_round::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound("no such round"))
}

/// Game master or organizer: starts a blur round with a photo of one player (the answer). `photo`
/// and `answer` as read and parsed: their errors reach the crew only.
#[tracing::instrument(skip(state, photo))]
pub async fn start_round(
    state: &AppState,
    actor: Identity,
    game_id: Uuid,
    photo: Result<Vec<u8>>,
    answer: Result<Handle>,
) -> Result<blur_round::Model> {
    let game = as_master(state, actor, game_id).await?;
    let (answer, photo) = (answer?, photo?);
    if game.kind != Kind::Blur {
        return Err(Error::bad_input("gameId", "rounds are for BLUR games"));
    }
    not_finished(&game)?;
    let answer = accounts::service::find_by_handle(state, &answer)
        .await?
        .ok_or_else(|| Error::bad_input("answer", "the answer must be a player of this game"))?;
    let not_a_player = || Error::bad_input("answer", "the answer must be a player of this game");
    // Checked before the photo is stored, and again in the round's turn (a player removed meanwhile).
    if !is_player(&state.db, game_id, answer.id).await? {
        return Err(not_a_player());
    }
    state.uploads.check(actor.user_id).await?;
    let picture = prepare_picture(photo, state.image_limits(), PHOTO_SIDE, "photo").await?;
    let photo_key = state.media.put_private(picture).await?;
    let stored = async {
        let mut txn = state.begin_write().await?;
        events::service::hold(&txn, game.event_id).await?;
        lock(&txn, game_id).await?;
        if !is_player(&*txn, game_id, answer.id).await? {
            return Err(not_a_player());
        }
        let round = blur_round::ActiveModel {
            id: Set(Uuid::now_v7()),
            game_id: Set(game_id),
            photo_key: Set(photo_key.clone()),
            answer_id: Set(answer.id),
            level: Set(START_LEVEL),
            solved_by: Set(None),
            solved_at: Set(None),
            points_awarded: Set(0),
            created_at: Set(Utc::now()),
        }
        .insert(&*txn)
        .await?;
        let game = bump(&*txn, game_id, true).await?;
        announce(&mut txn, &game);
        txn.commit().await?;
        Ok(round)
    }
    .await;
    if stored.is_err() {
        // A photo of a person no round refers to (the game finished meanwhile, say): not kept.
        state.media.delete(&photo_key).await;
    }
    stored
}

/// Game master or organizer: one step sharper. A solved or already sharp round is CONFLICT.
#[tracing::instrument(skip(state))]
pub async fn reveal(
    state: &AppState,
    actor: Identity,
    round_id: Uuid,
) -> Result<blur_round::Model> {
    let round = require_round(&state.db, round_id).await?;
    let game = as_master(state, actor, round.game_id).await?;
    let mut txn = state.begin_write().await?;
    events::service::hold(&txn, game.event_id).await?;
    lock(&txn, round.game_id).await?;
    let updated = blur_round::Entity::update_many()
        .col_expr(
            blur_round::Column::Level,
            Expr::col(blur_round::Column::Level).sub(1),
        )
        .filter(blur_round::Column::Id.eq(round_id))
        .filter(blur_round::Column::Level.gt(0))
        .filter(blur_round::Column::SolvedBy.is_null())
        .exec(&*txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(Error::state_conflict(
            "this round is solved or already sharp",
        ));
    }
    let game = bump(&*txn, round.game_id, false).await?;
    let revealed = require_round(&*txn, round_id).await?;
    announce(&mut txn, &game);
    txn.commit().await?;
    Ok(revealed)
}

/// What a guess did.
pub struct Guess {
    /// Whether it named the person in the photo.
    pub correct: bool,
    /// Points won (only by the first right guess).
    pub points: i32,
    /// The round after the guess.
    pub round: blur_round::Model,
}

/// A player guesses who is in the photo. The first right guess solves the round and wins
/// [`guess_points`]; exactly one wins under any concurrency (a conditional update), and a right
/// guess after that is CONFLICT. Wrong guesses score nothing; the person in the photo may guess,
/// and is always wrong. A guess is recorded and judged at the
/// level the round has inside its write transaction, which holds the round's row: a reveal in
/// progress ends first (or waits), so a guess never counts for a level that has passed.
#[tracing::instrument(skip(state))]
pub async fn guess(
    state: &AppState,
    actor: Identity,
    round_id: Uuid,
    handle: &str,
) -> Result<Guess> {
    let round = require_round(&state.db, round_id).await?;
    let game = require(&state.db, round.game_id).await?;
    let not_a_player = || Error::Forbidden("you cannot guess in this round");
    // Checked before the write's turn, and again in it (a player removed meanwhile).
    if !is_player(&state.db, game.id, actor.user_id).await? {
        return Err(not_a_player());
    }
    not_finished(&game)?;
    if round.solved_by.is_some() {
        return Err(Error::state_conflict("this round is already solved"));
    }
    let guessed = match Handle::parse(handle, "handle") {
        Ok(handle) => accounts::service::find_by_handle(state, &handle).await?,
        Err(_) => None,
    };
    // The person in the photo guesses as anyone else, and is always wrong (even naming
    // themselves): a refusal, or a win, would tell them who is pictured.
    let correct =
        actor.user_id != round.answer_id && guessed.is_some_and(|u| u.id == round.answer_id);
    let mut txn = state.begin_write().await?;
    events::service::hold(&txn, game.event_id).await?;
    lock(&txn, game.id).await?;
    if !is_player(&*txn, game.id, actor.user_id).await? {
        return Err(not_a_player());
    }
    let round = txn
        .locking(blur_round::Entity::find_by_id(round_id))
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound("no such round"))?;
    if round.solved_by.is_some() {
        return Err(Error::state_conflict("this round is already solved"));
    }
    // One guess per player per level: trying every handle in turn would always win.
    blur_guess::ActiveModel {
        round_id: Set(round_id),
        user_id: Set(actor.user_id),
        level: Set(round.level),
        guessed_at: Set(Utc::now()),
    }
    .insert(&*txn)
    .await
    .map_err(|err| {
        Error::on_constraint(
            err,
            &[(ONE_GUESS_KEY, || {
                Error::state_conflict("you guessed at this level already; wait for the next reveal")
            })],
        )
    })?;
    if !correct {
        txn.commit().await?;
        return Ok(Guess {
            correct: false,
            points: 0,
            round,
        });
    }
    let won = blur_round::Entity::update_many()
        .col_expr(blur_round::Column::SolvedBy, Expr::value(actor.user_id))
        .col_expr(blur_round::Column::SolvedAt, Expr::value(Utc::now()))
        .col_expr(
            blur_round::Column::PointsAwarded,
            Expr::col(blur_round::Column::Level).add(1),
        )
        .filter(blur_round::Column::Id.eq(round_id))
        .filter(blur_round::Column::SolvedBy.is_null())
        .exec(&*txn)
        .await?;
    if won.rows_affected == 0 {
        return Err(Error::state_conflict("this round is already solved"));
    }
    let solved = require_round(&*txn, round_id).await?;
    let points = guess_points(solved.level);
    credit(&mut txn, &game, actor.user_id, points).await?;
    let game = bump(&*txn, game.id, false).await?;
    announce(&mut txn, &game);
    txn.commit().await?;
    Ok(Guess {
        correct: true,
        points,
        round: solved,
    })
}

/// The photo of a round blurred for `level`, rendered once per level and cached in the media store.
/// Only the current level or blurrier is served until the round is solved (no peeking ahead).
pub async fn blurred_photo(state: &AppState, round_id: Uuid, level: i32) -> Result<Option<Bytes>> {
    let Some(round) = round(state, round_id).await? else {
        return Ok(None);
    };
    if !(0..=START_LEVEL).contains(&level) || (level < round.level && round.solved_by.is_none()) {
        return Ok(None);
    }
    state
        .media
        .blurred(&round.photo_key, &round_id.to_string(), level, PHOTO_SIDE)
        .await
}

/// The blur game's answer to the media routes: which rendering of which round may be seen.
pub struct BlurRenditions(pub AppState);

impl Renditions for BlurRenditions {
    fn blurred(
        &self,
        round: Uuid,
        level: i32,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>>> + Send + '_>> {
        Box::pin(blurred_photo(&self.0, round, level))
    }
}

/// Deletes the private photos no blur round refers to any more (their event or game was deleted,
/// which the database cascades to the rounds but not to the store), with their cached renderings,
/// among those written before `before` (a round's photo is written just before its transaction, so
/// a recent one may still be about to be referred to). Returns how many objects went.
pub async fn sweep_photos(state: &AppState, before: chrono::DateTime<Utc>) -> Result<u64> {
    let keys = state.media.keys_written_before("private/", before).await?;
    if keys.is_empty() {
        return Ok(0);
    }
    let rounds: Vec<(Uuid, String)> = blur_round::Entity::find()
        .select_only()
        .column(blur_round::Column::Id)
        .column(blur_round::Column::PhotoKey)
        .into_tuple()
        .all(&state.db)
        .await?;
    let photos: HashSet<&str> = rounds.iter().map(|(_, key)| key.as_str()).collect();
    let ids: HashSet<String> = rounds.iter().map(|(id, _)| id.to_string()).collect();
    let mut swept = 0;
    for key in keys {
        // Renderings are cached under `private/blur/{round}/`.
        let kept = match key.strip_prefix("private/blur/") {
            Some(rendering) => rendering
                .split('/')
                .next()
                .is_some_and(|round| ids.contains(round)),
            None => photos.contains(key.as_str()),
        };
        if !kept {
            state.media.delete(&key).await;
            swept += 1;
        }
    }
    if swept > 0 {
        tracing::info!(swept, "photos of deleted rounds swept");
    }
    Ok(swept)
}
