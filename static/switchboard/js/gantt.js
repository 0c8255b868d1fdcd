// The timeline of a session's tasks, drawn as SVG.

import { CLOCK } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
// The steps between the timeline's grid lines, in ms.
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
  .map((seconds) => seconds * 1000);

function node(name, attrs = {}, text = null) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== null) el.textContent = text;
  return el;
}

export function drawGantt(svg, tasks, now = Date.now()) {
  const width = Math.max(svg.clientWidth || 600, 320);
  const rowH = 22;
  const label = Math.min(180, width * 0.3);
  const top = 18;
  const height = top + Math.max(1, tasks.length) * rowH + 6;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", height);
  const parts = [];
  const starts = tasks.map((t) => Date.parse(t.started_at || t.created_at));
  const ends = tasks.map((t) => (t.finished_at ? Date.parse(t.finished_at) : now));
  const t0 = Math.min(...starts, now);
  const t1 = Math.max(...ends, t0 + 1000);
  const x = (t) => label + ((t - t0) / (t1 - t0)) * (width - label - 8);
  // Grid lines at whole steps of the clock (1 s, 2 s, 5 s … a day), as many
  // as fit: each label names a different second, however short the run.
  const most = width < 560 ? 3 : 5;
  const step = STEPS.find((s) => (t1 - t0) / s <= most) ?? STEPS[STEPS.length - 1];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const gx = x(t);
    const anchor = gx < label + 30 ? "start" : gx > width - 38 ? "end" : "middle";
    parts.push(node("line", { x1: gx, x2: gx, y1: top - 4, y2: height, stroke: "currentColor", "stroke-opacity": 0.12 }));
    parts.push(node("text", { class: "tick", x: gx, y: 11, "text-anchor": anchor },
      new Date(t).toLocaleTimeString([], CLOCK)));
  }
  tasks.forEach((task, i) => {
    const y = top + i * rowH;
    parts.push(node("rect", { class: "track", x: label, y: y + 3, width: width - label - 8, height: rowH - 6, rx: 3 }));
    const name = task.name.length > 26 ? `${task.name.slice(0, 25)}…` : task.name;
    parts.push(node("text", { x: 4, y: y + rowH / 2 + 4 }, name));
    const start = x(starts[i]);
    const end = Math.max(start + 2, x(ends[i]));
    const bar = node("rect", {
      class: "t", "data-status": task.status, "data-id": task.id,
      x: start, y: y + 4, width: end - start, height: rowH - 8, rx: 3,
    });
    bar.append(node("title", {}, `${task.name}: ${task.status}, ${Math.round(task.progress)}%`));
    parts.push(bar);
  });
  svg.replaceChildren(...parts);
}
