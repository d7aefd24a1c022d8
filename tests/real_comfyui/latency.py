#!/usr/bin/env python3
"""Per-job latency of trivial jobs against a real ComfyUI, directly and
through a ComfyUMe host whose `comfyui` pool is that ComfyUI.

Run with a Python that has aiohttp (the ComfyUI venv does):

    latency.py --comfyui http://127.0.0.1:8291 [--host http://127.0.0.1:8292 \
               --user NAME --password PW] [--jobs 40] [--concurrency 2]

Each job is `EmptyImage` (a colour unique to the job, so ComfyUI's cache
never serves it) into `SaveImage`. Per job and per path it records:
- `latency`: from sending the prompt to the end event on the client's own
  websocket (`executing` with `node: null` for that prompt), in ms;
- through the host only, `recorded_after_success`: the host's
  `execution_end_time` (when it recorded the end, outputs stored) minus the
  `execution_success` timestamp in ComfyUI's own history entry for the
  prompt. ComfyUI writes that entry just after sending `execution_success`,
  so this is an upper bound of the delay from the history write to the
  host's record.
It prints medians and maxima, and the host's median overhead over direct.
"""

import argparse
import asyncio
import base64
import json
import random
import statistics
import time
import uuid

import aiohttp


def prompt(seed):
    color = seed % 0xFFFFFF
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage",
              "inputs": {"images": ["1", 0], "filename_prefix": "latency"}},
    }


class Path:
    """One way to reach ComfyUI: directly, or through the host."""

    def __init__(self, base, api, auth=None):
        self.base = base.rstrip("/")
        self.api = api  # "" for ComfyUI itself, "/api" through the host
        self.auth = auth
        self.client_id = "latency-" + uuid.uuid4().hex[:8]
        self.waiters = {}

    async def open(self, session):
        ws_url = self.base.replace("http", "ws", 1) + "/ws?clientId=" + self.client_id
        headers = {}
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            headers["Authorization"] = "Basic " + token
            headers["Origin"] = self.base
        self.ws = await session.ws_connect(ws_url, headers=headers, max_msg_size=0)
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            m = json.loads(msg.data)
            data = m.get("data") or {}
            if m.get("type") == "executing" and data.get("node") is None:
                fut = self.waiters.pop(data.get("prompt_id"), None)
                if fut and not fut.done():
                    fut.set_result(time.monotonic())

    async def run(self, session, seed):
        prompt_id = str(uuid.uuid4())
        done = asyncio.get_running_loop().create_future()
        self.waiters[prompt_id] = done
        body = {"prompt": prompt(seed), "client_id": self.client_id, "prompt_id": prompt_id}
        auth = aiohttp.BasicAuth(*self.auth) if self.auth else None
        headers = {"Origin": self.base} if self.auth else {}
        sent = time.monotonic()
        async with session.post(self.base + self.api + "/prompt", json=body,
                                auth=auth, headers=headers) as r:
            answer = await r.text()
            if r.status != 200:
                raise RuntimeError(f"prompt refused: {r.status} {answer}")
        ended = await asyncio.wait_for(done, 600)
        return prompt_id, (ended - sent) * 1000


async def run_all(session, path, jobs, concurrency, seed0):
    slots = asyncio.Semaphore(concurrency)
    results = []

    async def one(i):
        async with slots:
            results.append(await path.run(session, seed0 + i))

    await asyncio.gather(*(one(i) for i in range(jobs)))
    return results


async def success_ms(session, comfyui, prompt_id):
    async with session.get(f"{comfyui}/history/{prompt_id}") as r:
        entry = (await r.json())[prompt_id]
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_success":
            return data["timestamp"]
    raise RuntimeError(f"{prompt_id}: no execution_success")


async def host_end_ms(session, path, prompt_id):
    for _ in range(100):
        async with session.get(f"{path.base}/api/jobs/{prompt_id}",
                               auth=aiohttp.BasicAuth(*path.auth)) as r:
            job = await r.json()
        if "execution_end_time" in job:
            return job["execution_end_time"]
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{prompt_id}: the host never recorded an end")


def line(name, values):
    values = sorted(values)
    return (f"{name}: n={len(values)} median={statistics.median(values):.1f} ms "
            f"p90={values[int(len(values) * 0.9) - 1]:.1f} ms max={values[-1]:.1f} ms")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--comfyui", required=True)
    p.add_argument("--host")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--jobs", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    seed0 = random.randrange(1, 1 << 23)
    async with aiohttp.ClientSession() as session:
        direct = Path(a.comfyui, "")
        await direct.open(session)
        paths = [("direct", direct)]
        if a.host:
            host = Path(a.host, "/api", (a.user, a.password))
            await host.open(session)
            paths.append(("host", host))
        medians = {}
        for round_no, (name, path) in enumerate(paths):
            base = seed0 + round_no * 100000
            await run_all(session, path, a.warmup, 1, base + 50000)
            results = await run_all(session, path, a.jobs, a.concurrency, base)
            latencies = [ms for _, ms in results]
            medians[name] = statistics.median(latencies)
            print(line(f"{name} latency (concurrency {a.concurrency})", latencies))
            if name == "host":
                delays = []
                for prompt_id, _ in results:
                    delays.append(await host_end_ms(session, path, prompt_id)
                                  - await success_ms(session, a.comfyui, prompt_id))
                print(line("host recorded the end after ComfyUI's execution_success", delays))
        if "host" in medians:
            print(f"host overhead per job (median - median): "
                  f"{medians['host'] - medians['direct']:.1f} ms")


asyncio.run(main())
