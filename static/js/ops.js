// The operators' status page (/ops/): polls /ops/status.json and redraws the numbers and
// the small charts (inline SVG polylines). Ingest series come whole from the server (the
// last minute of batch stats); sockets and new errors are kept here, one point a poll.

const KEEP = 90; // points of the page's own series (3 minutes at one poll every 2 s)
const own = { sockets: [], errors: [] };
let lastErrors = null;

const text = (value) => (value === null || value === undefined ? "—" : String(value));

function setField(name, value) {
  for (const el of document.querySelectorAll(`[data-field="${name}"]`)) el.textContent = text(value);
}

function pairs(counts) {
  return Object.entries(counts).map(([name, n]) => `${name} ${n}`).join(", ");
}

// A polyline of `values` (nulls skipped) scaled to the chart's 300 × 80 box, from 0 up to
// the largest value; the chart's label says the newest and the largest.
function draw(name, values) {
  const svg = document.querySelector(`svg[data-chart="${name}"]`);
  if (!svg) return;
  const points = [];
  const max = Math.max(1, ...values.filter((v) => v !== null));
  const step = values.length > 1 ? 300 / (values.length - 1) : 0;
  values.forEach((v, i) => {
    if (v !== null) points.push(`${(i * step).toFixed(1)},${(78 - (v / max) * 74).toFixed(1)}`);
  });
  let line = svg.querySelector("polyline");
  if (!line) {
    line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    svg.append(line);
  }
  line.setAttribute("points", points.join(" "));
  svg.dataset.points = String(points.length);
  const newest = values.filter((v) => v !== null).at(-1);
  svg.setAttribute("aria-label", `${svg.dataset.chart}: newest ${text(newest)}, largest ${max}`);
}

function show(status) {
  setField("updated", new Date(status.at * 1000).toLocaleTimeString());
  const warning = document.querySelector('[data-field="redis_error"]');
  warning.hidden = !status.redis_error;
  const ingest = status.ingest;
  if (ingest) {
    setField("ticks_per_s", ingest.ticks_per_s);
    setField("batches_per_s", ingest.batches_per_s);
    setField("lag_p50", ingest.lag_ms.p50);
    setField("lag_p99", ingest.lag_ms.p99);
    setField("newest_batch_age_s", ingest.newest_batch_age_s);
    for (const [stage, ms] of Object.entries(ingest.stages_ms)) {
      const row = document.querySelector(`[data-stage="${stage}"]`);
      if (!row) continue;
      row.querySelector('[data-field="p50"]').textContent = text(ms.p50);
      row.querySelector('[data-field="p99"]').textContent = text(ms.p99);
    }
    draw("ticks_per_s", ingest.series.ticks_per_s);
    draw("lag_ms", ingest.series.lag_ms);
  }
  setField("workers", status.workers ? status.workers.alive : null);
  setField("sockets_total", status.sockets.total);
  for (const [route, count] of Object.entries(status.sockets.by_route)) {
    const el = document.querySelector(`[data-route="${route}"]`);
    if (el) el.textContent = String(count);
  }
  setField("frames_sent", status.frames_sent);
  const errors = status.errors;
  setField("tick_dropped", pairs(errors.tick_dropped));
  setField("redis", pairs(errors.redis));
  for (const name of ["tick_retries", "ticks_skipped", "http_5xx", "flood_closes", "source_malformed"]) {
    setField(name, errors[name]);
  }
  for (const source of status.sources) {
    const row = document.querySelector(`[data-source="${source.name}"]`);
    if (!row) continue;
    row.querySelector('[data-field="connected"]').textContent = source.connected ? "yes" : "no";
    row.querySelector('[data-field="seconds_since_last_message"]').textContent =
      text(source.seconds_since_last_message);
    row.querySelector('[data-field="gaps_filled"]').textContent = String(source.gaps_filled);
  }
  own.sockets.push(status.sockets.total);
  own.errors.push(lastErrors === null ? 0 : Math.max(0, errors.total - lastErrors));
  lastErrors = errors.total;
  for (const series of Object.values(own)) if (series.length > KEEP) series.shift();
  draw("sockets", own.sockets);
  draw("errors", own.errors);
}

async function poll(every) {
  try {
    const answer = await fetch("/ops/status.json", { headers: { Accept: "application/json" } });
    if (answer.ok) show(await answer.json());
    else setField("updated", `HTTP ${answer.status}`);
  } catch {
    setField("updated", "unreachable");
  }
  setTimeout(() => poll(every), every);
}

const first = JSON.parse(document.getElementById("ops-status").textContent);
show(first);
setTimeout(() => poll(first.poll_ms), first.poll_ms);
