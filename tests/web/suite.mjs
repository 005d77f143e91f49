// Browser tests of the hub's web app: Chromium driven by playwright-core,
// by role and accessible name (the names in shared spec/web.md and the
// scenarios of issue 13 item 4). tests/tests/web_app.rs starts a real hub
// with alice's endpoints `src` and `dst` and runs this script; to run it
// by hand against a hub of your own, set the variables below.
//
//   FERRY_HUB_URL           https://127.0.0.1:PORT (the hub's own CA: TLS errors are ignored)
//   FERRY_USER, FERRY_PASSWORD               the endpoints' owner (alice)
//   FERRY_OTHER_USER, FERRY_OTHER_PASSWORD   a user with no endpoints (mallory)
//   FERRY_SRC, FERRY_DST    endpoint names (default src, dst)
//   FERRY_SRC_DIR           a directory on FERRY_SRC, e.g. /~/tree/
//   FERRY_SRC_ENTRIES       JSON list of the entry names in it, all sent
//   FERRY_DST_DIR           where they land on FERRY_DST, e.g. /~/arrived/
//   FERRY_REFUSED_DIR       a path FERRY_SRC's config-paths refuse (default /etc/)
//   FERRY_LINK_ENTRY        a file in FERRY_SRC_DIR under a SHARING=1 line, to Get link
//   FERRY_LINK_BODY         its contents (what the link must answer)
//   FERRY_NEW_ENDPOINT      the endpoint to create in the browser (default web-made)
//   FERRY_NODES_ENDPOINT    an endpoint of several machines (default FERRY_DST)
//   FERRY_NODES             JSON list of its nodes' names, all connected, e.g. ["primary","node-2"]
//   FERRY_SCREENSHOTS       where <nn>-<page>.png go (default ./screenshots)
//   FERRY_CHROMIUM          the browser (default /usr/bin/chromium)
//   FERRY_WEB_KEEP_GOING=1  run every scenario and report all failures
//                           (default: stop at the first)
//
// Prints `ok - SCENARIO` per scenario, `page-weight files-first-load: N
// bytes`, and for the Rust side `setup-key: KEY`, `task-id: ID`,
// `canceled-task-id: ID`, `link-url: URL`. Exit 0 only if every scenario passed; on a
// failure, `FAIL - SCENARIO: WHY`, the page's URL and text, and a
// screenshot `<nn>-FAILED-<scenario>.png`. Every wait is bounded.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

