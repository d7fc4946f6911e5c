// The symbols table, virtualised: only rows in (or near) its scroll box are in the DOM.
// Sorting and filtering run on the records; sparklines are read as rows come into view.

import * as fmt from "./format.js";

const OVERSCAN = 6;
const MINUTE = 60_000;
const TEXT = new Set(["symbol", "name"]);
/** Sparkline points, one x step a minute (as apps/dashboard/selectors.sparkline_points). */
export function sparkPoints(closes, width = 100, height = 24) {
  const known = closes.flatMap((v, i) => (v === null ? [] : [[i, v]]));
  const low = Math.min(...known.map(([, v]) => v));
  const span = Math.max(...known.map(([, v]) => v)) - low || 1;
  const step = width / (closes.length - 1 || 1);
  return known.map(([i, v]) =>
    `${(i * step).toFixed(1)},${(height - ((v - low) / span) * height).toFixed(1)}`).join(" ");
}

/** A tick in a sparkline: its minute's close, the window moving on. */
export function sparkTick(spark, ts, price) {
  const { closes } = spark;
  let i = Math.floor((Date.parse(ts) - spark.start) / MINUTE);
  if (i < 0) return;
  if (i >= closes.length) {
    const gone = Math.min(closes.length, i - closes.length + 1);
    spark.start += (i - closes.length + 1) * MINUTE;
    closes.splice(0, gone);
    closes.push(...Array(gone).fill(null));
    i = closes.length - 1;
  }
  closes[i] = price;
  spark.version = (spark.version ?? 0) + 1;
}

const put = (el, text) => el.textContent !== text && (el.textContent = text);
const attr = (el, name, value) => el.getAttribute(name) !== value && el.setAttribute(name, value);

