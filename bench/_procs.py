"""Child processes of a bench run: the bridge (`python -m bot serve`), the bare-Bolt baseline,
the webhook floor server and the load generator, plus what /proc says about their memory and CPU."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._loadgen import LoadPlan, LoadResult

REPO_ROOT = Path(__file__).resolve().parent.parent
_SERVING = re.compile(r"serving on (http://\S+)")
_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident set size now and at its highest (VmRSS / VmHWM), in MB (10^6 bytes)."""

    rss_mb: float
    peak_mb: float


def memory_of(pid: int) -> Memory:
    """Read /proc/<pid>/status (Linux); psutil is not needed for two numbers."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text("ascii").splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024 / 1e6  # the kernel's kB are KiB
    return Memory(rss_mb=values["VmRSS"], peak_mb=values["VmHWM"])


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text("ascii")
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiler:
    """``py-spy record`` attached to a running process (py-spy is needed only for this)."""

    def __init__(self, process: asyncio.subprocess.Process, output: Path) -> None:
        self._process = process
        self.output = output

    @classmethod
    async def attach(cls, pid: int, output: Path, *, native: bool = False) -> Profiler:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        process = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            # --native (C frames, e.g. inside SQLite) needs the process paused per sample.
            *(["--native"] if native else ["--nonblocking"]),
            "--pid",
            str(pid),
            "--format",
            "raw",  # collapsed stacks: one line per stack with its sample count
            "--rate",
            "200",
            "--output",
            str(output),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.3)  # let it attach before the load starts
        return cls(process, output)

    async def finish(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            await asyncio.wait_for(self._process.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


@dataclass(frozen=True, slots=True)
class Placement:
    """Which CPUs the measured server gets, and which everything else (load, simulators)."""

    server: frozenset[int]
    others: frozenset[int]

    @classmethod
    def split(cls) -> Placement:
        """The last usable CPU for the server, the rest for the others."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise RuntimeError("pinning needs at least two CPUs")
        return cls(server=frozenset(cpus[-1:]), others=frozenset(cpus[:-1]))


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit the setting)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def _read(path: Path) -> str:
    return path.read_text("utf-8", errors="replace")


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment minus every bridge setting, plus ``extra``; repo importable."""
    from bot.settings import HINTS  # the names of every setting the bridge reads

    env = {key: value for key, value in os.environ.items() if key.upper() not in HINTS}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.update(extra)
    return env


class ServerProcess:
    """A server started as a child process; its URL is read from its own startup line."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory(self) -> Memory:
        return memory_of(self.pid)

    @classmethod
    async def start(
        cls,
        args: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        ready: re.Pattern[str],
        within: float = 30.0,
        cpus: frozenset[int] | None = None,
    ) -> ServerProcess:
        """Run ``python args...``; wait for ``ready`` (one group: the URL) in its output."""
        log = log_path.open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                env=dict(env),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()  # the child holds its own descriptor
        if cpus is not None:
            pin(process.pid, cpus)  # before it starts any thread: they inherit it
        deadline = time.monotonic() + within
        while True:
            found = ready.search(await asyncio.to_thread(_read, log_path))
            if found:
                if cpus is not None:
                    pin(process.pid, cpus)  # and any thread that raced the first call
                return cls(process, found.group(1), log_path)
            if process.returncode is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                tail = (await asyncio.to_thread(_read, log_path))[-2000:]
                raise RuntimeError(f"{' '.join(args)} did not start:\n{tail}")
            await asyncio.sleep(0.05)

    async def stop(self, grace: float = 30.0) -> int:
        """SIGTERM, then wait (SIGKILL after ``grace`` seconds); returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode if self.process.returncode is not None else -1


async def start_bridge(
    settings: Mapping[str, str],
    *,
    workdir: Path,
    log_path: Path,
    cpus: frozenset[int] | None = None,
) -> ServerProcess:
    """`python -m bot serve` with ``settings`` as its environment, healthy before returning."""
    bridge = await ServerProcess.start(
        ["-m", "bot", "serve"],
        env=child_environment(settings),
        cwd=workdir,  # no .env there: only the settings given here apply
        log_path=log_path,
        ready=_SERVING,
        cpus=cpus,
    )
    try:
        await wait_healthy(f"{bridge.url}/healthz")
    except BaseException:
        await bridge.stop(grace=5.0)
        raise
    return bridge


async def start_baseline(
    *,
    signing_secret: str,
    bot_token: str,
    slack_api_url: str,
    workdir: Path,
    log_path: Path,
    cpus: frozenset[int] | None = None,
) -> ServerProcess:
    return await ServerProcess.start(
        ["-m", "bench.baseline"],
        env=child_environment(
            {
                "SLACK_SIGNING_SECRET": signing_secret,
                "SLACK_BOT_TOKEN": bot_token,
                "SLACK_API_URL": slack_api_url,
            }
        ),
        cwd=workdir,
        log_path=log_path,
        ready=_LISTENING,
        cpus=cpus,
    )


async def start_floor(
    *,
    public_key_pem: str,
    database: str,
    workdir: Path,
    log_path: Path,
    cpus: frozenset[int] | None = None,
) -> ServerProcess:
    """`python -m bench.floor`: the least server that can accept a signed webhook.

    ``database``: a SQLite file's path, or a postgresql:// URL (its search_path the schema).
    """
    return await ServerProcess.start(
        ["-m", "bench.floor"],
        env=child_environment(
            {"GHL_WEBHOOK_PUBLIC_KEY": public_key_pem, "FLOOR_DATABASE": database}
        ),
        cwd=workdir,
        log_path=log_path,
        ready=_LISTENING,
        cpus=cpus,
    )


async def wait_healthy(url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {within:.0f} s")
            await asyncio.sleep(0.05)


class LoadGenerator:
    """`python -m bench._loadgen --serve`: one process runs every plan of a run in turn."""

    def __init__(self, process: asyncio.subprocess.Process, workdir: Path, log_path: Path) -> None:
        self._process = process
        self._workdir = workdir
        self._log_path = log_path
        self._turn = asyncio.Lock()  # one plan at a time: a plan is timed alone

    @classmethod
    async def start(cls, *, workdir: Path, cpus: frozenset[int] | None = None) -> LoadGenerator:
        log_path = workdir / "loadgen.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench._loadgen",
                "--serve",
                env=child_environment({}),
                cwd=workdir,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        if cpus is not None:
            pin(process.pid, cpus)
        return cls(process, workdir, log_path)

    async def run(self, plan: LoadPlan, name: str) -> LoadResult:
        """Run ``plan`` and return what the load generator measured."""
        plan_path = self._workdir / f"{name}.plan.json"
        result_path = self._workdir / f"{name}.result.json"
        await asyncio.to_thread(plan_path.write_text, plan.to_json(), "utf-8")
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None  # noqa: S101 - both are pipes
        async with self._turn:
            stdin.write((json.dumps([str(plan_path), str(result_path)]) + "\n").encode())
            await stdin.drain()
            answer = (await stdout.readline()).decode("utf-8", errors="replace").strip()
        if answer != "done":
            tail = (await asyncio.to_thread(_read, self._log_path))[-2000:]
            raise RuntimeError(f"load generator plan {name} failed: {answer or 'exited'}\n{tail}")
        return LoadResult.from_json(await asyncio.to_thread(_read, result_path))

    async def stop(self) -> None:
        """Close its stdin (it ends after the plan in hand); kill it if it does not."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


async def run_client_floor(
    settings: Mapping[str, str], *, workdir: Path, cpus: frozenset[int] | None = None
) -> dict[str, float]:
    """`python -m bench.client_floor` to its end: CPU milliseconds per bare call, by call."""
    log_path = workdir / "client-floor.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.client_floor",
            env=child_environment(settings),
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        if cpus is not None:
            pin(process.pid, cpus)
        out, _ = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        tail = (await asyncio.to_thread(_read, log_path))[-2000:]
        raise RuntimeError(f"bench.client_floor exited {process.returncode}\n{tail}")
    figures: dict[str, float] = json.loads(out.decode("utf-8").strip().splitlines()[-1])
    return figures
