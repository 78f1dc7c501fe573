//! The queries that must stay fast as tables grow use their indexes, on both databases: "my
//! meetings" as owner, participant or either, the search for open slots, and the activities a
//! location update reaches. The plans are read
//! from the databases themselves (EXPLAIN QUERY PLAN on SQLite; EXPLAIN on PostgreSQL, with
//! sequential scans priced out so the plan shows what an index can serve even on a tiny table).

use chrono::{Duration, Utc};
use rally::meetings::model::Role;
use rally::meetings::service::{meetings_query, search_query};
use rally::proximity::service::watching_query;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, QuerySelect, QueryTrait, Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::common::{Backend, TestApp};
use crate::on_every_backend;

on_every_backend!(
    every_foreign_key_has_an_index_to_follow_it,
    my_meetings_and_the_slot_search_are_index_range_scans,
    a_location_update_finds_the_activities_watching_its_sender_by_index,
);

/// Every foreign key's columns lead an index of its table, so a deletion cascading (or a check
/// looking) through it reads an index range, never the whole table: read from each database's
/// catalog, so a migration that adds a reference without its index fails here.
async fn every_foreign_key_has_an_index_to_follow_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = &app.state.db;
    let unindexed: Vec<String> = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            // The catalog query of the PostgreSQL wiki's "unindexed foreign keys".
            let sql = "SELECT c.conrelid::regclass::text || ' ' || c.conname AS fk \
                 FROM pg_constraint c \
                 WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace \
                 AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid \
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey)";
            let rows = db
                .query_all(Statement::from_string(DatabaseBackend::Postgres, sql))
                .await
                .expect("catalog");
            assert!(
                !db.query_all(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT 1 FROM pg_constraint WHERE contype = 'f' \
                     AND connamespace = current_schema()::regnamespace",
                ))
                .await
                .expect("catalog")
                .is_empty(),
                "the schema has foreign keys to check"
            );
            rows.iter()
                .map(|row| row.try_get::<String>("", "fk").expect("fk"))
                .collect()
        }
        _ => sqlite_unindexed_foreign_keys(db).await,
    };
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}

/// SQLite's foreign keys (table, id, columns) whose columns do not lead any index of the table.
async fn sqlite_unindexed_foreign_keys(db: &sea_orm::DatabaseConnection) -> Vec<String> {
    let all = |sql: String| async move {
        db.query_all(Statement::from_string(DatabaseBackend::Sqlite, sql))
            .await
            .expect("pragma")
    };
    let tables = all("SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name != 'seaql_migrations'"
        .to_owned())
    .await;
    let mut checked = 0;
    let mut unindexed = Vec::new();
    for table in tables {
        let table: String = table.try_get("", "name").expect("name");
        let mut keys: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
        for row in all(format!("PRAGMA foreign_key_list(\"{table}\")")).await {
            let id: i32 = row.try_get("", "id").expect("id");
            keys.entry(id)
                .or_default()
                .push(row.try_get("", "from").expect("from"));
        }
        let mut leading = Vec::new();
        for index in all(format!("PRAGMA index_list(\"{table}\")")).await {
            let name: String = index.try_get("", "name").expect("name");
            let columns: Vec<String> = all(format!("PRAGMA index_info(\"{name}\")"))
                .await
                .iter()
                .map(|column| column.try_get("", "name").expect("column"))
                .collect();
            leading.push(columns);
        }
        for (id, mut columns) in keys {
            checked += 1;
            columns.sort();
            let served = leading.iter().any(|index| {
                let mut head: Vec<String> = index.iter().take(columns.len()).cloned().collect();
                head.sort();
                head == columns
            });
            if !served {
                unindexed.push(format!("{table} #{id} {columns:?}"));
            }
        }
    }
    assert!(checked > 0, "the schema has foreign keys to check");
    unindexed
}

/// The plan of `statement`, one line per step.
async fn plan(app: &TestApp, statement: Statement) -> String {
    let backend = app.state.db.get_database_backend();
    let txn = app.state.db.begin().await.expect("transaction");
    let (explain, column) = match backend {
        DatabaseBackend::Postgres => {
            txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await
                .expect("seqscan off");
            ("EXPLAIN", 0)
        }
        _ => ("EXPLAIN QUERY PLAN", 3),
    };
    let explained = Statement {
        sql: format!("{explain} {}", statement.sql),
        ..statement
    };
    let rows = txn.query_all(explained).await.expect("explain runs");
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(column).expect("plan text"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn uses(plan: &str, index: &str) -> bool {
    plan.lines().any(|line| line.contains(index))
}

fn scans_whole(plan: &str, table: &str) -> bool {
    plan.lines().any(|line| {
        line.contains(&format!("Seq Scan on {table}")) || line.trim() == format!("SCAN {table}")
    })
}

async fn my_meetings_and_the_slot_search_are_index_range_scans(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let backend = app.state.db.get_database_backend();
    let me = Uuid::now_v7();
    for (role, indexes) in [
        (Role::Owner, vec!["meetings_owner_idx"]),
        (Role::Participant, vec!["meetings_participant_idx"]),
        (
            Role::Any,
            vec!["meetings_owner_idx", "meetings_participant_idx"],
        ),
    ] {
        let query = meetings_query(me, role, None).limit(21).build(backend);
        let plan = plan(&app, query).await;
        for index in indexes {
            assert!(uses(&plan, index), "{role:?} uses {index}:\n{plan}");
        }
        assert!(
            !scans_whole(&plan, "meetings"),
            "{role:?} scans no table:\n{plan}"
        );
    }
    let now = Utc::now();
    let search = search_query(now, now + Duration::days(7), None, None)
        .limit(21)
        .build(backend);
    let plan = plan(&app, search).await;
    assert!(uses(&plan, "availabilities_search_idx"), "{plan}");
    assert!(!scans_whole(&plan, "availabilities"), "{plan}");
}

/// A location update reaches the activities that watch its sender through the watched-person index
/// of `monitor_links` and the owner index of `activities`, never a scan of either table.
async fn a_location_update_finds_the_activities_watching_its_sender_by_index(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let backend = app.state.db.get_database_backend();
    let plan = plan(&app, watching_query(Uuid::now_v7()).build(backend)).await;
    assert!(uses(&plan, "monitor_links_watched_idx"), "{plan}");
    assert!(
        uses(&plan, "activities_owner_idx") || uses(&plan, "activities_one_active_key"),
        "{plan}"
    );
    assert!(!scans_whole(&plan, "activities"), "{plan}");
    assert!(!scans_whole(&plan, "monitor_links"), "{plan}");
}
