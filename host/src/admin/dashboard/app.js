// The operator's dashboard: live state from /admin/api/events (server-sent
// events; /admin/api/snapshot polled when they stop), actions through the
// ordinary /admin/api routes. The browser sends the Basic Auth login it
// already gave for /admin with every same-origin request, EventSource too.

import { act, call, say } from './api.js';
import {
  renderAttendees,
  renderCosts,
  renderPasswords,
  renderPools,
  renderQueue,
  renderReport,
  renderShadow,
  renderSlots,
  renderUploads,
} from './render.js';

const POLL_AFTER_MS = 4000; // no snapshot for this long: poll
const SSE_RETRY_MS = 15000; // a closed event stream is reopened this often
const COSTS_EVERY_MS = 10000;

const $ = (id) => document.getElementById(id);
const state = {
  snapshot: null,
  lastAt: 0,
  source: null,
  via: 'polling', // how the last snapshot came: live or polling
  uploads: [], // {hash, label, kind, size} uploaded and checked this session
  drawn: {}, // panel → the JSON it was last drawn from
  holding: false, // the pointer is over the queue: finished rows stay until it leaves
  reportedErrors: '',
};

// ------------------------------------------------------------------ state

function setFeed(kind, text) {
  const el = $('feed-status');
  el.dataset.state = kind;
  el.textContent = text;
}

// Draws a panel only when its data changed (keeps focus and selections).
function draw(panel, data, paint) {
  const key = JSON.stringify(data);
  if (state.drawn[panel] === key) return;
  state.drawn[panel] = key;
  paint();
}

function apply(snapshot, via) {
  state.snapshot = snapshot;
  state.via = via;
  state.lastAt = Date.now();
  setFeed(via, via === 'live' ? 'live' : 'polling');
  $('feed-time').textContent = `updated ${new Date(snapshot.now_ms ?? Date.now()).toLocaleTimeString()}`;

  const session = snapshot.session ?? 'unknown';
  const badge = $('session-state');
  badge.textContent = session;
  badge.dataset.state = session;
  document.body.dataset.session = session;
  for (const button of document.querySelectorAll('[data-action=session]')) {
    button.classList.toggle('current', button.dataset.value === session);
  }

  const showFinished = $('show-finished').checked;
  // The queue's times move every second: redraw it whenever it has jobs.
  // It is updated in place (render.js), so a select being chosen in or a
  // button being pressed is never replaced.
  const now = snapshot.now_ms ?? Date.now();
  const second = (snapshot.jobs ?? []).length ? Math.floor(now / 1000) : 0;
  draw('queue', [snapshot.jobs, showFinished, second, state.holding], () => {
    $('queue-counts').textContent = renderQueue($('queue'), snapshot.jobs, now, showFinished, state.holding);
  });
  draw('attendees', snapshot.attendees, () => renderAttendees($('attendees'), snapshot.attendees));
  draw('pools', snapshot.pools, () => renderPools($('pools'), snapshot.pools));
  draw('plugins', snapshot.plugins, () => {
    renderSlots($('slots'), snapshot.plugins);
    renderShadow($('shadow'), snapshot.plugins);
  });
  draw('uploads', [state.uploads, snapshot.plugins], () => renderUploads($('uploads'), state.uploads, snapshot.plugins));
  const wait = snapshot.settings?.job_wait_secs;
  $('job-wait-current').textContent = wait ?? '?';
  const input = $('job-wait');
  if (document.activeElement !== input && input.dataset.edited !== 'yes' && wait !== undefined) input.value = wait;

  // Parts of the snapshot the host could not make, said once each.
  const errors = (snapshot.errors ?? []).join('; ');
  if (errors && errors !== state.reportedErrors) say('error', `The host could not read ${errors}`);
  state.reportedErrors = errors;
}

// ------------------------------------------------------------------- feed

