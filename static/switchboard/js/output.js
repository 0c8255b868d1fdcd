// The output pane of a task: streamed text drawn as a terminal would (ANSI
// colours, carriage-return progress bars), typed out as it arrives, with the
// run's status steps inline and in order. Keeps a bounded number of lines.
// All user text goes in through textContent / Text nodes.

import { PLAIN, Terminal, paint } from "./terminal.js";

const STEP_ICONS = { thinking: "…", tool_calling: "→", tool_completed: "✔", completed: "●" };
const FOLD_AT = 80; // arguments longer than this are folded
const TYPE_FRAMES = 8; // the typewriter drains what is queued within about this many frames

function words(status) {
  return status.replaceAll("_", " ");
}

// A step's name as read: a tool call that ended in an error "failed", not "completed".
function stepName(step) {
  if (step.status === "tool_completed" && step.data?.error) return "tool failed";
  return words(step.status);
}

function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// One line of text for a step: the status line, the task row, search.
export function stepText(step) {
  const data = step.data || {};
  let line = stepName(step);
  if (data.tool) line += ` ${shown(data.tool)}`;
  if (step.message) line += ` — ${step.message}`;
  if (data.error) line += ` — error: ${shown(data.error)}`;
  return line;
}

// What a running task is doing now, for its row: "Calling search…".
export function stepSummary(step) {
  const data = step.data || {};
  const tool = data.tool ? shown(data.tool) : "a tool";
  if (step.status === "thinking") return step.message ? `Thinking: ${step.message}` : "Thinking…";
  if (step.status === "tool_calling") return `Calling ${tool}…`;
  if (step.status === "tool_completed") return data.error ? `${tool} failed` : `${tool} done`;
  if (step.status === "completed") return "Completed";
  return step.message ? `${words(step.status)}: ${step.message}` : `${words(step.status)}…`;
}

function seconds(value) {
  if (!Number.isFinite(value) || value < 0) return "";
  return value < 10 ? `${value.toFixed(2)} s` : `${value.toFixed(1)} s`;
}

export class OutputView {
  constructor(root, { maxLines = 2000, typewriter = true, onStep = null } = {}) {
    this.root = root;
    this.maxLines = maxLines;
    this.typewriter = typewriter && !matchMedia("(prefers-reduced-motion: reduce)").matches;
    this.onStep = onStep;
    this.keyword = "";
    this.queue = [];
    this.queued = 0;
    this.frame = null;
    this.reset();
    // Follows the newest text while the reader is at the end.
    root.addEventListener("scroll", () => {
      this.atEnd = root.scrollTop + root.clientHeight >= root.scrollHeight - 24;
    });
  }

  reset() {
    cancelAnimationFrame(this.frame);
    this.frame = null;
    this.queue = [];
    this.queued = 0;
    this.terminal = new Terminal();
    this.line = null; // the open line
    this.replace = false; // after a carriage return: the next text replaces the line
    this.lines = 0;
    this.trimmed = 0;
    this.calls = new Map(); // tool -> when its call started
    this.steps = 0;
    this.matches = 0;
    this.root.textContent = "";
    this.atEnd = true;
    this.note = document.createElement("div");
    this.note.className = "trimmed";
    this.note.hidden = true;
    this.root.append(this.note);
  }

  // A snapshot: {text, steps: [{status, message, data, ts, at}]}, drawn at once.
  load({ text = "", steps = [] }) {
    this.reset();
    this.loading = true;
    let from = 0;
    for (const step of steps) {
      this.write(text.slice(from, step.at), { now: true });
      this.step(step, { now: true });
      from = Math.max(from, step.at);
    }
    this.write(text.slice(from), { now: true });
    this.loading = false;
    this.render();
  }

  write(chunk, { now = false } = {}) {
    if (!chunk) return;
    for (const op of this.terminal.feed(chunk)) this.enqueue(op);
    this.schedule(now);
  }

  step(step, { now = false } = {}) {
    this.enqueue({ op: "step", step });
    this.schedule(now);
  }

  enqueue(op) {
    this.queue.push(op);
    if (op.op === "text") this.queued += op.text.length;
  }

  schedule(now) {
    if (now || !this.typewriter || document.hidden) {
      this.drain(Infinity);
      if (!this.loading) this.render();
    } else if (this.frame === null) {
      this.frame = requestAnimationFrame(() => this.tick());
    }
  }

  tick() {
    this.frame = null;
    // Enough characters a frame that the queue empties within TYPE_FRAMES:
    // a typing effect for a trickle, no lag at hundreds of tokens a second.
    this.drain(Math.max(2, Math.ceil(this.queued / TYPE_FRAMES)));
    this.render();
    if (this.queue.length) this.frame = requestAnimationFrame(() => this.tick());
  }

