// The heatmap: a squarified treemap by sector on one canvas; changed tiles are redrawn.

import * as fmt from "./format.js";

const STEP = 0.5; // % per colour step, 5 steps each way
const HEAD = 17; // px of a sector's title
const COLLAPSED = 0.015; // share of the area a collapsed sector keeps
const VOLUME_RELAYOUT_MS = 5000; // tiles sized by volume move at most this often

/** The colour step of a change % (-5..5), rounded half away from zero; null if unknown. */
export function changeBucket(pct) {
  if (pct === null || pct === undefined) return null;
  const step = Math.min(5, Math.floor(Math.abs(pct) / STEP + 0.5));
  return pct >= 0 ? step : -step;
}

/** Squarified treemap (Bruls et al.): `items` ({weight}, largest first) get x, y, w, h. */
export function squarify(items, x, y, w, h) {
  const total = items.reduce((sum, it) => sum + it.weight, 0);
  const scale = total > 0 ? (w * h) / total : 0;
  for (let i = 0, j; i < items.length; i = j) {
    const side = Math.min(w, h) ** 2;
    let sum = 0, min = Infinity, max = 0, worst = Infinity;
    for (j = i; j < items.length; j += 1) { // grow the row while its worst ratio improves
      const a = items[j].weight * scale;
      const s = (sum + a) ** 2;
      const ratio = Math.max((side * Math.max(max, a)) / s, s / (side * Math.min(min, a)));
      if (j > i && ratio > worst) break;
      sum += a; min = Math.min(min, a); max = Math.max(max, a); worst = ratio;
    }
    const thick = side > 0 ? sum / Math.sqrt(side) : 0;
    let at = 0;
    for (let k = i; k < j; k += 1) {
      const len = thick > 0 ? (items[k].weight * scale) / thick : 0;
      Object.assign(items[k], w >= h ? { x, y: y + at, w: thick, h: len }
        : { x: x + at, y, w: len, h: thick });
      at += len;
    }
    if (w >= h) { x += thick; w -= thick; } else { y += thick; h -= thick; }
  }
  return items;
}

const inside = (r, x, y) => x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h;
const arrowed = (pct) => ({ up: "▲ ", down: "▼ " }[fmt.direction(pct)] ?? "") + fmt.percent(pct);
const mean = (tiles) => {
  const known = tiles.map((t) => t.rec.change_pct).filter((v) => v !== null && v !== undefined);
  return known.length ? known.reduce((a, b) => a + b) / known.length : null;
};

export class Heatmap {
  constructor(root, records, { toggles, open }) {
    Object.assign(this, { root, records, toggles, mode: "equal", sectors: [], tiles: new Map(),
      collapsed: new Set(), laidOut: 0, hover: null, size: {} });
    const canvas = (this.canvas = root.querySelector("canvas"));
    this.tip = root.querySelector("[data-heatmap-tip]");
    this.ctx = canvas.getContext("2d");
    this.palette();
    new ResizeObserver(() => root.clientWidth !== this.size.width && this.relayout()).observe(root);
    canvas.addEventListener("mousemove", (e) => this.point(e.offsetX, e.offsetY));
    canvas.addEventListener("mouseleave", () => this.point(-1));
    canvas.addEventListener("click", (e) => {
      const hit = this.hit(e.offsetX, e.offsetY);
      if (hit?.tile) open(hit.tile.rec.symbol);
      else if (hit) this.toggle(hit.sector.name);
    });
    toggles.addEventListener("click", (e) => {
      const name = e.target.closest("[data-sector]")?.dataset.sector;
      if (name) this.toggle(name);
    });
    document.addEventListener("mf:theme", () => { this.palette(); this.draw(); });
  }

  palette() {
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(`--${name}`).trim();
    this.colours = { bg: v("bg"), fg: v("fg"), muted: v("muted") };
    for (let b = -5; b <= 5; b += 1) this.colours[b] = v(`h${b}`);
    this.light = document.documentElement.dataset.theme === "light";
  }

  setMode(mode) {
    this.mode = mode;
    this.relayout();
  }

  toggle(sector) {
    if (!this.collapsed.delete(sector)) this.collapsed.add(sector);
    this.relayout();
  }

