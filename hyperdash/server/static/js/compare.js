// @ts-check
// A run name's page: every run of the name as a row (status, start, duration, host, each param,
// each metric's last and best value) to sort, filter, pick columns of and export; and the
// metrics of the runs selected overlaid, one chart per metric, a colour per run.

import { api } from './api.js';
import { OverlayChart, RUN_COLORS, bindLookControls } from './charts.js';
import {
  h, badge, STATUS_LABELS, formatDuration, formatFull, formatNumber, formatStart, parseTime,
} from './dom.js';
import { remember, remembered } from './prefs.js';

const page = /** @type {HTMLElement} */ (document.getElementById('compare'));
const runName = page.dataset.name || '';
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
// The server overlays at most this many runs at once.
const MAX_OVERLAY = 50;

/**
 * @typedef {object} Column
 * @property {string} key
 * @property {string} label
 * @property {boolean} numeric
 * @property {(run: any) => any} value   what it sorts and compares by
 * @property {(run: any) => string} text what it shows (and what a text filter matches)
 * @property {(run: any) => Node | string} [cell]
 * @property {string} [metric]           a metric's best-value column
 */

/** @type {any} the table as the API sent it */
let table = null;
/** @type {Column[]} every column but the first (the run's start, always shown) */
let columns = [];
let sortKey = 'started';
let sortDir = -1;
/** @type {Set<string>} uuids of the runs selected */
const selected = new Set();
/** @type {Set<string>} keys of the columns hidden, as last chosen for this name */
const hidden = new Set(readList('compare-hidden:' + runName));

/** @param {string} key */
function readList(key) {
  try {
    const value = JSON.parse(remembered(key, '[]'));
    return Array.isArray(value) ? value.filter((v) => typeof v === 'string') : [];
  } catch {
    return [];
  }
}

/** @param {unknown} err */
function showError(err) {
  const box = $('compare-error');
  box.textContent = err && /** @type {any} */ (err).message ? /** @type {any} */ (err).message : String(err);
  box.hidden = false;
}

