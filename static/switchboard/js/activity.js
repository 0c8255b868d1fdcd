// The workspace's activity list: who did what, when (cancel, pause, resume,
// retry, answer, a question's expiry), from the stored events on page load, then from the
// socket's frames whose data names who (`by`), on resume too.

import { clone, link, setText, when } from "./ui.js";

const DONE = { cancel: "cancelled", pause: "paused", resume: "resumed", retry: "retried", answer: "answered", expire: "expired" };
const SHOWN = 100;
const NAME = 80; // a question's prompt, cut to this for the list

// The same shape as sessions_app/activity.py's entry().
export function entryOf(frame) {
  const data = frame.data || {};
  if (!("by" in data)) return null;
  const kind = frame.event.split(".")[0];
  const on = kind === "task" || kind === "question" ? kind : "session";
  return {
    seq: frame.seq,
    by: data.by,
    action: data.action || frame.event,
    on,
    id: data.task_id || data.id,
    name: on === "question" ? (data.prompt || "").slice(0, NAME) : data.name || "",
    ts: frame.ts,
  };
}

export class Activity {
  constructor(list, empty, sessionId, entries = []) {
    Object.assign(this, { list, empty, sessionId, entries: new Map() });
    for (const entry of entries) this.entries.set(entry.seq, entry);
    this.draw();
  }

  see(frame) {
    const entry = entryOf(frame);
    if (!entry || this.entries.has(entry.seq)) return;
    this.entries.set(entry.seq, entry);
    this.draw();
  }

  draw() {
    const newest = [...this.entries.values()].sort((a, b) => b.seq - a.seq).slice(0, SHOWN);
    this.list.textContent = "";
    for (const entry of newest) {
      const row = clone("activity-row");
      row.dataset.seq = entry.seq;
      setText(row, "when", when(entry.ts)).dateTime = entry.ts;
      setText(row, "by", entry.by ?? "system");
      setText(row, "action", DONE[entry.action] || entry.action);
      setText(row, "on", entry.on);
      const name = setText(row, "name", entry.name);
      name.href = entry.on !== "session" ? link(`/sessions/${this.sessionId}/#task-${entry.id}`) : link(`/sessions/${this.sessionId}/`);
      this.list.append(row);
    }
    this.empty.hidden = newest.length > 0;
  }
}
