// Screen pops: one card per ringing call of this agent, built synchronously in the
// websocket handler (same frame), updated on answer (timer) and end (outcome, the
// note field stays open), withdrawn on ring_stopped or when someone else answers.
// The card says how the caller was matched; a call is filed with a contact by itself
// only on an exact match, otherwise the agent confirms with one click. Ended pops fold
// away after the configured time unless a note is being written; Esc dismisses one.

import { fmtDateTime, fmtDuration, t } from "./i18n.js";
import { api, customerDisplay, customerNumber, dialButton, h, toast } from "./ui.js";
import { createContact } from "./contacts.js";
import { callControls } from "./controls.js";
import { confirmCaller, dispositionLabel, dispositionPicker, matchBadge, showDisposition, wrapup } from "./wrapup.js";

export class PopBoard {
  /** @param {HTMLElement} root the aria-live container; @param {() => Set<string>} myExtensions */
  constructor(root, myExtensions) {
    this.root = root;
    this.mine = myExtensions;
    this.cards = new Map(); // linkedid -> {node, call, contactId}
    this.ticker = null;
    this.onKey = (ev) => this.escape(ev);
    document.addEventListener("keydown", this.onKey);
  }

  clear() {
    document.removeEventListener("keydown", this.onKey);
    for (const linkedid of [...this.cards.keys()]) this.withdraw(linkedid);
  }

  /** After a `reload`: bring every card up to date from the call log. */
  async resync() {
    for (const [linkedid, card] of [...this.cards]) {
      const call = await api.get(`/api/calls/${card.call.id}`).catch(() => null);
      if (!call || !this.cards.has(linkedid)) continue;
      if (call.status === "talking" && call.answered_by && !this.mine().has(call.answered_by)) this.withdraw(linkedid);
      else if (call.status === "talking" && card.state === "ringing") this.answered(card, { call }, true);
      else if (!["ringing", "talking"].includes(call.status) && card.state !== "ended") this.ended(card, call);
    }
  }

  handle(event) {
    if (event.type === "task.done") return this.taskDone(event.task);
    const call = event.call;
    if (!call) return;
    const mineNow = event.agent && this.mine().has(event.agent);
    const card = this.cards.get(call.linkedid);
    if (event.type === "call.transferred") this.transferred(card, event, mineNow);
    else if (event.type === "call.ringing" && mineNow && !card) this.open(event);
    else if (!card) return;
    else if (event.type === "call.ring_stopped" && mineNow && card.state === "ringing") this.withdraw(call.linkedid);
    else if (event.type === "call.answered") this.answered(card, event, mineNow);
    else if (event.type === "call.ended") this.ended(card, call);
    else if (event.type === "call.updated") this.updated(card, call);
  }

  open(event) {
    const { call, card: info = {} } = event;
    const number = info.number || customerNumber(call);
    const matches = info.matches || [];
    const contact = matches.length === 1 ? matches[0] : null;
    const linked = (info.linked || []).includes(contact?.id);
    const internal = call.direction === "internal";
    const who = contact ? contact.display_name : matches.length ? t("several_matches", { count: matches.length }) : internal ? `${t("dir_internal")} ${call.caller}` : t("unknown_caller");
    const state = h("span", { class: "state", text: t("state_ringing") });
    const timer = h("span", { class: "timer", role: "timer", "aria-label": t("duration") });
    const node = h(
      "article",
      { class: "pop", dataset: { state: "ringing", linkedid: call.linkedid, callId: call.id }, "aria-label": t("new_call_from", { who }) },
      h("header", {}, state, timer, h("button", { type: "button", class: "close", "aria-label": t("dismiss"), text: "×", onclick: () => this.withdraw(call.linkedid) })),
      h("h2", { class: "who", text: who }),
      contact && contact.organization ? h("p", { class: "org", text: contact.organization.name }) : null,
      numberLine(number, info.number_display, call),
      internal ? null : h("p", { class: "how" }, matchBadge(info.match || "none", matches.length)),
      viaLine(call),
      matches.length && !linked ? this.candidates(call, matches) : null,
      contact || matches.length || internal ? null : this.createForm(call, number),
      recentList((info.recent || []).filter((item) => !(item.kind === "call" && item.id === call.id))),
      taskList(info.tasks || []),
      h("p", { class: "outcome", hidden: true }),
      internal ? null : dispositionPicker(call, call.linkedid.replace(/\W/g, "_"), (updated) => this.updated(this.cards.get(call.linkedid), updated)),
      this.actions(call, linked ? contact : null),
    );
    const entry = { node, call, state: "ringing", contactId: linked ? contact.id : null, stateEl: state, timerEl: timer };
    this.cards.set(call.linkedid, entry);
    this.root.prepend(node);
    notify(who, info.number_display || customerDisplay(call));
  }

