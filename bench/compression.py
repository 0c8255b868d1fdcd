"""permessage-deflate on log batches: bytes on the wire and server CPU, on and off.

    .venv/bin/python bench/compression.py [--subscribers 50] [--batches 10] [--lines 500]

Two daphne runs on core 0, the same in everything but
SWITCHBOARD_WS_COMPRESSION: N WebSocket clients (Python `websockets`, which
offers permessage-deflate as browsers do) on core 1 subscribe to one
session's log, and B batches of L lines are posted. For each run: the bytes
the clients' TCP sockets received (the kernel's tcpi_bytes_received), the
server's CPU seconds from the first post until every client has every line,
and that wall time. Before the runs, one real `log.append` frame is
compressed in-process as the server does (project/deflate.py: raw deflate,
level 6, a 4 KiB window, no context kept) to give the ratio and the CPU a frame costs per subscriber.

Only 127.0.0.1 is used; the run is bounded by the counts given.
"""

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time
import zlib

import websockets
from benchserver import ROOT, BenchServer

sys.path.insert(0, str(ROOT))
from project.deflate import LEVEL, MEM_LEVEL, WINDOW_BITS  # noqa: E402

SERVER_CPU, CLIENT_CPU = "0", "1"
TCPI_BYTES_RECEIVED = 128  # offset in Linux's struct tcp_info


def received_bytes(ws) -> int:
    sock = ws.transport.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("Q", info, TCPI_BYTES_RECEIVED)[0]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(compression: bool, subscribers: int, batches: int, lines: int, port: int) -> dict:
    env = {"SWITCHBOARD_WS_COMPRESSION": "on" if compression else "off",
           "SWITCHBOARD_LOG_LINES_PER_SECOND": "1000000", "SWITCHBOARD_LOG_LINES_BURST": "1000000"}  # fmt: skip
    with BenchServer(port, cpus=SERVER_CPU, **env) as server:
        session = server.api("POST", "sessions", {"name": "deflate"})
        channel = f"logs:{session['id']}"
        headers = {"Authorization": f"Bearer {server.token}"}
        clients = [
            await websockets.connect(
                f"ws://127.0.0.1:{port}/ws/", additional_headers=headers, max_size=None
            )
            for _ in range(subscribers)
        ]
        extensions = {str(c.protocol.extensions) for c in clients}
        for ws in clients:
            await ws.send(json.dumps({"action": "subscribe", "channel": channel, "id": "s"}))
            while json.loads(await ws.recv()).get("type") != "subscribed":
                pass
        before = [received_bytes(ws) for ws in clients]
        frame_text: list[str] = []

        async def read_all(ws) -> None:
            got = 0
            while got < batches * lines:
                text = await ws.recv()
                frame = json.loads(text)
                if frame.get("event") == "log.append":
                    got += len(frame["data"]["entries"])
                    if not frame_text:
                        frame_text.append(text)

        cpu0, started = cpu_seconds(server.process.pid), time.perf_counter()
        readers = [asyncio.create_task(read_all(ws)) for ws in clients]
        for b in range(batches):
            entries = [
                {"message": f"GET /api/items?page={b * lines + n} 200 in {n % 900} ms",
                 "level": ("INFO", "WARNING", "ERROR", "DEBUG")[n % 4], "logger": "web.access"}
                for n in range(lines)
            ]  # fmt: skip
            await asyncio.to_thread(
                server.api, "POST", f"sessions/{session['id']}/logs", {"entries": entries}
            )
        await asyncio.wait_for(asyncio.gather(*readers), 300)
        wall, cpu = time.perf_counter() - started, cpu_seconds(server.process.pid) - cpu0
        wire = sum(received_bytes(ws) - b for ws, b in zip(clients, before, strict=True))
        for ws in clients:
            await ws.close()
    return {"wire": wire, "cpu": cpu, "wall": wall, "extensions": extensions,
            "frame": frame_text[0] if frame_text else ""}  # fmt: skip


def deflate_cost(text: str, rounds: int = 200) -> tuple[float, float]:
    data = text.encode()
    started = time.process_time()
    for _ in range(rounds):
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, MEM_LEVEL)
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return len(out) / len(data), (time.process_time() - started) / rounds


def main(subscribers: int, batches: int, lines: int) -> None:
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    results = {}
    for compression in (False, True):
        results[compression] = asyncio.run(run(compression, subscribers, batches, lines, 18800))
    off, on = results[False], results[True]
    ratio, per_frame = deflate_cost(off["frame"])
    print(f"one log.append frame of {lines} lines: {len(off['frame'].encode()) / 1024:.0f} KiB, "
          f"deflated to {ratio:.1%} in {per_frame * 1000:.2f} ms of CPU (per subscriber)")  # fmt: skip
    print(f"{subscribers} subscribers, {batches} batches of {lines} lines:")
    for name, r in (("off", off), ("on", on)):
        print(f"  compression {name:3}: {r['wire'] / 2**20:8.1f} MiB on the wire, server CPU "
              f"{r['cpu']:.2f} s, all delivered in {r['wall']:.2f} s  (client extensions: {r['extensions']})")  # fmt: skip
    print(f"  on / off: wire {on['wire'] / off['wire']:.2f}x, server CPU {on['cpu'] / off['cpu']:.2f}x, "
          f"delivery time {on['wall'] / off['wall']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--lines", type=int, default=500)
    main(**vars(parser.parse_args()))
