// Every graphql-http server audit (MUST and SHOULD) against a running Rally.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { serverAudits } from "graphql-http";
import { startRally } from "./rally.js";

let rally;
before(async () => {
  rally = await startRally();
});
after(async () => {
  await rally.stop();
});

test("every graphql-http audit passes", async (t) => {
  for (const audit of serverAudits({ url: () => rally.url })) {
    await t.test(audit.name, async () => {
      const result = await audit.fn();
      assert.equal(result.status, "ok", `${audit.name}: ${result.reason}`);
    });
  }
});
