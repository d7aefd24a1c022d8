#!/usr/bin/env node
// The browser end-to-end test of the attendee front: the real ComfyUI editor
// (the pinned comfyui-frontend-package the host serves) in headless Debian
// Chromium, against a running comfyume host with a rehearsal pool.
//
// Attendee A logs in, the editor boots, A opens a workshop template from the
// workflows sidebar, saves a workflow of its own, presses Run, sees progress,
// the output image on the canvas and the job in the queue panel. Attendee B,
// logged in at the same time in another browser context, sees none of A's
// jobs, history, outputs, workflows or websocket events.
//
// Usage (host/tests/browser.rs runs it; passwords only through the
// environment, never argv):
//   E2E_PASSWORD_A=… E2E_PASSWORD_B=… node e2e.mjs --url http://127.0.0.1:PORT \
//     --user-a alice --user-b bob --screenshots DIR
// Options (or E2E_* variables): --template NAME (a workshop template, default
// comfyume_flux2_klein_4b_t2i_distilled), --chromium PATH (default /usr/bin/chromium),
// --timeout-ms N (per wait, default 60000).
//
// Output: one JSON line per stage on stdout ({"stage":…,"ok":…,…}), then one
// {"summary":{…}} line; a screenshot per stage in the screenshot folder, plus
// requests-a.json / requests-b.json (every /api, /ws and /internal request the
// editor made, with its status). Exit 0 when every stage passed, 1 when one
// failed (the summary says which and why), 2 on bad usage.
//
// Network: Chromium resolves no host name but the host's (and localhost), so
// nothing leaves the machine; it is the Debian build at --chromium, never a
// downloaded one.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { StageError, check, parseArgs, stageRunner } from './stages.mjs';

const require = createRequire(import.meta.url);
const PLAYWRIGHT_VERSION = require('playwright-core/package.json').version;

// ---------------------------------------------------------------- options

function usage(message) {
  console.error(`e2e.mjs: ${message}`);
  console.error(
    'usage: E2E_PASSWORD_A=… E2E_PASSWORD_B=… node e2e.mjs --url URL --user-a NAME --user-b NAME --screenshots DIR',
  );
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2), usage);
const opt = (name, env, fallback) => args[name] ?? process.env[env] ?? fallback;

function user(which) {
  const given = opt(`user-${which}`, `E2E_USER_${which.toUpperCase()}`);
  if (!given) usage(`--user-${which} (or E2E_USER_${which.toUpperCase()}) is required`);
  // NAME:PASSWORD is accepted for manual runs; the environment is preferred.
  const colon = given.indexOf(':');
  const username = colon >= 0 ? given.slice(0, colon) : given;
  const password = colon >= 0 ? given.slice(colon + 1) : process.env[`E2E_PASSWORD_${which.toUpperCase()}`];
  if (!password) usage(`no password for ${username}: set E2E_PASSWORD_${which.toUpperCase()}`);
  return { username, password };
}

const config = {
  url: opt('url', 'E2E_URL'),
  screenshots: path.resolve(opt('screenshots', 'E2E_SCREENSHOTS', 'screenshots')),
  template: opt('template', 'E2E_TEMPLATE', 'comfyume_flux2_klein_4b_t2i_distilled'),
  chromium: opt('chromium', 'E2E_CHROMIUM', '/usr/bin/chromium'),
  timeout: Number(opt('timeout-ms', 'E2E_TIMEOUT_MS', '60000')),
  savedName: opt('saved-workflow', 'E2E_SAVED_WORKFLOW', 'mine.json'),
};
if (!config.url) usage('--url (or E2E_URL) is required');
const base = new URL(config.url);
const origin = base.origin;
const A = user('a');
const B = user('b');
if (A.username === B.username) usage('the two attendees must be different users');
if (!Number.isFinite(config.timeout) || config.timeout <= 0) usage('--timeout-ms must be a positive number');
if (!fs.existsSync(config.chromium)) {
  console.error(
    `e2e.mjs: no Chromium at ${config.chromium}; install the Debian packages: apt-get install chromium chromium-driver`,
  );
  process.exit(2);
}
fs.mkdirSync(config.screenshots, { recursive: true });

