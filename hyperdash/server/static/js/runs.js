// @ts-check
// The runs page: runs grouped by name, newest first, kept live by the account's event stream.

import { api, subscribe } from './api.js';
import {
  h, badge, coalesce, formatDuration, formatFull, formatStart, isStalled, parseTime, runDuration, stalledBadge,
} from './dom.js';
import { progressView, tickProgress } from './progress.js';

const PAGE_SIZE = 100;
const UNNAMED = 'Unnamed run';

const form = /** @type {HTMLFormElement} */ (document.getElementById('filters'));
const nameInput = /** @type {HTMLInputElement} */ (form.elements.namedItem('q'));
// A group's link names the whole name (?name=): matched exactly until the field is edited.
let exactName = nameInput.dataset.exact || null;
const statusSelect = /** @type {HTMLSelectElement} */ (form.elements.namedItem('status'));
// Archived runs are left out unless asked for; then they are listed alone.
const archivedBox = /** @type {HTMLInputElement} */ (form.elements.namedItem('archived'));
const container = document.getElementById('runs');
const emptyState = document.getElementById('runs-empty');
const noMatch = document.getElementById('runs-no-match');
const errorBox = document.getElementById('runs-error');
const moreButton = document.getElementById('load-more');
const nameList = document.getElementById('run-names');
const knownNames = new Set();

/** uuid -> run, for every run loaded or announced. */
let runs = new Map();
/** Runs announced by the event stream while a page of runs was loading: they are newer. */
let announced = new Map();
let nextCursor = null;
let generation = 0; // bumped on each new query, so a stale reply is dropped

function filters() {
  const text = nameInput.value.trim();
  return {
    name: exactName, q: exactName === null ? text : '', status: statusSelect.value,
    archived: archivedBox.checked ? 'only' : null,
  };
}

// The status filter's "Needs attention" (events.ATTENTION): a run that ended badly
// (events.ENDED_BADLY), or a running one that is stalled, as the server picks them.
const ATTENTION = 'attention';
const ENDED_BADLY = ['failure', 'killed', 'lost'];

function needsAttention(run) {
  return ENDED_BADLY.includes(run.status) || isStalled(run);
}

function matches(run) {
  const { name, q, status } = filters();
  if (status === ATTENTION ? !needsAttention(run) : status && run.status !== status) return false;
  if (name !== null && run.name !== name) return false;
  // Any part of the name, in any case, as the server matches it
  if (q && !(run.name ?? '').toLowerCase().includes(q.toLowerCase())) return false;
  return true;
}

function startedAt(run) {
  return parseTime(run.started_at) ?? 0;
}

/** Runs grouped by name; groups ordered by their newest run, runs newest first. */
function groupRuns() {
  const groups = new Map();
  const ordered = [...runs.values()].filter(matches).sort((a, b) => startedAt(b) - startedAt(a));
  for (const run of ordered) {
    const name = run.name ?? '';
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(run);
  }
  return groups;
}

/** "exit 1" or the signal, for a run that ended badly, where its failure line does not say it. */
function outcome(run) {
  // A failure summed up by its signal or exit code ("killed by SIGTERM", "exit code 3", see
  // server/summary.py) is on the row's failure line already: said once is enough.
  const summary = run.failure ? run.failure.summary : null;
  if (run.signal) return summary === 'killed by ' + run.signal ? '' : run.signal;
  if (run.exit_code !== null && run.exit_code !== undefined && run.exit_code !== 0) {
    return summary === 'exit code ' + run.exit_code ? '' : 'exit ' + run.exit_code;
  }
  return '';
}

function runRow(run) {
  const start = parseTime(run.started_at);
  return h('li', {},
    h('a', { class: 'run-row', href: '/runs/' + encodeURIComponent(run.uuid), 'data-uuid': run.uuid },
      badge(run.status),
      h('span', { class: 'started', title: formatFull(start) }, formatStart(start)),
      h('span', { class: 'duration', 'data-running': run.status === 'running' ? '1' : null },
        formatDuration(runDuration(run))),
      h('span', { class: 'outcome' }, outcome(run) || stalledBadge(run)),
      h('span', { class: 'host', title: run.host || '' }, run.host || '—'),
      progressView(run),
      run.failure ? h('span', { class: 'failure', title: run.failure.summary }, run.failure.summary) : null,
    ),
  );
}

/** The address of the link in the list that has the focus, if one has: a rebuilt list gives it back. */
function focusedLink() {
  const el = document.activeElement;
  return el instanceof HTMLAnchorElement && container.contains(el) ? el.getAttribute('href') : null;
}

/** Focus the list's link to `href` again (a row, a group's name or Compare), where it still is. */
function refocus(href) {
  if (href === null) return;
  const link = [...container.querySelectorAll('a')].find((a) => a.getAttribute('href') === href);
  if (link) link.focus({ preventScroll: true });
}