/** @param {unknown} value */
function paramText(value) {
  if (value === undefined || value === null) return '';
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** @param {string} metric @returns {'min' | 'max'} */
function bestOf(metric) {
  const chosen = remembered('best:' + metric, '');
  if (chosen === 'min' || chosen === 'max') return chosen;
  const known = table ? table.metrics.find((/** @type {any} */ m) => m.name === metric) : null;
  return known && known.best === 'min' ? 'min' : 'max';
}

/** @param {any} run */
function startOf(run) {
  return parseTime(run.started_at);
}

// --- columns ------------------------------------------------------------------------------------

/** @returns {Column[]} */
function buildColumns() {
  /** @type {Column[]} */
  const found = [
    {
      key: 'status', label: 'Status', numeric: false, value: (r) => r.status,
      text: (r) => STATUS_LABELS[r.status] || r.status, cell: (r) => badge(r.status),
    },
    {
      key: 'duration', label: 'Duration', numeric: true, value: (r) => r.duration_s,
      text: (r) => formatDuration(r.duration_s * 1000),
    },
    { key: 'host', label: 'Host', numeric: false, value: (r) => r.host || '', text: (r) => r.host || '' },
  ];
  for (const param of table.params) {
    const numeric = table.runs.every((/** @type {any} */ r) => r.params[param] === undefined
      || typeof r.params[param] === 'number');
    found.push({
      key: 'param:' + param, label: param, numeric,
      value: (r) => r.params[param], text: (r) => paramText(r.params[param]),
    });
  }
  for (const { name } of table.metrics) {
    /** @param {any} r @param {string} field */
    const of = (r, field) => (r.metrics[name] ? r.metrics[name][field] : undefined);
    found.push({
      key: 'last:' + name, label: `${name} (last)`, numeric: true,
      // (a metric whose every point is NaN or infinite has no number, only its last as text)
      value: (r) => of(r, 'last'), text: (r) => paramText(of(r, 'last') ?? of(r, 'last_text')),
    });
    found.push({
      key: 'best:' + name, label: name, metric: name, numeric: true,
      value: (r) => of(r, bestOf(name)), text: (r) => paramText(of(r, bestOf(name))),
    });
  }
  return found;
}

/** @param {Column} column */
function labelOf(column) {
  return column.metric ? `${column.metric} (${bestOf(column.metric)})` : column.label;
}

// --- filter and sort ----------------------------------------------------------------------------

const filterColumn = /** @type {HTMLSelectElement} */ ($('filter-column'));
const filterText = /** @type {HTMLInputElement} */ ($('filter-text'));
const COMPARISON = /^(<=|>=|<|>|=)\s*(-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)$/i;

/** @param {any} run */
function matches(run) {
  const text = filterText.value.trim();
  if (!text) return true;
  const chosen = columns.filter((c) => (filterColumn.value ? c.key === filterColumn.value : !hidden.has(c.key)));
  const comparison = COMPARISON.exec(text);
  if (comparison) {
    const [, op, number] = comparison;
    const limit = Number(number);
    return chosen.some((c) => {
      const v = c.value(run);
      if (typeof v !== 'number') return false;
      return op === '<' ? v < limit : op === '>' ? v > limit : op === '<=' ? v <= limit
        : op === '>=' ? v >= limit : v === limit;
    });
  }
  const needle = text.toLowerCase();
  // The first column: the run's start (as shown, and in full) and its uuid.
  const start = startOf(run);
  const own = [formatStart(start), formatFull(start), run.uuid];
  if ((!filterColumn.value || filterColumn.value === 'started') && own.some((t) => t.toLowerCase().includes(needle))) {
    return true;
  }
  return chosen.some((c) => c.text(run).toLowerCase().includes(needle));
}

/**
 * Values in order, nothing (no such param or metric) last whichever the direction.
 * @param {any} a
 * @param {any} b
 */
function compareValues(a, b) {
  const missingA = a === undefined || a === null || a === '';
  const missingB = b === undefined || b === null || b === '';
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1;
  if (typeof a === 'number' && typeof b === 'number') return (a - b) * sortDir;
  return String(a).localeCompare(String(b), undefined, { numeric: true }) * sortDir;
}

function visibleRuns() {
  const value = sortKey === 'started'
    ? (/** @type {any} */ r) => startOf(r)
    : (columns.find((c) => c.key === sortKey) || { value: () => null }).value;
  return table.runs.filter(matches).sort((/** @type {any} */ a, /** @type {any} */ b) => compareValues(value(a), value(b)));
}

// --- the table ----------------------------------------------------------------------------------

/**
 * A header cell that sorts by its column.
 * @param {string} key
 * @param {string} label
 */
function sortHeader(key, label) {
  const sorted = sortKey === key;
  const button = h('button', { type: 'button', class: 'sort', 'data-sort': key, title: `Sort by ${label}` }, label,
    h('span', { class: 'arrow', 'aria-hidden': 'true' }, sorted ? (sortDir > 0 ? '▲' : '▼') : ''));
  button.addEventListener('click', () => {
    if (sortKey === key) sortDir = -sortDir;
    else { sortKey = key; sortDir = 1; }
    render();
  });
  return button;
}

function renderHead() {
  const shown = visibleRuns();
  const allBox = /** @type {HTMLInputElement} */ (h('input', {
    type: 'checkbox', id: 'select-shown', 'aria-label': 'Select every run shown',
  }));
  allBox.checked = shown.length > 0 && shown.every((/** @type {any} */ r) => selected.has(r.uuid));
  allBox.indeterminate = !allBox.checked && shown.some((/** @type {any} */ r) => selected.has(r.uuid));
  allBox.addEventListener('change', () => {
    for (const run of visibleRuns()) {
      if (allBox.checked) selected.add(run.uuid);
      else selected.delete(run.uuid);
    }
    selectionChanged();
  });
  /** @param {string} key */
  const ariaSort = (key) => (sortKey === key ? (sortDir > 0 ? 'ascending' : 'descending') : null);
  const cells = [h('th', { class: 'sticky', scope: 'col', 'aria-sort': ariaSort('started') },
    allBox, sortHeader('started', 'Started'))];
  for (const column of columns) {
    if (hidden.has(column.key)) continue;
    const th = h('th', {
      scope: 'col', 'data-key': column.key, class: column.numeric ? 'num' : null, 'aria-sort': ariaSort(column.key),
    }, sortHeader(column.key, labelOf(column)));
    if (column.metric) {
      const metric = column.metric;
      const direction = bestOf(metric);
      const other = direction === 'min' ? 'max' : 'min';
      const toggle = h('button', {
        type: 'button', class: 'best-toggle', 'data-metric': metric,
        title: `Best ${metric} is its ${direction}imum: click for its ${other}imum`,
        'aria-label': `Best of ${metric}: ${direction}. Switch to ${other}`,
      }, direction === 'min' ? 'min ⇄' : 'max ⇄');
      toggle.addEventListener('click', () => {
        remember('best:' + metric, other);
        render();
      });
      th.append(toggle);
    }
    cells.push(th);
  }
  $('table-head').replaceChildren(h('tr', {}, cells));
}

/** @param {any} run */
function renderRow(run) {
  const start = startOf(run);
  const box = /** @type {HTMLInputElement} */ (h('input', {
    type: 'checkbox', class: 'select', 'aria-label': `Select the run started ${formatFull(start)}`,
  }));
  box.checked = selected.has(run.uuid);
  box.addEventListener('change', () => {
    if (box.checked) selected.add(run.uuid);
    else selected.delete(run.uuid);
    selectionChanged();
  });
  const first = h('th', { scope: 'row', class: 'sticky' }, box,
    h('a', { href: '/runs/' + encodeURIComponent(run.uuid), title: `${formatFull(start)} · ${run.uuid}` },
      formatStart(start)));
  const cells = [first];
  for (const column of columns) {
    if (hidden.has(column.key)) continue;
    const text = column.text(run);
    cells.push(h('td', { class: column.numeric ? 'num' : null, title: text || null, 'data-key': column.key },
      column.cell ? column.cell(run) : text || '—'));
  }
  return h('tr', { 'data-uuid': run.uuid, class: selected.has(run.uuid) ? 'selected' : null }, cells);
}

function render() {
  if (!table) return;
  const runs = visibleRuns();
  renderHead();
  $('table-body').replaceChildren(...runs.map(renderRow));
  $('table-empty').hidden = runs.length > 0;
  $('run-count').textContent = runs.length === table.runs.length
    ? `${table.runs.length} run${table.runs.length === 1 ? '' : 's'}`
    : `${runs.length} of ${table.runs.length} runs`;
  updateExportLinks();
}

function renderColumnChoices() {
  const boxes = columns.map((column) => {
    const box = /** @type {HTMLInputElement} */ (h('input', { type: 'checkbox', 'data-key': column.key }));
    box.checked = !hidden.has(column.key);
    box.addEventListener('change', () => {
      if (box.checked) hidden.delete(column.key);
      else hidden.add(column.key);
      remember('compare-hidden:' + runName, JSON.stringify([...hidden]));
      render();
    });
    return h('label', {}, box, column.metric ? `${column.metric} (best)` : column.label);
  });
  $('columns-list').replaceChildren(...boxes);
  const current = filterColumn.value;
  filterColumn.replaceChildren(h('option', { value: '' }, 'Any column'),
    h('option', { value: 'started' }, 'Started'),
    ...columns.map((c) => h('option', { value: c.key }, c.metric ? `${c.metric} (best)` : c.label)));
  filterColumn.value = [...filterColumn.options].some((o) => o.value === current) ? current : '';
}

function updateExportLinks() {
  /** @param {string} format */
  const url = (format) => {
    const query = new URLSearchParams({ name: runName });
    for (const { name } of table.metrics) query.append('best', `${name}:${bestOf(name)}`);
    return `/api/v1/compare/export.${format}?${query}`;
  };
  /** @type {HTMLAnchorElement} */ ($('export-csv')).href = url('csv');
  /** @type {HTMLAnchorElement} */ ($('export-json')).href = url('json');
}

let typing = /** @type {ReturnType<typeof setTimeout> | undefined} */ (undefined);
filterText.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(render, 150);
});
filterColumn.addEventListener('change', render);
$('table-filter').addEventListener('submit', (event) => {
  event.preventDefault();
  clearTimeout(typing);
  render();
});