/// Bounds, in milliseconds.
const ACTION = 15_000; // one click, fill or element to appear
const NAVIGATION = 30_000; // one page load
const TASK_END = 120_000; // a transfer to finish, polled every second
const CANCEL_END = 60_000; // a canceled task to say CANCELED
const SUITE = 12 * 60_000; // everything

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`FAIL - setup: environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const hub = env('FERRY_HUB_URL').replace(/\/+$/, '');
const alice = { name: env('FERRY_USER'), password: env('FERRY_PASSWORD') };
const mallory = { name: env('FERRY_OTHER_USER'), password: env('FERRY_OTHER_PASSWORD') };
const srcName = env('FERRY_SRC', 'src');
const dstName = env('FERRY_DST', 'dst');
const srcDir = env('FERRY_SRC_DIR');
const dstDir = env('FERRY_DST_DIR');
const entries = JSON.parse(env('FERRY_SRC_ENTRIES'));
const refusedDir = env('FERRY_REFUSED_DIR', '/etc/');
const linkEntry = env('FERRY_LINK_ENTRY');
const linkBody = env('FERRY_LINK_BODY');
const newEndpoint = env('FERRY_NEW_ENDPOINT', 'web-made');
const nodesEndpoint = env('FERRY_NODES_ENDPOINT', dstName);
const nodeNames = JSON.parse(env('FERRY_NODES'));
const shots = env('FERRY_SCREENSHOTS', path.resolve('screenshots'));
const chromiumPath = env('FERRY_CHROMIUM', '/usr/bin/chromium');
const keepGoing = process.env.FERRY_WEB_KEEP_GOING === '1';
const NAV_LINKS = ['File Manager', 'Activity', 'Endpoints', 'Account'];
const STATUSES = ['ACTIVE', 'SUCCEEDED', 'FAILED', 'CANCELED'];

for (const host of [new URL(hub).hostname]) {
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
    console.error(`FAIL - setup: ${hub} is not a loopback address; this suite talks to loopback only`);
    process.exit(2);
  }
}
if (!Array.isArray(entries) || entries.length === 0) {
  console.error('FAIL - setup: FERRY_SRC_ENTRIES must be a non-empty JSON list of names');
  process.exit(2);
}
if (!Array.isArray(nodeNames) || nodeNames.length < 2) {
  console.error('FAIL - setup: FERRY_NODES must be a JSON list of at least two node names');
  process.exit(2);
}
fs.mkdirSync(shots, { recursive: true });

const watchdog = setTimeout(() => {
  console.error(`FAIL - suite: still running after ${SUITE / 60_000} minutes`);
  process.exit(3);
}, SUITE);

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

const stamp = Date.now().toString(36);
const labels = { sent: `web-sent-${stamp}`, cancel: `web-cancel-${stamp}` };
/// What one scenario leaves for the next.
const state = {};
let shotNumber = 0;

function shotPath(name) {
  shotNumber += 1;
  return path.join(shots, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
}

function pathname(page) {
  return new URL(page.url()).pathname;
}

/// A page the suite looked at: exactly one h1 (the a11y smoke), on a page
/// of the app the navigation links reachable by Tab, and a full-page
/// screenshot.
async function seen(page, name, { app = true } = {}) {
  state.current = page;
  await page.waitForLoadState('load', { timeout: NAVIGATION });
  const h1 = await page.locator('h1').count();
  await page.screenshot({ path: shotPath(name), fullPage: true, timeout: ACTION });
  check(h1 === 1, `page ${name} (${pathname(page)}) has ${h1} h1 elements, not exactly one`);
  if (app) {
    await navByTab(page, name);
  }
}

/// Tabs from the top of the document (bounded) until each navigation link
/// had the focus.
async function navByTab(page, name) {
  await page.evaluate(() => {
    document.body.setAttribute('tabindex', '-1');
    document.body.focus();
  });
  const reached = new Set();
  const order = [];
  for (let i = 0; i < 120 && reached.size < NAV_LINKS.length; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      const text = (e.getAttribute('aria-label') || e.innerText || e.value || '').trim();
      return { tag: e.tagName.toLowerCase(), text };
    });
    if (focused === null) break; // wrapped past the end of the document
    order.push(`${focused.tag}:${focused.text.slice(0, 30)}`);
    if (focused.tag === 'a' && NAV_LINKS.includes(focused.text)) reached.add(focused.text);
  }
  await page.evaluate(() => document.body.removeAttribute('tabindex'));
  const missing = NAV_LINKS.filter((l) => !reached.has(l));
  check(
    missing.length === 0,
    `on page ${name} (${pathname(page)}) Tab never focused the link(s) ${missing.join(', ')}; ` +
      `focus went: ${order.slice(0, 25).join(' > ') || '(nowhere)'}`,
  );
}

async function navLinks(page) {
  for (const name of NAV_LINKS) {
    const link = page.getByRole('link', { name, exact: true });
    check((await link.count()) >= 1, `no link named "${name}" on ${pathname(page)}`);
  }
}

async function follow(page, linkName) {
  const link = page.getByRole('link', { name: linkName, exact: true }).first();
  await link.waitFor({ state: 'visible', timeout: ACTION }).catch(() => {
    throw new Failure(`no visible link named "${linkName}" on ${pathname(page)}`);
  });
  await Promise.all([page.waitForLoadState('load', { timeout: NAVIGATION }), link.click({ timeout: ACTION })]);
}

/// The innermost row-like element whose text contains `text` (a table
/// row, list item, or article), as text; null if none.
async function rowText(page, text) {
  const rows = page.locator('tr, li, [role="row"], [role="listitem"], article');
  const texts = (await rows.evaluateAll((els) => els.map((e) => e.innerText.trim()))).filter((t) =>
    typeof text === 'string' ? t.includes(text) : text.test(t),
  );
  if (texts.length === 0) return null;
  return texts.sort((a, b) => a.length - b.length)[0];
}

function statusIn(text) {
  return STATUSES.find((s) => new RegExp(`\\b${s}\\b`).test(text)) ?? null;
}

/// Signs in at /login as `user` in `context`; the page lands on /files.
async function signIn(context, user, shotName) {
  const page = await context.newPage();
  page.setDefaultTimeout(ACTION);
  page.setDefaultNavigationTimeout(NAVIGATION);
  page.on('dialog', (dialog) => dialog.accept());
  // Reported, not failed: a script error or a Content-Security-Policy
  // refusal is worth a look, but no contract names it.
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`warning: console error on ${pathname(page)}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`warning: script error on ${pathname(page)}: ${e.message}`));
  state.current = page;
  const response = await page.goto(`${hub}/login`);
  check(response && response.ok(), `GET /login answered ${response && response.status()}`);
  await seen(page, shotName, { app: false });
  await page.getByLabel('User name', { exact: true }).fill(user.name);
  await page.getByLabel('Password', { exact: true }).fill(user.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL((url) => url.pathname !== '/login', { timeout: NAVIGATION }).catch(() => {});
  await page.waitForLoadState('load', { timeout: NAVIGATION });
  // The web app is at / after login (spec/web.md); its File Manager is /files.
  const at = pathname(page);
  const manager = await page.locator('section[aria-label="panel 1"]').count();
  check(
    (at === '/files' || at === '/') && manager === 1,
    `after Sign in as ${user.name} the browser is at ${at}` + (manager ? '' : ', which is not the File Manager (no panel 1)'),
  );
  if (at !== '/files') console.log(`note: after Sign in as ${user.name} the File Manager is at ${at}, not /files`);
  return page;
}

