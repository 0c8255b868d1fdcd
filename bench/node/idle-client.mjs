// Holds N WebSocket connections open, each subscribed to a channel (one, or
// the i-th socket to the (i mod K)-th of a list of K) and
// pinging every 30 s (spread over the 30 s), for `hold` seconds. Prints
// "ready" once all are open, then "done" at the end.
//
//   node idle-client.mjs '{"url": "...", "n": 5000, "token": "...", "channel": "...", "hold": 60}'
import { openSocket } from "./open-socket.mjs";

const { url, n, token, channel, hold } = JSON.parse(process.argv[2]);
const headers = { Authorization: `Bearer ${token}` };

const channels = channel === "-" ? [null] : [channel].flat(); // "-": the bare baseline
const sockets = [];
for (let i = 0; i < n; i += 50) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 50); j++) batch.push(openSocket(url, headers, channels[j % channels.length]));
  sockets.push(...(await Promise.all(batch)));
}
let closed = 0;
for (const ws of sockets) ws.on("close", () => closed++);
console.log("ready");
const timers = sockets.map((ws) =>
  setTimeout(function ping() {
    ws.send('{"action":"ping"}');
    timers.push(setTimeout(ping, 30000));
  }, Math.random() * 30000),
);
await new Promise((resolve) => setTimeout(resolve, hold * 1000));
process.stdout.write(`done ${closed}\n`, () => process.exit(0));
