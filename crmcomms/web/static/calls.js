// "My calls": today's calls, missed ones first with call back and tick-off of the
// call-back task; and the contact search. Refetched when a call of ours ends or a
// task is created (pushed events, no polling).

import { fmtDuration, fmtTime, t } from "./i18n.js";
import { api, customerDisplay, customerNumber, dayStart, dial, dialButton, h, query, toast } from "./ui.js";

const MISSED = new Set(["missed", "abandoned"]);

export class CallsView {
  constructor(root) {
    this.root = root;
  }

  async show() {
    this.missed = h("section", { class: "missed", "aria-labelledby": "missed-title" });
    this.today = h("section", { class: "today", "aria-labelledby": "today-title" });
    this.root.replaceChildren(h("h1", { text: t("nav_calls") }), this.missed, this.today, searchBox());
    await this.refresh();
  }

  reload() {
    return this.refresh().catch(failed);
  }

  async refresh() {
    if (!this.missed?.isConnected) return;
    const [calls, tasks] = await Promise.all([
      api.get(`/api/calls${query({ since: dayStart(), limit: 500 })}`),
      api.get("/api/tasks?open=1").catch(() => ({ tasks: [] })),
    ]);
    const taskByCall = new Map(tasks.tasks.filter((task) => task.call_id).map((task) => [task.call_id, task]));
    await this.loadNames(calls.calls);
    const missed = calls.calls.filter((c) => c.direction === "inbound" && MISSED.has(c.status));
    this.missed.replaceChildren(
      h("h2", { id: "missed-title", text: t("missed_calls") }),
      missed.length ? h("ul", { class: "missed-list" }, byNumber(missed).map((group) => missedItem(group[0], group.map((c) => taskByCall.get(c.id)).filter(Boolean), group.length))) : h("p", { class: "empty", text: t("no_missed") }),
    );
    const rows = calls.calls.filter((c) => !["ringing", "talking"].includes(c.status));
    this.today.replaceChildren(h("h2", { id: "today-title", text: t("todays_calls") }), rows.length ? callTable(rows) : h("p", { class: "empty", text: t("no_calls") }));
  }

  /** Contact names for the calls shown (cached; the call log holds only contact ids). */
  async loadNames(calls) {
    this.names ??= new Map();
    const wanted = [...new Set(calls.map((c) => c.contacts?.[0]).filter((id) => id && !this.names.has(id)))].slice(0, 50);
    const cards = await Promise.all(wanted.map((id) => api.get(`/api/contacts/${id}`).catch(() => null)));
    for (const card of cards) if (card) this.names.set(card.id, card.organization ? `${card.display_name} (${card.organization.name})` : card.display_name);
    names = this.names;
  }

  handle(event) {
    if (["call.ended", "call.updated", "task.created", "task.done"].includes(event.type)) this.refresh().catch(failed);
  }
}

let names = new Map();

/** A refresh the page started by itself failed (e.g. the network is gone): say so. */
function failed(err) {
  toast(t("error", { error: err.message }), "error");
}

function who(call) {
  const known = names.get(call.contacts?.[0]);
  if (known) return known;
  const name = call.caller_name && !/^\+?\d+$/.test(call.caller_name) ? call.caller_name : "";
  return name || customerDisplay(call);
}

/** Missed calls grouped by the number they came from (newest first, as the list is). */
function byNumber(calls) {
  const groups = new Map();
  for (const call of calls) {
    const key = customerNumber(call) || `call-${call.id}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(call);
  }
  return [...groups.values()];
}

/** One number's missed calls (the newest shown); "Done" ticks off all their call-backs. */
function missedItem(call, tasks, count = 1) {
  const number = customerNumber(call);
  const done = h("button", { type: "button", class: "tick", text: t("tick_off"), hidden: !tasks.length });
  done.addEventListener("click", async () => {
    try {
      await Promise.all(tasks.map((task) => api.post(`/api/tasks/${task.id}/done`)));
      done.textContent = t("ticked_off");
      done.disabled = true;
      item.dataset.done = "true";
    } catch (err) {
      toast(t("error", { error: err.message }), "error");
    }
  });
  const item = h(
    "li",
    { class: "missed-call", dataset: { callId: call.id } },
    h("time", { datetime: call.started_at, text: fmtTime(call.started_at) }),
    " ",
    contactLink(call, who(call)),
    count > 1 ? h("span", { class: "repeat", text: ` · ${t("missed_repeated", { count })}` }) : "",
    call.queue || call.did ? h("span", { class: "via", text: ` · ${call.queue || call.did_display || call.did}` }) : "",
    " ",
    h("button", { type: "button", class: "call-back", text: t("call_back"), "aria-label": `${t("call_back")} ${customerDisplay(call)}`, onclick: () => dial(number, customerDisplay(call)) }),
    " ",
    done,
  );
  return item;
}

function contactLink(call, label) {
  return call.contacts?.length ? h("a", { href: `#/contact/${call.contacts[0]}`, text: label }) : h("span", { text: label });
}

function callTable(calls) {
  const head = [t("time"), t("direction"), t("caller"), t("outcome"), t("duration"), t("agent")];
  return h(
    "table",
    { class: "calls" },
    h("thead", {}, h("tr", {}, head.map((title) => h("th", { scope: "col", text: title })))),
    h(
      "tbody",
      {},
      calls.map((c) =>
        h(
          "tr",
          { dataset: { callId: c.id, status: c.status } },
          h("td", {}, h("time", { datetime: c.started_at, text: fmtTime(c.started_at) })),
          h("td", { text: t(`dir_${c.direction}`) }),
          h("td", {}, contactLink(c, who(c)), " ", customerNumber(c) ? dialButton(customerNumber(c), "") : ""),
          h("td", { class: `status ${c.status}`, text: t(`status_${c.status}`) }),
          h("td", { text: fmtDuration(c.talk_seconds) }),
          h("td", { text: c.answered_by || "" }),
        ),
      ),
    ),
  );
}

function searchBox() {
  const input = h("input", { id: "search-q", type: "search", name: "q", placeholder: t("search_hint"), autocomplete: "off" });
  const results = h("ul", { class: "results", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "search", role: "search" },
    h("label", { for: "search-q", text: t("search_contacts") }),
    input,
    h("button", { type: "submit", text: t("search") }),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = await api.get(`/api/contacts${query({ q: input.value.trim(), limit: 20 })}`);
    results.replaceChildren(
      ...(data.contacts.length
        ? data.contacts.map((c) =>
            h("li", {}, h("a", { href: `#/contact/${c.id}`, text: c.display_name }), c.organization ? ` · ${c.organization.name}` : "", " ", c.phones[0] ? dialButton(c.phones[0].raw) : ""),
          )
        : [h("li", { class: "empty", text: t("no_results") })]),
    );
  });
  return h("section", { class: "search-box" }, form, results);
}
