// Wrap-up, shared by the pop and the contact view: how a contact was matched to a call
// (exact / by the last digits / several / by hand), confirming the caller, and the
// call's disposition (outcome) code from the configured list (GET /api/wrapup).

import { t } from "./i18n.js";
import { api, h, toast } from "./ui.js";

if (!document.querySelector('link[href="/static/wrapup.css"]')) {
  document.head.append(h("link", { rel: "stylesheet", href: "/static/wrapup.css" }));
}

/** The configured codes and how long an ended pop stays open (seconds, 0: until closed). */
export const wrapup = { dispositions: [], foldAfter: 60, loaded: null };

/** Load the wrap-up settings once (at start); the pickers use what is there. */
export function loadWrapup() {
  wrapup.loaded ??= api
    .get("/api/wrapup")
    .then((data) => {
      wrapup.dispositions = data.dispositions;
      wrapup.foldAfter = data.fold_after_seconds;
    })
    .catch(() => {
      wrapup.loaded = null;
    });
  return wrapup.loaded;
}

/** A code as shown: the default codes translated, the configured ones as written. */
export function dispositionLabel(code) {
  const key = `disp_${code}`;
  const text = t(key);
  return text === key ? code : text;
}

/** How a contact was matched, as a small badge (`kind`: exact, suffix, several, manual, none). */
export function matchBadge(kind, count = 0) {
  if (!kind) return null;
  return h("span", { class: "match", dataset: { match: kind }, text: t(`match_${kind}`, { count }) });
}

/**
 * The disposition of `call` as a select that saves on change (PUT .../disposition);
 * `onSaved(call)` gets the call's JSON back.
 */
export function dispositionPicker(call, key, onSaved = () => {}) {
  const id = `disp-${key}`;
  const codes = [...wrapup.dispositions];
  if (call.disposition && !codes.includes(call.disposition)) codes.push(call.disposition);
  const select = h(
    "select",
    { id, class: "disposition", name: "disposition" },
    h("option", { value: "", text: t("disposition_none") }),
    codes.map((code) => h("option", { value: code, text: dispositionLabel(code) })),
  );
  select.value = call.disposition || "";
  select.addEventListener("change", async () => {
    try {
      const updated = await api.put(`/api/calls/${call.id}/disposition`, { disposition: select.value || null });
      toast(t("disposition_saved", { outcome: select.value ? dispositionLabel(select.value) : t("disposition_none") }));
      onSaved(updated);
    } catch (err) {
      select.value = call.disposition || "";
      toast(t("error", { error: err.message }), "error");
    }
  });
  return h("div", { class: "wrapup" }, h("label", { for: id, text: t("disposition") }), " ", select);
}

/** Set a picker made by dispositionPicker to `code` (a call.updated from elsewhere). */
export function showDisposition(root, code) {
  const select = root?.querySelector("select.disposition");
  if (!select) return;
  if (code && ![...select.options].some((o) => o.value === code)) select.append(h("option", { value: code, text: dispositionLabel(code) }));
  select.value = code || "";
}

/** File call `callId` with `contact` as the agent confirms (POST .../contact); the call JSON. */
export async function confirmCaller(callId, contact) {
  const call = await api.post(`/api/calls/${callId}/contact`, { contact_id: contact.id });
  toast(t("caller_confirmed", { name: contact.display_name }));
  return call;
}
