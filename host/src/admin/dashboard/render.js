// Drawing the dashboard's panels from a snapshot. Every value is written as
// text (never as HTML): attendee names and plugin messages are untrusted.
// Buttons carry `data-action`; app.js handles their clicks for the whole
// page. The queue, attendee and pool tables are updated in place, keyed by
// job id, attendee and pool name (`morphChildren`, see dom.js), so a
// control the pointer is on or that has focus is never re-created.

import { h, morphChildren } from './dom.js';

export { h };
export const PRIORITIES = ['instructor', 'high', 'normal', 'low'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'dead']);
const RETRYABLE = new Set(['failed', 'cancelled', 'dead']);

export function fmtSeconds(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export function fmtValue(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

function table(headings, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'dim', dataset: { key: 'empty' } }, empty);
  return h(
    'table',
    { dataset: { key: 'table' } },
    h('thead', {}, h('tr', {}, headings.map((t) => h('th', {}, t)))),
    h('tbody', {}, rows),
  );
}

// Updates `el` in place to show `children` (see dom.js).
function show(el, ...children) {
  morphChildren(el, h('div', {}, children));
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind ?? text}` }, text);
}

// ------------------------------------------------------------------ queue

// How long the job waited for a GPU and how long it ran, kept apart: a
// job that took 13 s may have waited 12 of them.
function timeText(job, nowMs) {
  const created = job.created_at_ms ?? nowMs;
  const now = Math.max(nowMs, created);
  const terminal = TERMINAL.has(job.state);
  const end = terminal ? Math.max(job.updated_at_ms ?? now, created) : now;
  const started = job.started_at_ms;
  if (started == null) {
    return terminal ? `waited ${fmtSeconds((end - created) / 1000)}, never ran` : `waiting ${fmtSeconds((now - created) / 1000)}`;
  }
  const waited = `waited ${fmtSeconds((started - created) / 1000)}`;
  return terminal ? `${waited} · ran ${fmtSeconds((end - started) / 1000)}` : `${waited} · running ${fmtSeconds((now - started) / 1000)}`;
}

function progressCell(job) {
  const p = job.progress;
  if (!p || !p.max) return job.state === 'succeeded' ? 'done' : '–';
  return h('span', { class: 'progress' }, h('progress', { max: p.max, value: p.value }), ` ${p.value}/${p.max}`);
}

function jobActions(job) {
  const id = String(job.id);
  const cells = [];
  if (!TERMINAL.has(job.state)) {
    cells.push(
      h(
        'button',
        { type: 'button', dataset: { key: 'cancel', action: 'cancel', job: id, test: 'job-cancel' }, disabled: job.cancel_requested },
        job.cancel_requested ? 'Cancelling…' : 'Cancel',
      ),
    );
  }
  if (job.state === 'queued') {
    const select = h(
      'select',
      { dataset: { key: 'priority', action: 'priority', job: id, test: 'job-priority' }, title: 'Priority class (instructor goes first)' },
      PRIORITIES.map((name) => h('option', { value: name, selected: name === job.priority }, name)),
    );
    cells.push(select);
  }
  if (RETRYABLE.has(job.state)) {
    cells.push(h('button', { type: 'button', dataset: { key: 'retry', action: 'retry', job: id, test: 'job-retry' } }, 'Retry'));
  }
  return h('td', { class: 'actions' }, cells);
}

function jobRow(job, now) {
  return h(
    'tr',
    { dataset: { key: `job:${job.id}`, test: 'job-row', jobId: String(job.id), state: job.state, user: job.user } },
    h('td', {}, `#${job.id}`),
    h('td', { dataset: { test: 'job-state' } }, badge(job.cancel_requested && !TERMINAL.has(job.state) ? `${job.state} (cancel asked)` : job.state, job.state)),
    h('td', {}, job.workflow_kind || '–'),
    h('td', {}, job.pool ?? '–'),
    h('td', {}, job.priority),
    h('td', {}, progressCell(job)),
    h('td', { dataset: { test: 'job-time' } }, timeText(job, now)),
    h('td', {}, String(job.attempts ?? 0)),
    h('td', { class: 'reason' }, job.reason ?? ''),
    jobActions(job),
  );
}

