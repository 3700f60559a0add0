// Browser tests: a real `plaza` (with this client embedded) on a free loopback port and
// a fresh data directory, driven through Debian's Chromium by playwright-core.
//
//   node tests/browser.mjs            (PLAZA_BIN=… to pick the binary; SCREENSHOTS=0 to skip them)
//
// Each test waits on what a user would see (text on the screen), never for fixed time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target');
const plazaBin = process.env.PLAZA_BIN ?? join(targetDir, 'debug/plaza');
const screenshots = process.env.SCREENSHOTS === '0' ? null : join(root, 'docs/screenshots');
const MOBILE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'en-US' };
const UI_TIMEOUT = 15_000;

let server, base, browser, dataDir;

function freePort() {
  return new Promise((ok, fail) => {
    const socket = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => ok(port));
    }).on('error', fail);
  });
}

async function waitReady(url, seconds) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    try { if ((await fetch(url)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer within ${seconds}s`);
}

before(async () => {
  assert.ok(existsSync(plazaBin), `no plaza binary at ${plazaBin}; build it first (cargo build --bin plaza)`);
  dataDir = mkdtempSync(join(tmpdir(), 'plaza-browser-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(plazaBin, ['serve'], {
    env: { ...process.env, PLAZA_ADDR: `127.0.0.1:${port}`, PLAZA_DATA_DIR: dataDir, PLAZA_LOG: 'warn',
      PLAZA_AUTH_ATTEMPTS_PER_ADDRESS: '1000', PLAZA_DATABASE_URL: '' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await waitReady(`${base}/readyz`, 60);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  if (screenshots) mkdirSync(screenshots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function shot(page, name) {
  if (screenshots) await page.screenshot({ path: join(screenshots, `${name}.png`) });
}

/** A fresh browser context (its own storage, like another phone) signed up through the UI. */
async function signUp(username, displayName) {
  const context = await browser.newContext(MOBILE);
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  page.on('pageerror', (error) => console.error(`[${username}] page error:`, error));
  await page.goto(base + '/');
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Display name').fill(displayName);
  await page.getByLabel('Password').fill('browser-password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Chats' }).waitFor();
  const user = { context, page, username, displayName };
  open.add(user);
  return user;
}

const open = new Set();
/** On failure, a screenshot of every open page goes to web/test-results/ to show why. */
async function keepEvidence(run) {
  try {
    await run();
  } catch (error) {
    const dir = join(here, '../test-results');
    mkdirSync(dir, { recursive: true });
    for (const user of open) await user.page.screenshot({ path: join(dir, `${user.username}.png`) }).catch(() => {});
    throw error;
  } finally {
    open.clear();
  }
}

async function tab(user, name) {
  // A conversation is full-screen; its back button leads to the tabs.
  if (!(await user.page.getByRole('navigation').isVisible())) await user.page.getByRole('button', { name: 'Back' }).click();
  await user.page.getByRole('navigation').getByRole('link', { name }).click();
}

async function befriend(asker, answerer) {
  await tab(asker, 'Contacts');
  await asker.page.getByRole('searchbox', { name: 'Search people' }).fill(answerer.username);
  await asker.page.getByRole('button', { name: `Add ${answerer.displayName}` }).click();
  await asker.page.getByRole('list', { name: 'Search people' }).getByText('Requested').waitFor();
  await tab(answerer, 'Contacts');
  const requests = answerer.page.getByRole('list', { name: 'Requests' });
  await requests.getByRole('button', { name: 'Accept' }).click();
  await answerer.page.getByRole('list', { name: 'Contacts' }).getByText(asker.displayName).waitFor();
}

async function openDirect(from, to) {
  await tab(from, 'Contacts');
  await from.page.getByRole('list', { name: 'Contacts' }).getByRole('listitem').filter({ hasText: to.displayName })
    .getByRole('button', { name: 'Message' }).click();
  await from.page.getByRole('textbox', { name: 'Message' }).waitFor();
}

async function say(user, text) {
  await user.page.getByRole('textbox', { name: 'Message' }).fill(text);
  await user.page.getByRole('button', { name: 'Send', exact: true }).click();
}

function messages(user, text) {
  return user.page.locator('[data-testid="message"]').filter({ hasText: text });
}

async function openChatFromList(user, title) {
  await tab(user, 'Chats');
  await user.page.getByRole('link', { name: new RegExp(title) }).click();
  await user.page.getByRole('textbox', { name: 'Message' }).waitFor();
}

test('two people become contacts, chat in real time, and a group opens a red packet', () => keepEvidence(async () => {
  const ann = await signUp('ann', 'Ann Lee');
  await shot(ann.page, '01-chats-empty');
  const ben = await signUp('ben', 'Ben Wu');
  const cat = await signUp('cat', 'Cat Diaz');

  await befriend(ann, ben);
  await befriend(ann, cat);
  await shot(ann.page, '02-contacts');

  // Ann writes first; Ben sees the chat appear with an unread badge, then the message.
  await openDirect(ann, ben);
  await say(ann, 'Hi Ben, lunch today?');
  await messages(ann, 'Hi Ben, lunch today?').getByText('Sent').waitFor();
  await tab(ben, 'Chats');
  const annRow = ben.page.getByRole('link', { name: /Ann Lee/ });
  await annRow.getByTestId('unread').waitFor();
  assert.equal(await annRow.getByTestId('unread').textContent(), '1');
  await annRow.getByText('Hi Ben, lunch today?').waitFor();
  await shot(ben.page, '03-chats-unread');
  await annRow.click();
  await messages(ben, 'Hi Ben, lunch today?').waitFor();

  // Ben types: Ann sees the indicator, then the reply, and her message turns to Read.
  await ben.page.getByRole('textbox', { name: 'Message' }).pressSequentially('Sure');
  await ann.page.getByTestId('typing').getByText('Ben Wu is typing…').waitFor();
  await ben.page.getByRole('textbox', { name: 'Message' }).fill('Sure! 12:30 at the noodle place?');
  await ben.page.getByRole('button', { name: 'Send', exact: true }).click();
  await messages(ann, 'Sure! 12:30 at the noodle place?').waitFor();
  await messages(ann, 'Hi Ben, lunch today?').getByText('Read').waitFor();
  await say(ann, 'Perfect, see you there 🍜');
  await messages(ben, 'Perfect, see you there 🍜').waitFor();

  // A photo: uploaded, sent, and shown on the other side (fetched with Ben's token).
  await ann.page.getByRole('button', { name: 'More' }).click();
  await ann.page.getByLabel('Send a photo').setInputFiles(join(here, '../public/icon-192.png'));
  await ben.page.getByRole('img', { name: 'Photo' }).waitFor();
  assert.ok(await ben.page.getByRole('img', { name: 'Photo' }).evaluate((img) => img.complete && img.naturalWidth === 192));
  await shot(ann.page, '04-conversation');

  // Ann tops up her wallet (sandbox) and sets a PIN.
  await tab(ann, 'Wallet');
  await ann.page.getByRole('button', { name: 'Top up' }).click();
  await ann.page.getByRole('dialog').getByLabel(/Amount/).fill('100');
  await ann.page.getByRole('dialog').getByRole('button', { name: 'Top up' }).click();
  await ann.page.getByTestId('available').filter({ hasText: '$100.00' }).waitFor();
  await ann.page.getByTestId('entry').filter({ hasText: 'Top-up' }).filter({ hasText: '+$100.00' }).waitFor();
  await ann.page.getByRole('button', { name: 'Set PIN' }).click();
  for (const digit of '135790') await ann.page.getByRole('button', { name: `Digit ${digit}` }).click();
  await ann.page.getByText('PIN saved').waitFor();
  await shot(ann.page, '05-wallet');

  // A group with all three; Ann sends a red packet for two, paying with her PIN.
  await tab(ann, 'Chats');
  await ann.page.getByRole('button', { name: 'New group' }).click();
  await ann.page.getByLabel('Group name').fill('Lunch crew');
  await ann.page.getByRole('checkbox').nth(0).check();
  await ann.page.getByRole('checkbox').nth(1).check();
  await ann.page.getByRole('button', { name: 'Create group' }).click();
  await ann.page.getByRole('heading', { name: 'Lunch crew' }).waitFor();

  // Money to Ben from the chat, paid with the PIN; it shows in the chat for everyone.
  await ann.page.getByRole('button', { name: 'More' }).click();
  await ann.page.getByRole('menuitem', { name: /Send money/ }).click();
  const transfer = ann.page.getByRole('dialog');
  await transfer.getByRole('combobox').selectOption({ label: 'Ben Wu' });
  await transfer.getByLabel(/Amount/).fill('5');
  await transfer.getByLabel(/Note/).fill('noodles');
  await transfer.getByRole('button', { name: 'Send' }).click();
  for (const digit of '135790') await ann.page.getByRole('button', { name: `Digit ${digit}` }).click();
  await ann.page.getByTestId('transfer').filter({ hasText: '$5.00' }).waitFor();
  await ann.page.getByRole('button', { name: 'More' }).click();
  await ann.page.getByRole('menuitem', { name: /Red packet/ }).click();
  const dialog = ann.page.getByRole('dialog');
  await dialog.getByLabel(/Total amount/).fill('8.88');
  await dialog.getByLabel('Number of packets').fill('2');
  await dialog.getByLabel('Greeting').fill('Lunch is on me!');
  await shot(ann.page, '06-red-packet-form');
  await dialog.getByRole('button', { name: 'Put money in' }).click();
  await ann.page.getByRole('dialog', { name: 'Enter your payment PIN' }).waitFor();
  for (const digit of '135790') await ann.page.getByRole('button', { name: `Digit ${digit}` }).click();
  await ann.page.getByTestId('red-packet').getByText('Lunch is on me!').waitFor();

  let total = 0;
  for (const friend of [ben, cat]) {
    await openChatFromList(friend, 'Lunch crew');
    await friend.page.getByTestId('transfer').filter({ hasText: 'noodles' }).waitFor();
    await friend.page.getByTestId('red-packet').click();
    await friend.page.getByRole('button', { name: 'Open', exact: true }).click();
    const share = friend.page.getByTestId('my-share');
    await share.waitFor();
    const amount = /\$(\d+\.\d\d)/.exec(await share.textContent())[1];
    total += Math.round(Number(amount) * 100);
    if (friend === cat) await shot(friend.page, '07-red-packet-opened');
    await friend.page.getByRole('button', { name: 'Close' }).click();
  }
  assert.equal(total, 888, 'the two shares add up to the packet');

  // Ann sees who got how much.
  await ann.page.getByTestId('red-packet').click();
  await ann.page.getByText('2 of 2 opened').waitFor();
  const claims = ann.page.getByRole('list', { name: 'Who got how much' }).getByRole('listitem');
  assert.equal(await claims.count(), 2);
  await claims.filter({ hasText: 'Ben Wu' }).waitFor();
  await claims.filter({ hasText: 'Cat Diaz' }).waitFor();

  // Ben switches to Chinese and the dark theme.
  await tab(ben, 'Me');
  await ben.page.getByLabel('Language').selectOption('zh-CN');
  await ben.page.getByRole('heading', { name: '我' }).waitFor();
  await ben.page.getByLabel('主题').selectOption('dark');
  assert.equal(await ben.page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await ben.page.getByRole('navigation').getByRole('link', { name: '钱包' }).click();
  await ben.page.getByRole('heading', { name: '钱包' }).waitFor();
  await shot(ben.page, '10-wallet-zh-dark');

  for (const user of [ann, ben, cat]) await user.context.close();
}));

test('messages sent while a phone is offline appear exactly once after it reconnects', () => keepEvidence(async () => {
  const dan = await signUp('dan', 'Dan Ito');
  const eve = await signUp('eve', 'Eve Park');
  await befriend(dan, eve);
  await openDirect(dan, eve);
  await say(dan, 'Are you there?');
  await openChatFromList(eve, 'Dan Ito');
  await messages(eve, 'Are you there?').waitFor();

  await eve.context.setOffline(true);
  await eve.page.getByTestId('connection').getByText(/Offline/).waitFor();
  // Eve writes while offline: it shows at once, waiting to be sent.
  await say(eve, 'Written on the train');
  await eve.page.locator('[data-pending="true"]').getByText('Sending').waitFor();
  await shot(eve.page, '08-offline');
  const sentMeanwhile = ['One', 'Two', 'Three', 'Four', 'Five'].map((n) => `Missed message ${n}`);
  for (const text of sentMeanwhile) {
    await say(dan, text);
    await messages(dan, text).getByText('Sent').waitFor();
  }
  assert.equal(await messages(eve, 'Missed message').count(), 0, 'nothing arrives while offline');

  await eve.context.setOffline(false);
  for (const text of sentMeanwhile) await messages(eve, text).waitFor();
  await messages(dan, 'Written on the train').waitFor();
  await eve.page.getByTestId('connection').waitFor({ state: 'detached' });
  for (const text of [...sentMeanwhile, 'Are you there?']) {
    assert.equal(await messages(eve, text).count(), 1, `"${text}" once on Eve's screen`);
  }
  assert.equal(await messages(eve, 'Written on the train').count(), 1, 'the offline message once for Eve');
  assert.equal(await messages(dan, 'Written on the train').count(), 1, 'the offline message once for Dan');
  await messages(eve, 'Written on the train').getByText(/Sent|Read/).waitFor();

  // A reload replays nothing twice either.
  await eve.page.reload();
  await messages(eve, 'Missed message Five').waitFor();
  assert.equal(await messages(eve, 'Missed message').count(), sentMeanwhile.length);
  await shot(eve.page, '09-after-reconnect');

  for (const user of [dan, eve]) await user.context.close();
}));

