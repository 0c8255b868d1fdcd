// One socket of a bench client: open, and subscribe to `channel` (no channel:
// the bare baseline, which has no protocol); resolves once the server answered.
import WebSocket from "ws";

export function openSocket(url, headers, channel) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once("error", reject);
    ws.once("open", () => {
      if (!channel) return resolve(ws);
      ws.send(JSON.stringify({ action: "subscribe", channel, id: 1 }));
      ws.once("message", () => resolve(ws));
    });
  });
}
