// A custody-bundle verifier written from docs/FORMAT.md (§8 chain rules, §13 bundles),
// run in the browser on the user's own export. Its verdict is the first failure, named by
// the codes of §9 and the seq where the chain stops being valid, as mnemo-audit names it.

import {
  Accumulator,
  CTX,
  type Conditions,
  DecodeError,
  type Event,
  H,
  SIG,
  concat,
  decodeEvent,
  encStr,
  equal,
  hex,
  inclusionRoot,
  keyAcceptable,
  keyId,
  recordBytes,
  u64b,
  unhex,
  verifySig,
} from "./format";

export interface Failure {
  code: string;
  seq: number | null;
  detail: string;
}

export interface EventResult {
  seq: number;
  kind: string;
  ok: boolean;
}

export interface Verdict {
  valid: boolean;
  failure: Failure | null;
  events: EventResult[];
  anchors: number;
  payloads: number;
}

class Refusal extends Error {
  constructor(public code: string, public seq: number | null, detail: string) {
    super(detail);
  }
}

const fail = (code: string, seq: bigint | number | null, detail: string): never => {
  throw new Refusal(code, seq === null ? null : Number(seq), detail);
};

const MIN_T = -62135596800000n;
const MAX_T = 253402300799999n;
const timeOk = (t: bigint | null) => t === null || (t >= MIN_T && t <= MAX_T);
const textOk = (s: string) => !s.includes("\u0000");

interface Key {
  key: Uint8Array;
  role: number;
  retired: boolean;
}

/** What the access rule needs of an opened memory (§4.1.1 point 5). */
interface Facts {
  kind: string;
  tags: string[];
  time: bigint;
}

/** Whether a grant's conditions cover a memory (§4.1.1 point 5). */
function covers(c: Conditions, f: Facts): boolean {
  return (
    (c.tags.length === 0 || f.tags.some((t) => c.tags.includes(t))) &&
    (c.kinds.length === 0 || c.kinds.includes(f.kind)) &&
    (c.from === null || f.time >= c.from) &&
    (c.until === null || f.time < c.until)
  );
}

interface GrantState {
  grantee: string | null;
  caps: number;
  expires: bigint | null;
  notBefore: bigint | null;
  cond: Conditions;
  revoked: boolean;
  processing: { processor: string; version: string | null; key: Uint8Array } | null;
}

/** The chain rules of FORMAT.md §8 over one user's events, in order. */
export class ChainRules {
  next = 1n;
  prev: Uint8Array = new Uint8Array(32);
  version = 1;
  keys = new Map<string, Key>();
  memories = new Set<string>();
  erased = new Set<string>();
  grants = new Map<string, GrantState>();
  captures = new Set<string>();
  children = new Map<string, string[]>();
  fetched = new Map<string, Set<string>>();
  derivations = new Set<string>();
  models = new Set<string>();
  questions = new Set<string>();
  // Each event that added a memory, by seq: a published training set is checked against them.
  memoryEvents = new Map<bigint, { memory: string; hash: Uint8Array }>();
  acc = new Accumulator(CTX.chainLeaf, CTX.chainNode);
  private retireNext: string[] = [];

  constructor(public user: string) {}

