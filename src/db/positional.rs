//! Rows decoded by column position, for the models the loaders and pages read most.
//!
//! SeaORM's derived decoding formats each column's name, hashes it to find the column in the row,
//! and for each NULL column builds an error string (the name through `Debug`) before it becomes
//! `None`: a sixth of an `events(first: 20)` read, in callgrind. A [`ByPosition`] model takes its
//! columns by index instead, in the order `Entity::find()` selects them (the entity's column
//! order, which a test holds each list below to); a NULL column still costs SeaORM's error string,
//! of its index this time, before it becomes `None`. A [`PositionalPair`] takes two models side by
//! side from a joined select (`select_also`), the second's columns after the first's. Debug builds
//! also check every decoded row's column names, so a select with another column list fails every
//! test that runs it.

use sea_orm::{DbErr, FromQueryResult, QueryResult};

use crate::entity::{
    availability, drink_order, event, event_staff, event_template, game, meeting, user,
};

/// A model decoded by column position from a select of its entity's own full column list.
pub trait ByPosition: Sized {
    /// The column names in decoding order.
    const COLUMNS: &'static [&'static str];

    /// Decodes one row's columns from index `first` on.
    fn from_row(row: &QueryResult, first: usize) -> Result<Self, DbErr>;
}

/// A [`ByPosition`] model as SeaORM's result type (`into_model`, `find_by_statement`): only for
/// selects of the entity's own full column list, never joins.
pub struct Positional<M>(pub M);

impl<M: ByPosition> FromQueryResult for Positional<M> {
    fn from_query_result(row: &QueryResult, prefix: &str) -> Result<Self, DbErr> {
        debug_assert!(prefix.is_empty(), "positional decoding of a joined select");
        debug_assert_eq!(row.column_names(), M::COLUMNS, "a select of other columns");
        M::from_row(row, 0).map(Positional)
    }
}

/// Two [`ByPosition`] models as SeaORM's result type of a select that chose them both with
/// `select_also`: the first's columns (aliased `A_…`), then the second's (`B_…`).
pub struct PositionalPair<A, B>(pub A, pub B);

impl<A: ByPosition, B: ByPosition> FromQueryResult for PositionalPair<A, B> {
    fn from_query_result(row: &QueryResult, prefix: &str) -> Result<Self, DbErr> {
        debug_assert!(prefix.is_empty(), "positional decoding of a nested select");
        debug_assert_eq!(
            row.column_names(),
            (A::COLUMNS.iter().map(|column| format!("A_{column}")))
                .chain(B::COLUMNS.iter().map(|column| format!("B_{column}")))
                .collect::<Vec<_>>(),
            "a select of other columns"
        );
        Ok(Self(
            A::from_row(row, 0)?,
            B::from_row(row, A::COLUMNS.len())?,
        ))
    }
}

/// Implements [`ByPosition`] for a model whose fields are listed in column order.
macro_rules! by_position {
    ($($model:path { $($field:ident),+ $(,)? })+) => {
        $(
            impl ByPosition for $model {
                const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

                fn from_row(row: &QueryResult, first: usize) -> Result<Self, DbErr> {
                    let mut column = 0;
                    $(
                        let $field = row.try_get_by_index(first + column).map_err(|err| {
                            DbErr::Type(format!("{}: {err}", Self::COLUMNS[column]))
                        })?;
                        column += 1;
                    )+
                    let _ = column;
                    Ok(Self { $($field),+ })
                }
            }
        )+
    };
}

by_position! {
    availability::Model {
        id, owner_id, start_time, end_time, title, description, status, version, created_at,
        updated_at,
    }
    drink_order::Model {
        id, session_id, name, volume_ml, abv, price_cents, calories, alcohol_grams, ordered_at,
    }
    event::Model {
        id, title, description, venue, starts_at, ends_at, status, image_key, organizer_id,
        template_id, like_count, version, created_at, updated_at,
    }
    event_staff::Model { event_id, user_id, role, created_at }
    event_template::Model {
        id, name, description, default_duration_minutes, capacity, created_at, updated_at,
    }
    game::Model { id, event_id, kind, title, status, version, created_at }
    meeting::Model {
        id, availability_id, owner_id, participant_id, start_time, end_time, status, sequence,
        created_at, updated_at, cancelled_at, cancelled_by, cancellation_reason, title,
        description,
    }
    user::Model {
        id, handle, email, password_hash, display_name, bio, avatar_key, role, body_weight_kg,
        body_type, created_at, updated_at,
    }
}

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
        assert_eq!(
            event_template::Model::COLUMNS,
            columns::<event_template::Entity>()
        );
        assert_eq!(game::Model::COLUMNS, columns::<game::Entity>());
        assert_eq!(meeting::Model::COLUMNS, columns::<meeting::Entity>());
        assert_eq!(user::Model::COLUMNS, columns::<user::Entity>());
    }
}