async function call(method, path, token, body) {
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

test('a chat with a thousand messages keeps only a window of them in the page', async () => {
  const fay = await call('POST', '/auth/register', undefined, { username: 'fay', password: 'browser-password', display_name: 'Fay Ng' });
  const gus = await call('POST', '/auth/register', undefined, { username: 'gus', password: 'browser-password', display_name: 'Gus Roy' });
  const chat = await call('POST', '/conversations', fay.token, { kind: 'direct', member_ids: [gus.user.id] });
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, (_, i) => {
      const n = batch * 50 + i + 1;
      return call('POST', `/conversations/${chat.id}/messages`, n % 2 ? fay.token : gus.token,
        { client_id: `bulk-${n}`, kind: 'text', body: { text: `Bulk message ${n}` } });
    }));
  }

  const context = await browser.newContext(MOBILE);
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  await page.goto(base + '/');
  // A wrong password is told in words chosen by the problem's code.
  await page.getByLabel('Username').fill('fay');
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText('Wrong username or password.').waitFor();
  await page.getByLabel('Password').fill('browser-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('link', { name: /Gus Roy/ }).click();
  const log = page.getByRole('log');
  await log.locator('[data-testid="message"]').last().waitFor();
  const rendered = () => page.locator('[data-testid="message"]').count();
  assert.ok((await rendered()) < 60, `only a window is rendered, not ${await rendered()}`);

  // The reader keeps flicking to the top until the first message shows.
  await page.waitForFunction(() => {
    const element = document.querySelector('[role="log"]');
    element.scrollTop = 0;
    element.dispatchEvent(new Event('scroll'));
    return document.querySelector('[data-seq="1"]') !== null;
  }, undefined, { polling: 100, timeout: 60_000 });
  const first = page.locator('[data-seq="1"]');
  await first.first().waitFor();
  assert.ok((await rendered()) < 60, `still a window after scrolling back: ${await rendered()}`);
  await context.close();
});
