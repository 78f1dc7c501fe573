//! A local cluster for the scale-out part, started by the project's own `scripts/cluster` (an S3
//! server, Rally instances on PostgreSQL + Redis + S3, nginx in front) and read back from the
//! `cluster.json` it writes.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

/// A running cluster; [`Cluster::down`] stops it.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// nginx: `http://127.0.0.1:<port>`.
    pub base: String,
    /// The `rally serve` processes.
    pub instance_pids: Vec<u32>,
    /// nginx's master and workers.
    pub nginx_pids: Vec<u32>,
    /// The S3 server's endpoint (bucket `rally`).
    pub s3_endpoint: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

impl Cluster {
    /// `instances` instances of `bin` on `database_url` and `redis_url`, with `env` on top.
    pub async fn up(
        bin: &Path,
        database_url: &str,
        redis_url: &str,
        instances: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new("python3");
        command
            .arg(script())
            .arg("up")
            .arg("--dir")
            .arg(dir.path())
            .args(["--instances", &instances.to_string(), "--port", "0"])
            .arg("--binary")
            .arg(bin)
            .args(["--database-url", database_url, "--redis-url", redis_url]);
        for (key, value) in env {
            command.arg("--env").arg(format!("{key}={value}"));
        }
        let output = command
            .output()
            .await
            .context("cannot run scripts/cluster")?;
        if !output.status.success() {
            bail!(
                "scripts/cluster up failed (scripts/install-cluster-tools installs nginx and the S3 server):\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("cluster.json"))?)?;
        let pid = |value: &Value| {
            value
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .context("a pid in cluster.json")
        };
        let instance_pids = state["instances"]
            .as_array()
            .context("instances in cluster.json")?
            .iter()
            .map(|node| pid(&node["pid"]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let master = pid(&state["nginx"]["pid"])?;
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        let nginx_pids = std::iter::once(master)
            .chain(
                children
                    .split_whitespace()
                    .filter_map(|pid| pid.parse().ok()),
            )
            .collect();
        Ok(Self {
            base: state["url"]
                .as_str()
                .context("url in cluster.json")?
                .to_owned(),
            s3_endpoint: state["s3"]["endpoint"]
                .as_str()
                .context("s3.endpoint in cluster.json")?
                .to_owned(),
            instance_pids,
            nginx_pids,
            dir,
        })
    }

    /// The GraphQL endpoint through nginx.
    pub fn url(&self) -> String {
        format!("{}/graphql", self.base)
    }

    /// The websocket endpoint through nginx.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base.replacen("http", "ws", 1))
    }

    /// Stops every process of the cluster.
    pub async fn down(self) {
        let _ = Command::new("python3")
            .arg(script())
            .arg("down")
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .await;
    }
}