function panel(page, n) {
  return page.locator(`section[aria-label="panel ${n}"]`);
}

/// Opens `endpoint` in panel `n`: types it into `Collection` (optionally
/// waiting for its suggestion, role option) and presses Enter.
async function openCollection(page, n, endpoint, { suggestion = false } = {}) {
  const p = panel(page, n);
  await p.waitFor({ state: 'visible', timeout: ACTION }).catch(() => {
    throw new Failure(`no section[aria-label="panel ${n}"] on ${pathname(page)}`);
  });
  const input = p.getByLabel('Collection', { exact: true });
  check((await input.count()) === 1, `panel ${n} has ${await input.count()} inputs labelled Collection, not one`);
  await input.fill('');
  await input.pressSequentially(endpoint, { delay: 15 });
  if (suggestion) {
    const option = page.getByRole('option', { name: endpoint, exact: true });
    await option
      .first()
      .waitFor({ state: 'visible', timeout: ACTION })
      .catch(() => {
        throw new Failure(`typing "${endpoint}" into panel ${n}'s Collection showed no suggestion with role option named "${endpoint}"`);
      });
  }
  await input.press('Enter');
  await page.waitForLoadState('load', { timeout: NAVIGATION });
}

async function openPath(page, n, dir) {
  const input = panel(page, n).getByLabel('Path', { exact: true });
  check((await input.count()) === 1, `panel ${n} has ${await input.count()} inputs labelled Path, not one`);
  await input.fill(dir);
  await input.press('Enter');
  await page.waitForLoadState('load', { timeout: NAVIGATION });
}

function entry(page, n, name) {
  return panel(page, n).getByRole('checkbox', { name, exact: true });
}

/// A visible element with role alert and some text, within `limit`.
async function alertText(page, limit = ACTION) {
  const alert = page.getByRole('alert').filter({ hasText: /\S/ });
  await alert
    .first()
    .waitFor({ state: 'visible', timeout: limit })
    .catch(() => {
      throw new Failure(`no element with role alert (with text) appeared on ${pathname(page)}`);
    });
  return (await alert.first().innerText()).trim();
}

