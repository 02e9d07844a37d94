"""The other clients of bench/controlplane_bench.py: API readers at 8 concurrent
clients, browser-like consoles on ws/live/, and etcd watchers (the anchor).
Loopback only; every client is bounded in time."""

from __future__ import annotations

import asyncio
import base64
import http.client
import http.cookiejar
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.fleetlib import percentile

# ---------------------------------------------------------------- session login (as a browser)


def login(base_url: str, username: str, password: str) -> tuple[str, str]:
    """Log in through the console's login form; (sessionid, csrftoken)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base_url}/login/", timeout=10).read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not match:
        raise RuntimeError("login page has no csrfmiddlewaretoken")
    form = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrfmiddlewaretoken": match.group(1)}).encode()
    request = urllib.request.Request(f"{base_url}/login/", data=form,
                                     headers={"Referer": f"{base_url}/login/"})
    opener.open(request, timeout=10).read()
    cookies = {c.name: c.value for c in jar}
    if "sessionid" not in cookies:
        raise RuntimeError("login did not set a session cookie")
    return cookies["sessionid"], cookies.get("csrftoken", "")


# ---------------------------------------------------------------- API readers

def read_latencies(port: int, path: str, headers: dict[str, str], *, clients: int = 8,
                   requests: int = 80, max_seconds: float = 30.0) -> dict[str, Any]:
    """CLIENTS keep-alive connections GET PATH until REQUESTS are done or MAX_SECONDS pass."""
    latencies: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    remaining = [requests]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max_seconds + 30)
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            t0 = time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max_seconds + 30)
                continue
            elapsed = time.monotonic() - t0
            with lock:
                if resp.status == 200:
                    latencies.append(elapsed)
                    sizes.append(len(body))
                else:
                    errors.append(f"HTTP {resp.status}")
        conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(max_seconds + 60)
    return {"path": path, "n": len(latencies), "errors": len(errors),
            "error_kinds": sorted(set(errors)),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p95_ms": round(percentile(latencies, 95) * 1000, 1),
            "bytes": max(sizes) if sizes else 0}


# ---------------------------------------------------------------- consoles on ws/live/

class Console:
    def __init__(self, index: int) -> None:
        self.index = index
        self.messages: list[tuple[float, str, Any]] = []  # (t, type, data)
        self.errors: list[str] = []
        self.ready = asyncio.Event()


async def run_console(console: Console, url: str, sessionid: str, service: str,
                      stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/ws/live/"
    try:
        async with connect(ws_url, additional_headers={"Cookie": f"sessionid={sessionid}",
                                                       "Origin": url},
                           max_size=None, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "subscribe", "topic": "topology"}))
            await ws.send(json.dumps({"type": "subscribe", "topic": "service", "name": service}))
            stopping = asyncio.create_task(stop.wait())
            while not stop.is_set():
                receiving = asyncio.create_task(ws.recv())
                done, _ = await asyncio.wait({receiving, stopping},
                                             return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    break
                message = json.loads(receiving.result())
                kind = message.get("type", "")
                console.messages.append((time.monotonic(), kind, message.get("data")))
                if kind == "error":
                    console.errors.append(str(message.get("message")))
                if kind == "service":
                    console.ready.set()
            stopping.cancel()
    except Exception as exc:
        console.errors.append(f"{type(exc).__name__}: {exc}")
        console.ready.set()


def first_service_message(console: Console, since: float, weight: int) -> float | None:
    for t, kind, data in console.messages:
        if t >= since and kind == "service" and isinstance(data, dict) and any(
                i.get("weight") == weight for i in data.get("instances", [])):
            return t
    return None


def topology_per_second(console: Console, start: float, end: float) -> int:
    """The most topology messages this console got within one second of [start, end]."""
    times = [t for t, kind, _ in console.messages if kind == "topology" and start <= t <= end]
    best = 0
    for i, t in enumerate(times):
        j = i
        while j < len(times) and times[j] < t + 1.0:
            j += 1
        best = max(best, j - i)
    return best


# ---------------------------------------------------------------- etcd, the anchor

def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    def __init__(self, workdir: Path, procs: Any, client_port: int, peer_port: int) -> None:
        self.workdir, self.procs = workdir, procs
        self.port, self.peer = client_port, peer_port

    @staticmethod
    def available() -> bool:
        return shutil.which("etcd") is not None

    def start(self) -> None:
        from bench.benchlib import wait_port

        peer = f"http://127.0.0.1:{self.peer}"
        client = f"http://127.0.0.1:{self.port}"
        self.procs.start("etcd", [
            "etcd", "--name", "bench", "--data-dir", str(self.workdir / "etcd-data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"bench={peer}", "--log-level", "error",
        ])
        wait_port(self.port, 30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.put("/bench/ready", "1")
                return
            except (OSError, http.client.HTTPException, RuntimeError):
                time.sleep(0.2)
        raise RuntimeError("etcd did not answer a put")

    def put(self, key: str, value: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/v3/kv/put", json.dumps({"key": b64(key), "value": b64(value)}))
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"etcd put: HTTP {resp.status}")
        finally:
            conn.close()


async def _watcher(port: int, key: str, created: asyncio.Event, counter: list[int],
                   total: int, seen: list[float], errors: list[str], stop: asyncio.Event) -> None:
    body = json.dumps({"create_request": {"key": b64(key)}}).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        errors.append(type(exc).__name__)
        counter[0] += 1
        if counter[0] >= total:
            created.set()
        return
    try:
        writer.write(b"POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        buffer = b""
        is_created = False
        while not stop.is_set():
            try:
                async with asyncio.timeout(1.0):
                    data = await reader.read(65536)
            except TimeoutError:
                continue
            if not data:
                errors.append("closed")
                break
            buffer = (buffer + data)[-65536:]
            if not is_created and b'"created":true' in buffer:
                is_created = True
                counter[0] += 1
                if counter[0] >= total:
                    created.set()
            if b'"events"' in buffer:
                seen.append(time.monotonic())
                break
    finally:
        writer.close()


async def etcd_fanout(port: int, watchers: int, put: Any, timeout: float = 30.0) -> dict[str, Any]:
    """WATCHERS streams on one key through etcd's JSON gateway; one put; when each saw it."""
    created = asyncio.Event()
    stop = asyncio.Event()
    counter = [0]
    seen: list[float] = []
    errors: list[str] = []
    key = f"/bench/fanout/{time.monotonic_ns()}"
    tasks = [asyncio.create_task(_watcher(port, key, created, counter, watchers, seen, errors,
                                          stop)) for _ in range(watchers)]
    try:
        async with asyncio.timeout(60):
            await created.wait()
        t0 = time.monotonic()
        await asyncio.to_thread(put, key, "changed")
        t_put = time.monotonic()
        deadline = t_put + timeout
        while len(seen) + len(errors) < watchers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    # From the put's return, as meshconsole's figure is from the API write's return
    # (0 when a watcher saw the event before the put's answer arrived).
    lat = [max(0.0, t - t_put) for t in seen]
    from_start = [t - t0 for t in seen]
    return {"watchers": watchers, "saw": len(seen), "errors": len(errors),
            "put_ms": round((t_put - t0) * 1000, 1),
            "p99_from_put_start_ms": round(percentile(from_start, 99) * 1000, 2),
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2) if lat else float("nan")}


def run_subprocess(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout
