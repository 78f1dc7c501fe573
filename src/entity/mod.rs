//! SeaORM entities, one file per table. Generated-style code only: no behaviour lives here; domain
//! services own every read and write, and GraphQL types convert from these models in each domain.
//!
//! The models read most often (by the loaders and the event list) also decode by column position
//! ([`ByPosition`]): SeaORM's derived decoding formats each column's name, looks it up in a hash map
//! and builds an error string for each NULL, which was a sixth of an `events(first: 20)` read.

pub mod activity;
pub mod availability;
pub mod blur_guess;
pub mod blur_round;
pub mod calendar_feed;
pub mod cup_code;
pub mod cup_session;
pub mod drink_order;
pub mod event;
pub mod event_like;
pub mod event_staff;
pub mod event_template;
pub mod game;
pub mod game_player;
pub mod job_lease;
pub mod job_run;
pub mod location;
pub mod meeting;
pub mod monitor_link;
pub mod proximity_state;
pub mod refresh_token;
pub mod run;
pub mod run_track;
pub mod territory;
pub mod ticket;
pub mod user;
pub mod wallet;

/// A model decoded by column position, in the order `Entity::find()` selects its columns (the
/// entity's column order; a test holds [`COLUMNS`](ByPosition::COLUMNS) to it).
pub trait ByPosition: Sized {
    /// The column names in decoding order.
    const COLUMNS: &'static [&'static str];

    /// Decodes one row of the entity's full column list.
    fn from_row(row: &sea_orm::QueryResult) -> Result<Self, sea_orm::DbErr>;
}

/// A [`ByPosition`] model as SeaORM's query result type (`into_model`, `find_by_statement`): only
/// for selects of the entity's own full column list, never joins.
pub struct Positional<M>(pub M);

impl<M: ByPosition> sea_orm::FromQueryResult for Positional<M> {
    fn from_query_result(row: &sea_orm::QueryResult, prefix: &str) -> Result<Self, sea_orm::DbErr> {
        debug_assert!(prefix.is_empty(), "positional decoding of a joined select");
        M::from_row(row).map(Positional)
    }
}

/// Implements [`ByPosition`] for a model whose fields are listed in column order.
macro_rules! by_position {
    ($model:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::entity::ByPosition for $model {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

            fn from_row(row: &sea_orm::QueryResult) -> Result<Self, sea_orm::DbErr> {
                let mut column = 0;
                $(
                    let $field = row.try_get_by_index(column)?;
                    column += 1;
                )+
                debug_assert_eq!(column, Self::COLUMNS.len());
                Ok(Self { $($field),+ })
            }
        }
    };
}
use by_position;

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, IdenStatic, Iterable};

    use super::*;

    fn columns<E: EntityTrait>() -> Vec<String> {
        E::Column::iter()
            .map(|column| column.as_str().to_owned())
            .collect()
    }

    #[test]
    fn positional_models_list_their_columns_in_select_order() {
        assert_eq!(
            availability::Model::COLUMNS,
            columns::<availability::Entity>()
        );
        assert_eq!(
            drink_order::Model::COLUMNS,
            columns::<drink_order::Entity>()
        );
        assert_eq!(event::Model::COLUMNS, columns::<event::Entity>());
        assert_eq!(
            event_staff::Model::COLUMNS,
            columns::<event_staff::Entity>()
        );
        assert_eq!(game::Model::COLUMNS, columns::<game::Entity>());
        assert_eq!(meeting::Model::COLUMNS, columns::<meeting::Entity>());
        assert_eq!(user::Model::COLUMNS, columns::<user::Entity>());
    }
}
