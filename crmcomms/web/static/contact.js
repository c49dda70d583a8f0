// Contact view: details (editable phones and e-mails), the history timeline with
// paging, recordings, e-mails (HTML only inside a sandboxed iframe), notes, tasks,
// and "write e-mail" with the outbox state followed live.

import { fmtDateTime, fmtDuration, fmtInt, fmtNumber, fmtTime, t } from "./i18n.js";
import { api, dialButton, h, toast } from "./ui.js";
import { mailboxes, openComposer } from "./compose.js";
import { dispositionPicker, matchBadge, showDisposition } from "./wrapup.js";
import { withAttachmentUrls, withSignedUrl } from "./media.js";

const PAGE = 20;

export class ContactView {
  constructor(root) {
    this.root = root;
    this.outbox = new Map(); // e-mail id -> state elements (timeline entry, composer)
    this.mails = new Map(); // e-mail id -> Promise of GET /api/emails/{id}
    this.generation = 0; // bumped by every show(): answers for an older one are dropped
  }

  async show(id) {
    const generation = ++this.generation;
    mailboxes().catch(() => {}); // hides "write e-mail" and "reply" when no mailbox can send
    this.id = id;
    const contact = await api.get(`/api/contacts/${id}`);
    if (generation !== this.generation) return; // shown again meanwhile (a reload, a push)
    this.next = null; // the history's cursor: where the next (older) page starts
    this.loading = null;
    this.observer?.disconnect();
    this.outbox.clear();
    this.mails.clear();
    this.contact = contact;
    this.historyList = h("ol", { class: "timeline", "aria-label": t("history") });
    this.more = h("button", { type: "button", class: "more", text: t("older"), onclick: () => this.page() });
    this.composer = h("div", { class: "composer" });
    this.root.replaceChildren(
      h("section", { class: "contact", "aria-labelledby": "contact-name" }, this.details(contact)),
      this.composer,
      h("section", { class: "history" }, h("h2", { text: t("history") }), this.historyList, this.more),
    );
    await this.page();
    // the next page loads when the end of the list comes into view (the button stays for keyboards)
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting) && !this.more.hidden) this.page();
    });
    this.observer.observe(this.more);
  }

  reload() {
    return this.show(this.id);
  }

  details(contact) {
    return [
      h("h1", { id: "contact-name", text: contact.display_name }),
      contact.organization ? h("p", { class: "org", text: contact.organization.name }) : null,
      h("h2", { text: t("phones") }),
      h("ul", { class: "phones" }, contact.phones.map((p) => h("li", {}, dialButton(p.raw, p.display || undefined), p.label ? ` ${p.label}` : ""))),
      h("h2", { text: t("emails") }),
      h("ul", { class: "emails" }, contact.emails.map((e) => h("li", {}, h("a", { href: `mailto:${e.address}`, text: e.address }), e.label ? ` ${e.label}` : ""))),
      this.tagList(contact),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "add-note", text: t("add_note"), onclick: () => this.noteForm() }),
        h("button", { type: "button", class: "add-task", text: t("add_task"), onclick: () => this.taskForm() }),
        document.body.dataset.role === "agent" ? null : h("button", { type: "button", class: "edit", text: t("edit"), onclick: () => this.edit() }),
        h("button", { type: "button", class: "write-email", text: t("write_email"), onclick: () => this.compose({ to: contact.emails[0]?.address || "" }) }),
      ),
    ];
  }

  /** The contact's tags, each removable, and a field to add one (PUT .../tags). */
  tagList(contact) {
    const save = async (tags) => {
      try {
        this.contact = await api.put(`/api/contacts/${this.id}/tags`, { tags });
        section.replaceWith(this.tagList(this.contact));
      } catch (err) {
        toast(t("error", { error: err.message }), "error");
      }
    };
    const input = h("input", { id: "new-tag", name: "tag", maxlength: 40, autocomplete: "off" });
    const form = h("form", { class: "add-tag" }, h("label", { for: "new-tag", class: "visually-hidden", text: t("add_tag") }), input, h("button", { type: "submit", text: t("add_tag") }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (input.value.trim()) save([...contact.tags, input.value.trim()]);
    });
    const chips = contact.tags.map((tag) =>
      h("li", { class: "tag-chip" }, tag, " ", h("button", { type: "button", class: "remove-tag", "aria-label": t("remove_tag", { tag }), text: "×", onclick: () => save(contact.tags.filter((x) => x !== tag)) })),
    );
    const section = h("div", { class: "tags" }, h("h2", { text: t("tags") }), chips.length ? h("ul", { class: "tag-list" }, chips) : null, form);
    return section;
  }

  /** A small form in the composer area: `fields` and a submit that calls `send(form)`. */
  smallForm(name, title, fields, submit, send) {
    const form = h("form", { class: `compose ${name}`, "aria-label": title }, h("h2", { text: title }), ...fields, h("button", { type: "submit", text: submit }), " ", h("button", { type: "button", text: t("close"), onclick: () => this.composer.replaceChildren() }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await send(form);
        this.composer.replaceChildren();
      } catch (err) {
        toast(t("error", { error: err.message }), "error");
      }
    });
    this.composer.replaceChildren(form);
    form.querySelector("textarea, input")?.focus();
  }

  noteForm() {
    const area = h("textarea", { id: "contact-note", name: "body", rows: 4, required: true });
    this.smallForm("note-form", t("add_note"), [h("label", { for: "contact-note", text: t("note_label") }), area], t("save_note"), async () => {
      const note = await api.post(`/api/contacts/${this.id}/notes`, { body: area.value });
      toast(t("note_saved"));
      this.prepend({ kind: "note", at: new Date().toISOString(), ...note });
    });
  }

  taskForm() {
    const title = h("input", { id: "contact-task", name: "title", required: true, maxlength: 200 });
    this.smallForm("task-form", t("add_task"), [h("label", { for: "contact-task", text: t("task_title") }), title], t("save_task"), async () => {
      const task = await api.post(`/api/contacts/${this.id}/tasks`, { title: title.value });
      toast(t("task_saved"));
      this.prepend({ kind: "task", at: task.created_at, ...task });
    });
  }

  /** The next (older) page of the history; one request at a time. */
  page() {
    this.loading ??= this.loadPage().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  async loadPage() {
    const generation = this.generation;
    const before = this.next ? `&before=${encodeURIComponent(this.next)}` : "";
    const data = await api.get(`/api/contacts/${this.id}/history?limit=${PAGE}${before}`);
    if (generation !== this.generation) return; // this page belongs to a view replaced since
    for (const item of data.items) {
      if (this.historyList.querySelector(`li[data-key="${item.kind}-${item.id}"], [data-grouped~="${item.id}"]`)) continue;
      if (!this.group(item)) this.historyList.append(this.item(item));
    }
    this.next = data.next;
    this.more.hidden = !data.next;
    if (this.observer && this.next) {
      this.observer.unobserve(this.more); // observed anew: still in view loads the page after
      this.observer.observe(this.more);
    }
  }

  /** Fold a missed call from the same number as the entry above into that entry. */
  group(item) {
    if (!missed(item)) return false;
    const last = this.historyList.lastElementChild;
    if (!last || last.dataset.missedNumber !== item.number) return false;
    const count = Number(last.dataset.count || 1) + 1;
    last.dataset.count = String(count);
    last.dataset.grouped = `${last.dataset.grouped || ""} ${item.id}`.trim();
    last.querySelector(".status").textContent = `${t(`dir_${item.direction}`)} · ${t("missed_repeated", { count })}`;
    last.querySelector(".times").append(", ", h("time", { datetime: item.at, text: fmtTime(item.at) }));
    return true;
  }

  item(item) {
    const when = h("time", { datetime: item.at, text: fmtDateTime(item.at) });
    const li = h("li", { class: `entry ${item.kind}`, dataset: { kind: item.kind, key: `${item.kind}-${item.id}` } }, when, " ");
    if (item.kind === "call") li.append(...this.callEntry(item));
    if (missed(item)) li.dataset.missedNumber = item.number;
    else if (item.kind === "email") li.append(...this.emailEntry(item));
    else if (item.kind === "note") li.append(h("span", { class: "tag", text: "✎" }), " ", h("p", { class: "body", text: item.body }));
    else if (item.kind === "task") li.append(h("span", { class: "tag", text: "☐" }), ` ${item.title}`, item.done ? ` (${t("task_done")})` : "");
    return li;
  }

  /** A call: outcome, duration, the number as dialled, the agent, how it was matched, its disposition. */
  callEntry(call) {
    const number = call.number ? h("span", { class: "number", title: call.number, text: ` · ${t("from_number", { number: call.number_display || call.number })}` }) : "";
    const agent = call.agent_name || call.answered_by;
    const parts = [
      h("span", { class: `status ${call.status}`, text: `${t(`dir_${call.direction}`)} · ${t(`status_${call.status}`)}` }),
      ` ${fmtDuration(call.talk_seconds)}`,
      number,
      agent ? h("span", { class: "agent", text: ` · ${t("by_agent", { name: agent })}` }) : "",
      " ",
      matchBadge(call.match),
      missed(call) ? h("span", { class: "times" }) : "",
      dispositionPicker(call, `call-${call.id}`),
    ];
    if (call.recording_url) {
      const missing = (ev) => ev.target.replaceWith(h("span", { class: "recording-missing", text: t("recording_missing") }));
      const audio = h("audio", { controls: true, preload: "none", "aria-label": t("play_recording"), onerror: missing });
      parts.push(withSignedUrl(audio, "src", call.recording_url));
    }
    return parts;
  }

  emailEntry(mail) {
    const state = h("span", { class: "mail-state", dataset: { state: mail.state || "" }, text: mail.direction === "out" && mail.state ? t(`email_${mail.state}`) : "" });
    if (mail.direction === "out" && mail.error) state.title = mail.error;
    this.track(mail.id, state);
    const body = h("div", { class: "mail-body", hidden: true });
    const preview = mail.preview ? h("p", { class: "preview", text: mail.preview }) : null;
    const toggle = h("button", { type: "button", class: "show-mail", "aria-expanded": "false", text: t("show_message") });
    toggle.addEventListener("click", async () => {
      const open = body.hidden;
      body.hidden = !open;
      if (preview) preview.hidden = open;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? t("hide_message") : t("show_message");
      if (!open || body.firstChild) return;
      try {
        body.append(...renderMail(await withAttachmentUrls(await this.fetchMail(mail.id))));
      } catch (err) {
        body.append(h("p", { class: "error", role: "alert", text: t("error", { error: err.message }) }));
      }
    });
    const reply = h("button", {
      type: "button",
      class: "reply",
      text: t("reply"),
      onclick: async () => {
        try {
          this.compose(replyTo(await this.fetchMail(mail.id)));
        } catch (err) {
          toast(t("error", { error: err.message }), "error");
        }
      },
    });
    const people = mail.direction === "out" ? `${t("to")}: ${addressList(mail.to)}` : `${t("from")}: ${addressList(mail.from)}`;
    return [
      h("span", { class: "tag", "aria-hidden": "true", text: mail.direction === "out" ? "✉→" : "✉" }),
      " ",
      h("strong", { class: "subject", text: mail.subject || t("no_subject") }),
      " ",
      h("span", { class: "from", text: people }),
      " ",
      state,
      " ",
      toggle,
      ...(mail.direction === "in" ? [" ", reply] : []),
      preview,
      body,
    ].filter((part) => part !== null);
  }

  /** One e-mail with bodies and attachments (GET /api/emails/{id}), fetched once. */
  fetchMail(id) {
    if (!this.mails.has(id)) this.mails.set(id, api.get(`/api/emails/${id}`).catch((err) => (this.mails.delete(id), Promise.reject(err))));
    return this.mails.get(id);
  }

  /** Remember a state element to update when the outbox reports on e-mail `id`. */
  track(id, el) {
    if (id === undefined || id === null) return;
    const els = this.outbox.get(id) || [];
    els.push(el);
    this.outbox.set(id, els.filter((e) => e.isConnected || e === el));
  }

  compose({ to = "", subject = "", inReplyTo = null } = {}) {
    const onQueued = (queued, state) => {
      this.track(queued.id, state);
      this.prepend({ kind: "email", at: queued.sort_at, ...queued });
    };
    return openComposer(this.composer, { to, subject, inReplyTo, onQueued }).catch((err) => toast(t("error", { error: err.message }), "error"));
  }

  /** Put a new item at the top of the timeline, unless it is shown already. */
  prepend(item) {
    if (!this.historyList?.isConnected || this.historyList.querySelector(`li[data-key="${item.kind}-${item.id}"]`)) return;
    this.historyList.prepend(this.item(item));
  }

  /** Live: outbox states (email.sent / email.failed) and new mail of this contact. */
  handle(event) {
    if (event.type === "call.updated") showDisposition(this.historyList?.querySelector(`li[data-key="call-${event.call.id}"]`), event.call.disposition);
    if (event.type === "task.done") this.historyList?.querySelector(`li[data-key="task-${event.task.id}"]`)?.classList.add("done");
    if (event.type === "task.created" && event.task.contact_id === this.id) this.prepend({ kind: "task", at: event.task.created_at, ...event.task });
    const mail = event.email;
    if (!mail || !event.type.startsWith("email.")) return;
    // the e-mail as the history lists it (core.mail.email_json): shown as it comes
    if (mail.contacts.includes(this.id)) this.prepend({ kind: "email", at: mail.sort_at, ...mail });
    if (!mail.state) return; // not the outbox's: no state to show
    for (const el of this.outbox.get(mail.id) || []) {
      el.dataset.state = mail.state;
      el.textContent = t(`email_${mail.state}`);
      if (mail.error) el.title = mail.error;
      if (mail.state === "failed" && el.tagName === "P") el.textContent += ` · ${mail.error || ""}`;
    }
  }

  edit() {
    const c = this.contact;
    const rows = (items, kind) =>
      h("fieldset", { class: kind }, h("legend", { text: kind === "phones" ? t("phones") : t("emails") }), items.map((item, i) => editRow(kind, item, i)), h("button", { type: "button", text: kind === "phones" ? t("add_phone") : t("add_email"), onclick: (ev) => ev.target.before(editRow(kind, {}, Date.now())) }));
    const text = (name, label, value) => h("div", { class: "field" }, h("label", { for: `edit-${name}`, text: label }), h("input", { id: `edit-${name}`, name, value: value || "" }));
    const form = h(
      "form",
      { class: "edit-contact" },
      text("first_name", t("first_name"), c.first_name),
      text("last_name", t("last_name"), c.last_name),
      text("organization", t("organization"), c.organization?.name),
      rows(c.phones, "phones"),
      rows(c.emails, "emails"),
      h("button", { type: "submit", text: t("save") }),
      h("button", { type: "button", text: t("cancel"), onclick: () => this.show(this.id) }),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const value = (name) => form.elements[name].value.trim();
      const collect = (kind, key) =>
        [...form.querySelectorAll(`fieldset.${kind} .row`)]
          .map((row) => ({ [key]: row.querySelector(".main").value.trim(), label: row.querySelector(".label").value.trim() }))
          .filter((entry) => entry[key]);
      try {
        await api.put(`/api/contacts/${this.id}`, {
          first_name: value("first_name"),
          last_name: value("last_name"),
          organization: value("organization") || null,
          phones: collect("phones", "raw"),
          emails: collect("emails", "address"),
        });
        toast(t("saved"));
        await this.show(this.id);
      } catch (err) {
        toast(t("error", { error: err.message }), "error");
      }
    });
    this.root.querySelector("section.contact").replaceChildren(h("h1", { id: "contact-name", text: c.display_name }), form);
  }
}