// ---------------------------------------------------------------- report

const started = Date.now();
const summary = {
  ok: false,
  url: config.url,
  users: [A.username, B.username],
  template: config.template,
  playwright_core: PLAYWRIGHT_VERSION,
  screenshots: config.screenshots,
};
const { stages, screenshot, stage } = stageRunner({ dir: config.screenshots });

// ---------------------------------------------------------------- browser

// What one attendee's page saw: errors, the editor's requests, ws frames.
function watch(page, who) {
  const log = {
    who,
    page_errors: [],
    console_errors: [],
    requests: [],
    http_errors: [],
    external_requests: [],
    ws_urls: [],
    ws_frames: [],
  };
  page.on('pageerror', (error) => {
    log.page_errors.push(String(error.stack || error.message).slice(0, 2000));
  });
  page.on('console', (message) => {
    if (message.type() === 'error') log.console_errors.push(message.text().slice(0, 1000));
  });
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.origin !== origin && url.protocol !== 'data:' && url.protocol !== 'blob:') {
      log.external_requests.push(request.url());
    }
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.origin !== origin) return;
    const entry = { method: response.request().method(), path: url.pathname + url.search, status: response.status() };
    if (/^\/(api|internal|ws|extensions)(\/|$)/.test(url.pathname)) log.requests.push(entry);
    if (response.status() >= 400) log.http_errors.push(entry);
  });
  page.on('requestfailed', (request) => {
    const url = new URL(request.url());
    const failure = request.failure()?.errorText;
    // The editor aborts some loads itself (user.css); those already show
    // as responses above.
    if (url.origin === origin && failure !== 'net::ERR_ABORTED') {
      log.http_errors.push({ method: request.method(), path: url.pathname + url.search, failed: failure });
    }
  });
  page.on('websocket', (ws) => {
    log.ws_urls.push(ws.url());
    ws.on('framereceived', (frame) => {
      const text = typeof frame.payload === 'string' ? frame.payload : `<binary ${frame.payload.length} bytes>`;
      log.ws_frames.push(text.slice(0, 4000));
    });
  });
  return log;
}

// Requests to the host that the editor itself makes and that answer 404 on a
// real ComfyUI too (see the boot captures): not a host bug.
const EXPECTED_404 = [
  /^\/user\.css$/,
  /^\/api\/userdata\/user\.css$/,
  /^\/api\/userdata\/comfy\.templates\.json$/,
  /^\/api\/userdata\?dir=subgraphs/,
  /^\/api\/userdata\/workflows%2F\.index\.json$/,
  /^\/templates\//,
];

// Requests the test makes itself expecting a refusal (B reading A's data, A
// writing to a template): not errors of the editor.
const provoked = new Set();

function unexpectedHttpErrors(log) {
  return log.http_errors.filter(
    (e) => !provoked.has(e.path) && !(e.status === 404 && EXPECTED_404.some((re) => re.test(e.path))),
  );
}

