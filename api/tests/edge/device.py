"""A device in the edge tests: signed captures over NATS with the reference client.

usage: device.py MODE URL CREDS USER SEED_HEX [ARGS...]
  online CUSTODY_KEY: 3 capture streams x 5 via js.publish on mnemo.capture, a retry, a
             signed request whose receipt is checked on the device, each stream followed
             on its own, and the bad inputs; prints one JSON line with what the server
             answered
  outbox N FIRST: N captures of stream "voice" from counter FIRST into the leaf's local
             outbox (js.publish on mnemo.outbox.voice), salts fixed by the seed so a replay
             sends the same bytes; prints the local PubAcks' count
  other    : one unsigned capture with Nats-Msg-Id voice-1 (another user's same id)
  upload FILE API TOKEN: FILE in 1 MiB chunks on mnemo.ingest, then the same bytes over
             REST (POST /v1/memories), each timed; the NATS one downloaded again over REST;
             then the bad uploads (out of order, wrong hash, oversize)
"""

import asyncio
import json
import os
import sys
import time
import urllib.request

import blake3
import nats
from nats.js.errors import APIError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../clients/python"))
from mnemo_device import Device, verify_receipt  # noqa: E402


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
        # A signed capture as a request: the receipt at once, checked on the device.
        mid, body = dev.capture("note 1", "notes", counter=1, salt=salt_for(seed, "notes", 1))
        m = await nc.request("mnemo.ingest", body, timeout=10, headers={"Nats-Msg-Id": mid})
        receipt = json.loads(m.data)
        out["receipt_checked"] = verify_receipt(receipt["custody"], sys.argv[6]) == receipt["event_hash"]
        # Each capture stream followed on its own.
        follow = {}
        for s in ("voice", "web", "messages"):
            m = await nc.request("mnemo.read", json.dumps({"stream": s, "limit": 1000}).encode(), timeout=10)
            follow[s] = [e["capture"]["counter"] for e in json.loads(m.data)["events"]]
        out["follow"] = follow
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
    elif mode == "pipelined":
        # 200 captures with 8 in flight on mnemo.capture (stream p1), and 200 requests with
        # 8 in flight on mnemo.ingest (stream p2); then the chain's order of each stream.
        n, window = 200, asyncio.Semaphore(8)

        async def one(send, s, c):
            async with window:
                mid, body = dev.capture(f"{s} {c}", s, counter=c, salt=salt_for(seed, s, c))
                await send(mid, body)

        async def capture(mid, body):
            await js.publish("mnemo.capture", body, headers={"Nats-Msg-Id": mid})

        async def ingest(mid, body):
            await nc.request("mnemo.ingest", body, timeout=20, headers={"Nats-Msg-Id": mid})

        await asyncio.gather(*[one(capture, "p1", c) for c in range(1, n + 1)])
        await asyncio.gather(*[one(ingest, "p2", c) for c in range(1, n + 1)])
        order = {}
        for s in ("p1", "p2"):
            for _ in range(300):
                m = await nc.request("mnemo.read", json.dumps({"stream": s, "limit": 1000}).encode(), timeout=10)
                order[s] = [e["capture"]["counter"] for e in json.loads(m.data)["events"]]
                if len(order[s]) >= n:
                    break
                await asyncio.sleep(0.1)
        out["order"] = order
    elif mode == "other":
        ack = await js.publish("mnemo.capture", b'{"text": "bob, same id"}', headers={"Nats-Msg-Id": "voice-1"})
        out["ack"] = [ack.stream, ack.duplicate]
    elif mode == "upload":
        path, api, token = sys.argv[6:9]
        data = open(path, "rb").read()
        out["nats"] = await upload(nc, "rec-1", data, {"Mnemo-Stream": "voice", "Nats-Msg-Id": "rec-1"})
        t = time.perf_counter()
        req = urllib.request.Request(
            f"{api}/v1/memories?kind=audio", data=data, method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "audio/wav"})
        rest = json.loads(urllib.request.urlopen(req, timeout=120).read())
        out["rest"] = {"seconds": time.perf_counter() - t, "id": rest["id"]}
        memory = out["nats"]["answer"]["id"]
        req = urllib.request.Request(
            f"{api}/v1/memories/{memory}/content", headers={"Authorization": f"Bearer {token}"})
        back = urllib.request.urlopen(req, timeout=120).read()
        out["downloaded_same"] = back == data
        out["bytes"] = len(data)
        # Bad uploads: each refused, nothing written.
        first = {"Mnemo-Content-Type": "audio/wav"}
        out["out_of_order"] = await bad(nc, [(0, b"x" * 10, first), (2, b"y", {})], "bad-1")
        out["wrong_hash"] = await bad(nc, [(0, b"x" * 10, first), (1, b"y", {
            "Mnemo-Last": "true", "Mnemo-Content-Hash": "blake3:" + "00" * 32})], "bad-2")
        big = [(i, b"z" * (1 << 20), first if i == 0 else {}) for i in range(25)]
        out["oversize"] = await bad(nc, big, "bad-3")
    print(json.dumps(out))
    await nc.close()


async def upload(nc, uid, data, extra):
    """Sends `data` as one chunked upload; the answer to the last chunk, and the time."""
    t = time.perf_counter()
    ch = 1 << 20
    n = (len(data) + ch - 1) // ch
    answer = None
    for i in range(n):
        hdr = {"Mnemo-Upload": uid, "Mnemo-Chunk": str(i)}
        if i == 0:
            hdr.update({"Mnemo-Content-Type": "audio/wav", **extra})
        if i == n - 1:
            hdr.update({
                "Mnemo-Last": "true",
                "Mnemo-Content-Hash": "blake3:" + blake3.blake3(data).hexdigest(),
            })
        m = await nc.request("mnemo.ingest", data[i * ch:(i + 1) * ch], timeout=60, headers=hdr)
        if m.headers and "Nats-Service-Error-Code" in m.headers:
            raise RuntimeError(f"chunk {i}: {m.headers} {m.data!r}")
        answer = json.loads(m.data)
    return {"seconds": time.perf_counter() - t, "answer": answer}


async def bad(nc, chunks, uid):
    """Sends chunks until one is refused; the refusal's code and problem type."""
    for n, body, extra in chunks:
        m = await nc.request("mnemo.ingest", body, timeout=60,
                             headers={"Mnemo-Upload": uid, "Mnemo-Chunk": str(n), **extra})
        if m.headers and "Nats-Service-Error-Code" in m.headers:
            return [int(m.headers["Nats-Service-Error-Code"]), json.loads(m.data)["type"]]
    return None


asyncio.run(main())
