// The shared socket client's logic, with fake WebSocket, fetch and timers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { MAX_TRIES, POLL_MS, Switchboard, backoff, ceiling } from "../static/switchboard/js/socket.js";

class FakeTimers {
  constructor() { this.now = 0; this.queue = []; this.next = 1; }
  set = (fn, ms) => { const id = this.next++; this.queue.push({ id, at: this.now + ms, fn }); return id; };
  clear = (id) => { this.queue = this.queue.filter((t) => t.id !== id); };
  // Runs the timers due within `ms`, in order.
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at);
      const due = this.queue[0];
      if (!due || due.at > end) break;
      this.queue.shift();
      this.now = due.at;
      due.fn();
    }
    this.now = end;
  }
  pending() { return this.queue.map((t) => t.at - this.now).sort((a, b) => a - b); }
}

function harness({ blocked = false, responses = {}, random = () => 1 } = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      sockets.push(this);
      if (blocked) queueMicrotask(() => this.onclose?.({ code: 1006 }));
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.closed = true; }
    open() { this.onopen(); }
    drop(code = 1006) { this.onclose({ code }); }
    push(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
  }
  const fetched = [];
  const fetch = async (url) => {
    fetched.push(url);
    const path = url.split("?")[0];
    const body = typeof responses[path] === "function" ? responses[path](url) : responses[path];
    if (typeof body === "number") return { ok: false, status: body, json: async () => ({}) };
    return { ok: body !== undefined, status: body === undefined ? 503 : 200, json: async () => body };
  };
  const timers = new FakeTimers();
  const states = [];
  const client = new Switchboard({
    url: "ws://test/ws/", WebSocket: FakeSocket, fetch, timers, now: () => timers.now, random,
    onState: (state, c) => states.push(state === "reconnecting" ? `reconnecting ${c.attempt}/${MAX_TRIES}` : state),
  });
  return { client, sockets, fetched, timers, states };
}

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

test("backoff doubles from one second up to ten, with full jitter below that", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(ceiling), [1000, 2000, 4000, 8000, 10000, 10000]);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoff(n, () => 1)), [1000, 2000, 4000, 8000, 10000, 10000]);
  assert.deepEqual([1, 4, 6].map((n) => backoff(n, () => 0.25)), [250, 2000, 2500]);
  for (let i = 0; i < 200; i++) {
    const wait = backoff(3);
    assert.ok(wait >= 0 && wait <= 4000, `${wait}`);
  }
});

test("pages that lose one server come back spread out, not together", () => {
  const delays = [];
  for (let page = 0; page < 200; page++) {
    const { client, sockets, timers } = harness({ random: Math.random });
    client.start();
    sockets[0].open();
    sockets[0].drop();
    delays.push(timers.pending()[0]);
  }
  const seconds = new Set(delays.map((d) => Math.floor(d / 100)));
  assert.ok(Math.max(...delays) <= 1000);
  assert.ok(seconds.size >= 8, `delays fall in ${seconds.size} of 10 tenths of a second`);
});

test("a server's retry_after is honoured, spread over as long again", () => {
  const { client, sockets, timers } = harness({ random: () => 0.5 });
  client.start();
  sockets[0].open();
  sockets[0].push({ type: "error", code: "overloaded", message: "busy", retry_after: 8 });
  sockets[0].drop(4013);
  assert.deepEqual(timers.pending(), [12000]);
  timers.advance(12000);
  sockets[1].open();
  sockets[1].drop();
  assert.deepEqual(timers.pending(), [500]); // the hint is used once
});

test("a socket closed with 4401 stops and says signed out", () => {
  const { client, sockets, timers, states } = harness();
  client.start();
  sockets[0].open();
  sockets[0].drop(4401);
  assert.equal(states.at(-1), "signed_out");
  assert.deepEqual(timers.pending(), []);
});

test("a refused handshake while the API answers 401 is signed out too; a server that is down is not", async () => {
  const refused = harness({ responses: { "/api/v1/sessions": 401 } });
  refused.client.start();
  refused.sockets[0].drop();
  await flush();
  assert.equal(refused.states.at(-1), "signed_out");
  const down = harness();
  down.client.start();
  down.sockets[0].drop();
  await flush();
  assert.equal(down.states.at(-1), "reconnecting 1/5");
  assert.deepEqual(down.timers.pending(), [1000]);
});

