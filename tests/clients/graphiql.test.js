// GraphiQL in a real browser: Debian's Chromium (scripts/install-chromium) driven by playwright-core.
// Opens `/`, runs a signed-in query through the Headers tab, starts a subscription, sees a change
// arrive, and saves a screenshot to tests/clients/artifacts/graphiql.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startRally, gql } from "./rally.js";

const artifacts = join(dirname(fileURLToPath(import.meta.url)), "artifacts");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

let rally;
let browser;

before(async () => {
  rally = await startRally();
  browser = await chromium.launch({
    executablePath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await rally?.stop();
});

// The query editor is a CodeMirror 5 instance; typing through it is what a person does, but
// replacing the whole document through its API is exact. GraphiQL parses the edited document after
// a short debounce and picks the transport (HTTP or websocket) from that parse, so wait for it.
async function setQuery(page, query) {
  await page.evaluate((text) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(text);
  }, query);
  await page.waitForTimeout(500);
}

async function run(page) {
  await page.click(".graphiql-execute-button");
}

function response(page) {
  return page.locator(".graphiql-response");
}

test("GraphiQL runs a query and follows a subscription in Chromium", async () => {
  const signup = await gql(
    rally.url,
    `mutation { signup(input: { handle: "ines", email: "ines@example.com", password: "correct horse battery" }) { accessToken } }`,
  );
  const token = signup.data.signup.accessToken;
  const created = await gql(
    rally.url,
    `mutation { createEvent(input: { title: "Browser night", startsAt: "2030-01-01T20:00:00Z" }) { id } }`,
    {},
    token,
  );
  const eventId = created.data.createEvent.id;

  const page = await browser.newPage();
  const refused = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
  });
  const failures = [];
  page.on("requestfailed", (request) => failures.push(request.url()));
  page.on("response", (response) => {
    if (response.status() >= 400) failures.push(`${response.status()} ${response.url()}`);
  });
  const sockets = [];
  page.on("websocket", (socket) => sockets.push(socket.url()));
  // The Headers tab's content lives in localStorage; GraphiQL sends it with every HTTP request and
  // Rally's page hands the same Authorization to the websocket.
  await page.addInitScript((auth) => {
    if (!localStorage.getItem("graphiql:headers")) {
      localStorage.setItem("graphiql:headers", JSON.stringify({ Authorization: auth }));
    }
  }, `Bearer ${token}`);
  await page.goto(rally.base + "/");
  await page.waitForSelector(".graphiql-query-editor .CodeMirror");
  assert.deepEqual(failures, [], "every asset is served by Rally itself");

  await setQuery(page, `{ me { handle } event(id: "${eventId}") { title likeCount } }`);
  await run(page);
  await assert.doesNotReject(
    response(page).getByText('"handle": "ines"').waitFor({ timeout: 10_000 }),
    "the signed-in query answers",
  );
  assert.match(await response(page).innerText(), /Browser night/);

  await setQuery(page, `subscription { eventUpdated(eventId: "${eventId}") { title likeCount } }`);
  await run(page);
  await response(page).getByText('"likeCount": 0').waitFor({ timeout: 10_000 });

  const liked = await gql(rally.url, `mutation($id: ID!) { likeEvent(id: $id) { likeCount } }`, { id: eventId }, token);
  assert.equal(liked.data.likeEvent.likeCount, 1);
  await assert.doesNotReject(
    response(page).getByText('"likeCount": 1').waitFor({ timeout: 10_000 }),
    "the change arrives over the websocket",
  );

  assert.deepEqual(sockets, [rally.wsUrl], "the subscription ran over Rally's websocket");
  assert.deepEqual(refused, [], "the page's Content-Security-Policy refuses nothing GraphiQL needs");

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "graphiql.png"), fullPage: true });
  await page.close();
});