/// Panel 1's checked entries into panel 2's path; the new task's id.
async function startTransfer(page, names, label, deleteExtra, previousId) {
  const options = page.locator('section[aria-label="Transfer options"]');
  check((await options.count()) === 1, 'no section[aria-label="Transfer options"] in the File Manager');
  for (const name of names) {
    await entry(page, 1, name).check({ timeout: ACTION });
  }
  await options.getByLabel('Label', { exact: true }).fill(label);
  await options.getByLabel('Delete extra files', { exact: true }).setChecked(deleteExtra, { timeout: ACTION });
  await panel(page, 1).getByRole('button', { name: 'Start', exact: true }).click();
  await page.waitForLoadState('load', { timeout: NAVIGATION });
  const marked = page.locator('[data-task-id]');
  const deadline = Date.now() + ACTION;
  for (;;) {
    const ids = await marked.evaluateAll((els) =>
      els.map((e) => (e.getAttribute('data-task-id') || e.textContent || '').trim()),
    );
    const id = ids.find((i) => i && i !== previousId);
    if (id) {
      check(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id), `data-task-id holds "${id}", not a task id`);
      return id;
    }
    if (Date.now() > deadline) {
      const alert = await page.getByRole('alert').allInnerTexts();
      throw new Failure(
        `after Start no element with data-task-id appeared within ${ACTION / 1000}s` +
          (alert.length ? `; alert: ${alert.join(' | ')}` : ''),
      );
    }
    await page.waitForTimeout(200);
  }
}

/// Reloads Activity every second until `label`'s row shows `want` (bounded);
/// the row's text. Another final status ends the wait at once.
async function activityUntil(page, label, want, limit) {
  await follow(page, 'Activity');
  const deadline = Date.now() + limit;
  let last = null;
  for (;;) {
    last = await rowText(page, label);
    const status = last && statusIn(last);
    if (status === want) return last;
    if (status && status !== 'ACTIVE') {
      throw new Failure(`Activity shows task "${label}" ${status}, not ${want}: ${last}`);
    }
    if (Date.now() > deadline) {
      throw new Failure(
        last === null
          ? `Activity has no row with the label "${label}" after ${limit / 1000}s`
          : `Activity's row for "${label}" did not show ${want} within ${limit / 1000}s: ${last}`,
      );
    }
    await page.waitForTimeout(1000);
    await page.reload({ timeout: NAVIGATION });
  }
}

/// Bytes on the wire (CDP Network.loadingFinished encodedDataLength:
/// headers and bodies) for /files loaded signed in with a cold cache.
async function filesFirstLoad(browser, context) {
  const cold = await browser.newContext({ ignoreHTTPSErrors: true, storageState: await context.storageState() });
  try {
    const page = await cold.newPage();
    const cdp = await cold.newCDPSession(page);
    await cdp.send('Network.enable');
    let bytes = 0;
    let requests = 0;
    cdp.on('Network.loadingFinished', (e) => {
      bytes += e.encodedDataLength;
      requests += 1;
    });
    const response = await page.goto(`${hub}/files`, { timeout: NAVIGATION });
    check(response && response.ok(), `GET /files with a session answered ${response && response.status()}`);
    // A page that keeps a connection open never goes idle; the load is done by then.
    await page.waitForLoadState('networkidle', { timeout: 10_000 }).catch(() => {});
    return { bytes, requests };
  } finally {
    await cold.close();
  }
}

// ---------------------------------------------------------------- scenarios

