// Supervisor wall: calls ringing and in progress (agent, waiting time), missed calls
// today per queue/line, per-agent answered/missed/talk time. Today's figures are
// loaded once and then kept up to date from the websocket stream (no polling); any
// other day is computed the same way from GET /api/calls.

import { fmtDuration, fmtInt, t } from "./i18n.js";
import { api, customerNumber, dayEnd, dayStart, formatNumber, h, query } from "./ui.js";

const LIVE = new Set(["ringing", "talking"]);
const MISSED = new Set(["missed", "abandoned"]);

/** The wall's figures from a list of calls (shared by live and chosen-day views). */
export function figures(calls) {
  const missedByLine = new Map();
  const agents = new Map();
  const agent = (ext) => {
    if (!agents.has(ext)) agents.set(ext, { answered: 0, missed: 0, talk: 0 });
    return agents.get(ext);
  };
  for (const call of calls) {
    if (LIVE.has(call.status)) continue;
    if (MISSED.has(call.status) && call.direction === "inbound") {
      const line = call.queue || call.did || "—";
      missedByLine.set(line, (missedByLine.get(line) || 0) + 1);
      for (const ext of call.agents_rung) agent(ext).missed += 1;
    }
    if (call.status === "answered" && call.answered_by) {
      const stats = agent(call.answered_by);
      stats.answered += 1;
      stats.talk += call.talk_seconds || 0;
    }
  }
  return { missedByLine, agents };
}

export class Wall {
  constructor(root) {
    this.root = root;
    this.calls = new Map(); // id -> call JSON, today's
    this.day = null; // null: today, live
    this.ticker = null;
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
    this.ticker = setInterval(() => this.tickWaiting(), 1000);
  }

  /** Refetch today's calls (on show, and on `reload` from the live link). */
  async reload() {
    const data = await api.get(`/api/calls${query({ since: dayStart(), until: dayEnd(), limit: 500 })}`);
    this.calls = new Map(data.calls.map((c) => [c.id, c]));
    this.render();
  }

  async choose(value) {
    const today = localDate(new Date());
    if (!value || value === today) {
      this.day = null;
      await this.reload();
      return;
    }
    const date = new Date(`${value}T00:00`);
    this.day = value;
    const data = await api.get(`/api/calls${query({ since: dayStart(date), until: dayEnd(date), limit: 500 })}`);
    this.render(data.calls);
  }

  handle(event) {
    if (!event.type.startsWith("call.") || !event.call) return;
    const known = this.calls.get(event.call.id);
    if (known && !LIVE.has(known.status) && LIVE.has(event.call.status)) return; // stale snapshot
    this.calls.set(event.call.id, event.call);
    if (this.day === null && this.liveBox?.isConnected) this.render();
  }

  render(dayCalls = null) {
    const calls = dayCalls ?? [...this.calls.values()];
    const live = dayCalls ? [] : calls.filter((c) => LIVE.has(c.status)).sort((a, b) => a.started_at.localeCompare(b.started_at));
    this.liveBox.hidden = dayCalls !== null;
    this.liveBox.replaceChildren(h("h2", { id: "wall-live-title", text: t("wall_live") }), live.length ? liveTable(live) : h("p", { class: "empty", text: t("wall_no_live") }));
    const { missedByLine, agents } = figures(calls);
    this.figBox.replaceChildren(missedTable(missedByLine), agentTable(agents));
  }

  tickWaiting() {
    if (!this.liveBox?.isConnected) {
      clearInterval(this.ticker);
      return;
    }
    for (const cell of this.liveBox.querySelectorAll("td.waiting")) cell.textContent = fmtDuration(waited(cell.dataset.since));
  }
}

function waited(iso) {
  return (Date.now() - Date.parse(iso)) / 1000;
}

function localDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function liveTable(calls) {
  const head = [t("caller"), t("queue_or_line"), t("agent"), t("state"), t("waiting")];
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
          h("td", { text: c.caller_name && c.caller_name !== c.caller ? `${c.caller_name} (${formatNumber(customerNumber(c))})` : formatNumber(customerNumber(c)) }),
          h("td", { text: c.queue || formatNumber(c.did) || "" }),
          h("td", { class: "agent", text: c.status === "talking" ? c.answered_by || "" : c.agents_rung.join(", ") }),
          h("td", { class: "state", text: t(`status_${c.status}`) }),
          h("td", { class: "waiting", dataset: { since: c.started_at }, text: fmtDuration(waited(c.started_at)) }),
        ),
      ),
    ),
  );
}

function missedTable(byLine) {
  const rows = [...byLine.entries()].sort((a, b) => b[1] - a[1]);
  return h(
    "section",
    { class: "wall-missed", "aria-labelledby": "wall-missed-title" },
    h("h2", { id: "wall-missed-title", text: t("wall_missed") }),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("queue_or_line") }), h("th", { scope: "col", text: t("missed_count") }))),
      h("tbody", {}, rows.map(([line, count]) => h("tr", { dataset: { line } }, h("th", { scope: "row", text: line }), h("td", { class: "missed", text: fmtInt(count) })))),
    ),
  );
}

function agentTable(agents) {
  const rows = [...agents.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  const head = [t("agent"), t("answered_count"), t("missed_count"), t("talk_time")];
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
        rows.map(([ext, s]) =>
          h(
            "tr",
            { dataset: { agent: ext } },
            h("th", { scope: "row", text: ext }),
            h("td", { class: "answered", text: fmtInt(s.answered) }),
            h("td", { class: "missed", text: fmtInt(s.missed) }),
            h("td", { class: "talk", dataset: { seconds: s.talk }, text: fmtDuration(s.talk) }),
          ),
        ),
      ),
    ),
  );
}
