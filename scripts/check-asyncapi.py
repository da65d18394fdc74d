"""Checks docs/asyncapi.yaml against what a real server answered.

python check-asyncapi.py docs/asyncapi.yaml samples.json

`samples.json` (written by api/tests/nats_accounts.rs) holds the subjects the server serves
and real messages: each with its channel address, the message name the document gives it,
its headers and its JSON payload. Checked: the document's channel addresses are exactly the
served subjects; every message validates against its message's payload schema (JSON Schema
2020-12, with the document as the root so its `$ref`s resolve); every header a message
carries is declared in its message's headers schema, and the headers validate. Exit 1, with
every failure printed, when anything does not hold.
"""

import json
import sys

import jsonschema_rs
import yaml


def validator(doc, pointer):
    root = dict(doc)
    root["$ref"] = pointer
    return jsonschema_rs.validator_for(root)


def main():
    doc = yaml.safe_load(open(sys.argv[1]))
    samples = json.load(open(sys.argv[2]))
    failures = []
    if doc.get("asyncapi") != "3.0.0":
        failures.append(f"not an AsyncAPI 3.0.0 document: {doc.get('asyncapi')!r}")
    channels = {c["address"]: name for name, c in doc["channels"].items()}
    if set(channels) != set(samples["subjects"]):
        failures.append(
            f"channels {sorted(channels)} are not the served subjects {sorted(samples['subjects'])}"
        )
    checked = 0
    for s in samples["messages"]:
        where = f"{s['channel']} / {s['message']}"
        name = channels.get(s["channel"])
        if name is None:
            failures.append(f"{where}: no channel with this address")
            continue
        if s["message"] not in doc["channels"][name]["messages"]:
            failures.append(f"{where}: the channel does not list this message")
            continue
        base = f"#/components/messages/{s['message']}"
        msg = doc["components"]["messages"][s["message"]]
        for e in validator(doc, base + "/payload").iter_errors(s["payload"]):
            failures.append(f"{where}: payload: {e.message} at {list(e.instance_path)}")
        declared = set(msg.get("headers", {}).get("properties", {}))
        headers = s.get("headers", {})
        for h in headers:
            if h not in declared:
                failures.append(f"{where}: header {h} is not declared")
        if "headers" in msg:
            for e in validator(doc, base + "/headers").iter_errors(headers):
                failures.append(f"{where}: headers: {e.message}")
        checked += 1
    for f in failures:
        print("MISMATCH", f)
    print(f"asyncapi: {checked} real messages on {len(channels)} channels checked, {len(failures)} mismatches")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
