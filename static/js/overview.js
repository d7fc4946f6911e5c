// The market page: live prices from /ws/market (every symbol's ticks, subscribed with "*"),
// the overview message about once a second, the heatmap, the sortable table, sparklines.

import { marketFeed } from "./feed.js";
import * as fmt from "./format.js";

const initial = JSON.parse(document.getElementById("overview-initial").textContent);
// ticker -> {name, sector, reference (the price change is against), spark: [{t, v}]}
const symbols = initial.symbols;
const last = {}; // ticker -> last price shown
const SPARK_MINUTES = 30;
const BUCKET_STEP = 0.5; // as apps/dashboard/selectors.change_bucket
const BUCKETS = 5;

for (const row of initial.overview.symbols) last[row.symbol] = row.price;

export function changeBucket(pct) {
  if (pct === null || pct === undefined) return "none";
  const step = Math.floor(Math.abs(pct) / BUCKET_STEP + 0.5);
  return String(Math.max(-BUCKETS, Math.min(BUCKETS, pct >= 0 ? step : -step)));
}

function sparkPoints(values, width = 100, height = 24) {
  if (!values.length) return "";
  if (values.length === 1) values = [values[0], values[0]];
  const low = Math.min(...values);
  const span = Math.max(...values) - low || 1;
  const step = width / (values.length - 1);
  return values
    .map((v, i) => `${(i * step).toFixed(1)},${(height - ((v - low) / span) * height).toFixed(1)}`)
    .join(" ");
}

// A tick updates the symbol's table row and tile. The movers and the breadth counts are the
// overview message's alone: one consistent snapshot a second, never patched per tick (a tick
// could otherwise show a falling stock among the top gainers until the next overview).
function showChangePct(symbol, pct) {
  const text = fmt.percent(pct);
  const dir = fmt.direction(pct);
  for (const el of fmt.cells(symbol, "change_pct")) {
    if (el.closest("[data-list]")) continue;
    if (el.textContent !== text) el.textContent = text;
    el.dataset.dir = dir;
    if ("value" in el.dataset) el.dataset.value = pct ?? "";
  }
  for (const tile of fmt.cells(symbol, "tile")) tile.dataset.bucket = changeBucket(pct);
}

// A symbol the page was not rendered with (added in the admin or by seed_symbols) gets its
// table row and heatmap tile from the overview message; its name and sector follow from
// the stocks endpoint.
function cell(tag, symbol, field, { num = false, text = fmt.DASH } = {}) {
  const el = document.createElement(tag);
  if (num) el.className = "num";
  el.dataset.symbol = symbol;
  el.dataset.field = field;
  el.dataset.value = "";
  el.textContent = text;
  return el;
}

const sectorOf = (section) => section.getAttribute("aria-label");
function sectorTiles(sector) {
  const heatmap = document.querySelector("[data-heatmap]");
  const sections = () => [...heatmap.querySelectorAll(".sector")];
  let section = sections().find((s) => sectorOf(s) === sector);
  if (!section) {
    heatmap.querySelector(":scope > p")?.remove(); // "No active symbols yet"
    section = document.createElement("section");
    section.className = "sector";
    section.setAttribute("aria-label", sector);
    const title = document.createElement("h3");
    title.textContent = sector;
    const tiles = document.createElement("div");
    tiles.className = "tiles";
    section.append(title, tiles);
    const after = sections().find((s) => sectorOf(s) > sector);
    heatmap.insertBefore(section, after ?? null);
  }
  return section.querySelector(".tiles");
}

function placeTile(tile, sector) {
  const tiles = sectorTiles(sector);
  const after = [...tiles.children].find((t) => t.dataset.symbol > tile.dataset.symbol);
  tiles.insertBefore(tile, after ?? null);
}

