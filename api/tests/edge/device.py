"""A device in the edge tests: signed captures over NATS with the reference client.

usage: device.py MODE URL CREDS USER SEED_HEX [ARGS...]
  online   : 3 capture streams x 5 via js.publish on mnemo.capture, a retry, and the bad
             inputs; prints one JSON line with what the server answered
  outbox N FIRST: N captures of stream "voice" from counter FIRST into the leaf's local
             outbox (js.publish on mnemo.outbox.voice), salts fixed by the seed so a replay
             sends the same bytes; prints the local PubAcks' count
  other    : one unsigned capture with Nats-Msg-Id voice-1 (another user's same id)
"""

import asyncio
import json
import os
import sys

import blake3
import nats
from nats.js.errors import APIError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../clients/python"))
from mnemo_device import Device  # noqa: E402


def salt_for(seed, stream, counter):
    return blake3.blake3(seed + f"{stream}/{counter}".encode()).digest()


async def main():
    mode, url, creds, user, seed_hex = sys.argv[1:6]
    seed = bytes.fromhex(seed_hex)
    opts = {"user_credentials": creds} if creds != "-" else {}
    nc = await nats.connect(url, max_reconnect_attempts=-1, **opts)
    js = nc.jetstream(timeout=10)
    dev = Device(user, seed)
    out = {}
    if mode == "online":
        acks = []
        for i in range(5):
            for s in ("voice", "web", "messages"):
                c = i + 1
                mid, body = dev.capture(f"{s} {c}", s, counter=c, salt=salt_for(seed, s, c))
                ack = await js.publish("mnemo.capture", body, headers={"Nats-Msg-Id": mid})
                acks.append([ack.stream, ack.seq, ack.duplicate])
        out["acks"] = acks
        # A retry (a lost PubAck): the same bytes and id.
        mid, body = dev.capture("voice 1", "voice", counter=1, salt=salt_for(seed, "voice", 1))
        ack = await js.publish("mnemo.capture", body, headers={"Nats-Msg-Id": mid})
        out["retry"] = [ack.stream, ack.duplicate]
        # The same capture id with other content.
        mid, body = dev.capture("not voice 1", "voice", counter=1)
        ack = await js.publish("mnemo.capture", body, headers={"Nats-Msg-Id": mid})
        out["reused"] = ack.stream
        # A capture whose signature is not the device's.
        mid, body = dev.capture("forged", "voice", counter=99)
        b = json.loads(body)
        b["signature"] = ("00" if b["signature"][:2] != "00" else "01") + b["signature"][2:]
        ack = await js.publish("mnemo.capture", json.dumps(b).encode(), headers={"Nats-Msg-Id": "forged"})
        out["forged"] = ack.stream
        # Oversize: refused at once, with a JetStream API error.
        try:
            await js.publish("mnemo.capture", b"{" + b" " * (2 << 20) + b"}", headers={"Nats-Msg-Id": "big"})
            out["oversize"] = "accepted"
        except APIError as e:
            out["oversize"] = e.code
        # No Nats-Msg-Id: refused at once.
        try:
            await js.publish("mnemo.capture", b'{"text": "no id"}')
            out["no_id"] = "accepted"
        except APIError as e:
            out["no_id"] = e.code
        # A publish with no reply subject: nothing written, the refusal kept.
        await nc.publish("mnemo.ingest", b'{"text": "fire and forget"}')
        await nc.flush()
    elif mode == "outbox":
        n, first = int(sys.argv[6]), int(sys.argv[7])
        acked = 0
        for c in range(first, first + n):
            mid, body = dev.capture(f"offline voice {c}", "voice", counter=c, salt=salt_for(seed, "voice", c))
            await js.publish("mnemo.outbox.voice", body, headers={"Nats-Msg-Id": mid})
            acked += 1
        out["acked"] = acked
    elif mode == "other":
        ack = await js.publish("mnemo.capture", b'{"text": "bob, same id"}', headers={"Nats-Msg-Id": "voice-1"})
        out["ack"] = [ack.stream, ack.duplicate]
    print(json.dumps(out))
    await nc.close()


asyncio.run(main())
