// Supervisor wall: calls ringing and in progress (from the websocket), and per queue
// (and per DID for calls that reached no queue) and per agent the day's figures from
// GET /api/wall, computed by the server over the whole call log: offered, answered,
// service level, abandon rate, average handling time, longest wait; live: callers
// waiting now and the longest wait (from the PBX's queue events), agents by name with
// their state (ringing / talking / paused / idle / offline). The figures are fetched
// again after each ended call; queue and agent states follow `presence.changed`.

import { fmtDuration, fmtInt, fmtNumber, t } from "./i18n.js";
import { api, dayEnd, dayStart, h, query } from "./ui.js";
import { dispositionLabel } from "./wrapup.js";

/** The period's calls per outcome (disposition) the agents chose (GET /api/wall). */
function outcomeTable(dispositions = {}) {
  const rows = Object.entries(dispositions);
  return h(
    "section",
    { class: "wall-outcomes", "aria-labelledby": "wall-outcomes-title" },
    h("h2", { id: "wall-outcomes-title", text: t("wall_outcomes") }),
    rows.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("disposition") }), h("th", { scope: "col", text: t("count") }))), h("tbody", {}, rows.map(([code, n]) => h("tr", { dataset: { disposition: code } }, h("td", { text: dispositionLabel(code) }), h("td", { text: fmtInt(n) })))))
      : h("p", { class: "empty", text: t("wall_no_outcomes") }),
  );
}

const LIVE = new Set(["ringing", "talking"]);
const STRINGS = {
  en: {
    queues: "Queues and lines",
    line: "Queue / line",
    waiting: "Waiting now",
    longest: "Longest wait",
    offered: "Calls",
    answered: "Answered",
    service_level: "Answered within {s} s",
    abandon_rate: "Abandoned",
    aht: "Avg. handling",
    missed: "Missed",
    state: "State",
    talk: "Talk time",
    agent: "Agent",
    none: "No calls on this day.",
    state_idle: "idle",
    state_ringing: "ringing",
    state_talking: "talking",
    state_paused: "paused",
    state_offline: "offline",
  },
  de: {
    queues: "Warteschlangen und Leitungen",
    line: "Warteschlange / Leitung",
    waiting: "Wartend",
    longest: "Längste Wartezeit",
    offered: "Anrufe",
    answered: "Angenommen",
    service_level: "In {s} s angenommen",
    abandon_rate: "Aufgelegt",
    aht: "Ø Gesprächszeit",
    missed: "Verpasst",
    state: "Status",
    talk: "Gesprächszeit",
    agent: "Mitarbeiter",
    none: "Keine Anrufe an diesem Tag.",
    state_idle: "frei",
    state_ringing: "klingelt",
    state_talking: "im Gespräch",
    state_paused: "Pause",
    state_offline: "abgemeldet",
  },
};

