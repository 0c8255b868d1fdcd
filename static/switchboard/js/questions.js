// Questions jobs ask: the open ones the user can see, kept live from the
// `tasks` channel, counted in every page's top bar, a toast for each new one,
// and the card that shows one with a button per choice (or a text field).
//
// On load the open ones come from the API (one request), whose `seq` is
// where the `tasks` subscription starts, so no snapshot is read for it. A
// page that reads the `tasks` snapshot itself passes its handlers instead.

import { postJson } from "./socket.js";
import { $, link, time, toast } from "./ui.js";

export function watchQuestions(client, handlers = null) {
  const open = new Map();
  const seen = new Set(); // ids an event told of: newer than any list
  const listeners = [];
  const changed = () => {
    drawCount(open);
    for (const listener of listeners) listener(open);
  };
  const load = async () => {
    const response = await fetch(link("/api/v1/questions?status=open&limit=1000"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`questions: ${response.status}`);
    const body = await response.json();
    for (const question of body.results) if (!seen.has(question.id)) open.set(question.id, question);
    changed();
    return body.seq;
  };
  const see = (frame) => {
    if (!frame.event.startsWith("question.")) return;
    const question = frame.data;
    seen.add(question.id);
    if (question.status === "open") {
      if (!open.has(question.id)) {
        toast(`A task asks: ${question.prompt}`, "question", link(`/sessions/${question.session_id}/#task-${question.task_id}`));
      }
      open.set(question.id, question);
    } else open.delete(question.id);
    changed();
  };
  const reload = () => {
    open.clear();
    seen.clear();
    load().catch(() => {});
  };
  if (handlers) {
    client.subscribe("tasks", {
      onSnapshot(snapshot, seq, reset) {
        handlers.onSnapshot?.(snapshot, seq, reset);
        reload();
      },
      onEvent(frame) {
        see(frame);
        handlers.onEvent?.(frame);
      },
    });
  } else {
    load()
      .then((seq) => client.subscribe("tasks", { since: seq, onSnapshot: reload, onEvent: see }))
      .catch(() => client.subscribe("tasks", { onSnapshot: reload, onEvent: see }));
  }
  return {
    open,
    onChange(listener) {
      listeners.push(listener);
      listener(open);
    },
  };
}

function drawCount(open) {
  const box = $("#questions");
  if (!box) return;
  box.hidden = open.size === 0;
  box.querySelector(".n").textContent = String(open.size);
  box.querySelector(".word").textContent = open.size === 1 ? "open question" : "open questions";
  const first = [...open.values()].sort((a, b) => Number(a.id) - Number(b.id))[0];
  if (first) {
    box.href = link(`/sessions/${first.session_id}/#task-${first.task_id}`);
    box.title = [...open.values()].map((q) => q.prompt).slice(0, 10).join("\n");
  }
}

// Answer through the socket when it is up, else through the API.
export async function answerQuestion(client, id, answer) {
  if (client.state === "connected") {
    return (await client.request({ action: "answer_question", question_id: id, answer })).question;
  }
  const response = await postJson(link(`/api/v1/questions/${id}/answer`), { answer });
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.detail || String(response.status)), { frame: body });
  return body;
}

// One open question as a card: its prompt, and (when the user may change the
// task) a button per choice or a text field. User text goes in as text.
export function questionCard(question, { canChange, client, taskName }) {
  const card = document.createElement("div");
  card.className = "question";
  card.dataset.id = question.id;
  const head = document.createElement("div");
  head.className = "head small muted";
  head.textContent = headText(question, taskName);
  const prompt = document.createElement("p");
  prompt.className = "prompt";
  prompt.textContent = question.prompt;
  card.append(head, prompt);
  if (!canChange) return card;
  const actions = document.createElement("div");
  actions.className = "answers";
  const send = async (answer, controls) => {
    for (const control of controls) control.disabled = true;
    try {
      await answerQuestion(client, question.id, answer);
    } catch (error) {
      const first = error.frame?.question;
      if (first) toast(`Already ${first.status}: “${first.answer ?? ""}”${first.answered_by ? ` by ${first.answered_by}` : ""}`, "failed");
      else toast(`Could not answer: ${error.message}`, "failed");
      for (const control of controls) control.disabled = false;
    }
  };
  if (question.choices) {
    const buttons = question.choices.map((choice) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = choice;
      if (choice === question.default) button.classList.add("default");
      return button;
    });
    for (const button of buttons) button.addEventListener("click", () => send(button.textContent, buttons));
    actions.append(...buttons);
  } else {
    const form = document.createElement("form");
    const input = document.createElement("input");
    input.type = "text";
    input.required = true;
    input.maxLength = 2000;
    input.placeholder = "your answer";
    input.setAttribute("aria-label", "answer");
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Answer";
    form.append(input, button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value.trim()) send(input.value, [input, button]);
    });
    actions.append(form);
  }
  card.append(actions);
  return card;
}

function headText(question, taskName) {
  let text = taskName ? `${taskName} asks` : "The task asks";
  if (question.expires_at) text += ` · default “${question.default ?? "none"}” at ${time(question.expires_at)}`;
  return text;
}

// Draw the cards of `questions` into `box`, keeping the ones already drawn
// (a half-typed answer survives a redraw); hidden when there are none.
export function drawQuestions(box, questions, options) {
  if (!box) return;
  const wanted = new Map(questions.map((q) => [q.id, q]));
  for (const card of [...box.children]) if (!wanted.has(card.dataset.id)) card.remove();
  const drawn = new Map([...box.children].map((card) => [card.dataset.id, card]));
  for (const question of questions) {
    const taskName = options.taskName?.(question);
    const card = drawn.get(question.id);
    // A card drawn before the task's name was known gets it now.
    if (card) card.querySelector(".head").textContent = headText(question, taskName);
    else box.append(questionCard(question, { ...options, taskName }));
  }
  box.hidden = questions.length === 0;
}
