// Chart studies over candle closes, with TA-Lib's definitions (the same ones the pipeline's
// per-tick indicators follow, docs/contracts.md#indicators). Each returns an array as long as its input,
// with null where TA-Lib gives no value yet (its look-back).

/** Simple moving average (TA-Lib SMA). */
export function sma(values, n) {
  const out = new Array(values.length).fill(null);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    if (i >= n) sum -= values[i - n];
    if (i >= n - 1) out[i] = sum / n;
  }
  return out;
}

/**
 * EMA as TA-Lib computes it: the first value is the SMA of the `n` values ending at
 * `start + n - 1`, then k = 2 / (n + 1). `start` lets MACD seed later, as TA-Lib does.
 */
export function ema(values, n, start = 0) {
  const out = new Array(values.length).fill(null);
  const first = start + n - 1;
  if (first >= values.length) return out;
  let prev = 0;
  for (let i = start; i <= first; i++) prev += values[i];
  prev /= n;
  out[first] = prev;
  const k = 2 / (n + 1);
  for (let i = first + 1; i < values.length; i++) {
    prev = (values[i] - prev) * k + prev;
    out[i] = prev;
  }
  return out;
}

/** RSI (TA-Lib): Wilder smoothing seeded with the simple means of the first n gains and losses. */
export function rsi(values, n = 14) {
  const out = new Array(values.length).fill(null);
  if (values.length <= n) return out;
  let gain = 0;
  let loss = 0;
  for (let i = 1; i <= n; i++) {
    const d = values[i] - values[i - 1];
    if (d > 0) gain += d;
    else loss -= d;
  }
  gain /= n;
  loss /= n;
  const value = () => (gain + loss === 0 ? 0 : (100 * gain) / (gain + loss));
  out[n] = value();
  for (let i = n + 1; i < values.length; i++) {
    const d = values[i] - values[i - 1];
    gain = (gain * (n - 1) + (d > 0 ? d : 0)) / n;
    loss = (loss * (n - 1) + (d < 0 ? -d : 0)) / n;
    out[i] = value();
  }
  return out;
}

/**
 * MACD as TA-Lib computes it: both EMAs start at index slow - 1, the fast one seeded with
 * the SMA of the `fast` values ending there (not an independent EMA12); the signal is an
 * EMA of the MACD line seeded with the SMA of its first `signal` values. All three outputs
 * start at slow + signal - 2.
 */
export function macd(values, fast = 12, slow = 26, signal = 9) {
  const n = values.length;
  const line = new Array(n).fill(null);
  const sig = new Array(n).fill(null);
  const hist = new Array(n).fill(null);
  const lookback = slow + signal - 2;
  if (n <= lookback) return { macd: line, signal: sig, hist };
  const fastEma = ema(values, fast, slow - fast);
  const slowEma = ema(values, slow, 0);
  const raw = [];
  for (let i = slow - 1; i < n; i++) raw.push(fastEma[i] - slowEma[i]);
  const smoothed = ema(raw, signal, 0);
  for (let j = signal - 1; j < raw.length; j++) {
    const i = j + slow - 1;
    line[i] = raw[j];
    sig[i] = smoothed[j];
    hist[i] = raw[j] - smoothed[j];
  }
  return { macd: line, signal: sig, hist };
}

/** Bollinger bands (TA-Lib BBANDS with SMA): middle ± k × population standard deviation. */
export function bollinger(values, n = 20, k = 2) {
  const middle = sma(values, n);
  const upper = new Array(values.length).fill(null);
  const lower = new Array(values.length).fill(null);
  for (let i = n - 1; i < values.length; i++) {
    let sq = 0;
    for (let j = i - n + 1; j <= i; j++) sq += (values[j] - middle[i]) ** 2;
    const sd = Math.sqrt(sq / n);
    upper[i] = middle[i] + k * sd;
    lower[i] = middle[i] - k * sd;
  }
  return { upper, middle, lower };
}
