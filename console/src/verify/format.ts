// The custody format's bytes (docs/FORMAT.md §1 to §7), written from the spec: hashes,
// the canonical decoder of events (versions 1 and 2, every kind), the memory record's
// canonical bytes, seals and Merkle trees. No I/O; the rules are in verifier.ts.

import { blake3 } from "@noble/hashes/blake3.js";
import { ed25519 } from "@noble/curves/ed25519.js";

const enc = new TextEncoder();

export const CTX = {
  event: "mnemo 2026-11-26 event hash v1",
  payload: "mnemo 2026-11-26 payload commitment v1",
  keyId: "mnemo 2026-11-26 key id v1",
  chainLeaf: "mnemo 2026-11-26 chain tree leaf v1",
  chainNode: "mnemo 2026-11-26 chain tree node v1",
  epochLeaf: "mnemo 2026-11-26 epoch tree leaf v1",
  epochNode: "mnemo 2026-11-26 epoch tree node v1",
  object: "mnemo 2026-11-26 object content v1",
  empty: "mnemo 2026-11-26 empty tree v1",
  sealLeaf: "mnemo 2026-12-01 seal tree leaf v2",
  sealNode: "mnemo 2026-12-01 seal tree node v2",
  setLeaf: "mnemo 2026-12-01 training set leaf v1",
  setNode: "mnemo 2026-12-01 training set node v1",
};


function prefix(s: string): Uint8Array {
  const out = new Uint8Array(32);
  out.set(enc.encode(s));
  return out;
}

export const SIG = {
  event: prefix("mnemo event signature v1"),
  origin: prefix("mnemo origin signature v1"),
  capture: prefix("mnemo capture signature v1"),
  derived: prefix("mnemo derived signature v1"),
  model: prefix("mnemo model signature v1"),
  seal: prefix("mnemo seal signature v2"),
};

/** `H[ctx](x)`: BLAKE3 in key-derivation mode (FORMAT.md §1). */
export function H(ctx: string, ...parts: Uint8Array[]): Uint8Array {
  return blake3(concat(...parts), { context: enc.encode(ctx) });
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function unhex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The one signature rule (§1): ZIP-215. */
export function verifySig(key: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed25519.verify(sig, msg, key, { zip215: true });
  } catch {
    return false;
  }
}

/** The key rules of §8 for a key entering a chain: canonical, not small order, no torsion. */
export function keyAcceptable(key: Uint8Array): boolean {
  try {
    const p = ed25519.Point.fromBytes(key, true);
    if (!equal(p.toBytes(), key)) return false;
    return !p.isSmallOrder() && p.isTorsionFree();
  } catch {
    return false;
  }
}

export const keyId = (pk: Uint8Array) => H(CTX.keyId, pk);

export class DecodeError extends Error {}

/** A reader of the canonical encoding (§2). */
export class Reader {
  at = 0;
  constructor(public b: Uint8Array) {}
  take(n: number): Uint8Array {
    if (this.at + n > this.b.length) throw new DecodeError("truncated");
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0];
  }
  u32(): number {
    const t = this.take(4);
    return ((t[0] << 24) | (t[1] << 16) | (t[2] << 8) | t[3]) >>> 0;
  }
  u64(): bigint {
    const t = this.take(8);
    let v = 0n;
    for (const x of t) v = (v << 8n) | BigInt(x);
    return v;
  }
  i64(): bigint {
    const v = this.u64();
    return v >= 1n << 63n ? v - (1n << 64n) : v;
  }
  str(): string {
    const n = this.u32();
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.take(n));
    } catch {
      throw new DecodeError("invalid UTF-8");
    }
  }
  flag(): boolean {
    const f = this.u8();
    if (f > 1) throw new DecodeError("bad flag");
    return f === 1;
  }
  list<T>(f: () => T): T[] {
    const n = this.u32();
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(f());
    return out;
  }
  opt<T>(f: () => T): T | null {
    return this.flag() ? f() : null;
  }
}

export interface Conditions {
  tags: string[];
  kinds: string[];
  from: bigint | null;
  until: bigint | null;
  memories: string[];
}