  /** Volumes moved: tiles sized by them follow, every few seconds. */
  volumesChanged() {
    if (this.mode === "volume" && performance.now() - this.laidOut > VOLUME_RELAYOUT_MS) this.relayout();
  }

  relayout() {
    this.laidOut = performance.now();
    const recs = Object.values(this.records);
    const width = this.root.clientWidth;
    const height = Math.round(Math.min(600, Math.max(260, 160 + 26 * Math.sqrt(recs.length)),
      Math.max(260, width * 0.9)));
    const dpr = devicePixelRatio || 1;
    Object.assign(this.canvas, { width: Math.round(width * dpr), height: Math.round(height * dpr) });
    this.canvas.style.height = `${height}px`;
    this.size = { width, height, dpr };
    const average = recs.reduce((s, r) => s + (r.volume || 0), 0) / recs.length;
    const weight = this.mode === "volume" && average > 0 ? (r) => 0.2 + (r.volume || 0) / average
      : () => 1;
    const groups = {};
    for (const rec of recs) (groups[rec.sector] ??= []).push({ rec, weight: weight(rec) });
    const total = recs.reduce((s, r) => s + weight(r), 0);
    this.sectors = Object.entries(groups).map(([name, tiles]) => {
      const collapsed = this.collapsed.has(name);
      return { name, tiles, collapsed,
        weight: collapsed ? total * COLLAPSED : tiles.reduce((s, t) => s + t.weight, 0) };
    }).sort((a, b) => b.weight - a.weight || (a.name < b.name ? -1 : 1));
    squarify(this.sectors, 0, 0, width, height);
    this.tiles.clear();
    for (const s of this.sectors) {
      s.head = s.h > HEAD * 2.5 && s.w > 50 ? HEAD : 0;
      if (s.collapsed) continue;
      s.tiles.sort(this.mode === "volume" ? (a, b) => b.weight - a.weight
        : (a, b) => (a.rec.symbol < b.rec.symbol ? -1 : 1));
      squarify(s.tiles, s.x + 1, s.y + 1 + s.head, s.w - 2, s.h - 2 - s.head);
      for (const t of s.tiles) this.tiles.set(t.rec.symbol, t);
    }
    // Sector buttons: collapse and expand from the keyboard too.
    const names = this.sectors.map((s) => `${s.name}\t${s.tiles.length}\t${s.collapsed}`).sort();
    if (names.join() !== this.names) {
      this.names = names.join();
      this.toggles.replaceChildren(...names.map((line) => {
        const [name, count, collapsed] = line.split("\t");
        const button = document.createElement("button");
        Object.assign(button, { type: "button", textContent: `${name} ${count}` });
        button.dataset.sector = name;
        button.setAttribute("aria-expanded", String(collapsed !== "true"));
        return button;
      }));
    }
    this.draw();
  }

  /** Redraws the tiles of the `changed` records, or everything. */
  draw(changed = null) {
    const { ctx, colours, size } = this;
    if (!size.width) return;
    ctx.setTransform(size.dpr, 0, 0, size.dpr, 0, 0);
    ctx.textBaseline = "middle";
    if (!changed) {
      this.epoch = (this.epoch ?? 0) + 1; // every tile drawn again
      this.font = null;
      ctx.fillStyle = colours.bg;
      ctx.fillRect(0, 0, size.width, size.height);
    }
    for (const s of this.sectors) {
      if (!changed || (s.collapsed && s.tiles.some((t) => changed.has(t.rec)))) this.drawSector(s);
    }
    if (changed) for (const rec of changed) if (this.tiles.has(rec.symbol)) this.drawTile(this.tiles.get(rec.symbol));
    if (this.hover) this.point(...this.hover);
  }