function openEvents() {
  if (!window.EventSource) return;
  const source = new EventSource('/admin/api/events');
  state.source = source;
  source.addEventListener('snapshot', (event) => {
    try {
      apply(JSON.parse(event.data), 'live');
    } catch (error) {
      say('error', `A live update could not be read: ${error.message}`);
    }
  });
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setFeed('polling', 'polling (live updates stopped)');
      state.source = null;
      setTimeout(openEvents, SSE_RETRY_MS);
    } else if ($('feed-status').dataset.state !== 'polling') {
      setFeed('reconnecting', 'reconnecting…');
    }
  });
}

export async function refresh() {
  try {
    const open = state.source?.readyState === 1; // EventSource.OPEN
    apply(await call('GET', '/admin/api/snapshot'), open ? 'live' : 'polling');
  } catch (error) {
    setFeed('offline', 'no answer from the host');
    say('error', `Reading the host's state: ${error.message}`);
  }
}

// Polls while the event stream delivers nothing (failed, proxied away, …).
function watchdog() {
  if (Date.now() - state.lastAt > POLL_AFTER_MS) refresh();
}

// Backups and the export: the last result of each, in words.
async function refreshOutputs() {
  try {
    const backups = await call('GET', '/admin/api/backups');
    const last = backups?.last;
    $('backup-status').textContent = !backups?.configured
      ? 'No backup bucket configured ([backup] in the configuration).'
      : last
        ? `Last backup ${new Date(last.finished_at_ms).toLocaleTimeString()}: ${last.error ? `FAILED: ${last.error}` : `${last.uploaded} files sent, ${last.skipped} already there, ${last.history_jobs} jobs in the history`}` +
          (backups.interval_minutes ? ` · every ${backups.interval_minutes} min` : ' · on demand only')
        : `No backup yet${backups.interval_minutes ? ` · every ${backups.interval_minutes} min` : ''}.`;
    const exported = await call('GET', '/admin/api/export/status');
    $('export-status').textContent = exported?.running
      ? `Export running: ${exported.files_done} of ${exported.files_total} files`
      : exported?.finished_at_ms
        ? `Last export ${new Date(exported.finished_at_ms).toLocaleTimeString()}: ${exported.files_done} of ${exported.files_total} files${exported.error ? ` (stopped: ${exported.error})` : ''}`
        : '';
  } catch (error) {
    $('backup-status').textContent = `Backups: ${error.message}`;
  }
}

async function refreshCosts() {
  const panel = $('costs-panel');
  try {
    const costs = await call('GET', '/admin/api/costs');
    renderCosts($('costs'), costs ?? {});
    panel.hidden = false;
  } catch (error) {
    // No costs route on this host: no panel. Anything worse is said.
    panel.hidden = true;
    if (error.status >= 500) say('error', `Costs: ${error.message}`);
  }
}

// ---------------------------------------------------------------- actions

// Drain and Close stop attendees submitting: asked before, never by a stray click.
const CONFIRM_SESSION = {
  drain: 'Drain the workshop? Attendees can no longer submit jobs; queued and running jobs still finish.',
  closed: 'Close the workshop? Attendees can no longer submit jobs and nothing more is sent to the GPUs.',
};

