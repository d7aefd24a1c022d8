#!/usr/bin/env node
// The browser test of the operator's dashboard at /admin, in headless Debian
// Chromium against a running comfyume host with a slow rehearsal pool.
//
// The operator logs in to /admin; an attendee submits a job over HTTP; the
// job appears in the dashboard without a reload; the operator cancels it and
// sees it cancelled; uploads a scheduler plugin, sees its check report,
// activates it, sees it active, rolls back and sees fair-share again;
// uploads a hostile plugin and sees the refusal; drains and reopens the
// workshop and changes the job wait. Issue 19: presses Cancel on six jobs
// during a burst of submits, each as a person presses (down, a pause, up),
// and sees all six cancelled; finished jobs are hidden by default, a job's
// wait and run times are shown apart, Drain and Close ask first, a retry
// names its new job, attendees are added (passwords shown once), disabled,
// enabled and given new passwords from the page, the pool buttons fit at
// 1440 px, an attendee opening /admin gets a page in words, and the default
// rehearsal pool of a second host (--default-url) warms up. Each stage
// asserts on what the page shows and on what the API answers.
//
// Usage (host/tests/browser.rs runs it; passwords only through the
// environment, never argv):
//   E2E_ADMIN_PASSWORD=… E2E_ATTENDEE_PASSWORD=… node admin.mjs --url http://127.0.0.1:PORT \
//     --admin boss --attendee ann --workflow workflows/api/X.api.json \
//     --plugin fifo.wasm --hostile hostile-loop.wasm --screenshots DIR
// Options: --chromium PATH (default /usr/bin/chromium), --timeout-ms N (per
// wait, default 30000), --default-url URL (a host with no pool configured,
// the same admin login), --only a,b (run only these stages, after login:
// to show a stage failing on an older host).
//
// Output: one JSON line per stage on stdout, then one {"summary":{…}} line;
// a screenshot per stage, admin-NN-stage.png, in the screenshot folder. Exit
// 0 when every stage passed, 1 when one failed, 2 on bad usage.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { StageError, check, parseArgs, stageRunner } from './stages.mjs';

function usage(message) {
  console.error(`admin.mjs: ${message}`);
  console.error(
    'usage: E2E_ADMIN_PASSWORD=… E2E_ATTENDEE_PASSWORD=… node admin.mjs --url URL --admin NAME --attendee NAME ' +
      '--workflow FILE --plugin FILE --hostile FILE --screenshots DIR',
  );
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2), usage);
const config = {
  url: args.url,
  admin: { username: args.admin, password: process.env.E2E_ADMIN_PASSWORD },
  attendee: { username: args.attendee, password: process.env.E2E_ATTENDEE_PASSWORD },
  workflow: args.workflow,
  plugin: args.plugin,
  hostile: args.hostile,
  screenshots: path.resolve(args.screenshots ?? 'screenshots'),
  chromium: args.chromium ?? '/usr/bin/chromium',
  timeout: Number(args['timeout-ms'] ?? '30000'),
  defaultUrl: args['default-url'],
  only: args.only ? new Set(args.only.split(',')) : null,
};
for (const key of ['url', 'workflow', 'plugin', 'hostile']) if (!config[key]) usage(`--${key} is required`);
for (const who of ['admin', 'attendee']) {
  if (!config[who].username) usage(`--${who} is required`);
  if (!config[who].password) usage(`no password for ${who}: set E2E_${who.toUpperCase()}_PASSWORD`);
}
for (const file of [config.workflow, config.plugin, config.hostile, config.chromium]) {
  if (!fs.existsSync(file)) usage(`no file at ${file}`);
}
const origin = new URL(config.url).origin;
fs.mkdirSync(config.screenshots, { recursive: true });

// ---------------------------------------------------------------- report

const started = Date.now();
const summary = { ok: false, url: config.url, screenshots: config.screenshots };
const runner = stageRunner({
  dir: config.screenshots,
  prefix: 'admin-',
  fullPage: true,
  shotEachStage: true,
});
const { stages } = runner;
// With --only, the other stages (but login) are skipped.
const stage = (name, page, body) =>
  !config.only || name === 'login' || config.only.has(name) ? runner.stage(name, page, body) : null;