  push(e: Event): void {
    const seq = e.seq;
    if (e.user !== this.user) fail("wrong_user", this.next, "an event of another user's chain");
    if (seq !== this.next) fail("seq_gap", this.next, `seq ${seq} where ${this.next} was due`);
    if (!equal(e.prev, this.prev)) fail("broken_link", seq, "prev is not the previous event's hash");
    if (e.version < this.version) fail("invalid_transition", seq, "a chain never moves back to version 1");
    for (const k of this.retireNext) this.keys.get(k)!.retired = true;
    this.retireNext = [];
    // Genesis.
    let signerKey: Uint8Array;
    if (seq === 1n) {
      const b = e.body;
      if (b.kind !== "key_added" || b.role !== 1 || hex(keyId(b.key)) !== e.signer) {
        fail("bad_genesis", seq, "event 1 is not a custody key_added signed by its key");
      }
      signerKey = (b as { key: Uint8Array }).key;
    } else {
      const k = this.keys.get(e.signer);
      if (!k) fail("unknown_key", seq, "the signer was never added");
      if (k!.role !== 1 || k!.retired) fail("key_not_allowed", seq, "the signer is not a live custody key");
      signerKey = k!.key;
    }
    // Version 2: the seal's hashing steps (§5.4 steps 1 to 3).
    let custodyMsg: Uint8Array;
    let custodySig: Uint8Array;
    if (e.version === 1) {
      custodyMsg = concat(SIG.event, e.hash);
      custodySig = e.sig!;
    } else {
      const s = e.seal!;
      if (s.form === "stored") fail("seal_missing", seq, "a stored seal link without its record");
      let size = 1;
      let root: Uint8Array;
      if (s.form === "single") {
        root = H(CTX.sealLeaf, e.hash);
      } else if (s.form === "full") {
        size = s.size;
        const r = inclusionRoot(H(CTX.sealLeaf, e.hash), s.index, s.size, s.path, (l, x) => H(CTX.sealNode, l, x));
        if (r === "index") fail("seal_index", seq, "the seal's index is not below its size");
        if (r === "path") fail("seal_path", seq, "the seal's path has the wrong length");
        if (!equal(r as Uint8Array, s.root)) fail("seal_root", seq, "the seal's path does not lead to its root");
        root = s.root;
      } else {
        throw new Error("unreachable");
      }
      custodyMsg = concat(SIG.seal, u64b(BigInt(size)), root);
      custodySig = (s as { sig: Uint8Array }).sig;
    }
    this.values(e);
    const isMemory = e.body.kind === "memory_ingested" || e.body.kind === "memory_derived" || e.body.kind === "question_asked";
    if (isMemory !== (e.payload !== null)) fail("invalid_transition", seq, "a payload belongs to memory and question events only");
    let origin: { key: Uint8Array; msg: Uint8Array; sig: Uint8Array } | null = null;
    if (e.origin) {
      if (e.body.kind !== "memory_ingested") fail("invalid_transition", seq, "an origin belongs to memory_ingested only");
      const k = this.keys.get(e.origin.key);
      if (!k) fail("unknown_key", seq, "the origin key was never added");
      if (k!.role !== 2 || k!.retired) fail("key_not_allowed", seq, "the origin key is not a live device key");
      const b = e.body as Extract<Event["body"], { kind: "memory_ingested" }>;
      const msg = b.capture
        ? concat(SIG.capture, encStr(this.user), encStr(b.capture.stream), u64b(b.capture.counter), e.payload!)
        : concat(SIG.origin, encStr(this.user), e.payload!);
      origin = { key: k!.key, msg, sig: e.origin.sig };
    }
    const processor = this.kind(e);
    // The signatures last (§8): custody or seal, origin, processor.
    if (!verifySig(signerKey!, custodyMsg, custodySig)) fail("bad_signature", seq, "the custody signature does not verify");
    if (origin && !verifySig(origin.key, origin.msg, origin.sig)) fail("bad_origin_signature", seq, "the origin signature does not verify");
    if (processor && !verifySig(processor.key, processor.msg, processor.sig)) fail("bad_processor_signature", seq, "the processor signature does not verify");
    this.prev = e.hash;
    this.next = seq + 1n;
    this.version = e.version;
    this.acc.push(e.hash);
    if (isMemory) this.memoryEvents.set(seq, { memory: (e.body as { memory: string }).memory, hash: e.hash });
  }

  // A published training set (tag 0x41, §15.4): strictly ascending seqs, each the event of
  // a memory fetched under the grant, and the root is the tree of those events.
  private publishedSet(seq: bigint, grant: string, set: bigint[], root: Uint8Array) {
    for (let i = 1; i < set.length; i++) {
      if (set[i - 1] >= set[i]) fail("invalid_transition", seq, "a training set lists its members' seqs in ascending order, once each");
    }
    const fetched = this.fetched.get(grant) ?? new Set<string>();
    const tree = new Accumulator(CTX.setLeaf, CTX.setNode);
    for (const s of set) {
      const m = this.memoryEvents.get(s);
      if (!m || !fetched.has(m.memory)) fail("invalid_transition", seq, "a training-set member is not the event of a memory fetched under the grant");
      tree.push(concat(u64b(s), m!.hash));
    }
    if (!equal(tree.root(), root)) fail("invalid_transition", seq, "the training set's root is not the tree of its members' events");
  }