  // Applies queued operations, at most `budget` characters of text.
  drain(budget) {
    while (this.queue.length && budget > 0) {
      const op = this.queue[0];
      // A line rewritten after a carriage return (a progress bar) is drawn
      // whole, not typed out again.
      if (op.op === "text" && op.text.length > budget && !this.replace) {
        this.text(op.text.slice(0, budget), op.style);
        op.text = op.text.slice(budget);
        this.queued -= budget;
        return;
      }
      this.queue.shift();
      if (op.op === "text") {
        this.text(op.text, op.style);
        this.queued -= op.text.length;
        budget -= op.text.length;
      } else if (op.op === "newline") {
        this.openLine();
        this.line = null;
        this.replace = false;
      } else if (op.op === "return") {
        this.replace = true;
      } else if (op.op === "clear") {
        if (this.line) this.line.textContent = "";
      } else if (op.op === "step") {
        this.drawStep(op.step);
      }
    }
  }

  openLine() {
    if (!this.line) {
      this.line = document.createElement("div");
      this.line.className = "ol";
      this.root.append(this.line);
      this.lines += 1;
    }
    return this.line;
  }

  text(text, style) {
    const line = this.openLine();
    if (this.replace) {
      line.textContent = "";
      this.replace = false;
    }
    const last = line.lastChild;
    if (last && last.style_ === style) {
      (last.nodeType === Node.TEXT_NODE ? last : last.firstChild).appendData(text);
      return;
    }
    let node;
    if (style === PLAIN) {
      node = document.createTextNode(text);
    } else {
      node = paint(document.createElement("span"), style);
      node.append(text);
    }
    node.style_ = style;
    line.append(node);
  }

  drawStep(step) {
    this.line = null; // text after a step starts a new line
    this.replace = false;
    const data = step.data || {};
    const failed = Boolean(data.error);
    const node = document.createElement("div");
    node.className = `step${failed ? " failed" : ""}`;
    node.dataset.status = step.status;
    const icon = document.createElement("span");
    icon.className = "icon";
    icon.textContent = failed ? "✖" : STEP_ICONS[step.status] || "•";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = stepName(step);
    node.append(icon, label);
    if (data.tool) {
      const tool = document.createElement("b");
      tool.textContent = ` ${shown(data.tool)}`;
      node.append(tool);
    }
    if (data.args !== undefined) node.append(" ", this.folded(shown(data.args), "args"));
    if (step.message) node.append(` — ${step.message}`);
    const took = this.duration(step);
    if (took) {
      const time = document.createElement("span");
      time.className = "took";
      time.textContent = took;
      node.append(" ", time);
    }
    if (failed) {
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = ` error: ${shown(data.error)}`;
      node.append(error);
    } else if (data.result !== undefined) {
      node.append(" ", this.folded(shown(data.result), "result"));
    }
    node.title = stepText(step);
    node.dataset.text = `${stepText(step)} ${data.args !== undefined ? shown(data.args) : ""}`.toLowerCase();
    this.steps += 1;
    this.match(node);
    this.root.append(node);
    this.lines += 1;
    this.onStep?.(step);
  }

  // Short values inline; long ones folded behind their first characters.
  folded(text, name) {
    if (text.length <= FOLD_AT) {
      const code = document.createElement("code");
      code.textContent = text;
      return code;
    }
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `${name} ${text.slice(0, FOLD_AT - 20)}…`;
    const full = document.createElement("pre");
    full.textContent = text;
    details.append(summary, full);
    return details;
  }

  // A tool's time: the `seconds` it reported, or from its call to its end.
  duration(step) {
    const data = step.data || {};
    const key = shown(data.tool ?? "");
    const at = step.ts ? Date.parse(step.ts) : NaN;
    if (step.status === "tool_calling") {
      this.calls.set(key, at);
      return "";
    }
    if (step.status !== "tool_completed") return "";
    const started = this.calls.get(key);
    this.calls.delete(key);
    if (typeof data.seconds === "number") return seconds(data.seconds);
    return seconds((at - started) / 1000);
  }

  // The keyword filter: only steps that match, text lines hidden.
  filter(keyword) {
    this.keyword = keyword.trim().toLowerCase();
    this.root.classList.toggle("filtering", Boolean(this.keyword));
    this.matches = 0;
    for (const node of this.root.querySelectorAll(".step")) this.match(node);
    return this.matches;
  }

  match(node) {
    const hit = !this.keyword || node.dataset.text.includes(this.keyword);
    node.classList.toggle("hit", hit);
    if (hit) this.matches += 1;
  }

  // Bounds the lines kept and keeps the newest in view when it was.
  render() {
    const over = this.lines - this.maxLines;
    if (over > 0) {
      for (let i = 0; i < over; i++) {
        const first = this.note.nextSibling;
        if (!first) break;
        if (first === this.line) this.line = null;
        if (first.classList.contains("step")) {
          this.steps -= 1;
          if (first.classList.contains("hit")) this.matches -= 1;
        }
        first.remove();
      }
      this.lines -= over;
      this.trimmed += over;
      this.note.hidden = false;
      this.note.textContent = `${this.trimmed.toLocaleString()} earlier lines are not shown here.`;
    }
    if (this.atEnd) this.root.scrollTop = this.root.scrollHeight;
  }
}
