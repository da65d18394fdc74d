// The privacy console end to end in Debian's headless Chromium (playwright-core), with a
// fake microphone. Prints one JSON line of what it saw; api/tests/console.rs asserts it.
// usage: node e2e.mjs PLAYWRIGHT_CORE BASE_URL SIGNIN_TOKEN GRANTEE_TOKEN SCREENSHOT_DIR
import os from "node:os";
import path from "node:path";

const [pw, base, token, granteeToken, shots] = process.argv.slice(2);
const { chromium } = await import(path.join(pw, "index.mjs"));
const out = { steps: [] };
const step = (s) => out.steps.push(s);

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
const context = await browser.newContext({ permissions: ["microphone"] });
const page = await context.newPage();
page.on("pageerror", (e) => (out.pageErrors ??= []).push(String(e)));
const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
const waitStatus = async (re) => {
  const found = page.locator("[role=status], [role=alert]").filter({ hasText: re }).first();
  await found.waitFor({ timeout: 20000 });
  return (await found.textContent()).trim();
};
// Keyboard only: Tab until `selector` has the focus, then its key.
async function tabTo(selector, max = 60) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

try {
  // Sign in with the link `mnemo dev` prints: the token rides in the fragment.
  const res = await page.goto(`${base}/console/#/signin?token=${token}`);
  out.csp = res.headers()["content-security-policy"] ?? null;
  await page.locator("nav").waitFor({ timeout: 20000 });
  out.url_after_signin = page.url();
  const cookies = await context.cookies();
  const s = cookies.find((c) => c.name === "mnemo_session");
  out.cookie = s ? { httpOnly: s.httpOnly, sameSite: s.sameSite } : null;
  out.readable = await page.evaluate(() => ({
    cookie: document.cookie,
    local: Object.keys(localStorage).length,
    session: Object.keys(sessionStorage).length,
  }));
  step("signed in");
  await shot("memories-empty");

  // Capture a note, keyboard only.
  await page.goto(`${base}/console/#/capture`);
  await page.locator("#note").waitFor();
  await tabTo("#note");
  await page.keyboard.type("a note typed with the keyboard");
  await tabTo("#tags");
  await page.keyboard.type("diary");
  await tabTo("form button[type=submit]");
  await page.keyboard.press("Enter");
  out.note = await waitStatus(/Captured/);
  step("note captured");
  // Record audio from the fake microphone.
  await page.getByRole("button", { name: "Record" }).click();
  await page.waitForTimeout(1500);
  await page.getByRole("button", { name: "Stop and send" }).click();
  out.recording = await waitStatus(/Captured/);
  step("audio recorded");
  await shot("capture");

  // The timeline shows both, the recording as an audio element.
  await page.goto(`${base}/console/#/memories`);
  await page.locator("[data-testid=timeline] li").nth(1).waitFor({ timeout: 20000 });
  out.timeline = await page.locator("[data-testid=timeline] li").count();
  // A text's preview is fetched after the list: wait for it, then count it.
  const note = page.getByText("a note typed with the keyboard");
  await note.first().waitFor({ timeout: 20000 }).catch(() => {});
  out.note_shown = await note.count();
  out.audio = await page.locator("audio").count();
  out.models_state = (await page.locator("[data-testid=no-models], [data-testid=models]").first().textContent({ timeout: 20000 })).trim();
  out.lineage_shown = await page.getByText("derived: transcript").first().waitFor({ timeout: 20000 }).then(() => true, () => false);
  await shot("memories");
  step("timeline");

  // A grant, keyboard only; the grantee reads; the access log shows it; revoke.
  await page.goto(`${base}/console/#/consent`);
  await page.locator("#grantee").waitFor();
  await tabTo("#grantee");
  await page.keyboard.type("ben");
  await tabTo("form button[type=submit]");
  await page.keyboard.press("Enter");
  out.grant = await waitStatus(/Granted/);
  const read = await fetch(`${base}/v1/users/ana/memories`, { headers: { authorization: `Bearer ${granteeToken}` } });
  out.grantee_read = read.status;
  await page.reload();
  await page.locator("[data-testid=access-log] tbody tr").first().waitFor({ timeout: 20000 });
  out.access_log = (await page.locator("[data-testid=access-log] tbody tr").first().textContent()).includes("ben");
  // The ASR worker's fetch of the recording is there too, in plain words.
  out.processor_reads = await page
    .locator("[data-testid=access-log] tbody tr[data-kind=processor]", { hasText: "fetched" })
    .count();
  await shot("consent");
  await page.getByRole("button", { name: "Revoke ben" }).click();
  out.revoked = await waitStatus(/revoked/);
  // A time capsule for ben that may also ask: it opens in a year, and says so.
  await page.locator("#grantee").fill("ben");
  await page.locator("#ask").check();
  const year = new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const local = new Date(year.getTime() - year.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  await page.locator("#opens").fill(local);
  await page.getByRole("button", { name: "Grant" }).click();
  out.capsule = await waitStatus(/Granted/);
  const capsule = page.locator("[data-testid=grants] li [data-state=not_yet_open]");
  await capsule.first().waitFor({ timeout: 20000 });
  out.capsule_shown = (await capsule.first().textContent()).trim();
  out.capsule_asks = (await page.locator("[data-testid=grants] li", { has: page.locator("[data-state=not_yet_open]") }).first().textContent()).includes("ask questions");
  const early = await fetch(`${base}/v1/users/ana/memories`, { headers: { authorization: `Bearer ${granteeToken}` } });
  out.capsule_read = early.status;
  step("grant");

  // ben may ask: a grant with ask, open now. ben, signed in in a browser of his own, opens
  // "Shared with me", sees the capsule and the open grant, and asks ana's model.
  await page.locator("#grantee").fill("ben");
  await page.locator("#ask").check();
  await page.locator("#opens").fill("");
  await page.getByRole("button", { name: "Grant" }).click();
  await waitStatus(/Granted/);
  const benContext = await browser.newContext();
  const ben = await benContext.newPage();
  await ben.goto(`${base}/console/#/signin?token=${granteeToken}`);
  await ben.locator("nav").waitFor({ timeout: 20000 });
  await ben.goto(`${base}/console/#/shared`);
  const capsuleLi = ben.locator("[data-testid=shared-grants] li[data-state=not_yet_open]");
  await capsuleLi.first().waitFor({ timeout: 20000 });
  out.shared_capsule = (await capsuleLi.first().textContent()).trim();
  await ben.getByRole("button", { name: "Open ana's memories" }).first().click();
  await ben.locator("#question").fill("recorded thought");
  await ben.getByRole("button", { name: "Ask", exact: true }).click();
  await ben.locator("[data-testid=answer]").waitFor({ timeout: 20000 });
  out.answer = (await ben.locator("[data-testid=answer]").textContent()).trim();
  await ben.screenshot({ path: path.join(shots, "shared.png"), fullPage: true }).catch(() => {});
  await benContext.close();
  await page.reload();
  const asked = page.locator("[data-testid=access-log] tbody tr[data-action=ask]");
  await asked.first().waitFor({ timeout: 20000 });
  out.question_logged = (await asked.first().textContent()).trim();
  step("asked");

  // Devices: issue, then revoke.
  await page.goto(`${base}/console/#/devices`);
  await page.locator("#device-name").fill("ana-phone");
  await page.getByRole("button", { name: "Issue" }).click();
  out.device = await waitStatus(/Credentials issued/);
  await shot("devices");
  await page.locator("[data-testid=devices] button", { hasText: "Revoke" }).click();
  out.device_revoked = await waitStatus(/revoked/);
  step("devices");

  // Verify the chain in the page.
  await page.goto(`${base}/console/#/verify`);
  await page.getByRole("button", { name: "Verify my chain" }).click();
  out.verdict = (await page.locator("[data-testid=verdict]").textContent({ timeout: 30000 })).trim();
  await shot("verify");
  step("verified");
  // A bundle tampered by the test: one bit of the last event's signature.
  const bundle = await (await page.request.get(`${base}/v1/export`)).text();
  const lines = bundle.trimEnd().split("\n");
  const at = lines.map((l) => JSON.parse(l).type).lastIndexOf("event");
  const ev = JSON.parse(lines[at]);
  const w = ev.wire;
  const i = w.length - 10;
  ev.wire = w.slice(0, i) + ((parseInt(w[i], 16) ^ 1).toString(16)) + w.slice(i + 1);
  lines[at] = JSON.stringify(ev);
  out.tampered_seq = lines.slice(0, at + 1).filter((l) => JSON.parse(l).type === "event").length;
  await page.route("**/tampered.jsonl", (r) => r.fulfill({ status: 200, contentType: "application/x-ndjson", body: lines.join("\n") + "\n" }));
  await page.goto(`${base}/console/#/verify?bundle=/console/tampered.jsonl`);
  await page.reload();
  await page.getByRole("button", { name: "Verify my chain" }).click();
  out.tampered_verdict = (await page.locator("[data-testid=verdict]").textContent({ timeout: 30000 })).trim();
  await shot("verify-tampered");
  step("tampered");

  // Erase one memory, then everything, each with its confirmation.
  await page.goto(`${base}/console/#/erasure`);
  // Each memory is named so a person can tell them apart: kind, date, the start of its text.
  const named = page.locator("[data-testid=erasure-list] li", { hasText: "a note typed with the keyboard" });
  await named.first().waitFor({ timeout: 20000 }).catch(() => {});
  out.erasure_named = (await named.count()) > 0 ? (await named.first().textContent()).trim() : "";
  await page.getByRole("button", { name: "Erase…" }).first().click();
  await page.getByRole("dialog").waitFor();
  await page.getByRole("button", { name: "Erase it" }).click();
  out.erased_one = await waitStatus(/erased/);
  await page.getByRole("button", { name: "Erase everything…" }).click();
  out.erase_all_disabled = await page.getByRole("button", { name: "Erase everything", exact: true }).isDisabled();
  await page.locator("#confirm-all").fill("erase everything");
  await shot("erasure");
  await page.getByRole("button", { name: "Erase everything", exact: true }).click();
  out.erased_all = await waitStatus(/Everything is erased/);
  step("erased");

  // Login CSRF: another account's sign-in link, opened while signed in, asks first and
  // switches nothing until asked to.
  const me = (await page.locator("header .muted").textContent()).trim();
  await page.goto("about:blank");
  await page.goto(`${base}/console/#/signin?token=${granteeToken}`);
  await page.locator("[data-testid=switch-account]").waitFor({ timeout: 20000 });
  out.switch_prompt = true;
  out.user_after_link = (await page.locator("header .muted").textContent()).trim();
  out.user_before_link = me;
  await page.getByRole("button", { name: /Stay signed in/ }).click();
  out.prompt_gone = (await page.locator("[data-testid=switch-account]").count()) === 0;
  step("login csrf refused");

  // Sign-out ends the session: the old cookie value is refused as a cookie and as a
  // bearer token.
  const old = (await context.cookies()).find((c) => c.name === "mnemo_session")?.value ?? "";
  out.cookie_is_session = old.length > 0;
  out.before_signout = (await page.request.get(`${base}/v1/session`)).status();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("nav").waitFor({ state: "detached", timeout: 20000 });
  out.old_as_bearer = (await page.request.get(`${base}/v1/memories`, { headers: { Authorization: `Bearer ${old}` } })).status();
  await context.addCookies([{ name: "mnemo_session", value: old, url: base }]);
  out.old_as_cookie = (await page.request.get(`${base}/v1/memories`)).status();
  step("signed out");
} catch (e) {
  out.error = String(e);
  await page.screenshot({ path: path.join(os.tmpdir(), "mnemo-console-failure.png"), fullPage: true }).catch(() => {});
  out.failure_screenshot = path.join(os.tmpdir(), "mnemo-console-failure.png");
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