export type Body =
  | { kind: "key_added"; key: Uint8Array; role: number }
  | { kind: "key_rotated"; old: string; key: Uint8Array }
  | { kind: "key_revoked"; key: string }
  | { kind: "memory_ingested"; memory: string; capture: { stream: string; counter: bigint } | null }
  | { kind: "memory_erased"; memory: string | null }
  | { kind: "memory_derived"; memory: string; grant: string; version: string; inputs: string[]; sig: Uint8Array }
  | { kind: "lineage_erased"; memory: string; reason: string; closure: string[] }
  | { kind: "grant_created"; grant: string; grantee: string; caps: number; cond: Conditions; expires: bigint | null; notBefore: bigint | null }
  | { kind: "question_asked"; question: string; asker: string; grant: string; model: string; cited: string[] }
  | { kind: "grant_revoked"; grant: string }
  | { kind: "processing_granted"; grant: string; processor: string; version: string | null; key: Uint8Array; cond: Conditions; expires: bigint | null }
  | { kind: "access_recorded"; accessor: string; grant: string; action: number; memories: string[] }
  | { kind: "inputs_fetched"; grant: string; memories: string[] }
  | { kind: "model_trained"; model: string; grant: string; version: string; artifact: Uint8Array; setRoot: Uint8Array; setCount: bigint; set: bigint[] | null; sig: Uint8Array };

export type Seal =
  | { form: "single"; sig: Uint8Array }
  | { form: "full"; size: number; index: number; path: Uint8Array[]; root: Uint8Array; sig: Uint8Array }
  | { form: "stored" };

export interface Event {
  version: number;
  user: string;
  seq: bigint;
  prev: Uint8Array;
  timestamp: bigint;
  body: Body;
  payload: Uint8Array | null;
  origin: { key: string; sig: Uint8Array } | null;
  signer: string;
  hash: Uint8Array;
  canonical: Uint8Array;
  sig: Uint8Array | null;
  seal: Seal | null;
}

const id16 = (r: Reader) => hex(r.take(16));
const id32 = (r: Reader) => hex(r.take(32));

function conditions(r: Reader): Conditions {
  return {
    tags: r.list(() => r.str()),
    kinds: r.list(() => r.str()),
    from: r.opt(() => r.i64()),
    until: r.opt(() => r.i64()),
    memories: r.list(() => id16(r)),
  };
}

function body(r: Reader): Body {
  const tag = r.u8();
  switch (tag) {
    case 0x01: {
      const key = r.take(32).slice();
      const role = r.u8();
      if (role !== 1 && role !== 2) throw new DecodeError("role");
      return { kind: "key_added", key, role };
    }
    case 0x02:
      return { kind: "key_rotated", old: id32(r), key: r.take(32).slice() };
    case 0x03:
      return { kind: "key_revoked", key: id32(r) };
    case 0x10:
      return { kind: "memory_ingested", memory: id16(r), capture: null };
    case 0x14: {
      const memory = id16(r);
      return { kind: "memory_ingested", memory, capture: { stream: r.str(), counter: r.u64() } };
    }
    case 0x11: {
      const scope = r.u8();
      if (scope === 1) return { kind: "memory_erased", memory: id16(r) };
      if (scope === 2) return { kind: "memory_erased", memory: null };
      throw new DecodeError("erasure scope");
    }
    case 0x12:
      return { kind: "memory_derived", memory: id16(r), grant: id16(r), version: r.str(), inputs: r.list(() => id16(r)), sig: r.take(64).slice() };
    case 0x13:
      return { kind: "lineage_erased", memory: id16(r), reason: r.str(), closure: r.list(() => id16(r)) };
    case 0x20:
    case 0x23: {
      // 0x23: a time capsule, its opening after the expiry (§4.1).
      const grant = id16(r);
      const grantee = r.str();
      const caps = r.u32();
      if (caps & ~7) throw new DecodeError("capability bits");
      const cond = conditions(r);
      const expires = r.opt(() => r.i64());
      const notBefore = tag === 0x23 ? r.i64() : null;
      return { kind: "grant_created", grant, grantee, caps, cond, expires, notBefore };
    }
    case 0x21:
      return { kind: "grant_revoked", grant: id16(r) };
    case 0x22:
      return { kind: "processing_granted", grant: id16(r), processor: r.str(), version: r.opt(() => r.str()), key: r.take(32).slice(), cond: conditions(r), expires: r.opt(() => r.i64()) };
    case 0x30: {
      const accessor = r.str();
      const grant = id16(r);
      const action = r.u8();
      if (action < 1 || action > 3) throw new DecodeError("action");
      return { kind: "access_recorded", accessor, grant, action, memories: r.list(() => id16(r)) };
    }
    case 0x32:
      return { kind: "question_asked", question: id16(r), asker: r.str(), grant: id16(r), model: id16(r), cited: r.list(() => id16(r)) };
    case 0x31:
      return { kind: "inputs_fetched", grant: id16(r), memories: r.list(() => id16(r)) };
    case 0x40:
      return { kind: "model_trained", model: id16(r), grant: id16(r), version: r.str(), artifact: r.take(32).slice(), setRoot: r.take(32).slice(), setCount: r.u64(), set: null, sig: r.take(64).slice() };
    case 0x41: {
      // The training set published (§15.4): the members' seqs; the count is their number.
      const head = { model: id16(r), grant: id16(r), version: r.str(), artifact: r.take(32).slice(), setRoot: r.take(32).slice() };
      const set = r.list(() => r.u64());
      return { kind: "model_trained", ...head, setCount: BigInt(set.length), set, sig: r.take(64).slice() };
    }
    default:
      throw new DecodeError(`unknown kind tag ${tag}`);
  }
}

