// Contact view: details (editable phones and e-mails), the history timeline with
// paging, recordings, e-mails (HTML only inside a sandboxed iframe), notes, tasks,
// and "write e-mail" with the outbox state followed live.

import { fmtDateTime, fmtDuration, t } from "./i18n.js";
import { api, dialButton, h, toast } from "./ui.js";

const PAGE = 20;

export class ContactView {
  constructor(root, session) {
    this.root = root;
    this.session = session;
    this.outbox = new Map(); // e-mail id -> state element
  }

  async show(id) {
    this.id = id;
    this.offset = 0;
    const contact = await api.get(`/api/contacts/${id}`);
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
  }

  reload() {
    return this.show(this.id);
  }

  details(contact) {
    return [
      h("h1", { id: "contact-name", text: contact.display_name }),
      contact.organization ? h("p", { class: "org", text: contact.organization.name }) : null,
      h("h2", { text: t("phones") }),
      h("ul", { class: "phones" }, contact.phones.map((p) => h("li", {}, dialButton(p.raw), p.label ? ` ${p.label}` : ""))),
      h("h2", { text: t("emails") }),
      h("ul", { class: "emails" }, contact.emails.map((e) => h("li", {}, h("a", { href: `mailto:${e.address}`, text: e.address }), e.label ? ` ${e.label}` : ""))),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", text: t("edit"), onclick: () => this.edit() }),
        h("button", { type: "button", text: t("write_email"), onclick: () => this.compose({ to: contact.emails[0]?.address || "" }) }),
      ),
    ];
  }

  async page() {
    const data = await api.get(`/api/contacts/${this.id}/history?limit=${PAGE}&offset=${this.offset}`);
    for (const item of data.items) this.historyList.append(this.item(item));
    this.offset += data.items.length;
    this.more.hidden = data.items.length < PAGE;
  }

  item(item) {
    const when = h("time", { datetime: item.at, text: fmtDateTime(item.at) });
    const li = h("li", { class: `entry ${item.kind}`, dataset: { kind: item.kind } }, when, " ");
    if (item.kind === "call") li.append(...this.callEntry(item));
    else if (item.kind === "email") li.append(...this.emailEntry(item));
    else if (item.kind === "note") li.append(h("span", { class: "tag", text: "✎" }), " ", h("p", { class: "body", text: item.body }));
    else if (item.kind === "task") li.append(h("span", { class: "tag", text: "☐" }), ` ${item.title}`, item.done ? ` (${t("task_done")})` : "");
    return li;
  }

  callEntry(call) {
    const parts = [
      h("span", { class: `status ${call.status}`, text: `${t(`dir_${call.direction}`)} · ${t(`status_${call.status}`)}` }),
      ` ${fmtDuration(call.talk_seconds)}`,
      call.answered_by ? ` · ${call.answered_by}` : "",
    ];
    if (call.recording_url) {
      const src = `${call.recording_url}?token=${encodeURIComponent(api.token)}`;
      parts.push(h("audio", { controls: true, preload: "none", src, "aria-label": t("play_recording") }));
    }
    return parts;
  }

  emailEntry(mail) {
    const state = h("span", { class: "mail-state", text: mail.state && mail.direction === "out" ? t(`email_${mail.state}`) : "" });
    if (mail.id !== undefined) this.outbox.set(mail.id, state);
    const body = h("div", { class: "mail-body", hidden: true });
    const toggle = h("button", { type: "button", "aria-expanded": "false", text: t("show_message") });
    toggle.addEventListener("click", () => {
      const open = body.hidden;
      body.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? t("hide_message") : t("show_message");
      if (open && !body.firstChild) body.append(renderMailBody(mail));
    });
    const reply = h("button", { type: "button", text: t("reply"), onclick: () => this.compose(replyTo(mail)) });
    return [h("span", { class: "tag", text: "✉" }), " ", h("strong", { class: "subject", text: mail.subject || "" }), " ", h("span", { class: "from", text: `${t("from")}: ${mail.from || ""}` }), " ", state, " ", toggle, mail.direction === "in" ? reply : null, body];
  }

  compose({ to = "", subject = "", inReplyTo = null } = {}) {
    const field = (name, label, el) => h("div", { class: "field" }, h("label", { for: `mail-${name}`, text: label }), el);
    const toIn = h("input", { id: "mail-to", name: "to", type: "email", value: to, required: true });
    const subjectIn = h("input", { id: "mail-subject", name: "subject", value: subject });
    const bodyIn = h("textarea", { id: "mail-text", name: "text", rows: 8 });
    const state = h("p", { class: "mail-state", role: "status" });
    const form = h(
      "form",
      { class: "compose" },
      h("h2", { text: t("write_email") }),
      field("to", t("to"), toIn),
      field("subject", t("subject"), subjectIn),
      field("text", t("message"), bodyIn),
      h("button", { type: "submit", text: t("send") }),
      h("button", { type: "button", text: t("cancel"), onclick: () => this.composer.replaceChildren() }),
      state,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const sent = await api.post("/api/emails", { to: [toIn.value], subject: subjectIn.value, text: bodyIn.value, contact_id: this.id, in_reply_to: inReplyTo });
        state.textContent = t(`email_${sent.state || "queued"}`);
        if (sent.id !== undefined) this.outbox.set(sent.id, state);
      } catch (err) {
        state.textContent = t("error", { error: err.message });
      }
    });
    this.composer.replaceChildren(form);
    toIn.focus();
  }

  /** Live outbox states (email.sent / email.failed) for the messages shown. */
  handle(event) {
    const mail = event.email || event.message;
    if (!mail || !event.type.startsWith("email.")) return;
    const el = this.outbox.get(mail.id);
    if (el) el.textContent = t(`email_${event.type.slice(6)}`);
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

function replyTo(mail) {
  const subject = mail.subject || "";
  return { to: mail.reply_to || mail.from_address || mail.from || "", subject: /^re:/i.test(subject) ? subject : `Re: ${subject}`, inReplyTo: mail.message_id || null };
}

/**
 * The body of an e-mail, inert whatever it contains: the (server-sanitised) HTML
 * goes only into an iframe sandboxed without allow-scripts, as srcdoc, with a CSP
 * that forbids scripts and remote loads; without HTML, the text as text.
 */
export function renderMailBody(mail) {
  if (!mail.html) return h("pre", { class: "mail-text", text: mail.text || "" });
  const csp = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'";
  const doc = `<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${csp}"><base target="_blank">${mail.html}`;
  return h("iframe", { class: "mail-html", sandbox: "allow-popups allow-popups-to-escape-sandbox", referrerpolicy: "no-referrer", srcdoc: doc, title: mail.subject || t("message") });
}
