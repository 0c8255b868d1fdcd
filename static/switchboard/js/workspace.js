import { Activity } from "./activity.js";
import { drawGantt } from "./gantt.js";
import { LogView, fetchSkipped } from "./logview.js";
import { OutputView, stepSummary, stepText } from "./output.js";
import { drawQuestions, watchQuestions } from "./questions.js";
import { renderRows, taskRow } from "./rows.js";
import { postJson } from "./socket.js";
import { $, Watcher, coalesce, duration, field, link, setBar, setStatus, setText, startSocket, toast, watchSessions } from "./ui.js";

const root = $("#workspace");
const sessionId = root.dataset.session;
const canChange = root.dataset.canChange === "true";
let session = null;
const tasks = new Map();
const watcher = new Watcher("Task");

const client = startSocket();
watchSessions(client);
const questions = watchQuestions(client);

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

// The latest step of each task (steps come on the session's channel too),
// shown in its row while it runs and is newer than its message.
const latestStep = new Map();
const messageSeq = new Map();

function activity(task) {
  const latest = latestStep.get(task.id);
  if (task.status !== "running" || !latest || latest.seq < (messageSeq.get(task.id) || 0)) return null;
  return stepSummary(latest.step);
}

// Pause or resume (`action`), as cancel.
async function pauseOrResume(id, action, button) {
  button.disabled = true;
  try {
    const ack = await client.taskAction(action, id);
    if (!ack.changed) button.disabled = false;
  } catch (error) {
    toast(`Could not ${action}: ${error.message}`, "failed");
    button.disabled = false;
  }
}

// Retry through the API: the answer's `sent` says whether the work was sent
// to a Celery worker again, or why not.
async function retry(id, button) {
  button.disabled = true;
  try {
    const response = await postJson(link(`/api/v1/tasks/${id}/retry`));
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || String(response.status));
    const sent = body.sent;
    if (sent && sent.sent) toast(`Attempt ${body.attempt} sent to Celery: ${sent.name}.`, "completed");
    else if (sent) toast(`Attempt ${body.attempt} recorded, not sent: ${sent.reason}.`, "failed");
  } catch (error) {
    toast(`Could not retry: ${error.message}`, "failed");
    button.disabled = false;
  }
}

const actions = new Activity($("#activity"), $("#activity-empty"), sessionId, JSON.parse($("#activity-data").textContent));

const rowOptions = { onCancel: canChange ? cancel : null, onPause: canChange ? pauseOrResume : null, onRetry: canChange ? retry : null, activity };

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
  const mine = [...questions.open.values()].filter((q) => q.session_id === sessionId).sort((a, b) => Number(a.id) - Number(b.id));
  const asking = new Set(mine.map((q) => q.task_id));
  drawQuestionBoxes(mine);
  renderRows($("#tasks"), list, (task, row) => {
    row = taskRow(task, row, rowOptions);
    row.classList.toggle("target", task.id === selected);
    row.dataset.asking = asking.has(task.id) ? "true" : "false";
    return row;
  }, $("#tasks-empty"));
  drawGantt($("#gantt"), list);
  drawFacts($("#session-meta"), session ? Object.entries(session.metadata || {}) : []);
  const task = tasks.get(selected);
  const facts = [];
  if (task?.error) facts.push(["Error", task.error, "error"]);
  if (task && task.result != null) facts.push(["Result", task.result]);
  const [tokens, details] = tokenTotals(task?.details || {});
  if (tokens) facts.push(["Tokens", tokens]);
  if (Object.keys(details).length) facts.push(["Details", details]);
  drawFacts($("#task-facts"), facts);
});

// An agent run's token totals (details input_tokens, output_tokens,
// total_tokens, model_calls) as one line; the other details as they are.
const TOKEN_KEYS = ["input_tokens", "output_tokens", "total_tokens", "model_calls"];
function tokenTotals(details) {
  if (typeof details.total_tokens !== "number") return [null, details];
  const rest = Object.fromEntries(Object.entries(details).filter(([key]) => !TOKEN_KEYS.includes(key)));
  const count = (name) => (typeof details[name] === "number" ? details[name].toLocaleString("en") : "?");
  const calls = typeof details.model_calls === "number" ? ` · ${count("model_calls")} model calls` : "";
  return [`${count("total_tokens")} (${count("input_tokens")} in, ${count("output_tokens")} out)${calls}`, rest];
}

questions.onChange(() => draw());

// The session's open questions above the tasks, the selected task's in its run view.
function drawQuestionBoxes(mine) {
  const options = { canChange, client, taskName: (q) => `“${tasks.get(q.task_id)?.name ?? `task ${q.task_id}`}”` };
  drawQuestions($("#session-questions"), mine, options);
  drawQuestions($("#task-questions"), mine.filter((q) => q.task_id === selected), { ...options, taskName: null });
}

