import { drawGantt } from "./gantt.js";
import { LogView, fetchSkipped } from "./logview.js";
import { renderRows, taskRow } from "./rows.js";
import { csrfToken } from "./socket.js";
import { $, Watcher, coalesce, duration, field, setBar, setStatus, setText, startSocket, toast, watchSessions } from "./ui.js";

const root = $("#workspace");
const sessionId = root.dataset.session;
const canChange = root.dataset.canChange === "true";
let session = null;
const tasks = new Map();
const watcher = new Watcher("Task");

const client = startSocket();
watchSessions(client);

async function cancel(id, button) {
  button.disabled = true;
  try {
    const ack = await client.cancelTask(id);
    if (!ack.changed) toast("That task had already ended.", "completed");
  } catch (error) {
    toast(`Could not cancel: ${error.message}`, "failed");
    button.disabled = false;
  }
}

const rowOptions = { onCancel: canChange ? cancel : null };

const draw = coalesce(() => {
  if (session) {
    setText(root, "name", session.name);
    setStatus(field(root, "status"), session.status);
    setText(root, "completed", session.completed_tasks);
    setText(root, "total", session.total_tasks);
    const percent = session.total_tasks ? (100 * session.completed_tasks) / session.total_tasks : 0;
    setBar(field(root, "bar"), Math.round(percent * 10) / 10, session.status);
    const start = Date.parse(session.started_at || session.created_at);
    const end = session.finished_at ? Date.parse(session.finished_at) : Date.now();
    setText(root, "duration", duration(end - start));
    document.title = `${session.name} · Switchboard`;
    const cancelSession = $("#cancel-session");
    if (cancelSession) cancelSession.hidden = ["completed", "failed", "cancelled"].includes(session.status);
  }
  const list = [...tasks.values()].sort((a, b) => Number(a.id) - Number(b.id));
  renderRows($("#tasks"), list, (task, row) => {
    row = taskRow(task, row, rowOptions);
    row.classList.toggle("target", task.id === selected);
    return row;
  }, $("#tasks-empty"));
  drawGantt($("#gantt"), list);
});

client.subscribe(`session:${sessionId}`, {
  onSnapshot(snapshot) {
    session = snapshot.session;
    tasks.clear();
    for (const task of snapshot.tasks) tasks.set(task.id, task);
    watcher.seed(snapshot.tasks);
    if (!selected && location.hash.startsWith("#task-")) select(location.hash.slice(6));
    draw();
  },
  onEvent(frame) {
    const data = frame.data;
    if (frame.event === "session.update") session = data;
    else if (frame.event === "session.deleted") toast("This session was deleted.", "failed");
    else if (frame.event === "task.update") {
      tasks.set(data.id, data);
      watcher.see(data, `#task-${data.id}`);
    } else if (frame.event === "task.deleted") tasks.delete(data.id);
    else if (frame.event === "progress.update") {
      const task = tasks.get(data.task_id);
      if (task) Object.assign(task, { progress: data.progress, message: data.message, details: data.details });
      if (session) Object.assign(session, { completed_tasks: data.completed_tasks, total_tasks: data.total_tasks });
      if (data.task_id === selected) $("#output-state").textContent = data.message || "";
    }
    draw();
  },
});
setInterval(draw, 1000);

// Streamed output of the selected task.
let selected = null;
let outputSub = null;

function select(taskId) {
  if (selected === taskId || !tasks.has(taskId)) return;
  selected = taskId;
  outputSub?.unsubscribe();
  const output = $("#output");
  output.textContent = "";
  $("#output-task").textContent = `Output of “${tasks.get(taskId).name}”`;
  $("#output-state").textContent = tasks.get(taskId).message || "";
  outputSub = client.subscribe(`task:${taskId}`, {
    onSnapshot(snapshot) {
      output.textContent = snapshot.output.text;
      if (snapshot.output.final) $("#output-state").textContent = "done";
      output.scrollTop = output.scrollHeight;
    },
    onEvent(frame) {
      if (frame.event !== "task.output") return;
      const stick = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
      output.append(frame.data.chunk);
      if (frame.data.final) $("#output-state").textContent = "done";
      if (stick) output.scrollTop = output.scrollHeight;
    },
  });
  draw();
}

$("#tasks").addEventListener("click", (event) => {
  const row = event.target.closest("tr");
  if (!row || event.target.closest("button")) return;
  if (event.target.closest("a")) event.preventDefault();
  history.replaceState(null, "", `#task-${row.dataset.id}`);
  select(row.dataset.id);
});

// The live log of the session.
const log = new LogView($("#log"), {
  detail: $("#log-detail"),
  pausedBar: $("#log-paused"),
  permalink: (entry) => `/sessions/${sessionId}/logs/#L${entry.id}`,
  onSkipped: (notice) => fetchSkipped(sessionId, notice),
});
client.subscribe(`logs:${sessionId}`, {
  onSnapshot(snapshot) {
    log.reset(snapshot.entries);
  },
  onEvent(frame) {
    if (frame.event === "log.skipped") log.skip(frame.data, frame.ts);
    else log.append(frame.data.entries);
  },
});

$("#cancel-session")?.addEventListener("click", async (event) => {
  if (!confirm("Cancel this session and every task of it that has not ended?")) return;
  event.target.disabled = true;
  const response = await fetch(`/api/v1/sessions/${sessionId}/cancel`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/json" },
    body: "{}",
  });
  if (!response.ok) toast(`Could not cancel the session (${response.status}).`, "failed");
  event.target.disabled = false;
});
