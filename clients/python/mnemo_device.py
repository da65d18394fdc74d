"""mnemo's reference device client (Python): signed captures over NATS.

A device holds an Ed25519 signing key, registered in its user's chain with role device
(`POST /v1/users/{id}/devices` with `signing_key`). For each capture it:

1. builds the memory record (docs/FORMAT.md §6.1) and draws a 32-byte salt;
2. computes the payload commitment `H[CTX_PAYLOAD](salt || record)` (§6);
3. signs the capture: `SIG_CAPTURE || u32 len(user) || user || u32 len(stream) || stream
   || u64 counter || commitment` (§5.2), where `(stream, counter)` is its capture id: one
   counter per capture stream, counting up, never reused;
4. publishes it with JetStream on `mnemo.capture` (or on a leaf's local outbox while
   offline, see docs/EDGE.md), with `Nats-Msg-Id` = `<stream>-<counter>`.

mnemo keeps the capture id in the chain for good: a retry, however late, appends nothing,
and the same id with other content is refused. `verify_receipt` checks a custody receipt
(§5.5) on the device. Only `blake3`, `pynacl` and `nats-py` are needed.
"""

import json
import os
import struct

import blake3
import nacl.signing

CTX_PAYLOAD = "mnemo 2026-11-26 payload commitment v1"
CTX_KEY_ID = "mnemo 2026-11-26 key id v1"
CTX_EVENT = "mnemo 2026-11-26 event hash v1"
CTX_SEAL_LEAF = "mnemo 2026-12-01 seal tree leaf v2"
CTX_SEAL_NODE = "mnemo 2026-12-01 seal tree node v2"
SIG_CAPTURE = b"mnemo capture signature v1" + b"\0" * 6
SIG_SEAL = b"mnemo seal signature v2" + b"\0" * 9
CONTENT_TYPE = "text/plain; charset=utf-8"


def h(ctx, data):
    return blake3.blake3(data, derive_key_context=ctx).digest()


def enc_str(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def record_bytes(text, kind="note", tags=(), captured_at=None, source=None):
    """The canonical memory record (FORMAT.md §6.1) of an inline text memory."""
    out = bytearray([1])
    out += enc_str(kind)
    out += struct.pack(">I", len(tags))
    for t in tags:
        out += enc_str(t)
    out += b"\0" if captured_at is None else b"\1" + struct.pack(">q", captured_at)
    out += b"\0" if source is None else b"\1" + enc_str(source)
    out += enc_str(CONTENT_TYPE)
    content = text.encode()
    out += b"\1" + struct.pack(">I", len(content)) + content
    return bytes(out)


class Device:
    """A capturing device: its signing key, its user, and a counter per capture stream."""

    def __init__(self, user, seed=None):
        self.user = user
        self.key = nacl.signing.SigningKey(seed or os.urandom(32))
        self.counters = {}

    @property
    def public_key_hex(self):
        return bytes(self.key.verify_key).hex()

    @property
    def key_id(self):
        return h(CTX_KEY_ID, bytes(self.key.verify_key))

    def next_counter(self, stream):
        self.counters[stream] = self.counters.get(stream, 0) + 1
        return self.counters[stream]

    def capture(self, text, stream, counter=None, salt=None, **record):
        """The signed capture request: (Nats-Msg-Id, JSON body)."""
        counter = self.next_counter(stream) if counter is None else counter
        salt = salt or os.urandom(32)
        commitment = h(CTX_PAYLOAD, salt + record_bytes(text, **record))
        msg = (
            SIG_CAPTURE
            + enc_str(self.user)
            + enc_str(stream)
            + struct.pack(">Q", counter)
            + commitment
        )
        signature = self.key.sign(msg).signature
        body = {
            "text": text,
            "stream": stream,
            "counter": counter,
            "device_key": self.key_id.hex(),
            "salt": salt.hex(),
            "signature": signature.hex(),
        }
        for k in ("kind", "tags", "captured_at", "source"):
            if k in record:
                body[k] = record[k]
        return f"{stream}-{counter}", json.dumps(body).encode()


def verify_receipt(receipt, custody_key_hex):
    """Checks a custody receipt (FORMAT.md §5.5): the event's hash is a leaf of the seal's
    tree, and the custody key signed the seal's root. Returns the event hash (hex)."""
    event = bytes.fromhex(receipt["event"])
    seal = receipt["seal"]
    node = h(CTX_SEAL_LEAF, h(CTX_EVENT, event))
    index, size = seal["index"], seal["size"]
    if not index < size:
        raise ValueError("seal_index")
    # RFC 9162 inclusion path, as the seal tree is built (FORMAT.md §5.4, §7).
    fn, sn = index, size - 1
    path = [bytes.fromhex(p) for p in seal["path"]]
    for p in path:
        if sn == 0:
            raise ValueError("seal_path")
        if fn % 2 == 1 or fn == sn:
            node = h(CTX_SEAL_NODE, p + node)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = h(CTX_SEAL_NODE, node + p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("seal_path")
    root = bytes.fromhex(seal["root"])
    if node != root:
        raise ValueError("seal_root")
    msg = SIG_SEAL + struct.pack(">Q", size) + root
    nacl.signing.VerifyKey(bytes.fromhex(custody_key_hex)).verify(
        msg, bytes.fromhex(seal["signature"])
    )
    return h(CTX_EVENT, event).hex()
