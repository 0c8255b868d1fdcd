// Rows of the session and task tables, from the page's <template>s.

import { clone, duration, field, setBar, setStatus, setText, when } from "./ui.js";

export function sessionRow(session, row = clone("session-row")) {
  row.dataset.id = session.id;
  const link = setText(row, "name", session.name);
  link.href = `/sessions/${session.id}/`;
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

export function taskRow(task, row = clone("task-row"), { sessionName, onCancel } = {}) {
  row.dataset.id = task.id;
  const link = setText(row, "name", task.name);
  link.href = `/sessions/${task.session_id}/#task-${task.id}`;
  const session = field(row, "session");
  if (session) session.textContent = sessionName ? sessionName(task.session_id) : "";
  setStatus(field(row, "status"), task.status, task.cancel_requested);
  setBar(field(row, "bar"), task.progress, task.status);
  const failure = task.status === "failed" && task.error;
  setText(row, "message", failure ? task.error : task.message || "");
  const details = Object.entries(task.details || {})
    .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" · ");
  const detailNode = setText(row, "details", details);
  if (detailNode) detailNode.title = details;
  setText(row, "updated", when(task.updated_at));
  const actions = field(row, "actions");
  if (actions && onCancel) {
    let button = actions.querySelector("button");
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
  return row;
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
