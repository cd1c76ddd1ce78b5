// @ts-check
// A run's page: its facts, log, metrics and params, kept live by the run's event stream.

import { api, sharedView, subscribe } from './api.js';
import { AXIS_CHOICES, Charts, bindLookControls } from './charts.js';
import {
  h, badge, STATUS_LABELS, formatDuration, formatFull, formatNumber, formatStart,
  parseTime, runDuration, stalledBadge,
} from './dom.js';
import { highlightFailure } from './failure.js';
import { LogView } from './logview.js';
import { notifyRunEnded, setUpNotifyButton } from './notify.js';
import { progressView, tickProgress } from './progress.js';
import { setUpStop } from './stop.js';
import { remember, remembered } from './prefs.js';
import { Trouble } from './trouble.js';

const page = document.getElementById('run');
const runUuid = page.dataset.runUuid;
const $ = (id) => document.getElementById(id);

let run = null;
const params = new Map();

function showError(err) {
  const box = $('run-error');
  box.textContent = err && err.message ? err.message : String(err);
  box.hidden = false;
}

// --- facts --------------------------------------------------------------------------------------

function renderFacts() {
  document.title = (run.name || 'Unnamed run') + ' · Hyperdash';
  $('run-name').textContent = run.name || 'Unnamed run';
  const stalled = stalledBadge(run);
  $('run-status').replaceChildren(badge(run.status), ...(stalled ? [stalled] : []));
  const start = parseTime(run.started_at);
  const started = $('fact-started');
  started.textContent = formatStart(start);
  started.title = formatFull(start);
  $('fact-duration').textContent = formatDuration(runDuration(run));
  $('fact-host').textContent = run.host || '—';
  $('fact-host').title = run.host || '';
  const exit = $('fact-exit');
  if (run.signal) {
    exit.previousElementSibling.textContent = 'Signal';
    exit.textContent = run.signal;
  } else {
    exit.previousElementSibling.textContent = 'Exit code';
    exit.textContent = run.exit_code === null || run.exit_code === undefined ? '—' : String(run.exit_code);
  }
  renderTrouble();
}

// --- progress, stop, failure ------------------------------------------------------------------

const renderStop = setUpStop({
  runUuid,
  button: $('stop'),
  confirm: $('stop-confirm'),
  yes: $('stop-yes'),
  no: $('stop-no'),
  info: $('stop-info'),
  onChange: (changes) => updateRun(changes),
  onError: showError,
});

function renderTrouble() {
  const view = progressView(run);
  $('run-progress').replaceChildren(...(view ? [view] : []));
  $('run-progress').hidden = !view;
  renderStop(run);
  const summary = $('failure-summary');
  summary.textContent = run.failure ? run.failure.summary : '';
  summary.hidden = !run.failure;
}

setInterval(() => { if (run) tickProgress($('run-progress'), () => run); }, 1000);

let gone = false; // the run (or the link to it) is no more: nothing goes on counting
setInterval(() => {
  if (run && !gone && run.status === 'running') $('fact-duration').textContent = formatDuration(runDuration(run));
}, 1000);

function updateRun(changes) {
  const before = run.status;
  run = { ...run, ...changes };
  renderFacts();
  if (run.failure) highlightFailure(log, run.failure).catch(showError);
  if (before === 'running' && run.status !== 'running') {
    notifyRunEnded(run, STATUS_LABELS[run.status] || run.status, formatDuration(runDuration(run)));
  }
  setUpNotifyButton($('notify'), run);
  // (for the owner's actions, runactions.js, which a shared page does not load: archived elsewhere)
  document.dispatchEvent(new CustomEvent('hyperdash:run', { detail: run }));
}

// --- params -------------------------------------------------------------------------------------

function paramText(value) {
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

function renderParams() {
  const names = [...params.keys()].sort((a, b) => a.localeCompare(b));
  $('params').replaceChildren(...names.map((name) => h('tr', {},
    h('th', { scope: 'row' }, name),
    h('td', {}, paramText(params.get(name))),
  )));
  $('params-empty').hidden = names.length > 0;
  $('params-count').textContent = String(names.length);
}

function addParams(data) {
  const values = data && typeof data.params === 'object' && data.params !== null ? data.params : data;
  if (!values || typeof values !== 'object') return;
  for (const [name, value] of Object.entries(values)) params.set(name, value);
  renderParams();
}

// --- tabs (narrow screens show one panel at a time) -----------------------------------------------

const body = $('run-body');
for (const tab of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('.tabs [role=tab]'))) {
  tab.addEventListener('click', () => {
    for (const other of document.querySelectorAll('.tabs [role=tab]')) {
      other.setAttribute('aria-selected', String(other === tab));
    }
    body.dataset.tab = tab.dataset.tab;
    if (tab.dataset.tab === 'log') log.onScroll();
  });
}

// --- log ----------------------------------------------------------------------------------------