// Waiting and running jobs oldest first (the order they queued, so a new
// job is added below and the rows above it stay put), then finished jobs
// newest first.
function queueOrder(a, b) {
  const doneA = TERMINAL.has(a.state);
  const doneB = TERMINAL.has(b.state);
  if (doneA !== doneB) return doneA ? 1 : -1;
  return doneA ? b.id - a.id : a.id - b.id;
}

// `holding`: the pointer is over the queue, so rows that would leave it
// (finished jobs while those are hidden) stay, updated, until it leaves.
export function renderQueue(el, jobs, now, showFinished, holding) {
  const all = jobs ?? [];
  const onPage = new Set([...el.querySelectorAll('[data-test=job-row]')].map((row) => row.dataset.jobId));
  const shown = all.filter((j) => showFinished || !TERMINAL.has(j.state) || (holding && onPage.has(String(j.id))));
  const byUser = new Map();
  for (const job of shown) {
    if (!byUser.has(job.user)) byUser.set(job.user, []);
    byUser.get(job.user).push(job);
  }
  const active = (list) => list.filter((j) => !TERMINAL.has(j.state)).length;
  // By name, so a group never jumps over another as its counts change.
  const users = [...byUser.keys()].sort((a, b) => a.localeCompare(b));
  const groups = users.map((user) => {
    const list = byUser.get(user).sort(queueOrder);
    return h(
      'div',
      { class: 'group', dataset: { key: `user:${user}`, test: 'queue-user', user } },
      h('h3', {}, user, ' ', h('span', { class: 'dim' }, `${active(list)} active, ${list.length} shown`)),
      table(
        ['job', 'state', 'kind', 'pool', 'priority', 'progress', 'time', 'attempts', 'reason', ''],
        list.map((job) => jobRow(job, now)),
        '',
      ),
    );
  });
  show(el, groups.length ? groups : h('p', { class: 'dim', dataset: { key: 'empty' } }, showFinished ? 'No jobs yet.' : 'Nothing waiting or running.'));
  const waiting = all.filter((j) => j.state === 'queued').length;
  const running = all.filter((j) => !TERMINAL.has(j.state) && j.state !== 'queued').length;
  return `${waiting} waiting, ${running} on GPUs`;
}

// -------------------------------------------------------- attendees, pools

// Admin accounts are changed with `comfyume user` only (the API refuses
// them), so their rows have no buttons.
function attendeeActions(a) {
  if (a.role === 'admin') return h('td', { class: 'actions wrap' });
  return h(
    'td',
    { class: 'actions wrap' },
    h(
      'button',
      {
        type: 'button',
        dataset: { key: 'disable', action: 'attendee-disable', name: a.name, to: a.disabled ? 'enable' : 'disable', test: 'attendee-disable' },
        title: a.disabled ? 'Let this account log in again' : 'Stop this account logging in (its queued jobs stay queued)',
      },
      a.disabled ? 'Enable' : 'Disable',
    ),
    h(
      'button',
      { type: 'button', dataset: { key: 'password', action: 'attendee-password', name: a.name, test: 'attendee-reset' }, title: 'A new generated password, shown once' },
      'New password',
    ),
  );
}

export function renderAttendees(el, attendees) {
  const rows = (attendees ?? []).map((a) =>
    h(
      'tr',
      { dataset: { key: `user:${a.name}`, test: 'attendee-row', name: a.name, disabled: a.disabled ? 'yes' : 'no' }, class: a.disabled ? 'disabled' : '' },
      h('td', {}, a.name),
      h('td', {}, a.role),
      h('td', { dataset: { test: 'attendee-status' } }, a.disabled ? badge('disabled', 'failed') : ''),
      h('td', { dataset: { test: 'attendee-connected' } }, String(a.connected ?? 0)),
      h('td', { dataset: { test: 'attendee-pending' } }, String(a.pending ?? 0)),
      h('td', { dataset: { test: 'attendee-running' } }, String(a.running ?? 0)),
      h('td', {}, String(a.done ?? 0)),
      h('td', {}, fmtValue(a.gpu_seconds ?? 0)),
      attendeeActions(a),
    ),
  );
  show(el, table(['name', 'role', '', 'sockets', 'pending', 'running', 'done', 'GPU s', ''], rows, 'No logins.'));
}

