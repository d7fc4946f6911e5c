// The symbol page: a candlestick chart with volume, overlays (SMA 20, EMA 20, Bollinger
// 20/2), RSI 14 and MACD 12/26/9 panes computed here on the chart's interval, anomaly
// markers, and the live panel fed by /ws/stocks/{symbol}.

import {
  CandlestickSeries,
  HistogramSeries,
  LineSeries,
  createChart,
  createSeriesMarkers,
} from "lightweight-charts";
import { Feed } from "./feed.js";
import * as fmt from "./format.js";
import * as studies from "./studies.js";

const initial = JSON.parse(document.getElementById("symbol-initial").textContent);
const SYMBOL = initial.symbol;
const LIMIT = initial.limit;
const STEP_S = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400 };
const container = document.querySelector("[data-chart]");

const toTime = (iso) => Math.floor(Date.parse(iso) / 1000);
// Buckets: 1m to 1h align to epoch multiples, 1d to 00:00 UTC (also an epoch multiple).
const bucketOf = (seconds, interval) => Math.floor(seconds / STEP_S[interval]) * STEP_S[interval];

function palette() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    bg: v("--bg"), fg: v("--fg"), grid: v("--line"), up: v("--up"), down: v("--down"),
    muted: v("--muted"), sma: v("--study-sma"), ema: v("--study-ema"), bb: v("--study-bb"),
    rsi: v("--study-rsi"), macd: v("--study-macd"), signal: v("--study-signal"),
    anomaly: v("--anomaly"),
  };
}

function chartOptions(p) {
  return {
    autoSize: true,
    // No logo: the library adds it with a <style> element, which the content security
    // policy refuses; the page credits TradingView in words instead (symbol.html).
    layout: { background: { type: "solid", color: p.bg }, textColor: p.fg,
      panes: { separatorColor: p.grid }, attributionLogo: false },
    grid: { vertLines: { color: p.grid }, horzLines: { color: p.grid } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: p.grid },
    rightPriceScale: { borderColor: p.grid },
  };
}

let colors = palette();
const chart = createChart(container, chartOptions(colors));
const line = (color, pane = 0, extra = {}) =>
  chart.addSeries(LineSeries, { color, lineWidth: 1.5, priceLineVisible: false,
    lastValueVisible: false, crosshairMarkerVisible: false, ...extra }, pane);

// Prices at the tick size on the axis too: 2 decimals from $1.00, 4 below (format.js).
const lastClose = initial.candles.at(-1)?.close ?? initial.live.price ?? 1;
const decimals = fmt.priceDecimals(lastClose);
const candleSeries = chart.addSeries(CandlestickSeries, {
  upColor: colors.up, downColor: colors.down, borderUpColor: colors.up,
  borderDownColor: colors.down, wickUpColor: colors.up, wickDownColor: colors.down,
  priceFormat: { type: "price", precision: decimals, minMove: 10 ** -decimals },
});
// Volume on its own scale: a short band along the bottom of the price pane, below the candles.
candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.18 } });
const volumeSeries = chart.addSeries(HistogramSeries,
  { priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false,
    priceLineVisible: false }, 0);
volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.86, bottom: 0 } });
// Bollinger first and SMA 20 last: the SMA is the band's middle line, drawn on top of it
// (the middle dashed in the band's colour), so both stay visible.
const overlays = {
  bb: [line(colors.bb), line(colors.bb, 0, { lineStyle: 2, lineWidth: 1 }), line(colors.bb)],
  ema: [line(colors.ema)],
  sma: [line(colors.sma, 0, { lineWidth: 2 })],
};
// RSI on a fixed 0-100 scale; its 30/70 guides are labelled in the pane, not on the axis,
// where they covered the axis labels.
const rsiSeries = line(colors.rsi, 1, { lastValueVisible: true,
  autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 100 } }) });
const guides = [70, 30].map((price) =>
  rsiSeries.createPriceLine({ price, color: colors.muted, lineWidth: 1, lineStyle: 2,
    axisLabelVisible: false, title: String(price) }));
const macdHist = chart.addSeries(HistogramSeries, { priceLineVisible: false,
  lastValueVisible: false }, 2);
const macdLine = line(colors.macd, 2);
const macdSignal = line(colors.signal, 2);
const markers = createSeriesMarkers(candleSeries, []);
const [pricePane, rsiPane, macdPane] = chart.panes();
pricePane.setStretchFactor(3);
rsiPane.setStretchFactor(1);
macdPane.setStretchFactor(1);

let interval = initial.interval;
let candles = [];
const anomalies = new Set(initial.anomalies.map(toTime)); // seconds of anomalous ticks

const volumeBar = (c) => ({ time: c.time, value: c.volume,
  color: c.close >= c.open ? `${colors.up}80` : `${colors.down}80` });
