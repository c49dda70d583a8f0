// The Contacts page: search on top (name, company, tag, e-mail, any part of a number;
// umlauts match their spelt-out form), a "New contact" form, and for supervisors the
// merge of two duplicates (tick two, choose the one to keep). Editing is on a
// contact's own page.

import { t } from "./i18n.js";
import { api, dialButton, h, query, toast } from "./ui.js";

const PAGE = 25;

export class ContactsPage {
  constructor(root) {
    this.root = root;
    this.timer = null;
    this.picked = new Map(); // id -> contact, at most two, for a merge
  }

  async show() {
    this.input = h("input", { id: "contacts-q", type: "search", name: "q", placeholder: t("search_hint"), autocomplete: "off" });
    const form = h("form", { class: "search", role: "search" }, h("label", { for: "contacts-q", text: t("search_contacts") }), this.input, h("button", { type: "submit", text: t("search") }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.search();
    });
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.search(), 250);
    });
    this.results = h("ul", { class: "contact-results", "aria-live": "polite", "aria-label": t("contacts_title") });
    this.more = h("button", { type: "button", class: "more", text: t("more_results"), hidden: true, onclick: () => this.search(true) });
    this.mergeBox = h("div", { class: "merge-box", hidden: true });
    this.editor = h("div", { class: "composer" });
    this.picked.clear();
    this.root.replaceChildren(
      h("h1", { text: t("contacts_title") }),
      form,
      h("div", { class: "actions" }, h("button", { type: "button", class: "new-contact", text: t("new_contact"), onclick: () => this.newContact() })),
      this.editor,
      staff() ? h("p", { class: "hint", text: t("merge_pick") }) : null,
      this.mergeBox,
      this.results,
      this.more,
    );
    await this.search();
  }

  reload() {
    return this.search();
  }

  handle() {}

  async search(more = false) {
    const offset = more ? this.results.children.length : 0;
    const q = this.input.value.trim();
    const data = await api.get(`/api/contacts${query({ q, limit: PAGE, offset })}`);
    if (q !== this.input.value.trim()) return; // typed on meanwhile
    const rows = data.contacts.map((c) => this.row(c));
    if (more) this.results.append(...rows);
    else this.results.replaceChildren(...(rows.length ? rows : [h("li", { class: "empty", text: t("no_results") })]));
    this.more.hidden = data.contacts.length < PAGE;
  }

  row(contact) {
    const pick = staff()
      ? h("input", { type: "checkbox", class: "pick", "aria-label": t("select_contact", { name: contact.display_name }), checked: this.picked.has(contact.id), onchange: (ev) => this.pick(contact, ev.target.checked) })
      : null;
    const phone = contact.phones[0];
    return h(
      "li",
      { class: "contact-row", dataset: { contactId: contact.id } },
      pick,
      " ",
      h("a", { href: `#/contact/${contact.id}`, text: contact.display_name }),
      contact.organization ? h("span", { class: "org", text: ` · ${contact.organization.name}` }) : "",
      " ",
      phone ? dialButton(phone.raw, phone.display || undefined) : "",
      contact.emails[0] ? h("span", { class: "email", text: ` ${contact.emails[0].address}` }) : "",
      contact.tags.length ? h("span", { class: "tag-list" }, contact.tags.map((tag) => h("span", { class: "tag-chip", text: tag }))) : "",
    );
  }

  pick(contact, on) {
    if (on) this.picked.set(contact.id, contact);
    else this.picked.delete(contact.id);
    while (this.picked.size > 2) this.picked.delete(this.picked.keys().next().value);
    for (const box of this.results.querySelectorAll("input.pick")) box.checked = this.picked.has(Number(box.closest("li").dataset.contactId));
    this.renderMerge();
  }

  /** Two contacts ticked: one button per contact to keep, merging the other into it. */
  renderMerge() {
    const [a, b] = [...this.picked.values()];
    this.mergeBox.hidden = !b;
    if (!b) return this.mergeBox.replaceChildren();
    const button = (keep, other) => h("button", { type: "button", class: "merge-into", text: t("merge_into", { name: label(keep) }), onclick: () => this.merge(keep, other) });
    this.mergeBox.replaceChildren(h("h2", { text: t("merge") }), button(a, b), " ", button(b, a));
  }

  async merge(keep, other) {
    try {
      const merged = await api.post(`/api/contacts/${keep.id}/merge`, { duplicate: other.id });
      toast(t("merged", { name: merged.display_name }));
      this.picked.clear();
      this.renderMerge();
      await this.search();
    } catch (err) {
      toast(t("error", { error: err.message }), "error");
    }
  }

  newContact() {
    const field = (name, label, type = "text") => h("div", { class: "field" }, h("label", { for: `new-${name}`, text: label }), h("input", { id: `new-${name}`, name, type }));
    const form = h(
      "form",
      { class: "compose new-contact-form", "aria-labelledby": "new-contact-title" },
      h("h2", { id: "new-contact-title", text: t("new_contact") }),
      field("first_name", t("first_name")),
      field("last_name", t("last_name")),
      field("organization", t("organization")),
      field("phone", t("phone"), "tel"),
      field("email", t("email"), "email"),
      h("button", { type: "submit", text: t("save") }),
      " ",
      h("button", { type: "button", text: t("cancel"), onclick: () => this.editor.replaceChildren() }),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const contact = await createContact(Object.fromEntries(new FormData(form)));
        location.hash = `#/contact/${contact.id}`;
      } catch (err) {
        toast(t("error", { error: err.message }), "error");
      }
    });
    this.editor.replaceChildren(form);
    form.querySelector("input").focus();
  }
}

/** Create a contact from a form's fields: first_name, last_name, organization, phone, email. */
export function createContact(data) {
  return api.post("/api/contacts", {
    first_name: data.first_name || "",
    last_name: data.last_name || "",
    organization: data.organization || null,
    phones: data.phone ? [{ raw: data.phone }] : [],
    emails: data.email ? [{ address: data.email }] : [],
  });
}

function staff() {
  return document.body.dataset.role !== "agent";
}

function label(contact) {
  return contact.organization ? `${contact.display_name} (${contact.organization.name})` : contact.display_name;
}