/** Decodes an event's wire form (§3, §5.3). */
export function decodeEvent(wire: Uint8Array): Event {
  const r = new Reader(wire);
  const version = r.u8();
  if (version !== 1 && version !== 2) throw new DecodeError("unknown version");
  const user = r.str();
  const seq = r.u64();
  const prev = r.take(32).slice();
  const timestamp = r.i64();
  const b = body(r);
  const payload = r.opt(() => r.take(32).slice());
  const origin = r.opt(() => ({ key: id32(r), sig: r.take(64).slice() }));
  const signer = id32(r);
  const canonical = wire.slice(0, r.at);
  let sig: Uint8Array | null = null;
  let seal: Seal | null = null;
  if (version === 1) {
    sig = r.take(64).slice();
  } else {
    const form = r.u8();
    if (form === 1) seal = { form: "single", sig: r.take(64).slice() };
    else if (form === 2) {
      const size = r.u32();
      const index = r.u32();
      const path = r.list(() => r.take(32).slice());
      const root = r.take(32).slice();
      const s = r.take(64).slice();
      if (size < 1 || size > 65536) throw new DecodeError("seal size");
      seal = { form: "full", size, index, path, root, sig: s };
    } else if (form === 3) {
      r.u64();
      r.u32();
      seal = { form: "stored" };
    } else throw new DecodeError("seal form");
  }
  if (r.at !== wire.length) throw new DecodeError("trailing bytes");
  return { version, user, seq, prev, timestamp, body: b, payload, origin, signer, hash: H(CTX.event, canonical), canonical, sig, seal };
}

/** RFC 9162 §2.1.3.2 inclusion check; the computed root, or a code. */
export function inclusionRoot(leaf: Uint8Array, index: number, size: number, path: Uint8Array[], node: (l: Uint8Array, r: Uint8Array) => Uint8Array): Uint8Array | "path" | "index" {
  if (index >= size) return "index";
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return "path";
    if (fn % 2 === 1 || fn === sn) {
      r = node(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = node(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 ? r : "path";
}

/** The root over the leaf hashes (§7), computed incrementally (a compact range). */
export class Accumulator {
  private stack: { size: number; hash: Uint8Array }[] = [];
  constructor(private leafCtx: string, private nodeCtx: string) {}
  push(data: Uint8Array) {
    let item = { size: 1, hash: H(this.leafCtx, data) };
    while (this.stack.length && this.stack[this.stack.length - 1].size === item.size) {
      const left = this.stack.pop()!;
      item = { size: left.size * 2, hash: H(this.nodeCtx, left.hash, item.hash) };
    }
    this.stack.push(item);
  }
  root(): Uint8Array {
    if (!this.stack.length) return H(CTX.empty);
    let r = this.stack[this.stack.length - 1].hash;
    for (let i = this.stack.length - 2; i >= 0; i--) r = H(this.nodeCtx, this.stack[i].hash, r);
    return r;
  }
}

function u32b(n: number) {
  return new Uint8Array([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}
function u64b(n: bigint) {
  const out = new Uint8Array(8);
  let v = BigInt.asUintN(64, n);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 255n);
    v >>= 8n;
  }
  return out;
}
export const encStr = (s: string) => {
  const b = enc.encode(s);
  return concat(u32b(b.length), b);
};
export { u32b, u64b };

/** The canonical memory record (§6.1) from its JSON form (§10). */
export function recordBytes(rec: {
  kind: string;
  tags: string[];
  captured_at: number | null;
  source: string | null;
  content_type: string;
  content: { storage: "inline"; bytes: string } | { storage: "object"; hash: string; size: number };
}): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array([1]), encStr(rec.kind), u32b(rec.tags.length), ...rec.tags.map(encStr)];
  parts.push(rec.captured_at === null ? new Uint8Array([0]) : concat(new Uint8Array([1]), u64b(BigInt(rec.captured_at))));
  parts.push(rec.source === null ? new Uint8Array([0]) : concat(new Uint8Array([1]), encStr(rec.source)));
  parts.push(encStr(rec.content_type));
  if (rec.content.storage === "inline") {
    const b = unhex(rec.content.bytes);
    parts.push(new Uint8Array([1]), u32b(b.length), b);
  } else {
    parts.push(new Uint8Array([2]), unhex(rec.content.hash), u64b(BigInt(rec.content.size)));
  }
  return concat(...parts);
}
