// Many pages' socket clients (static/switchboard/js/socket.js, as the pages
// run it) on one channel, for bench/storm.py: connect them all, print
// "ready", then report how long after the server went away every one was
// live again (resubscribed from its cursor).
//
//   node storm-client.mjs <ws-url> <api-url> <token> <channel> <count> <jitter 0|1>
import WebSocket from "ws";

import { Switchboard } from "../../static/switchboard/js/socket.js";

const [url, api, token, channel, countText, jitterText] = process.argv.slice(2);
const count = Number(countText);
const jitter = jitterText === "1";
const headers = { Authorization: `Bearer ${token}` };

class AuthedSocket extends WebSocket {
  constructor(address) {
    super(address, { headers });
  }
}
const authedFetch = (address, options = {}) => fetch(address, { ...options, headers: { ...options.headers, ...headers } });

let lostAt = null;
const backAt = new Map(); // client index -> ms after the loss when live again
const live = new Set();
let ready = false;

function watch(index) {
  const client = new Switchboard({
    url, api, WebSocket: AuthedSocket, fetch: authedFetch,
    // The schedule's ceiling every time (the old behaviour), or full jitter.
    random: jitter ? Math.random : () => 1,
    onState: (state) => {
      if (state !== "connected") {
        if (live.delete(index) && lostAt === null) lostAt = performance.now();
      }
    },
  });
  client.start();
  client.subscribe(channel, {
    onSnapshot: () => {},
    onEvent: () => {},
  });
  // "subscribed" marks the channel live again.
  const original = client.subscribed.bind(client);
  client.subscribed = (frame) => {
    original(frame);
    live.add(index);
    if (lostAt !== null && !backAt.has(index)) backAt.set(index, performance.now() - lostAt);
    if (!ready && live.size === count) {
      ready = true;
      console.log("ready");
    }
    if (lostAt !== null && backAt.size === count) finish();
  };
  return client;
}

function finish() {
  const times = [...backAt.values()].sort((a, b) => a - b);
  const at = (p) => Math.round(times[Math.min(times.length - 1, Math.floor(times.length * p))]);
  console.log(JSON.stringify({ all_live_ms: at(1), p50_ms: at(0.5), p90_ms: at(0.9), clients: times.length }));
  process.exit(0);
}

const clients = [];
for (let i = 0; i < count; i++) {
  clients.push(watch(i));
  if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 50));
}
setTimeout(() => {
  console.error(`gave up: ${backAt.size} of ${count} back`);
  process.exit(1);
}, 180_000);
