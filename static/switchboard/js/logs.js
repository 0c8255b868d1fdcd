import { LogView, fetchSkipped, levelName } from "./logview.js";
import { $, CLOCK, link, startSocket, toast, watchSessions } from "./ui.js";
import { watchQuestions } from "./questions.js";

const root = $("#viewer");
const sessionId = root.dataset.session;
const form = $("#filters");
const client = startSocket();
watchQuestions(client);
watchSessions(client);

const view = new LogView($("#log"), {
  detail: $("#detail"),
  pausedBar: $("#paused"),
  permalink: (entry) => `${location.pathname}${location.search}#L${entry.id}`,
  onOlder: () => older(),
  onLatest: () => latest(),
  onFill: () => showStatus(),
  onSkipped: (notice) => fetchSkipped(sessionId, notice, apiParams()),
});

let live = null;
let loadingOlder = false;
let atEnd = true;

// Filters live in the URL, so a view can be shared as a link.
function filters() {
  const params = new URLSearchParams(location.search);
  const out = {};
  for (const key of ["level", "task", "q", "since", "until"]) if (params.get(key)) out[key] = params.get(key);
  return out;
}

// The time range of the URL as ISO instants, and what in it is not a time.
const TIME_LABELS = { since: "from", until: "to" };
function times() {
  const f = filters();
  const valid = {};
  const bad = [];
  for (const key of ["since", "until"]) {
    if (!f[key]) continue;
    const when = new Date(f[key]);
    if (Number.isNaN(when.getTime())) bad.push(`“${TIME_LABELS[key]}” (${f[key]}) is not a date and time`);
    else valid[key] = when.toISOString();
  }
  if (valid.since && valid.until && valid.since > valid.until) bad.push("“from” is after “to”");
  return { valid, bad };
}

function emptyText() {
  const f = filters();
  const parts = [];
  if (f.level) parts.push(`level ${f.level} and above`);
  if (f.task) parts.push(`task ${f.task}`);
  if (f.q) parts.push(`text “${f.q}”`);
  if (f.since || f.until) parts.push("the time range");
  const later = f.until ? "" : " New lines that match appear here as they are written.";
  if (!parts.length) return "No log lines yet. They appear here as they are written.";
  return `No lines match ${parts.join(", ")}.${later}`;
}

function apiParams(extra = {}) {
  const f = filters();
  const params = new URLSearchParams();
  for (const key of ["level", "task", "q"]) if (f[key]) params.set(key, f[key]);
  for (const [key, value] of Object.entries(times().valid)) params.set(key, value);
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  return params;
}

async function page(extra) {
  const response = await fetch(link(`/api/v1/sessions/${sessionId}/logs?${apiParams(extra)}`), { credentials: "same-origin" });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail || `HTTP ${response.status}`);
  }
  return response.json();
}

// What following means while the socket is away: the lines still come, by polling.
function liveWord() {
  if (client.state === "connected") return "live";
  if (client.state === "offline") return "offline · polling for new lines";
  if (client.state === "signed_out") return "signed out · not following";
  return "reconnecting…";
}

document.addEventListener("switchboard:state", () => showStatus());

function showStatus() {
  const f = filters();
  const lines = view.entries.filter((e) => !e.skipped).length;
  const parts = [`${lines.toLocaleString()} lines loaded`];
  if (view.atStart) parts.push("from the first line");
  parts.push(live ? liveWord() : f.until ? "time range (not live)" : "not following");
  $("#status").textContent = parts.join(" · ");
}

function fillForm() {
  const f = filters();
  for (const key of ["level", "task", "q", "since", "until"]) form.elements[key].value = f[key] || "";
  view.setTerm(f.q || "");
  const download = new URLSearchParams(apiParams());
  $("#download").href = link(`/sessions/${sessionId}/logs/download?${download}`);
}

async function load() {
  live?.unsubscribe();
  live = null;
  fillForm();
  const { bad } = times();
  if (bad.length) {
    view.reset([]);
    view.setEmpty(`This view cannot be shown: ${bad.join("; ")}. Change it above, or clear it.`, true);
    $("#status").textContent = "no lines loaded";
    return;
  }
  view.setEmpty(emptyText());
  const target = location.hash.startsWith("#L") ? location.hash.slice(2) : null;
  try {
    if (target && /^\d+$/.test(target)) {
      const [before, after] = await Promise.all([
        page({ before: String(Number(target) + 1), limit: "200" }),
        page({ after: target, limit: "500" }),
      ]);
      view.reset([...before.entries, ...after.entries]);
      view.atStart = !before.has_more;
      atEnd = !after.has_more;
      view.select(target);
    } else {
      const first = await page({});
      view.reset(first.entries);
      view.atStart = !first.has_more;
      atEnd = true;
    }
  } catch (error) {
    view.reset([]);
    view.setEmpty(`Could not load the log: ${error.message}`, true);
    toast(`Could not load the log: ${error.message}`, "failed");
    return;
  }
  if (atEnd && !filters().until) follow();
  showStatus();
  drawRate();
}

