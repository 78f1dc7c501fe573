// Starts a real `rally serve` (the binary cargo built) on a free port with its own data dir.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(import.meta.url), "../../..");

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
    server.on("error", fail);
  });
}

export async function startRally(env = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "rally-clients-"));
  const bin = process.env.RALLY_BIN ?? join(root, "target", "debug", "rally");
  const child = spawn(bin, ["serve"], {
    env: {
      PATH: process.env.PATH,
      RALLY_BIND: `127.0.0.1:${port}`,
      RALLY_DATA_DIR: dataDir,
      RALLY_ARGON2_MEMORY_KIB: "256",
      RALLY_ARGON2_ITERATIONS: "1",
      RALLY_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const base = `http://127.0.0.1:${port}`;
  let ready = false;
  for (let i = 0; i < 200 && !ready; i++) {
    try {
      ready = (await fetch(`${base}/readyz`)).ok;
    } catch {
      // not listening yet
    }
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }
  if (!ready) {
    child.kill();
    throw new Error(`Rally did not become ready at ${base}/readyz within 10 s`);
  }
  return {
    base,
    url: `${base}/graphql`,
    wsUrl: `ws://127.0.0.1:${port}/graphql/ws`,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function gql(url, query, variables = {}, token) {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}
