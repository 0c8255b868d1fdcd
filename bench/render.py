"""Page smoothness while a task reports as fast as the server takes it.

    .venv/bin/python bench/render.py [--seconds 5] [--writers 8]

Starts daphne on a fresh database (SQLite and the in-memory layer, or
DATABASE_URL / REDIS_URL from the environment), opens a session's workspace in
headless Chromium, and records the page's frame times (requestAnimationFrame
intervals). Baseline: the same page idle, in the same run. Load: `--writers`
threads PATCH one task's progress in a loop for `--seconds`; every write is a
progress.update the page must draw. Only 127.0.0.1 is used.
"""

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

from benchserver import PASSWORD, BenchServer
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
RECORD = """
window.frames_ = [];
let last = performance.now();
function tick(now) { window.frames_.push(now - last); last = now; requestAnimationFrame(tick); }
requestAnimationFrame(tick);
"""


def frame_stats(frames):
    ordered = sorted(frames)
    return (
        statistics.median(ordered),
        ordered[int(len(ordered) * 0.99) - 1],
        ordered[-1],
        sum(1 for f in ordered if f > 50),
    )


def main(args) -> None:
    with BenchServer(args.port) as server:
        base = server.base
        session = server.api("POST", "sessions", {"name": "render"})
        task = server.api("POST", f"sessions/{session['id']}/tasks", {"name": "fast"})
        server.api("PATCH", f"tasks/{task['id']}", {"status": "running"})
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/admin/login/?next=/sessions/{session['id']}/")
            page.fill("#id_username", "bench")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector(f"#tasks tr[data-id='{task['id']}']")
            page.evaluate(RECORD)
            time.sleep(args.seconds)
            idle = page.evaluate("window.frames_.splice(0)")

            stop = time.monotonic() + args.seconds
            writes = [0] * args.writers

            def writer(index):
                n = 0
                while time.monotonic() < stop:
                    n += 1
                    server.api("PATCH", f"tasks/{task['id']}", {"progress": (n % 1000) / 10})
                    writes[index] += 1

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(args.writers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            loaded = page.evaluate("window.frames_.splice(0)")
            final = server.api("PATCH", f"tasks/{task['id']}", {"progress": 99.9})
            page.wait_for_function(
                f"document.querySelector(\"#tasks tr[data-id='{task['id']}'] .bar b\").textContent === '99.9%'"
            )

            # The page alone at 1,000 reports a second: frames handed to its socket
            # client as if they had come over the wire, 10 every 10 ms.
            page.evaluate(
                """([channel, taskId, seconds]) => new Promise((done) => {
                  let seq = 1e12, sent = 0;
                  const timer = setInterval(() => {
                    for (let i = 0; i < 10; i++) {
                      seq += 1; sent += 1;
                      switchboard.deliver({type: "event", channel, event: "progress.update", seq,
                        ts: new Date().toISOString(),
                        data: {task_id: taskId, progress: (sent % 1000) / 10, message: `step ${sent}`,
                               details: {n: sent}, completed_tasks: 0, total_tasks: 1}});
                    }
                  }, 10);
                  setTimeout(() => { clearInterval(timer); window.injected_ = sent; done(); }, seconds * 1000);
                })""",
                [f"session:{session['id']}", task["id"], args.seconds],
            )
            injected = page.evaluate("window.injected_")
            flooded = page.evaluate("window.frames_.splice(0)")

            # The log view with 100,000 lines, scrolled from top to bottom in 2 s.
            page.goto(f"{base}/sessions/{session['id']}/logs/")
            page.wait_for_selector("#log")
            page.evaluate(RECORD)
            logrows = page.evaluate(
                r"""async () => {
                  const { LogView } = await import("/static/switchboard/js/logview.js");
                  const box = document.querySelector("#log");
                  const view = new LogView(box);
                  const levels = [10, 20, 20, 30, 40];
                  const names = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR"};
                  const entries = Array.from({length: 100000}, (_, i) => ({
                    id: String(i + 1), seq: i + 1, ts: new Date(1.7e12 + i * 10).toISOString(),
                    levelno: levels[i % 5], level: names[levels[i % 5]], logger: "bench",
                    message: `line ${i + 1} \u001b[32mok\u001b[0m` + (i % 50 ? "" : "\n  more"),
                  }));
                  const started = performance.now();
                  view.reset(entries);
                  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
                  const loadMs = performance.now() - started;
                  window.frames_.splice(0);
                  box.scrollTop = 0;
                  const t0 = performance.now();
                  await new Promise((done) => {
                    function step(now) {
                      const f = Math.min(1, (now - t0) / 2000);
                      box.scrollTop = f * (box.scrollHeight - box.clientHeight);
                      if (f < 1) requestAnimationFrame(step); else done();
                    }
                    requestAnimationFrame(step);
                  });
                  return { loadMs, rows: box.querySelectorAll(".logrow").length };
                }"""
            )
            scrolled = page.evaluate("window.frames_.splice(0)")
            browser.close()

    rate = sum(writes) / args.seconds
    i50, i99, imax, ijank = frame_stats(idle)
    l50, l99, lmax, ljank = frame_stats(loaded)
    print(
        f"progress reports       {sum(writes)} in {args.seconds} s ({rate:.0f} a second, {args.writers} writers)"
    )
    print(
        f"frames idle            p50 {i50:5.1f} ms  p99 {i99:6.1f} ms  max {imax:6.1f} ms  >50 ms: {ijank}"
    )
    print(
        f"frames under reports   p50 {l50:5.1f} ms  p99 {l99:6.1f} ms  max {lmax:6.1f} ms  >50 ms: {ljank}"
    )
    print(f"ratio to idle          p50 {l50 / i50:5.2f} x   p99 {l99 / i99:5.2f} x")
    f50, f99, fmax, fjank = frame_stats(flooded)
    print(
        f"injected reports       {injected} in {args.seconds} s ({injected / args.seconds:.0f} a second, in the page)"
    )
    print(
        f"frames under injection p50 {f50:5.1f} ms  p99 {f99:6.1f} ms  max {fmax:6.1f} ms  >50 ms: {fjank}"
    )
    print(f"ratio to idle          p50 {f50 / i50:5.2f} x   p99 {f99 / i99:5.2f} x")
    print(f"last report drawn      {final['progress']}%")
    s50, s99, smax, sjank = frame_stats(scrolled)
    print(
        f"log view, 100,000 lines: shown in {logrows['loadMs']:.0f} ms, {logrows['rows']} rows in the DOM"
    )
    print(
        f"frames while scrolling p50 {s50:5.1f} ms  p99 {s99:6.1f} ms  max {smax:6.1f} ms  >50 ms: {sjank}"
    )
    print(f"ratio to idle          p50 {s50 / i50:5.2f} x   p99 {s99 / i99:5.2f} x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--port", type=int, default=8961)
    main(parser.parse_args())