function tw(key, values = {}) {
  const lang = document.documentElement.lang in STRINGS ? document.documentElement.lang : "en";
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// Numbers as the server formats them (phonenumbers, core.phones.display_number: the call
// JSON's *_display, a DID line's line_display); the raw number where it gave none.
const shown = (call, field) => call[`${field}_display`] || call[field] || "";
const pct = (ratio) => (ratio === null || ratio === undefined ? "—" : `${fmtNumber(ratio * 100, 0)} %`);
const secs = (value) => (value === null || value === undefined ? "—" : fmtDuration(value));

export class Wall {
  constructor(root) {
    this.root = root;
    this.calls = new Map(); // id -> call JSON, in progress
    this.summary = null; // GET /api/wall
    this.received = 0; // Date.now() when the summary (or a presence update) came
    this.day = null; // null: today, live
    this.ticker = null;
    this.refetch = null;
  }

  async show() {
    this.day = null;
    const picker = h("input", { id: "wall-day", type: "date", value: localDate(new Date()) });
    picker.addEventListener("change", () => this.choose(picker.value));
    this.liveBox = h("section", { class: "wall-live", "aria-labelledby": "wall-live-title" });
    this.figBox = h("div", { class: "wall-figures" });
    this.root.replaceChildren(
      h("h1", { text: t("wall_title") }),
      h("div", { class: "wall-day" }, h("label", { for: "wall-day", text: t("wall_day") }), picker),
      this.liveBox,
      this.figBox,
    );
    await this.reload();
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  /** Today's figures and the calls in progress (on show, and on `reload` from the live link). */
  async reload() {
    const [summary, ringing, talking] = await Promise.all([
      this.fetchSummary(),
      api.get(`/api/calls${query({ status: "ringing", limit: 500 })}`),
      api.get(`/api/calls${query({ status: "talking", limit: 500 })}`),
    ]);
    this.calls = new Map([...ringing.calls, ...talking.calls].map((c) => [c.id, c]));
    this.setSummary(summary);
  }

  fetchSummary(date = null) {
    return api.get(`/api/wall${query({ since: dayStart(date || undefined), until: dayEnd(date || undefined) })}`);
  }

  setSummary(summary) {
    this.summary = summary;
    this.received = Date.now();
    this.render();
  }

  async choose(value) {
    const today = localDate(new Date());
    if (!value || value === today) {
      this.day = null;
      await this.reload();
      return;
    }
    this.day = value;
    this.setSummary(await this.fetchSummary(new Date(`${value}T00:00`)));
  }

  handle(event) {
    if (event.type === "presence.changed") return this.presence(event);
    if (!event.type.startsWith("call.") || !event.call) return;
    if (LIVE.has(event.call.status)) this.calls.set(event.call.id, event.call);
    else this.calls.delete(event.call.id);
    if (this.day !== null || !this.liveBox?.isConnected) return;
    this.renderLive();
    if (event.type === "call.ended" || event.type === "call.updated") {
      clearTimeout(this.refetch);
      this.refetch = setTimeout(async () => this.day === null && this.setSummary(await this.fetchSummary()), 300);
    }
  }

  presence(event) {
    if (!this.summary || this.day !== null || !this.liveBox?.isConnected) return;
    if (event.queues) {
      const live = new Map(event.queues.map((q) => [q.queue, q]));
      for (const row of this.summary.queues) row.live = live.get(row.line) || null;
      for (const [name, q] of live) if (!this.summary.queues.some((r) => r.line === name)) this.summary.queues.push({ line: name, queue: true, offered: 0, live: q });
      this.summary.as_of = event.as_of;
      this.received = Date.now();
    }
    if (event.agent) {
      const row = this.summary.agents.find((a) => a.extension === event.agent.extension);
      if (row) row.presence = event.agent;
      else this.summary.agents.push({ extension: event.agent.extension, name: null, answered: 0, missed: 0, presence: event.agent });
    }
    this.renderFigures();
  }

  name(ext) {
    const row = this.summary?.agents.find((a) => a.extension === ext);
    return row?.name || ext;
  }

  render() {
    this.renderLive();
    this.renderFigures();
  }

  renderLive() {
    this.liveBox.hidden = this.day !== null;
    const live = [...this.calls.values()].filter((c) => LIVE.has(c.status)).sort((a, b) => a.started_at.localeCompare(b.started_at));
    this.liveBox.replaceChildren(h("h2", { id: "wall-live-title", text: t("wall_live") }), live.length ? this.liveTable(live) : h("p", { class: "empty", text: t("wall_no_live") }));
  }

  renderFigures() {
    if (!this.summary) return;
    this.figBox.replaceChildren(this.queueTable(), this.agentTable(), outcomeTable(this.summary.dispositions));
  }

  /** The live wait of a queue's longest-waiting caller, counted on from the PBX's time. */
  longest(live) {
    if (!live?.longest_waiting_since || !this.summary.as_of) return null;
    const atPbx = (Date.parse(this.summary.as_of) - Date.parse(live.longest_waiting_since)) / 1000;
    return Math.max(0, atPbx + (Date.now() - this.received) / 1000);
  }

  tick() {
    if (!this.liveBox?.isConnected) {
      clearInterval(this.ticker);
      return;
    }
    for (const cell of this.liveBox.querySelectorAll("td.waiting")) cell.textContent = fmtDuration(waited(cell.dataset.since));
    for (const row of this.figBox.querySelectorAll(".wall-queues tbody tr")) {
      const q = this.summary.queues.find((r) => r.line === row.dataset.line);
      const wait = this.longest(q?.live);
      if (wait !== null) row.querySelector(".longest-now").textContent = fmtDuration(wait);
    }
  }

  liveTable(calls) {
    const head = [t("caller"), t("queue_or_line"), t("agent"), t("state"), t("waiting")];
    const agents = (c) => (c.status === "talking" ? (c.answered_by ? [c.answered_by] : c.direction === "inbound" ? [] : [c.caller]) : c.agents_rung);
    return h(
      "table",
      { class: "live" },
      h("thead", {}, h("tr", {}, head.map((title) => h("th", { scope: "col", text: title })))),
      h(
        "tbody",
        {},
        calls.map((c) =>
          h(
            "tr",
            { dataset: { callId: c.id, status: c.status } },
            h("td", { text: c.direction !== "inbound" ? shown(c, "callee") : c.caller_name && c.caller_name !== c.caller ? `${c.caller_name} (${shown(c, "caller")})` : shown(c, "caller") }),
            h("td", { text: c.queue || shown(c, "did") }),
            h("td", { class: "agent", text: agents(c).map((ext) => this.name(ext)).join(", ") }),
            h("td", { class: "state", text: t(`status_${c.status}`) }),
            h("td", { class: "waiting", dataset: { since: c.started_at }, text: fmtDuration(waited(c.started_at)) }),
          ),
        ),
      ),
    );
  }

  queueTable() {
    const s = this.summary;
    const today = this.day === null;
    const head = [tw("line"), ...(today ? [tw("waiting"), tw("longest")] : []), tw("offered"), tw("answered"), tw("service_level", { s: s.service_level_seconds }), tw("abandon_rate"), tw("missed"), tw("aht")];
    const rows = s.queues.filter((q) => q.offered || (today && q.live));
    return h(
      "section",
      { class: "wall-queues", "aria-labelledby": "wall-queues-title" },
      h("h2", { id: "wall-queues-title", text: tw("queues") }),
      rows.length
        ? h(
            "table",
            {},
            h("thead", {}, h("tr", {}, head.map((title) => h("th", { scope: "col", text: title })))),
            h(
              "tbody",
              {},
              rows.map((q) =>
                h(
                  "tr",
                  { dataset: { line: q.line || "—", queue: q.queue ? "1" : "0" } },
                  h("th", { scope: "row", text: q.queue ? q.line : q.line_display || q.line || "—" }),
                  today ? h("td", { class: "waiting", text: q.live ? fmtInt(q.live.waiting) : "—" }) : null,
                  today ? h("td", { class: "longest-now", text: secs(this.longest(q.live)) }) : null,
                  h("td", { class: "offered", text: fmtInt(q.offered || 0) }),
                  h("td", { class: "answered", text: fmtInt(q.answered || 0) }),
                  h("td", { class: "sl", dataset: { ratio: q.service_level ?? "" }, text: pct(q.service_level) }),
                  h("td", { class: q.abandon_rate > 0.1 ? "abandon bad" : "abandon", dataset: { ratio: q.abandon_rate ?? "" }, text: pct(q.abandon_rate) }),
                  h("td", { class: "missed", text: fmtInt((q.missed || 0) + (q.abandoned || 0)) }),
                  h("td", { class: "aht", dataset: { seconds: q.average_handling ?? "" }, text: secs(q.average_handling) }),
                ),
              ),
            ),
          )
        : h("p", { class: "empty", text: tw("none") }),
    );
  }

  agentTable() {
    const today = this.day === null;
    const head = [tw("agent"), ...(today ? [tw("state")] : []), tw("answered"), tw("missed"), tw("talk"), tw("aht")];
    const rows = [...this.summary.agents].sort((a, b) => (a.name || a.extension).localeCompare(b.name || b.extension));
    return h(
      "section",
      { class: "wall-agents", "aria-labelledby": "wall-agents-title" },
      h("h2", { id: "wall-agents-title", text: t("wall_agents") }),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, head.map((title) => h("th", { scope: "col", text: title })))),
        h(
          "tbody",
          {},
          rows.map((a) => {
            const state = a.presence?.state || "offline";
            const paused = a.presence?.queues?.find((q) => q.paused);
            return h(
              "tr",
              { dataset: { agent: a.extension } },
              h("th", { scope: "row", text: a.name ? `${a.name} (${a.extension})` : a.extension }),
              today ? h("td", { class: "state", dataset: { state }, text: paused && state === "paused" ? `${tw("state_paused")}: ${paused.paused_reason || "—"}` : tw(`state_${state}`) }) : null,
              h("td", { class: "answered", text: fmtInt(a.answered || 0) }),
              h("td", { class: "missed", text: fmtInt(a.missed || 0) }),
              h("td", { class: "talk", dataset: { seconds: a.talk_seconds || 0 }, text: fmtDuration(a.talk_seconds || 0) }),
              h("td", { class: "aht", text: secs(a.average_handling) }),
            );
          }),
        ),
      ),
    );
  }
}

function waited(iso) {
  return (Date.now() - Date.parse(iso)) / 1000;
}

function localDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}
