// The agent's own settings, kept in this browser (localStorage, one entry per agent
// id; the daemon has no per-agent settings): the page's language and the e-mail
// signature. The language defaults to the browser's when the page speaks it, else
// to the daemon's `general.language`.

import { LANGUAGES, setLanguage, t } from "./i18n.js";

const key = (agentId, name) => `crmcomms.agent.${agentId}.${name}`;
let current = null; // the signed-in agent's id

function read(agentId, name) {
  try {
    return localStorage.getItem(key(agentId, name));
  } catch {
    return null; // storage disabled: nothing remembered
  }
}

function write(agentId, name, value) {
  try {
    if (value) localStorage.setItem(key(agentId, name), value);
    else localStorage.removeItem(key(agentId, name));
  } catch {
    /* storage disabled: the choice lasts for this page only */
  }
}

/** The browser's language, if the page speaks it. */
export function browserLanguage() {
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language || ""]) {
    const lang = tag.slice(0, 2).toLowerCase();
    if (LANGUAGES.includes(lang)) return lang;
  }
  return null;
}

/** The agent's language: their choice, else the browser's, else the daemon's default. */
export function agentLanguage(me) {
  const chosen = read(me.id, "language");
  return (LANGUAGES.includes(chosen) && chosen) || browserLanguage() || me.language || "en";
}

/** Translate the static page (elements with data-i18n / data-i18n-label) and its title. */
export function translateStatic() {
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = t("app_title");
}

/** Apply the agent's language and let the header's picker change it (the page reloads). */
export function useAgentLanguage(me) {
  current = me.id;
  const lang = agentLanguage(me);
  setLanguage(lang);
  translateStatic();
  const picker = document.getElementById("lang");
  if (!picker) return;
  picker.value = lang;
  picker.onchange = () => {
    write(me.id, "language", picker.value);
    location.reload(); // every view is built again in the new language
  };
}

/** The signed-in agent's e-mail signature ("" when none). */
export function signature() {
  return (current !== null && read(current, "signature")) || "";
}

/** Remember `text` as the signed-in agent's signature ("" forgets it). */
export function saveSignature(text) {
  if (current !== null) write(current, "signature", text.trim());
}