  /** Contacts the number matched but the call is not filed with: one click confirms. */
  candidates(call, matches) {
    return h(
      "ul",
      { class: "matches" },
      matches.map((m) =>
        h(
          "li",
          {},
          h("a", { href: `#/contact/${m.id}`, text: contactLabel(m) }),
          " ",
          h("button", { type: "button", class: "confirm", text: t("confirm_caller"), "aria-label": t("confirm_caller_named", { name: m.display_name }), onclick: () => this.confirm(call.linkedid, m) }),
        ),
      ),
    );
  }

  async confirm(linkedid, contact) {
    const card = this.cards.get(linkedid);
    if (!card) return;
    try {
      await confirmCaller(card.call.id, contact);
      this.adopt(linkedid, contact);
    } catch (err) {
      toast(t("error", { error: err.message }), "error");
    }
  }

  actions(call, contact) {
    const bar = h("div", { class: "actions" });
    if (contact) bar.append(h("a", { class: "button", href: `#/contact/${contact.id}`, text: t("open_contact") }));
    bar.append(h("button", { type: "button", class: "add-note", text: t("add_note"), onclick: () => this.toggleNote(call.linkedid), hidden: !contact }));
    return bar;
  }

  /** Open (or close) the note form; it takes the focus only when nothing else has it. */
  toggleNote(linkedid, keepOpen = false) {
    const card = this.cards.get(linkedid);
    if (!card || !card.contactId) return;
    let form = card.node.querySelector("form.note");
    if (form) {
      if (!keepOpen) form.remove();
      return;
    }
    const id = `note-${linkedid.replace(/\W/g, "_")}`;
    const area = h("textarea", { id, name: "body", rows: 3, required: true });
    form = h(
      "form",
      { class: "note" },
      h("label", { for: id, text: t("note_label") }),
      area,
      h("button", { type: "submit", text: t("save_note") }),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api.post(`/api/contacts/${card.contactId}/notes`, { body: area.value, call_id: card.call.id });
        toast(t("note_saved"));
        form.remove();
      } catch (err) {
        toast(t("error", { error: err.message }), "error");
      }
    });
    card.node.querySelector(".actions").before(form);
    const focused = document.activeElement;
    if (!keepOpen || !focused || focused === document.body || card.node.contains(focused)) area.focus();
    if (keepOpen) card.autoFocused = area; // focused by us: folding away is still fine
  }

  createForm(call, number) {
    const field = (name, label, value = "") => {
      const id = `new-${name}-${call.linkedid.replace(/\W/g, "_")}`;
      return h("div", { class: "field" }, h("label", { for: id, text: label }), h("input", { id, name, value }));
    };
    const form = h(
      "form",
      { class: "create-contact" },
      h("h3", { text: t("create_contact") }),
      field("first_name", t("first_name")),
      field("last_name", t("last_name")),
      field("organization", t("organization")),
      field("phone", t("number"), number),
      h("button", { type: "submit", text: t("create_contact") }),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const contact = await createContact(Object.fromEntries(new FormData(form)));
        await confirmCaller(call.id, contact);
        this.adopt(call.linkedid, contact);
      } catch (err) {
        toast(t("error", { error: err.message }), "error");
      }
    });
    return form;
  }

  adopt(linkedid, contact) {
    const card = this.cards.get(linkedid);
    if (!card) return;
    card.contactId = contact.id;
    card.node.querySelector(".who").textContent = contact.display_name;
    card.node.querySelector("form.create-contact")?.remove();
    card.node.querySelector("ul.matches")?.remove();
    card.node.querySelector(".how")?.append(" ", h("span", { class: "confirmed", text: t("caller_confirmed", { name: contact.display_name }) }));
    const actions = card.node.querySelector(".actions");
    actions.prepend(h("a", { class: "button", href: `#/contact/${contact.id}`, text: t("open_contact") }));
    actions.querySelector(".add-note").hidden = false;
  }

  /** A call handed over: the receiver gets the pop with the card, both see who to whom. */
  transferred(card, event, mineNow) {
    if (!card && !mineNow) return;
    if (!card) {
      this.open(event);
      card = this.cards.get(event.call.linkedid);
      // an attended transfer hands over a call the receiver already talks on
      if (event.transfer.kind === "attended" && event.call.status === "talking") this.answered(card, event, true);
    }
    const { from, to } = event.transfer;
    const line = card.node.querySelector(".transfer") || h("p", { class: "transfer" });
    line.textContent = t("transferred", { from, to });
    card.node.querySelector(".outcome").before(line);
  }

  answered(card, event, mineNow) {
    if (!mineNow) {
      if (card.state === "ringing") this.withdraw(event.call.linkedid);
      return;
    }
    card.call = event.call;
    this.setState(card, "talking");
    card.node.querySelector(".controls")?.remove();
    card.node.querySelector(".actions").before(callControls(event.call));
    card.answeredAt = Date.parse(event.call.answered_at || "") || Date.now();
    this.tick();
    this.ticker ??= setInterval(() => this.tick(), 1000);
  }

  ended(card, call) {
    card.call = call;
    card.node.querySelector(".controls")?.remove();
    this.setState(card, "ended");
    card.timerEl.textContent = fmtDuration(call.talk_seconds);
    const outcome = card.node.querySelector(".outcome");
    outcome.hidden = false;
    outcome.textContent = `${t(`status_${call.status}`)} · ${fmtDuration(call.talk_seconds)}`;
    if (call.status === "answered") this.toggleNote(call.linkedid, true);
    this.scheduleFold(card);
  }

  /** A disposition or contact set on this call (here, in another tab, by a supervisor). */
  updated(card, call) {
    if (!card) return;
    card.call = { ...card.call, disposition: call.disposition, contacts: call.contacts };
    showDisposition(card.node, call.disposition);
  }

  /** Fold an ended pop away after the configured time, unless a note is being written. */
  scheduleFold(card) {
    clearTimeout(card.foldTimer);
    if (!wrapup.foldAfter) return;
    card.foldTimer = setTimeout(() => {
      if (!this.cards.has(card.call.linkedid)) return;
      const active = document.activeElement;
      if (writing(card) || (card.node.contains(active) && active !== card.autoFocused)) this.scheduleFold(card);
      else this.withdraw(card.call.linkedid);
    }, wrapup.foldAfter * 1000);
  }

  /** Esc: dismiss the ended pop the focus is in, or the newest ended one (not a note being written). */
  escape(ev) {
    if (ev.key !== "Escape" || ev.defaultPrevented || document.querySelector("dialog[open]")) return;
    const inside = ev.target instanceof Element ? ev.target.closest("article.pop") : null;
    const typing = ev.target instanceof Element && ev.target.matches("input, textarea, select, [contenteditable]");
    if (!inside && typing) return;
    const card = inside ? this.cards.get(inside.dataset.linkedid) : [...this.cards.values()].find((c) => c.state === "ended" && !writing(c));
    if (!card || card.state !== "ended" || writing(card)) return;
    ev.preventDefault();
    this.withdraw(card.call.linkedid);
    if (inside) (this.root.querySelector("article.pop button") || document.getElementById("main"))?.focus();
  }

  /** A task ticked off (here or by a colleague) leaves the pops' task lists. */
  taskDone(task) {
    for (const li of this.root.querySelectorAll(`.tasks li[data-task-id="${task.id}"]`)) {
      const list = li.closest("section.tasks");
      li.remove();
      if (list && !list.querySelector("li")) list.remove();
    }
  }

  setState(card, state) {
    card.state = state;
    card.node.dataset.state = state;
    card.stateEl.textContent = t(`state_${state}`);
  }

  tick() {
    let talking = 0;
    for (const card of this.cards.values()) {
      if (card.state !== "talking") continue;
      talking += 1;
      card.timerEl.textContent = fmtDuration((Date.now() - card.answeredAt) / 1000);
    }
    if (!talking) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  withdraw(linkedid) {
    const card = this.cards.get(linkedid);
    if (!card) return;
    clearTimeout(card.foldTimer);
    card.node.remove();
    this.cards.delete(linkedid);
  }
}