const actions = {
  session: (el) => {
    const question = CONFIRM_SESSION[el.dataset.value];
    if (question && !window.confirm(question)) {
      say('info', `Workshop ${el.dataset.value}: not done (not confirmed)`);
      return null;
    }
    return act(`Workshop ${el.dataset.value}`, () => call('PUT', '/admin/api/session', { state: el.dataset.value }));
  },
  cancel: (el) =>
    act(
      `Cancel job ${el.dataset.job}`,
      () => call('POST', `/admin/api/jobs/${el.dataset.job}/cancel`),
      (answer) => answer?.outcome?.replace('_', ' '),
    ),
  retry: (el) =>
    act(
      `Retry job ${el.dataset.job}`,
      () => call('POST', `/admin/api/jobs/${el.dataset.job}/retry`),
      (answer) => answer?.id != null && `new job ${answer.id}`,
    ),
  activate: (el) =>
    act(
      'Activate plugin',
      () => call('POST', `/admin/api/plugins/${el.dataset.hash}/activate`),
      (answer) => answer?.slot && `active in ${answer.slot}`,
    ),
  shadow: (el) => act('Run in shadow', () => call('PUT', '/admin/api/plugins/shadow', { hash: el.dataset.hash })),
  pool: (el) =>
    act(`Pool ${el.dataset.name} ${el.dataset.use === 'yes' ? 'in use' : 'out of use'}`, () =>
      call('PUT', `/admin/api/pools/${encodeURIComponent(el.dataset.name)}`, { in_use: el.dataset.use === 'yes' }),
    ),
  prewarm: (el) => {
    const path = `/admin/api/pools/${encodeURIComponent(el.dataset.name)}/prewarm`;
    if (el.dataset.warm === 'yes') return act(`Release ${el.dataset.name}`, () => call('DELETE', path));
    if (el.dataset.kind === 'verda') return act(`Pre-warm ${el.dataset.name}`, () => call('POST', path));
    say('info', `Warm up ${el.dataset.name}: a one-step job is running…`);
    return act(
      `Warm up ${el.dataset.name}`,
      () => call('POST', path),
      (answer) => typeof answer?.took_seconds === 'number' && `warm (the warm-up job took ${answer.took_seconds.toFixed(1)} s)`,
    );
  },
  'attendee-disable': (el) => {
    const disable = el.dataset.to === 'disable';
    return act(`${disable ? 'Disable' : 'Enable'} ${el.dataset.name}`, () =>
      call('PUT', `/admin/api/attendees/${encodeURIComponent(el.dataset.name)}`, { disabled: disable }),
    );
  },
  'attendee-password': async (el) => {
    const name = el.dataset.name;
    if (!window.confirm(`Give ${name} a new password? The old one stops working at once.`)) return null;
    const answer = await act(`New password for ${name}`, () => call('POST', `/admin/api/attendees/${encodeURIComponent(name)}/password`), () => 'shown above the attendee list');
    if (answer) renderPasswords($('passwords'), [answer], `New password for ${name}`);
    return answer;
  },
  'passwords-hide': () => {
    $('passwords').replaceChildren();
    $('passwords').hidden = true;
  },
  backup: async () => {
    await act('Backup', () => call('POST', '/admin/api/backups'));
    await refreshOutputs();
  },
  'shadow-stop': () => act('Stop the shadow run', () => call('DELETE', '/admin/api/plugins/shadow')),
  'remove-slot': (el) =>
    act(`Remove ${el.dataset.slot}`, () => call('DELETE', `/admin/api/plugins/slots/${encodeURIComponent(el.dataset.slot)}`)),
  rollback: (el) =>
    act(
      `Roll back ${el.dataset.slot}`,
      () => call('POST', `/admin/api/plugins/slots/${encodeURIComponent(el.dataset.slot)}/rollback`),
      (answer) => answer?.active && `${answer.active} is active`,
    ),
};

// Buttons whose action is under way: a second press waits for the first.
// (Not only `disabled`: an in-place update may clear that attribute.)
const busy = new WeakSet();

async function onClick(event) {
  const el = event.target.closest('button[data-action]');
  if (!el || el.disabled || busy.has(el) || !actions[el.dataset.action]) return;
  busy.add(el);
  el.disabled = true;
  try {
    await actions[el.dataset.action](el);
  } finally {
    busy.delete(el);
    el.disabled = false;
    await refresh();
  }
}

async function onPriority(event) {
  const el = event.target.closest('select[data-action=priority]');
  if (!el) return;
  const priority = el.value;
  await act(`Priority of job ${el.dataset.job}`, () =>
    call('POST', `/admin/api/jobs/${el.dataset.job}/priority`, { priority }),
  );
  el.blur();
  state.drawn.queue = null; // show the priority in force, whatever happened
  await refresh();
}