const point = (time, value) => (value === null ? { time } : { time, value });

// Studies: computed over the closes; `last` redraws only the newest point (a live tick).
let values = {}; // the studies' arrays, for the legend
function drawStudies(onlyLast = false) {
  const closes = candles.map((c) => c.close);
  const times = candles.map((c) => c.time);
  const bb = studies.bollinger(closes, 20, 2);
  const m = studies.macd(closes, 12, 26, 9);
  values = { bb, m, sma: studies.sma(closes, 20), ema: studies.ema(closes, 20),
    rsi: studies.rsi(closes, 14) };
  const lines = [
    [overlays.sma[0], values.sma],
    [overlays.ema[0], values.ema],
    [overlays.bb[0], bb.upper], [overlays.bb[1], bb.middle], [overlays.bb[2], bb.lower],
    [rsiSeries, values.rsi],
    [macdLine, m.macd], [macdSignal, m.signal],
  ];
  const hist = m.hist.map((v, i) => (v === null ? { time: times[i] } :
    { time: times[i], value: v, color: v >= 0 ? `${colors.up}a0` : `${colors.down}a0` }));
  if (onlyLast && candles.length) {
    const i = candles.length - 1;
    for (const [series, vs] of lines) series.update(point(times[i], vs[i]));
    macdHist.update(hist[i]);
  } else {
    for (const [series, vs] of lines) series.setData(vs.map((v, i) => point(times[i], v)));
    macdHist.setData(hist);
  }
  showLegend();
}

// Legends, TradingView style: each pane's values under the crosshair (the latest bar when
// there is none), each study with its colour; a pane whose study has too few bars says so.
const legends = ["price", "rsi", "macd"].map((pane) => {
  const el = document.createElement("div");
  el.className = "pane-legend";
  el.dataset.legend = pane;
  container.append(el);
  return el;
});
let hovered = null; // the crosshair's bar index, null for the latest
const esc = (text) => String(text).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
// A swatch takes its colour from the stylesheet (symbol.css, the study's own variable):
// a style attribute in markup is refused by the content security policy.
const item = (study, label, text) =>
  `<span class="legend-item"><i data-swatch="${study}"></i>${esc(label)} <b>${esc(text)}</b></span>`;
const short = (label, need) =>
  `<span class="legend-note">${esc(label)} needs ${need} bars; this chart has ${candles.length}.</span>`;

function showLegend() {
  const i = hovered ?? candles.length - 1;
  const c = candles[i];
  const on = (name) => overlays[name][0].options().visible;
  const p = (v) => fmt.price(v ?? null);
  let price = "";
  if (c) {
    price = ["O", "H", "L", "C"].map((k, j) =>
      `<span class="legend-item">${k} <b>${p([c.open, c.high, c.low, c.close][j])}</b></span>`).join("")
      + `<span class="legend-item">Vol <b>${fmt.volume(c.volume)}</b></span>`;
    if (on("sma")) price += item("sma", "SMA 20", p(values.sma[i]));
    if (on("ema")) price += item("ema", "EMA 20", p(values.ema[i]));
    if (on("bb")) {
      price += item("bb", "BB 20/2",
        `${p(values.bb.upper[i])} / ${p(values.bb.middle[i])} / ${p(values.bb.lower[i])}`);
    }
  }
  legends[0].innerHTML = price;
  const rsiKnown = values.rsi?.some((v) => v !== null);
  legends[1].innerHTML = rsiKnown ? item("rsi", "RSI 14", fmt.number(values.rsi[i], 2))
    : short("RSI 14", 15);
  const macdKnown = values.m?.macd.some((v) => v !== null);
  legends[2].innerHTML = macdKnown
    ? item("macd", "MACD 12/26/9", fmt.number(values.m.macd[i], 4))
      + item("signal", "Signal", fmt.number(values.m.signal[i], 4))
      + item("muted", "Hist", fmt.number(values.m.hist[i], 4))
    : short("MACD 12/26/9", 34);
}

function placeLegends() {
  const top = container.getBoundingClientRect().top;
  chart.panes().forEach((pane, i) => {
    const el = pane.getHTMLElement();
    if (el && legends[i]) legends[i].style.top = `${el.getBoundingClientRect().top - top + 4}px`;
  });
}
new ResizeObserver(() => requestAnimationFrame(placeLegends)).observe(container);

chart.subscribeCrosshairMove((param) => {
  const index = param.time === undefined ? null : candles.findIndex((c) => c.time === param.time);
  hovered = index === null || index < 0 ? null : index;
  showLegend();
});