export function symbolTable(table, records, { changed, shown }) {
  const box = table.closest(".table-scroll");
  const body = table.tBodies[0];
  const template = document.querySelector("[data-row-template]").content.firstElementChild;
  const [top, bottom] = [0, 0].map(() => {
    const tr = body.insertRow();
    tr.className = "spacer";
    tr.setAttribute("aria-hidden", "true");
    tr.insertCell().colSpan = 9;
    return tr;
  });
  const empty = [...body.rows].find((tr) => !tr.dataset.row && tr.className !== "spacer");
  let rows = [...body.rows].filter((tr) => tr.dataset.row).map((tr) => adopt(tr, records[tr.dataset.row]));
  const spare = [];
  const size = {};
  const measure = () => Object.assign(size, { head: table.tHead.offsetHeight,
    height: box.clientHeight, row: rows[0]?.tr.offsetHeight });
  let view = [];
  let [sortBy, ascending, query] = ["symbol", true, ""];
  const wanted = new Set(); // records whose sparklines are to be read
  let asking = false;

  function adopt(tr, rec = null) {
    const c = tr.cells;
    return { tr, rec, a: c[0].firstChild, name: c[1], price: c[2], change: c[3], pct: c[4],
      volume: c[5], rsi: c[6], badge: c[7].firstChild, none: c[7].lastChild, svg: c[8].firstChild,
      cells: [...c].slice(2, 8).concat(c[8].firstChild) };
  }

  function bind(row, rec, index) {
    if (row.rec !== rec) {
      Object.assign(row, { rec, priceShown: null, spark: null });
      row.tr.dataset.row = rec.symbol;
      row.a.href = `/stocks/${encodeURIComponent(rec.symbol)}/`;
      for (const el of row.cells) el.dataset.symbol = rec.symbol;
      row.svg.setAttribute("aria-label", `${rec.symbol} price, last minutes`);
      row.svg.firstChild.setAttribute("points", "");
      row.price.className = "num"; // no flash of the symbol before
    }
    put(row.a, rec.symbol);
    put(row.name, rec.name);
    attr(row.tr, "aria-rowindex", String(index + 2));
    put(row.price, fmt.price(rec.price));
    if (row.priceShown != null && rec.price !== null && rec.price !== row.priceShown) {
      fmt.flashCell(row.price, rec.price > row.priceShown);
    }
    row.priceShown = rec.price;
    put(row.change, fmt.signed(rec.change));
    attr(row.change, "data-dir", fmt.direction(rec.change));
    put(row.pct, fmt.percent(rec.change_pct));
    attr(row.pct, "data-dir", fmt.direction(rec.change_pct));
    put(row.volume, fmt.volume(rec.volume));
    put(row.rsi, fmt.number(rec.rsi_14, 1));
    if (row.badge.hidden === rec.anomaly) row.badge.hidden = !rec.anomaly;
    put(row.none, rec.anomaly ? "" : "none");
    const version = rec.spark && `${rec.spark.start}:${rec.spark.version}`;
    if (rec.spark && row.spark !== version) {
      row.spark = version;
      row.svg.firstChild.setAttribute("points", sparkPoints(rec.spark.closes));
    }
  }

  /** The view: the records filtered and sorted. */
  function order() {
    const q = query.toLowerCase();
    const all = Object.values(records);
    view = q ? all.filter((r) => r.symbol.toLowerCase().startsWith(q)
      || r.name.toLowerCase().includes(q)) : all;
    const sign = ascending ? 1 : -1;
    for (const r of view) {
      const v = r[sortBy] ?? -Infinity;
      r.sortKey = sortBy === "name" ? v.toLowerCase() : TEXT.has(sortBy) ? v : Number(v);
    }
    view.sort((a, b) => sign * (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0)
      || (a.symbol < b.symbol ? -1 : 1));
    table.setAttribute("aria-rowcount", String(view.length + 1));
    shown(view.length, all.length);
  }

  /** Binds the rows in view (again for `dirty` records; all when null). Reads the scroll
   * position before any write, sizes on resize: no forced layout. */
  function render(dirty = null, scrollTop = box.scrollTop) {
    if (!size.row && rows.length) measure();
    const height = size.row || 36;
    const first = Math.max(0, Math.floor((scrollTop - size.head) / height) - OVERSCAN);
    const slice = view.slice(first, first + Math.ceil(size.height / height) + 2 * OVERSCAN);
    if (view.length) empty?.remove();
    const keep = new Map(rows.map((row) => [row.rec, row]));
    const next = slice.map((rec) => keep.get(rec));
    for (const rec of slice) keep.delete(rec);
    const free = [...keep.values()];
    let before = top;
    slice.forEach((rec, i) => {
      let row = next[i];
      if (!row || !dirty || dirty.has(rec)) {
        row ??= free.pop() ?? spare.pop() ?? adopt(template.cloneNode(true));
        bind(row, rec, first + i);
      } else attr(row.tr, "aria-rowindex", String(first + i + 2));
      next[i] = row;
      if (before.nextSibling !== row.tr) body.insertBefore(row.tr, before.nextSibling);
      before = row.tr;
    });
    for (const row of free) {
      row.tr.remove();
      row.rec = null;
      spare.push(row);
    }
    rows = next;
    if (before.nextSibling !== bottom) body.insertBefore(bottom, before.nextSibling);
    top.firstChild.style.height = `${first * height}px`;
    bottom.firstChild.style.height = `${(view.length - first - slice.length) * height}px`;
    for (const rec of slice) if (!rec.spark && !rec.sparkAsked) wanted.add(rec);
    if (wanted.size && !asking) setTimeout(sparklines, 120);
    asking ||= wanted.size > 0;
  }

  async function sparklines() {
    const batch = [...wanted].slice(0, 200); // selectors.MAX_SPARKLINE_SYMBOLS
    for (const rec of batch) {
      wanted.delete(rec);
      rec.sparkAsked = true;
    }
    try {
      const names = batch.map((r) => encodeURIComponent(r.symbol)).join(",");
      const answer = await fetch(`/sparklines?symbols=${names}`);
      const found = answer.ok ? (await answer.json()).sparklines : {};
      for (const rec of batch) {
        const line = found[rec.symbol];
        if (!line) continue;
        rec.spark = { start: Date.parse(line.start), closes: line.closes, version: 0 };
        if (rec.ts) sparkTick(rec.spark, rec.ts, rec.price);
      }
      changed(batch);
    } catch {
      for (const rec of batch) rec.sparkAsked = false; // asked again when seen again
    }
    asking = wanted.size > 0;
    if (asking) setTimeout(sparklines, 120);
  }

  let frame = 0;
  box.addEventListener("scroll", () => {
    frame ||= requestAnimationFrame(() => {
      frame = 0;
      render(new Set());
    });
  }, { passive: true });
  new ResizeObserver(() => {
    measure();
    render(new Set());
  }).observe(box);
  table.tHead.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-sort]");
    if (!button) return;
    ascending = !(sortBy === button.dataset.sort && ascending);
    sortBy = button.dataset.sort;
    for (const th of button.closest("tr").cells) th.removeAttribute("aria-sort");
    button.parentElement.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    order();
    render();
  });

  order();
  return {
    update(dirty) {
      const scrollTop = box.scrollTop;
      if (dirty.size && !TEXT.has(sortBy)) order();
      render(dirty, scrollTop);
    },
    refresh() {
      order();
      render();
    },
    filter(text) {
      query = text.trim();
      order();
      box.scrollTop = 0;
      render();
    },
    order: () => view.map((r) => r.symbol),
    visible: () => rows.map((row) => row.rec.symbol),
  };
}
