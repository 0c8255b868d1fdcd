// Opens N WebSocket connections, subscribes each (unless --bare), then makes
// W writes over HTTP one after another and records, for each write, when every
// socket got its frame. Prints one JSON line: {"latencies_ms": [...], ...}.
//
//   node fanout-client.mjs '{"urls": [...], "n": 200, "writes": 50, ...}'
import { openSocket } from "./open-socket.mjs";

const conf = JSON.parse(process.argv[2]);
const { urls, n, writes, token, channel, write } = conf;
const headers = token ? { Authorization: `Bearer ${token}` } : {};

const sockets = [];
for (let i = 0; i < n; i++) {
  sockets.push(await openSocket(urls[i % urls.length], headers, channel));
}

let pending = 0;
let started = 0;
let done = null;
const latencies = [];
for (const ws of sockets) {
  ws.on("message", () => {
    latencies.push(performance.now() - started);
    if (--pending === 0) done();
  });
}

async function post(k) {
  const body = write.body.replace("__K__", String(k));
  const response = await fetch(write.url, {
    method: write.method,
    headers: { "Content-Type": "application/json", ...headers },
    body,
  });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`write answered ${response.status}`);
}

for (let k = 0; k < writes; k++) {
  pending = sockets.length;
  const arrived = new Promise((resolve) => (done = resolve));
  started = performance.now();
  await post(k);
  const timeout = setTimeout(() => {
    console.error(`write ${k}: ${pending} sockets never got it`);
    process.exit(2);
  }, 30000);
  await arrived;
  clearTimeout(timeout);
  await new Promise((resolve) => setTimeout(resolve, 20));
}
for (const ws of sockets) ws.terminate();
// Exit only once the whole line is out (a pipe takes 64 KiB at a time).
process.stdout.write(JSON.stringify({ latencies_ms: latencies }) + "\n", () => process.exit(0));
