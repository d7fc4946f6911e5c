// The WebSocket client every page shares: reconnects with capped exponential backoff and
// jitter, re-runs each feed's `onOpen` (subscriptions, refetches) after a reconnect, and
// shows the state of the page's feeds in the header (data-field="connection").

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
const OFFLINE_AFTER_FAILURES = 6; // still retrying, but tell the reader the data is stale
const FINAL_CODES = new Set([4401, 4404]); // unauthorised, unknown symbol: retrying cannot help

const feeds = new Set();

// The page's origin, or the second port a page names (make run without nginx).
function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const port = document.querySelector('meta[name="marketflux-ws-port"]')?.content;
  const host = port ? `${location.hostname}:${port}` : location.host; // [::1] keeps its brackets
  return `${scheme}//${host}${path}`;
}

/** The delay before reconnect attempt `n` (0-based): half fixed, half random, capped. */
export function backoff(n) {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** n);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function renderState() {
  const states = [...feeds].map((f) => f.state);
  let state = "idle";
  if (states.includes("offline")) state = "offline";
  else if (states.some((s) => s === "reconnecting" || s === "connecting")) {
    state = states.includes("reconnecting") ? "reconnecting" : "connecting";
  } else if (states.length) state = "live";
  if (!navigator.onLine && states.length) state = "offline";
  for (const el of document.querySelectorAll('[data-field="connection"]')) {
    el.dataset.state = state;
    el.textContent = state;
  }
}

export class Feed {
  /**
   * @param {string} path  e.g. "/ws/market"
   * @param {{onMessage?: (msg: object) => void, onOpen?: (reconnected: boolean) => void}} handlers
   */
  constructor(path, { onMessage, onOpen } = {}) {
    this.path = path;
    this.messageHandlers = onMessage ? [onMessage] : [];
    this.openHandlers = onOpen ? [onOpen] : [];
    this.failures = 0;
    this.opened = false;
    this.state = "connecting";
    this.timer = null;
    feeds.add(this);
    this.connect();
  }

  on(kind, handler) {
    (kind === "open" ? this.openHandlers : this.messageHandlers).push(handler);
    if (kind === "open" && this.state === "live") handler(false);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  setState(state) {
    this.state = state;
    renderState();
  }

  connect() {
    clearTimeout(this.timer);
    const socket = new WebSocket(wsUrl(this.path));
    this.socket = socket;
    socket.addEventListener("open", () => {
      const reconnected = this.opened;
      this.opened = true;
      this.failures = 0;
      this.setState("live");
      for (const handler of this.openHandlers) handler(reconnected);
    });
    socket.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return; // the server sends JSON only; ignore anything else
      }
      for (const message of Array.isArray(data) ? data : [data]) {
        for (const handler of this.messageHandlers) handler(message);
      }
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      if (FINAL_CODES.has(event.code)) {
        this.setState("offline");
        return;
      }
      this.failures += 1;
      this.setState(this.failures >= OFFLINE_AFTER_FAILURES ? "offline" : "reconnecting");
      this.timer = setTimeout(() => this.connect(), backoff(this.failures - 1));
    });
  }

  /** Reconnect now (the browser says the network is back). */
  retry() {
    if (this.failures) {
      this.connect();
    }
  }
}

let market = null;

/** The page's one /ws/market socket (the overview subscribes on it; alerts arrive on it). */
export function marketFeed() {
  market ??= new Feed("/ws/market");
  return market;
}

addEventListener("online", () => {
  for (const feed of feeds) feed.retry();
  renderState();
});
addEventListener("offline", renderState);
