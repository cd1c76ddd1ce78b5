// @ts-check
// The owner's actions on a run's page: share it (read-only links), archive it, delete it after
// a confirmation. A shared page never loads this.

import { api } from './api.js';
import { h, formatFull, formatStart, parseTime } from './dom.js';

const page = /** @type {HTMLElement} */ (document.getElementById('run'));
const path = '/runs/' + encodeURIComponent(page.dataset.runUuid || '');
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * @param {HTMLElement} box
 * @param {unknown} err
 */
function showError(box, err) {
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

// --- delete ---------------------------------------------------------------------------------------

const deleteDialog = /** @type {HTMLDialogElement} */ ($('delete-dialog'));
const runningNote = $('delete-running');
const deleteError = $('delete-error');
const deleteButton = /** @type {HTMLButtonElement} */ ($('delete-confirm'));

function isRunning() {
  const badge = /** @type {HTMLElement | null} */ (document.querySelector('#run-status [data-status]'));
  return Boolean(badge && badge.dataset.status === 'running');
}

$('delete-open').addEventListener('click', () => {
  runningNote.hidden = !isRunning();
  deleteError.hidden = true;
  deleteButton.textContent = runningNote.hidden ? 'Delete' : 'Delete anyway';
  deleteDialog.showModal();
});
$('delete-cancel').addEventListener('click', () => deleteDialog.close());
deleteButton.addEventListener('click', async () => {
  deleteButton.disabled = true;
  try {
    // The warning was shown for a running run: confirming it is what forces the delete.
    await api(path, { method: 'DELETE', params: { force: runningNote.hidden ? null : 'true' } });
    window.location.assign('/');
  } catch (err) {
    if (err && err.code === 'run_running') {
      runningNote.hidden = false;
      deleteButton.textContent = 'Delete anyway';
    } else {
      showError(deleteError, err);
    }
  } finally {
    deleteButton.disabled = false;
  }
});

// --- archive --------------------------------------------------------------------------------------

const archive = $('archive');

/** @param {boolean} archived */
function showArchived(archived) {
  archive.setAttribute('aria-pressed', String(archived));
  archive.textContent = archived ? 'Unarchive' : 'Archive';
}

archive.addEventListener('click', async () => {
  const archived = archive.getAttribute('aria-pressed') === 'true';
  archive.setAttribute('aria-busy', 'true');
  try {
    const reply = await api(path + '/archive', { method: archived ? 'DELETE' : 'POST' });
    showArchived(reply.archived);
  } catch (err) {
    showError($('run-error'), err);
  } finally {
    archive.removeAttribute('aria-busy');
  }
});

// Archived or brought back elsewhere (another tab, the command line): the run's page follows.
document.addEventListener('hyperdash:run', (event) => {
  const run = /** @type {CustomEvent} */ (event).detail;
  if (run && typeof run.archived === 'boolean') showArchived(run.archived);
});

// --- share ----------------------------------------------------------------------------------------

const shareDialog = /** @type {HTMLDialogElement} */ ($('share-dialog'));
const shareError = $('share-error');
const shareUrl = /** @type {HTMLInputElement} */ ($('share-url'));
const shareList = $('share-list');

async function loadShares() {
  const data = await api(path + '/shares');
  const shares = data.shares || [];
  shareList.replaceChildren(...shares.map((/** @type {{id: number, created_at: string}} */ share) => {
    const made = parseTime(share.created_at);
    const revoke = h('button', { type: 'button', class: 'quiet danger', 'data-share': share.id }, 'Revoke');
    revoke.addEventListener('click', async () => {
      try {
        await api(path + '/shares/' + share.id, { method: 'DELETE' });
        await loadShares();
      } catch (err) {
        showError(shareError, err);
      }
    });
    return h('li', {}, h('span', { title: formatFull(made) }, 'Link made ' + formatStart(made)), revoke);
  }));
  if (!shares.length) shareList.replaceChildren(h('li', { class: 'empty' }, 'No live links.'));
}

$('share-open').addEventListener('click', async () => {
  shareError.hidden = true;
  $('share-new').hidden = true;
  shareDialog.showModal();
  try { await loadShares(); } catch (err) { showError(shareError, err); }
});
$('share-close').addEventListener('click', () => shareDialog.close());
$('share-create').addEventListener('click', async () => {
  try {
    const made = await api(path + '/shares', { method: 'POST' });
    shareUrl.value = made.url;
    $('share-new').hidden = false;
    shareUrl.select();
    await loadShares();
  } catch (err) {
    showError(shareError, err);
  }
});
$('share-copy').addEventListener('click', async () => {
  shareUrl.select();
  try {
    await navigator.clipboard.writeText(shareUrl.value);
    $('share-copy').textContent = 'Copied';
  } catch {
    // (no clipboard here, as on a plain-http address: the link is selected to copy by hand)
  }
});
