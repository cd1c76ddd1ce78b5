// @ts-check
// A run's alerts panel: the rules that watch its metrics (its own and its name's), each time one
// fired (also marked on the metric's chart), a form to add a rule, and the run's stall window,
// which can be set for every run of its name. A shared link's page shows the rules and firings
// alone, to read.

import { api } from './api.js';
import { h, formatFull, formatDuration, parseTime } from './dom.js';

/** @typedef {import('./charts.js').Firing} Firing */

/** How a rule's kind reads in the form, and which number it takes. */
const KINDS = {
  nan: { field: null },
  above: { field: 'above' },
  below: { field: 'below' },
  patience: { field: 'patience' },
  minutes: { field: 'minutes' },
};

const STALL_SOURCES = { run: 'set by the job', name: 'set for every run of this name', server: "the server's default" };

export class Trouble {
  /**
   * @param {object} o
   * @param {string} o.runUuid
   * @param {string | null} o.runName
   * @param {import('./charts.js').Charts} o.charts where firings are marked
   * @param {(err: unknown) => void} o.onError
   * @param {boolean} [o.readOnly] no forms, no deleting, no stall window (a shared link's page)
   */
  constructor({ runUuid, runName, charts, onError, readOnly = false }) {
    this.runUuid = runUuid;
    this.readOnly = readOnly;
    this.runName = runName;
    this.charts = charts;
    this.onError = onError;
    /** @type {any[]} */
    this.rules = [];
    /** @type {Firing[]} */
    this.firings = [];
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.els = {
      firings: $('firings'), firingsEmpty: $('firings-empty'), count: $('alerts-count'),
      rules: $('rules'), rulesEmpty: $('rules-empty'),
      form: /** @type {HTMLFormElement} */ ($('rule-form')), formError: $('rule-error'),
      stallInfo: $('stall-info'), stallForm: /** @type {HTMLFormElement} */ ($('stall-form')),
      stallError: $('stall-error'),
    };
    if (!readOnly) this.setUpForms();
  }

  get base() {
    return `/runs/${encodeURIComponent(this.runUuid)}`;
  }

  async load() {
    try {
      const [found, stall] = await Promise.all([
        api(this.base + '/rules'), this.readOnly ? null : api(this.base + '/stall')]);
      this.rules = found.rules;
      for (const firing of found.firings) this.fired(firing);
      this.renderRules();
      if (stall) this.renderStall(stall);
    } catch (err) {
      this.onError(err);
    }
  }

  /**
   * A rule fired (as loaded, or live from the run's stream).
   * @param {Firing} firing
   */
  fired(firing) {
    if (!firing || this.firings.some((f) => f.id === firing.id)) return;
    this.firings.push(firing);
    this.charts.alert(firing);
    this.renderFirings();
  }

  renderFirings() {
    const items = [...this.firings].reverse().map((f) => h('li', { 'data-firing': f.id },
      h('span', { class: 'what' }, f.description),
      h('span', { class: 'where' }, `${f.value_text}${f.step !== null ? ' at step ' + f.step : ''}`),
      h('time', { datetime: f.timestamp, title: formatFull(parseTime(f.timestamp)) },
        new Date(parseTime(f.timestamp) ?? 0).toLocaleTimeString()),
    ));
    this.els.firings.replaceChildren(...items);
    this.els.firingsEmpty.hidden = items.length > 0;
    this.els.count.textContent = String(this.firings.length);
  }

  renderRules() {
    const items = this.rules.map((rule) => {
      let remove = null;
      if (!this.readOnly) {
        remove = h('button', { type: 'button', class: 'quiet', title: 'Delete this rule' }, 'Delete');
        remove.addEventListener('click', () => this.remove(rule.id));
      }
      return h('li', { 'data-rule': rule.id },
        h('span', { class: 'what' }, rule.description),
        h('span', { class: 'scope' }, rule.scope === 'name' ? `every run of ${rule.name}` : 'this run'),
        remove,
      );
    });
    this.els.rules.replaceChildren(...items);
    this.els.rulesEmpty.hidden = items.length > 0;
  }

  /** @param {{stall_after_s: number, source: string}} stall */
  renderStall(stall) {
    const window = stall.stall_after_s > 0 ? formatDuration(stall.stall_after_s * 1000) : 'never';
    this.els.stallInfo.textContent = `Stalled after ${window} without progress (${STALL_SOURCES[stall.source] || stall.source}).`;
    this.els.stallInfo.dataset.source = stall.source;
    this.els.stallForm.hidden = !this.runName;
  }

  /** @param {number} ruleId */
  async remove(ruleId) {
    try {
      await api(`/rules/${ruleId}`, { method: 'DELETE' });
      this.rules = this.rules.filter((r) => r.id !== ruleId);
      this.renderRules();
    } catch (err) {
      this.onError(err);
    }
  }

  setUpForms() {
    const form = this.els.form;
    const field = (/** @type {string} */ name) => /** @type {HTMLInputElement} */ (form.elements.namedItem(name));
    const kind = /** @type {HTMLSelectElement} */ (form.elements.namedItem('kind'));
    const every = field('every');
    if (this.runName) {
      /** @type {HTMLElement} */ (form.querySelector('.every-name')).textContent = this.runName;
    } else {
      /** @type {HTMLElement} */ (form.querySelector('.every')).hidden = true;
    }
    const sync = () => {
      const which = KINDS[kind.value] || KINDS.nan;
      field('value').hidden = which.field === null;
      field('value').required = which.field !== null;
      /** @type {HTMLElement} */ (form.querySelector('.mode')).hidden = !['patience', 'minutes'].includes(kind.value);
    };
    kind.addEventListener('change', sync);
    sync();
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const which = KINDS[kind.value] || KINDS.nan;
      /** @type {Record<string, unknown>} */
      const body = { metric: field('metric').value.trim() };
      if (which.field === null) body.nan = true;
      else body[which.field] = Number(field('value').value);
      if (['patience', 'minutes'].includes(kind.value)) {
        body.mode = /** @type {HTMLSelectElement} */ (form.elements.namedItem('mode')).value;
      }
      const toName = every.checked && this.runName;
      if (toName) body.name = this.runName;
      try {
        const rule = await api(toName ? '/rules' : this.base + '/rules', { method: 'POST', body });
        if (!this.rules.some((r) => r.id === rule.id)) this.rules.push(rule);
        this.renderRules();
        this.els.formError.hidden = true;
        field('value').value = '';
      } catch (err) {
        this.els.formError.textContent = err.message;
        this.els.formError.hidden = false;
      }
    });
    this.els.stallForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      const input = /** @type {HTMLInputElement} */ (this.els.stallForm.elements.namedItem('window'));
      try {
        await api(`/stalls/${encodeURIComponent(this.runName || '')}`, {
          method: 'PUT', body: { stall_after_s: input.value.trim() },
        });
        this.renderStall(await api(this.base + '/stall'));
        this.els.stallError.hidden = true;
      } catch (err) {
        this.els.stallError.textContent = err.message;
        this.els.stallError.hidden = false;
      }
    });
  }
}
