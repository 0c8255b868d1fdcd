// A virtualized log list: only the rows in sight exist in the DOM, so 100,000
// lines scroll as smoothly as 100. Rows have one height; a multi-line entry
// (a stack trace) shows its first line and "+N lines", and opens in full in
// the detail pane. Messages are untrusted: text nodes only.

import { PLAIN, ansiSegments, paint } from "./terminal.js";
import { link } from "./ui.js";

const LEVEL_NAMES = { 10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL" };

export function levelName(entry) {
  return entry.level || LEVEL_NAMES[entry.levelno] || `Level ${entry.levelno}`;
}

// Appends `text` to `parent` with ANSI colours and the search term marked.
export function fillText(parent, text, term) {
  const needle = term ? term.toLowerCase() : "";
  for (const segment of ansiSegments(text)) {
    const holder = segment.style === PLAIN ? parent : paint(document.createElement("span"), segment.style);
    if (holder !== parent) parent.append(holder);
    if (!needle) {
      holder.append(segment.text);
      continue;
    }
    const lower = segment.text.toLowerCase();
    let at = 0;
    for (let hit = lower.indexOf(needle); hit !== -1; hit = lower.indexOf(needle, at)) {
      holder.append(segment.text.slice(at, hit));
      const mark = document.createElement("mark");
      mark.textContent = segment.text.slice(hit, hit + needle.length);
      holder.append(mark);
      at = hit + needle.length;
    }
    holder.append(segment.text.slice(at));
  }
}

// The lines a log.skipped notice stands for, through the API (same filters).
export async function fetchSkipped(sessionId, notice, filters = new URLSearchParams()) {
  const query = new URLSearchParams(filters);
  query.set("after", String(Number(notice.first_id) - 1));
  query.set("before", String(Number(notice.last_id) + 1));
  query.set("limit", String(Math.min(10000, notice.count)));
  const response = await fetch(link(`/api/v1/sessions/${sessionId}/logs?${query}`), { credentials: "same-origin" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()).entries;
}

const isError = (entry) => (entry.skipped ? entry.skipped.errors > 0 : entry.levelno >= 40);
// A "lines skipped" row sorts just before the first line it stands for.
const key = (entry) => (entry.skipped ? Number(entry.skipped.first_id) - 0.5 : Number(entry.id));

export class LogView {
  constructor(box, { detail = null, pausedBar = null, permalink = null, onOlder = null, onLatest = null, onSkipped = null, onFill = null } = {}) {
    this.onSkipped = onSkipped;
    this.onFill = onFill;
    this.box = box;
    this.detail = detail;
    this.pausedBar = pausedBar;
    this.permalink = permalink;
    this.onOlder = onOlder;
    this.onLatest = onLatest;
    this.entries = [];
    this.ids = new Set();
    this.term = "";
    this.following = true;
    this.unseen = 0;
    this.unseenErrors = 0;
    this.selected = null;
    this.atStart = false;
    this.rowHeight = parseFloat(getComputedStyle(box).getPropertyValue("--row")) || 22;
    this.spacer = document.createElement("div");
    this.spacer.className = "spacer";
    // Said in the box when it holds no line: why, and what will fill it.
    this.emptyNote = document.createElement("p");
    this.emptyNote.className = "log-empty";
    this.emptyNote.hidden = true;
    this.emptyText = "No log lines yet. They appear here as they are written.";
    box.replaceChildren(this.spacer, this.emptyNote);
    this.rows = new Map();
    this.queued = false;
    box.addEventListener("scroll", () => this.scrolled(), { passive: true });
    window.addEventListener("resize", () => this.draw());
    pausedBar?.querySelector("button")?.addEventListener("click", () => this.jumpToLatest());
  }

  setEmpty(text, error = false) {
    this.emptyText = text;
    this.emptyNote.classList.toggle("error", error);
    this.draw();
  }

  setTerm(term) {
    this.term = term || "";
    this.redrawAll();
  }

  reset(entries) {
    this.entries = [];
    this.ids.clear();
    this.atStart = false;
    this.following = true;
    this.unseen = this.unseenErrors = 0;
    this.add(entries);
    this.redrawAll();
    this.scrollToBottom();
  }

  // Newer lines: shown at once when following, counted when paused.
  append(entries) {
    const fresh = this.add(entries);
    if (!fresh.length) return;
    if (!this.following) {
      this.unseen += fresh.length;
      this.unseenErrors += fresh.filter(isError).length;
    }
    this.draw();
    if (this.following) this.scrollToBottom();
  }

  // Older lines, from paging back: the view stays on the line it showed.
  prepend(entries, atStart) {
    const before = this.entries.length;
    this.add(entries);
    const added = this.entries.length - before;
    this.atStart = atStart;
    this.size();
    this.box.scrollTop += added * this.rowHeight;
    this.redrawAll();
  }

  add(entries) {
    const fresh = entries.filter((e) => !this.ids.has(e.id));
    if (!fresh.length) return fresh;
    for (const e of fresh) this.ids.add(e.id);
    const newest = this.entries.length ? key(this.entries[this.entries.length - 1]) : -1;
    if (fresh.every((e) => key(e) > newest)) this.entries.push(...fresh);
    else {
      this.entries.push(...fresh);
      this.entries.sort((a, b) => key(a) - key(b));
    }
    return fresh;
  }

  // A flood notice from the server: one row that stands for the lines not sent.
  skip(notice, ts) {
    const entry = { id: `skip-${notice.first_id}`, ts, skipped: notice, message: "", levelno: 0 };
    this.add([entry]);
    if (!this.following) {
      this.unseen += notice.count;
      this.unseenErrors += notice.errors;
    }
    this.draw();
    if (this.following) this.scrollToBottom();
  }

  // The lines a notice stood for, in its place.
  fill(notice, entries) {
    const id = `skip-${notice.first_id}`;
    this.entries = this.entries.filter((e) => e.id !== id);
    this.ids.delete(id);
    this.add(entries);
    this.redrawAll();
    this.onFill?.();
  }

  scrolled() {
    const bottom = this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - this.rowHeight * 1.5;
    if (bottom && !this.following) {
      this.following = true;
      this.unseen = this.unseenErrors = 0;
    } else if (!bottom && this.following && this.entries.length * this.rowHeight > this.box.clientHeight) {
      this.following = false;
    }
    if (this.box.scrollTop < this.rowHeight * 20 && !this.atStart) this.onOlder?.();
    this.draw();
  }

  // The spacer's height now, not at the next frame: scrolling depends on it.
  size() {
    this.spacer.style.height = `${this.entries.length * this.rowHeight}px`;
  }

  scrollToBottom() {
    this.size();
    this.box.scrollTop = this.box.scrollHeight;
  }

  jumpToLatest() {
    this.following = true;
    this.unseen = this.unseenErrors = 0;
    if (this.onLatest) this.onLatest();
    else this.scrollToBottom();
    this.draw();
  }

  scrollToIndex(index) {
    this.size();
    this.following = index >= this.entries.length - 1;
    const top = index * this.rowHeight - this.box.clientHeight / 2;
    this.box.scrollTop = Math.max(0, top);
    this.draw();
  }

  select(id, scroll = true) {
    this.selected = id;
    const index = this.entries.findIndex((e) => e.id === id);
    if (index >= 0 && scroll) this.scrollToIndex(index);
    this.showDetail(this.entries[index]);
    this.redrawAll();
  }

  // The next entry after the selected one (or the top of the view) that matches.
  next(predicate) {
    const from = this.selected ? this.entries.findIndex((e) => e.id === this.selected) : -1;
    for (let i = from + 1; i < this.entries.length; i++) {
      if (predicate(this.entries[i])) {
        this.select(this.entries[i].id);
        return true;
      }
    }
    return false;
  }

  nextMatch() {
    const term = this.term.toLowerCase();
    return term ? this.next((e) => e.message.toLowerCase().includes(term)) : false;
  }

  nextError() {
    return this.next(isError);
  }

  showDetail(entry) {
    if (!this.detail) return;
    this.detail.hidden = !entry;
    this.detail.replaceChildren();
    if (!entry) return;
    fillText(this.detail, `${entry.ts} ${levelName(entry)} ${entry.logger || ""}\n${entry.message}`, this.term);
    if (entry.extra && typeof entry.extra === "object" && Object.keys(entry.extra).length) {
      const fields = document.createElement("div");
      fields.className = "extra";
      fields.textContent = JSON.stringify(entry.extra, null, 2);
      this.detail.append(fields);
    }
  }

  redrawAll() {
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.draw();
  }

  draw() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.drawNow();
    });
  }

  drawNow() {
    const h = this.rowHeight;
    this.emptyNote.textContent = this.emptyText;
    this.emptyNote.hidden = this.entries.length > 0 || !this.emptyText;
    this.size();
    const first = Math.max(0, Math.floor(this.box.scrollTop / h) - 10);
    const last = Math.min(this.entries.length, Math.ceil((this.box.scrollTop + this.box.clientHeight) / h) + 10);
    const keep = new Set();
    for (let i = first; i < last; i++) {
      const entry = this.entries[i];
      keep.add(entry.id);
      let row = this.rows.get(entry.id);
      if (!row) {
        row = this.makeRow(entry);
        this.rows.set(entry.id, row);
        this.spacer.append(row);
      }
      row.style.top = `${i * h}px`;
    }
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    if (this.pausedBar) {
      this.pausedBar.hidden = this.following;
      const button = this.pausedBar.querySelector("button");
      const errors = this.unseenErrors ? ` (${this.unseenErrors} error${this.unseenErrors > 1 ? "s" : ""})` : "";
      button.textContent = this.unseen ? `${this.unseen} new${errors} · jump to latest` : "jump to latest";
    }
  }

  makeRow(entry) {
    if (entry.skipped) return this.makeSkippedRow(entry);
    const row = document.createElement("div");
    const level = levelName(entry);
    row.className = `logrow${isError(entry) ? " error" : ""}${entry.id === this.selected ? " target" : ""}`;
    row.id = `L${entry.id}`;
    row.dataset.id = entry.id;
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = entry.ts.slice(11, 23);
    ts.title = entry.ts;
    const lv = document.createElement("span");
    lv.className = `lv lv-${level}`;
    lv.textContent = level;
    const msg = document.createElement("span");
    msg.className = "msg";
    const lines = entry.message.split("\n");
    fillText(msg, lines[0], this.term);
    const extra = entry.extra && typeof entry.extra === "object" ? Object.entries(entry.extra) : [];
    if (extra.length) {
      const fields = document.createElement("span");
      fields.className = "extra";
      fields.textContent = extra.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
      fields.title = JSON.stringify(entry.extra, null, 1);
      msg.append(" ", fields);
    }
    row.append(ts, lv, msg);
    if (lines.length > 1) {
      const more = document.createElement("span");
      more.className = "more";
      more.textContent = `+${lines.length - 1} lines`;
      row.append(more);
    }
    if (this.permalink) {
      const link = document.createElement("a");
      link.className = "perma";
      link.href = this.permalink(entry);
      link.textContent = "¶";
      link.title = "link to this line";
      row.append(link);
    }
    row.addEventListener("click", (event) => {
      if (event.target.tagName !== "A") this.select(entry.id, false);
    });
    return row;
  }

  makeSkippedRow(entry) {
    const { count, errors } = entry.skipped;
    const row = document.createElement("div");
    row.className = `logrow skipped${errors ? " error" : ""}`;
    row.dataset.id = entry.id;
    const button = document.createElement("button");
    button.type = "button";
    const what = `${count.toLocaleString()} line${count === 1 ? "" : "s"} skipped`;
    button.textContent = `${what}${errors ? ` (${errors.toLocaleString()} error${errors === 1 ? "" : "s"})` : ""} — load them`;
    button.title = "Too many lines at once to show live; these were left out and can be loaded now.";
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.textContent = "loading…";
      try {
        this.fill(entry.skipped, await this.onSkipped(entry.skipped));
      } catch {
        button.disabled = false;
        button.textContent = `${what} — could not load; try again`;
      }
    });
    row.append(button);
    return row;
  }
}