// New passwords, shown once (the host keeps only their hashes): a list the
// operator copies, then hides.
export function renderPasswords(el, accounts, what) {
  const rows = accounts.map((a) =>
    h('tr', { dataset: { test: 'password-row', name: a.name } }, h('td', {}, a.name), h('td', { class: 'hash', dataset: { test: 'password' } }, a.password)),
  );
  el.replaceChildren(
    h('p', { class: 'ok-text' }, `${what}. Copy the passwords now: they are shown only this once.`),
    table(['name', 'password'], rows, ''),
    h('button', { type: 'button', dataset: { action: 'passwords-hide', test: 'passwords-hide' } }, 'I have copied them: hide'),
  );
  el.hidden = false;
}

export function renderPools(el, pools) {
  const rows = (pools ?? []).map((p) =>
    h(
      'tr',
      { dataset: { key: `pool:${p.name}`, test: 'pool-row', name: p.name } },
      h('td', {}, p.name),
      h('td', {}, p.gpu),
      h('td', {}, badge(p.warm ? 'warm' : 'cold')),
      h('td', {}, `${p.in_flight ?? 0}/${p.capacity ?? 0}`),
      h('td', {}, String(p.recent_failures ?? 0)),
      h('td', {}, p.spot ? 'spot' : 'on-demand'),
      h('td', {}, p.price_per_hour ? `${fmtValue(p.price_per_hour)}/h` : '–'),
      h(
        'td',
        { class: 'actions wrap' },
        p.in_use === false ? badge('out of use', 'cancelled') : null,
        h(
          'button',
          {
            type: 'button',
            dataset: { key: 'prewarm', action: 'prewarm', name: p.name, kind: p.kind ?? '', warm: p.prewarmed ? 'yes' : 'no', test: 'pool-prewarm' },
            title: p.kind === 'verda' ? 'Raise the minimum replicas (released at close)' : 'Run a one-step warm-up job now',
          },
          p.kind === 'verda' ? (p.prewarmed ? 'Release pre-warm' : 'Pre-warm') : 'Warm up',
        ),
        h(
          'button',
          { type: 'button', dataset: { key: 'switch', action: 'pool', name: p.name, use: p.in_use === false ? 'yes' : 'no', test: 'pool-switch' } },
          p.in_use === false ? 'Put in use' : 'Take out of use',
        ),
      ),
    ),
  );
  show(el, table(['pool', 'GPU', '', 'in flight', 'failures', 'tier', 'price', ''], rows, 'No pools.'));
}

// ---------------------------------------------------------------- plugins

const SLOT_FIELDS = new Set(['slot', 'active', 'active_hash', 'history', 'recent_failures', 'total_failures', 'last_error', 'disabled', 'disabled_version']);

const versionText = (v) => `${v.label} (${v.hash.slice(0, 12)})`;

function keyValues(object, skip = new Set()) {
  return Object.entries(object ?? {})
    .filter(([key]) => !skip.has(key))
    .map(([key, value]) => h('div', { class: 'kv' }, h('span', { class: 'dim' }, `${key}: `), fmtValue(value)));
}

