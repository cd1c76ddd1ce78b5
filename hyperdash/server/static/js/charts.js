// One chart per metric of a run (uPlot, vendored), growing as points arrive.

import { api } from './api.js';
import { h, formatNumber } from './dom.js';

const uPlot = window.uPlot;
const HEIGHT = 170;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** "#4f46e5" -> "rgba(79,70,229,a)"; other colour strings are returned as they are. */
function withAlpha(color, alpha) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
}

/** Short tick labels: 1.2k, 3.4M, 0.0012. */
function tick(value) {
  if (value === null || value === undefined) return '';
  const abs = Math.abs(value);
  if (abs >= 1e9) return (value / 1e9).toPrecision(3) + 'G';
  if (abs >= 1e6) return (value / 1e6).toPrecision(3) + 'M';
  if (abs >= 1e4) return (value / 1e3).toPrecision(3) + 'k';
  return formatNumber(value);
}

class MetricChart {
  constructor(name, points) {
    this.name = name;
    // Steps on the x axis when every point has one, else the time it was measured.
    this.bySteps = points.length > 0 && points.every((p) => typeof p.step === 'number');
    this.xs = [];
    this.ys = [];
    this.latest = h('span', { class: 'latest' });
    this.plotBox = h('div', { class: 'chart-plot' });
    this.el = h('div', { class: 'chart', 'data-metric': name },
      h('div', { class: 'chart-head' }, h('h3', { title: name }, name), this.latest),
      this.plotBox,
    );
    for (const p of points) this.insert(p);
    this.redrawQueued = false;
    this.plot = null;
  }

  xOf(point) {
    if (this.bySteps) {
      if (typeof point.step === 'number') return point.step;
      return this.xs.length ? this.xs[this.xs.length - 1] + 1 : 0;
    }
    const t = Date.parse(point.timestamp);
    return Number.isNaN(t) ? Date.now() / 1000 : t / 1000;
  }

  insert(point) {
    if (typeof point.value !== 'number') return;
    const x = this.xOf(point);
    let i = this.xs.length;
    if (i && this.xs[i - 1] > x) {
      // Rare: a point out of order. Keep x ascending, as the chart needs.
      i = this.xs.findIndex((v) => v > x);
    }
    if (i > 0 && this.xs[i - 1] === x) {
      this.ys[i - 1] = point.value;
    } else {
      this.xs.splice(i, 0, x);
      this.ys.splice(i, 0, point.value);
    }
    this.latest.textContent = formatNumber(this.ys[this.ys.length - 1]);
    this.el.dataset.points = String(this.xs.length);
  }

  mount(container) {
    container.append(this.el);
    const accent = cssVar('--accent') || '#4f46e5';
    const muted = cssVar('--muted') || '#5d6673';
    const grid = cssVar('--border') || '#e1e4ea';
    const axis = {
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1, size: 4 },
      font: '11px system-ui, sans-serif',
    };
    this.plot = new uPlot({
      width: Math.max(this.plotBox.clientWidth, 200),
      height: HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
      scales: { x: { time: !this.bySteps } },
      axes: [
        { ...axis, space: 60 },
        { ...axis, size: 52, values: (u, values) => values.map(tick) },
      ],
      series: [
        {},
        {
          label: this.name,
          stroke: accent,
          width: 2,
          fill: withAlpha(accent, 0.12),
          points: { show: (u) => u.data[0].length < 40 },
        },
      ],
    }, [this.xs, this.ys], this.plotBox);
    new ResizeObserver(() => {
      const width = this.plotBox.clientWidth;
      if (width > 0 && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
    }).observe(this.plotBox);
  }

  add(point) {
    this.insert(point);
    if (this.redrawQueued) return;
    this.redrawQueued = true;
    requestAnimationFrame(() => {
      this.redrawQueued = false;
      this.plot.setData([this.xs, this.ys]);
    });
  }
}

export class Charts {
  constructor({ runUuid, container, empty, counter, onError }) {
    Object.assign(this, { runUuid, container, empty, counter, onError });
    this.charts = new Map(); // metric name -> MetricChart
    this.loading = new Map(); // metric name -> points that came while its series loaded
  }

  /** Fetch each metric's series and draw it. */
  async load(names) {
    await Promise.all([...names].sort().map((name) => this.open(name)));
  }

  async open(name) {
    if (this.charts.has(name) || this.loading.has(name)) return;
    this.loading.set(name, []);
    let points = [];
    try {
      const path = `/runs/${encodeURIComponent(this.runUuid)}/metrics/${encodeURIComponent(name)}`;
      points = (await api(path)).points || [];
    } catch (err) {
      this.onError(err);
    }
    const chart = new MetricChart(name, points.concat(this.loading.get(name)));
    this.loading.delete(name);
    this.charts.set(name, chart);
    this.place(chart);
  }

  /** Charts in name order. */
  place(chart) {
    const after = [...this.charts.keys()].filter((n) => n > chart.name).sort()[0];
    const next = after && this.charts.get(after).el.isConnected ? this.charts.get(after).el : null;
    chart.mount(this.container);
    if (next) this.container.insertBefore(chart.el, next);
    this.empty.hidden = true;
    this.counter.textContent = String(this.charts.size);
  }

  /** A point from the event stream: {name, value, step, timestamp}. */
  point(point) {
    if (!point || typeof point.name !== 'string') return;
    const chart = this.charts.get(point.name);
    if (chart) chart.add(point);
    else if (this.loading.has(point.name)) this.loading.get(point.name).push(point);
    else this.open(point.name);
  }
}
