"""Memory of `ghl-bridge serve` under unauthenticated slow bodies (issue 11, item 5).

Opens CONNECTIONS connections to /ghl/webhooks, each declaring a SIZE-byte body and sending all
but its last byte, holds them, and reports the bridge's resident memory before, at its peak and
after the connections close, with what the bridge answered:

    .venv/bin/python -m bench.slow_bodies [--connections 1000] [--size 1000000] [--hold 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from bench._procs import start_bridge

CHUNK = 64 * 1024


async def slow_body(host: str, port: int, size: int, hold: float, answers: Counter[str]) -> None:
    """Declare `size` bytes, send `size - 1`, wait for an answer until `hold` runs out."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        answers[f"connect {type(exc).__name__}"] += 1
        return
    try:
        writer.write(
            b"POST /ghl/webhooks HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        left = size - 1
        chunk = b"x" * CHUNK
        async with asyncio.timeout(hold):
            while left > 0:
                writer.write(chunk[: min(CHUNK, left)])
                left -= min(CHUNK, left)
                await writer.drain()
            status = await reader.readline()
        answers[status.decode().split(" ", 2)[1] if status else "closed"] += 1
    except TimeoutError:
        answers["held open"] += 1
    except ConnectionError:
        answers["closed while sending"] += 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def main(connections: int, size: int, hold: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bridge = await start_bridge(
            {
                "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_SIGNING_SECRET": "bench-secret",
                "SLACK_API_URL": "http://127.0.0.1:9/api/",
                "GHL_API_TOKEN": "pit-bench",
                "GHL_LOCATION_ID": "loc-bench",
                "GHL_API_URL": "http://127.0.0.1:9",
                "GHL_POLL_SECONDS": "0",
                "DATABASE_URL": f"sqlite:///{workdir / 'bridge.sqlite3'}",
                "HOST": "127.0.0.1",
                "PORT": "0",
            },
            workdir=workdir,
            log_path=workdir / "bridge.log",
        )
        try:
            before = bridge.memory()
            parts = urlsplit(bridge.url)
            assert parts.hostname is not None and parts.port is not None  # noqa: S101
            answers: Counter[str] = Counter()
            started = time.monotonic()
            tasks = []
            for _ in range(connections):
                tasks.append(
                    asyncio.create_task(slow_body(parts.hostname, parts.port, size, hold, answers))
                )
                await asyncio.sleep(0.002)  # a steady stream, not one SYN burst
            await asyncio.gather(*tasks)
            during = bridge.memory()
            await asyncio.sleep(5)  # the bridge's body timeout passes; what it held is freed
            after = bridge.memory()
            log_size = (workdir / "bridge.log").stat().st_size
        finally:
            await bridge.stop()
    print(
        f"{connections} slow bodies of {size:,} bytes to /ghl/webhooks "
        f"({time.monotonic() - started:.0f} s): RSS {before.rss_mb:.0f} MB before, "
        f"peak {during.peak_mb:.0f} MB, {after.rss_mb:.0f} MB after; log {log_size:,} bytes; "
        f"answers {dict(answers)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds each client waits")
    options = parser.parse_args()
    asyncio.run(main(options.connections, options.size, options.hold))