// --- the overlay --------------------------------------------------------------------------------

const axisSelect = /** @type {HTMLSelectElement} */ ($('overlay-axis'));
const AXES = ['auto', 'step', 'time'];
axisSelect.value = AXES.includes(remembered('compare-axis', 'auto')) ? remembered('compare-axis', 'auto') : 'auto';
let look = bindLookControls(/** @type {HTMLInputElement} */ ($('chart-log')),
  /** @type {HTMLInputElement} */ ($('chart-smooth')), (now) => {
    look = now;
    redrawOverlay();
  });
/** @type {{chart: OverlayChart, steps: boolean}[]} */
let overlays = [];
let overlayGeneration = 0;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let overlayTimer;

/** The runs selected, in the order of the table as the API sent it (newest first). */
function selectedRuns() {
  return table ? table.runs.filter((/** @type {any} */ r) => selected.has(r.uuid)) : [];
}

/**
 * Legend labels: the params whose values differ between the runs (a run without one shows —);
 * runs alike in every param are told apart by their start.
 * @param {any[]} runs
 * @returns {Map<string, string>}
 */
function legendLabels(runs) {
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const differing = names.filter((name) => new Set(runs.map((r) => JSON.stringify(r.params[name] ?? null))).size > 1);
  const labels = new Map();
  for (const run of runs) {
    const parts = differing.map((name) => `${name}=${name in run.params ? paramText(run.params[name]) : '—'}`);
    labels.set(run.uuid, parts.length ? parts.join(' ') : `${formatStart(startOf(run))} · ${run.uuid.slice(0, 8)}`);
  }
  return labels;
}

