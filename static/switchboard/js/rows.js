// Rows of the session and task tables, from the page's <template>s.

import { clone, duration, field, link, setBar, setStatus, setText, when } from "./ui.js";

export function sessionRow(session, row = clone("session-row")) {
  row.dataset.id = session.id;
  const name = setText(row, "name", session.name);
  name.href = link(`/sessions/${session.id}/`);
  setText(row, "external_id", session.external_id || "");
  setStatus(field(row, "status"), session.status);
  const percent = session.total_tasks ? (100 * session.completed_tasks) / session.total_tasks : 0;
  setBar(field(row, "bar"), Math.round(percent * 10) / 10, session.status);
  setText(row, "completed", session.completed_tasks);
  setText(row, "total", session.total_tasks);
  setText(row, "created", when(session.started_at || session.created_at));
  const start = Date.parse(session.started_at || session.created_at);
  const end = session.finished_at ? Date.parse(session.finished_at) : Date.now();
  setText(row, "duration", duration(end - start));
  return row;
}

export function taskRow(task, row = clone("task-row"), { sessionName, onCancel, onPause, onRetry, activity } = {}) {
  row.dataset.id = task.id;
  const name = setText(row, "name", task.name);
  name.href = link(`/sessions/${task.session_id}/#task-${task.id}`);
  const session = field(row, "session");
  if (session) session.textContent = sessionName ? sessionName(task.session_id) : "";
  setStatus(field(row, "status"), task.status, task.cancel_requested);
  const status = field(row, "status");
  if (status) status.dataset.paused = task.pause_requested && !["completed", "failed", "cancelled"].includes(task.status) ? "true" : "false";
  setBar(field(row, "bar"), task.progress, task.status);
  const failure = task.status === "failed" && task.error;
  const now = !failure && activity ? activity(task) : null;
  const message = setText(row, "message", failure ? task.error : now || task.message || "");
  if (message) message.classList.toggle("thinking", Boolean(now));
  const details = Object.entries(task.details || {})
    .map(([key, value]) => `${key}: ${detailText(key, value)}`)
    .join(" · ");
  const detailNode = setText(row, "details", details);
  if (detailNode) detailNode.title = details;
  setText(row, "updated", when(task.updated_at));
  const actions = field(row, "actions");
  if (actions && onCancel) {
    let button = actions.querySelector("button.danger");
    const cancellable = (task.status === "running" && !task.cancel_requested) || task.status === "pending";
    if (cancellable && !button) {
      button = document.createElement("button");
      button.className = "danger";
      button.textContent = "Cancel";
      button.addEventListener("click", () => onCancel(row.dataset.id, button));
      actions.append(button);
    } else if (!cancellable && button) {
      button.remove();
    }
  }
  if (actions && onPause) pauseButton(actions, task, row, onPause);
  if (actions && onRetry) retryButton(actions, task, row, onRetry);
  return row;
}

// Retry, for a task that failed or was cancelled: its next attempt (a Celery
// task is sent to its workers again).
function retryButton(actions, task, row, onRetry) {
  let button = actions.querySelector("button.retry-task");
  const ended = task.status === "failed" || task.status === "cancelled";
  if (!ended) {
    button?.remove();
    return;
  }
  if (!button) {
    button = document.createElement("button");
    button.className = "retry-task";
    button.textContent = "Retry";
    button.addEventListener("click", () => onRetry(row.dataset.id, button));
    actions.append(button);
  }
  if (button.dataset.attempt !== String(task.attempt)) {
    button.dataset.attempt = String(task.attempt);
    button.disabled = false;
  }
}

// A Celery task's recorded call is named by its task, not spelled out (the
// output panel shows it whole).
function detailText(key, value) {
  if (key === "celery" && value && typeof value.name === "string") return value.sendable ? value.name : `${value.name} (not sendable)`;
  return typeof value === "object" ? JSON.stringify(value) : value;
}

// Pause (or Resume, while paused) before Cancel, for a task that has not ended.
function pauseButton(actions, task, row, onPause) {
  let button = actions.querySelector("button.pause");
  const open = !["completed", "failed", "cancelled"].includes(task.status) && !task.cancel_requested;
  if (!open) {
    button?.remove();
    return;
  }
  if (!button) {
    button = document.createElement("button");
    button.className = "pause";
    button.addEventListener("click", () => onPause(row.dataset.id, button.dataset.action, button));
    actions.prepend(button);
  }
  const action = task.pause_requested ? "resume" : "pause";
  if (button.dataset.action !== action) {
    button.dataset.action = action;
    button.textContent = task.pause_requested ? "Resume" : "Pause";
    button.disabled = false;
  }
}

// Keeps a <tbody> in step with a map of items, newest first, and shows/hides its empty note.
export function renderRows(body, items, make, emptyNote) {
  const existing = new Map([...body.children].map((row) => [row.dataset.id, row]));
  let previous = null;
  for (const item of items) {
    let row = existing.get(item.id);
    row = make(item, row);
    existing.delete(item.id);
    const expected = previous ? previous.nextElementSibling : body.firstElementChild;
    if (row !== expected) body.insertBefore(row, expected);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
  if (emptyNote) emptyNote.hidden = items.length > 0;
}

// A list page's older rows from the API, a page at a time: "Show more" below
// the table fetches the next one (live rows arrive over the socket anyway).
export class Pages {
  constructor(path, query, add, button, size = 200) {
    Object.assign(this, { path, query, add, button, size, offset: 0, total: null, loading: false });
    button.addEventListener("click", () => this.next());
  }

  async next() {
    if (this.loading || this.offset === null) return;
    this.loading = this.button.disabled = true;
    const query = new URLSearchParams(this.query);
    query.set("limit", String(this.size));
    query.set("offset", String(this.offset));
    try {
      const response = await fetch(link(`${this.path}?${query}`), { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const page = await response.json();
      this.total = page.count;
      this.offset = page.next_offset;
      this.add(page.results);
    } catch (error) {
      this.button.title = `Could not load more: ${error.message}`;
    } finally {
      this.loading = this.button.disabled = false;
      this.button.hidden = this.offset === null;
    }
  }

  // A row that arrived live after the count was taken (`by` 1), or went (-1).
  counted(by) {
    if (this.total !== null) this.total = Math.max(0, this.total + by);
  }

  // "40 shown of 1,234": never fewer in all than shown (rows that came live
  // between the count and the socket's snapshot are not in the count).
  describe(shown) {
    if (this.total === null) return `${shown} shown`;
    const total = Math.max(this.total, shown);
    return `${shown.toLocaleString()} shown of ${total.toLocaleString()}`;
  }
}