async function openAttendee(browser, who, creds) {
  const context = await browser.newContext({
    httpCredentials: { username: creds.username, password: creds.password, origin },
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(config.timeout);
  const page = await context.newPage();
  const log = watch(page, who);
  return { context, page, log, name: creds.username };
}

// Loads the editor and waits until it is usable: the app and its canvas,
// the node catalogue from /api/object_info, the websocket open.
async function bootEditor(attendee) {
  const { page, log } = attendee;
  const t0 = Date.now();
  const objectInfo = page
    .waitForResponse((r) => new URL(r.url()).pathname === '/api/object_info', { timeout: config.timeout })
    .catch(() => null);
  const response = await page.goto(config.url, { waitUntil: 'domcontentloaded' });
  check(response, 'no response for the editor page');
  check(response.status() === 200, `GET / answered ${response.status()}, not the editor`, {
    status: response.status(),
    body: (await response.text()).slice(0, 500),
  });
  const info = await objectInfo;
  check(info, `the editor never requested /api/object_info within ${config.timeout} ms`, {
    page_errors: log.page_errors,
    http_errors: log.http_errors,
  });
  check(info.status() === 200, `GET /api/object_info answered ${info.status()}`, {
    body: (await info.text()).slice(0, 500),
  });
  try {
    await page.waitForFunction(
      () =>
        window.app?.graph &&
        window.app?.canvas &&
        Object.keys(window.LiteGraph?.registered_node_types ?? {}).length > 0,
      null,
      { timeout: config.timeout },
    );
  } catch {
    throw new StageError('the editor did not become ready (window.app, its canvas, registered node types)', {
      page_errors: log.page_errors,
      console_errors: log.console_errors.slice(-20),
      http_errors: log.http_errors,
    });
  }
  const appReadyMs = Date.now() - t0;
  try {
    await page.waitForFunction(() => window.app.api.socket?.readyState === 1, null, { timeout: config.timeout });
  } catch {
    throw new StageError('the editor websocket (/ws) never opened: no progress or results would reach it', {
      ws_urls: log.ws_urls,
      http_errors: log.http_errors,
    });
  }
  // Every event the editor's API client dispatches, from now on.
  await page.evaluate(() => {
    window.__e2e = { events: [] };
    const types = [
      'status',
      'progress',
      'progress_state',
      'execution_start',
      'execution_cached',
      'executing',
      'executed',
      'execution_success',
      'execution_error',
      'execution_interrupted',
    ];
    for (const type of types) {
      window.app.api.addEventListener(type, (event) => {
        window.__e2e.events.push({ type, t: Date.now(), detail: event.detail ?? null });
      });
    }
  });
  // The editor extensions the host lists (its queue-position badge) loaded.
  const listed = await pageFetch(page, '/api/extensions');
  check(listed.status === 200 && Array.isArray(listed.json), `GET /api/extensions answered ${listed.status}`, listed.body.slice(0, 500));
  const extensions = listed.json.map((p) => {
    const loaded = log.requests.find((r) => r.path === p);
    return { path: p, status: loaded?.status ?? null };
  });
  const broken = extensions.filter((e) => e.status !== 200);
  check(broken.length === 0, 'an editor extension the host lists did not load', broken);
  // A new user's first boot opens the templates browser; ComfyUI's own
  // templates are not served (the workshop's are in the workflow list).
  await page.waitForTimeout(1500);
  const dialogs = await visibleDialogs(page);
  await closeDialogs(page);
  return {
    app_ready_ms: appReadyMs,
    frontend_version: await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null),
    node_defs: await page.evaluate(() => Object.keys(window.LiteGraph.registered_node_types).length),
    ws_open: true,
    extensions: extensions.map((e) => e.path),
    dialogs_closed_at_boot: dialogs,
    page_errors: log.page_errors.length,
  };
}

async function closeSidebar(page) {
  // The open side panel (workflows, …) toggles shut on its own button.
  const active = page.locator('button.side-bar-button-selected');
  if ((await active.count()) > 0) await active.first().click().catch(() => {});
}

async function visibleDialogs(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[role=dialog]')]
      .filter((d) => d.offsetParent !== null || d.getClientRects().length > 0)
      .map((d) => d.innerText.trim().split('\n')[0].slice(0, 80)),
  );
}

async function closeDialogs(page) {
  for (let i = 0; i < 3; i++) {
    const close = page.locator('[role=dialog] button[aria-label="Close dialog"], [role=dialog] button[aria-label="Close"]');
    if ((await close.count()) === 0) {
      if ((await visibleDialogs(page)).length === 0) return;
      await page.keyboard.press('Escape');
    } else {
      await close.first().click();
    }
    await page.waitForTimeout(300);
  }
}

// fetch() from inside the attendee's page: the browser's own credentials,
// Origin and cookies, exactly as the editor sends them.
async function pageFetch(page, pathAndQuery, init = {}) {
  return page.evaluate(
    async ({ pathAndQuery, init }) => {
      const response = await fetch(pathAndQuery, init);
      const type = response.headers.get('content-type') ?? '';
      const body = await response.text();
      let json = null;
      try {
        json = JSON.parse(body);
      } catch {
        // Not JSON; the text is returned.
      }
      return { status: response.status, type, body: body.slice(0, 200000), json };
    },
    { pathAndQuery, init },
  );
}