  private values(e: Event) {
    const bad = (why: string) => fail("invalid_value", e.seq, why);
    if (!timeOk(e.timestamp)) bad("timestamp out of range");
    const b = e.body;
    if (b.kind === "grant_created" || b.kind === "processing_granted") {
      if (!timeOk(b.expires) || !timeOk(b.cond.from) || !timeOk(b.cond.until)) bad("a time out of range");
      if (b.kind === "grant_created" && !timeOk(b.notBefore)) bad("a time out of range");
      if (![...b.cond.tags, ...b.cond.kinds].every(textOk)) bad("U+0000 in a condition");
      if (b.cond.kinds.some((k) => k === "")) bad("an empty kind in a condition");
      if (b.kind === "processing_granted" && b.version !== null && !versionOk(b.version)) bad("processor version");
    }
    if ((b.kind === "memory_derived" || b.kind === "model_trained") && !versionOk(b.version)) bad("processor version");
    if (b.kind === "lineage_erased" && (new TextEncoder().encode(b.reason).length > 512 || !textOk(b.reason))) bad("erasure reason");
    if (b.kind === "memory_ingested" && b.capture) {
      const n = new TextEncoder().encode(b.capture.stream).length;
      if (n < 1 || n > 64 || !textOk(b.capture.stream)) bad("capture stream");
    }
  }

  private addKey(e: Event, key: Uint8Array, role: number) {
    const id = hex(keyId(key));
    if (!keyAcceptable(key) || this.keys.has(id)) fail("invalid_transition", e.seq, "a weak, non-canonical or repeated key");
    this.keys.set(id, { key, role, retired: false });
  }

  private liveProcessing(e: Event, grant: string) {
    const g = this.grants.get(grant);
    if (!g || !g.processing || g.revoked || (g.expires !== null && e.timestamp >= g.expires)) {
      fail("bad_grant", e.seq, "not a live processing grant of the chain");
    }
    return g!;
  }

