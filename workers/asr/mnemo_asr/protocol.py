"""The worker protocol's requests (docs/WORKERS.md §4 and §5) over nats-py."""

import base64
import json
import os

from nacl.signing import SigningKey

from . import encoding

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
RELEASE_HEADER = "Mnemo-Task-Released"
FINAL = (403, 404, 410)  # refusals that will not change: the task has nothing to do


class Refused(Exception):
    """mnemo refused a request (its status and detail)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"refused ({status}): {detail}")
        self.status = status
        self.detail = detail

    @property
    def final(self) -> bool:
        return self.status in FINAL


class Processor:
    """A processor's identity on a NATS connection: name, version, token and key."""

    def __init__(self, nc, name: str, version: str, token: str, seed_hex: str, timeout=30.0):
        self.nc = nc
        self.name = name
        self.version = version
        self._token = token
        self._key = SigningKey(bytes.fromhex(seed_hex.strip()))
        self.timeout = timeout

    async def call(self, op: str, body: dict) -> dict:
        msg = await self.nc.request(
            f"mnemo.proc.{self.name}.{op}",
            json.dumps(body).encode(),
            timeout=self.timeout,
            headers={"Authorization": f"Bearer {self._token}"},
        )
        h = msg.headers or {}
        if ERROR_HEADER in h:
            raise Refused(int(h.get(ERROR_CODE_HEADER, "500")), h[ERROR_HEADER])
        return json.loads(msg.data)

    async def fetch(self, task: dict) -> dict:
        """Fetches a task's input; mnemo records the fetch in the owner's chain first."""
        return await self.call(
            "fetch", {"user": task["user"], "grant": task["grant"], "memory": task["memory"]}
        )

    async def submit(self, task: dict, inputs, record: dict) -> dict:
        """Signs and records a derived memory (FORMAT.md §15.2)."""
        content = base64.b64decode(record["content"])
        canonical = encoding.memory_record(
            record["kind"],
            record.get("tags", []),
            record.get("captured_at"),
            record.get("source"),
            record["content_type"],
            content,
        )
        salt = os.urandom(32)
        ids = sorted({bytes.fromhex(m) for m in inputs})
        message = encoding.derived_message(
            task["user"],
            bytes.fromhex(task["grant"]),
            self.name,
            self.version,
            ids,
            encoding.commitment(salt, canonical),
        )
        signature = self._key.sign(message).signature
        return await self.call(
            "submit",
            {
                "user": task["user"],
                "grant": task["grant"],
                "version": self.version,
                "inputs": [m.hex() for m in ids],
                "record": record,
                "salt": salt.hex(),
                "signature": signature.hex(),
            },
        )