export function renderSlots(el, plugins) {
  const cards = (plugins?.slots ?? []).map((s) =>
    h(
      'div',
      { class: `slot${s.disabled ? ' disabled' : ''}`, dataset: { test: 'slot', slot: s.slot } },
      h('h3', {}, s.slot),
      h('div', {}, 'active: ', h('strong', { dataset: { test: 'slot-active' } }, s.active ?? 'none')),
      s.active_hash ? h('div', { class: 'dim hash' }, s.active_hash.slice(0, 16)) : null,
      h('div', { dataset: { test: 'slot-history' } }, 'earlier: ', s.history?.length ? s.history.map(versionText).join(', ') : h('span', { class: 'dim' }, 'none')),
      s.disabled_version ? h('div', { class: 'dim' }, `disabled version: ${versionText(s.disabled_version)}`) : null,
      h('div', {}, `failures: ${s.recent_failures ?? 0} recent, ${s.total_failures ?? 0} since activated`),
      s.last_error ? h('div', { class: 'error-text', dataset: { test: 'slot-last-error' } }, `last error: ${s.last_error}`) : null,
      s.disabled ? h('div', { class: 'error-text', dataset: { test: 'slot-disabled' } }, `disabled: ${s.disabled}`) : null,
      keyValues(s, SLOT_FIELDS),
      h(
        'button',
        { type: 'button', dataset: { action: 'rollback', slot: s.slot, test: 'rollback' }, disabled: !s.history?.length },
        'Roll back',
      ),
      s.slot.startsWith('validator:')
        ? h('button', { type: 'button', dataset: { action: 'remove-slot', slot: s.slot, test: 'remove-slot' } }, 'Remove slot')
        : null,
    ),
  );
  const policy = plugins?.validators;
  const arranged = policy
    ? h(
        'p',
        { class: 'dim', dataset: { test: 'validator-policy' } },
        `Validators are asked in this order: ${policy.order.join(', ') || 'none'}. ` +
          `A disabled validator is ${policy.disabled === 'refuse' ? 'treated as refusing prompts no other validator claims' : 'passed over'}; ` +
          `a prompt no validator claims is ${policy.unclaimed === 'refuse' ? 'refused' : 'accepted as "other"'}.`,
      )
    : null;
  const versions = (plugins?.versions ?? []).map((v) =>
    h(
      'tr',
      {},
      h('td', {}, v.kind),
      h('td', {}, v.label, v.builtin ? h('span', { class: 'dim' }, ' (built-in)') : null),
      h('td', { class: 'dim hash' }, v.hash.slice(0, 16)),
      h('td', {}, h('button', { type: 'button', dataset: { action: 'activate', hash: v.hash, label: v.label, test: 'activate-version' } }, 'Activate')),
    ),
  );
  el.replaceChildren(
    ...cards,
    arranged ?? '',
    versions.length ? h('details', { dataset: { test: 'versions' } }, h('summary', {}, `Stored versions (${versions.length})`), table(['kind', 'version', 'hash', ''], versions, '')) : '',
  );
}

export function renderShadow(el, plugins) {
  const shadow = plugins?.shadow;
  // No candidate running: nothing to show (the label names the candidate).
  if (!shadow || (typeof shadow === 'object' && 'label' in shadow && shadow.label == null)) {
    el.replaceChildren();
    return;
  }
  const share = shadow.decisions ? Math.round((100 * shadow.agreed) / shadow.decisions) : 0;
  const recent = (shadow.recent ?? [])
    .slice(-5)
    .reverse()
    .map((d) => h('tr', {}, h('td', {}, new Date(d.at_ms).toLocaleTimeString()), h('td', {}, d.active_job == null ? '–' : `#${d.active_job}`), h('td', {}, d.shadow_job == null ? '–' : `#${d.shadow_job}`), h('td', {}, String(d.pending))));
  el.replaceChildren(
    h(
      'div',
      { class: 'slot' },
      h('h3', {}, `Shadow scheduler: ${shadow.label}`),
      h(
        'p',
        { dataset: { test: 'shadow-counts' } },
        `${shadow.decisions} live decisions · ${shadow.agreed} agreed (${share} %) · ${shadow.disagreed} disagreed · ${shadow.failed} failed`,
      ),
      shadow.last_error ? h('p', { class: 'error-text' }, `last error: ${shadow.last_error}`) : null,
      recent.length ? table(['when', 'ran', 'shadow would run', 'waiting'], recent, '') : null,
      h('button', { type: 'button', dataset: { action: 'shadow-stop', test: 'shadow-stop' } }, 'Stop shadow run'),
    ),
  );
}