  drawSector(s) {
    const { ctx, colours } = this;
    if (s.head) {
      ctx.fillStyle = colours.bg;
      ctx.fillRect(s.x, s.y, s.w, s.head + 1);
      this.text(`${s.collapsed ? "▸" : "▾"} ${s.name}  ${s.tiles.length}`, s.x + 3,
        s.y + s.head / 2 + 1, s.w - 6, 11, colours.muted, 600);
    }
    if (!s.collapsed) return s.tiles.forEach((t) => this.drawTile(t));
    const pct = mean(s.tiles);
    const bucket = changeBucket(pct);
    const h = s.h - s.head;
    ctx.fillStyle = colours[bucket ?? 0];
    ctx.fillRect(s.x + 1, s.y + s.head + 1, s.w - 2, h - 2);
    if (h > 16) {
      this.text(`${s.tiles.length} symbols, ${arrowed(pct)}`, s.x + 4, s.y + s.head + h / 2,
        s.w - 8, 11, this.ink(bucket));
    }
  }

  ink(bucket) {
    return this.light && Math.abs(bucket ?? 0) <= 1 ? this.colours.fg : "#fff";
  }

  drawTile(t) {
    const { rec } = t;
    const bucket = changeBucket(rec.change_pct);
    const gap = t.w > 4 && t.h > 4 ? 1 : 0;
    const [w, h] = [t.w - gap, t.h - gap];
    const size = Math.min(16, h / 2.2, w / 3.6);
    const fit = Math.min(3, Math.floor(h / (size * 1.3)));
    const n = size < 9 ? 0 : Math.max(1, fit);
    const lines = [rec.symbol, n > 1 && arrowed(rec.change_pct), n > 2 && fmt.price(rec.price)]
      .slice(0, n);
    const key = `${this.epoch}|${bucket}|${lines}`;
    t.shown = { bucket, lines, price: rec.price, pct: rec.change_pct };
    if (t.key === key) return; // it looks the same
    t.key = key;
    this.ctx.fillStyle = this.colours[bucket ?? 0];
    this.ctx.fillRect(t.x, t.y, w, h);
    const top = t.y + h / 2 - ((lines.length - 1) * size * 1.25) / 2;
    lines.forEach((line, i) => this.text(line, t.x + 4, top + i * size * 1.25, w - 6,
      i ? size * 0.85 : size, this.ink(bucket), i ? 400 : 700));
  }

  text(text, x, y, room, size, colour, weight = 400) {
    const font = `${weight} ${Math.round(size)}px system-ui, sans-serif`;
    if (this.font !== font) this.ctx.font = this.font = font;
    this.ctx.fillStyle = colour;
    this.ctx.fillText(text, x, y, Math.max(1, room));
  }

  hit(x, y) {
    const sector = this.sectors.find((s) => inside(s, x, y));
    if (!sector || sector.collapsed || y < sector.y + 1 + sector.head) return sector && { sector };
    const tile = sector.tiles.find((t) => inside(t, x, y));
    return tile && { tile };
  }

  /** The pointer at (x, y) (x < 0: gone): the tooltip follows it. */
  point(x, y) {
    const hit = x < 0 ? null : this.hit(x, y);
    this.hover = hit ? [x, y] : null;
    this.canvas.style.cursor = hit ? "pointer" : "";
    this.tip.hidden = !hit;
    if (!hit) return;
    const { rec } = hit.tile ?? {};
    const s = hit.sector;
    this.tip.textContent = rec
      ? `${rec.symbol}${rec.name ? ` · ${rec.name}` : ""}\n${fmt.price(rec.price)}  ${arrowed(rec.change_pct)}`
      : `${s.name}: ${s.tiles.length} symbols, average ${arrowed(mean(s.tiles))}`;
    Object.assign(this.tip.style, { left: `${Math.min(x + 12, this.size.width - 220)}px`,
      top: `${y + 14}px` });
  }

  /** Test hook: a symbol's tile (CSS px) and what it was last drawn with. */
  tileAt(symbol) {
    const rec = this.records[symbol];
    const t = this.tiles.get(symbol);
    const sector = this.sectors.find((s) => s.name === rec?.sector);
    const { price, pct, ...shown } = t?.shown ?? {};
    return rec && { symbol, sector: rec.sector, collapsed: Boolean(sector?.collapsed),
      ...(t && { x: t.x, y: t.y, w: t.w, h: t.h, ...shown, price: fmt.price(price),
        change_pct: arrowed(pct) }) };
  }
}
