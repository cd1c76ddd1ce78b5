// @ts-check
// One chart per metric of a run (uPlot, vendored), growing as points arrive. The x axis is the
// point's step, its index (the order it was logged in) or the time it was logged; by default
// the step when every point has one, else the time.

import { api } from './api.js';
import { h, formatClock, formatNumber } from './dom.js';

/** @type {any} uPlot's IIFE build, loaded by the page before this module */
const uPlot = /** @type {any} */ (window).uPlot;
const HEIGHT = 170;

/** @param {string} name */
function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/**
 * "#4f46e5" -> "rgba(79,70,229,a)"; other colour strings are returned as they are.
 * @param {string} color
 * @param {number} alpha
 */
function withAlpha(color, alpha) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
}

/**
 * Short tick labels: 1.2k, 3.4M, 0.0012.
 * @param {number | null | undefined} value
 */
function tick(value) {
  if (value === null || value === undefined) return '';
  const abs = Math.abs(value);
  if (abs >= 1e9) return (value / 1e9).toPrecision(3) + 'G';
  if (abs >= 1e6) return (value / 1e6).toPrecision(3) + 'M';
  if (abs >= 1e4) return (value / 1e3).toPrecision(3) + 'k';
  return formatNumber(value);
}

/** @typedef {{name?: string, value: unknown, step?: number | null, timestamp?: string}} Point */
/**
 * A rule that fired on a point (GET /runs/{uuid}/rules, or the run stream's `alert` event).
 * @typedef {{id: number, rule_id: number, description: string, metric: string, value: number | null,
 *   value_text: string, step: number | null, seq: number, timestamp: string}} Firing
 */
/** @typedef {'step' | 'index' | 'time'} Axis */
/** @typedef {'auto' | Axis} AxisChoice */

export const AXIS_CHOICES = /** @type {const} */ (['auto', 'step', 'index', 'time']);

class MetricChart {
  /**
   * @param {string} name
   * @param {Point[]} points
   * @param {AxisChoice} choice
   * @param {Firing[]} [firings] rules that fired on this metric, marked at their points
   */
  constructor(name, points, choice, firings = []) {
    this.name = name;
    this.choice = choice;
    /** @type {Firing[]} */
    this.firings = [...firings];
    /** @type {HTMLElement[]} */
    this.markers = [];
    /** @type {Point[]} every point with a number for a value, in the order logged */
    this.points = [];
    /** @type {number[]} */
    this.xs = [];
    /** @type {number[]} */
    this.ys = [];
    this.latest = h('span', { class: 'latest' });
    this.plotBox = h('div', { class: 'chart-plot', role: 'img' });
    this.el = h('div', { class: 'chart', 'data-metric': name },
      h('div', { class: 'chart-head' }, h('h3', { title: name }, name), this.latest),
      this.plotBox,
    );
    this.redrawQueued = false;
    /** @type {any} */
    this.plot = null;
    /** @type {ResizeObserver | null} */
    this.resizer = null;
    this.axis = this.axisFor();
    for (const p of points) this.add(p, false);
    this.describe();
  }

  /** Steps when every point has one: a chart without any is drawn against the clock.
   * @returns {Axis} */
  axisFor() {
    if (this.choice !== 'auto') return this.choice;
    const steps = this.points.length > 0 && this.points.every((p) => typeof p.step === 'number');
    return steps ? 'step' : 'time';
  }

  /**
   * @param {Point} point
   * @param {number} index its place among the points
   */
  xOf(point, index) {
    if (this.axis === 'index') return index;
    if (this.axis === 'step') {
      if (typeof point.step === 'number') return point.step;
      return this.xs.length ? this.xs[this.xs.length - 1] + 1 : index;
    }
    const t = Date.parse(point.timestamp || '');
    return Number.isNaN(t) ? Date.now() / 1000 : t / 1000;
  }

  /**
   * @param {Point} point
   * @param {number} index
   */
  insert(point, index) {
    const value = /** @type {number} */ (point.value);
    const x = this.xOf(point, index);
    let i = this.xs.length;
    if (i && this.xs[i - 1] > x) {
      // Rare: a point out of order. Keep x ascending, as the chart needs.
      i = this.xs.findIndex((v) => v > x);
    }
    if (i > 0 && this.xs[i - 1] === x) {
      this.ys[i - 1] = value;
    } else {
      this.xs.splice(i, 0, x);
      this.ys.splice(i, 0, value);
    }
  }