/** @param {boolean} steps whether every point of the chart has a step */
function axisFor(steps) {
  const choice = axisSelect.value;
  if (choice === 'step' || choice === 'time') return choice;
  return steps ? 'step' : 'time';
}

function selectionChanged() {
  render();
  const count = selected.size;
  $('selection-count').textContent = count ? `${count} selected` : '';
  clearTimeout(overlayTimer);
  // (what the charts show is the last selection's until the new one is loaded)
  page.dataset.overlay = 'loading';
  overlayTimer = setTimeout(loadOverlay, 200);
}

async function loadOverlay() {
  const mine = ++overlayGeneration;
  const runs = selectedRuns();
  const shown = runs.slice(0, MAX_OVERLAY);
  const note = $('overlay-note');
  note.hidden = runs.length <= MAX_OVERLAY;
  note.textContent = `Showing the ${MAX_OVERLAY} newest of the ${runs.length} runs selected.`;
  if (!shown.length) {
    clearOverlay();
    $('overlay-empty').hidden = false;
    page.dataset.overlay = '0';
    return;
  }
  page.dataset.overlay = 'loading';
  const query = new URLSearchParams();
  for (const run of shown) query.append('run', run.uuid);
  let reply;
  try {
    reply = await api(`/compare/series?${query}`);
  } catch (err) {
    if (mine === overlayGeneration) showError(err);
    return;
  }
  if (mine !== overlayGeneration) return;
  clearOverlay();
  const labels = legendLabels(shown);
  const colors = new Map(shown.map((r, i) => [r.uuid, RUN_COLORS[i % RUN_COLORS.length]]));
  /** @type {Map<string, any[]>} */
  const byMetric = new Map();
  for (const series of reply.series) {
    if (!byMetric.has(series.metric)) byMetric.set(series.metric, []);
    /** @type {any[]} */ (byMetric.get(series.metric)).push(series);
  }
  const container = $('overlay');
  for (const metric of [...byMetric.keys()].sort()) {
    const series = /** @type {any[]} */ (byMetric.get(metric));
    const steps = series.every((s) => s.steps.every((/** @type {unknown} */ step) => typeof step === 'number'));
    const chart = new OverlayChart(metric, series.map((s) => ({
      label: labels.get(s.run) || s.run, color: colors.get(s.run) || RUN_COLORS[0],
      steps: s.steps, times: s.times, values: s.values,
    })), axisFor(steps), look);
    chart.mount(container);
    overlays.push({ chart, steps });
  }
  $('overlay-empty').hidden = overlays.length > 0;
  $('overlay-empty').textContent = overlays.length ? '' : 'The runs selected have no metrics yet.';
  page.dataset.overlay = String(overlays.length);
}

function clearOverlay() {
  for (const { chart } of overlays) chart.destroy();
  overlays = [];
  $('overlay').replaceChildren();
  $('overlay-empty').textContent = 'Select runs in the table to overlay their metrics.';
}

function redrawOverlay() {
  for (const { chart, steps } of overlays) chart.redraw(axisFor(steps), look);
}

axisSelect.addEventListener('change', () => {
  remember('compare-axis', axisSelect.value);
  redrawOverlay();
});
$('select-all-runs').addEventListener('click', () => {
  if (!table) return;
  for (const run of table.runs) selected.add(run.uuid);
  selectionChanged();
});
$('clear-selection').addEventListener('click', () => {
  selected.clear();
  selectionChanged();
});

// --- start --------------------------------------------------------------------------------------

async function start() {
  try {
    table = await api('/compare', { params: { name: runName } });
  } catch (err) {
    showError(err);
    return;
  }
  columns = buildColumns();
  $('table-truncated').hidden = !table.truncated;
  renderColumnChoices();
  render();
  page.dataset.ready = '1';
}

start();
