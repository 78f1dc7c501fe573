//! The `rally` command: `serve` (the default), `migrate`, `schema`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use rally::config::LogFormat;
use rally::{App, Config};
use tracing_subscriber::EnvFilter;

/// mimalloc: measured in `bench/`, glibc's allocator took a tenth of the server's time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rally: a GraphQL server for live social events.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrating the database first).
    Serve,
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
}

#[derive(Subcommand, Clone, Copy)]
enum MigrateAction {
    /// Apply every pending migration (the default).
    Up,
    /// Revert the newest migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Schema => {
            print!("{}", rally::graphql::schema::sdl());
            Ok(())
        }
        Command::Serve => {
            init_tracing(&cli.config);
            let app = App::build(cli.config).await?;
            app.run_until_stopped(rally::startup::shutdown_signal())
                .await
        }
        Command::Migrate { action } => {
            init_tracing(&cli.config);
            cli.config.check()?;
            cli.config.prepare_data_dir()?;
            let db = rally::db::connect(&cli.config).await?;
            match action.unwrap_or(MigrateAction::Up) {
                MigrateAction::Up => rally::db::migrate_up(&db).await,
                MigrateAction::Down => Migrator::down(&db, Some(1)).await.context("revert failed"),
                MigrateAction::Status => Migrator::status(&db).await.context("status failed"),
            }
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