  /** x and y of every point again, for the axis of now. */
  rebuild() {
    this.axis = this.axisFor();
    this.xs = [];
    this.ys = [];
    this.points.forEach((p, i) => this.insert(p, i));
    this.describe();
  }

  /**
   * A point more; the chart is redrawn on the next frame when `draw`.
   * @param {Point} point
   * @param {boolean} [draw]
   */
  add(point, draw = true) {
    if (typeof point.value !== 'number') return;
    this.points.push(point);
    if (this.axisFor() !== this.axis) {
      this.rebuild();
      if (this.plot) this.remount();
    } else {
      this.insert(point, this.points.length - 1);
    }
    this.latest.textContent = formatNumber(this.ys[this.ys.length - 1]);
    this.el.dataset.points = String(this.xs.length);
    this.describe();
    if (draw && this.plot) this.redraw();
  }

  /**
   * A rule fired on this metric: a marker at its point.
   * @param {Firing} firing
   */
  alert(firing) {
    if (this.firings.some((f) => f.id === firing.id)) return;
    this.firings.push(firing);
    this.placeMarkers();
  }

  /**
   * Where a firing's point lies on the x axis (a NaN point has no place on the line: it is
   * put where it came, between its neighbours).
   * @param {Firing} firing
   */
  firingX(firing) {
    if (this.axis === 'time') return Date.parse(firing.timestamp) / 1000;
    if (this.axis === 'step' && typeof firing.step === 'number') return firing.step;
    const before = this.points.filter((p) => (p.timestamp || '') <= firing.timestamp).length;
    return Math.max(0, before - 1);
  }

  /**
   * The markers of the rules that fired, over the plot at their points (after each draw).
   * @param {any} [u] the plot (its draw hook runs before the constructor has returned it)
   */
  placeMarkers(u = this.plot) {
    for (const marker of this.markers) marker.remove();
    this.markers = [];
    this.el.dataset.alerts = String(this.firings.length);
    if (!u) return;
    for (const firing of this.firings) {
      const y = typeof firing.value === 'number' ? firing.value : u.scales.y.max;
      const left = u.valToPos(this.firingX(firing), 'x');
      const top = u.valToPos(y ?? 0, 'y');
      const marker = h('span', {
        class: 'alert-marker' + (typeof firing.value === 'number' ? '' : ' nonfinite'),
        role: 'img',
        'data-firing': firing.id,
        title: `${firing.description}: ${firing.value_text}` + (firing.step !== null ? ` at step ${firing.step}` : ''),
        'aria-label': firing.description,
      });
      // (positions through the CSSOM: the page's CSP allows no inline style attribute)
      marker.style.left = `${Number.isFinite(left) ? left : 0}px`;
      marker.style.top = `${Number.isFinite(top) ? top : 0}px`;
      u.over.append(marker);
      this.markers.push(marker);
    }
  }

  /** What the chart shows, in words, for screen readers. */
  describe() {
    this.el.dataset.axis = this.axis;
    const n = this.xs.length;
    /** @param {number} x */
    const at = (x) => (this.axis === 'time' ? formatClock(x * 1000) : formatNumber(x));
    const range = n ? `, ${this.axis} ${at(this.xs[0])} to ${at(this.xs[n - 1])}` : '';
    const label = `${this.name} by ${this.axis}: ${n} point${n === 1 ? '' : 's'}${range}`;
    this.plotBox.setAttribute('aria-label', label);
  }

  redraw() {
    if (this.redrawQueued) return;
    this.redrawQueued = true;
    requestAnimationFrame(() => {
      this.redrawQueued = false;
      this.plot.setData([this.xs, this.ys]);
    });
  }

  /** @param {AxisChoice} choice */
  setChoice(choice) {
    this.choice = choice;
    if (this.axisFor() === this.axis) return;
    this.rebuild();
    this.remount();
  }

  /** A new plot in place of the old one: uPlot cannot turn a time scale into a numeric one. */
  remount() {
    if (this.plot) this.plot.destroy();
    if (this.resizer) this.resizer.disconnect();
    this.draw();
  }

  /** @param {HTMLElement} container */
  mount(container) {
    container.append(this.el);
    this.draw();
  }

