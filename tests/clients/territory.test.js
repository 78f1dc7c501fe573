// Territory cells checked against an independent H3 implementation: h3-js (Uber's C library
// compiled to JavaScript), not the h3o crate the server uses. A sparse track (a fix every 250 m)
// must capture exactly the cells of H3's grid path between consecutive fixes, with H3's boundaries.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { cellToBoundary, gridPathCells, latLngToCell } from "h3-js";
import { gql, startRally } from "./rally.js";

let rally;
before(async () => {
  // Fixes 250 m apart every 10 s would be 90 km/h; this instance allows it so a short test can
  // save a sparse track (the speed rule has its own tests).
  rally = await startRally({ RALLY_RUN_MAX_SPEED_KMH: "1000" });
});
after(async () => {
  await rally.stop();
});

async function ok(query, variables, token) {
  const body = await gql(rally.url, query, variables, token);
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

async function signup(handle) {
  const data = await ok(
    `mutation($i: SignupInput!) { signup(input: $i) { accessToken } }`,
    { i: { handle, email: `${handle}@example.com`, password: "correct horse" } },
  );
  return data.signup.accessToken;
}

test("a saved run captures H3's grid path between its fixes, with H3's boundaries", async () => {
  const organizer = await signup("h3_org");
  const runner = await signup("h3_runner");
  const started = new Date(Date.now() - 3600_000).toISOString();
  const { createEvent } = await ok(
    `mutation($s: DateTime!) { createEvent(input: { title: "H3 run", startsAt: $s }) { id } }`,
    { s: started },
    organizer,
  );
  await ok(`mutation($id: ID!) { updateEvent(id: $id, input: { status: LIVE }) { id } }`, { id: createEvent.id }, organizer);
  const { issueTickets } = await ok(
    `mutation($e: ID!) { issueTickets(eventId: $e, handles: ["h3_runner"]) { id } }`,
    { e: createEvent.id },
    organizer,
  );
  const { startRun } = await ok(
    `mutation($t: ID!) { startRun(ticketId: $t) { id startedAt } }`,
    { t: issueTickets[0].id },
    runner,
  );
  // Nine fixes heading north-east from Lyon, 250 m apart, 10 s apart, around the run's start.
  const origin = [45.764, 4.8357];
  const start = Date.parse(startRun.startedAt) - 45_000;
  const fixes = Array.from({ length: 9 }, (_, n) => ({
    latitude: origin[0] + (n * 250 * Math.SQRT1_2) / 111_195,
    longitude: origin[1] + (n * 250 * Math.SQRT1_2) / (111_195 * Math.cos((origin[0] * Math.PI) / 180)),
    at: new Date(start + n * 10_000).toISOString(),
  }));
  const { saveRun } = await ok(
    `mutation($r: ID!, $t: [TrackPointInput!]!) { saveRun(runId: $r, track: $t) { status cellsCaptured rejectionReason } }`,
    { r: startRun.id, t: fixes },
    runner,
  );
  assert.equal(saveRun.status, "SAVED", saveRun.rejectionReason);

  const expected = new Set();
  for (let n = 1; n < fixes.length; n++) {
    const from = latLngToCell(fixes[n - 1].latitude, fixes[n - 1].longitude, 10);
    const to = latLngToCell(fixes[n].latitude, fixes[n].longitude, 10);
    for (const cell of gridPathCells(from, to)) expected.add(cell);
  }
  const { territories } = await ok(
    `query($e: ID!) { territories(eventId: $e) { cell boundary owner { handle } } }`,
    { e: createEvent.id },
  );
  assert.equal(saveRun.cellsCaptured, expected.size);
  assert.deepEqual(new Set(territories.map((t) => t.cell)), expected);
  for (const territory of territories) {
    assert.equal(territory.owner.handle, "h3_runner");
    const corners = cellToBoundary(territory.cell);
    assert.equal(territory.boundary.length, corners.length, territory.cell);
    territory.boundary.forEach(([lat, lng], i) => {
      assert.ok(Math.abs(lat - corners[i][0]) < 1e-9 && Math.abs(lng - corners[i][1]) < 1e-9, `${territory.cell} corner ${i}`);
    });
  }
});