// ------------------------------------------------------------------ HTTP

// A request from outside the browser, as `who` (or nobody), to the host
// (or to `base`).
async function http(method, route, who, body, base = origin) {
  const headers = { accept: 'application/json' };
  if (who) headers.authorization = `Basic ${Buffer.from(`${who.username}:${who.password}`).toString('base64')}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(new URL(route, base), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON.
  }
  return { status: response.status, json, text: text.slice(0, 4000) };
}

const asAdmin = (method, route, body) => http(method, route, config.admin, body);

// What the page shows in the message area, newest first.
const messages = (page) => page.locator('[data-test=message]').allInnerTexts();

// Waits until the newest message contains `text`; returns them all.
async function waitForMessage(page, text, what) {
  await page
    .waitForFunction((t) => document.querySelector('[data-test=message]')?.textContent.includes(t), text)
    .catch(async () => {
      throw new StageError(`${what}: no message saying ${JSON.stringify(text)}`, await messages(page));
    });
  return messages(page);
}

// Waits for a message (ok or error, not the info said meanwhile) whose
// text includes `text`; returns {kind, text} of the newest such.
async function waitForOutcome(page, text, what) {
  const handle = await page
    .waitForFunction(
      (t) => {
        const hit = [...document.querySelectorAll('[data-test=message]')].find(
          (m) => m.dataset.kind !== 'info' && m.textContent.includes(t),
        );
        return hit && { kind: hit.dataset.kind, text: hit.querySelector('span').textContent };
      },
      text,
    )
    .catch(async () => {
      throw new StageError(`${what}: no outcome saying ${JSON.stringify(text)}`, await messages(page));
    });
  return handle.jsonValue();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, test, ms = config.timeout) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await test();
    if (value) return value;
    if (Date.now() > deadline) throw new StageError(`${what}: timed out after ${ms} ms`);
    await sleep(100);
  }
}

async function waitForText(page, locator, predicate, what) {
  const deadline = Date.now() + config.timeout;
  let last = null;
  while (Date.now() < deadline) {
    last = (await locator.count()) ? await locator.first().innerText() : null;
    if (last !== null && predicate(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new StageError(`${what}: the page shows ${JSON.stringify(last)}`, { messages: await messages(page) });
}

async function upload(page, file) {
  await page.locator('#plugin-file').setInputFiles(file);
  await page.locator('#plugin-upload').click();
  const report = page.locator('#upload-report');
  await page.waitForFunction(
    () => ['passed', 'refused'].includes(document.getElementById('upload-report').dataset.state),
    null,
    { timeout: config.timeout },
  );
  return { state: await report.getAttribute('data-state'), hash: await report.getAttribute('data-hash'), text: await report.innerText() };
}

const slotActive = (page, slot) => page.locator(`[data-test=slot][data-slot="${slot}"] [data-test=slot-active]`);

async function schedulerActive() {
  const plugins = await asAdmin('GET', '/admin/api/plugins');
  return plugins.json?.slots?.find((s) => s.slot === 'scheduler')?.active ?? null;
}

// ---------------------------------------------------------------- stages

async function main() {
  const browser = await chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      // Nothing leaves the machine: no name resolves but the host's.
      `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE ${new URL(config.url).hostname} , EXCLUDE localhost`,
    ],
  });
  const pageErrors = [];
  const consoleErrors = [];
  const run = {};
  let page = null;
  try {
    const context = await browser.newContext({
      httpCredentials: { ...config.admin, origin },
      viewport: { width: 1440, height: 1000 },
      deviceScaleFactor: 1,
    });
    context.setDefaultTimeout(config.timeout);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error.stack || error.message).slice(0, 2000)));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text().slice(0, 1000));
    });
    const sse = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/admin/api/events') sse.push(r.url());
    });

    await stage('login', () => page, async () => {
      const anonymous = await http('GET', '/admin', null);
      check(anonymous.status === 401, `an anonymous GET /admin answered ${anonymous.status}`);
      const attendee = await http('GET', '/admin', config.attendee);
      check(attendee.status === 403, `the attendee's GET /admin answered ${attendee.status}`);
      const response = await page.goto(new URL('/admin', origin).href);
      check(response.status() === 200, `GET /admin answered ${response.status()}`);
      await waitForText(page, page.locator('#feed-status'), (t) => t === 'live', 'the live feed never connected');
      const session = await waitForText(page, page.locator('#session-state'), (t) => t === 'open', 'the session is not shown open');
      check(sse.length > 0, 'the page never opened /admin/api/events');
      await waitForText(page, page.locator('[data-test=slot][data-slot=scheduler] [data-test=slot-active]'), (t) => t.startsWith('fair-share@'), 'the scheduler slot');
      const pools = await page.locator('[data-test=pool-row]').count();
      check(pools > 0, 'no pool listed');
      await page.evaluate(() => {
        window.__loaded_once = 'yes';
      });
      return { session, pools };
    });

    await stage('attendee_sees_a_page', () => run.refused ?? page, async () => {
      // An attendee who opens /admin reads why they cannot, not raw JSON.
      const context = await browser.newContext({ httpCredentials: { ...config.attendee, origin } });
      run.refused = await context.newPage();
      const response = await run.refused.goto(new URL('/admin', origin).href);
      check(response.status() === 403, `the attendee's /admin answered ${response.status()}`);
      const type = response.headers()['content-type'] ?? '';
      check(type.startsWith('text/html'), `the attendee's /admin is ${type}, not a page`);
      const said = await run.refused.locator('[data-test=refusal]').innerText().catch(() => '');
      check(said.includes('not an operator account'), 'the page does not say the account is not an operator', said);
      return { said };
    });
    if (run.refused) await run.refused.context().close();

    await stage('buttons_fit', () => page, async () => {
      // At 1440 px (this page's width) the pool and attendee buttons are
      // inside their panels, not cut off behind a scroll bar.
      const fit = await page.evaluate(() =>
        ['pools-panel', 'attendees-panel'].map((id) => {
          const panel = document.getElementById(id);
          const box = panel.getBoundingClientRect();
          const buttons = [...panel.querySelectorAll('tr button')].map((b) => b.getBoundingClientRect());
          return {
            panel: id,
            width: window.innerWidth,
            overflow: panel.scrollWidth - panel.clientWidth,
            outside: buttons.filter((b) => b.right > box.right - 1 || b.left < box.left).length,
            buttons: buttons.length,
          };
        }),
      );
      for (const one of fit) {
        check(one.buttons >= 2, `no buttons in ${one.panel}`, fit);
        check(one.overflow <= 0 && one.outside === 0, `buttons in ${one.panel} are cut off at ${one.width} px`, fit);
      }
      return { fit };
    });

    await stage('jobs_appear_live', () => page, async () => {
      // Two jobs: the first takes the one GPU slot, the second waits.
      run.workflow = JSON.parse(fs.readFileSync(config.workflow, 'utf8'));
      run.jobs = [];
      for (let i = 0; i < 2; i++) {
        const answer = await http('POST', '/api/prompt', config.attendee, { prompt: run.workflow, client_id: 'admin-e2e' });
        check(answer.status === 200 && answer.json?.number !== undefined, `POST /api/prompt answered ${answer.status}`, answer.text);
        run.jobs.push(String(answer.json.number));
      }
      [run.number, run.waiting] = run.jobs;
      const states = {};
      for (const id of run.jobs) {
        const row = page.locator(`[data-test=job-row][data-job-id="${id}"]`);
        await row.waitFor({ state: 'visible' }).catch(() => {
          throw new StageError(`job ${id} never appeared in the dashboard`);
        });
        states[id] = await row.getAttribute('data-state');
      }
      check(['queued', 'leased', 'dispatched', 'running'].includes(states[run.number]), `the first job shows state ${states[run.number]}`);
      await page
        .locator(`[data-test=job-row][data-job-id="${run.number}"][data-state=running]`)
        .waitFor({ state: 'visible' })
        .catch(() => {
          throw new StageError(`job ${run.number} is never shown running`);
        });
      const waiting = page.locator(`[data-test=job-row][data-job-id="${run.waiting}"]`);
      check((await waiting.getAttribute('data-state')) === 'queued', `the second job shows ${await waiting.getAttribute('data-state')}, not queued`);
      const group = page.locator(`[data-test=queue-user][data-user="${config.attendee.username}"]`);
      check((await group.count()) === 1, `the queue has no group for ${config.attendee.username}`);
      const reloaded = await page.evaluate(() => window.__loaded_once !== 'yes');
      check(!reloaded, 'the page was reloaded');
      const attendee = page.locator(`[data-test=attendee-row][data-name="${config.attendee.username}"]`);
      await page
        .waitForFunction(
          (name) => {
            const row = document.querySelector(`[data-test=attendee-row][data-name="${name}"]`);
            const count = (test) => Number(row?.querySelector(`[data-test=${test}]`)?.textContent);
            return count('attendee-pending') === 1 && count('attendee-running') === 1;
          },
          config.attendee.username,
        )
        .catch(async () => {
          throw new StageError('the attendee row does not show one job waiting and one running', await attendee.innerText().catch(() => null));
        });
      return { jobs: run.jobs, states, feed: await page.locator('#feed-status').innerText() };
    });

    await stage('priority_answer', () => page, async () => {
      // Whatever the host answers (the route may not exist yet), the
      // operator sees it in the message area.
      const select = page.locator(`[data-test=job-row][data-job-id="${run.waiting}"] [data-test=job-priority]`);
      await select.selectOption({ label: 'high' });
      const said = await waitForMessage(page, `Priority of job ${run.waiting}`, 'the priority change got no message');
      const job = await asAdmin('GET', `/admin/api/jobs/${run.waiting}`);
      check(job.json?.priority === 'high', `the API says job ${run.waiting} is ${job.json?.priority}, not high`, { said, job: job.text });
      return { priority: said[0] };
    });

    await stage('cancel', () => page, async () => {
      // Finished jobs are hidden until asked for (a day's history made the
      // panel thousands of pixels tall); this stage asks for them.
      const box = page.locator('[data-test=show-finished]');
      check(!(await box.isChecked()), '"show finished jobs" is on by default');
      await box.check();
      for (const id of [run.waiting, run.number]) {
        const row = page.locator(`[data-test=job-row][data-job-id="${id}"]`);
        await row.locator('[data-test=job-cancel]').click();
        await page
          .locator(`[data-test=job-row][data-job-id="${id}"][data-state=cancelled]`)
          .waitFor({ state: 'visible' })
          .catch(async () => {
            throw new StageError(`job ${id} is not shown cancelled`, {
              state: await row.getAttribute('data-state').catch(() => null),
              messages: await messages(page),
            });
          });
        const said = await messages(page);
        check(said.some((m) => m.includes(`Cancel job ${id}`)), `no message about cancelling job ${id}`, said);
        const job = await asAdmin('GET', `/admin/api/jobs/${id}`);
        check(job.json?.state === 'cancelled', `the API says job ${id} is ${job.json?.state}`, job.text);
      }
      return { messages: (await messages(page)).slice(0, 2) };
    });

    await stage('wait_and_run_apart', () => page, async () => {
      // The job that ran, then was cancelled, shows its wait and its run.
      const time = page.locator(`[data-test=job-row][data-job-id="${run.number}"] [data-test=job-time]`);
      const shown = await waitForText(page, time, (t) => /waited .* · ran /.test(t), 'the wait and the run are not shown apart');
      const queued = page.locator(`[data-test=job-row][data-job-id="${run.waiting}"] [data-test=job-time]`);
      const never = await waitForText(page, queued, (t) => /waited .*never ran/.test(t), 'a job cancelled while waiting does not say it never ran');
      return { ran: shown, never };
    });

    await stage('retry_answer', () => page, async () => {
      await page.locator(`[data-test=job-row][data-job-id="${run.number}"] [data-test=job-retry]`).click();
      const said = await waitForMessage(page, `Retry job ${run.number}`, 'the retry got no message');
      // A retry is a new job of the same attendee that shows up live.
      const jobs = await asAdmin('GET', `/admin/api/jobs?user=${config.attendee.username}`);
      const retried = (jobs.json?.jobs ?? []).filter((j) => j.id > Math.max(run.number, run.waiting));
      check(retried.length === 1, 'the retry made no new job', { said, jobs: jobs.text });
      check(said[0].includes(`new job ${retried[0].id}`), `the message does not name the new job ${retried[0].id}`, said);
      await page
        .locator(`[data-test=job-row][data-job-id="${retried[0].id}"]`)
        .waitFor({ state: 'visible' })
        .catch(() => {
          throw new StageError(`the retried job ${retried[0].id} does not appear`, said);
        });
      return { retry: said[0], new_job: retried[0].id };
    });

    await stage('cancel_during_a_burst', () => page, async () => {
      // Issue 19: the queue was rebuilt on every update, so a press that
      // began on a Cancel button ended on its replacement and did nothing.
      // Six presses, each held as a person holds one, while jobs keep
      // arriving; all six must cancel their job.
      await page.locator('[data-test=show-finished]').uncheck();
      const burst = { submitted: [], refused: [], going: true };
      const submitting = (async () => {
        while (burst.going && burst.submitted.length < 14) {
          const answer = await http('POST', '/api/prompt', config.attendee, { prompt: run.workflow, client_id: 'admin-burst' });
          if (answer.status === 200) burst.submitted.push(String(answer.json.number));
          else burst.refused.push(answer.status);
          await sleep(150);
        }
      })();
      const pressed = [];
      try {
        for (let i = 0; i < 6; i++) {
          await until(`the burst's job ${i + 1}`, () => burst.submitted.length > i + 1);
          const id = burst.submitted[i];
          const button = page.locator(`[data-test=job-row][data-job-id="${id}"] [data-test=job-cancel]`);
          await button.waitFor({ state: 'visible' });
          // Where the button is now (a button replaced meanwhile is looked
          // up again, as a person's eyes would follow it).
          const box = await until(`job ${id}'s Cancel button on screen`, async () => {
            try {
              await button.scrollIntoViewIfNeeded({ timeout: 2000 });
              return await button.boundingBox({ timeout: 2000 });
            } catch {
              return null;
            }
          });
          await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
          await page.mouse.down();
          await page.waitForTimeout(200);
          await page.mouse.up();
          pressed.push(id);
          if (i === 3) await page.screenshot({ path: path.join(config.screenshots, 'admin-burst.png') });
        }
      } finally {
        burst.going = false;
        await submitting;
      }
      const states = {};
      await until('the pressed jobs are cancelled', async () => {
        for (const id of pressed) states[id] = (await asAdmin('GET', `/admin/api/jobs/${id}`)).json?.state;
        return pressed.every((id) => states[id] === 'cancelled');
      }, 10000).catch(() => {
        const missed = pressed.filter((id) => states[id] !== 'cancelled');
        throw new StageError(`${missed.length} of ${pressed.length} Cancel presses did nothing`, { states, refused: burst.refused });
      });
      // The rest of the burst (and the retried job) are cancelled over the
      // API so the later stages start from a quiet queue.
      const left = await asAdmin('GET', `/admin/api/jobs?user=${config.attendee.username}`);
      for (const job of left.json?.jobs ?? []) {
        if (!['succeeded', 'failed', 'cancelled', 'dead'].includes(job.state)) await asAdmin('POST', `/admin/api/jobs/${job.id}/cancel`);
      }
      await page.mouse.move(5, 5);
      return { pressed, submitted: burst.submitted.length, states };
    });

    await stage('attendees_panel', () => page, async () => {
      // Add an attendee: the password is shown once and logs in.
      await page.locator('[data-test=add-names]').fill('zed');
      await page.locator('[data-test=add-attendees-submit]').click();
      const shownPassword = page.locator('[data-test=password-row][data-name=zed] [data-test=password]');
      await shownPassword.waitFor({ state: 'visible' }).catch(async () => {
        throw new StageError('no password shown for the new attendee zed', await messages(page));
      });
      const first = (await shownPassword.innerText()).trim();
      const zed = { username: 'zed', password: first };
      check((await http('GET', '/api/users', zed)).status === 200, "zed cannot log in with the password shown");
      const row = page.locator('[data-test=attendee-row][data-name=zed]');
      await row.waitFor({ state: 'visible' });
      // Disable, then enable.
      await row.locator('[data-test=attendee-disable]').click();
      await page.locator('[data-test=attendee-row][data-name=zed][data-disabled=yes]').waitFor();
      const disabled = await http('GET', '/api/users', zed);
      check(disabled.status === 403, `a disabled zed got ${disabled.status}`, disabled.text);
      await row.locator('[data-test=attendee-disable]').click();
      await page.locator('[data-test=attendee-row][data-name=zed][data-disabled=no]').waitFor();
      check((await http('GET', '/api/users', zed)).status === 200, 'zed, enabled again, cannot log in');
      // A new password, after a confirmation: shown once; the old one stops.
      page.once('dialog', (dialog) => dialog.accept());
      await row.locator('[data-test=attendee-reset]').click();
      const second = await waitForText(page, shownPassword, (t) => t.trim() && t.trim() !== first, 'no new password shown');
      check((await http('GET', '/api/users', { username: 'zed', password: second.trim() })).status === 200, 'the new password does not log in');
      const old = await http('GET', '/api/users', zed);
      check(old.status === 401, `the old password answered ${old.status}`);
      await page.locator('[data-test=passwords-hide]').click();
      check(!(await page.locator('[data-test=password-row]').count()), 'the passwords stay on the page after "hide"');
      const adminButtons = await page.locator(`[data-test=attendee-row][data-name="${config.admin.username}"] button`).count();
      check(adminButtons === 0, 'the admin account has buttons (the API refuses them)');
      return { added: 'zed' };
    });

    await stage('upload_report', () => page, async () => {
      const outcome = await upload(page, config.plugin);
      check(outcome.state === 'passed', `the upload was ${outcome.state}`, outcome.text);
      check(/fifo@/.test(outcome.text) && /scheduler/.test(outcome.text), 'the report does not name fifo, scheduler', outcome.text);
      check(outcome.text.includes('✓'), 'the report lists no passed fixture', outcome.text);
      run.hash = outcome.hash;
      await page.locator(`[data-test=upload-row][data-hash="${run.hash}"]`).waitFor({ state: 'visible' });
      return { hash: run.hash };
    });

    await stage('activate', () => page, async () => {
      await page.locator(`[data-test=activate][data-hash="${run.hash}"]`).click();
      const shown = await waitForText(page, slotActive(page, 'scheduler'), (t) => t.startsWith('fifo@'), 'fifo is not shown active');
      const api = await schedulerActive();
      check(api?.startsWith('fifo@'), `the API says the scheduler is ${api}`);
      return { shown, api };
    });

    await stage('rollback', () => page, async () => {
      await page.locator('[data-test=rollback][data-slot=scheduler]').click();
      const shown = await waitForText(page, slotActive(page, 'scheduler'), (t) => t.startsWith('fair-share@'), 'fair-share is not shown active again');
      const api = await schedulerActive();
      check(api?.startsWith('fair-share@'), `the API says the scheduler is ${api}`);
      return { shown, api };
    });

    await stage('shadow_and_budget', () => page, async () => {
      // The uploaded FIFO in shadow beside fair-share: the panel names it
      // and counts its live decisions; then stopped.
      await page.locator('[data-test=upload-row] [data-test=shadow]').first().click();
      const counts = await waitForText(page, page.locator('[data-test=shadow-counts]'), (t) => t.includes('live decisions'), 'the shadow run is not shown');
      const plugins = await asAdmin('GET', '/admin/api/plugins');
      check(plugins.json?.shadow?.label?.startsWith('fifo@'), 'the API has no FIFO shadow', plugins.text);
      // A budget set from the form is in force and shown with the costs.
      await page.locator('[data-test=budget]').fill('1000');
      await page.locator('[data-test=budget-save]').click();
      const budget = await waitForText(page, page.locator('[data-test=costs-budget]'), (t) => t.startsWith('Budget 1000.00'), 'the budget is not shown');
      const settings = await asAdmin('GET', '/admin/api/settings');
      check(settings.json?.budget === 1000, `the API says the budget is ${settings.json?.budget}`, settings.text);
      await page.locator('[data-test=shadow-stop]').click();
      await waitForMessage(page, 'Stop the shadow run', 'stopping the shadow run got no message');
      const after = await asAdmin('GET', '/admin/api/plugins');
      check(after.json?.shadow?.label == null, 'the shadow run did not stop', after.text);
      // The only pool cannot be taken out of use; the operator is told why.
      await page.locator('[data-test=pool-row] [data-test=pool-switch]').first().click();
      await waitForMessage(page, 'last pool in use', 'taking the last pool out of use was not refused visibly');
      await page.locator('[data-test=budget]').fill('0');
      await page.locator('[data-test=budget-save]').click();
      await waitForMessage(page, 'Budget removed', 'removing the budget got no message');
      return { counts, budget };
    });

    await stage('outputs_and_backups', () => page, async () => {
      // The export link downloads one zip (it begins "PK"); its progress
      // is then shown. Without a bucket, "Back up now" says what to set.
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-test=export]').click()]);
      const file = await download.path();
      const bytes = fs.readFileSync(file);
      check(bytes.length > 22 && bytes.subarray(0, 2).toString() === 'PK', 'the export is not a zip', { size: bytes.length });
      check(download.suggestedFilename().endsWith('.zip'), `the export is named ${download.suggestedFilename()}`);
      await page.locator('[data-test=backup-now]').click();
      await waitForMessage(page, 'no backup.bucket configured', 'backing up without a bucket was not refused visibly');
      const shown = await waitForText(page, page.locator('[data-test=export-status]'), (t) => t.startsWith('Last export'), 'the export is not shown');
      return { zip_bytes: bytes.length, shown };
    });

    await stage('hostile_refused', () => page, async () => {
      const outcome = await upload(page, config.hostile);
      check(outcome.state === 'refused', `the hostile plugin was ${outcome.state}`, outcome.text);
      check(outcome.text.includes('failed the check'), 'the refusal does not say why', outcome.text);
      await waitForMessage(page, 'failed the check', 'the message area does not show the refusal');
      check((await page.locator('[data-test=upload-row]').count()) === 1, 'the hostile plugin is offered for activation');
      const api = await schedulerActive();
      check(api?.startsWith('fair-share@'), `the API says the scheduler is ${api}`);
      return { refusal: outcome.text.split('\n')[0] };
    });

    await stage('session_and_job_wait', () => page, async () => {
      // Drain and Close ask first; "no" changes nothing.
      for (const which of ['drain', 'closed']) {
        const asked = [];
        page.once('dialog', (dialog) => {
          asked.push(dialog.message());
          dialog.dismiss();
        });
        await page.locator(`[data-test=session-${which}]`).click();
        await waitForMessage(page, `Workshop ${which}: not done`, `${which} was not asked first`);
        check(asked.length === 1, `${which} asked ${asked.length} times`, asked);
        const still = await asAdmin('GET', '/admin/api/session');
        check(still.json?.state === 'open', `after "no", the API says the session is ${still.json?.state}`);
      }
      page.once('dialog', (dialog) => dialog.accept());
      await page.locator('[data-test=session-drain]').click();
      await waitForText(page, page.locator('#session-state'), (t) => t === 'drain', 'the session is not shown draining');
      const session = await asAdmin('GET', '/admin/api/session');
      check(session.json?.state === 'drain', `the API says the session is ${session.json?.state}`);
      const refused = await http('POST', '/api/prompt', config.attendee, { prompt: run.workflow });
      check(refused.status === 409, `a prompt while draining answered ${refused.status}`, refused.text);
      await page.locator('[data-test=session-open]').click();
      await waitForText(page, page.locator('#session-state'), (t) => t === 'open', 'the session is not shown open again');
      await page.locator('#job-wait').fill('5');
      await page.locator('#job-wait-save').click();
      await waitForMessage(page, 'between 10 and', 'a bad job wait is not refused visibly');
      await page.locator('#job-wait').fill('900');
      await page.locator('#job-wait-save').click();
      await waitForText(page, page.locator('#job-wait-current'), (t) => t === '900', 'the job wait is not shown as 900');
      const settings = await asAdmin('GET', '/admin/api/settings');
      check(settings.json?.job_wait_secs === 900, `the API says the job wait is ${settings.json?.job_wait_secs}`);
      return { job_wait_secs: 900 };
    });

    await stage('warm_up_default_pool', () => run.other ?? page, async () => {
      // A host with no pool configured runs its default rehearsal pool; the
      // dashboard's Warm up on it works (it answered 404 "no pool named").
      check(config.defaultUrl, 'no --default-url given');
      const other = new URL(config.defaultUrl).origin;
      const context = await browser.newContext({
        httpCredentials: { ...config.admin, origin: other },
        viewport: { width: 1440, height: 1000 },
      });
      run.other = await context.newPage();
      run.other.on('pageerror', (error) => pageErrors.push(String(error.stack || error.message).slice(0, 2000)));
      await run.other.goto(new URL('/admin', other).href);
      const listed = await http('GET', '/admin/api/pools', config.admin, undefined, other);
      const names = (listed.json?.pools ?? []).map((p) => p.name);
      check(names.length === 1, 'the default host lists other than one pool', listed.text);
      const button = run.other.locator(`[data-test=pool-row][data-name="${names[0]}"] [data-test=pool-prewarm]`);
      await button.click();
      const outcome = await waitForOutcome(run.other, names[0], `warming ${names[0]}`);
      check(outcome.kind === 'ok' && outcome.text.includes(`Warm up ${names[0]}: warm`), 'the warm-up did not work', outcome);
      const pools = await http('GET', '/admin/api/pools', config.admin, undefined, other);
      check(pools.json?.pools?.[0]?.warm === true, 'the API does not say the pool is warm', pools.text);
      return { pool: names[0], said: outcome.text };
    });
    if (run.other) {
      await run.other.context().close();
      run.other = null;
    }

    await stage('polling_fallback', () => run.polling ?? page, async () => {
      // With the event stream refused, a second page still shows the state
      // by polling /admin/api/snapshot.
      run.polling = await page.context().newPage();
      run.polling.on('pageerror', (error) => pageErrors.push(String(error.stack || error.message).slice(0, 2000)));
      await run.polling.route('**/admin/api/events', (route) => route.abort());
      await run.polling.goto(new URL('/admin', origin).href);
      await waitForText(run.polling, run.polling.locator('#feed-status'), (t) => t.startsWith('polling'), 'the page does not say it is polling');
      await run.polling.locator('[data-test=show-finished]').check();
      await run.polling.locator(`[data-test=job-row][data-job-id="${run.waiting}"][data-state=cancelled]`).waitFor({ state: 'visible' });
      const wait = await run.polling.locator('#job-wait-current').innerText();
      check(wait === '900', `the polling page shows job wait ${wait}`);
      return { feed: await run.polling.locator('#feed-status').innerText() };
    });
    if (run.polling) await run.polling.close();
    run.polling = null;

    await stage('no_page_errors', () => page, async () => {
      check(pageErrors.length === 0, 'uncaught errors in the dashboard', pageErrors);
      // The refused uploads, the missing retry route and the bad job wait
      // answer 4xx on purpose; the browser logs those as console errors.
      const unexpected = consoleErrors.filter((e) => !/status of 4\d\d/.test(e));
      check(unexpected.length === 0, 'console errors in the dashboard', unexpected);
      const costs = await page.locator('#costs-panel').isVisible();
      return { costs_panel: costs, sse_requests: sse.length };
    });
    summary.ok = true;
  } catch (error) {
    summary.error = error.message;
    if (!(error instanceof StageError)) summary.stack = String(error.stack).slice(0, 2000);
  } finally {
    summary.jobs = run.jobs ?? [];
    summary.plugin_hash = run.hash ?? null;
    summary.page_errors = pageErrors;
    summary.console_errors = consoleErrors;
    await browser.close().catch(() => {});
  }
}

try {
  await main();
} catch (error) {
  summary.ok = false;
  summary.error = error.message;
}
summary.stages = stages.map((s) => ({ stage: s.stage, ok: s.ok, ms: s.ms }));
summary.failed_stage = stages.find((s) => !s.ok)?.stage ?? null;
summary.total_ms = Date.now() - started;
console.log(JSON.stringify({ summary }));
if (!summary.ok) console.error(`admin e2e FAILED: ${summary.error}`);
process.exit(summary.ok ? 0 : 1);
