// @ts-check
// Metric charts (uPlot, vendored): one chart per metric of a run, growing as points arrive, and
// the charts that overlay the runs of a name, a colour per run. The x axis of a run's chart is
// the point's step, its index (the order it was logged in) or the time it was logged; by default
// the step when every point has one, else the time. Every chart can show its values on a log
// scale and smoothed (an exponential moving average), and shows the values under the pointer.

import { api } from './api.js';
import { h, formatClock, formatNumber } from './dom.js';
import { remember, remembered } from './prefs.js';

/** @type {any} uPlot's IIFE build, loaded by the page before this module */
const uPlot = /** @type {any} */ (window).uPlot;
const HEIGHT = 170;
const OVERLAY_HEIGHT = 220;
// Whole-number axes (steps, indexes): no ticks between them.
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5,
  1e6, 1e7, 1e8, 1e9];
// Seconds since a run started: ticks on round durations.
const ELAPSED_INCRS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600,
  12 * 3600, 86400, 2 * 86400, 7 * 86400];

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

/**
 * Seconds as a short duration: 0.25s, 45s, 12m30s, 3h05m.
 * @param {number | null | undefined} seconds
 */
export function formatElapsed(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const sign = seconds < 0 ? '-' : '';
  if (Math.abs(seconds) < 10 && !Number.isInteger(seconds)) return `${sign}${Number(Math.abs(seconds).toPrecision(3))}s`;
  let s = Math.round(Math.abs(seconds));
  if (s < 60) return `${sign}${s}s`;
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  s %= 60;
  if (!hours) return `${sign}${minutes}m${s ? String(s).padStart(2, '0') + 's' : ''}`;
  return `${sign}${hours}h${String(minutes).padStart(2, '0')}m`;
}

/**
 * An exponential moving average of `values` (nulls stay null and are skipped), debiased so that
 * the first values are not pulled towards zero. `weight` 0 is the values themselves; 0.99 is
 * very smooth.
 * @param {(number | null)[]} values
 * @param {number} weight
 * @returns {(number | null)[]}
 */