function follow() {
  const f = filters();
  const seqs = view.entries.map((e) => e.seq);
  const since = seqs.length ? Math.max(...seqs) : null;
  const filter = {};
  if (f.level) filter.level = f.level;
  if (f.task) filter.task = f.task;
  if (f.q) filter.q = f.q;
  const from = times().valid.since || null;
  live = client.subscribe(`logs:${sessionId}`, {
    since,
    filter: Object.keys(filter).length ? filter : null,
    onSnapshot(snapshot, seq, reset) {
      if (reset) view.reset(snapshot.entries);
      else view.append(snapshot.entries);
      showStatus();
    },
    onEvent(frame) {
      if (frame.event === "log.skipped") {
        view.skip(frame.data, frame.ts);
        showStatus();
        return;
      }
      const entries = from ? frame.data.entries.filter((e) => e.ts >= from) : frame.data.entries;
      view.append(entries);
      for (const entry of entries) countRate(entry);
      showStatus();
    },
  });
}

async function older() {
  if (loadingOlder || view.atStart || !view.entries.length) return;
  loadingOlder = true;
  try {
    const result = await page({ before: view.entries[0].id, limit: "500" });
    view.prepend(result.entries, !result.has_more);
    showStatus();
  } finally {
    loadingOlder = false;
  }
}

function latest() {
  if (atEnd && live) {
    view.scrollToBottom();
    return;
  }
  history.replaceState(null, "", `${location.pathname}${location.search}`);
  load();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const key of ["level", "task", "q", "since", "until"]) {
    const value = form.elements[key].value.trim();
    if (value) params.set(key, value);
  }
  history.pushState(null, "", `${location.pathname}?${params}`);
  load();
});
window.addEventListener("popstate", load);
window.addEventListener("hashchange", load);

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.metaKey || event.ctrlKey || event.altKey) return;
  if (event.key === "n") view.nextMatch() || toast("No more matches.", "completed");
  else if (event.key === "e") view.nextError() || toast("No more errors.", "completed");
  else if (event.key === "G" || event.key === "End") view.jumpToLatest();
  else if (event.key === "/") {
    event.preventDefault();
    form.elements.q.focus();
  } else return;
  event.preventDefault();
});

// Lines a minute by level, last hour: from the server, then counted live.
const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
let buckets = [];

async function drawRate() {
  const task = filters().task;
  // The last hour, or less for a young session, so its bars are not squeezed to one side.
  const age = (Date.now() - Date.parse(root.dataset.created)) / 60000;
  const minutes = Math.round(Math.min(60, Math.max(10, age + 1)));
  const response = await fetch(
    link(`/api/v1/sessions/${sessionId}/logs/rate?minutes=${minutes}${task ? `&task=${task}` : ""}`),
    { credentials: "same-origin" },
  );
  if (response.ok) buckets = (await response.json()).buckets;
  paintRate();
}

function countRate(entry) {
  const minute = new Date(entry.ts);
  minute.setSeconds(0, 0);
  let bucket = buckets.find((b) => Date.parse(b.ts) === minute.getTime());
  if (!bucket) {
    bucket = { ts: minute.toISOString(), counts: {} };
    buckets.push(bucket);
    buckets = buckets.slice(-Math.max(10, buckets.length - 1));
  }
  const level = levelName(entry);
  bucket.counts[level] = (bucket.counts[level] || 0) + 1;
  paintSoon();
}

let painting = false;
function paintSoon() {
  if (painting) return;
  painting = true;
  setTimeout(() => {
    painting = false;
    paintRate();
  }, 500);
}

function paintRate() {
  const svg = $("#rate");
  const width = svg.clientWidth || 600;
  const height = 70;
  const ns = "http://www.w3.org/2000/svg";
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const peak = Math.max(1, ...buckets.map((b) => Object.values(b.counts).reduce((a, c) => a + c, 0)));
  const w = width / Math.max(10, buckets.length);
  const parts = [];
  buckets.forEach((bucket, i) => {
    let y = height - 12;
    for (const level of LEVELS) {
      const n = bucket.counts[level] || 0;
      if (!n) continue;
      const h = (n / peak) * (height - 16);
      const rect = document.createElementNS(ns, "rect");
      Object.entries({ x: i * w + 1, y: y - h, width: Math.max(1, w - 2), height: h }).forEach(([k, v]) => rect.setAttribute(k, v));
      rect.dataset.level = level;
      const title = document.createElementNS(ns, "title");
      title.textContent = `${new Date(bucket.ts).toLocaleTimeString([], CLOCK)}: ${n} ${level}`;
      rect.append(title);
      parts.push(rect);
      y -= h;
    }
  });
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 4);
  label.setAttribute("y", height - 2);
  label.setAttribute("font-size", "10");
  label.setAttribute("fill", "currentColor");
  label.textContent = `lines a minute, last ${buckets.length} minutes (peak ${peak})`;
  parts.push(label);
  svg.replaceChildren(...parts);
}

load();
setInterval(drawRate, 60000);