function addSymbol(row) {
  const { symbol } = row;
  symbols[symbol] = { name: "", sector: "Other", reference: null, spark: [] };
  const href = `/stocks/${encodeURIComponent(symbol)}/`;

  const tile = document.createElement("a");
  tile.className = "tile";
  tile.href = href;
  Object.assign(tile.dataset, { symbol, field: "tile", bucket: "none", volume: "0" });
  tile.style.setProperty("--w", "1");
  const tileSymbol = document.createElement("span");
  tileSymbol.className = "tile-symbol";
  tileSymbol.textContent = symbol;
  const tilePrice = cell("span", symbol, "price");
  tilePrice.className = "tile-price";
  delete tilePrice.dataset.value;
  const tileChange = cell("span", symbol, "change_pct");
  tileChange.className = "tile-change";
  delete tileChange.dataset.value;
  tile.append(tileSymbol, tilePrice, tileChange);
  placeTile(tile, "Other");

  const tr = document.createElement("tr");
  tr.dataset.row = symbol;
  const head = document.createElement("th");
  head.scope = "row";
  head.dataset.value = symbol;
  head.append(link(symbol));
  const name = document.createElement("td");
  name.dataset.value = "";
  const anomaly = cell("td", symbol, "anomaly", { text: "" });
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.hidden = true;
  badge.textContent = "⚠ anomaly";
  const none = document.createElement("span");
  none.className = "visually-hidden";
  none.textContent = "none";
  anomaly.append(badge, none);
  const sparkCell = document.createElement("td");
  sparkCell.innerHTML = '<svg class="sparkline" viewBox="0 0 100 24" preserveAspectRatio="none" '
    + 'role="img"><polyline points=""/></svg>';
  const svg = sparkCell.firstElementChild;
  svg.setAttribute("aria-label", `${symbol} price, last minutes`);
  Object.assign(svg.dataset, { symbol, field: "sparkline" });
  tr.append(head, name,
    cell("td", symbol, "price", { num: true }), cell("td", symbol, "change", { num: true }),
    cell("td", symbol, "change_pct", { num: true }), cell("td", symbol, "volume", { num: true }),
    cell("td", symbol, "rsi_14", { num: true }), anomaly, sparkCell);
  const body = table.tBodies[0];
  for (const empty of [...body.rows].filter((r) => !r.dataset.row)) empty.remove();
  const after = [...body.rows].find((r) => r.dataset.row > symbol);
  body.insertBefore(tr, after ?? null);

  const url = `/api/v1/stocks?search=${encodeURIComponent(symbol)}&page_size=1000`;
  fetch(url, { headers: { Accept: "application/json" } })
    .then((answer) => (answer.ok ? answer.json() : null))
    .then((body) => {
      const found = body?.results?.find((r) => r.symbol === symbol);
      if (!found) return;
      symbols[symbol].name = found.name;
      symbols[symbol].sector = found.sector || "Other";
      name.textContent = found.name;
      name.dataset.value = found.name;
      placeTile(tile, symbols[symbol].sector);
      tile.closest(".heatmap")?.querySelectorAll(".sector").forEach((s) => {
        if (!s.querySelector(".tile")) s.remove(); // an "Other" group left empty
      });
    })
    .catch(() => {}); // the row works without its name; the next page load has it
}

// Ticks arrive per batch; the DOM is updated once per animation frame with the newest.
const pending = new Map();
let scheduled = false;

function applyTick(tick) {
  const { symbol, price } = tick;
  const info = symbols[symbol];
  if (!info) return;
  const before = last[symbol];
  last[symbol] = price;
  fmt.show(symbol, "price", fmt.price(price), { value: price });
  if (before !== null && before !== undefined && price !== before) fmt.flash(symbol, price > before);
  // A tick carries its change (against the previous session's close, as the REST answers);
  // an overview's price has only its change %, from which `reference` was worked out.
  if (tick.change !== undefined && tick.change !== null) info.reference = price - tick.change;
  if (info.reference) {
    const change = price - info.reference;
    fmt.show(symbol, "change", fmt.signed(change), { dir: fmt.direction(change), value: change });
    showChangePct(symbol, tick.change_pct ?? (change / info.reference) * 100);
  }
  const rsi = tick.indicators?.rsi_14;
  fmt.show(symbol, "rsi_14", fmt.number(rsi, 1), { value: rsi });
  showAnomaly(symbol, Boolean(tick.indicators?.anomaly));
  // Sparkline: one point per minute, the current minute's point moving with each tick.
  const minute = Math.floor(Date.parse(tick.ts) / 60_000) * 60;
  const spark = info.spark;
  if (spark.length && spark[spark.length - 1].t === minute) spark[spark.length - 1].v = price;
  else spark.push({ t: minute, v: price });
  while (spark.length > SPARK_MINUTES) spark.shift();
  for (const svg of fmt.cells(symbol, "sparkline")) {
    svg.querySelector("polyline").setAttribute("points", sparkPoints(spark.map((p) => p.v)));
  }
}

function showAnomaly(symbol, anomaly) {
  for (const cell of fmt.cells(symbol, "anomaly")) {
    cell.dataset.value = anomaly ? "1" : "0";
    cell.querySelector(".badge").hidden = !anomaly;
    cell.querySelector(".visually-hidden").textContent = anomaly ? "" : "none";
  }
}

function flush() {
  scheduled = false;
  for (const tick of pending.values()) applyTick(tick);
  pending.clear();
}