test("a reconnect resumes every subscription from its last seq, once", () => {
  const { client, sockets, timers, states } = harness();
  const seen = [];
  client.start();
  client.subscribe("session:1", { onSnapshot: (s) => seen.push(`snapshot ${s.n}`), onEvent: (f) => seen.push(f.seq) });
  sockets[0].open();
  assert.deepEqual(sockets[0].sent[0], { action: "subscribe", channel: "session:1", id: "s:session:1" });
  sockets[0].push({ type: "subscribed", channel: "session:1", seq: 4, snapshot: { n: 1 } });
  sockets[0].push({ type: "event", channel: "session:1", seq: 5 });
  sockets[0].drop();
  assert.equal(states.at(-1), "reconnecting 1/5");
  assert.deepEqual(timers.pending(), [1000]);
  timers.advance(1000);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent[0], { action: "subscribe", channel: "session:1", id: "s:session:1", since: 5 });
  sockets[1].push({ type: "subscribed", channel: "session:1", seq: 5 });
  sockets[1].push({ type: "event", channel: "session:1", seq: 5 });
  sockets[1].push({ type: "event", channel: "session:1", seq: 7 });
  assert.deepEqual(seen, ["snapshot 1", 5, 7]);
  assert.equal(states.at(-1), "connected");
});

test("five failed tries fall back to polling, which keeps the cursor", async () => {
  let since = null;
  const { client, sockets, timers, states, fetched } = harness({
    responses: {
      "/api/v1/events": (url) => {
        since = new URL(url, "http://x").searchParams.get("since");
        return { results: [{ type: "event", channel: "logs:2", seq: 9, data: {} }], seq: 9, has_more: false, reset: false };
      },
    },
  });
  const seen = [];
  client.start();
  client.subscribe("logs:2", { filter: { level: "ERROR" }, onEvent: (f) => seen.push(f.seq) });
  sockets[0].open();
  sockets[0].push({ type: "subscribed", channel: "logs:2", seq: 3, snapshot: { entries: [] } });
  sockets[0].drop();
  const delays = [];
  for (let n = 1; n <= MAX_TRIES; n++) {
    delays.push(timers.pending()[0]);
    timers.advance(timers.pending()[0]);
    sockets.at(-1).drop(); // never opened: the login is checked first
    await flush();
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 10000]);
  assert.equal(states.at(-1), "offline");
  await flush();
  assert.equal(since, "3");
  assert.match(fetched.find((url) => url.startsWith("/api/v1/events")), /level=ERROR/);
  assert.deepEqual(seen, [9]);
  // It goes on polling every 5 s, and on trying the socket in the background.
  assert.ok(timers.pending().includes(POLL_MS));
  timers.advance(10000);
  sockets.at(-1).open();
  assert.equal(states.at(-1), "connected");
  assert.equal(sockets.at(-1).sent[0].since, 9);
});

test("with sockets blocked from the start, a page gets its snapshot over HTTP", async () => {
  const { client, timers, fetched, states } = harness({
    blocked: true,
    responses: { "/api/v1/snapshot": { channel: "sessions", seq: 12, snapshot: { sessions: [] } } },
  });
  let snapshot = null;
  client.start();
  client.subscribe("sessions", { onSnapshot: (s, seq) => (snapshot = [s, seq]) });
  for (let n = 0; n <= MAX_TRIES; n++) {
    await flush();
    timers.advance(timers.pending()[0] ?? 0);
  }
  await flush();
  assert.equal(states.includes("offline"), true);
  assert.deepEqual(snapshot, [{ sessions: [] }, 12]);
  assert.ok(fetched.some((url) => url.startsWith("/api/v1/snapshot?channel=sessions")));
});

test("retry now connects at once", () => {
  const { client, sockets, timers } = harness();
  client.start();
  sockets[0].drop();
  assert.equal(sockets.length, 1);
  client.retryNow();
  assert.equal(sockets.length, 2);
  assert.deepEqual(timers.pending(), []);
});

test("a ping every 30 s measures the round trip", () => {
  const { client, sockets, timers } = harness();
  client.start();
  sockets[0].open();
  timers.advance(30000);
  const ping = sockets[0].sent.at(-1);
  assert.equal(ping.action, "ping");
  timers.now += 40;
  sockets[0].push({ type: "pong", ts: ping.ts });
  assert.equal(client.rtt, 40);
});

test("a reset resubscribe hands the page a fresh snapshot", () => {
  const { client, sockets } = harness();
  const snapshots = [];
  client.start();
  client.subscribe("task:3", { onSnapshot: (s, seq, reset) => snapshots.push([seq, reset]) });
  sockets[0].open();
  sockets[0].push({ type: "subscribed", channel: "task:3", seq: 50, snapshot: {}, reset: true });
  assert.deepEqual(snapshots, [[50, true]]);
});
