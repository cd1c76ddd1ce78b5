// @ts-check
// The storage page: how much each name's runs take, deleting every run of a name (after a
// confirmation), and how many days finished runs are kept.

import { api } from './api.js';
import { h, formatNumber } from './dom.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const errorBox = $('storage-error');

/** @param {unknown} err @param {HTMLElement} [box] */
function showError(err, box = errorBox) {
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

/** "812 B", "3.4 MB" (powers of 1000, as disks are sold). @param {number} bytes */
export function formatBytes(bytes) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
  return (unit === 0 ? String(value) : value.toFixed(value < 10 ? 1 : 0)) + ' ' + units[unit];
}

// --- keeping runs ---------------------------------------------------------------------------------

const keepInput = /** @type {HTMLInputElement} */ ($('keep-days'));

/** @param {{keep_days: number | null, server_keep_days: number | null}} settings */
function showSettings(settings) {
  keepInput.value = settings.keep_days === null ? '' : String(settings.keep_days);
  const server = $('keep-server');
  server.hidden = settings.server_keep_days === null;
  server.textContent = 'This server removes finished runs after ' + settings.server_keep_days + ' days in any case.';
}

$('keep-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = keepInput.value.trim();
  const days = text === '' ? null : Number(text);
  if (days !== null && !(Number.isInteger(days) && days >= 1 && days <= 36500)) {
    showError(new Error('Enter a whole number of days from 1 to 36500, or nothing to keep runs for good.'));
    return;
  }
  try {
    showSettings(await api('/users/settings', { method: 'PUT', body: { keep_days: days } }));
    errorBox.hidden = true;
    $('keep-save').textContent = 'Saved';
  } catch (err) {
    showError(err);
  }
});
keepInput.addEventListener('input', () => { $('keep-save').textContent = 'Save'; });

// --- storage by name ------------------------------------------------------------------------------

const dialog = /** @type {HTMLDialogElement} */ ($('name-dialog'));
const confirmButton = /** @type {HTMLButtonElement} */ ($('name-confirm'));
/** @type {{name: string, runs: number, force: boolean} | null} */
let pending = null;

/** @param {{name: string, runs: number}} row */
function askToDelete(row) {
  pending = { name: row.name, runs: row.runs, force: false };
  $('name-what').textContent = (row.runs === 1 ? 'The run' : 'All ' + row.runs + ' runs') + ' named “' + row.name
    + '”, with their logs, metrics and params, are removed for good.';
  $('name-error').hidden = true;
  confirmButton.textContent = 'Delete';
  dialog.showModal();
}

$('name-cancel').addEventListener('click', () => dialog.close());
confirmButton.addEventListener('click', async () => {
  if (!pending) return;
  confirmButton.disabled = true;
  try {
    await api('/runs', { method: 'DELETE', params: { name: pending.name, force: pending.force ? 'true' : null } });
    dialog.close();
    await loadNames();
  } catch (err) {
    if (err && err.code === 'run_running') {
      pending.force = true;
      showError(new Error('Some of these runs are still running: what they send from now on would be dropped '
        + '(the jobs go on).'), $('name-error'));
      confirmButton.textContent = 'Delete anyway';
    } else {
      showError(err, $('name-error'));
    }
  } finally {
    confirmButton.disabled = false;
  }
});

async function loadNames() {
  const data = await api('/names/storage');
  const rows = data.names || [];
  $('storage-rows').replaceChildren(...rows.map((/** @type {any} */ row) => {
    const name = row.name === null ? h('span', { class: 'muted' }, 'Unnamed runs')
      : h('a', { href: '/?name=' + encodeURIComponent(row.name) }, row.name);
    let remove = null;
    if (row.name !== null) {
      remove = h('button', { type: 'button', class: 'quiet danger', 'aria-label': 'Delete the runs named ' + row.name },
        'Delete');
      remove.addEventListener('click', () => askToDelete(row));
    }
    return h('tr', { 'data-name': row.name ?? '' },
      h('th', { scope: 'row' }, name),
      h('td', {}, formatNumber(row.runs), row.archived ? h('span', { class: 'muted' }, ' (' + row.archived + ' archived)') : null),
      h('td', { title: row.bytes + ' bytes' }, formatBytes(row.bytes)),
      h('td', {}, formatNumber(row.lines)),
      h('td', {}, formatNumber(row.points)),
      h('td', {}, remove));
  }));
  $('storage-empty').hidden = rows.length > 0;
}

async function start() {
  try {
    showSettings(await api('/users/settings'));
    await loadNames();
  } catch (err) {
    showError(err);
  }
}

start();