  /** The kind rules; a processor signature to check last, when the kind has one. */
  private kind(e: Event): { key: Uint8Array; msg: Uint8Array; sig: Uint8Array } | null {
    const b = e.body;
    const seq = e.seq;
    switch (b.kind) {
      case "key_added":
        this.addKey(e, b.key, b.role);
        return null;
      case "key_rotated": {
        const old = this.keys.get(b.old);
        if (!old) fail("unknown_key", seq, "the rotated key was never added");
        if (e.signer !== b.old) fail("invalid_transition", seq, "a rotation is signed by the old key");
        this.addKey(e, b.key, 1);
        this.retireNext.push(b.old);
        return null;
      }
      case "key_revoked": {
        const k = this.keys.get(b.key);
        if (!k) fail("unknown_key", seq, "the revoked key was never added");
        if (k!.retired) fail("invalid_transition", seq, "the key is retired already");
        this.retireNext.push(b.key);
        return null;
      }
      case "memory_ingested": {
        if (this.memories.has(b.memory)) fail("invalid_transition", seq, "memory id used twice");
        if (b.capture) {
          const id = `${e.origin?.key ?? "-"}/${b.capture.stream}/${b.capture.counter}`;
          if (this.captures.has(id)) fail("duplicate_capture", seq, `capture ${b.capture.stream}/${b.capture.counter} recorded twice`);
          this.captures.add(id);
        }
        this.memories.add(b.memory);
        return null;
      }
      case "memory_erased": {
        if (b.memory !== null && this.questions.has(b.memory)) {
          if (this.erased.has(b.memory)) fail("invalid_transition", seq, "the question was erased before");
          this.erased.add(b.memory);
          return null;
        }
        if (b.memory === null) this.questions.forEach((q) => this.erased.add(q));
        const targets = b.memory === null ? [...this.memories] : [b.memory];
        if (b.memory !== null && !this.memories.has(b.memory)) fail("unknown_memory", seq, "erasure of an unknown memory");
        for (const m of targets) {
          if (b.memory !== null && (this.children.get(m) ?? []).some((c) => !this.erased.has(c))) {
            fail("erasure_incomplete", seq, "memories derived from it stay readable: use lineage_erased");
          }
          this.erased.add(m);
        }
        return null;
      }
      case "lineage_erased": {
        if (!this.memories.has(b.memory)) fail("unknown_memory", seq, "erasure of an unknown memory");
        const want = new Set<string>();
        const walk = (m: string) => {
          for (const c of this.children.get(m) ?? []) if (!want.has(c)) (want.add(c), walk(c));
        };
        walk(b.memory);
        const got = new Set(b.closure);
        if (got.size !== want.size || [...want].some((m) => !got.has(m))) fail("erasure_incomplete", seq, "not the lineage closure");
        for (const m of [b.memory, ...b.closure]) this.erased.add(m);
        return null;
      }
      case "grant_created": {
        if (this.grants.has(b.grant)) fail("bad_grant", seq, "grant created twice");
        if (b.grantee === this.user) fail("invalid_transition", seq, "a grant to the owner");
        this.grants.set(b.grant, { grantee: b.grantee, caps: b.caps, expires: b.expires, notBefore: b.notBefore, cond: b.cond, revoked: false, processing: null });
        return null;
      }
      case "processing_granted": {
        if (this.grants.has(b.grant)) fail("bad_grant", seq, "grant created twice");
        if (!keyAcceptable(b.key)) fail("invalid_transition", seq, "a weak or non-canonical processor key");
        this.grants.set(b.grant, { grantee: null, caps: 0, expires: b.expires, notBefore: null, cond: b.cond, revoked: false, processing: { processor: b.processor, version: b.version, key: b.key } });
        return null;
      }
      case "grant_revoked": {
        const g = this.grants.get(b.grant);
        if (!g || g.revoked) fail("bad_grant", seq, "revoked twice or unknown");
        g!.revoked = true;
        return null;
      }
      case "access_recorded": {
        const g = this.grants.get(b.grant);
        const need = b.action === 3 ? 2 : 1;
        if (!g || g.processing || g.revoked || g.grantee !== b.accessor || (g.expires !== null && e.timestamp >= g.expires) || (g.notBefore !== null && e.timestamp < g.notBefore) || (g.caps & need) === 0) {
          fail("bad_grant", seq, "not a live grant for this accessor and action");
        }
        for (const m of b.memories) if (!this.memories.has(m)) fail("unknown_memory", seq, "an access to an unknown memory");
        return null;
      }
      case "question_asked": {
        // §4.3: the grant live for the asker with ask (bit 2), the model, the citations.
        const g = this.grants.get(b.grant);
        if (!g || g.processing || g.revoked || g.grantee !== b.asker || (g.expires !== null && e.timestamp >= g.expires) || (g.notBefore !== null && e.timestamp < g.notBefore) || (g.caps & 4) === 0) {
          fail("bad_grant", seq, "not a live grant with ask for this asker");
        }
        if (!this.models.has(b.model)) fail("invalid_transition", seq, "the answering model is not a model_trained of this chain");
        if (this.memories.has(b.question) || this.questions.has(b.question)) fail("invalid_transition", seq, "question id used before");
        if (b.cited.length > 1024 || b.cited.some((m, i) => i > 0 && b.cited[i - 1] >= m)) fail("invalid_transition", seq, "cited memories out of order or repeated");
        for (const m of b.cited) {
          if (!this.memories.has(m)) fail("unknown_memory", seq, "a citation of an unknown memory");
          if (this.erased.has(m)) fail("invalid_transition", seq, "cites an erased memory");
          if (g!.cond.memories.length > 0 && !g!.cond.memories.includes(m)) fail("citation_not_covered", seq, "a citation outside the grant's memories");
        }
        this.questions.add(b.question);
        return null;
      }
      case "inputs_fetched": {
        this.liveProcessing(e, b.grant);
        for (const m of b.memories) if (!this.memories.has(m)) fail("unknown_memory", seq, "a fetch of an unknown memory");
        const f = this.fetched.get(b.grant) ?? new Set<string>();
        b.memories.forEach((m) => f.add(m));
        this.fetched.set(b.grant, f);
        return null;
      }
      case "memory_derived": {
        const g = this.liveProcessing(e, b.grant);
        const p = g.processing!;
        if (p.version !== null && p.version !== b.version) fail("bad_grant", seq, "not for this version");
        const f = this.fetched.get(b.grant) ?? new Set<string>();
        for (const m of b.inputs) if (!f.has(m)) fail("input_not_covered", seq, "an input not fetched under the grant");
        const dk = hex(H("mnemo 2026-12-01 derivation key v1", encStr(p.processor), encStr(b.version), listIds(b.inputs)));
        if (this.derivations.has(dk)) fail("already_derived", seq, "the same result recorded before");
        if (this.memories.has(b.memory)) fail("invalid_transition", seq, "memory id used twice");
        this.derivations.add(dk);
        this.memories.add(b.memory);
        for (const m of b.inputs) this.children.set(m, [...(this.children.get(m) ?? []), b.memory]);
        const msg = concat(SIG.derived, encStr(this.user), unhex(b.grant), encStr(p.processor), encStr(b.version), listIds(b.inputs), e.payload!);
        return { key: p.key, msg, sig: b.sig };
      }
      case "model_trained": {
        const g = this.liveProcessing(e, b.grant);
        const p = g.processing!;
        if (p.version !== null && p.version !== b.version) fail("bad_grant", seq, "not for this version");
        const fetched = this.fetched.get(b.grant)?.size ?? 0;
        if (b.setCount === 0n || b.setCount > BigInt(fetched)) fail("invalid_transition", seq, "a training set holds 1 to as many memories as the grant fetched");
        if (b.set) this.publishedSet(seq, b.grant, b.set, b.setRoot);
        if (this.models.has(b.model)) fail("invalid_transition", seq, "model id used twice");
        this.models.add(b.model);
        const msg = concat(SIG.model, encStr(this.user), unhex(b.grant), encStr(p.processor), encStr(b.version), b.artifact, b.setRoot, u64b(b.setCount));
        return { key: p.key, msg, sig: b.sig };
      }
    }
  }
}

