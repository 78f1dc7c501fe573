//! Events: the catalogue of templates, events, likes and staff.
//!
//! - `events.like_count` is a counter kept by atomic updates in the same transaction as the
//!   `event_likes` row, so `likeCount` is a column read, never a COUNT over likes.
//! - `events.version` grows by one with every committed change; live subscribers use it to drop a
//!   change older than one they already showed (deliveries may arrive out of order across instances).
//! - `(starts_at, id)` is the listing order and its index serves keyset pagination.
//! - Likes and staff are keyed by (event, user): liking twice is a no-op by construction.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000002_events"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventTemplates::Table)
                    .col(
                        ColumnDef::new(EventTemplates::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EventTemplates::Name)
                            .string_len(120)
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventTemplates::Description).text().null())
                    .col(
                        ColumnDef::new(EventTemplates::DefaultDurationMinutes)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventTemplates::Capacity).integer().null())
                    .col(
                        ColumnDef::new(EventTemplates::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EventTemplates::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(ColumnDef::new(Events::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Events::Title).string_len(200).not_null())
                    .col(ColumnDef::new(Events::Description).text().null())
                    .col(ColumnDef::new(Events::Venue).string_len(200).null())
                    .col(
                        ColumnDef::new(Events::StartsAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Events::EndsAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Events::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Events::ImageKey).string().null())
                    .col(ColumnDef::new(Events::OrganizerId).uuid().not_null())
                    .col(ColumnDef::new(Events::TemplateId).uuid().null())
                    .col(
                        ColumnDef::new(Events::LikeCount)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Events::Version)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(Events::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Events::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("events_organizer_fk")
                            .from(Events::Table, Events::OrganizerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("events_template_fk")
                            .from(Events::Table, Events::TemplateId)
                            .to(EventTemplates::Table, EventTemplates::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("events_starts_at_idx", vec![Events::StartsAt, Events::Id]),
            ("events_organizer_idx", vec![Events::OrganizerId]),
            ("events_status_idx", vec![Events::Status, Events::StartsAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Events::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(EventLikes::Table)
                    .col(ColumnDef::new(EventLikes::EventId).uuid().not_null())
                    .col(ColumnDef::new(EventLikes::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(EventLikes::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EventLikes::EventId)
                            .col(EventLikes::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("event_likes_event_fk")
                            .from(EventLikes::Table, EventLikes::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("event_likes_user_fk")
                            .from(EventLikes::Table, EventLikes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventStaff::Table)
                    .col(ColumnDef::new(EventStaff::EventId).uuid().not_null())
                    .col(ColumnDef::new(EventStaff::UserId).uuid().not_null())
                    .col(ColumnDef::new(EventStaff::Role).string_len(16).not_null())
                    .col(
                        ColumnDef::new(EventStaff::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EventStaff::EventId)
                            .col(EventStaff::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("event_staff_event_fk")
                            .from(EventStaff::Table, EventStaff::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("event_staff_user_fk")
                            .from(EventStaff::Table, EventStaff::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventStaff::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EventLikes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Events::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EventTemplates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum EventTemplates {
    Table,
    Id,
    Name,
    Description,
    DefaultDurationMinutes,
    Capacity,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Events {
    Table,
    Id,
    Title,
    Description,
    Venue,
    StartsAt,
    EndsAt,
    Status,
    ImageKey,
    OrganizerId,
    TemplateId,
    LikeCount,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EventLikes {
    Table,
    EventId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EventStaff {
    Table,
    EventId,
    UserId,
    Role,
    CreatedAt,
}
