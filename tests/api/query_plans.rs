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
    my_meetings_and_the_slot_search_are_index_range_scans,
    a_location_update_finds_the_activities_watching_its_sender_by_index,
);

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
