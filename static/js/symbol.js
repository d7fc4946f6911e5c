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
    muted: v("--muted"), sma: v("--study-1"), ema: v("--study-2"), bb: v("--study-3"),
    anomaly: v("--anomaly"),
  };
}

function chartOptions(p) {
  return {
    autoSize: true,
    layout: { background: { type: "solid", color: p.bg }, textColor: p.fg,
      panes: { separatorColor: p.grid } },
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

const candleSeries = chart.addSeries(CandlestickSeries, {
  upColor: colors.up, downColor: colors.down, borderUpColor: colors.up,
  borderDownColor: colors.down, wickUpColor: colors.up, wickDownColor: colors.down,
});
const volumeSeries = chart.addSeries(HistogramSeries,
  { priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false,
    priceLineVisible: false }, 0);
volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
const overlays = {
  sma: [line(colors.sma)],
  ema: [line(colors.ema)],
  bb: [line(colors.bb), line(colors.bb, 0, { lineStyle: 2 }), line(colors.bb)],
};
const rsiSeries = line(colors.sma, 1, { lastValueVisible: true });
const guides = [70, 30].map((price) =>
  rsiSeries.createPriceLine({ price, color: colors.muted, lineWidth: 1, lineStyle: 2,
    axisLabelVisible: true, title: String(price) }));
const macdHist = chart.addSeries(HistogramSeries, { priceLineVisible: false,
  lastValueVisible: false }, 2);
const macdLine = line(colors.ema, 2);
const macdSignal = line(colors.bb, 2);
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
function drawStudies(onlyLast = false) {
  const closes = candles.map((c) => c.close);
  const times = candles.map((c) => c.time);
  const bb = studies.bollinger(closes, 20, 2);
  const m = studies.macd(closes, 12, 26, 9);
  const lines = [
    [overlays.sma[0], studies.sma(closes, 20)],
    [overlays.ema[0], studies.ema(closes, 20)],
    [overlays.bb[0], bb.upper], [overlays.bb[1], bb.middle], [overlays.bb[2], bb.lower],
    [rsiSeries, studies.rsi(closes, 14)],
    [macdLine, m.macd], [macdSignal, m.signal],
  ];
  const hist = m.hist.map((v, i) => (v === null ? { time: times[i] } :
    { time: times[i], value: v, color: v >= 0 ? `${colors.up}a0` : `${colors.down}a0` }));
  if (onlyLast && candles.length) {
    const i = candles.length - 1;
    for (const [series, values] of lines) series.update(point(times[i], values[i]));
    macdHist.update(hist[i]);
  } else {
    for (const [series, values] of lines) series.setData(values.map((v, i) => point(times[i], v)));
    macdHist.setData(hist);
  }
}

function drawMarkers() {
  const times = new Set(candles.map((c) => c.time));
  const buckets = [...new Set([...anomalies].map((s) => bucketOf(s, interval)))]
    .filter((t) => times.has(t)).sort((a, b) => a - b);
  markers.setMarkers(buckets.map((time) => ({ time, position: "aboveBar", shape: "arrowDown",
    color: colors.anomaly, text: "⚠" })));
  container.dataset.markers = String(buckets.length);
}

function setCandles(results) {
  candles = results.map((r) => ({ time: toTime(r.ts), open: r.open, high: r.high, low: r.low,
    close: r.close, volume: r.volume }));
  candleSeries.setData(candles.map(({ volume, ...ohlc }) => ohlc));
  volumeSeries.setData(candles.map(volumeBar));
  drawStudies();
  drawMarkers();
  container.dataset.candles = String(candles.length);
  container.dataset.interval = interval;
}

let loading = 0;
async function loadBars(next) {
  const ticket = ++loading;
  container.dataset.state = "loading";
  const url = `/api/v1/stocks/${encodeURIComponent(SYMBOL)}/bars?interval=${next}&limit=${LIMIT}`;
  try {
    const answer = await fetch(url, { headers: { Accept: "application/json" } });
    if (!answer.ok) throw new Error(`bars: HTTP ${answer.status}`);
    const body = await answer.json();
    if (ticket !== loading) return; // a newer switch won
    interval = next;
    setCandles(body.results);
    chartTs = null; // the bars hold every stored tick; the next live one moves them on
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
    const newDay = live.ts && live.ts.slice(0, 10) !== message.ts.slice(0, 10);
    const open = newDay || live.change === null || live.change === undefined
      ? message.price : live.price - live.change;
    live.change = message.price - open;
    live.change_pct = (live.change / open) * 100;
    live.volume = (newDay ? 0 : live.volume ?? 0) + message.size;
    Object.assign(live, { price: message.price, ts: message.ts, indicators: message.indicators });
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
  overlaysVisible: () => Object.fromEntries(Object.entries(overlays)
    .map(([name, series]) => [name, series[0].options().visible])),
};