export function renderReport(el, outcome) {
  const { status, body, error } = outcome;
  const report = body?.report;
  const passed = status === 201;
  el.dataset.state = passed ? 'passed' : 'refused';
  el.dataset.hash = passed ? body.hash : '';
  const head = passed
    ? h('p', { class: 'ok-text' }, `${body.label} (${body.kind}, ${body.size} bytes) passed the check; activate it below.`)
    : h('p', { class: 'error-text', dataset: { test: 'upload-error' } }, `Refused: ${error}`);
  const fixtures = (report?.fixtures ?? []).map((f) =>
    h('tr', { class: f.ok ? '' : 'failed' }, h('td', {}, f.ok ? '✓' : '✗'), h('td', {}, f.fixture), h('td', { class: 'reason' }, f.detail)),
  );
  const describe = report?.plugin
    ? h('p', { class: 'dim' }, `${report.plugin.name}@${report.plugin.version} · ${report.world} · ${report.plugin.summary ?? ''}`)
    : null;
  el.replaceChildren(head, describe, fixtures.length ? table(['', 'fixture', 'detail'], fixtures, '') : null);
}

export function renderUploads(el, uploads, plugins) {
  if (uploads.length === 0) return;
  const active = new Set((plugins?.slots ?? []).map((s) => s.active_hash).filter(Boolean));
  const rows = uploads.map((u) =>
    h(
      'tr',
      { dataset: { test: 'upload-row', hash: u.hash } },
      h('td', {}, u.label),
      h('td', {}, u.kind),
      h('td', { class: 'hash' }, u.hash.slice(0, 16)),
      h('td', {}, active.has(u.hash) ? badge('active', 'running') : ''),
      h(
        'td',
        { class: 'actions' },
        h('button', { type: 'button', dataset: { action: 'activate', hash: u.hash, test: 'activate' } }, 'Activate'),
        u.kind === 'scheduler'
          ? h('button', { type: 'button', dataset: { action: 'shadow', hash: u.hash, test: 'shadow' } }, 'Run in shadow')
          : null,
      ),
    ),
  );
  el.replaceChildren(table(['plugin', 'kind', 'hash', '', ''], rows, ''));
}

// ------------------------------------------------------------------ costs

export function renderCosts(el, costs) {
  const money = (n) => (typeof n === 'number' ? n.toFixed(2) : '–');
  const seconds = (n) => (typeof n === 'number' ? Math.round(n).toLocaleString() : '–');
  const total = costs.total ?? {};
  const parts = [
    h(
      'p',
      { dataset: { test: 'costs-total' } },
      h('strong', {}, `Total ${money(total.cost)}`),
      ` · ${total.jobs ?? 0} jobs · ${seconds(total.gpu_seconds)} GPU-s`,
    ),
  ];
  const budget = costs.budget ?? {};
  if (budget.limit != null) {
    parts.push(
      h(
        'p',
        { class: budget.reached ? 'error-text' : '', dataset: { test: 'costs-budget' } },
        `Budget ${money(budget.limit)}: ${money(budget.spent)} spent (${Math.round((100 * (budget.spent ?? 0)) / budget.limit)} %)`,
        budget.dispatch_held ? ` · DISPATCH HELD: ${budget.dispatch_held}` : '',
      ),
    );
  } else {
    parts.push(h('p', { class: 'dim' }, 'No budget set.'));
  }
  if (costs.unpriced_pools?.length) {
    parts.push(h('p', { class: 'dim' }, `No price configured for: ${costs.unpriced_pools.join(', ')}`));
  }
  const rows = (list, key) =>
    (list ?? []).map((r) => h('tr', {}, h('td', {}, r[key]), h('td', {}, String(r.jobs)), h('td', {}, seconds(r.gpu_seconds)), h('td', {}, money(r.cost))));
  if (costs.pools?.length) parts.push(table(['pool', 'jobs', 'GPU-s', 'cost'], rows(costs.pools, 'pool'), ''));
  if (costs.users?.length) parts.push(table(['attendee', 'jobs', 'GPU-s', 'cost'], rows(costs.users, 'user'), ''));
  el.replaceChildren(...parts);
}
