// Apollo Client as apps use it: HttpLink for queries and mutations, GraphQLWsLink (graphql-ws) for
// subscriptions, split by operation type, with the access token in connectionParams.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ApolloClient, HttpLink, InMemoryCache, gql, split } from "@apollo/client/core/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions/index.js";
import { getMainDefinition } from "@apollo/client/utilities/index.js";
import { print } from "graphql";
import { createClient } from "graphql-ws";
import { createHash } from "node:crypto";
import WebSocket from "ws";
import { startRally } from "./rally.js";

let rally;
before(async () => {
  rally = await startRally();
});
after(async () => {
  await rally.stop();
});

function apollo(getToken) {
  const http = new HttpLink({
    uri: rally.url,
    fetch: (uri, options) => {
      const token = getToken();
      const headers = { ...options.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
      return fetch(uri, { ...options, headers });
    },
  });
  const wsClient = createClient({
    url: rally.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authorization: `Bearer ${getToken()}` }),
  });
  const link = split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === "OperationDefinition" && definition.operation === "subscription";
    },
    new GraphQLWsLink(wsClient),
    http,
  );
  return { client: new ApolloClient({ link, cache: new InMemoryCache() }), wsClient };
}

test("Apollo Client signs up, queries, mutates and receives a live event update", async () => {
  let token = null;
  const { client, wsClient } = apollo(() => token);
  const signup = await client.mutate({
    mutation: gql`mutation Signup($input: SignupInput!) { signup(input: $input) { accessToken user { id handle } } }`,
    variables: { input: { handle: "apollo_fan", email: "apollo@example.com", password: "correct horse" } },
  });
  token = signup.data.signup.accessToken;
  const me = await client.query({ query: gql`query Me { me { handle email } }`, fetchPolicy: "network-only" });
  assert.deepEqual({ ...me.data.me }, { __typename: "User", handle: "apollo_fan", email: "apollo@example.com" });

  const created = await client.mutate({
    mutation: gql`mutation Create { createEvent(input: { title: "Apollo night", startsAt: "2030-01-01T20:00:00Z" }) { id title } }`,
  });
  const id = created.data.createEvent.id;

  const titles = [];
  const received = new Promise((resolve, reject) => {
    const subscription = client
      .subscribe({
        query: gql`subscription Watch($id: ID!) { eventUpdated(eventId: $id) { id title likeCount } }`,
        variables: { id },
      })
      .subscribe({
        next: ({ data }) => {
          titles.push(data.eventUpdated.title);
          if (titles.length === 1) {
            client
              .mutate({
                mutation: gql`mutation Rename($id: ID!) { updateEvent(id: $id, input: { title: "Renamed live" }) { id } }`,
                variables: { id },
              })
              .catch(reject);
          } else {
            subscription.unsubscribe();
            resolve();
          }
        },
        error: reject,
      });
  });
  await received;
  assert.deepEqual(titles, ["Apollo night", "Renamed live"]);
  await wsClient.dispose();
});

test("graphql-ws gets a document that fails validation as its error, coded, and Apollo Client surfaces it", async () => {
  const wsClient = createClient({ url: rally.wsUrl, webSocketImpl: WebSocket, lazy: true });
  const errors = await new Promise((done, fail) => {
    wsClient.subscribe(
      { query: 'subscription { eventUpdated(eventId: "x") { id nosuchfield } }' },
      { next: (value) => fail(new Error(`a next instead of an error: ${JSON.stringify(value)}`)), error: done, complete: () => fail(new Error("completed without an error")) },
    );
  });
  assert.ok(Array.isArray(errors) && errors.length > 0, `an array of GraphQL errors: ${JSON.stringify(errors)}`);
  for (const error of errors) {
    assert.equal(error.extensions?.code, "BAD_USER_INPUT");
  }
  await wsClient.dispose();

  // Apollo's link tells a close from a list of errors by the global WebSocket, which Node 20 lacks.
  globalThis.WebSocket ??= WebSocket;
  const linked = createClient({ url: rally.wsUrl, webSocketImpl: WebSocket });
  const client = new ApolloClient({ link: new GraphQLWsLink(linked), cache: new InMemoryCache() });
  const observed = await new Promise((done) => {
    client
      .subscribe({ query: gql`subscription Bad { eventUpdated(eventId: "x") { id nosuchfield } }` })
      .subscribe({ next: (value) => done({ value }), error: (error) => done({ error }) });
  });
  assert.ok(observed.error, `Apollo Client reports the refusal: ${JSON.stringify(observed)}`);
  assert.ok(/nosuchfield/.test(observed.error.message), observed.error.message);
  assert.deepEqual(
    observed.error.graphQLErrors.map((e) => e.extensions?.code),
    ["BAD_USER_INPUT"],
    JSON.stringify(observed.error),
  );
  await linked.dispose();
});

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