function contactLabel(contact) {
  return contact.organization ? `${contact.display_name} (${contact.organization.name})` : contact.display_name;
}

/** Whether a note is being written on this pop (unsaved text in its note field). */
function writing(card) {
  return Boolean(card.node.querySelector("form.note textarea")?.value.trim());
}

function numberLine(number, display, call) {
  const shown = display || customerDisplay(call);
  const raw = String(number || "");
  return h(
    "p",
    { class: "number" },
    number ? dialButton(number, shown) : null,
    raw && raw !== shown ? h("span", { class: "dialled", text: ` ${t("dialled_as", { number: raw })}` }) : null,
    call.caller_name && call.caller_name !== raw ? h("span", { class: "cid", text: ` “${call.caller_name}”` }) : null,
  );
}

function viaLine(call) {
  const parts = [];
  if (call.queue) parts.push(t("via_queue", { queue: call.queue }));
  if (call.did) parts.push(t("via_did", { did: call.did_display || call.did }));
  return parts.length ? h("p", { class: "via", text: parts.join(" · ") }) : null;
}

/** The card's last interactions: calls with status and duration, e-mails with subject. */
export function recentList(items) {
  return h(
    "section",
    { class: "recent" },
    h("h3", { text: t("recent") }),
    items.length
      ? h("ul", {}, items.slice(0, 10).map((item) => h("li", { class: item.kind }, describe(item))))
      : h("p", { class: "empty", text: t("nothing_yet") }),
  );
}

function describe(item) {
  const when = fmtDateTime(item.at);
  if (item.kind === "call") {
    const extra = [item.agent_name, item.disposition ? dispositionLabel(item.disposition) : ""].filter(Boolean);
    return [`${when} · ${t(`dir_${item.direction}`)} · ${t(`status_${item.status}`)} · ${fmtDuration(item.talk_seconds)}`, ...extra].join(" · ");
  }
  if (item.kind === "email") return `${when} · ✉ ${item.subject || ""}`;
  if (item.kind === "note") return `${when} · ✎ ${item.body.slice(0, 80)}`;
  return `${when} · ${item.title || item.kind}`;
}

function taskList(tasks) {
  if (!tasks.length) return null;
  return h("section", { class: "tasks" }, h("h3", { text: t("open_tasks") }), h("ul", {}, tasks.map((task) => h("li", { dataset: { taskId: task.id }, text: task.title }))));
}

function notify(who, number) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const note = new Notification(t("new_call_from", { who }), { body: number, tag: "crmcomms-pop" });
  note.onclick = () => window.focus();
}
