import { Pages, renderRows, sessionRow } from "./rows.js";
import { $, coalesce, startSocket, watchSessions } from "./ui.js";
import { watchQuestions } from "./questions.js";

const params = new URLSearchParams(location.search);
const wanted = { status: params.get("status") || "", q: (params.get("q") || "").toLowerCase() };
const sessions = new Map();

function matches(session) {
  if (wanted.status && session.status !== wanted.status) return false;
  if (!wanted.q) return true;
  return `${session.name} ${session.external_id || ""}`.toLowerCase().includes(wanted.q);
}

const draw = coalesce(drawNow);

function drawNow() {
  const shown = [...sessions.values()].filter(matches).sort((a, b) => Number(b.id) - Number(a.id));
  renderRows($("#rows"), shown, sessionRow, $("#empty"));
  $("#count").textContent = pages.describe(shown.length);
}

const query = new URLSearchParams();
if (wanted.status) query.set("status", wanted.status);
if (wanted.q) query.set("q", wanted.q);
const pages = new Pages("/api/v1/sessions", query, (results) => {
  for (const session of results) if (!sessions.has(session.id)) sessions.set(session.id, session);
  draw();
}, $("#more"));

const client = startSocket();
watchQuestions(client);
pages.next();
watchSessions(client, {
  onSnapshot(snapshot) {
    for (const s of snapshot.sessions) sessions.set(s.id, s);
    draw();
  },
  onEvent(frame) {
    const known = sessions.get(frame.data.id);
    if (frame.event === "session.update") {
      if (!known && matches(frame.data)) pages.counted(1);
      sessions.set(frame.data.id, frame.data);
    }
    if (frame.event === "session.deleted" && known) {
      if (matches(known)) pages.counted(-1);
      sessions.delete(frame.data.id);
    }
    draw();
  },
});
setInterval(draw, 1000);
