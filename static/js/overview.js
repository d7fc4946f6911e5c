// The market page: ticks land in a store; an update pass (≤ 4/s) shows them.

import { marketFeed } from "./feed.js";
import * as fmt from "./format.js";
import { Heatmap } from "./heatmap.js";
import { addKnownSymbols } from "./search.js";
import { sparkTick, symbolTable } from "./table.js";

const PASS_MS = 250;
const SUBSCRIPTION = { action: "subscribe", symbols: "*", every: 1 }; // conflated

const initial = JSON.parse(document.getElementById("overview-initial").textContent);
const records = {}; // symbol -> {symbol, name, sector, price, change, change_pct, ...}
const $ = (selector) => document.querySelector(selector);

function record(values) {
  const rec = Object.fromEntries(initial.columns.map((c, i) => [c, values[i]]));
  rec.sector = initial.sectors[rec.sector] ?? rec.sector;
  if (rec.change !== null) rec.reference = rec.price - rec.change;
  return (records[rec.symbol] = rec);
}
initial.rows.forEach(record);
for (const [symbol, { start, closes }] of Object.entries(initial.sparklines)) {
  records[symbol].spark = { start: Date.parse(start), closes, version: 0 };
}
addKnownSymbols(initial.rows.map(([ticker, name]) => ({ ticker, name })));

const dirty = new Set();
let timer = null;
let last = 0;
function changed(recs) {
  for (const rec of recs) dirty.add(rec);
  timer ??= setTimeout(() => requestAnimationFrame(() => {
    timer = null;
    last = performance.now();
    const recs = new Set(dirty);
    dirty.clear();
    table.update(recs);
    heatmap.draw(recs);
  }), last + PASS_MS - performance.now());
}

const table = symbolTable($("table[data-sortable]"), records, {
  changed,
  shown: (n, all) => fmt.show("market", "shown", `${n === all ? "" : `${n} of `}${all} symbols`),
});
const heatmap = new Heatmap($("[data-heatmap]"), records, {
  toggles: $("[data-sectors]"),
  open: (symbol) => location.assign(`/stocks/${encodeURIComponent(symbol)}/`),
});
for (const input of document.querySelectorAll("[data-tile-size]")) {
  input.addEventListener("change", () => heatmap.setMode(input.value));
}
$("[data-filter]").addEventListener("input", (e) => table.filter(e.target.value));

// A tick's change is against the previous session's close; without one, the last reference.
function onTick(tick) {
  const rec = records[tick.symbol];
  if (!rec) return;
  const { price, indicators } = tick;
  Object.assign(rec, { live: true, price, ts: tick.ts, rsi_14: indicators?.rsi_14 ?? null,
    anomaly: Boolean(indicators?.anomaly), volume: tick.volume ?? rec.volume });
  if (tick.change != null) rec.reference = price - tick.change;
  if (rec.reference) {
    rec.change = price - rec.reference;
    rec.change_pct = tick.change_pct ?? (rec.change / rec.reference) * 100;
  }
  if (rec.spark) sparkTick(rec.spark, tick.ts, price);
  if (rec.anomaly) addAnomaly(tick);
  changed([rec]);
}

// The overview alone sets the breadth and movers (a tick never patches them: no falling stock
// among the gainers), and symbols no tick has reached or added since the page was drawn.
function onOverview(overview) {
  const touched = [];
  let added = false;
  for (const row of overview.symbols) {
    let rec = records[row.symbol];
    if (!rec) {
      rec = record([row.symbol, "", "Other", null, null, null, null, null, false]);
      describe(rec);
      added = true;
    }
    if (rec.live) continue;
    const { price, change_pct: pct } = row;
    Object.assign(rec, { price, change_pct: pct, volume: row.volume, rsi_14: row.rsi_14,
      anomaly: row.anomaly });
    if (price !== null && pct !== null) {
      rec.reference = price / (1 + pct / 100);
      rec.change = price - rec.reference;
    }
    touched.push(rec);
  }
  fmt.show("market", "advancers", String(overview.advancers));
  fmt.show("market", "decliners", String(overview.decliners));
  for (const el of fmt.cells("market", "ts")) {
    el.dateTime = overview.ts;
    el.textContent = `${overview.ts.slice(11, 19)} UTC`;
  }
  movers("top_gainers", overview.top_gainers);
  movers("top_losers", overview.top_losers);
  if (added) {
    table.refresh();
    heatmap.relayout();
  } else heatmap.volumesChanged();
  changed(touched);
}

// A symbol added while the page is open (the admin, seed_symbols): its name and sector.
async function describe(rec) {
  try {
    const url = `/api/v1/stocks?search=${encodeURIComponent(rec.symbol)}&page_size=1000`;
    const body = await (await fetch(url, { headers: { Accept: "application/json" } })).json();
    const found = body.results.find((r) => r.symbol === rec.symbol);
    Object.assign(rec, { name: found.name, sector: found.sector || "Other" });
    table.refresh();
    heatmap.relayout();
  } catch { /* the row works without them; a reload has them */ }
}

function item(symbol, ...parts) {
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = `/stocks/${encodeURIComponent(symbol)}/`;
  a.textContent = symbol;
  li.append(a, ...parts.flatMap((part) => [" ", part]));
  return li;
}
const span = (text, attrs = {}) => Object.assign(document.createElement("span"), attrs,
  { textContent: text });

function addAnomaly(tick) {
  const list = $('[data-list="anomalies"]');
  list.querySelector("[data-empty]")?.remove();
  const when = Object.assign(document.createElement("time"),
    { dateTime: tick.ts, textContent: tick.ts.slice(11, 19) });
  list.prepend(item(tick.symbol, span(fmt.price(tick.price)),
    span(`z ${fmt.signed(tick.indicators.zscore_20)}`, { className: "muted" }), when));
  while (list.children.length > 10) list.lastElementChild.remove();
}

function movers(name, rows) {
  const items = rows.map((row) => {
    const pct = span(fmt.percent(row.change_pct));
    // a gainer reading 0.00% shows no arrow
    Object.assign(pct.dataset, { symbol: row.symbol, field: "change_pct",
      dir: fmt.direction(row.change_pct) });
    return item(row.symbol, pct);
  });
  $(`[data-list="${name}"]`).replaceChildren(
    ...(items.length ? items : [Object.assign(document.createElement("li"),
      { className: "muted", textContent: "none" })]));
}

const feed = marketFeed();
feed.on("open", () => feed.send(SUBSCRIPTION));
feed.on("message", (message) => {
  if (message.type === "tick") onTick(message);
  else if (message.type === "overview") onOverview(message);
});

window.marketflux = {
  page: "overview", feed, symbols: records, table,
  heatmap: {
    tileAt: (symbol) => heatmap.tileAt(symbol),
    sectors: () => heatmap.sectors.map((s) => [s.name, s.tiles.length, s.collapsed]),
  },
};
