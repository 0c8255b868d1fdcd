import { renderRows, sessionRow } from "./rows.js";
import { $, coalesce, clone, link, setText, startSocket, watchSessions } from "./ui.js";
import { watchQuestions } from "./questions.js";

const STATUSES = ["running", "pending", "paused", "completed", "failed", "cancelled"];
const sessions = new Map();
let counts = {};

const draw = coalesce(drawNow);
// A failed session, or one with a failed task (whatever the session says).
const hasFailed = (s) => s.status === "failed" || s.failed_tasks > 0;

function drawNow() {
  const box = $("#counts");
  box.replaceChildren(
    ...STATUSES.map((status) => {
      const card = clone("count-card");
      card.href = link(`/sessions/?status=${status}`);
      card.dataset.status = status;
      setText(card, "n", counts[status] || 0);
      setText(card, "k", status);
      return card;
    }),
  );
  const all = [...sessions.values()].sort((a, b) => Number(b.id) - Number(a.id));
  renderRows($("#running"), all.filter((s) => s.status === "running"), sessionRow, $("#running-empty"));
  renderRows($("#failures"), all.filter(hasFailed).slice(0, 10), sessionRow, $("#failures-empty"));
}

const client = startSocket();
watchQuestions(client);
watchSessions(client, {
  onSnapshot(snapshot) {
    sessions.clear();
    for (const s of snapshot.sessions) sessions.set(s.id, s);
    counts = { ...snapshot.counts };
    draw();
  },
  onEvent(frame) {
    const before = sessions.get(frame.data.id);
    if (frame.event === "session.update") {
      if (before) counts[before.status] = (counts[before.status] || 1) - 1;
      else if (Number(frame.data.id) < oldestKnown()) recount();
      counts[frame.data.status] = (counts[frame.data.status] || 0) + 1;
      sessions.set(frame.data.id, frame.data);
    } else if (frame.event === "session.deleted") {
      if (before) counts[before.status] -= 1;
      else recount();
      sessions.delete(frame.data.id);
    }
    draw();
  },
});

// The page holds the newest sessions only; a change to an older one (whose
// previous status it does not know) is counted again by the server.
const oldestKnown = () => Math.min(...[...sessions.keys()].map(Number));
let recounting = null;
function recount() {
  clearTimeout(recounting);
  recounting = setTimeout(async () => {
    const response = await fetch(link("/api/v1/snapshot?channel=sessions"), { credentials: "same-origin" });
    if (response.ok) {
      counts = { ...(await response.json()).snapshot.counts };
      draw();
    }
  }, 1000);
}
// Durations of running sessions move on their own.
setInterval(draw, 1000);
