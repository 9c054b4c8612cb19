// The browser door in a real Chromium, driven by playwright-core: every flow
// of the web page end to end, each step checking what the page shows and
// what the store holds (read back through POST /exec), with a screenshot.
//
// Run by llm-integration-server/tests/browser.rs, which starts the server,
// the mock upstream and the ChatGPT mock and passes:
//   BASE        the admin listener (http://127.0.0.1:PORT)
//   LOGIN_URL   a one-time sign-in link
//   TOKEN       the same user's access token (for the store checks only)
//   SHOTS       where screenshots go
//   CHROMIUM    the browser executable (default /usr/bin/chromium)
//   DOMAIN      the domain hostnames end in
//   CUSTOM_URL  an OpenAI-compatible endpoint (the mock upstream) for the
//               Custom HTTPS endpoint source
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

const { BASE, LOGIN_URL, TOKEN, SHOTS, DOMAIN, CUSTOM_URL } = process.env;
const ENDPOINT_TOKEN = "endpoint-token-browser-9911";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const GOOD_KEY = "sk-browser-good-0123456789abcd";
const BAD_KEY = "sk-mock-refused-000000000000";
mkdirSync(SHOTS, { recursive: true });

async function exec(line) {
  const r = await fetch(BASE + "/exec", {
    method: "POST",
    headers: { authorization: "Bearer " + TOKEN, "content-type": "text/plain" },
    body: line,
  });
  const text = await r.text();
  return { status: r.status, text, json: line.endsWith("--json") && r.status === 200 ? JSON.parse(text) : null };
}

