// The shared socket client: one connection per page, many subscriptions.
//
// - Every subscription keeps a cursor (the last seq it processed) and resumes
//   from it after any reconnect, so nothing is missed or shown twice.
// - Reconnects after a random delay up to min(1000 * 2^n, 10000) ms (full
//   jitter, so pages that lost the same server do not all come back at once),
//   5 tries; then polls the HTTP API every 5 s while it keeps trying in the
//   background ("retry now" tries at once). With WebSockets blocked entirely,
//   pages still work. A server that is busy says when to come back
//   (`error` with `retry_after` seconds before it closes); that is waited for.
// - A socket closed with 4401, or refused while the API answers 401/403, means
//   the page's login is gone: it stops and says "signed out".
// - Pings every 30 s; keeps the round-trip time and the last event time.
//
// Nothing here touches the DOM: pages pass callbacks, and tests pass fakes
// for WebSocket, fetch and the timers.

export const MAX_TRIES = 5;
export const POLL_MS = 5000;
export const PING_MS = 30000;

// The longest wait before try `attempt`: 1 → 1 s, 2 → 2 s, 3 → 4 s, 4 → 8 s, then 10 s.
export function ceiling(attempt) {
  return Math.min(1000 * 2 ** (attempt - 1), 10000);
}

// The wait itself: anywhere from 0 up to the ceiling ("full jitter").
export function backoff(attempt, random = Math.random) {
  return Math.round(ceiling(attempt) * random());
}

function query(params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return new URLSearchParams(pairs).toString();
}

export class Switchboard {
  constructor(options = {}) {
    const loc = options.location || globalThis.location;
    this.url = options.url || `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws/`;
    this.api = options.api || "/api/v1";
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.fetch = options.fetch || globalThis.fetch.bind(globalThis);
    this.timers = options.timers || { set: (f, ms) => setTimeout(f, ms), clear: (t) => clearTimeout(t) };
    this.now = options.now || (() => Date.now());
    this.onState = options.onState || (() => {});
    this.random = options.random || Math.random;
    this.retryAfter = null; // seconds, from the server's last word
    this.subs = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.state = "connecting";
    this.attempt = 0;
    this.rtt = null;
    this.lastEventAt = null;
    this.ws = null;
    this.retryTimer = null;
    this.pollTimer = null;
    this.pingTimer = null;
    this.stopped = false;
  }

  start() {
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    for (const t of [this.retryTimer, this.pollTimer, this.pingTimer]) if (t) this.timers.clear(t);
    if (this.ws) this.ws.close();
  }

  // Subscribe; handlers: onSnapshot(snapshot, seq), onEvent(frame), filter (logs).
  subscribe(channel, handlers = {}) {
    // `since` resumes from a seq the page already has (for example after an HTTP load).
    const sub = { channel, cursor: handlers.since ?? null, filter: handlers.filter || null, handlers, live: false };
    this.subs.set(channel, sub);
    if (this.state === "connected") this.sendSubscribe(sub);
    else if (this.state === "offline") this.pollOne(sub);
    return {
      unsubscribe: () => {
        this.subs.delete(channel);
        if (this.state === "connected") this.send({ action: "unsubscribe", channel });
      },
      get cursor() { return sub.cursor; },
    };
  }

