// The timeline of a session's tasks, drawn as SVG.

import { CLOCK } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

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
  const ticks = width < 560 ? 2 : 4;
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + ((t1 - t0) * i) / ticks;
    const gx = x(t);
    parts.push(node("line", { x1: gx, x2: gx, y1: top - 4, y2: height, stroke: "currentColor", "stroke-opacity": 0.12 }));
    parts.push(node("text", { x: gx, y: 11, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" },
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
