// W workers, each on its own keep-alive connection, send requests one after
// another for `seconds`; prints {"ok": n, "failed": n, "seconds": s, "errors": {...}}.
//
//   node writes-client.mjs '{"workers": 16, "seconds": 10, "requests": [{method, url, body}], "token": "..."}'
import { Agent, request } from "undici";

const { workers, seconds, requests, token } = JSON.parse(process.argv[2]);
const headers = { "content-type": "application/json" };
if (token) headers.authorization = `Bearer ${token}`;
let ok = 0;
let failed = 0;
const errors = {};
const end = performance.now() + seconds * 1000;

async function worker(index) {
  const agent = new Agent({ connections: 1, pipelining: 1 });
  let n = 0;
  while (performance.now() < end) {
    const r = requests[(index + n * workers) % requests.length];
    n += 1;
    try {
      const { statusCode, body } = await request(r.url, {
        method: r.method, headers, body: r.body.replace("__N__", String(n % 100)), dispatcher: agent,
      });
      await body.arrayBuffer();
      if (statusCode < 300) ok += 1;
      else { failed += 1; errors[statusCode] = (errors[statusCode] || 0) + 1; }
    } catch (error) {
      failed += 1;
      errors[error.code || "error"] = (errors[error.code || "error"] || 0) + 1;
    }
  }
  await agent.close();
}

const started = performance.now();
await Promise.all(Array.from({ length: workers }, (_, i) => worker(i)));
const elapsed = (performance.now() - started) / 1000;
process.stdout.write(JSON.stringify({ ok, failed, seconds: elapsed, errors }) + "\n", () => process.exit(0));
