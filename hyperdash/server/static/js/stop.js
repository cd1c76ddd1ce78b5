// @ts-check
// Stop from the run page: a button for a running run, a confirmation that fits a phone, and
// who asked for the stop, from where.

import { api, sharedView } from './api.js';
import { formatClock, parseTime } from './dom.js';

const PLACES = { dashboard: 'the dashboard', cli: 'the command line', api: 'the API' };

/**
 * "Stopped by ann@example.com from the dashboard at 12:03:04", or "Stop requested by ..."
 * while the job has not stopped yet; '' when nobody asked.
 * @param {{status: string, stop?: {requested_at: string | null, by: string | null, via: string | null} | null}} run
 */
export function stopText(run) {
  const stop = run.stop;
  if (!stop) return '';
  const place = PLACES[stop.via] || 'afar';
  const at = parseTime(stop.requested_at);
  const when = at === null ? '' : ' at ' + formatClock(at);
  const who = stop.by || 'someone';
  if (run.status === 'running' || run.status === 'lost') return `Stop requested by ${who} from ${place}${when}`;
  if (run.status === 'user_canceled') return `Stopped by ${who} from ${place}${when}`;
  return `Stop requested by ${who} from ${place}${when}; the run ended by itself`;
}

/**
 * Wire up the Stop button and its confirmation; `render(run)` keeps them true to the run.
 * @param {{runUuid: string, button: HTMLElement, confirm: HTMLElement, yes: HTMLElement,
 *   no: HTMLElement, info: HTMLElement, onChange: (run: any) => void, onError: (err: any) => void}} o
 */
export function setUpStop(o) {
  let current = null;
  const close = () => { o.confirm.hidden = true; o.button.setAttribute('aria-expanded', 'false'); };
  o.button.addEventListener('click', () => {
    o.confirm.hidden = false;
    o.button.setAttribute('aria-expanded', 'true');
    o.yes.focus();
  });
  o.no.addEventListener('click', () => { close(); o.button.focus(); });
  o.yes.addEventListener('click', async () => {
    o.yes.setAttribute('disabled', '');
    try {
      const run = await api(`/runs/${encodeURIComponent(o.runUuid)}/stop`, { method: 'POST' });
      close();
      o.onChange(run);
    } catch (err) {
      close();
      o.onError(err);
    } finally {
      o.yes.removeAttribute('disabled');
    }
  });

  /** @param {any} run */
  function render(run) {
    current = run;
    const canStop = !sharedView && (current.status === 'running' || current.status === 'lost') && !current.stop;
    o.button.hidden = !canStop;
    if (!canStop) close();
    const text = stopText(current);
    o.info.textContent = text;
    o.info.hidden = !text;
  }
  return render;
}