const scenarios = [
  [
    'sign in',
    async ({ browser }) => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      state.alice = context;
      const page = await signIn(context, alice, 'login');
      state.page = page;
      await navLinks(page);
      await seen(page, 'files');
      const weight = await filesFirstLoad(browser, context);
      console.log(`page-weight files-first-load: ${weight.bytes} bytes`);
      console.log(`page-weight files-first-load requests: ${weight.requests}`);
    },
  ],
  [
    'endpoints',
    async () => {
      const page = need('page');
      await follow(page, 'Endpoints');
      await seen(page, 'endpoints');
      for (const name of [srcName, dstName]) {
        const row = await rowText(page, new RegExp(`(^|\\W)${reEscape(name)}(\\W|$)`));
        check(row !== null, `Endpoints lists no row with "${name}"`);
        check(
          /\bconnected\b/i.test(row) && !/\b(not connected|disconnected|offline)\b/i.test(row),
          `Endpoints' row for "${name}" does not say connected: ${row}`,
        );
      }
      await page.getByLabel('Endpoint name', { exact: true }).fill(newEndpoint);
      await page.getByRole('button', { name: 'Create endpoint', exact: true }).click();
      await page.waitForLoadState('load', { timeout: NAVIGATION });
      const marked = page.locator('[data-setup-key]').first();
      await marked.waitFor({ state: 'attached', timeout: ACTION }).catch(() => {
        throw new Failure('after Create endpoint no element with data-setup-key appeared');
      });
      const key = ((await marked.getAttribute('data-setup-key')) || (await marked.textContent()) || '').trim();
      const parts = key.split('.');
      check(
        parts.length === 4 && parts[0] === 'FSK1' && parts.slice(1).every((p) => /^[A-Za-z0-9_-]+$/.test(p)),
        `data-setup-key holds "${key}", not a setup key (FSK1.<hub>.<ca>.<secret>)`,
      );
      const keyHub = Buffer.from(parts[1], 'base64url').toString('utf8');
      check(keyHub.replace(/\/+$/, '') === hub, `the setup key names the hub ${keyHub}, not ${hub}`);
      check(parts[3].length >= 32, 'the setup key\'s secret is shorter than 32 characters');
      const text = await page.locator('body').innerText();
      check(text.includes(`ferry -setup ${key}`), `the page does not show "ferry -setup ${key}"`);
      await seen(page, 'endpoint-created');
      console.log(`setup-key: ${key}`);
      state.setupKey = key;
    },
  ],
  [
    'endpoint nodes',
    async () => {
      const page = need('page');
      await follow(page, 'Endpoints');
      await follow(page, nodesEndpoint);
      const section = page.getByRole('region', { name: 'Nodes', exact: true });
      await section.waitFor({ state: 'visible', timeout: ACTION }).catch(() => {
        throw new Failure(`the page of ${nodesEndpoint} (${pathname(page)}) has no section named "Nodes"`);
      });
      await seen(page, 'endpoint-nodes');
      for (const node of nodeNames) {
        const cell = section.getByRole('cell', { name: node, exact: true });
        check((await cell.count()) === 1, `the Nodes section of ${nodesEndpoint} has no cell named "${node}"`);
        const named = page.getByRole('cell', { name: node, exact: true });
        const row = (await section.getByRole('row').filter({ has: named }).innerText()).trim();
        check(
          /\bconnected since\b/.test(row) && !/\bnot connected\b/.test(row),
          `the Nodes section of ${nodesEndpoint} does not say node ${node} is connected: ${row}`,
        );
      }
      const listed = (await section.getByRole('row').count()) - 1; // less the header
      check(listed === nodeNames.length, `the Nodes section of ${nodesEndpoint} lists ${listed} nodes, not ${nodeNames.length}`);
    },
  ],
  [
    'transfer',
    async () => {
      const page = need('page');
      await follow(page, 'File Manager');
      await seen(page, 'files-again');
      await openCollection(page, 1, srcName, { suggestion: true });
      await openPath(page, 1, srcDir);
      for (const name of entries) {
        await entry(page, 1, name)
          .waitFor({ state: 'visible', timeout: ACTION })
          .catch(() => {
            throw new Failure(`panel 1 (${srcName}:${srcDir}) shows no checkbox named exactly "${name}"`);
          });
      }
      await openCollection(page, 2, dstName);
      await openPath(page, 2, dstDir);
      await page.waitForLoadState('load', { timeout: NAVIGATION });
      const id = await startTransfer(page, entries, labels.sent, true, null);
      await seen(page, 'transfer-started');
      console.log(`task-id: ${id}`);
      state.taskId = id;
    },
  ],
  [
    'activity',
    async () => {
      const page = need('page');
      need('taskId');
      await activityUntil(page, labels.sent, 'SUCCEEDED', TASK_END);
      await seen(page, 'activity');
      await follow(page, labels.sent);
      const text = await page.locator('body').innerText();
      check(text.includes(state.taskId), `the task page (${pathname(page)}) does not show the task id ${state.taskId}`);
      check(/\bSUCCEEDED\b/.test(text), `the task page (${pathname(page)}) does not show SUCCEEDED`);
      check(/\b(SUBMITTED|STARTED|TRANSFERRING)\b/.test(text), `the task page (${pathname(page)}) shows no events (no SUBMITTED, STARTED or TRANSFERRING)`);
      await seen(page, 'task');
      state.taskUrl = page.url();
    },
  ],
  [
    'get-link',
    async ({ browser }) => {
      const page = need('page');
      await follow(page, 'File Manager');
      await openCollection(page, 1, srcName);
      await openPath(page, 1, srcDir);
      await entry(page, 1, linkEntry).check({ timeout: ACTION });
      await panel(page, 1).locator('details.more > summary').click({ timeout: ACTION });
      await panel(page, 1).getByRole('combobox', { name: 'Link expires', exact: true }).selectOption({ label: 'in 7 days' }, { timeout: ACTION });
      await panel(page, 1).getByRole('textbox', { name: 'Link serves at most', exact: true }).fill('1G', { timeout: ACTION });
      await panel(page, 1).getByRole('button', { name: 'Get link', exact: true }).click({ timeout: ACTION });
      await page.waitForLoadState('load', { timeout: NAVIGATION });
      const field = page.getByRole('textbox', { name: 'Link URL', exact: true });
      await field.waitFor({ state: 'visible', timeout: ACTION }).catch(async () => {
        const alert = await page.getByRole('alert').allInnerTexts();
        throw new Failure(`after Get link on ${linkEntry} no textbox named "Link URL" appeared` + (alert.length ? `; alert: ${alert.join(' | ')}` : ''));
      });
      const url = await field.inputValue();
      check(url.startsWith(`${hub}/l/`), `the link "${url}" is not under ${hub}/l/`);
      const said = (await page.getByRole('status').allInnerTexts()).join(' ');
      check(said.includes('until ') && !said.includes('until you delete it') && said.includes(' in all'), `the link's notice does not say its expiry and budget: ${said}`);
      await seen(page, 'link');
      // Anyone holding it reads the file: a context with no session.
      const anonymous = await browser.newContext({ ignoreHTTPSErrors: true });
      try {
        const answer = await anonymous.request.get(url, { timeout: NAVIGATION, maxRedirects: 0 });
        check(answer.status() === 200, `GET ${url} without a session answered ${answer.status()}`);
        check((await answer.text()) === linkBody, `GET ${url} did not answer the contents of ${linkEntry}`);
      } finally {
        await anonymous.close();
      }
      console.log(`link-url: ${url}`);
    },
  ],
  [
    'cancel',
    async () => {
      const page = need('page');
      need('setupKey');
      await follow(page, 'File Manager');
      await openCollection(page, 1, srcName);
      await openPath(page, 1, srcDir);
      await entry(page, 1, entries[0]).waitFor({ state: 'visible', timeout: ACTION });
      await openCollection(page, 2, newEndpoint);
      await openPath(page, 2, '/~/');
      const id = await startTransfer(page, [entries[0]], labels.cancel, false, state.taskId);
      await seen(page, 'cancel-started');
      const row = await activityUntil(page, labels.cancel, 'ACTIVE', ACTION);
      check(statusIn(row) === 'ACTIVE', `Activity's row for "${labels.cancel}": ${row}`);
      await follow(page, labels.cancel);
      await seen(page, 'cancel-task');
      await page.getByRole('button', { name: 'Cancel', exact: true }).click();
      await page.waitForLoadState('load', { timeout: NAVIGATION });
      const deadline = Date.now() + CANCEL_END;
      for (;;) {
        await page.waitForLoadState('load', { timeout: NAVIGATION });
        const text = await page.locator('body').innerText();
        if (/\bCANCELED\b/.test(text)) break;
        check(Date.now() < deadline, `the task page did not show CANCELED within ${CANCEL_END / 1000}s after Cancel`);
        await page.waitForTimeout(1000);
        await page.reload({ timeout: NAVIGATION });
      }
      await seen(page, 'canceled-task');
      await activityUntil(page, labels.cancel, 'CANCELED', ACTION);
      await seen(page, 'activity-canceled');
      console.log(`canceled-task-id: ${id}`);
    },
  ],
  [
    'refusal',
    async () => {
      const page = need('page');
      await follow(page, 'File Manager');
      await openCollection(page, 1, srcName);
      await openPath(page, 1, refusedDir);
      const text = await alertText(page);
      await seen(page, 'refused');
      const bare = refusedDir.replace(/\/+$/, '');
      check(
        text.includes(bare) || /not allowed|permission/i.test(text),
        `the alert for ${srcName}:${refusedDir} names neither the path nor "not allowed"/"permission": ${text}`,
      );
      check((await panel(page, 1).getByRole('checkbox').count()) === 0, `panel 1 lists entries of ${refusedDir} besides the alert`);
    },
  ],
  [
    'mallory',
    async ({ browser }) => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      try {
        const page = await signIn(context, mallory, 'login-mallory');
        await seen(page, 'files-mallory');
        await follow(page, 'Endpoints');
        await seen(page, 'endpoints-mallory');
        const text = await mainText(page);
        for (const name of [srcName, dstName, newEndpoint]) {
          check(!new RegExp(`(^|\\W)${reEscape(name)}(\\W|$)`).test(text), `mallory's Endpoints page shows alice's endpoint "${name}"`);
        }
        await follow(page, 'File Manager');
        await openCollection(page, 1, srcName);
        const alert = await alertText(page);
        await seen(page, 'files-mallory-refused');
        check((await panel(page, 1).getByRole('checkbox').count()) === 0, `panel 1 lists entries of alice's ${srcName} for mallory (alert: ${alert})`);
        const taskUrl = need('taskUrl');
        const response = await page.goto(taskUrl);
        await seen(page, 'task-mallory', { app: false });
        check(response && response.status() === 404, `mallory's GET of alice's task page ${new URL(taskUrl).pathname} answered ${response && response.status()}, not 404`);
        const body = await page.locator('body').innerText();
        check(!body.includes(labels.sent) && !body.includes(state.taskId), "mallory's not-found page shows alice's task");
      } finally {
        await context.close();
      }
    },
  ],
  [
    'account',
    async () => {
      const page = need('page');
      await follow(page, 'Account');
      await seen(page, 'account');
      const text = await mainText(page);
      check(text.includes(alice.name), `the Account page's main does not name the user ${alice.name}`);
    },
  ],
  [
    'apps: register a portal, consent to it, see and revoke it on the Account page',
    async () => {
      const page = need('page');
      await follow(page, 'Developers');
      await seen(page, 'developers');
      const appName = `Web portal ${stamp}`;
      // The portal's own site: a one-route server on loopback that
      // answers its callback, so the browser ends somewhere real.
      const portal = http.createServer((req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<!doctype html><title>portal</title><h1>Back at the portal</h1>');
      });
      await new Promise((resolve) => portal.listen(0, '127.0.0.1', resolve));
      // Whatever happens next, the server goes with this scenario.
      portal.unref();
      const callback = `http://127.0.0.1:${portal.address().port}/callback`;
      await page.getByLabel('App name', { exact: true }).fill(appName, { timeout: ACTION });
      await page.getByLabel('Type', { exact: true }).selectOption('portal', { timeout: ACTION });
      await page.getByLabel(/^Redirect URIs/).fill(callback, { timeout: ACTION });
      await Promise.all([
        page.waitForLoadState('load', { timeout: NAVIGATION }),
        page.getByRole('button', { name: 'Register app', exact: true }).click({ timeout: ACTION }),
      ]);
      await seen(page, 'developers-registered');
      const secret = page.locator('[data-client-secret]');
      check((await secret.count()) === 1, "the Developers page does not show the new app's secret once");
      check((await rowText(page, appName)) !== null, `the Developers page does not list ${appName}`);
      const shown = await page.locator('.newkey pre').innerText({ timeout: ACTION });
      const clientId = /client_id=(\S+)/.exec(shown)?.[1];
      check(clientId !== undefined, `no client_id in what the Developers page showed: ${shown}`);
      const query = new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: callback,
        scope: 'openid transfer offline_access',
        state: `st-${stamp}`,
      });
      await page.goto(`${hub}/authorize?${query}`, { timeout: NAVIGATION });
      await seen(page, 'consent', { app: false });
      const consent = await page.locator('body').innerText();
      check(consent.includes(appName), `the consent page does not name the app ${appName}`);
      await Promise.all([
        page.waitForURL((url) => url.href.startsWith(callback), { timeout: NAVIGATION }),
        page.getByRole('button', { name: 'Approve', exact: true }).click({ timeout: ACTION }),
      ]);
      const back = new URL(page.url());
      check(back.searchParams.get('state') === `st-${stamp}` && (back.searchParams.get('code') ?? '') !== '', `the hub sent the browser back without a code and the state: ${back.search}`);

      await page.goto(`${hub}/account`, { timeout: NAVIGATION });
      await seen(page, 'account-connected-app');
      const connected = page.getByRole('region', { name: 'Connected apps' });
      check((await connected.innerText()).includes(appName), `the Account page's Connected apps do not list ${appName}`);
      await Promise.all([
        page.waitForLoadState('load', { timeout: NAVIGATION }),
        page.getByRole('button', { name: `Revoke ${appName}`, exact: true }).click({ timeout: ACTION }),
      ]);
      await seen(page, 'account-app-revoked');
      const after = await page.getByRole('region', { name: 'Connected apps' }).innerText();
      check(!after.includes(appName), `${appName} is still connected after Revoke`);
    },
  ],
];

