// @ts-check
// A running run's progress (a progress bar in its output, or exp.iter): a bar, the percent and
// the time left, which counts down between the server's updates.

import { h, formatDuration, formatNumber, parseTime } from './dom.js';

/**
 * A run's progress as the API gives it.
 * @typedef {{done: number, total: number | null, percent: number | null, rate: number | null,
 *   eta_s: number | null, elapsed_s: number | null, unit: string, source: string,
 *   updated_at: string | null}} Progress
 */

/**
 * Seconds left now: the ETA as of the progress's update, less the time since; null if unknown.
 * @param {Progress} progress
 * @param {number} [now]
 */
export function secondsLeft(progress, now = Date.now()) {
  if (progress.eta_s === null || progress.eta_s === undefined) return null;
  const at = parseTime(progress.updated_at);
  const since = at === null ? 0 : Math.max(0, (now - at) / 1000);
  return Math.max(0, progress.eta_s - since);
}

/**
 * "37% · 1m 45s left", or "370 it · 5.95 it/s" without a total.
 * @param {Progress} progress
 * @param {number} [now]
 */
export function progressText(progress, now = Date.now()) {
  const parts = [];
  if (progress.percent !== null && progress.percent !== undefined) {
    parts.push(Math.floor(progress.percent) + '%');
  } else {
    parts.push(formatNumber(progress.done) + ' ' + progress.unit);
    if (progress.rate) parts.push(formatNumber(Number(progress.rate.toPrecision(3))) + ' ' + progress.unit + '/s');
  }
  const left = secondsLeft(progress, now);
  if (left !== null && progress.percent !== 100) parts.push(formatDuration(left * 1000) + ' left');
  return parts.join(' · ');
}

/**
 * The progress of a running run: a bar and its text, or null when there is none to show.
 * @param {{status: string, progress?: Progress | null}} run
 * @returns {HTMLElement | null}
 */
export function progressView(run) {
  const progress = run.progress;
  if (!progress || run.status !== 'running') return null;
  const percent = progress.percent;
  const fill = h('span', { class: 'progress-fill' + (percent === null ? ' unknown' : '') });
  if (percent !== null) fill.style.width = Math.max(0, Math.min(100, percent)) + '%';
  const title = progress.source === 'iter' ? 'exp.iter' : 'progress bar';
  return h('span', { class: 'progress', title: `${formatNumber(progress.done)}`
      + (progress.total !== null ? ` of ${formatNumber(progress.total)}` : '') + ` ${progress.unit} (${title})` },
    h('span', {
      class: 'progress-track', role: 'progressbar', 'aria-label': 'Progress',
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': percent === null ? null : Math.floor(percent),
    }, fill),
    h('span', { class: 'progress-text' }, progressText(progress)),
  );
}

/**
 * Count the time left down in every progress view under `root`, from the runs they show.
 * @param {ParentNode} root
 * @param {(el: HTMLElement) => ({progress?: Progress | null} | undefined)} runOf
 */
export function tickProgress(root, runOf) {
  for (const el of /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll('.progress'))) {
    const run = runOf(el);
    const text = el.querySelector('.progress-text');
    if (run && run.progress && text) text.textContent = progressText(run.progress);
  }
}
