// The output pane's terminal model: colours, carriage returns, split escapes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { PLAIN, Terminal, applySgr, plainText } from "../static/switchboard/js/terminal.js";

const texts = (ops) => ops.filter((op) => op.op === "text").map((op) => op.text);

test("plain text and newlines", () => {
  const ops = new Terminal().feed("one\ntwo\r\nthree");
  assert.deepEqual(
    ops.map((op) => op.op),
    ["text", "newline", "text", "newline", "text"],
  );
  assert.deepEqual(texts(ops), ["one", "two", "three"]);
  assert.equal(ops[0].style, PLAIN);
});

test("a carriage return without a newline rewrites the line (a tqdm bar)", () => {
  const ops = new Terminal().feed(" 10%|█         |\r 50%|█████     |\r100%|██████████|\n");
  assert.deepEqual(
    ops.map((op) => op.op),
    ["text", "return", "text", "return", "text", "newline"],
  );
});

test("a CRLF split across chunks is one newline", () => {
  const terminal = new Terminal();
  const first = terminal.feed("line\r");
  const second = terminal.feed("\nnext");
  assert.deepEqual([...first, ...second].map((op) => op.op), ["text", "return", "newline", "text"]);
});

test("colours and attributes become a style, reset by 0", () => {
  const ops = new Terminal().feed("\x1b[1;31mFAIL\x1b[0m ok \x1b[92mPASS\x1b[39m end");
  assert.deepEqual(texts(ops), ["FAIL", " ok ", "PASS", " end"]);
  assert.deepEqual({ ...ops[0].style }, { bold: true, fg: 1 });
  assert.equal(ops[1].style, PLAIN);
  assert.deepEqual({ ...ops[2].style }, { fg: 10 });
  assert.equal(ops[3].style, PLAIN);
});

test("256 colours and true colour", () => {
  assert.equal(applySgr(PLAIN, "38;5;196").fg, "rgb(255,0,0)");
  assert.equal(applySgr(PLAIN, "38;5;4").fg, 4);
  assert.equal(applySgr(PLAIN, "48;5;244").bg, "rgb(128,128,128)");
  assert.equal(applySgr(PLAIN, "38;2;10;20;300").fg, "rgb(10,20,255)");
  assert.equal(applySgr(PLAIN, "38;5").fg, undefined); // malformed: ignored
});

test("an escape split across chunks is carried, not shown", () => {
  const terminal = new Terminal();
  const a = terminal.feed("red: \x1b[3");
  const b = terminal.feed("1mR\x1b");
  const c = terminal.feed("[0m.");
  assert.deepEqual(texts([...a, ...b, ...c]), ["red: ", "R", "."]);
  assert.equal(b.find((op) => op.text === "R").style.fg, 1);
});

test("cursor moves, titles and other controls are not drawn", () => {
  const input = "a\x1b[2Ab\x1b]0;title\x07c\x07d\x08e\x1b(Bf\x1b[?25lg";
  assert.equal(plainText(input), "abcdefg");
  const ops = new Terminal().feed("x\x1b[2Ky");
  assert.deepEqual(ops.map((op) => op.op), ["text", "clear", "text"]);
});

test("a stray or malformed escape is dropped, and text goes on", () => {
  assert.equal(plainText("a\x1b[zzz b"), "azz b"); // ESC [ z is a whole (unknown) sequence
  const long = "1;".repeat(100);
  assert.equal(plainText(`a\x1b[${long}`), `a${long}`); // too long to be unfinished
  const terminal = new Terminal();
  assert.deepEqual(texts(terminal.feed("a\x1b[1")), ["a"]);
  assert.deepEqual(texts(terminal.feed("mb")), ["b"]);
});

test("HTML stays text", () => {
  assert.deepEqual(texts(new Terminal().feed("<b>x</b>&amp;")), ["<b>x</b>&amp;"]);
});
