// Streamed output as a terminal shows it: ANSI colours (SGR), carriage
// returns that rewrite the current line (a tqdm bar is one updating line),
// other control sequences dropped. No DOM here, so it is unit-tested in Node.

const ESC = "\x1b";
const MAX_CARRY = 64; // an unfinished escape sequence longer than this is dropped

// The 16 colours are classes (themed in CSS); 256-colour and true-colour codes
// become CSS colours.
function color256(n) {
  if (n < 16) return n;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const step = (c) => (c ? 55 + c * 40 : 0);
  return `rgb(${step(Math.floor(i / 36))},${step(Math.floor(i / 6) % 6)},${step(i % 6)})`;
}

const byte = (v) => Math.max(0, Math.min(255, Number(v) || 0));

// A style is a frozen object shared by every run written while it holds:
// {fg, bg} (0-15 or a CSS colour), bold, dim, italic, underline.
export const PLAIN = Object.freeze({});

export function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  const next = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) for (const key of Object.keys(next)) delete next[key];
    else if (code === 1) next.bold = true;
    else if (code === 2) next.dim = true;
    else if (code === 3) next.italic = true;
    else if (code === 4) next.underline = true;
    else if (code === 22) delete next.bold, delete next.dim;
    else if (code === 23) delete next.italic;
    else if (code === 24) delete next.underline;
    else if (code >= 30 && code <= 37) next.fg = code - 30;
    else if (code >= 90 && code <= 97) next.fg = code - 90 + 8;
    else if (code >= 40 && code <= 47) next.bg = code - 40;
    else if (code >= 100 && code <= 107) next.bg = code - 100 + 8;
    else if (code === 39) delete next.fg;
    else if (code === 49) delete next.bg;
    else if (code === 38 || code === 48) {
      const key = code === 38 ? "fg" : "bg";
      if (codes[i + 1] === 5 && i + 2 < codes.length) {
        next[key] = color256(byte(codes[i + 2]));
        i += 2;
      } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
        next[key] = `rgb(${byte(codes[i + 2])},${byte(codes[i + 3])},${byte(codes[i + 4])})`;
        i += 4;
      } else break; // malformed: ignore the rest
    }
  }
  return Object.keys(next).length ? Object.freeze(next) : PLAIN;
}

// Feeds chunks in; gets back operations for a view:
//   {op: "text", text, style}  write text at the cursor
//   {op: "newline"}            end the line
//   {op: "return"}             back to the line's start: the next text replaces the line
//   {op: "clear"}              erase the line (ESC[2K)
// An escape sequence split across chunks is carried to the next one.
export class Terminal {
  constructor() {
    this.style = PLAIN;
    this.carry = "";
  }

  feed(chunk) {
    const input = this.carry + chunk;
    this.carry = "";
    const ops = [];
    let text = "";
    const flush = () => {
      if (text) ops.push({ op: "text", text, style: this.style });
      text = "";
    };
    for (let i = 0; i < input.length; i++) {
      const ch = input[i];
      if (ch === "\n") {
        flush();
        ops.push({ op: "newline" });
      } else if (ch === "\r") {
        flush();
        if (input[i + 1] !== "\n") ops.push({ op: "return" });
      } else if (ch === ESC) {
        const rest = input.slice(i);
        if (rest.length === 1) {
          this.carry = rest; // the rest comes with the next chunk
          break;
        }
        if (rest[1] === "[") {
          const match = /^\x1b\[([0-?]*)([ -/]*)([@-~])/.exec(rest);
          if (!match) {
            if (rest.length <= MAX_CARRY && /^\x1b\[[0-?]*[ -/]*$/.test(rest)) {
              this.carry = rest; // unfinished: wait for the next chunk
              break;
            }
            i += 1; // malformed: ESC [ dropped
            continue;
          }
          const [whole, params, , final] = match;
          if (final === "m") {
            flush();
            this.style = applySgr(this.style, params);
          } else if (final === "K" && (params === "2" || params === "1")) {
            flush();
            ops.push({ op: "clear" });
          }
          // Cursor moves and the rest are not drawn.
          i += whole.length - 1;
        } else if (rest[1] === "]") {
          // OSC (a window title, a hyperlink): up to BEL or ESC \.
          const end = rest.search(/\x07|\x1b\\/);
          if (end < 0) {
            if (rest.length <= MAX_CARRY) this.carry = rest;
            break;
          }
          i += end + (rest[end] === "\x07" ? 0 : 1);
        } else {
          // ESC, intermediates, a final byte (ESC ( B, ESC 7, ...).
          const match = /^\x1b[ -/]*[0-~]/.exec(rest);
          i += match ? match[0].length - 1 : 0;
        }
      } else if (ch === "\t" || ch >= " " || ch > "\x7f") {
        if (ch !== "\x7f") text += ch;
      }
      // Other control characters (bell, backspace, ...) are not drawn.
    }
    flush();
    return ops;
  }
}

// Puts a style on a node: classes for the 16 colours and attributes
// (themed in CSS: a-f1, a-b4, a-bold), CSS colours for the rest.
export function paint(node, style) {
  const classes = [];
  if (typeof style.fg === "number") classes.push(`a-f${style.fg}`);
  else if (style.fg) node.style.color = style.fg;
  if (typeof style.bg === "number") classes.push(`a-b${style.bg}`);
  else if (style.bg) node.style.backgroundColor = style.bg;
  for (const flag of ["bold", "dim", "italic", "underline"]) if (style[flag]) classes.push(`a-${flag}`);
  node.className = classes.join(" ");
  return node;
}

// [{text, style}] for one piece of text (a log message): colours applied,
// other escapes dropped, newlines kept as text.
export function ansiSegments(text) {
  const segments = [];
  for (const op of new Terminal().feed(text)) {
    if (op.op === "text") segments.push({ text: op.text, style: op.style });
    else if (op.op === "newline") segments.push({ text: "\n", style: PLAIN });
  }
  return segments;
}

// The text of a chunk without any escape sequences, for search and copies.
export function plainText(chunk) {
  const terminal = new Terminal();
  return terminal
    .feed(chunk)
    .map((op) => (op.op === "text" ? op.text : op.op === "newline" ? "\n" : ""))
    .join("");
}