  // Resolves with the server's direct reply (ack, pong, error).
  request(frame) {
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (this.state !== "connected") {
        reject(new Error("not connected"));
        return;
      }
      this.pending.set(id, { resolve, reject });
      this.send({ ...frame, id });
    });
  }

  async cancelTask(taskId) {
    if (this.state === "connected") return this.request({ action: "cancel_task", task_id: String(taskId) });
    // No socket: the same service through the API.
    const response = await postJson(`${this.api}/tasks/${taskId}/cancel`, {}, this.fetch);
    if (!response.ok) throw new Error(`cancel failed: ${response.status}`);
    const body = await response.json();
    return { type: "ack", changed: body.changed, status: body.task.status };
  }

  // pause_task or resume_task (`action` "pause" or "resume"), as cancelTask.
  async taskAction(action, taskId) {
    if (this.state === "connected") return this.request({ action: `${action}_task`, task_id: String(taskId) });
    const response = await postJson(`${this.api}/tasks/${taskId}/${action}`, {}, this.fetch);
    if (!response.ok) throw new Error(`${action} failed: ${response.status}`);
    const body = await response.json();
    return { type: "ack", changed: body.changed, status: body.task.status };
  }

  retryNow() {
    if (this.retryTimer) this.timers.clear(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  // --- connection ---------------------------------------------------------

  setState(state) {
    this.state = state;
    this.onState(state, this);
  }

  connect() {
    if (this.stopped) return;
    if (this.ws) {
      this.ws.onclose = null;
      try { this.ws.close(); } catch { /* already closed */ }
    }
    if (this.state !== "offline") this.setState(this.attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch {
      this.lost();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      if (this.pollTimer) this.timers.clear(this.pollTimer);
      this.pollTimer = null;
      this.setState("connected");
      for (const sub of this.subs.values()) this.sendSubscribe(sub);
      this.schedulePing();
    };
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (event) => {
      if (event?.code === 4401) this.signedOut();
      else if (!opened) this.checkLogin().then((gone) => (gone ? this.signedOut() : this.lost()));
      else this.lost();
    };
    ws.onerror = () => {};
  }

  // Whether the API refuses this page's identity (a refused handshake looks
  // like any other failure to the browser).
  async checkLogin() {
    try {
      const response = await this.fetch(`${this.api}/sessions?limit=1`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      return response.status === 401 || response.status === 403;
    } catch {
      return false;
    }
  }

  signedOut() {
    if (this.stopped) return;
    this.stop();
    this.setState("signed_out");
  }

  lost() {
    if (this.stopped) return;
    if (this.pingTimer) this.timers.clear(this.pingTimer);
    this.ws = null;
    for (const { reject } of this.pending.values()) reject(new Error("connection lost"));
    this.pending.clear();
    for (const sub of this.subs.values()) sub.live = false;
    this.attempt += 1;
    if (this.attempt <= MAX_TRIES) {
      if (this.state !== "offline") this.setState("reconnecting");
    } else if (this.state !== "offline") {
      this.setState("offline");
      this.poll();
    }
    // The server's hint, spread over as long again; else the jittered backoff.
    const hint = this.retryAfter;
    this.retryAfter = null;
    const delay = hint ? Math.round(hint * 1000 * (1 + this.random())) : backoff(Math.min(this.attempt, MAX_TRIES), this.random);
    this.retryTimer = this.timers.set(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  send(frame) {
    if (this.ws && this.state === "connected") this.ws.send(JSON.stringify(frame));
  }

  sendSubscribe(sub) {
    const frame = { action: "subscribe", channel: sub.channel, id: `s:${sub.channel}` };
    if (sub.cursor !== null) frame.since = sub.cursor;
    if (sub.filter) frame.filter = sub.filter;
    this.send(frame);
  }

  schedulePing() {
    if (this.pingTimer) this.timers.clear(this.pingTimer);
    this.pingTimer = this.timers.set(() => {
      this.send({ action: "ping", ts: this.now() });
      this.schedulePing();
    }, PING_MS);
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "event") {
      this.deliver(frame);
    } else if (frame.type === "subscribed") {
      this.subscribed(frame);
    } else if (frame.type === "error" && typeof frame.retry_after === "number" && frame.retry_after > 0) {
      this.retryAfter = Math.min(frame.retry_after, 300);
    } else if (frame.type === "pong") {
      if (typeof frame.ts === "number") this.rtt = this.now() - frame.ts;
      this.onState(this.state, this);
    }
    if (frame.id !== undefined && this.pending.has(frame.id)) {
      const { resolve, reject } = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      if (frame.type === "error") reject(Object.assign(new Error(frame.message), { frame }));
      else resolve(frame);
    }
  }

  subscribed(frame) {
    const sub = this.subs.get(frame.channel);
    if (!sub) return;
    sub.live = true;
    if (frame.snapshot) sub.handlers.onSnapshot?.(frame.snapshot, frame.seq, !!frame.reset);
    sub.cursor = frame.seq;
  }

  deliver(frame) {
    const sub = this.subs.get(frame.channel);
    if (!sub || sub.cursor === null || frame.seq <= sub.cursor) return;
    sub.cursor = frame.seq;
    this.lastEventAt = this.now();
    sub.handlers.onEvent?.(frame);
  }

  // --- polling fallback ----------------------------------------------------

  poll() {
    if (this.state !== "offline" || this.stopped) return;
    Promise.all([...this.subs.values()].map((sub) => this.pollOne(sub))).finally(() => {
      if (this.state === "offline" && !this.stopped) {
        this.pollTimer = this.timers.set(() => this.poll(), POLL_MS);
      }
    });
  }

  async pollOne(sub) {
    const filter = sub.filter || {};
    try {
      if (sub.cursor === null) {
        const params = query({ channel: sub.channel, ...filter });
        const body = await this.getJSON(`${this.api}/snapshot?${params}`);
        if (this.subs.get(sub.channel) !== sub || sub.cursor !== null) return;
        sub.handlers.onSnapshot?.(body.snapshot, body.seq, false);
        sub.cursor = body.seq;
        return;
      }
      let more = true;
      while (more && this.subs.get(sub.channel) === sub && this.state === "offline") {
        const params = query({ channel: sub.channel, since: sub.cursor, ...filter });
        const body = await this.getJSON(`${this.api}/events?${params}`);
        if (body.reset) {
          sub.cursor = null;
          await this.pollOne(sub);
          return;
        }
        for (const frame of body.results) this.deliver(frame);
        if (body.seq > sub.cursor) sub.cursor = body.seq;
        more = body.has_more;
      }
    } catch {
      // The API is unreachable too; the next round tries again.
    }
  }

  async getJSON(url) {
    const response = await this.fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401 || response.status === 403) this.signedOut();
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }
}

// A POST of JSON to the API as the pages make it: the session's cookie and
// its CSRF token. `fetcher`: fetch, or a client's own.
export function postJson(url, body = {}, fetcher = globalThis.fetch.bind(globalThis)) {
  return fetcher(url, {
    method: "POST",
    headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
}

export function csrfToken() {
  const match = (globalThis.document?.cookie || "").match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}