function missed(item) {
  return item.kind === "call" && item.direction === "inbound" && ["missed", "abandoned"].includes(item.status) && Boolean(item.number);
}

function editRow(kind, item, i) {
  const isPhone = kind === "phones";
  const main = h("input", { class: "main", id: `${kind}-${i}`, value: (isPhone ? item.raw : item.address) || "", type: isPhone ? "tel" : "email" });
  const label = h("input", { class: "label", id: `${kind}-label-${i}`, value: item.label || "" });
  const row = h(
    "div",
    { class: "row" },
    h("label", { for: `${kind}-${i}`, text: isPhone ? t("number") : t("address") }),
    main,
    h("label", { for: `${kind}-label-${i}`, text: t("label") }),
    label,
  );
  row.append(h("button", { type: "button", text: t("remove"), onclick: () => row.remove() }));
  return row;
}

/** "Name <address>, …" of an address list as the API gives it ([{name, address}]). */
export function addressList(list) {
  return (list || []).map((a) => (a.name && a.name !== a.address ? `${a.name} <${a.address}>` : a.address)).join(", ");
}

/** The composer's fields for a reply to a received e-mail (its full JSON). */
function replyTo(mail) {
  const subject = mail.subject || "";
  const to = (mail.reply_to?.length ? mail.reply_to : mail.from) || [];
  return { to: to.map((a) => a.address).join(", "), subject: /^(re|aw|sv):/i.test(subject) ? subject : `Re: ${subject}`, inReplyTo: mail.id };
}