function onTick(tick) {
  pending.set(tick.symbol, tick);
  if (tick.indicators?.anomaly) addAnomaly(tick);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

function link(symbol) {
  const a = document.createElement("a");
  a.href = `/stocks/${encodeURIComponent(symbol)}/`;
  a.textContent = symbol;
  return a;
}

function addAnomaly(tick) {
  const list = document.querySelector('[data-list="anomalies"]');
  list.querySelector("[data-empty]")?.remove();
  const item = document.createElement("li");
  const price = document.createElement("span");
  price.textContent = fmt.price(tick.price);
  const z = document.createElement("span");
  z.className = "muted";
  z.textContent = `z ${fmt.signed(tick.indicators.zscore_20)}`;
  const when = document.createElement("time");
  when.dateTime = tick.ts;
  when.textContent = tick.ts.slice(11, 19);
  item.append(link(tick.symbol), " ", price, " ", z, " ", when);
  list.prepend(item);
  while (list.children.length > 10) list.lastElementChild.remove();
}

function renderMovers(name, rows) {
  const list = document.querySelector(`[data-list="${name}"]`);
  const items = rows.map((row) => {
    const item = document.createElement("li");
    const pct = document.createElement("span");
    pct.dataset.symbol = row.symbol;
    pct.dataset.field = "change_pct";
    pct.dataset.dir = fmt.direction(row.change_pct); // a gainer reading 0.00% shows no arrow
    pct.textContent = fmt.percent(row.change_pct);
    item.append(link(row.symbol), " ", pct);
    return item;
  });
  if (!items.length) {
    const none = document.createElement("li");
    none.className = "muted";
    none.textContent = "none";
    items.push(none);
  }
  list.replaceChildren(...items);
}

function onOverview(overview) {
  for (const row of overview.symbols) {
    if (!symbols[row.symbol]) addSymbol(row);
    const info = symbols[row.symbol];
    if (row.price !== null && row.change_pct !== null) {
      info.reference = row.price / (1 + row.change_pct / 100); // follows a new session
    }
    if (row.price !== last[row.symbol] && row.price !== null) {
      pending.set(row.symbol, { symbol: row.symbol, price: row.price, ts: overview.ts,
        indicators: { rsi_14: row.rsi_14, anomaly: row.anomaly } });
    }
    showChangePct(row.symbol, row.change_pct);
    fmt.show(row.symbol, "volume", fmt.volume(row.volume), { value: row.volume });
    for (const tile of fmt.cells(row.symbol, "tile")) tile.dataset.volume = row.volume ?? 0;
    fmt.show(row.symbol, "rsi_14", fmt.number(row.rsi_14, 1), { value: row.rsi_14 });
    showAnomaly(row.symbol, row.anomaly);
  }
  fmt.show("market", "advancers", String(overview.advancers));
  fmt.show("market", "decliners", String(overview.decliners));
  for (const el of fmt.cells("market", "ts")) {
    el.dateTime = overview.ts;
    el.textContent = `${overview.ts.slice(11, 19)} UTC`;
  }
  renderMovers("top_gainers", overview.top_gainers);
  renderMovers("top_losers", overview.top_losers);
  sizeTiles();
  if (pending.size && !scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

// Heatmap tiles: equal, or sized by the session's traded volume.
function sizeTiles() {
  const byVolume = document.querySelector("[data-tile-size]:checked")?.value === "volume";
  const tiles = [...document.querySelectorAll('[data-field="tile"]')];
  const total = tiles.reduce((sum, t) => sum + Number(t.dataset.volume || 0), 0);
  for (const tile of tiles) {
    const share = total ? Number(tile.dataset.volume || 0) / total : 0;
    tile.style.setProperty("--w", byVolume && total ? (0.2 + share * tiles.length).toFixed(3) : "1");
  }
}
for (const input of document.querySelectorAll("[data-tile-size]")) {
  input.addEventListener("change", sizeTiles);
}

// The table sorts by any column header; rows keep their place while values update live.
const table = document.querySelector("table[data-sortable]");
function sortBy(button) {
  const th = button.closest("th");
  const column = [...th.parentElement.children].indexOf(th);
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  const text = button.dataset.type === "text";
  for (const other of th.parentElement.children) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = [...body.rows].filter((r) => r.dataset.row);
  const key = (row) => {
    const raw = row.children[column].dataset.value ?? "";
    if (text) return raw;
    return raw === "" ? -Number.MAX_VALUE : Number(raw);
  };
  rows.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    const order = text ? x.localeCompare(y) : x - y;
    return ascending ? order : -order;
  });
  body.append(...rows);
}
for (const button of table?.querySelectorAll("button[data-sort]") ?? []) {
  button.addEventListener("click", () => sortBy(button));
}

const feed = marketFeed();
feed.on("open", () => feed.send({ action: "subscribe", symbols: "*" }));
feed.on("message", (message) => {
  if (message.type === "tick") onTick(message);
  else if (message.type === "overview") onOverview(message);
});

window.marketflux = { page: "overview", feed, symbols };
