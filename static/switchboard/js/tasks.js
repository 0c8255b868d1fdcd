import { Pages, renderRows, taskRow } from "./rows.js";
import { $, coalesce, link, Watcher, startSocket, toast, watchSessions } from "./ui.js";
import { watchQuestions } from "./questions.js";

const params = new URLSearchParams(location.search);
const wanted = {
  status: params.get("status") || "",
  session: params.get("session") || "",
  q: (params.get("q") || "").toLowerCase(),
};
const tasks = new Map();
const names = new Map();
const watcher = new Watcher("Task");

function matches(task) {
  if (wanted.status && task.status !== wanted.status) return false;
  if (wanted.session && task.session_id !== wanted.session) return false;
  return !wanted.q || `${task.name} ${task.external_id || ""}`.toLowerCase().includes(wanted.q);
}

async function cancel(id, button) {
  button.disabled = true;
  try {
    await client.cancelTask(id);
  } catch (error) {
    toast(`Could not cancel: ${error.message}`, "failed");
    button.disabled = false;
  }
}

// Controls only for those who may act on the tasks listed (not viewers).
const canChange = $("#tasks-page").dataset.canChange === "true";
const options = { sessionName: (id) => names.get(id) || `session ${id}`, onCancel: canChange ? cancel : null };

const draw = coalesce(drawNow);

function drawNow() {
  const shown = [...tasks.values()].filter(matches).sort((a, b) => Number(b.id) - Number(a.id));
  renderRows($("#rows"), shown, (task, row) => taskRow(task, row, options), $("#empty"));
  $("#count").textContent = pages.describe(shown.length);
}

const query = new URLSearchParams();
for (const key of ["status", "session", "q"]) if (wanted[key]) query.set(key, wanted[key]);
const pages = new Pages("/api/v1/tasks", query, (results) => {
  for (const task of results) if (!tasks.has(task.id)) tasks.set(task.id, task);
  draw();
}, $("#more"));

const client = startSocket();
pages.next();
watchSessions(client, {
  onSnapshot(snapshot) {
    for (const s of snapshot.sessions) names.set(s.id, s.name);
    draw();
  },
  onEvent(frame) {
    if (frame.event === "session.update") names.set(frame.data.id, frame.data.name);
  },
});
// The page reads the tasks snapshot: the open questions come with it.
watchQuestions(client, {
  onSnapshot(snapshot) {
    for (const t of snapshot.tasks) tasks.set(t.id, t);
    watcher.seed(snapshot.tasks);
    draw();
  },
  onEvent(frame) {
    if (frame.event === "task.update") {
      if (!tasks.has(frame.data.id) && matches(frame.data)) pages.counted(1);
      tasks.set(frame.data.id, frame.data);
      watcher.see(frame.data, link(`/sessions/${frame.data.session_id}/`));
    } else if (frame.event === "progress.update") {
      const task = tasks.get(frame.data.task_id);
      if (task) Object.assign(task, { progress: frame.data.progress, message: frame.data.message });
    } else if (frame.event === "task.deleted") {
      const known = tasks.get(frame.data.id);
      if (known && matches(known)) pages.counted(-1);
      tasks.delete(frame.data.id);
    } else if (frame.event === "session.deleted") {
      for (const [id, task] of tasks) if (task.session_id === frame.data.id) tasks.delete(id);
    }
    draw();
  },
});
