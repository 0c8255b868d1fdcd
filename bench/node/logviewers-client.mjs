// N viewers on WebSockets (subscribed to `channel` unless it is empty) while W
// writers POST `batches` batches of `lines` log lines over HTTP (keep-alive,
// each writer one request after another). Counts, per viewer, the lines that
// arrive (each line's message carries one "#L#"), and prints one JSON line:
// {"lines", "posted_s", "delivered_s", "short": viewers missing lines}.
//
//   node logviewers-client.mjs '{"urls": [...], "viewers": 100, "channel": "logs:1",
//        "post_url": "...", "writers": 4, "batches": 80, "lines": 500, "token": "..."}'
import { openSocket } from "./open-socket.mjs";
import { Agent, request } from "undici";

const conf = JSON.parse(process.argv[2]);
const { urls, viewers, channel, post_url, writers, batches, lines, token } = conf;
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const total = batches * lines;

function marks(text) {
  let count = 0;
  for (let at = text.indexOf("#L#"); at !== -1; at = text.indexOf("#L#", at + 3)) count += 1;
  return count;
}

const sockets = [];
for (let i = 0; i < viewers; i++) {
  sockets.push(await openSocket(urls[i % urls.length], headers, channel));
}

let started = 0;
let complete = 0;
let lastLine = 0;
let finished;
const allThere = new Promise((resolve) => (finished = resolve));
const got = sockets.map(() => 0);
sockets.forEach((ws, i) => {
  ws.on("message", (data) => {
    const count = marks(data.toString());
    if (!count) return;
    got[i] += count;
    if (got[i] >= total && got[i] - count < total) {
      lastLine = performance.now();
      if (++complete === sockets.length) finished();
    }
  });
});

function body(batch) {
  const entries = [];
  for (let n = 0; n < lines; n++) {
    const line = batch * lines + n;
    entries.push({ message: `line ${line} #L# ${"x".repeat(60)}`, level: "INFO", uid: `b${line}` });
  }
  return JSON.stringify({ entries });
}

const bodies = Array.from({ length: batches }, (_, batch) => body(batch));
let next = 0;
let failed = 0;
async function writer() {
  const agent = new Agent({ connections: 1, pipelining: 1 });
  while (next < batches) {
    const batch = next++;
    const { statusCode, body: answer } = await request(post_url, {
      method: "POST", dispatcher: agent, body: bodies[batch],
      headers: { "content-type": "application/json", ...headers },
    });
    await answer.arrayBuffer();
    if (statusCode >= 300) failed += 1;
  }
  await agent.close();
}

started = performance.now();
await Promise.all(Array.from({ length: writers }, writer));
const posted = performance.now();
const timeout = setTimeout(finished, 120000);
await allThere;
clearTimeout(timeout);
for (const ws of sockets) ws.terminate();
const result = {
  lines: total, failed, posted_s: (posted - started) / 1000,
  delivered_s: ((complete === sockets.length ? lastLine : performance.now()) - started) / 1000,
  short: got.filter((n) => n < total).length,
};
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