// The predicate runs here in Node, not in the page: the editor's CSP has no
// 'unsafe-eval', so `new Function` inside the page is refused (as it should
// be); the page only hands over the events it recorded.
async function waitForEvent(page, predicateSource, arg) {
  const predicate = new Function('e', 'arg', `return (${predicateSource});`);
  const deadline = Date.now() + config.timeout;
  let seen = 0;
  for (;;) {
    const fresh = await page.evaluate((from) => window.__e2e.events.slice(from), seen);
    const found = fresh.find((e) => predicate(e, arg));
    if (found) return found;
    seen += fresh.length;
    if (Date.now() > deadline) throw new Error(`no event matching ${predicateSource} within ${config.timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---------------------------------------------------------------- stages

const LIST_WORKFLOWS = '/api/userdata?dir=workflows&recurse=true&split=false&full_info=true';

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
      // Nothing but the host is reachable: every other name fails to resolve
      // (the editor asks api.comfy.org for release notes, for instance).
      `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE ${base.hostname} , EXCLUDE localhost`,
    ],
  });
  summary.chromium = browser.version();
  let a;
  let b;
  const run = {};
  try {
    a = await openAttendee(browser, 'A', A);
    b = await openAttendee(browser, 'B', B);

    await stage('a_boot', () => a.page, async () => {
      const anonymous = await fetch(config.url, { redirect: 'manual' });
      check(anonymous.status === 401, `GET / without a login answered ${anonymous.status}, not 401`);
      const seen = await bootEditor(a);
      check(a.log.page_errors.length === 0, 'page errors while the editor booted', a.log.page_errors);
      seen.without_login = anonymous.status;
      seen.screenshot = await screenshot(a.page, 'a-editor-booted');
      return seen;
    });

    await stage('b_boot', () => b.page, async () => {
      const seen = await bootEditor(b);
      check(b.log.page_errors.length === 0, 'page errors while the editor booted', b.log.page_errors);
      seen.screenshot = await screenshot(b.page, 'b-editor-booted');
      return seen;
    });

    await stage('a_open_template', () => a.page, async () => {
      const file = `workshop/${config.template}.json`;
      const list = await pageFetch(a.page, LIST_WORKFLOWS);
      check(list.status === 200 && Array.isArray(list.json), `GET ${LIST_WORKFLOWS} answered ${list.status}`, list.body.slice(0, 500));
      const paths = list.json.map((entry) => (typeof entry === 'string' ? entry : entry.path));
      check(paths.includes(file), `the workflow list has no ${file}`, paths);
      const template = await pageFetch(a.page, `/api/userdata/${encodeURIComponent(`workflows/${file}`)}`);
      check(template.status === 200 && template.json?.nodes, `GET the template answered ${template.status}`, template.body.slice(0, 500));
      run.templateText = template.body;

      // The real UI path: the workflows sidebar, the workshop folder, the file.
      let loadedVia = 'workflows sidebar';
      try {
        await a.page.getByTestId('workflows-tab-button').click();
        const item = a.page.getByTestId(`tree-node-root/${file}`);
        if (!(await item.isVisible())) {
          await a.page.getByTestId('tree-node-root/workshop').click();
        }
        await item.click({ timeout: 10000 });
        await a.page.waitForFunction(
          (wanted) => window.app.extensionManager?.workflow?.activeWorkflow?.path === wanted,
          `workflows/${file}`,
          { timeout: 15000 },
        );
      } catch (error) {
        loadedVia = `app.loadGraphData (the sidebar failed: ${error.message.split('\n')[0]})`;
        await a.page.evaluate(
          async ({ json, name }) => window.app.loadGraphData(JSON.parse(json), true, true, name),
          { json: template.body, name: config.template },
        );
      }
      await a.page.waitForTimeout(1000);
      const graph = await a.page.evaluate(() => ({
        nodes: window.app.graph.nodes.length,
        save_nodes: window.app.graph.nodes.filter((n) => n.type === 'SaveImage').map((n) => String(n.id)),
        active: window.app.extensionManager?.workflow?.activeWorkflow?.path ?? null,
      }));
      check(graph.nodes > 0, 'the template loaded no nodes', graph);
      check(graph.save_nodes.length > 0, 'the template has no SaveImage node', graph);
      // The editor may warn about models the catalogue does not list.
      const banner = await a.page.getByText(/\d+ issues? found/).first().textContent({ timeout: 500 }).catch(() => null);
      const dialogs = await visibleDialogs(a.page);
      await closeDialogs(a.page);
      return {
        file,
        loaded_via: loadedVia,
        ...graph,
        issues_banner: banner,
        dialogs_closed: dialogs,
        screenshot: await screenshot(a.page, 'a-template-loaded'),
      };
    });

    await stage('a_save_workflow', () => a.page, async () => {
      // What the editor's own save does: its API client's storeUserData,
      // POST /api/userdata/workflows%2F<name>?overwrite=true.
      const saved = await a.page.evaluate(async (name) => {
        const workflow = window.app.graph.serialize();
        workflow.extra = { ...(workflow.extra ?? {}), e2e_owner: 'attendee A' };
        const response = await window.app.api.storeUserData(`workflows/${name}`, workflow, {
          overwrite: true,
          stringify: true,
          throwOnError: false,
        });
        return { status: response.status, body: (await response.text()).slice(0, 500) };
      }, config.savedName);
      check(saved.status === 200, `saving workflows/${config.savedName} answered ${saved.status}`, saved.body);
      const list = await pageFetch(a.page, LIST_WORKFLOWS);
      const paths = (list.json ?? []).map((entry) => (typeof entry === 'string' ? entry : entry.path));
      check(paths.includes(config.savedName), `A's own list lacks ${config.savedName} after saving it`, paths);
      // The template is read-only: writing to its path must not change what
      // anyone else reads there (checked by B below).
      const templatePath = `/api/userdata/${encodeURIComponent(`workflows/workshop/${config.template}.json`)}?overwrite=true`;
      provoked.add(templatePath);
      const overwrite = await pageFetch(a.page, templatePath, {
        method: 'POST',
        body: '{"overwritten_by":"attendee A"}',
      });
      run.templateOverwriteStatus = overwrite.status;
      // Show it in the sidebar (refresh the list).
      await a.page
        .locator('button[aria-label*="Refresh" i], button:has(i[class*="refresh"])')
        .first()
        .click({ timeout: 2000 })
        .catch(() => {});
      await a.page.waitForTimeout(500);
      return {
        saved: `workflows/${config.savedName}`,
        status: saved.status,
        template_overwrite_status: overwrite.status,
        screenshot: await screenshot(a.page, 'a-workflow-saved'),
      };
    });

    await stage('a_run', () => a.page, async () => {
      const startIndex = await a.page.evaluate(() => window.__e2e.events.length);
      const posted = a.page
        .waitForResponse((r) => new URL(r.url()).pathname === '/api/prompt' && r.request().method() === 'POST', {
          timeout: 15000,
        })
        .catch(() => null);
      let runVia = 'the Run button';
      await a.page.getByTestId('queue-button').click();
      let response = await posted;
      if (!response) {
        runVia = 'app.queuePrompt(0) (the Run button posted nothing within 15 s)';
        const again = a.page.waitForResponse(
          (r) => new URL(r.url()).pathname === '/api/prompt' && r.request().method() === 'POST',
          { timeout: 15000 },
        );
        await a.page.evaluate(() => window.app.queuePrompt(0));
        response = await again;
      }
      const body = await response.text();
      let answer = null;
      try {
        answer = JSON.parse(body);
      } catch {
        // Reported below.
      }
      check(response.status() === 200 && answer?.prompt_id, `POST /api/prompt answered ${response.status()}`, body.slice(0, 4000));
      const request = JSON.parse(response.request().postData() ?? '{}');
      const pid = answer.prompt_id;
      run.promptId = pid;

      // Progress: the first progress or progress_state for this prompt.
      let progressShot = null;
      try {
        await waitForEvent(
          a.page,
          "(e.type === 'progress' || e.type === 'progress_state') && e.detail?.prompt_id === arg",
          pid,
        );
        progressShot = await screenshot(a.page, 'a-progress');
      } catch {
        // Checked below with the full event list.
      }
      try {
        await waitForEvent(
          a.page,
          "(e.type === 'execution_success' || e.type === 'execution_error' || e.type === 'execution_interrupted') && e.detail?.prompt_id === arg",
          pid,
        );
      } catch {
        // Reported below.
      }
      const events = await a.page.evaluate((i) => window.__e2e.events.slice(i), startIndex);
      const mine = events.filter((e) => JSON.stringify(e.detail ?? '').includes(pid));
      const end = mine.find((e) => e.type.startsWith('execution_') && e.type !== 'execution_start' && e.type !== 'execution_cached');
      const order = mine.map((e) => e.type);
      check(end, `no execution_success for ${pid} within ${config.timeout} ms`, { events: order });
      check(end.type === 'execution_success', `the job ended with ${end.type}`, end.detail);
      const progress = mine.filter((e) => e.type === 'progress');
      const progressState = mine.filter((e) => e.type === 'progress_state');
      check(progress.length + progressState.length > 0, 'no progress or progress_state event for the job', { events: order });
      const executed = mine.filter((e) => e.type === 'executed');
      check(executed.length > 0, 'no executed event (no output) for the job', { events: order });
      const images = executed.flatMap((e) => e.detail?.output?.images ?? []);
      check(images.length > 0, 'the executed events carry no images', executed.map((e) => e.detail));
      run.image = images[0];
      run.outputNode = String(executed.find((e) => e.detail?.output?.images?.length)?.detail?.node);
      const last = progress.at(-1)?.detail;
      return {
        run_via: runVia,
        prompt_id: pid,
        prompt_nodes: Object.keys(request.prompt ?? {}).length,
        client_id: request.client_id ?? null,
        progress_events: progress.length,
        progress_state_events: progressState.length,
        last_progress: last ? `${last.value}/${last.max} on node ${last.node}` : null,
        events: order.filter((t, i) => t !== order[i - 1]),
        output: images[0],
        progress_screenshot: progressShot,
      };
    });

    await stage('a_output', () => a.page, async () => {
      const { filename } = run.image;
      // The output on the canvas: the node's output in the editor's store,
      // then, with the node centred at 100 % (the canvas loads a node's
      // images only when it draws it), the image loaded into the node.
      await a.page
        .waitForFunction(
          (filename) =>
            Object.values(window.app.nodeOutputs ?? {}).some((o) =>
              (o?.images ?? []).some((i) => i.filename === filename),
            ),
          filename,
          { timeout: config.timeout },
        )
        .catch(async () => {
          const outputs = await a.page.evaluate(() => JSON.stringify(window.app.nodeOutputs ?? null).slice(0, 2000));
          throw new StageError(`the editor holds no output ${filename}`, { nodeOutputs: outputs });
        });
      await closeSidebar(a.page);
      await a.page.evaluate((node) => {
        const canvas = window.app.canvas;
        const n = window.app.graph.getNodeById(Number(node)) ?? window.app.graph.getNodeById(node);
        canvas.ds.scale = 1;
        canvas.centerOnNode(n);
        canvas.selectNode?.(n);
        canvas.setDirty(true, true);
      }, run.outputNode);
      await a.page
        .waitForFunction(
          ({ node, filename }) =>
            (window.app.graph.getNodeById(Number(node)) ?? window.app.graph.getNodeById(node))?.imgs?.some(
              (img) => img.complete && img.naturalWidth > 0 && img.src.includes(encodeURIComponent(filename)),
            ),
          { node: run.outputNode, filename },
          { timeout: config.timeout },
        )
        .catch(async () => {
          const imgs = await a.page.evaluate(
            (node) =>
              (window.app.graph.getNodeById(Number(node))?.imgs ?? []).map((i) => [i.src, i.complete, i.naturalWidth]),
            run.outputNode,
          );
          throw new StageError(`the output ${filename} is not drawn on node ${run.outputNode}`, { imgs });
        });
      const domImages = await a.page.evaluate(() =>
        [...document.querySelectorAll('img')].map((img) => img.getAttribute('src') ?? '').filter((src) => src.includes('/api/view?filename=')),
      );
      const viewPath = `/api/view?filename=${encodeURIComponent(filename)}&subfolder=${encodeURIComponent(run.image.subfolder ?? '')}&type=${encodeURIComponent(run.image.type ?? 'output')}`;
      run.viewPath = viewPath;
      const own = await a.page.evaluate(async (p) => {
        const r = await fetch(p);
        const bytes = new Uint8Array(await r.arrayBuffer());
        return { status: r.status, type: r.headers.get('content-type'), length: bytes.length, png: bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47 };
      }, viewPath);
      check(own.status === 200, `A's own GET ${viewPath} answered ${own.status}`, own);
      await a.page.waitForTimeout(500);
      return {
        output_node: run.outputNode,
        node_image_loaded: true,
        dom_view_images: domImages.length,
        own_view: own,
        screenshot: await screenshot(a.page, 'a-output-on-canvas'),
      };
    });

    await stage('a_queue_panel', () => a.page, async () => {
      const list = a.page.getByTestId('job-assets-list');
      if (!(await list.isVisible())) {
        await a.page.getByTestId('queue-overlay-toggle').click();
      }
      const row = list.locator(`[data-job-id="${run.promptId}"]`);
      await row.waitFor({ state: 'visible', timeout: config.timeout }).catch(async () => {
        const ids = await a.page.evaluate(() => [...document.querySelectorAll('[data-job-id]')].map((e) => e.dataset.jobId));
        throw new StageError(`the queue panel has no row for ${run.promptId}`, { rows: ids });
      });
      const thumb = await row.locator('img').first().getAttribute('src').catch(() => null);
      check(thumb?.includes(`filename=${encodeURIComponent(run.image.filename)}`), 'the job row shows no thumbnail of the output', { thumb });
      const jobs = await pageFetch(a.page, '/api/jobs?status=completed,failed,cancelled&limit=64&offset=0');
      const job = (jobs.json?.jobs ?? []).find((j) => j.id === run.promptId);
      check(job, `A's GET /api/jobs lacks ${run.promptId}`, jobs.body.slice(0, 2000));
      const history = await pageFetch(a.page, `/api/history/${run.promptId}`);
      check(history.status === 200 && history.json?.[run.promptId], `A's GET /api/history/${run.promptId} answered ${history.status}`, history.body.slice(0, 2000));
      return {
        row: run.promptId,
        thumbnail: thumb,
        job_status: job.status,
        job_fields: Object.keys(job),
        screenshot: await screenshot(a.page, 'a-queue-panel'),
      };
    });

    await stage('b_isolation', () => b.page, async () => {
      const pid = run.promptId;
      const { filename } = run.image;
      const leaks = [];
      const answers = {};
      const jsonRoutes = [
        '/api/jobs',
        '/api/jobs?status=in_progress,pending&limit=200&offset=0',
        '/api/jobs?status=completed,failed,cancelled&limit=64&offset=0',
        '/api/history',
        '/api/history?max_items=64',
        '/api/queue',
        LIST_WORKFLOWS,
      ];
      for (const route of jsonRoutes) {
        const r = await pageFetch(b.page, route);
        answers[route] = r.status;
        check(r.status === 200, `B's GET ${route} answered ${r.status}`, r.body.slice(0, 1000));
        if (r.body.includes(pid)) leaks.push(`${route} mentions A's prompt ${pid}`);
        if (r.body.includes(filename)) leaks.push(`${route} mentions A's output ${filename}`);
        if (r.body.includes(config.savedName)) leaks.push(`${route} lists A's workflow ${config.savedName}`);
      }
      const list = await pageFetch(b.page, LIST_WORKFLOWS);
      const paths = (list.json ?? []).map((entry) => (typeof entry === 'string' ? entry : entry.path));
      check(paths.includes(`workshop/${config.template}.json`), 'B does not see the workshop template', paths);
      const mustMiss = {
        [`/api/history/${pid}`]: [200, 404],
        [`/api/jobs/${pid}`]: [404],
        [`/api/userdata/${encodeURIComponent(`workflows/${config.savedName}`)}`]: [404],
        [run.viewPath]: [404],
      };
      for (const [route, allowed] of Object.entries(mustMiss)) {
        provoked.add(route);
        const r = await pageFetch(b.page, route);
        answers[route] = r.status;
        if (!allowed.includes(r.status)) leaks.push(`B's GET ${route} answered ${r.status}`);
        if (r.status === 200 && (r.body.includes(pid) || r.body.includes('attendee A'))) leaks.push(`B's GET ${route} returned A's data`);
      }
      // The template is shared and read-only: A's write did not change it.
      const template = await pageFetch(b.page, `/api/userdata/${encodeURIComponent(`workflows/workshop/${config.template}.json`)}`);
      if (template.body !== run.templateText) leaks.push("B reads a different template after A's write to its path");
      // Nothing of A's run reached B's websocket.
      const wsLeaks = b.log.ws_frames.filter((f) => f.includes(pid) || f.includes(filename));
      if (wsLeaks.length) leaks.push(`B's websocket got ${wsLeaks.length} frames about A's job`);
      // B's own queue panel: empty of A's job.
      const panel = b.page.getByTestId('job-assets-list');
      if (!(await panel.isVisible())) await b.page.getByTestId('queue-overlay-toggle').click();
      await b.page.waitForTimeout(1000);
      const rows = await b.page.evaluate(() => [...document.querySelectorAll('[data-job-id]')].map((e) => e.dataset.jobId));
      if (rows.includes(pid)) leaks.push("B's queue panel shows A's job");
      await b.page.getByTestId('workflows-tab-button').click().catch(() => {});
      await b.page.getByTestId('tree-node-root/workshop').click({ timeout: 3000 }).catch(() => {});
      await b.page.waitForTimeout(500);
      const mineInSidebar = await b.page.getByTestId(`tree-node-root/${config.savedName}`).count();
      if (mineInSidebar) leaks.push(`B's workflows sidebar lists ${config.savedName}`);
      const screenshotFile = await screenshot(b.page, 'b-sees-nothing-of-a');
      check(leaks.length === 0, `B sees A's data: ${leaks.join('; ')}`, { leaks, answers, ws: wsLeaks.slice(0, 3) });
      return {
        answers,
        b_ws_frames: b.log.ws_frames.length,
        b_queue_rows: rows.length,
        template_overwrite_status: run.templateOverwriteStatus,
        screenshot: screenshotFile,
      };
    });

    await stage('no_page_errors', () => a.page, async () => {
      const errors = [...a.log.page_errors, ...b.log.page_errors];
      check(errors.length === 0, 'uncaught errors in the editor', errors);
      const http5xx = [...a.log.http_errors, ...b.log.http_errors].filter((e) => e.status >= 500 || e.failed);
      check(http5xx.length === 0, 'the host answered the editor with 5xx or broken responses', http5xx);
      const external = [...a.log.external_requests, ...b.log.external_requests].filter((u) => !/^(data|blob):/.test(u));
      return { external_requests_refused: [...new Set(external)].map((u) => new URL(u).host) };
    });
    summary.ok = true;
  } catch (error) {
    summary.error = error.message;
    if (!(error instanceof StageError)) summary.stack = String(error.stack).slice(0, 2000);
  } finally {
    summary.prompt_id = run.promptId ?? null;
    summary.output = run.image ?? null;
    for (const attendee of [a, b]) {
      if (!attendee) continue;
      const file = path.join(config.screenshots, `requests-${attendee.log.who.toLowerCase()}.json`);
      fs.writeFileSync(file, JSON.stringify(attendee.log, null, 1));
      summary[`${attendee.log.who.toLowerCase()}_diagnostics`] = {
        page_errors: attendee.log.page_errors,
        console_errors: attendee.log.console_errors.length,
        unexpected_http_errors: unexpectedHttpErrors(attendee.log),
        external_requests_refused: attendee.log.external_requests.length,
        requests_file: file,
      };
    }
    await browser.close().catch(() => {});
  }
}

try {
  await main();
} catch (error) {
  summary.ok = false;
  summary.error = `${error.message}`;
  summary.stack = String(error.stack).slice(0, 2000);
}
summary.stages = stages.map((s) => ({ stage: s.stage, ok: s.ok, ms: s.ms }));
summary.failed_stage = stages.find((s) => !s.ok)?.stage ?? null;
summary.total_ms = Date.now() - started;
console.log(JSON.stringify({ summary }));
if (!summary.ok) console.error(`e2e FAILED: ${summary.error}`);
process.exit(summary.ok ? 0 : 1);