export function ema(values, weight) {
  if (!(weight > 0)) return values.slice();
  const out = new Array(values.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      out[i] = null;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    n += 1;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

/**
 * What a log scale can draw: values above zero (the rest become gaps).
 * @param {(number | null)[]} values
 * @param {boolean} log
 */
function drawable(values, log) {
  return log ? values.map((v) => (v !== null && v > 0 ? v : null)) : values;
}

/** @typedef {{log: boolean, smooth: number}} Look how every chart of a page draws its values */

/** The look remembered in this browser (log scale off, no smoothing at first). @returns {Look} */
export function rememberedLook() {
  const smooth = Number(remembered('chart-smooth', '0'));
  return { log: remembered('chart-log', 'off') === 'on', smooth: smooth >= 0 && smooth < 1 ? smooth : 0 };
}

/**
 * Wire a log-scale checkbox and a smoothing slider (0 to 0.99) to `onChange`, set as remembered.
 * @param {HTMLInputElement} logBox
 * @param {HTMLInputElement} smoothRange
 * @param {(look: Look) => void} onChange
 * @returns {Look}
 */
export function bindLookControls(logBox, smoothRange, onChange) {
  const look = rememberedLook();
  logBox.checked = look.log;
  smoothRange.value = String(look.smooth);
  const output = smoothRange.parentElement && smoothRange.parentElement.querySelector('output');
  const show = () => { if (output) output.textContent = Number(smoothRange.value).toFixed(2); };
  show();
  const changed = () => {
    const now = { log: logBox.checked, smooth: Number(smoothRange.value) };
    remember('chart-log', now.log ? 'on' : 'off');
    remember('chart-smooth', String(now.smooth));
    show();
    onChange(now);
  };
  logBox.addEventListener('change', changed);
  smoothRange.addEventListener('input', changed);
  return look;
}

/** How far a time axis reaches on either side of a chart's only moment, in seconds. */
const LONE_MOMENT_PAD = 30;

/**
 * The range of a time axis: as asked, or a minute around the points when they share one
 * moment (a metric logged once), which uPlot would stretch over a thousand days.
 * @param {any} u
 * @param {number | null} min
 * @param {number | null} max
 */
function timeRange(u, min, max) {
  const xs = u.data[0];
  if (!xs.length || xs[0] !== xs[xs.length - 1]) return [min, max];
  return [xs[0] - LONE_MOMENT_PAD, xs[0] + LONE_MOMENT_PAD];
}

/**
 * uPlot's axes for an x axis of `kind` ('time': the clock; 'elapsed': seconds since a start;
 * else whole numbers) and a y axis.
 * @param {string} kind
 */
function plotAxes(kind) {
  const muted = cssVar('--muted') || '#5d6673';
  const grid = cssVar('--border') || '#e1e4ea';
  const axis = {
    stroke: muted,
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1, size: 4 },
    font: '11px system-ui, sans-serif',
  };
  const values = (/** @type {any} */ u, /** @type {number[]} */ ticks) => ticks.map(tick);
  /** @type {any} */
  let x = { ...axis, space: 60, incrs: STEP_INCRS, values };
  if (kind === 'time') x = { ...axis, space: 60 };
  if (kind === 'elapsed') {
    x = { ...axis, space: 60, incrs: ELAPSED_INCRS,
      values: (/** @type {any} */ u, /** @type {number[]} */ ticks) => ticks.map(formatElapsed) };
  }
  return [x, { ...axis, size: 52, values }];
}

/**
 * A metric point; a NaN or infinite one has `value` null and `value_text` saying which.
 * @typedef {{name?: string, value: unknown, value_text?: string, step?: number | null, timestamp?: string}} Point
 */
/**
 * A metric's NaN and infinite points, which a series leaves out (GET /runs/{uuid}/metrics/{name}).
 * @typedef {{count: number, last: {value_text: string, step: number | null, timestamp: string}}} NonFinite
 */
/**
 * A rule that fired on a point (GET /runs/{uuid}/rules, or the run stream's `alert` event).
 * @typedef {{id: number, rule_id: number, description: string, metric: string, value: number | null,
 *   value_text: string, step: number | null, seq: number, timestamp: string}} Firing
 */
/** @typedef {'step' | 'index' | 'time'} Axis */
/** @typedef {'auto' | Axis} AxisChoice */

export const AXIS_CHOICES = /** @type {const} */ (['auto', 'step', 'index', 'time']);

/**
 * Whether point `a` was logged after point `b`: by time, then by step (two points of one
 * millisecond); `orSame`: a point of the same time and step counts as after.
 * @param {{timestamp?: string, step?: number | null}} a
 * @param {{timestamp?: string, step?: number | null}} b
 */
function isAfter(a, b, orSame = true) {
  const [ta, tb] = [Date.parse(a.timestamp || ''), Date.parse(b.timestamp || '')];
  if (ta !== tb) return ta > tb;
  const [sa, sb] = [a.step ?? -Infinity, b.step ?? -Infinity];
  return orSame ? sa >= sb : sa > sb;
}

class MetricChart {
  /**
   * @param {string} name
   * @param {Point[]} points
   * @param {AxisChoice} choice
   * @param {Look} [look]
   * @param {Firing[]} [firings] rules that fired on this metric, marked at their points
   */
  constructor(name, points, choice, look = { log: false, smooth: 0 }, firings = []) {
    this.name = name;
    this.choice = choice;
    this.look = look;
    /** @type {Firing[]} */
    this.firings = [...firings];
    /** @type {HTMLElement[]} */
    this.markers = [];
    /** @type {Point[]} every point with a number for a value, in the order logged */
    this.points = [];
    /** @type {Set<string>} each of those points' time, step and value: a copy of one is dropped */
    this.known = new Set();
    /** @type {number[]} */
    this.xs = [];
    /** @type {number[]} */
    this.ys = [];
    /** @type {NonFinite | null} its NaN and infinite points: no place on the line */
    this.nonfinite = null;
    this.latest = h('span', { class: 'latest' });
    this.plotBox = h('div', { class: 'chart-plot', role: 'img' });
    this.note = h('p', { class: 'chart-note', hidden: true });
    this.el = h('div', { class: 'chart', 'data-metric': name },
      h('div', { class: 'chart-head' }, h('h3', { title: name }, name), this.latest),
      this.note,
      this.plotBox,
    );
    this.el.dataset.log = String(look.log);
    this.el.dataset.smooth = String(look.smooth);
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
    if (typeof point.value !== 'number') {
      if (typeof point.value_text === 'string') this.addNonfinite(point.value_text, point);
      return;
    }
    // (the same point twice: sent again on the stream, or come live while its series loaded)
    const key = `${point.timestamp}|${point.step}|${point.value}`;
    if (this.known.has(key)) return;
    this.known.add(key);
    this.points.push(point);
    if (this.axisFor() !== this.axis) {
      this.rebuild();
      if (this.plot) this.remount();
    } else {
      this.insert(point, this.points.length - 1);
    }
    this.showLatest();
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

  /**
   * A NaN or infinite point that came live (`value` null, `value_text` saying which): counted,
   * unless it is no later than the last one known (a copy, or one the series counted already).
   * @param {string} text its value: NaN, Infinity or -Infinity
   * @param {Point} point
   */
  addNonfinite(text, point) {
    const last = { value_text: text, step: point.step ?? null, timestamp: point.timestamp || '' };
    const odd = this.nonfinite;
    if (odd && !isAfter(last, odd.last, false)) return;
    this.setNonfinite({ count: (odd ? odd.count : 0) + 1, last });
  }

  /**
   * The metric's NaN and infinite points, as its series told them.
   * @param {NonFinite | null | undefined} nonfinite
   */
  setNonfinite(nonfinite) {
    this.nonfinite = nonfinite || null;
    this.showLatest();
  }

  /** The last value beside the name (while the pointer is not on the chart). */
  showLatest() {
    const odd = this.nonfinite;
    // A metric with no number to draw (a loss NaN from its first step), or whose latest value is
    // not a number (a loss that diverged): its latest value, and a note, say so in words.
    const lastPoint = this.points[this.points.length - 1];
    const oddIsLatest = odd !== null && (!lastPoint || isAfter(odd.last, lastPoint));
    const lastNumber = lastPoint ? formatNumber(this.ys[this.ys.length - 1]) : '';
    this.latest.textContent = oddIsLatest ? odd.last.value_text : lastNumber;
    this.note.hidden = !oddIsLatest;
    if (odd) {
      this.el.dataset.nonfinite = String(odd.count);
      const points = `${odd.count} point${odd.count === 1 ? '' : 's'}`;
      const what = lastPoint ? `${points} NaN or infinite, not drawn; ` : `Every value is NaN or infinite: ${points}, `;
      this.note.textContent = what + `the last ${odd.last.value_text}` + (odd.last.step !== null ? ` at step ${odd.last.step}.` : '.');
    }
  }

  /**
   * The value under the pointer beside the name: "step 12: 0.53" (smoothed: "≈ 0.51").
   * @param {number | null | undefined} i the point's place, or nothing when the pointer left
   */
  showHovered(i) {
    if (i === null || i === undefined || i >= this.xs.length) {
      this.showLatest();
      return;
    }
    const x = this.xs[i];
    const at = this.axis === 'time' ? formatClock(x * 1000) : `${this.axis} ${formatNumber(x)}`;
    let text = `${at}: ${formatNumber(this.ys[i])}`;
    const smoothed = this.look.smooth > 0 && this.plot ? this.plot.data[2][i] : null;
    if (typeof smoothed === 'number') text += ` (\u2248 ${formatNumber(smoothed)})`;
    this.latest.textContent = text;
  }

  /** The plot's data: x, the values, and the values smoothed, as the look wants them. */
  data() {
    return [this.xs, drawable(this.ys, this.look.log), drawable(ema(this.ys, this.look.smooth), this.look.log)];
  }

  /** @param {Look} look */
  setLook(look) {
    this.look = look;
    this.el.dataset.log = String(look.log);
    this.el.dataset.smooth = String(look.smooth);
    if (this.plot) this.remount();
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
      this.plot.setData(this.data());
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
    const time = this.axis === 'time';
    const smooth = this.look.smooth > 0;
    this.plot = new uPlot({
      width: Math.max(this.plotBox.clientWidth, 200),
      height: HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
      scales: { x: time ? { time, range: timeRange } : { time }, y: this.look.log ? { distr: 3 } : {} },
      axes: plotAxes(this.axis),
      series: [
        {},
        {
          label: this.name,
          stroke: smooth ? withAlpha(accent, 0.3) : accent,
          width: smooth ? 1 : 2,
          fill: smooth ? undefined : withAlpha(accent, 0.12),
          points: { show: (/** @type {any} */ u) => u.data[0].length < 40 },
        },
        { label: 'smoothed', stroke: accent, width: 2, show: smooth, points: { show: false } },
      ],
      hooks: {
        draw: [(/** @type {any} */ u) => this.placeMarkers(u)],
        setCursor: [(/** @type {any} */ u) => this.showHovered(u.cursor.idx)],
      },
    }, this.data(), this.plotBox);
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
   * @param {Look} [o.look]          log scale and smoothing of every chart
   */
  constructor({ runUuid, container, empty, counter, onError, axis = 'auto', look = { log: false, smooth: 0 } }) {
    this.look = look;
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
    /** @type {NonFinite | null} */
    let nonfinite = null;
    try {
      const path = `/runs/${encodeURIComponent(this.runUuid)}/metrics/${encodeURIComponent(name)}`;
      const series = await api(path);
      points = series.points || [];
      nonfinite = series.nonfinite || null;
    } catch (err) {
      this.onError(err);
    }
    const waiting = this.loading.get(name) || [];
    const chart = new MetricChart(name, points.concat(waiting.filter((p) => typeof p.value === 'number')),
      this.axis, this.look, this.firings.filter((f) => f.metric === name));
    chart.setNonfinite(nonfinite);
    // (after the series' count: one that came while it loaded counts only if it is not in it)
    for (const p of waiting) if (typeof p.value !== 'number') chart.add(p);
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
   * Log scale and smoothing of every chart.
   * @param {Look} look
   */
  setLook(look) {
    this.look = look;
    for (const chart of this.charts.values()) chart.setLook(look);
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

/** Run colours, told apart in both themes; beyond ten they come round again. */
export const RUN_COLORS = ['#4f6bed', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8', '#0b7285', '#e0a800',
  '#5c940d', '#862e9c', '#495057'];

/** @typedef {{label: string, color: string, steps: (number | null)[], times: number[], values: number[]}} RunSeries */
/** @typedef {'step' | 'time'} OverlayAxis by step, or by time since each run started */

/**
 * (x, y) pairs sorted by x, one per x (the last recorded wins), points without an x left out.
 * @param {(number | null)[]} xs
 * @param {number[]} ys
 * @returns {[number[], number[]]}
 */
function byX(xs, ys) {
  const at = new Map();
  xs.forEach((x, i) => { if (typeof x === 'number') at.set(x, ys[i]); });
  const sorted = [...at.keys()].sort((a, b) => a - b);
  return [sorted, sorted.map((x) => at.get(x))];
}

/** One metric of several runs on one chart, a colour per run; the legend names each run. */
export class OverlayChart {
  /**
   * @param {string} metric
   * @param {RunSeries[]} runs
   * @param {OverlayAxis} axis
   * @param {Look} look
   */
  constructor(metric, runs, axis, look) {
    this.metric = metric;
    this.runs = runs;
    this.axis = axis;
    this.look = look;
    this.plotBox = h('div', { class: 'chart-plot', role: 'img' });
    this.el = h('div', { class: 'chart overlay-chart', 'data-metric': metric },
      h('div', { class: 'chart-head' }, h('h3', { title: metric }, metric)),
      this.plotBox,
    );
    /** @type {any} */
    this.plot = null;
    /** @type {ResizeObserver | null} */
    this.resizer = null;
  }

  /** The runs' series on one x axis (uPlot.join fills the gaps with nulls, drawn across). */
  data() {
    const tables = this.runs.map((run) => {
      const [xs, ys] = byX(this.axis === 'step' ? run.steps : run.times, run.values);
      return [xs, drawable(ema(ys, this.look.smooth), this.look.log)];
    });
    return uPlot.join(tables);
  }

  /** @param {HTMLElement} container */
  mount(container) {
    container.append(this.el);
    this.draw();
  }

  draw() {
    const data = this.data();
    const n = data[0].length;
    this.el.dataset.axis = this.axis;
    this.el.dataset.series = String(this.runs.length);
    this.el.dataset.log = String(this.look.log);
    this.el.dataset.smooth = String(this.look.smooth);
    this.plotBox.setAttribute('aria-label',
      `${this.metric} of ${this.runs.length} run${this.runs.length === 1 ? '' : 's'} by ${this.axis}`
      + (this.look.log ? ', log scale' : '') + (this.look.smooth > 0 ? `, smoothed ${this.look.smooth}` : ''));
    const xValue = this.axis === 'step'
      ? (/** @type {any} */ u, /** @type {number} */ x) => (x === null || x === undefined ? '' : 'step ' + formatNumber(x))
      : (/** @type {any} */ u, /** @type {number} */ x) => formatElapsed(x);
    this.plot = new uPlot({
      width: Math.max(this.plotBox.clientWidth, 200),
      height: OVERLAY_HEIGHT,
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
      scales: { x: { time: false }, y: this.look.log ? { distr: 3 } : {} },
      axes: plotAxes(this.axis === 'step' ? 'step' : 'elapsed'),
      series: [
        { label: this.axis, value: xValue },
        ...this.runs.map((run) => ({
          label: run.label,
          stroke: run.color,
          width: 1.5,
          spanGaps: true,
          points: { show: n < 40 },
          value: (/** @type {any} */ u, /** @type {number | null} */ v) => (v === null || v === undefined ? '—' : formatNumber(v)),
        })),
      ],
    }, data, this.plotBox);
    this.resizer = new ResizeObserver(() => {
      const width = this.plotBox.clientWidth;
      if (width > 0 && width !== this.plot.width) this.plot.setSize({ width, height: OVERLAY_HEIGHT });
    });
    this.resizer.observe(this.plotBox);
  }

  /**
   * Draw again on another axis or with another look.
   * @param {OverlayAxis} axis
   * @param {Look} look
   */
  redraw(axis, look) {
    this.axis = axis;
    this.look = look;
    this.destroy();
    this.draw();
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    if (this.resizer) this.resizer.disconnect();
    this.plot = null;
  }
}
