"""The ASR worker: takes tasks from mnemo (docs/WORKERS.md §3), one decode at a time.

Backpressure: one task is decoded at a time and `queue` more wait; a task beyond that is
handed back at once (``Mnemo-Task-Released``), and mnemo offers it again, to this worker
or another. SIGTERM or SIGINT: leave the queue group, hand back the waiting tasks, let
the one being decoded finish within the grace period, then exit.
"""

import asyncio
import base64
import json
import logging
import os
import signal
import time

import nats

from .audio import AudioError, to_pcm16k
from .protocol import ERROR_CODE_HEADER, ERROR_HEADER, RELEASE_HEADER, Processor, Refused
from .recognizer import ENGINE, Recognizer

log = logging.getLogger("mnemo-asr")


class Config:
    """From the environment (docs/WORKERS.md §8)."""

    def __init__(self, env=os.environ):
        def need(k):
            if not env.get(k):
                raise SystemExit(f"mnemo-asr: {k} is required")
            return env[k]

        self.nats_url = need("MNEMO_NATS_URL")
        self.creds = env.get("MNEMO_NATS_CREDS") or None
        self.processor = env.get("MNEMO_PROCESSOR", "asr")
        self.version = need("MNEMO_PROCESSOR_VERSION")
        self.token = need("MNEMO_PROCESSOR_TOKEN")
        self.seed = need("MNEMO_PROCESSOR_SEED")
        self.queue = int(env.get("MNEMO_WORKER_QUEUE", "1"))
        self.grace = int(env.get("MNEMO_WORKER_GRACE_MS", "20000")) / 1000.0


class AsrWorker:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.recognizer = Recognizer()
        self.slot = asyncio.Semaphore(1)
        self.held = 0
        self.leaving = asyncio.Event()
        self.tasks = set()
        self.counts = {"done": 0, "failed": 0, "released": 0}

    async def run(self):
        opts = dict(
            servers=self.cfg.nats_url.split(","),
            name=f"mnemo-asr {self.cfg.processor}",
            max_reconnect_attempts=-1,
            # mnemo answers a processor only inside its own inbox (docs/WORKERS.md §7).
            inbox_prefix=f"_INBOX_{self.cfg.processor}".encode(),
        )
        if self.cfg.creds:
            opts["user_credentials"] = self.cfg.creds
        self.nc = await nats.connect(**opts)
        self.proc = Processor(
            self.nc, self.cfg.processor, self.cfg.version, self.cfg.token, self.cfg.seed
        )
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self.leaving.set)
        sub = await self.nc.subscribe(
            f"mnemo.work.{self.cfg.processor}", queue=self.cfg.processor, cb=self.on_task
        )
        log.info("taking tasks of %s (%s)", self.cfg.processor, ENGINE)
        await self.leaving.wait()
        await sub.unsubscribe()
        if self.tasks:
            done, pending = await asyncio.wait(self.tasks, timeout=self.cfg.grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.nc.drain()
        log.info("stopped: %s", self.counts)

    async def on_task(self, msg):
        # Callbacks of one subscription run one after another: work elsewhere.
        if not msg.reply:
            log.warning("a task without a reply subject: ignored")
            return
        if self.leaving.is_set() or self.held >= 1 + self.cfg.queue:
            await self.answer(msg, release="shutting down" if self.leaving.is_set() else "at capacity")
            return
        self.held += 1
        t = asyncio.create_task(self.work(msg))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def work(self, msg):
        try:
            acquired = asyncio.ensure_future(self.slot.acquire())
            leave = asyncio.ensure_future(self.leaving.wait())
            await asyncio.wait({acquired, leave}, return_when=asyncio.FIRST_COMPLETED)
            if not acquired.done():
                acquired.cancel()
                await self.answer(msg, release="shutting down")
                return
            leave.cancel()
            try:
                results = await self.one(json.loads(msg.data))
                await self.answer(msg, done=results)
            except asyncio.CancelledError:
                await self.answer(msg, release="shut down before it finished")
                raise
            except Exception as e:  # noqa: BLE001 - every failure is answered
                log.warning("task failed: %s", e)
                await self.answer(msg, error=str(e))
            finally:
                self.slot.release()
        finally:
            self.held -= 1

    async def one(self, item: dict):
        try:
            fetched = await self.proc.fetch(item)
        except Refused as e:
            if e.final:
                return []
            raise
        if not fetched["content_type"].lower().startswith(("audio/", "video/")):
            return []
        audio = base64.b64decode(fetched["content"])
        loop = asyncio.get_running_loop()
        started = time.process_time()
        try:
            pcm = await loop.run_in_executor(None, to_pcm16k, fetched["content_type"], audio)
        except AudioError as e:
            raise RuntimeError(f"memory {fetched['memory']}: {e}") from e
        text = await loop.run_in_executor(None, self.recognizer.transcribe, pcm)
        log.info(
            "memory %s: %.2f s of audio in %.2f s CPU",
            fetched["memory"], len(pcm) / 32000, time.process_time() - started,
        )
        record = {
            "kind": "transcript",
            "tags": ["asr"],
            "captured_at": fetched.get("captured_at"),
            "source": ENGINE,
            "content_type": "text/plain; charset=utf-8",
            "content": base64.b64encode(text.encode()).decode(),
        }
        r = await self.proc.submit(item, [item["memory"]], record)
        return [r["memory"]]

    async def answer(self, msg, done=None, error=None, release=None):
        headers = None
        body = b""
        if release is not None:
            self.counts["released"] += 1
            headers = {RELEASE_HEADER: release}
        elif error is not None:
            self.counts["failed"] += 1
            headers = {ERROR_HEADER: " ".join(error.split()), ERROR_CODE_HEADER: "500"}
        else:
            self.counts["done"] += 1
            body = json.dumps({"results": done}).encode()
        try:
            await self.nc.publish(msg.reply, body, headers=headers)
        except Exception as e:  # noqa: BLE001
            log.warning("a task answer was not sent (mnemo redelivers it): %s", e)


def main():
    # MNEMO_LOG may be a level (info, warning, ...) or, as for mnemo's Rust side, a filter
    # this worker does not parse: then INFO.
    level = logging.getLevelName(os.environ.get("MNEMO_LOG", "INFO").strip().upper())
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.INFO,
        format="mnemo-asr: %(levelname)s %(message)s",
    )
    asyncio.run(AsrWorker(Config()).run())
