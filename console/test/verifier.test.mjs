// The in-browser verifier against mnemo-audit's verdicts on every testdata bundle (valid
// and tampered), run with Node.js on the bundled verifier (see scripts/console.sh).
// usage: node verifier.test.mjs BUNDLED_VERIFIER TESTDATA_DIR
import fs from "node:fs";
import path from "node:path";

const [bundle, dir] = process.argv.slice(2);
const { verifyBundle } = await import(bundle);
const verdicts = JSON.parse(fs.readFileSync(path.join(dir, "verdicts.json"), "utf8")).verdicts;
const results = [];
for (const [name, want] of Object.entries(verdicts)) {
  const text = fs.readFileSync(path.join(dir, `${name}.jsonl`), "utf8");
  const v = verifyBundle(text);
  const got = { code: v.failure?.code ?? null, seq: v.failure?.seq ?? null };
  const ok = got.code === (want.code ?? null) && (want.seq == null || got.seq === want.seq);
  results.push({ name, ok, want: { code: want.code ?? null, seq: want.seq ?? null }, got, detail: v.failure?.detail ?? "" });
}
console.log(JSON.stringify(results));