/// The text of the page's main (all of body if it has none): the
/// header's "Signed in as" left out.
async function mainText(page) {
  const main = page.locator('main');
  return (await main.count()) > 0 ? main.first().innerText() : page.locator('body').innerText();
}

/// A scenario that cannot run because an earlier one failed.
class NotRun extends Failure {}

function need(key) {
  if (state[key] === undefined) throw new NotRun(`needs ${key} from an earlier scenario, which failed`);
  return state[key];
}

function reEscape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function main() {
  // launch() gives the browser a fresh temporary profile (user data dir)
  // and removes it at close.
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    timeout: NAVIGATION,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const started = Date.now();
  const failed = [];
  try {
    for (const [name, run] of scenarios) {
      const t0 = Date.now();
      try {
        await run({ browser });
        console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
      } catch (error) {
        failed.push(name);
        if (error instanceof NotRun) {
          console.log(`NOT RUN - ${name}: ${error.message}`);
          continue;
        }
        const why = error instanceof Failure ? error.message : error.stack || String(error);
        console.log(`FAIL - ${name}: ${why}`);
        const page = state.current;
        if (page && !page.isClosed()) {
          console.log(`  at ${page.url()}`);
          const text = await page.locator('body').innerText({ timeout: 2000 }).catch(() => '(no text)');
          console.log(`  page text: ${text.replace(/\s+/g, ' ').slice(0, 1500)}`);
          await page.screenshot({ path: shotPath(`FAILED-${name.replace(/\W+/g, '-')}`), fullPage: true, timeout: ACTION }).catch(() => {});
        }
        if (!keepGoing) break;
      }
    }
  } finally {
    await browser.close().catch(() => {});
  }
  console.log(`suite took ${((Date.now() - started) / 1000).toFixed(1)}s; screenshots in ${shots}`);
  if (failed.length) {
    console.log(`FAILED: ${failed.join(', ')}`);
    return 1;
  }
  console.log('all scenarios passed');
  return 0;
}

main().then(
  (code) => {
    clearTimeout(watchdog);
    process.exit(code);
  },
  (error) => {
    console.log(`FAIL - suite: ${error.stack || error}`);
    process.exit(1);
  },
);