/** The opened e-mail: who, when, the body (inert) and the attachments to download. */
function renderMail(mail) {
  const line = (label, value) => (value ? h("div", {}, h("dt", { text: label }), h("dd", { text: value })) : null);
  const parts = [
    h("dl", { class: "mail-head" }, line(t("from"), addressList(mail.from)), line(t("to"), addressList(mail.to)), line(t("cc"), addressList(mail.cc)), line(t("date"), fmtDateTime(mail.date || mail.sort_at))),
    renderMailBody(mail),
  ];
  const files = (mail.attachments || []).filter((a) => !(a.inline && a.content_id && mail.html));
  if (files.length) {
    parts.push(
      h(
        "ul",
        { class: "attachments", "aria-label": t("attachments") },
        files.map((a) => {
          const name = a.filename || `${t("attachment")} ${a.n + 1}`;
          const link = () => withSignedUrl(h("a", { download: name, text: name }), "href", `/api/emails/${mail.id}/attachments/${a.n}`);
          return h("li", {}, a.truncated ? h("span", { text: name }) : link(), ` (${fmtBytes(a.size)})`);
        }),
      ),
    );
  }
  return parts;
}

/** Inline parts (`cid:` images) as attachment URLs, which alone the mail's CSP then allows. */
function inlineImages(mail) {
  const byCid = new Map((mail.attachments || []).filter((a) => a.content_id && !a.truncated).map((a) => [a.content_id.replace(/^<|>$/g, ""), a]));
  if (!byCid.size || !/cid:/i.test(mail.html)) return { html: mail.html, images: "" };
  const doc = new DOMParser().parseFromString(mail.html, "text/html"); // inert: nothing runs or loads
  const base = `${location.origin}/api/emails/${mail.id}/attachments/`;
  for (const img of doc.querySelectorAll("img[src]")) {
    const src = img.getAttribute("src");
    if (!/^cid:/i.test(src)) continue;
    const part = byCid.get(decodeURIComponent(src.slice(4)));
    if (part && part.url) img.setAttribute("src", `${location.origin}${part.url}`);
  }
  return { html: doc.body.innerHTML, images: ` ${base}` };
}

/**
 * The body of an e-mail, inert whatever it contains: the HTML (sanitised by the
 * server) goes only into an iframe sandboxed without allow-scripts, as srcdoc, with
 * a CSP that forbids scripts and remote loads (inline parts excepted); without
 * HTML, the text as text.
 */
export function renderMailBody(mail) {
  if (!mail.html) return h("pre", { class: "mail-text", text: mail.text || "" });
  const { html, images } = inlineImages(mail);
  const csp = `default-src 'none'; img-src data:${images}; style-src 'unsafe-inline'`;
  const doc = `<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${csp}"><meta name="referrer" content="no-referrer"><base target="_blank"><style>body{font:14px/1.4 system-ui,sans-serif;margin:.6em;color:#222}img{max-width:100%;height:auto}</style>${html}`;
  return h("iframe", { class: "mail-html", sandbox: "allow-popups allow-popups-to-escape-sandbox", referrerpolicy: "no-referrer", srcdoc: doc, title: mail.subject || t("message") });
}

function fmtBytes(size) {
  if (size < 1024) return `${fmtInt(size)} B`;
  if (size < 1024 * 1024) return `${fmtInt(Math.round(size / 1024))} KB`;
  return `${fmtNumber(size / 1024 / 1024, 1)} MB`;
}
