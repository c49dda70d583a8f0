// The e-mail composer: From (the mailbox with its display name), To, Cc, Bcc, subject,
// text with the agent's signature, attachments; sent through POST /api/emails, whose
// answer (state queued) the caller follows live.

import { fmtNumber, t } from "./i18n.js";
import { api, h } from "./ui.js";
import { saveSignature, signature } from "./prefs.js";

let boxes = null;

/**
 * The mailboxes mail can be sent from (GET /api/mailboxes), fetched once; sets
 * `data-mail="on|off"` on the page so that "write e-mail" and "reply" show only
 * where mail can be sent (the demo has no mailbox).
 */
export function mailboxes() {
  boxes ??= api
    .get("/api/mailboxes")
    .then((data) => {
      document.documentElement.dataset.mail = data.mailboxes.length ? "on" : "off";
      return data;
    })
    .catch((err) => {
      boxes = null;
      throw err;
    });
  return boxes;
}

/** "Name <address>" of a mailbox, or the bare address. */
function fromLine(box) {
  return box.display_name ? `${box.display_name} <${box.address}>` : box.address;
}

const splitAddresses = (value) =>
  value
    .split(/[,;]/)
    .map((a) => a.trim())
    .filter(Boolean);

function field(name, label, el, hint) {
  const id = `mail-${name}`;
  el.id = id;
  const help = hint ? h("p", { class: "hint", id: `${id}-hint`, text: hint }) : null;
  if (help) el.setAttribute("aria-describedby", help.id);
  return h("div", { class: "field" }, h("label", { for: id, text: label }), el, help);
}

function addressInput(name, value = "", required = false) {
  // `multiple` before `type`: Chromium empties a value set after type=email, then multiple
  return h("input", { name, multiple: true, type: "email", value, required, autocomplete: "off" });
}

/** The file's content as base64 (for the JSON body). */
function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function fmtSize(bytes) {
  return bytes < 1024 * 1024 ? `${fmtNumber(Math.max(1, Math.round(bytes / 1024)))} KB` : `${fmtNumber(bytes / 1024 / 1024, 1)} MB`;
}

/** The attachments picker: files chosen (several times if need be), each removable. */
class Attachments {
  constructor(limit) {
    this.limit = limit;
    this.files = [];
    this.list = h("ul", { class: "files", "aria-live": "polite" });
    this.input = h("input", { type: "file", multiple: true, onchange: () => this.add() });
    this.error = h("p", { class: "error", role: "alert" });
  }

  add() {
    this.files.push(...this.input.files);
    this.input.value = "";
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.files.map((file, i) =>
        h(
          "li",
          {},
          `${file.name} (${fmtSize(file.size)})`,
          h("button", { type: "button", text: t("remove"), "aria-label": `${t("remove")}: ${file.name}`, onclick: () => (this.files.splice(i, 1), this.render()) }),
        ),
      ),
    );
    this.error.textContent = this.tooLarge() ? t("attachments_too_large", { size: fmtSize(this.limit) }) : "";
  }

  tooLarge() {
    return this.files.reduce((sum, file) => sum + file.size, 0) > this.limit;
  }

  async json() {
    return Promise.all(this.files.map(async (file) => ({ filename: file.name, content_type: file.type || "application/octet-stream", content_base64: await base64(file) })));
  }
}

/** The signature editor: the agent's signature, kept for next time on request. */
function signatureEditor() {
  const text = Object.assign(h("textarea", { rows: 3 }), { value: signature() }); // a property, not an attribute
  const saved = h("span", { "aria-live": "polite", class: "hint" });
  return h(
    "details",
    { class: "signature" },
    h("summary", { text: t("signature") }),
    h("label", { for: "mail-signature", class: "visually-hidden", text: t("signature") }),
    Object.assign(text, { id: "mail-signature" }),
    h("button", {
      type: "button",
      text: t("save_signature"),
      onclick: () => {
        saveSignature(text.value);
        saved.textContent = t("signature_saved");
      },
    }),
    " ",
    saved,
  );
}

/**
 * Open the composer in `container` (replacing what is there). `onQueued(answer,
 * stateElement)` is called with POST /api/emails' answer once the mail is queued.
 */
export async function openComposer(container, { to = "", subject = "", inReplyTo = null, onQueued = () => {} } = {}) {
  const { mailboxes: list, max_attachments_bytes: limit } = await mailboxes();
  const from = list.length > 1 ? h("select", { name: "mailbox" }, list.map((box) => h("option", { value: box.name, text: fromLine(box) }))) : h("input", { name: "from", value: list[0] ? fromLine(list[0]) : "", readOnly: true });
  const toIn = addressInput("to", to, true);
  const ccIn = addressInput("cc");
  const bccIn = addressInput("bcc");
  const subjectIn = h("input", { name: "subject", value: subject });
  const sig = signature();
  const bodyIn = Object.assign(h("textarea", { name: "text", rows: 10 }), { value: sig ? `\n\n-- \n${sig}` : "" });
  const files = new Attachments(limit);
  const state = h("p", { class: "mail-state", role: "status" });
  const send = h("button", { type: "submit", text: t("send") });
  const form = h(
    "form",
    { class: "compose", "aria-labelledby": "compose-title" },
    h("h2", { id: "compose-title", text: inReplyTo ? t("reply") : t("write_email") }),
    field("from", t("mail_from"), from),
    field("to", t("to"), toIn, t("addresses_hint")),
    h("div", { class: "row2" }, field("cc", t("cc"), ccIn), field("bcc", t("bcc"), bccIn)),
    field("subject", t("subject"), subjectIn),
    field("text", t("message"), bodyIn),
    field("files", t("attach_files"), files.input),
    files.list,
    files.error,
    signatureEditor(),
    h("div", { class: "buttons" }, send, h("button", { type: "button", text: t("close"), onclick: () => container.replaceChildren() })),
    state,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (files.tooLarge()) return;
    send.disabled = true;
    try {
      const body = {
        to: splitAddresses(toIn.value),
        cc: splitAddresses(ccIn.value),
        bcc: splitAddresses(bccIn.value),
        subject: subjectIn.value,
        text: bodyIn.value,
        attachments: await files.json(),
        in_reply_to: inReplyTo,
        mailbox: from.tagName === "SELECT" ? from.value : list[0]?.name,
      };
      const queued = await api.post("/api/emails", body);
      state.dataset.state = queued.state;
      state.textContent = t(`email_${queued.state}`);
      for (const el of [toIn, ccIn, bccIn, subjectIn, bodyIn]) el.readOnly = true;
      files.input.disabled = true;
      onQueued(queued, state);
    } catch (err) {
      send.disabled = false;
      state.dataset.state = "error";
      state.textContent = t("error", { error: err.message });
    }
  });
  container.replaceChildren(form);
  (to ? bodyIn : toIn).focus();
  bodyIn.setSelectionRange(0, 0);
}