async function show(name) {
  const r = await exec(`integrations show ${name} --json`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  const file = `${SHOTS}/${String(shot).padStart(2, "0")}-${name}.png`;
  await page.screenshot({ path: file, fullPage: true });
}

// The buttons and links of a card's row of actions share a top and a
// height (a button in its own form included).
async function actionsAligned(c) {
  const boxes = [];
  for (const item of await c.locator(".actions > a, .actions button").all()) boxes.push(await item.boundingBox());
  assert.ok(boxes.length >= 3, "Edit, Test and Remove");
  for (const b of boxes) {
    assert.ok(Math.abs(b.y - boxes[0].y) <= 1, `actions at ${boxes.map((x) => x.y)}`);
    assert.ok(Math.abs(b.height - boxes[0].height) <= 1, `actions ${boxes.map((x) => x.height)} high`);
  }
}

async function step(name, fn) {
  process.stdout.write(`step: ${name}\n`);
  await fn();
}

async function noKeyIn(page, context) {
  const html = await page.content();
  for (const key of [GOOD_KEY, BAD_KEY, TOKEN, ENDPOINT_TOKEN]) {
    assert.ok(!html.includes(key), "a key is in the page's HTML");
  }
  for (const c of await context.cookies()) {
    for (const key of [GOOD_KEY, BAD_KEY, TOKEN, ENDPOINT_TOKEN]) assert.ok(!c.value.includes(key), "a key is in a cookie");
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
context.setDefaultTimeout(15000);
const page = await context.newPage();
const card = (name) => page.locator(`li.card[data-integration="${name}"]`);

try {
  await step("sign in with a login link", async () => {
    await page.goto(LOGIN_URL);
    await screenshot(page, "sign-in");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL("**/integrations");
    await page.getByRole("heading", { name: "Integrations", level: 1 }).waitFor();
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "lli_session");
    assert.ok(session, "a session cookie");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    for (const tile of ["LLM", "ChatGPT subscription", "Reflection"]) {
      await page.locator("a.tile strong", { hasText: tile }).first().waitFor();
    }
    await card("llm").waitFor();
    await card("reflection").waitFor();
    // The keyboard reaches the skip link first.
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
    await screenshot(page, "integrations");
  });

  await step("add an API Key integration, testing a bad and a good key", async () => {
    await page.locator("a.tile", { hasText: "LLM" }).first().click();
    await page.waitForURL("**/integrations/new/llm");
    // The VM list follows the owner: the user's VMs, or the team's.
    const vms = () => page.locator("#apply-vm-name option").evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(await vms(), ["local"]);
    await page.locator("#owner-core").check();
    assert.deepEqual(await vms(), ["devbox"]);
    await page.locator("#owner-me").check();
    assert.deepEqual(await vms(), ["local"]);
    await page.getByLabel("Name", { exact: true }).fill("openai-key");
    assert.equal(await page.locator("#hostname").textContent(), `openai-key.int.${DOMAIN}`);
    await page.locator("#anthropic-disabled").check();
    await page.locator("#fireworks-disabled").check();
    await page.locator("#openai-byok").check();
    assert.equal(await page.locator("#anthropic-key").isVisible(), false, "a key field for a disabled provider");
    await page.getByLabel("OpenAI API key").fill(BAD_KEY);
    await page.locator('fieldset[data-provider="openai"] button.test').click();
    await page.locator("#openai-test.error", { hasText: "openai refused the key" }).waitFor();
    assert.match(await page.locator("#openai-test").textContent(), /401/);
    await screenshot(page, "llm-dialog-key-refused");
    await page.getByLabel("OpenAI API key").fill(GOOD_KEY);
    await page.locator('fieldset[data-provider="openai"] button.test').click();
    await page.locator("#openai-test.ok", { hasText: "openai accepted the key" }).waitFor();
    await page.locator("#apply-tag").check();
    await page.locator("#apply-tag-name").fill("llm");
    await screenshot(page, "llm-dialog");
    // Nothing is saved by a test.
    assert.equal((await exec("integrations show openai-key")).status, 404);
    await page.getByRole("button", { name: "Add integration" }).click();
    await page.locator(".notice.ok", { hasText: "added llm integration openai-key" }).waitFor();
    // POST/redirect/GET: the list's own address, and a reload sends nothing.
    assert.ok(page.url().endsWith("/integrations"), page.url());
    let posts = 0;
    const count = (r) => { if (r.method() === "POST") posts += 1; };
    page.on("request", count);
    await page.reload();
    await card("openai-key").waitFor();
    page.off("request", count);
    assert.equal(posts, 0, "a reload posted the form again");
    assert.equal(await page.locator(".notice.ok").count(), 0, "the message shows once");
    await card("openai-key").locator('dd[data-provider="openai"]', { hasText: "API Key, set (…abcd)" }).waitFor();
    const stored = await show("openai-key");
    assert.equal(stored.providers.openai.source, "byok");
    assert.equal(stored.providers.openai.key, "set (…abcd)");
    assert.equal(stored.providers.anthropic.source, "disabled");
    assert.deepEqual(stored.attachments, ["tag:llm"]);
    await noKeyIn(page, context);
  });

  await step("an error shows beside its field, in the executor's words", async () => {
    await page.goto(BASE + "/integrations/new/llm");
    await page.getByLabel("Name", { exact: true }).fill("openai-key");
    await page.locator("#apply-none").check();
    await page.getByRole("button", { name: "Add integration" }).click();
    await page.locator("#name-error", { hasText: "an integration named openai-key already exists" }).waitFor();
    assert.equal(await page.getByLabel("Name", { exact: true }).getAttribute("aria-describedby"), "name-error");
    await screenshot(page, "llm-dialog-error");
  });

  await step("edit a source", async () => {
    await page.goto(BASE + "/integrations");
    await page.getByRole("link", { name: "Edit openai-key" }).click();
    await page.waitForURL("**/integrations/edit?*");
    assert.match(await page.locator("#openai-test").textContent(), /A key is stored: set \(…abcd\)/);
    await page.locator("#fireworks-gateway").check();
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator(".notice.ok", { hasText: "updated openai-key" }).waitFor();
    const stored = await show("openai-key");
    assert.equal(stored.providers.fireworks.source, "gateway");
    assert.equal(stored.providers.openai.key, "set (…abcd)", "the key is kept");
  });

  await step("rename, detach and attach", async () => {
    const c = card("openai-key");
    await actionsAligned(c);
    await c.locator("summary", { hasText: "Rename" }).click();
    await c.getByLabel("New name").fill("openai-main");
    await c.getByRole("button", { name: "Rename" }).click();
    await page.locator(".notice.ok", { hasText: "renamed openai-key to openai-main" }).waitFor();
    assert.equal((await show("openai-main")).hostname, `openai-main.int.${DOMAIN}`);
    await page.getByRole("button", { name: "Detach openai-main from tag:llm" }).click();
    await page.locator(".notice.ok", { hasText: "detached openai-main from tag:llm" }).waitFor();
    assert.deepEqual((await show("openai-main")).attachments, []);
    const m = card("openai-main");
    await m.locator("summary", { hasText: "Attach" }).click();
    await m.locator('input[value="auto"]').check();
    await m.getByRole("button", { name: "Attach", exact: true }).click();
    await page.locator(".notice.ok", { hasText: "attached openai-main to auto:all" }).waitFor();
    assert.deepEqual((await show("openai-main")).attachments, ["auto:all"]);
  });

  await step("connect a ChatGPT account with the device code", async () => {
    await page.getByRole("link", { name: "ChatGPT accounts" }).click();
    await page.getByLabel(/Account name/).fill("work");
    await page.getByRole("button", { name: "Connect account" }).click();
    await page.locator("p.code", { hasText: "MOCK-CODE" }).waitFor();
    const href = await page.getByRole("link", { name: "Open ChatGPT" }).getAttribute("href");
    assert.match(href, /\/codex\/device/);
    await screenshot(page, "chatgpt-device-code");
    // Done before ChatGPT approved: it says what is still missing.
    await page.getByRole("button", { name: "Done signing in" }).click();
    await page.locator(".notice.error", { hasText: "ChatGPT has not confirmed the sign-in yet" }).waitFor();
    await page.locator("p.code", { hasText: "MOCK-CODE" }).waitFor();
    await page.locator("#login-status.connected", { hasText: "Connected ChatGPT account work" }).waitFor();
    assert.equal(await page.locator(".notice.error").count(), 0, "once connected, the early refusal is gone");
    await page.getByRole("button", { name: "Done signing in" }).click();
    await page.locator(".notice.ok", { hasText: "Connected ChatGPT account work" }).waitFor();
    const row = page.locator('tr[data-account="work"]');
    await row.locator("td", { hasText: "someone@example.com" }).waitFor();
    await row.locator("td", { hasText: "plus" }).waitFor();
    const listed = await exec("integrations setup chatgpt --list --json");
    assert.equal(listed.json.accounts[0].name, "work");
    await page.getByRole("button", { name: "Verify" }).click();
    await page.locator("ul.verified li.ok", { hasText: "work: ok" }).waitFor();
    await screenshot(page, "chatgpt-accounts");
    await noKeyIn(page, context);
    // At phone width the accounts stack: nothing off-screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(wide <= 1, `the accounts page is ${wide}px wider than a phone`);
    const right = (await page.getByRole("link", { name: "Disconnect work" }).boundingBox());
    assert.ok(right.x + right.width <= 390, "Disconnect is on screen");
    await page.screenshot({ path: `${SHOTS}/chatgpt-accounts-phone.png`, fullPage: true });
    await page.setViewportSize({ width: 1100, height: 900 });
  });

  await step("use the ChatGPT account in an integration", async () => {
    await page.goto(BASE + "/integrations/new/llm");
    await page.getByLabel("Name", { exact: true }).fill("chatgpt-llm");
    await page.locator("#openai-chatgpt").check();
    await page.getByLabel("ChatGPT account").selectOption("work");
    await page.locator("#anthropic-disabled").check();
    await page.locator("#fireworks-disabled").check();
    await page.locator("#apply-auto").check();
    await screenshot(page, "llm-dialog-chatgpt");
    await page.getByRole("button", { name: "Add integration" }).click();
    await page.locator(".notice.ok", { hasText: "added llm integration chatgpt-llm" }).waitFor();
    const stored = await show("chatgpt-llm");
    assert.equal(stored.providers.openai.source, "chatgpt");
    assert.equal(stored.providers.openai.account, "work");
    assert.deepEqual(stored.attachments, ["auto:all"]);
  });

  await step("disconnect the ChatGPT account, confirmed", async () => {
    await page.getByRole("link", { name: "ChatGPT accounts" }).click();
    await page.getByRole("link", { name: "Disconnect work" }).click();
    await page.getByRole("heading", { name: "Disconnect ChatGPT account work?" }).waitFor();
    await page.locator("ul.users li", { hasText: "chatgpt-llm" }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel", "the focus starts on Cancel");
    await screenshot(page, "chatgpt-disconnect-confirm");
    assert.equal((await exec("integrations setup chatgpt --list --json")).json.accounts.length, 1, "asking changed nothing");
    await page.getByRole("button", { name: "Disconnect work" }).click();
    await page.locator(".notice.ok", { hasText: "disconnected ChatGPT account work" }).waitFor();
    await page.locator(".notice.ok", { hasText: "still used by chatgpt-llm" }).waitFor();
    await page.getByText("No ChatGPT accounts connected.").waitFor();
    const listed = await exec("integrations setup chatgpt --list --json");
    assert.deepEqual(listed.json.accounts, []);
  });

  await step("test the stored key and edit a reflection integration", async () => {
    await page.goto(BASE + "/integrations");
    await page.getByRole("button", { name: "Test the stored keys and endpoints of openai-main" }).click();
    await page.locator(".notice.ok", { hasText: "openai: ok" }).waitFor();
    await page.getByRole("link", { name: "Edit reflection" }).click();
    await page.getByLabel(/^Fields/).fill("email,integrations");
    await page.getByLabel(/^Comment/).fill("what a VM may read");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator(".notice.ok", { hasText: "updated reflection" }).waitFor();
    const stored = await show("reflection");
    assert.equal(stored.comment, "what a VM may read");
    assert.notEqual(stored.fields, "all");
  });

  await step("remove, confirmed", async () => {
    await page.getByRole("link", { name: "Remove openai-main" }).click();
    await page.getByRole("heading", { name: "Remove openai-main?" }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel", "the focus starts on Cancel");
    await screenshot(page, "remove-confirm");
    await page.getByRole("button", { name: "Remove openai-main" }).click();
    await page.locator(".notice.ok", { hasText: "removed integration openai-main" }).waitFor();
    assert.equal(await card("openai-main").count(), 0);
    assert.equal((await exec("integrations show openai-main")).status, 404);
  });

  await step("add a Custom HTTPS endpoint with a bearer token, tested first", async () => {
    await page.goto(BASE + "/integrations/new/llm");
    await page.getByLabel("Name", { exact: true }).fill("custom-llm");
    await page.locator("#anthropic-disabled").check();
    await page.locator("#fireworks-disabled").check();
    await page.locator("#openai-custom").check();
    assert.equal(await page.locator("#openai-key").isVisible(), false, "the API key field is for API Key only");
    await page.getByLabel("OpenAI endpoint URL").fill(CUSTOM_URL);
    assert.equal(await page.locator("#openai-token").isVisible(), false, "no token field without Bearer token");
    await page.locator("#openai-auth-bearer").check();
    await page.getByLabel("OpenAI bearer token").fill(ENDPOINT_TOKEN);
    assert.equal(await page.locator("#openai-header").isVisible(), false);
    await page.locator('fieldset[data-provider="openai"] button.test-endpoint').click();
    await page.locator("#openai-endpoint-test.ok", { hasText: "models" }).waitFor();
    await page.locator("#apply-none").check();
    await screenshot(page, "llm-dialog-custom");
    await page.getByRole("button", { name: "Add integration" }).click();
    await page.locator(".notice.ok", { hasText: "added llm integration custom-llm" }).waitFor();
    await card("custom-llm").locator('dd[data-provider="openai"]', { hasText: "bearer token set (…9911)" }).waitFor();
    const stored = await show("custom-llm");
    assert.equal(stored.providers.openai.source, "custom");
    assert.equal(stored.providers.openai.auth, "bearer");
    assert.equal(stored.providers.openai.url, CUSTOM_URL);
    await page.getByRole("link", { name: "Edit custom-llm" }).click();
    await page.locator("#openai-endpoint-test", { hasText: "A credential is stored: set (…9911)" }).waitFor();
    await noKeyIn(page, context);
  });

  await step("read the usage page after some traffic", async () => {
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
    const command = (await page.locator("#usage-command code").textContent()).trim();
    const usage = await exec(command + " --json");
    assert.equal(usage.status, 200, usage.text);
    const dollars = (m) => (m < 0 ? "-" : "") + "$" + Math.floor(Math.abs(m) / 1e6) + "." + String(Math.abs(m) % 1e6).padStart(6, "0");
    assert.equal(await page.locator("#allocation").textContent(), dollars(usage.json.allocation_micros));
    assert.ok(usage.json.rows.length > 0, "traffic was recorded");
    for (const row of usage.json.rows) {
      const tr = page.locator("#usage-table tbody tr", { has: page.locator("th", { hasText: row.key }) });
      const cells = await tr.locator("td").allTextContents();
      const counts = ["requests", "ok_requests", "refused_requests", "failed_requests", "estimated_requests", "input_tokens", "cache_creation_tokens", "cache_read_tokens", "output_tokens"];
      assert.deepEqual(cells, [...counts.map((c) => String(row[c])), dollars(row.cost_micros), dollars(row.debited_micros)]);
    }
    assert.ok((await page.locator("figure.chart svg rect").count()) > 0, "the chart has bars");
    const swatch = await page.locator("svg.swatch").first().boundingBox();
    assert.equal(Math.round(swatch.width), 12, "legend swatches are 12px squares");
    assert.equal(Math.round(swatch.height), 12);
    await screenshot(page, "usage");
    await page.getByLabel("Split by").selectOption("model");
    await page.getByRole("button", { name: "Show" }).click();
    await page.waitForURL("**/usage?*by=model*");
    await page.locator("#usage-command code", { hasText: "--by model" }).waitFor();
  });

  await step("phone width", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(BASE + "/integrations");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone`);
    await screenshot(page, "integrations-phone");
    await actionsAligned(page.locator("li.card", { has: page.locator(".actions button", { hasText: "Test" }) }).first());
    await page.goto(BASE + "/integrations/new/llm");
    await screenshot(page, "llm-dialog-phone");
    for (const path of ["/chatgpt", "/usage?by=model"]) {
      await page.goto(BASE + path);
      const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(wide <= 1, `${path} is ${wide}px wider than a phone`);
    }
    // The usage page at phone width: the chart's text is legible, the
    // command line wraps, the table scrolls inside its own box.
    for (const text of await page.locator("figure.chart svg:not(.swatch) text").all()) {
      const box = await text.boundingBox();
      if (!box) continue; // a day label hidden at this width
      assert.ok(box.height >= 10, `chart text is ${box.height}px high`);
      assert.ok(box.x >= 0 && box.x + box.width <= 390, `chart text at ${box.x}..${box.x + box.width}`);
    }
    const command = await page.locator("#usage-command").boundingBox();
    assert.ok(command.x + command.width <= 390, `the usage command line ends at ${command.x + command.width}`);
    const scroller = await page.locator(".table-scroll").boundingBox();
    assert.ok(scroller.x + scroller.width <= 390, `the table's box ends at ${scroller.x + scroller.width}`);
    const table = await page.locator("#usage-table").evaluate((t) => [t.scrollWidth, t.parentElement.clientWidth]);
    assert.ok(table[0] > table[1], "the table is wider than its box, which scrolls");
    await page.screenshot({ path: `${SHOTS}/usage-phone.png`, fullPage: true });
    await page.setViewportSize({ width: 1100, height: 900 });
  });

  await step("sign out", async () => {
    await page.goto(BASE + "/integrations");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByText("You are signed out").waitFor();
    await page.goto(BASE + "/integrations");
    await page.waitForURL("**/login");
    await page.getByLabel("Access token").waitFor();
  });
  process.stdout.write("all steps passed\n");
} catch (e) {
  await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
  process.stderr.write(`failed at ${page.url()}: ${e.stack || e}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