function versionOk(v: string) {
  const n = new TextEncoder().encode(v).length;
  return n >= 1 && n <= 64 && textOk(v);
}

function listIds(ids: string[]) {
  const n = new Uint8Array([(ids.length >>> 24) & 255, (ids.length >>> 16) & 255, (ids.length >>> 8) & 255, ids.length & 255]);
  return concat(n, ...ids.map(unhex));
}

const HEX = /^([0-9a-f]{2})*$/;

function checkpointBytes(c: { user: string; seq: number; head: string; root: string }) {
  return concat(new Uint8Array([1]), encStr(c.user), u64b(BigInt(c.seq)), unhex(c.head), unhex(c.root));
}

/** Verifies a custody bundle (JSON lines, FORMAT.md §13) to its first failure. */
export function verifyBundle(text: string): Verdict {
  const events: EventResult[] = [];
  let anchors = 0;
  let payloads = 0;
  try {
    const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
    const items = lines.map((l, i) => {
      if (l.trim() !== l || l === "") fail("structure", null, `line ${i + 1}: blank or padded`);
      try {
        const v = JSON.parse(l);
        if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
        return v;
      } catch {
        return fail("structure", null, `line ${i + 1}: not one JSON object`);
      }
    });
    const header = items[0];
    if (!header || header.type !== "header" || header.format !== "mnemo-custody-bundle" || header.version !== 1) {
      fail("structure", null, "the first line is not a custody bundle header");
    }
    const user: string = header.user;
    const rules = new ChainRules(user);
    const expected = new Map<number, { head: string; root: string }>();
    let first: { contract: string; chain_id: number } | null = null;
    let last: { epoch: number; root: string; seq: number } | null = null;
    let at = 1;
    for (; at < items.length && items[at].type === "anchor"; at++) {
      const a = items[at];
      const p = a.epoch_proof;
      const r = a.receipt;
      const c = p.checkpoint;
      const seq = c.seq;
      const leaf = checkpointBytes(c);
      const root = inclusionRoot(H(CTX.epochLeaf, leaf), p.inclusion.index, p.inclusion.size, p.inclusion.path.map(unhex), (l, x) => H(CTX.epochNode, l, x));
      if (typeof root === "string" || hex(root) !== p.root) fail("anchor", seq, "the epoch proof does not verify");
      if (c.user !== user || r.root !== p.root || r.epoch !== p.epoch || r.leaf_count !== p.inclusion.size) fail("anchor", seq, "the receipt is not the epoch proof's");
      if (first && (r.contract !== first.contract || r.chain_id !== first.chain_id)) fail("anchor", seq, "another contract or chain");
      if (last && (r.epoch <= last.epoch || seq < last.seq)) fail("anchor", seq, "epochs out of order");
      if (last && r.epoch === last.epoch + 1 && r.prev_root !== last.root) fail("anchor", seq, "prev_root is not the previous root");
      const had = expected.get(seq);
      if (had && (had.head !== c.head || had.root !== c.root)) fail("anchor", seq, "two anchored checkpoints at one seq disagree");
      expected.set(seq, { head: c.head, root: c.root });
      first ??= { contract: r.contract, chain_id: r.chain_id };
      last = { epoch: r.epoch, root: r.root, seq };
      anchors++;
    }
    const opened = new Set<string>();
    const facts = new Map<string, Facts>();
    let lastEvent: Event | null = null;
    let memoryOf = new Map<bigint, string>();
    let end: { events: number; head: string } | null = null;
    for (; at < items.length; at++) {
      const it = items[at];
      if (end) fail("structure", null, "items after the end");
      if (it.type === "event") {
        if (typeof it.wire !== "string" || !HEX.test(it.wire)) fail("structure", null, "an event's wire is not lowercase hex");
        let e: Event;
        try {
          e = decodeEvent(unhex(it.wire));
        } catch (err) {
          if (err instanceof DecodeError) fail("decode", rules.next, `an event does not decode: ${err.message}`);
          throw err;
        }
        const b = e!.body;
        events.push({ seq: Number(e!.seq), kind: b.kind, ok: true });
        if ((b.kind === "memory_erased" || b.kind === "lineage_erased") && e!.user === user) {
          const gone = b.kind === "memory_erased" ? (b.memory === null ? [...opened] : [b.memory]) : [b.memory, ...b.closure];
          rules.push(e!);
          if (gone.some((m) => opened.has(m))) fail("erased_opening", e!.seq, "the bundle opens a memory this erases");
        } else {
          rules.push(e!);
        }
        if (b.kind === "memory_ingested" || b.kind === "memory_derived") memoryOf.set(e!.seq, b.memory);
        if (b.kind === "question_asked") {
          memoryOf.set(e!.seq, b.question);
          // §13: the citations against the grant's conditions, for records opened here.
          const c = rules.grants.get(b.grant)?.cond;
          for (const m of b.cited) {
            const f = facts.get(m);
            if (c && f && !covers(c, f)) fail("citation_not_covered", e!.seq, "a citation outside the grant's tags, kinds or times");
          }
        }
        lastEvent = e!;
        const want = expected.get(Number(e!.seq));
        if (want && (want.head !== hex(e!.hash) || want.root !== hex(rules.acc.root()))) fail("checkpoint_mismatch", e!.seq, "an anchored checkpoint is not the chain's");
      } else if (it.type === "payload") {
        if (!lastEvent || BigInt(it.seq) !== lastEvent.seq || !lastEvent.payload) fail("payload", it.seq ?? null, "a payload opening out of place");
        let bytes: Uint8Array;
        try {
          bytes = recordBytes(it.record);
        } catch {
          return fail("payload", it.seq, "the record does not encode");
        }
        if (!equal(H(CTX.payload, unhex(it.salt), bytes!), lastEvent!.payload!)) fail("payload", it.seq, "the opening does not open the commitment");
        // The record's values (§4.5), as mnemo-audit checks them after the commitment.
        const r = it.record;
        const texts = [r.kind, r.content_type, ...r.tags, ...(r.source === null ? [] : [r.source])];
        const isText = r.content_type.split(";")[0].trim().toLowerCase().startsWith("text/");
        if (
          r.kind === "" || !texts.every(textOk) || !timeOk(r.captured_at === null ? null : BigInt(r.captured_at)) ||
          (r.content.storage === "inline" && isText && unhex(r.content.bytes).includes(0))
        ) fail("payload", it.seq, "the record breaks a value rule (§4.5)");
        opened.add(memoryOf.get(lastEvent!.seq)!);
        const lb = lastEvent!.body;
        if (lb.kind === "memory_ingested" || lb.kind === "memory_derived") {
          facts.set(lb.memory, { kind: r.kind, tags: r.tags, time: r.captured_at === null ? lastEvent!.timestamp : BigInt(r.captured_at) });
        }
        payloads++;
      } else if (it.type === "end") {
        end = { events: it.events, head: it.head };
      } else {
        fail("structure", null, `an item of type ${it.type} out of place`);
      }
    }
    for (const seq of expected.keys()) {
      if (seq > Number(rules.next - 1n)) fail("truncated", Number(rules.next), "the chain ends before an anchored checkpoint");
    }
    if (!end || end.events !== Number(rules.next - 1n) || end.head !== hex(rules.prev)) fail("structure", null, "the end item does not name the chain's length and head");
    memoryOf = new Map();
    return { valid: true, failure: null, events, anchors, payloads };
  } catch (e) {
    if (e instanceof Refusal) {
      if (e.seq !== null) {
        const ev = events.findLast((x) => x.seq === e.seq);
        if (ev) ev.ok = false;
        else events.push({ seq: e.seq, kind: "?", ok: false });
      }
      return { valid: false, failure: { code: e.code, seq: e.seq, detail: e.message }, events, anchors, payloads };
    }
    return { valid: false, failure: { code: "structure", seq: null, detail: String(e) }, events, anchors, payloads };
  }
}
