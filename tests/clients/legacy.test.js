// The legacy subscriptions-transport-ws protocol ("graphql-ws"), as old Apollo apps speak it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SubscriptionClient } from "subscriptions-transport-ws";
import WebSocket from "ws";
import { gql, startRally } from "./rally.js";

let rally;
before(async () => {
  rally = await startRally();
});
after(async () => {
  await rally.stop();
});

test("a subscriptions-transport-ws client receives a live event update", async () => {
  const signup = await gql(
    rally.url,
    `mutation { signup(input: { handle: "legacy_fan", email: "legacy@example.com", password: "correct horse" }) { accessToken } }`,
  );
  const token = signup.data.signup.accessToken;
  const created = await gql(
    rally.url,
    `mutation { createEvent(input: { title: "Old school", startsAt: "2030-01-01T20:00:00Z" }) { id } }`,
    {},
    token,
  );
  const id = created.data.createEvent.id;
  const client = new SubscriptionClient(rally.wsUrl, { connectionParams: { authorization: `Bearer ${token}` } }, WebSocket);
  const titles = [];
  await new Promise((resolve, reject) => {
    const subscription = client
      .request({ query: `subscription($id: ID!) { eventUpdated(eventId: $id) { title likedByMe } }`, variables: { id } })
      .subscribe({
        next: ({ data, errors }) => {
          if (errors) return reject(new Error(JSON.stringify(errors)));
          titles.push(data.eventUpdated.title);
          if (titles.length === 1) {
            gql(rally.url, `mutation($id: ID!) { updateEvent(id: $id, input: { title: "Still works" }) { id } }`, { id }, token)
              .then((body) => body.errors && reject(new Error(JSON.stringify(body.errors))))
              .catch(reject);
          } else {
            subscription.unsubscribe();
            resolve();
          }
        },
        error: reject,
      });
  });
  assert.deepEqual(titles, ["Old school", "Still works"]);
  client.close();
});