// Key/value facts (a session's metadata; a task's error, result and details), as text.
function drawFacts(list, facts) {
  const text = (value) => {
    if (typeof value === "string") return value;
    const line = JSON.stringify(value);
    return line.length <= 80 ? line : JSON.stringify(value, null, 2);
  };
  const key = JSON.stringify(facts.map(([name, value, kind]) => [name, text(value), kind]));
  if (list.dataset.drawn === key) return;
  list.dataset.drawn = key;
  list.textContent = "";
  for (const [name, value, kind] of facts) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = text(value);
    if (kind) detail.className = kind;
    list.append(term, detail);
  }
  list.hidden = facts.length === 0;
}

client.subscribe(`session:${sessionId}`, {
  onSnapshot(snapshot) {
    session = snapshot.session;
    tasks.clear();
    for (const task of snapshot.tasks) tasks.set(task.id, task);
    latestStep.clear();
    for (const [id, step] of Object.entries(snapshot.latest_steps || {})) {
      // Only when no message came after it.
      if (Date.parse(step.ts) >= Date.parse(tasks.get(id)?.updated_at)) latestStep.set(id, { step, seq: step.seq });
    }
    messageSeq.clear();
    watcher.seed(snapshot.tasks);
    if (!selected && location.hash.startsWith("#task-")) select(location.hash.slice(6));
    selectTheOnlyTask();
    draw();
  },
  onEvent(frame) {
    const data = frame.data;
    actions.see(frame);
    if (frame.event === "session.update") session = data;
    else if (frame.event === "session.deleted") toast("This session was deleted.", "failed");
    else if (frame.event === "task.output" && data.status) {
      latestStep.set(data.task_id, { step: data, seq: frame.seq });
    } else if (frame.event === "task.update") {
      if (data.message !== tasks.get(data.id)?.message) messageSeq.set(data.id, frame.seq);
      tasks.set(data.id, data);
      watcher.see(data, `#task-${data.id}`);
      selectTheOnlyTask();
    } else if (frame.event === "task.deleted") tasks.delete(data.id);
    else if (frame.event === "progress.update") {
      const task = tasks.get(data.task_id);
      if (data.message && data.message !== task?.message) messageSeq.set(data.task_id, frame.seq);
      if (task) Object.assign(task, { progress: data.progress, message: data.message, details: data.details });
      if (session) Object.assign(session, { completed_tasks: data.completed_tasks, total_tasks: data.total_tasks });
      if (data.task_id === selected && data.message) outputState.textContent = data.message;
    }
    draw();
  },
});
setInterval(draw, 1000);

// Streamed output of the selected task, with its steps.
let selected = null;
let outputSub = null;
const output = new OutputView($("#output"));
const outputState = $("#output-state");

$("#output-filter").addEventListener("input", (event) => {
  const found = output.filter(event.target.value);
  $("#output-found").textContent = event.target.value.trim() ? `${found} of ${output.steps} steps` : "";
});

// A session of one task: its output is what there is to watch.
function selectTheOnlyTask() {
  if (!selected && tasks.size === 1) select(tasks.keys().next().value);
}

function select(taskId) {
  if (selected === taskId || !tasks.has(taskId)) return;
  selected = taskId;
  outputSub?.unsubscribe();
  output.reset();
  $("#output-task").textContent = `Output of “${tasks.get(taskId).name}”`;
  outputState.textContent = tasks.get(taskId).message || "";
  outputSub = client.subscribe(`task:${taskId}`, {
    onSnapshot(snapshot) {
      const { steps = [], final } = snapshot.output;
      output.load(snapshot.output);
      output.filter($("#output-filter").value);
      if (final) outputState.textContent = "done";
      else if (steps.length) outputState.textContent = stepText(steps[steps.length - 1]);
    },
    onEvent(frame) {
      if (frame.event !== "task.output") return;
      if (typeof frame.data.chunk === "string") {
        output.write(frame.data.chunk);
        if (frame.data.final) outputState.textContent = "done";
      } else if (frame.data.status) {
        output.step({ ...frame.data, ts: frame.ts });
        outputState.textContent = stepText(frame.data);
      }
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
  permalink: (entry) => link(`/sessions/${sessionId}/logs/#L${entry.id}`),
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
  const response = await postJson(link(`/api/v1/sessions/${sessionId}/cancel`));
  if (!response.ok) toast(`Could not cancel the session (${response.status}).`, "failed");
  event.target.disabled = false;
});
