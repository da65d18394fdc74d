"""Checks this worker's byte formats against mnemo's known-answer vectors.

``python -m mnemo_asr.conformance testdata/vectors.json testdata/processing-vectors.json``
rebuilds each inline memory record and its payload commitment (FORMAT.md §6), and each
derived signing message (§15.2) from its fields, and signs one with the vectors'
processor seed; it prints what it checked and exits 1 at the first mismatch.
"""

import json
import sys

from nacl.signing import SigningKey

from . import encoding


def check(what, got: bytes, want_hex: str):
    if got.hex() != want_hex:
        print(f"MISMATCH {what}:\n  got  {got.hex()}\n  want {want_hex}")
        sys.exit(1)


def main():
    vectors = json.load(open(sys.argv[1]))
    processing = json.load(open(sys.argv[2]))
    n = 0
    for v in vectors["memory_records"]:
        r = v["record"]
        if r["content"]["storage"] != "inline":
            continue
        canonical = encoding.memory_record(
            r["kind"], r["tags"], r.get("captured_at"), r.get("source"), r["content_type"],
            bytes.fromhex(r["content"]["bytes"]),
        )
        check("memory record", canonical, v["canonical"])
        check("payload commitment", encoding.commitment(bytes.fromhex(v["salt"]), canonical), v["commitment"])
        n += 1
    user = processing["valid"]["user"]
    for m in processing["valid"]["messages"]:
        want = m.get("derived_signing_message")
        if want is None:
            continue
        raw = bytes.fromhex(want)
        # The message's fields, read back by position (§15.2), then written again.
        grant = raw[32 + 4 + len(user): 32 + 4 + len(user) + 16]
        rest = raw[32 + 4 + len(user) + 16:]
        plen = int.from_bytes(rest[:4], "big")
        processor = rest[4: 4 + plen].decode()
        rest = rest[4 + plen:]
        vlen = int.from_bytes(rest[:4], "big")
        version = rest[4: 4 + vlen].decode()
        rest = rest[4 + vlen:]
        count = int.from_bytes(rest[:4], "big")
        inputs = [rest[4 + 16 * i: 4 + 16 * (i + 1)] for i in range(count)]
        commit = rest[4 + 16 * count:]
        msg = encoding.derived_message(user, grant, processor, version, inputs, commit)
        check(f"derived signing message (seq {m['seq']})", msg, want)
        n += 1
    seed = bytes.fromhex(processing["processor"]["seed"])
    public = SigningKey(seed).verify_key.encode().hex()
    if public != processing["processor"]["public"]:
        print(f"MISMATCH processor key: {public}")
        sys.exit(1)
    print(f"conformance: {n} vectors and the processor key match")


if __name__ == "__main__":
    main()