function drawMarkers() {
  const times = new Set(candles.map((c) => c.time));
  const buckets = [...new Set([...anomalies].map((s) => bucketOf(s, interval)))]
    .filter((t) => times.has(t)).sort((a, b) => a - b);
  markers.setMarkers(buckets.map((time) => ({ time, position: "aboveBar", shape: "arrowDown",
    color: colors.anomaly, text: "⚠" })));
  container.dataset.markers = String(buckets.length);
}

const toCandle = (r) => ({ time: toTime(r.ts), open: r.open, high: r.high, low: r.low,
  close: r.close, volume: r.volume });
function setCandles(results, older = false) {
  candles = older ? [...results.map(toCandle), ...candles] : results.map(toCandle);
  candleSeries.setData(candles.map(({ volume, ...ohlc }) => ohlc));
  volumeSeries.setData(candles.map(volumeBar));
  drawStudies();
  drawMarkers();
  container.dataset.candles = String(candles.length);
  container.dataset.interval = interval;
}

// History loads as the reader scrolls (or zooms) back: LIMIT more candles whenever they move
// the view to near the first one, until the bars endpoint has no older ones.
let loading = 0;
let older = null; // the request for older candles under way
let oldest = false; // the first stored candle is in the chart
let engaged = false; // the reader has moved the chart (not a resize or a fit)
for (const kind of ["pointerdown", "wheel", "touchstart", "keydown"]) {
  container.addEventListener(kind, () => { engaged = true; }, { passive: true });
}
const bars = (next, end = "") => fetch(`/api/v1/stocks/${encodeURIComponent(SYMBOL)}/bars`
  + `?interval=${next}&limit=${LIMIT}${end && `&end=${end}`}`, { headers: { Accept: "application/json" } })
  .then((answer) => {
    if (!answer.ok) throw new Error(`bars: HTTP ${answer.status}`);
    return answer.json();
  });
chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
  if (!engaged || !range || range.from > 50 || older || oldest || !candles.length) return;
  const ticket = loading;
  const first = candles[0].time;
  older = bars(interval, new Date(first * 1000).toISOString()).then((body) => {
    if (ticket !== loading) return; // the interval changed meanwhile
    const more = body.results.filter((r) => toTime(r.ts) < first);
    oldest = more.length < LIMIT;
    if (!more.length) return;
    const scale = chart.timeScale();
    const view = scale.getVisibleLogicalRange();
    setCandles(more, true);
    if (Math.abs(scale.getVisibleLogicalRange().from - view.from) < 1) { // the same bars in view
      scale.setVisibleLogicalRange({ from: view.from + more.length, to: view.to + more.length });
    }
  }).catch(() => {}).finally(() => { older = null; });
});

async function loadBars(next) {
  const ticket = ++loading;
  oldest = false;
  container.dataset.state = "loading";
  try {
    const body = await bars(next);
    if (ticket !== loading) return; // a newer switch won
    interval = next;
    setCandles(body.results);
    keepInUrl();
    chartTs = null; // the bars hold every stored tick; the next live one moves them on
    engaged = false;
    chart.timeScale().fitContent();
    container.dataset.state = "loaded";
  } catch (error) {
    if (ticket === loading) container.dataset.state = "error";
    throw error;
  }
}

// A tick moves the open candle, or opens the next one when its bucket has rolled over.
let chartTs = initial.live.ts ? Date.parse(initial.live.ts) : null; // newest tick in the candles
function addTick(tick) {
  const ms = Date.parse(tick.ts);
  if (chartTs !== null && ms <= chartTs) return;
  chartTs = ms;
  const time = bucketOf(toTime(tick.ts), interval);
  const lastCandle = candles[candles.length - 1];
  if (lastCandle && time < lastCandle.time) return; // older than the chart: already in it
  if (lastCandle && time === lastCandle.time) {
    lastCandle.high = Math.max(lastCandle.high, tick.price);
    lastCandle.low = Math.min(lastCandle.low, tick.price);
    lastCandle.close = tick.price;
    lastCandle.volume += tick.size;
  } else {
    candles.push({ time, open: tick.price, high: tick.price, low: tick.price, close: tick.price,
      volume: tick.size });
    container.dataset.candles = String(candles.length);
  }
  const c = candles[candles.length - 1];
  candleSeries.update({ time: c.time, open: c.open, high: c.high, low: c.low, close: c.close });
  volumeSeries.update(volumeBar(c));
  drawStudies(true);
  if (tick.indicators?.anomaly) {
    anomalies.add(toTime(tick.ts));
    drawMarkers();
  }
}