const render = coalesce(() => {
  const groups = groupRuns();
  const fragment = document.createDocumentFragment();
  for (const [name, group] of groups) {
    fragment.append(h('section', { class: 'group panel', 'data-name': name },
      h('header', { class: 'group-head' },
        h('h2', { title: name || UNNAMED },
          name ? h('a', { href: '/?name=' + encodeURIComponent(name) }, name) : UNNAMED),
        h('span', { class: 'count' }, group.length === 1 ? '1 run' : group.length + ' runs'),
        name ? h('a', { class: 'compare-link', href: '/compare?name=' + encodeURIComponent(name),
          title: 'Every run of this name side by side' }, 'Compare') : null,
      ),
      h('ul', { class: 'run-list' }, group.map(runRow)),
    ));
  }
  // The list is rebuilt at each change (a second's progress too): whoever is on a link of it
  // (keyboard, screen reader) stays there, rather than being sent back to the page's top.
  const focused = focusedLink();
  container.replaceChildren(fragment);
  refocus(focused);
  let added = false;
  for (const name of groups.keys()) {
    if (name && !knownNames.has(name)) { knownNames.add(name); added = true; }
  }
  if (added) nameList.replaceChildren(...[...knownNames].sort().map((name) => h('option', { value: name })));
  const { name, q, status } = filters();
  const filtered = Boolean(name !== null || q || status || archivedBox.checked);
  emptyState.hidden = groups.size > 0 || filtered;
  noMatch.hidden = groups.size > 0 || !filtered;
  moreButton.hidden = !nextCursor;
});

async function load({ append = false } = {}) {
  const mine = append ? generation : ++generation;
  if (!append) announced = new Map();
  const { name, q, status, archived } = filters();
  try {
    const page = await api('/runs', {
      params: { name, q, status, archived, limit: PAGE_SIZE, cursor: append ? nextCursor : null },
    });
    if (mine !== generation) return;
    if (!append) runs = new Map();
    for (const run of page.runs) runs.set(run.uuid, run);
    for (const [uuid, run] of announced) runs.set(uuid, { ...(runs.get(uuid) || {}), ...run });
    nextCursor = page.next || null;
    errorBox.hidden = true;
  } catch (err) {
    if (mine !== generation) return;
    errorBox.textContent = 'Could not load runs: ' + err.message;
    errorBox.hidden = false;
  }
  render();
}

function syncUrl() {
  const { name, q, status } = filters();
  const query = new URLSearchParams();
  if (name !== null) query.set('name', name);
  if (q) query.set('q', q);
  if (status) query.set('status', status);
  if (archivedBox.checked) query.set('archived', 'only');
  const qs = query.toString();
  history.replaceState(null, '', location.pathname + (qs ? '?' + qs : ''));
}

// Filter as the user types, once a pause in typing says the text is meant.
let typing = null;
nameInput.addEventListener('input', () => {
  exactName = null;
  clearTimeout(typing);
  typing = setTimeout(() => { syncUrl(); load(); }, 250);
});
nameInput.addEventListener('change', () => { clearTimeout(typing); syncUrl(); load(); });
statusSelect.addEventListener('change', () => { syncUrl(); load(); });
archivedBox.addEventListener('change', () => { syncUrl(); load(); });
form.addEventListener('submit', (event) => { event.preventDefault(); syncUrl(); load(); });
moreButton.addEventListener('click', () => load({ append: true }));

// Durations of running runs tick; nothing else changes without an event.
setInterval(() => {
  for (const el of container.querySelectorAll('.duration[data-running]')) {
    const uuid = /** @type {HTMLElement} */ (el.closest('.run-row')).dataset.uuid;
    const run = runs.get(uuid);
    if (run) el.textContent = formatDuration(runDuration(run));
  }
  tickProgress(container, (el) => runs.get(/** @type {HTMLElement} */ (el.closest('.run-row')).dataset.uuid));
}, 1000);

// After a reconnection the stream may have missed changes: reload what is shown.
let connections = 0;
subscribe('/events', {
  run(run) {
    if (!run || !run.uuid) return;
    // Archived (or brought back) elsewhere: out of this list; a run the other list holds stays out.
    if (Boolean(run.archived) !== archivedBox.checked) {
      if (runs.delete(run.uuid)) {
        announced.delete(run.uuid);
        render();
      }
      return;
    }
    runs.set(run.uuid, { ...(runs.get(run.uuid) || {}), ...run });
    announced.set(run.uuid, runs.get(run.uuid));
    render();
  },
  deleted(data) {
    if (!data || !runs.delete(data.uuid)) return;
    announced.delete(data.uuid);
    render();
  },
}, { onOpen: () => { if (connections++) load(); } });

load();