async function onUpload(event) {
  event.preventDefault();
  const file = $('plugin-file').files[0];
  const report = $('upload-report');
  if (!file) {
    say('error', 'Upload: choose a .wasm file first');
    return;
  }
  const button = $('plugin-upload');
  button.disabled = true;
  report.dataset.state = 'checking';
  report.textContent = `Checking ${file.name}…`;
  try {
    const body = await call('POST', '/admin/api/plugins', file, 'application/wasm');
    state.uploads = [body, ...state.uploads.filter((u) => u.hash !== body.hash)];
    renderReport(report, { status: 201, body });
    say('ok', `Upload ${file.name}: ${body.label} passed the check`);
  } catch (error) {
    renderReport(report, { status: error.status, body: error.body, error: error.message });
    say('error', `Upload ${file.name}: ${error.message}`);
  } finally {
    button.disabled = false;
    state.drawn.uploads = null;
    await refresh();
  }
}

// "Add attendees": names (comma or space separated) or a count with a prefix.
async function onAddAttendees(event) {
  event.preventDefault();
  const text = $('add-names').value.trim();
  const count = Number($('add-count').value);
  let body;
  if (text) body = { names: text.split(/[\s,]+/).filter(Boolean) };
  else if (count > 0) body = { count, prefix: $('add-prefix').value.trim() || 'attendee' };
  else {
    say('error', 'Add attendees: give names, or a number of numbered accounts');
    return;
  }
  const answer = await act(
    'Add attendees',
    () => call('POST', '/admin/api/attendees', body),
    (a) => `${a.created.length} added${a.skipped.length ? `, ${a.skipped.length} already there (${a.skipped.join(', ')})` : ''}`,
  );
  if (answer?.created?.length) {
    renderPasswords($('passwords'), answer.created, `${answer.created.length} attendee account(s) added`);
    $('add-names').value = '';
    $('add-count').value = '';
  }
  await refresh();
}

async function onJobWait(event) {
  event.preventDefault();
  const input = $('job-wait');
  const seconds = Number(input.value);
  const done = await act(`Job wait ${seconds} s`, () => call('PUT', '/admin/api/settings', { job_wait_secs: seconds }));
  if (done) input.dataset.edited = 'no';
  await refresh();
}

async function onBudget(event) {
  event.preventDefault();
  const amount = Number($('budget').value);
  await act(amount > 0 ? `Budget ${amount}` : 'Budget removed', () => call('PUT', '/admin/api/settings', { budget: amount }));
  await refreshCosts();
}

// ------------------------------------------------------------------ start

function start() {
  document.body.addEventListener('click', onClick);
  $('queue').addEventListener('change', onPriority);
  $('upload-form').addEventListener('submit', onUpload);
  $('job-wait-form').addEventListener('submit', onJobWait);
  $('add-attendees-form').addEventListener('submit', onAddAttendees);
  // While the pointer is over the queue, rows do not leave it (see render.js).
  const hold = (holding) => () => {
    state.holding = holding;
    if (state.snapshot) apply(state.snapshot, state.via);
  };
  $('queue').addEventListener('pointerenter', hold(true));
  $('queue').addEventListener('pointerleave', hold(false));
  $('budget-form').addEventListener('submit', onBudget);
  $('job-wait').addEventListener('input', (e) => {
    e.target.dataset.edited = 'yes';
  });
  $('show-finished').addEventListener('change', () => {
    if (state.snapshot) apply(state.snapshot, state.via);
  });
  openEvents();
  if (!window.EventSource) refresh();
  setInterval(watchdog, 2000);
  refreshCosts();
  setInterval(refreshCosts, COSTS_EVERY_MS);
  refreshOutputs();
  setInterval(refreshOutputs, COSTS_EVERY_MS);
}

start();
