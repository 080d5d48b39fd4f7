"""Live-stream clients for bench.stream, run as their own process (`python -m bench.stream_client`).

Reads a JSON job on stdin's first line: {"host", "port", "clients": [[token, organization_id],
...]}. Opens every stream on a bare socket (no HTTP client library: the cheapest reader),
says `ready <n refused>` once each got its `: ready`, then counts what arrives until
`stop <from> <to>` on stdin; answers one JSON line: per client the events received, those
of another organization, whether the server ended the stream; the delivery latencies
(arrival - the publish time carried in the issue's title) of the events published in that
window; and its own CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field

TITLE = re.compile(rb'"title":"t=(\d+\.\d+)"')
ORGANIZATION = re.compile(rb'"organization_id":"([0-9a-f-]{36})"')


@dataclass
class Client:
    token: str
    organization_id: str
    received: int = 0
    foreign: int = 0
    ended: bool = False
    published: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def run(
    host: str, port: int, client: Client, ready: asyncio.Event, opened: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /api/v2/stream HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {client.token}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.1 200")
    buffer = b""
    while ok and b": ready" not in buffer:
        chunk = await reader.read(65536)
        ok = bool(chunk)  # a 200 cut off before it was ready counts as refused
        buffer += chunk
    opened.append(int(ok))
    if len(opened) == opened_target[0]:
        ready.set()
    if not ok:
        client.ended = True
        writer.close()
        return
    organization = client.organization_id.encode()
    buffer = b""
    while True:
        chunk = await reader.read(1 << 20)
        if not chunk:
            client.ended = True
            return
        now = time.time()
        buffer += chunk
        *frames, buffer = buffer.split(b"\r\n\r\n")
        for frame in frames:
            found = TITLE.search(frame)
            if found is None:
                continue
            published = float(found.group(1))
            client.received += 1
            client.published.append(published)
            client.latencies.append((now - published) * 1000)
            org = ORGANIZATION.search(frame)
            if org is None or org.group(1) != organization:
                client.foreign += 1


opened_target = [0]


async def main() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    job = json.loads(await stdin.readline())
    clients = [Client(token, org) for token, org in job["clients"]]
    opened_target[0] = len(clients)
    ready = asyncio.Event()
    opened: list[int] = []
    tasks = []
    for i, client in enumerate(clients):
        tasks.append(asyncio.create_task(run(job["host"], job["port"], client, ready, opened)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # a ramp, not a stampede
    await asyncio.wait_for(ready.wait(), 300)
    print(f"ready {opened.count(0)}", flush=True)
    # stop <from> <to>: the window (publish times) the latencies are kept for
    _, start, end = (await stdin.readline()).split()
    low, high = float(start), float(end)
    for task in tasks:
        task.cancel()
    cpu = time.process_time()
    answer = {
        "cpu_seconds": cpu,
        "clients": [[c.organization_id, c.received, c.foreign, c.ended] for c in clients],
        "latencies": [
            round(x, 2)
            for c in clients
            for p, x in zip(c.published, c.latencies, strict=True)
            if low <= p < high
        ],
    }
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
