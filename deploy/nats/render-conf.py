#!/usr/bin/env python3
"""Renders the nats-server configuration that deploy/nats/values.yaml describes, as the
official NATS Helm chart maps its values (the parts mnemo's values set: cluster, JetStream,
leaf nodes, WebSocket, TLS and `config.merge`), so that `nats-server -t` can check it
without Helm.

    render-conf.py VALUES OUT_DIR   -> OUT_DIR/nats.conf (TLS files: OUT_DIR/<secret>/tls.*)

Values under `merge` are written as JSON, as the chart writes them: a string stays quoted.
"""
import json
import sys
from pathlib import Path

import yaml


def value(v):
    return json.dumps(v)


def block(name, items, indent=0):
    pad = "  " * indent
    out = [f"{pad}{name} {{"]
    for k, v in items.items():
        if isinstance(v, dict):
            out.extend(block(k, v, indent + 1))
        else:
            out.append(f"{pad}  {k}: {value(v)}")
    out.append(f"{pad}}}")
    return out


def tls(cfg, out_dir):
    t = cfg.get("tls") or {}
    if not t.get("enabled"):
        return {}
    d = out_dir / t["secretName"]
    return {"tls": {"cert_file": str(d / "tls.crt"), "key_file": str(d / "tls.key")}}


def main():
    values = yaml.safe_load(Path(sys.argv[1]).read_text())
    out_dir = Path(sys.argv[2])
    cfg = values.get("config", {})
    merge = dict(cfg.get("merge") or {})
    lines = ['server_name: "nats-0"', "port: 4222", "http_port: 8222"]
    cluster = cfg.get("cluster") or {}
    if cluster.get("enabled"):
        n = cluster.get("replicas", 3)
        routes = [f"nats://nats-{i}.nats-headless:6222" for i in range(n)]
        lines += block("cluster", {"name": "nats", "port": 6222, "routes": routes})
    js = cfg.get("jetstream") or {}
    if js.get("enabled"):
        j = {"store_dir": str(out_dir / "jetstream")}
        fs = js.get("fileStore") or {}
        if fs.get("enabled") and (fs.get("pvc") or {}).get("size"):
            j["max_file_store"] = fs["pvc"]["size"].replace("Gi", "G")
        if not (js.get("memoryStore") or {}).get("enabled"):
            j["max_memory_store"] = 0
        j.update(merge.pop("jetstream", {}) or {})
        lines += block("jetstream", j)
    leaf = cfg.get("leafnodes") or {}
    if leaf.get("enabled"):
        lines += block("leafnodes", {"port": leaf.get("port", 7422), **tls(leaf, out_dir)})
    ws = cfg.get("websocket") or {}
    if ws.get("enabled"):
        lines += block("websocket", {"port": ws.get("port", 8080), **tls(ws, out_dir)})
    for k, v in merge.items():
        if isinstance(v, dict):
            lines += block(k, v)
        else:
            lines.append(f"{k}: {value(v)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "nats.conf").write_text("\n".join(lines) + "\n")
    # The TLS secrets the values name, as files (the check needs them to exist).
    for c in (leaf, ws):
        t = c.get("tls") or {}
        if t.get("enabled"):
            (out_dir / t["secretName"]).mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main()