// The live panel: the pipeline's per-tick values (snapshot first, then ticks).
const live = { ...initial.live };
function showLive() {
  fmt.show(SYMBOL, "price", fmt.price(live.price));
  fmt.show(SYMBOL, "change", fmt.signed(live.change), { dir: fmt.direction(live.change) });
  fmt.show(SYMBOL, "change_pct", fmt.percent(live.change_pct),
    { dir: fmt.direction(live.change_pct) });
  fmt.show(SYMBOL, "volume", fmt.volume(live.volume));
  for (const el of fmt.cells(SYMBOL, "ts")) {
    el.dateTime = live.ts ?? "";
    el.textContent = live.ts ? `${live.ts.slice(0, 10)} ${live.ts.slice(11, 19)} UTC` : "no tick yet";
  }
  for (const [field, value] of Object.entries(live.indicators ?? {})) {
    if (field === "anomaly") {
      for (const el of fmt.cells(SYMBOL, field)) {
        el.dataset.anomaly = String(Boolean(value));
        el.textContent = value ? "⚠ yes" : "no";
      }
    } else fmt.show(SYMBOL, field, fmt.number(value, 4));
  }
}

function onMessage(message) {
  if (message.type === "snapshot") {
    Object.assign(live, message);
    showLive();
    // Ticks between the page's render and this socket: the candles do not hold them yet.
    for (const t of message.history ?? []) {
      addTick({ ...t, indicators: null });
    }
  } else if (message.type === "tick" && message.symbol === SYMBOL) {
    const before = live.price;
    // A tick carries its session's change and volume, as the REST answers give them.
    Object.assign(live, { price: message.price, ts: message.ts, change: message.change,
      change_pct: message.change_pct, volume: message.volume, indicators: message.indicators });
    showLive();
    if (before !== null && before !== undefined && before !== message.price) {
      fmt.flash(SYMBOL, message.price > before);
    }
    addTick(message);
  }
}

// Controls.
for (const input of document.querySelectorAll("[data-interval]")) {
  input.addEventListener("change", () => {
    if (input.checked) loadBars(input.value).catch(() => {});
  });
}
function applyOverlays() {
  const on = [];
  for (const box of document.querySelectorAll("[data-overlay]")) {
    for (const series of overlays[box.dataset.overlay]) series.applyOptions({ visible: box.checked });
    if (box.checked) on.push(box.dataset.overlay);
  }
  container.dataset.overlays = on.join(" ");
  keepInUrl();
  showLegend();
}

// The interval and overlays live in the query string, so a reload (or a shared link)
// restores them; the server paints that interval first (apps/dashboard/views.symbol).
function keepInUrl() {
  const url = new URL(location.href);
  url.searchParams.set("interval", interval);
  url.searchParams.set("overlays", container.dataset.overlays.replaceAll(" ", ","));
  history.replaceState(history.state, "", url);
}
for (const box of document.querySelectorAll("[data-overlay]")) {
  box.addEventListener("change", applyOverlays);
}
document.addEventListener("mf:theme", () => {
  colors = palette();
  chart.applyOptions(chartOptions(colors));
  candleSeries.applyOptions({ upColor: colors.up, downColor: colors.down,
    borderUpColor: colors.up, borderDownColor: colors.down, wickUpColor: colors.up,
    wickDownColor: colors.down });
  for (const guide of guides) guide.applyOptions({ color: colors.muted });
  for (const name of ["sma", "ema", "bb"]) {
    for (const series of overlays[name]) series.applyOptions({ color: colors[name] });
  }
  rsiSeries.applyOptions({ color: colors.rsi });
  macdLine.applyOptions({ color: colors.macd });
  macdSignal.applyOptions({ color: colors.signal });
  volumeSeries.setData(candles.map(volumeBar));
  drawStudies();
  drawMarkers();
});

setCandles(initial.candles);
applyOverlays();
chart.timeScale().fitContent();
container.dataset.state = "ready";
showLive();

// Live: a reconnect brings a fresh snapshot (the panel), and the bars are read again so the
// chart has no gap for the time the socket was down.
const feed = new Feed(`/ws/stocks/${encodeURIComponent(SYMBOL)}`, {
  onMessage,
  onOpen: (reconnected) => {
    if (reconnected) loadBars(interval).catch(() => {});
  },
});

window.marketflux = {
  page: "symbol",
  chart,
  feed,
  get interval() { return interval; },
  get candles() { return candles.length; },
  lastCandle: () => ({ ...candles[candles.length - 1] }),
  panes: () => chart.panes().length,
  overlaysVisible: () => Object.fromEntries(["sma", "ema", "bb"]
    .map((name) => [name, overlays[name][0].options().visible])),
  // Each study's line colour, and the share of the price pane's height volume may take.
  studyColors: () => ({ sma: overlays.sma[0].options().color, ema: overlays.ema[0].options().color,
    bb: overlays.bb[0].options().color, rsi: rsiSeries.options().color,
    macd: macdLine.options().color, signal: macdSignal.options().color }),
  volumeShare: () => 1 - volumeSeries.priceScale().options().scaleMargins.top,
};