test("Apollo Client's automatic persisted queries: the document once, then its hash alone on GET", async () => {
  const sent = [];
  const http = new HttpLink({
    uri: rally.url,
    fetch: (uri, options) => {
      const url = new URL(uri, rally.url);
      const body = options.body ? JSON.parse(options.body) : {};
      const extensions = body.extensions ?? JSON.parse(url.searchParams.get("extensions") ?? "{}");
      sent.push({
        method: options.method ?? "GET",
        document: Boolean(body.query ?? url.searchParams.get("query")),
        hash: extensions.persistedQuery?.sha256Hash,
      });
      return fetch(uri, options);
    },
  });
  const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(http);
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  // A document no other test sends, so the server has not seen it.
  const query = gql`query PersistedProbe { probe: __typename }`;
  const hash = sha256(print(query));

  const first = await client.query({ query, fetchPolicy: "network-only" });
  assert.equal(first.data.probe, "Query");
  assert.deepEqual(
    sent.map(({ method, document, hash }) => ({ method, document, hash })),
    [
      { method: "GET", document: false, hash },
      { method: "POST", document: true, hash },
    ],
    "the hash alone, refused as unknown, then the document with its hash",
  );

  sent.length = 0;
  const again = await client.query({ query, fetchPolicy: "network-only" });
  assert.equal(again.data.probe, "Query");
  assert.deepEqual(sent, [{ method: "GET", document: false, hash }], "the hash alone, on GET, is enough now");

  // The protocol's refusals, raw: an unknown hash, a hash that is not the document's, and a
  // persisted mutation on GET.
  const extensions = (sha256Hash) => JSON.stringify({ persistedQuery: { version: 1, sha256Hash } });
  const accept = { accept: "application/graphql-response+json" };
  const unknown = await fetch(`${rally.url}?extensions=${encodeURIComponent(extensions("ab".repeat(32)))}`, { headers: accept });
  assert.equal(unknown.status, 400);
  const unknownBody = await unknown.json();
  assert.equal(unknownBody.errors[0].message, "PersistedQueryNotFound");
  assert.equal(unknownBody.errors[0].extensions.code, "PERSISTED_QUERY_NOT_FOUND");
  const lying = await fetch(rally.url, {
    method: "POST",
    headers: { ...accept, "content-type": "application/json" },
    body: JSON.stringify({ query: "{ __typename }", extensions: JSON.parse(extensions(hash)) }),
  });
  assert.equal(lying.status, 400);
  assert.equal((await lying.json()).errors[0].extensions.field, "extensions.persistedQuery");
  const mutation = "mutation { logout(refreshToken: \"not-a-token\") }";
  const registered = await fetch(rally.url, {
    method: "POST",
    headers: { ...accept, "content-type": "application/json" },
    body: JSON.stringify({ query: mutation, extensions: JSON.parse(extensions(sha256(mutation))) }),
  });
  assert.equal(registered.status, 200, "a mutation may be persisted, and runs on POST");
  const onGet = await fetch(`${rally.url}?extensions=${encodeURIComponent(extensions(sha256(mutation)))}`, { headers: accept });
  assert.equal(onGet.status, 405, "a persisted mutation still does not run on GET");
});
