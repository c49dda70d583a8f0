// Shared helpers: DOM building (text only, never innerHTML), the API client,
// phone number display, click-to-dial and a toast line.

import { t } from "./i18n.js";

/**
 * Build an element. `attrs` keys: `class`, `text`, `on<event>` (listener),
 * `dataset` (object), anything else as an attribute (skipped when null/false).
 * Children may be nodes, strings (as text) or null.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Error of an API call, with the server's message and HTTP status. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The REST client: bearer token from the session; 401 signs the agent out. */
export const api = {
  token: null,
  onUnauthorized: () => {},

  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (resp.status === 401 && path !== "/api/login") this.onUnauthorized();
    if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || resp.statusText);
    return data;
  },
  get(path) {
    return this.request("GET", path);
  },
  post(path, body = {}) {
    return this.request("POST", path, body);
  },
  put(path, body) {
    return this.request("PUT", path, body);
  },
};

/** A query string from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Show a short message in the status line (aria-live) for a few seconds. */
export function toast(message, kind = "info") {
  const line = document.getElementById("toast");
  if (!line) return;
  line.textContent = message;
  line.dataset.kind = kind;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    line.textContent = "";
  }, 6000);
}

/** Originate a call from the agent's own extension (POST /api/calls). */
export async function dial(number, shown) {
  toast(t("dialling", { number: shown || number }));
  try {
    await api.post("/api/calls", { to: number });
  } catch (err) {
    toast(t("dial_failed", { error: err.message }), "error");
  }
}

/** A button that dials `number`, labelled with the formatted number. */
export function dialButton(number, label) {
  const shown = label || number; // label: the server's display form, when known
  return h(
    "button",
    { type: "button", class: "dial", title: t("call", { number: shown }), "aria-label": t("call", { number: shown }), onclick: () => dial(number, shown) },
    h("span", { "aria-hidden": "true", text: "☎ " }),
    shown,
  );
}

/** Start of the local day containing `date`, as an ISO string (UTC). */
export function dayStart(date = new Date()) {
  const d = new Date(date);
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

/** Start of the next local day after `date`, as an ISO string (UTC). */
export function dayEnd(date = new Date()) {
  const d = new Date(date);
  d.setHours(24, 0, 0, 0);
  return d.toISOString();
}

/** The customer's number of a call: caller of inbound, callee of outbound. */
export function customerNumber(call) {
  return call.direction === "outbound" ? call.callee : call.caller;
}

/** The customer's number as the server formats it (phonenumbers, the agent's region). */
export function customerDisplay(call) {
  return (call.direction === "outbound" ? call.callee_display : call.caller_display) || customerNumber(call);
}
