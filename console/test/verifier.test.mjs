// The in-browser verifier (bundled from console/src/verify/index.ts) against the spec's
// known answers (testdata/vectors.json) and mnemo-audit's verdicts on every testdata
// bundle, valid and tampered. Prints one JSON line; api/tests/console.rs asserts it.
// usage: node verifier.test.mjs BUNDLED_VERIFIER TESTDATA_DIR
import fs from "node:fs";
import path from "node:path";

const [bundle, dir] = process.argv.slice(2);
const v = await import(bundle);
const out = { bundles: [], vectors: [] };
const check = (name, ok, detail = "") => out.vectors.push({ name, ok, detail });

// Known answers.
const kv = JSON.parse(fs.readFileSync(path.join(dir, "vectors.json"), "utf8"));
for (const [i, e] of kv.chain.events.entries()) {
  try {
    const d = v.decodeEvent(v.unhex(e.wire));
    check(`event ${i + 1} hash`, v.hex(d.hash) === e.hash);
    check(`event ${i + 1} canonical bytes`, v.hex(d.canonical) === e.canonical);
  } catch (err) {
    check(`event ${i + 1}`, false, String(err));
  }
}
const rules = new v.ChainRules(kv.chain.user);
try {
  for (const e of kv.chain.events) rules.push(v.decodeEvent(v.unhex(e.wire)));
  check("the sample chain verifies", true);
} catch (err) {
  check("the sample chain verifies", false, `${err.code} ${err.seq} ${err.message}`);
}
// An invalid chain must fail with its code at its seq (a `decode` failure at the seq the
// rules expected next).
function invalidChain(label, user, c) {
  const r = new v.ChainRules(user);
  let got = null;
  try {
    for (const w of c.wires) {
      let e;
      try {
        e = v.decodeEvent(v.unhex(w));
      } catch {
        got = { code: "decode", seq: Number(r.next) };
        break;
      }
      r.push(e);
    }
  } catch (err) {
    got = { code: err.code, seq: err.seq };
  }
  check(`${label}: ${c.name}`, got?.code === c.error.code && (c.error.seq == null || got?.seq === c.error.seq), JSON.stringify(got));
}
for (const c of kv.invalid_chains) invalidChain("invalid chain", kv.chain.user, c);
// Time capsules and the ask bit (testdata/grant-vectors.json): the same checks.
const gv = JSON.parse(fs.readFileSync(path.join(dir, "grant-vectors.json"), "utf8"));
for (const [i, e] of gv.valid.events.entries()) {
  try {
    const d = v.decodeEvent(v.unhex(e.wire));
    check(`grant vectors: event ${i + 1} hash`, v.hex(d.hash) === e.hash && v.hex(d.canonical) === e.canonical);
  } catch (err) {
    check(`grant vectors: event ${i + 1}`, false, String(err));
  }
}
const grules = new v.ChainRules(gv.valid.user);
try {
  for (const e of gv.valid.events) grules.push(v.decodeEvent(v.unhex(e.wire)));
  check("grant vectors: the chain verifies", true);
} catch (err) {
  check("grant vectors: the chain verifies", false, `${err.code} ${err.seq} ${err.message}`);
}
for (const c of gv.invalid) invalidChain("grant vectors: invalid chain", gv.valid.user, c);
for (const [i, m] of kv.memory_records.entries()) {
  const b = v.recordBytes(m.record);
  check(`memory record ${i}`, v.hex(b) === m.canonical);
  check(`commitment ${i}`, v.hex(v.H(v.CTX.payload, v.unhex(m.salt), b)) === m.commitment);
}
for (const [i, k] of kv.keys.entries()) check(`key id ${i}`, v.hex(v.keyId(v.unhex(k.public))) === k.key_id);
check("empty tree root", v.hex(new v.Accumulator(v.CTX.chainLeaf, v.CTX.chainNode).root()) === kv.empty_tree_root);

// mnemo-audit's verdicts on the bundles.
const verdicts = JSON.parse(fs.readFileSync(path.join(dir, "bundles", "verdicts.json"), "utf8")).verdicts;
for (const [name, want] of Object.entries(verdicts)) {
  const text = fs.readFileSync(path.join(dir, "bundles", `${name}.jsonl`), "utf8");
  const r = v.verifyBundle(text);
  const got = { code: r.failure?.code ?? null, seq: r.failure?.seq ?? null };
  const ok = got.code === (want.code ?? null) && (want.seq == null || got.seq === want.seq);
  out.bundles.push({ name, ok, want: { code: want.code ?? null, seq: want.seq ?? null }, got, detail: r.failure?.detail ?? "" });
}
console.log(JSON.stringify(out));