  draw() {
    const accent = cssVar('--accent') || '#4f46e5';
    const muted = cssVar('--muted') || '#5d6673';
    const grid = cssVar('--border') || '#e1e4ea';
    const axis = {
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1, size: 4 },
      font: '11px system-ui, sans-serif',
    };
    const time = this.axis === 'time';
    this.plot = new uPlot({
      width: Math.max(this.plotBox.clientWidth, 200),
      height: HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
      scales: { x: { time } },
      axes: [
        // Steps and indexes are whole numbers: no ticks between them.
        time ? { ...axis, space: 60 } : { ...axis, space: 60, incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500,
          1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7, 1e8, 1e9],
        values: (/** @type {any} */ u, /** @type {number[]} */ values) => values.map(tick) },
        { ...axis, size: 52, values: (/** @type {any} */ u, /** @type {number[]} */ values) => values.map(tick) },
      ],
      series: [
        {},
        {
          label: this.name,
          stroke: accent,
          width: 2,
          fill: withAlpha(accent, 0.12),
          points: { show: (/** @type {any} */ u) => u.data[0].length < 40 },
        },
      ],
      hooks: { draw: [(/** @type {any} */ u) => this.placeMarkers(u)] },
    }, [this.xs, this.ys], this.plotBox);
    this.resizer = new ResizeObserver(() => {
      const width = this.plotBox.clientWidth;
      if (width > 0 && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
    });
    this.resizer.observe(this.plotBox);
  }
}

export class Charts {
  /**
   * @param {object} o
   * @param {string} o.runUuid
   * @param {HTMLElement} o.container where the charts go
   * @param {HTMLElement} o.empty     "No metrics yet"
   * @param {HTMLElement} o.counter   the number of charts
   * @param {(err: unknown) => void} o.onError
   * @param {AxisChoice} [o.axis]    the x axis of every chart
   */
  constructor({ runUuid, container, empty, counter, onError, axis = 'auto' }) {
    this.runUuid = runUuid;
    this.container = container;
    this.empty = empty;
    this.counter = counter;
    this.onError = onError;
    this.axis = axis;
    /** @type {Map<string, MetricChart>} metric name -> its chart */
    this.charts = new Map();
    /** @type {Map<string, Point[]>} metric name -> points that came while its series loaded */
    this.loading = new Map();
    /** @type {Firing[]} every rule that fired on the run, for the charts to come too */
    this.firings = [];
  }

  /**
   * A rule fired: a marker on its metric's chart (now, or when the chart is drawn).
   * @param {Firing} firing
   */
  alert(firing) {
    if (!firing || this.firings.some((f) => f.id === firing.id)) return;
    this.firings.push(firing);
    this.charts.get(firing.metric)?.alert(firing);
  }

  /**
   * Fetch each metric's series and draw it.
   * @param {Iterable<string>} names
   */
  async load(names) {
    await Promise.all([...names].sort().map((name) => this.open(name)));
  }

  /** @param {string} name */
  async open(name) {
    if (this.charts.has(name) || this.loading.has(name)) return;
    this.loading.set(name, []);
    /** @type {Point[]} */
    let points = [];
    try {
      const path = `/runs/${encodeURIComponent(this.runUuid)}/metrics/${encodeURIComponent(name)}`;
      points = (await api(path)).points || [];
    } catch (err) {
      this.onError(err);
    }
    const chart = new MetricChart(name, points.concat(this.loading.get(name) || []), this.axis,
      this.firings.filter((f) => f.metric === name));
    this.loading.delete(name);
    this.charts.set(name, chart);
    this.place(chart);
  }

  /**
   * Charts in name order.
   * @param {MetricChart} chart
   */
  place(chart) {
    const after = [...this.charts.keys()].filter((n) => n > chart.name).sort()[0];
    const next = after ? this.charts.get(after)?.el : null;
    chart.mount(this.container);
    if (next && next.isConnected) this.container.insertBefore(chart.el, next);
    this.empty.hidden = true;
    this.counter.textContent = String(this.charts.size);
  }

  /**
   * The x axis of every chart: 'auto' (steps when each point has one, else time), or one.
   * @param {AxisChoice} axis
   */
  setAxis(axis) {
    this.axis = axis;
    for (const chart of this.charts.values()) chart.setChoice(axis);
  }

  /**
   * A point from the event stream: {name, value, step, timestamp}.
   * @param {Point} point
   */
  point(point) {
    if (!point || typeof point.name !== 'string') return;
    const chart = this.charts.get(point.name);
    const waiting = this.loading.get(point.name);
    if (chart) chart.add(point);
    else if (waiting) waiting.push(point);
    else this.open(point.name);
  }
}
