// The agent page: sign-in, the live link, screen pops and the views (my calls,
// contact, supervisor wall), routed by the URL hash.

import { CallsView } from "./calls.js";
import { PresenceBar } from "./controls.js";
import { ContactView } from "./contact.js";
import { ContactsPage } from "./contacts.js";
import { setLanguage, t } from "./i18n.js";
import { installShortcuts } from "./keys.js";
import { LiveLink } from "./live.js";
import { PopBoard } from "./pop.js";
import { browserLanguage, translateStatic, useAgentLanguage } from "./prefs.js";
import { api, h, toast } from "./ui.js";
import { Wall } from "./wall.js";
import { loadWrapup } from "./wrapup.js";

const TOKEN_KEY = "crmcomms.token";
const $ = (selector) => document.querySelector(selector);

const app = {
  me: null,
  link: null,
  pops: null,
  views: {},
  current: null,
};
window.crm = app; // for the browser tests and the curious

async function boot() {
  setLanguage(browserLanguage() || "en");
  translateStatic();
  installShortcuts();
  api.onUnauthorized = () => signOut(false);
  $("#login-form").addEventListener("submit", signIn);
  $("#logout").addEventListener("click", () => signOut(true));
  $("#notify").addEventListener("click", () => Notification.requestPermission().then(updateNotifyButton));
  window.addEventListener("hashchange", route);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showLogin();
  api.token = token;
  try {
    start(await api.get("/api/me"));
  } catch {
    showLogin();
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = $("#login-error");
  error.textContent = "";
  try {
    const data = await api.post("/api/login", { username: form.username.value, password: form.password.value });
    sessionStorage.setItem(TOKEN_KEY, data.token);
    api.token = data.token;
    form.reset();
    start(data.agent);
  } catch (err) {
    error.textContent = t("login_failed", { error: err.message });
  }
}

async function signOut(tellServer) {
  if (tellServer && api.token) await api.post("/api/logout").catch(() => {});
  sessionStorage.removeItem(TOKEN_KEY);
  api.token = null;
  app.link?.stop();
  app.link = null;
  app.pops?.clear();
  app.me = null;
  showLogin();
}

function showLogin() {
  document.body.dataset.view = "login";
  $("#login").hidden = false;
  $("#shell").hidden = true;
  $("#login-form").username.focus();
}

function start(me) {
  app.me = me;
  useAgentLanguage(me);
  document.body.dataset.role = me.role;
  $("#login").hidden = true;
  $("#shell").hidden = false;
  $("#me").textContent = me.extensions.length ? `${me.name} · ${me.extensions.join(", ")}` : me.name;
  $("#nav-wall").hidden = me.role === "agent";
  updateNotifyButton();
  const main = $("#main");
  const mine = () => new Set(app.me?.extensions || []);
  app.pops = new PopBoard($("#pops"), mine);
  document.querySelector("#presence")?.remove();
  app.presence = new PresenceBar(h("span", { id: "presence", class: "presence" }));
  $("#me").after(app.presence.root);
  app.presence.load();
  app.views = { calls: new CallsView(main), contact: new ContactView(main), contacts: new ContactsPage(main), wall: new Wall(main) };
  loadWrapup();
  app.link = new LiveLink(() => api.token, { onEvent, onReload, onState, onAuthLost });
  onState(app.link.state);
  app.link.start();
  route();
}

// A background request that fails because the network is gone (a refresh started by an
// event, a view reloading) is shown as a toast, not left as an uncaught error.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof TypeError && /fetch/i.test(event.reason.message)) {
    event.preventDefault();
    toast(t("error", { error: event.reason.message }), "error");
  }
});

function onEvent(event) {
  app.pops.handle(event);
  app.presence?.handle(event);
  app.current?.handle?.(event);
}

function onReload() {
  // First hello, or a gap too old to replay: the views refetch from the API.
  app.pops.resync();
  app.current?.reload();
}

function onState(state) {
  const badge = $("#link");
  badge.dataset.state = state;
  badge.textContent = t(`link_${state}`);
}

async function onAuthLost() {
  try {
    await api.get("/api/me");
    return true;
  } catch (err) {
    return err.status !== 401;
  }
}

function updateNotifyButton() {
  const button = $("#notify");
  button.hidden = !("Notification" in window) || Notification.permission !== "default";
}

async function route() {
  if (!app.me) return;
  const [, name = "", arg] = location.hash.split("/");
  const wall = name === "wall" || (name === "" && app.me.role !== "agent");
  for (const link of document.querySelectorAll("nav a")) link.removeAttribute("aria-current");
  try {
    if (name === "contact" && arg) {
      app.current = app.views.contact;
      await app.current.show(Number(arg));
    } else if (name === "contacts") {
      $("#nav-contacts").setAttribute("aria-current", "page");
      app.current = app.views.contacts;
      await app.current.show();
    } else if (wall && app.me.role !== "agent") {
      $("#nav-wall").setAttribute("aria-current", "page");
      app.current = app.views.wall;
      await app.current.show();
    } else {
      $("#nav-calls").setAttribute("aria-current", "page");
      app.current = app.views.calls;
      await app.current.show();
    }
    document.body.dataset.view = Object.keys(app.views).find((key) => app.views[key] === app.current);
  } catch (err) {
    $("#main").replaceChildren(h("p", { class: "error", role: "alert", text: t("error", { error: err.message }) }));
    toast(err.message, "error");
  }
}

boot();
