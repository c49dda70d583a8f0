// The live link: one websocket to /ws that reconnects by itself.
//
// The server numbers events (`seq`) and greets with `hello {seq, epoch}`. After a
// drop we reconnect with `?since=<last seq>&epoch=<epoch>` and the server replays
// exactly what we missed, or sends `reload` when the gap is too old or the daemon
// restarted (new epoch); then the views refetch from the API. Events with a seq at
// or below the last one applied are ignored, so nothing is applied twice.
//
// The login token never goes into the websocket's URL (proxy logs, history): each
// connection first gets a one-time ticket (POST /api/ws-ticket, token in the header)
// and opens /ws?ticket=...

const PING_EVERY = 20_000;
const SILENCE_LIMIT = 45_000;
const MAX_BACKOFF = 10_000;

export class LiveLink {
  /**
   * @param {() => string} token the current session token
   * @param {{onEvent: (e) => void, onReload: () => void, onState: (s) => void, onAuthLost: () => Promise<boolean>}} handlers
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    this.lastSeq = null;
    this.epoch = null;
    this.applied = []; // seqs applied, in order (inspected by the browser tests)
    this.reloads = 0; // `reload` events received
    this.state = "connecting";
    this.failures = 0;
    this.ws = null;
    this.connecting = false; // waiting for a ticket
    this.stopped = false;
    this.timers = { retry: null, ping: null };
    this.lastHeard = 0;
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
  }

  async ticket() {
    const headers = { Accept: "application/json", Authorization: `Bearer ${this.token()}` };
    const resp = await fetch("/api/ws-ticket", { method: "POST", headers });
    if (!resp.ok) throw new Error(`no websocket ticket: ${resp.status}`);
    return (await resp.json()).ticket;
  }

  async url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ ticket: await this.ticket() });
    if (this.lastSeq !== null) {
      params.set("since", String(this.lastSeq));
      if (this.epoch) params.set("epoch", this.epoch);
    }
    return `${scheme}://${location.host}/ws?${params}`;
  }

  async connect() {
    clearTimeout(this.timers.retry);
    if (this.stopped || this.connecting) return;
    this.setState(this.lastSeq === null ? "connecting" : "reconnecting");
    let url;
    this.connecting = true;
    try {
      url = await this.url();
    } catch {
      if (!this.stopped) this.scheduleRetry(false); // offline, or the login has ended
      return;
    } finally {
      this.connecting = false;
    }
    if (this.stopped || this.ws) return;
    const ws = new WebSocket(url);
    this.ws = ws;
    let greeted = false;
    ws.onmessage = (msg) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      const event = JSON.parse(msg.data);
      if (event.type === "hello") {
        greeted = true;
        this.failures = 0;
        this.hello(event);
      } else if (event.type === "reload") {
        this.lastSeq = event.seq;
        this.reloads += 1;
        this.handlers.onReload();
      } else if (event.type !== "pong") {
        this.deliver(event);
      }
    };
    ws.onopen = () => {
      this.lastHeard = Date.now();
      clearInterval(this.timers.ping);
      this.timers.ping = setInterval(() => this.keepAlive(ws), PING_EVERY);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      clearInterval(this.timers.ping);
      this.ws = null;
      if (!this.stopped) this.scheduleRetry(greeted);
    };
  }

  hello(event) {
    const first = this.lastSeq === null;
    this.epoch = event.epoch;
    if (first) this.lastSeq = event.seq;
    this.setState("live");
    if (first) this.handlers.onReload();
  }

  deliver(event) {
    if (typeof event.seq !== "number" || (this.lastSeq !== null && event.seq <= this.lastSeq)) return;
    this.lastSeq = event.seq;
    this.applied.push(event.seq);
    try {
      this.handlers.onEvent(event);
    } catch (err) {
      console.error("live event failed", event.type, err);
    }
  }

  keepAlive(ws) {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT) {
      ws.close(4001, "silent");
      return;
    }
    ws.send(JSON.stringify({ type: "ping" }));
  }

  async scheduleRetry(greeted) {
    this.failures = greeted ? 1 : this.failures + 1;
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    if (this.failures >= 3 && !(await this.handlers.onAuthLost())) return;
    if (this.stopped) return;
    const base = Math.min(MAX_BACKOFF, 250 * 2 ** Math.min(this.failures, 6));
    const delay = base / 2 + Math.random() * (base / 2);
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws || this.connecting) return;
    this.failures = 0;
    this.connect();
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState(state);
  }
}
