// The admin page: list, create, change, disable/enable, remove agents and reset passwords.
// Everything goes through /api/agents (admins only); the token is the agent page's.

import { api, h } from "./ui.js";

const TOKEN_KEY = "crmcomms.token";
const $ = (id) => document.getElementById(id);

function showLogin(message = "") {
  $("shell").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

function status(message) {
  $("status").textContent = message;
}

async function act(promise) {
  try {
    await promise;
    status("");
  } catch (err) {
    status(err.message);
  }
  await load();
}

function extensionsOf(text) {
  return text.split(",").map((e) => e.trim()).filter(Boolean);
}

function edit(agent) {
  const extensions = prompt(`Extensions of ${agent.name} (comma-separated)`, agent.extensions.join(", "));
  if (extensions === null) return;
  const role = prompt(`Role of ${agent.name} (agent, supervisor, admin)`, agent.role);
  if (role === null) return;
  const email = prompt(`E-mail of ${agent.name}`, agent.email);
  if (email === null) return;
  act(api.put(`/api/agents/${agent.id}`, { extensions: extensionsOf(extensions), role: role.trim(), email }));
}

function password(agent) {
  const value = prompt(`New password for ${agent.name} (signs them out)`);
  if (value) act(api.post(`/api/agents/${agent.id}/password`, { password: value }));
}

function remove(agent) {
  if (confirm(`Remove ${agent.name}? Their notes stay, without author.`)) {
    act(api.request("DELETE", `/api/agents/${agent.id}`));
  }
}

function row(agent) {
  const toggle = agent.disabled ? "enable" : "disable";
  return h(
    "tr",
    { class: agent.disabled ? "disabled" : null, dataset: { agent: agent.name } },
    h("td", { text: agent.name }),
    h("td", { text: agent.role }),
    h("td", { text: agent.extensions.join(", ") || "–" }),
    h("td", { text: agent.email || "–" }),
    h("td", { text: agent.disabled ? "disabled" : "enabled" }),
    h(
      "td",
      { class: "actions" },
      h("button", { type: "button", text: "Edit", onclick: () => edit(agent) }),
      h("button", { type: "button", text: "Password", onclick: () => password(agent) }),
      h("button", {
        type: "button",
        text: agent.disabled ? "Enable" : "Disable",
        onclick: () => act(api.post(`/api/agents/${agent.id}/${toggle}`)),
      }),
      h("button", { type: "button", text: "Remove", onclick: () => remove(agent) }),
    ),
  );
}

async function load() {
  const data = await api.get("/api/agents");
  $("agents").querySelector("tbody").replaceChildren(...data.agents.map(row));
}

async function start() {
  api.token = sessionStorage.getItem(TOKEN_KEY);
  if (!api.token) return showLogin();
  try {
    const me = await api.get("/api/me");
    if (me.role !== "admin") return showLogin(`${me.name} is no admin: sign in as an admin.`);
    $("me").textContent = me.name;
    $("login").hidden = true;
    $("shell").hidden = false;
    await load();
  } catch (err) {
    showLogin(err.status === 401 ? "" : err.message);
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const data = await api.post("/api/login", { username: $("username").value, password: $("password").value });
    sessionStorage.setItem(TOKEN_KEY, data.token);
    await start();
  } catch (err) {
    showLogin(err.message);
  }
});

$("add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const body = {
    name: $("new-name").value,
    password: $("new-password").value,
    extensions: extensionsOf($("new-extensions").value),
    email: $("new-email").value,
    role: $("new-role").value,
  };
  act(api.post("/api/agents", body).then(() => form.reset()));
});

$("logout").addEventListener("click", async () => {
  await api.post("/api/logout").catch(() => {});
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
});

api.onUnauthorized = () => showLogin("signed out");
start();