const log = new LogView({
  runUuid,
  scroller: $('log'),
  rows: $('log-rows'),
  topEdge: $('log-top'),
  bottomEdge: $('log-bottom'),
  jumpButton: $('jump'),
  searchStatus: $('search-status'),
  onError: showError,
});

// Search as the user types, once a pause in typing says the text is meant; Enter at once.
const query = /** @type {HTMLInputElement} */ ($('log-query'));
let searched = '';
/** @type {ReturnType<typeof setTimeout> | undefined} */
let typing;
function searchNow() {
  clearTimeout(typing);
  const term = query.value.trim();
  if (term === searched && log.mode === (term ? 'search' : 'tail')) return;
  searched = term;
  log.search(term);
}
query.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(searchNow, 250);
});
$('log-search').addEventListener('submit', (event) => {
  event.preventDefault();
  searchNow();
});
log.clearButton().addEventListener('click', () => {
  clearTimeout(typing);
  query.value = '';
  searched = '';
});

// Long lines wrap, or not (the log scrolls sideways), as the user last chose on this browser.
const wrap = $('wrap');
/** @param {boolean} on */
function setWrap(on) {
  wrap.setAttribute('aria-pressed', String(on));
  $('log').classList.toggle('nowrap', !on);
}
setWrap(remembered('wrap', 'on') === 'on');
wrap.addEventListener('click', () => {
  const on = wrap.getAttribute('aria-pressed') !== 'true';
  setWrap(on);
  remember('wrap', on ? 'on' : 'off');
});

const axisSelect = /** @type {HTMLSelectElement} */ ($('chart-axis'));
const axisChoice = /** @type {import('./charts.js').AxisChoice} */ (
  AXIS_CHOICES.find((choice) => choice === remembered('chart-axis', 'auto')) || 'auto');
axisSelect.value = axisChoice;

const charts = new Charts({
  runUuid,
  container: $('charts'),
  empty: $('metrics-empty'),
  counter: $('metrics-count'),
  onError: showError,
  axis: axisChoice,
});
charts.setLook(bindLookControls(
  /** @type {HTMLInputElement} */ ($('chart-log')), /** @type {HTMLInputElement} */ ($('chart-smooth')),
  (look) => charts.setLook(look)));
// The SDK's own figures (system metrics: CPU, memory, disk, network, GPUs) apart from the job's.
const systemCharts = new Charts({
  runUuid,
  container: $('system-charts'),
  empty: $('system-empty'),
  counter: $('system-count'),
  onError: showError,
});
/** @param {{internal?: boolean}} point */
const chartsOf = (point) => (point && point.internal ? systemCharts : charts);
axisSelect.addEventListener('change', () => {
  const choice = AXIS_CHOICES.find((c) => c === axisSelect.value) || 'auto';
  charts.setAxis(choice);
  remember('chart-axis', choice);
});

// A shared run's page shows its rules and firings to read (setting them is its owner's).
const trouble = new Trouble({
  runUuid,
  runName: JSON.parse($('run-data').textContent).run.name,
  charts,
  onError: showError,
  readOnly: sharedView,
});

let connections = 0;
let following = false; // the run's stream has sent its first event since it connected

// --- start --------------------------------------------------------------------------------------

async function start() {
  // The page comes with the run and its last lines as they were when it was made: show them,
  // then follow what comes after.
  const initial = JSON.parse($('run-data').textContent);
  run = initial.run;
  renderFacts();
  setUpNotifyButton($('notify'), run);
  addParams(run.params || {});
  log.showTail(initial.tail, initial.tail_limit);
  // A failed run opens at where it went wrong.
  if (run.failure) highlightFailure(log, run.failure, { open: true }).catch(showError);
  subscribe(`/runs/${encodeURIComponent(runUuid)}/events`, {
    log: (line) => log.push(line),
    metric: (point) => chartsOf(point).point(point),
    param: (data) => addParams(data),
    status: (data, event) => {
      updateRun(data);
      // Each connection's first event comes once the stream follows the run, its id the seq
      // the stream resumed after: lines stored late before then, below it, are read again.
      if (!following) log.catchUp(Number(event.lastEventId) || 0);
      following = true;
    },
    alert: (firing) => trouble.fired(firing),
  }, {
    params: { after: run.last_seq || 0 },
    // After a reconnection, rules that fired meanwhile are read again (the log, at the first status).
    onOpen: () => {
      following = false;
      if (connections++) trouble.load();
    },
    // A run deleted (or a shared link revoked) while the page is open: say so, follow no more.
    check: `/runs/${encodeURIComponent(runUuid)}`,
    onGone: (err) => {
      showError(new Error(`${sharedView ? 'This link no longer shows the run' : 'This run was deleted'}: ` +
                          `the page does not follow it any more (${err.message}).`));
      gone = true;
    },
  });
  const metrics = Object.entries(run.metrics || {});
  await Promise.all([
    charts.load(metrics.filter(([, point]) => !point.internal).map(([name]) => name)),
    systemCharts.load(metrics.filter(([, point]) => point.internal).map(([name]) => name)),
    trouble.load(),
  ]);
}

start();
