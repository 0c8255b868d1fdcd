// Small DOM helpers shared by the pages. User text always goes in with
// textContent: names, messages and log lines are untrusted.

import { MAX_TRIES, Switchboard } from "./socket.js";

export const $ = (selector, root = document) => root.querySelector(selector);

// Where the site lives ("" at the root of a host, "/switchboard" under a
// path): every URL the pages make starts with it.
export const ROOT = (document.documentElement.dataset.root || "/").replace(/\/+$/, "");
export const link = (path) => `${ROOT}${path}`;
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

// A copy of a <template> of the page: the same markup for the first render and live updates.
export function clone(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

export function field(root, name) {
  return root.querySelector(`[data-f="${name}"]`);
}

export function setText(root, name, value) {
  const node = field(root, name);
  if (node && node.textContent !== String(value ?? "")) node.textContent = value ?? "";
  return node;
}

export function setStatus(node, status, cancelling = false) {
  if (!node) return;
  node.textContent = status;
  node.dataset.status = status;
  node.dataset.cancelling = cancelling && status === "running" ? "true" : "false";
}

export function setBar(bar, percent, status) {
  if (!bar) return;
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  bar.dataset.status = status || "";
  bar.querySelector("span").style.width = `${value}%`;
  const label = value % 1 === 0 ? `${value}%` : `${value.toFixed(1)}%`;
  bar.querySelector("b").textContent = label;
  bar.setAttribute("aria-valuenow", String(value));
}

// Calls fn at most once per animation frame, however often it is asked: a task
// that reports a thousand times a second redraws sixty times.
export function coalesce(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

export function time(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleTimeString([], CLOCK);
}

// One clock on every page: 24-hour, as the log lines show it.
export const CLOCK = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today ? time(iso) : date.toLocaleString([], { dateStyle: "short", timeStyle: "medium", hourCycle: "h23" });
}

export function duration(ms) {
  if (ms < 0 || !Number.isFinite(ms)) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function toast(text, kind = "completed", href = null) {
  const box = document.getElementById("toasts");
  const node = document.createElement(href ? "a" : "div");
  node.className = "toast";
  node.dataset.kind = kind;
  if (href) node.href = href;
  node.textContent = text;
  box.append(node);
  setTimeout(() => node.remove(), 6000);
  while (box.children.length > 4) box.firstElementChild.remove();
}

const TERMINAL_TOASTS = new Set(["completed", "failed"]);

// Remembers statuses, and toasts when something finishes or fails.
export class Watcher {
  constructor(label) {
    this.statuses = new Map();
    this.label = label;
  }

  seed(items) {
    for (const item of items) this.statuses.set(item.id, item.status);
  }

  see(item, href) {
    const before = this.statuses.get(item.id);
    this.statuses.set(item.id, item.status);
    if (before !== undefined && before !== item.status && TERMINAL_TOASTS.has(item.status)) {
      toast(`${this.label} “${item.name}” ${item.status}`, item.status, href);
    }
  }
}

// The page's socket, drawn in the header's indicator.
export function startSocket() {
  const box = document.getElementById("connection");
  const label = box.querySelector(".label");
  const retry = box.querySelector(".retry");
  const words = { connecting: "connecting…", connected: "live", offline: "offline · polling" };
  const draw = (state, client) => {
    box.dataset.state = state;
    // Parts of the page that say whether they are live listen for this.
    document.dispatchEvent(new CustomEvent("switchboard:state", { detail: state }));
    if (state === "signed_out") {
      // Polling would only be refused again: say so, and where to log in.
      const login = document.createElement("a");
      login.href = link(`/admin/login/?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`);
      login.textContent = "log in again";
      label.replaceChildren("signed out — ", login);
      retry.hidden = true;
      toast("You were signed out. Log in again to see live updates.", "failed", login.href);
      return;
    }
    label.textContent =
      state === "reconnecting" ? `reconnecting ${Math.min(client.attempt, MAX_TRIES)}/${MAX_TRIES}` : words[state];
    retry.hidden = state === "connected" || state === "connecting";
  };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const client = new Switchboard({ onState: draw, url: `${scheme}://${location.host}${ROOT}/ws/`, api: link("/api/v1") });
  retry.addEventListener("click", () => client.retryNow());
  const describe = () => {
    const parts = [`state: ${client.state}`];
    if (client.rtt !== null) parts.push(`round trip ${client.rtt} ms`);
    if (client.lastEventAt) parts.push(`last event ${Math.round((Date.now() - client.lastEventAt) / 1000)} s ago`);
    box.title = parts.join(" · ");
  };
  box.addEventListener("mouseenter", describe);
  box.addEventListener("focus", describe);
  box.tabIndex = 0;
  globalThis.switchboard = client; // for the browser's devtools and bench/render.py
  return client.start();
}

// Toasts for sessions on every page; the page may pass a handler for the events too.
export function watchSessions(client, handlers = {}) {
  const watcher = new Watcher("Session");
  return client.subscribe("sessions", {
    onSnapshot(snapshot, seq, reset) {
      watcher.seed(snapshot.sessions);
      handlers.onSnapshot?.(snapshot, seq, reset);
    },
    onEvent(frame) {
      if (frame.event === "session.update") watcher.see(frame.data, link(`/sessions/${frame.data.id}/`));
      handlers.onEvent?.(frame);
    },
  });
}
