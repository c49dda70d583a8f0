// Call controls on a pop the agent talks on (hang up, hold/resume, blind and attended
// transfer to an extension or a queue), and the agent's queue presence (logged in to
// which queues, pause with a reason / resume) in the header. The server checks that
// the call is the agent's own; what the PBX then does arrives as call events.

import { h, api, toast } from "./ui.js";

// this module's styles, next to the page's own (no edit of the shared stylesheet)
if (!document.querySelector('link[href="/static/controls.css"]')) {
  document.head.append(h("link", { rel: "stylesheet", href: "/static/controls.css" }));
}

const STRINGS = {
  en: {
    hang_up: "Hang up",
    hold: "Hold",
    resume: "Resume",
    transfer_to: "Transfer to",
    blind: "Transfer",
    attended: "Consult",
    to_queue: "Queue",
    complete: "Complete transfer",
    cancel: "Cancel transfer",
    on_hold: "On hold",
    consulting: "Consulting {to}",
    sent: "Sent to the PBX",
    queues_none: "Not in any queue",
    queues_in: "Queues: {queues}",
    pause: "Pause",
    unpause: "Resume work",
    pause_reason: "Pause reason",
    paused: "Paused ({reason})",
    state_idle: "ready",
    state_ringing: "ringing",
    state_talking: "on a call",
    state_paused: "paused",
    state_offline: "offline",
  },
  de: {
    hang_up: "Auflegen",
    hold: "Halten",
    resume: "Fortsetzen",
    transfer_to: "Weiterleiten an",
    blind: "Weiterleiten",
    attended: "Rückfrage",
    to_queue: "Warteschlange",
    complete: "Übergeben",
    cancel: "Rückfrage beenden",
    on_hold: "Gehalten",
    consulting: "Rückfrage bei {to}",
    sent: "An die Telefonanlage gesendet",
    queues_none: "In keiner Warteschlange",
    queues_in: "Warteschlangen: {queues}",
    pause: "Pause",
    unpause: "Pause beenden",
    pause_reason: "Grund der Pause",
    paused: "Pause ({reason})",
    state_idle: "bereit",
    state_ringing: "klingelt",
    state_talking: "im Gespräch",
    state_paused: "Pause",
    state_offline: "abgemeldet",
  },
};

/** A string of this module in the page's language. */
export function tr(key, values = {}) {
  const lang = document.documentElement.lang in STRINGS ? document.documentElement.lang : "en";
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

async function send(path, body) {
  try {
    await api.post(path, body);
    return true;
  } catch (err) {
    toast(err.message, "error");
    return false;
  }
}

// Linkedids of the calls the agent holds, as the server's presence says (from the PBX's
// channels); null while not known (then a hold button shows what this page did).
let heldCalls = null;

function showHeld(bar, held) {
  const hold = bar.querySelector("button.hold");
  hold.setAttribute("aria-pressed", String(held));
  hold.textContent = tr(held ? "resume" : "hold");
  bar.querySelector(".control-state").textContent = held ? tr("on_hold") : "";
}

function showHeldCalls(agents) {
  const lists = agents.map((a) => a.held);
  heldCalls = lists.length && lists.every(Array.isArray) ? new Set(lists.flat()) : null;
  if (heldCalls === null) return;
  for (const hold of document.querySelectorAll(".controls button.hold[data-linkedid]")) {
    showHeld(hold.closest(".controls"), heldCalls.has(hold.dataset.linkedid));
  }
}

/** The control bar of a call the agent is connected on. */
export function callControls(call) {
  const base = `/api/calls/${call.id}`;
  const status = h("p", { class: "control-state", role: "status" });
  const hangup = h("button", { type: "button", class: "hangup danger", text: tr("hang_up") });
  const hold = h("button", { type: "button", class: "hold", "aria-pressed": "false", text: tr("hold"), dataset: { linkedid: call.linkedid } });
  const id = `xfer-${String(call.linkedid).replace(/\W/g, "_")}`;
  const target = h("input", { id, class: "xfer-to", name: "to", inputmode: "tel", autocomplete: "off", size: 8 });
  const queue = h("input", { type: "checkbox", class: "xfer-queue", id: `${id}-q` });
  const blind = h("button", { type: "button", class: "xfer-blind", text: tr("blind") });
  const consult = h("button", { type: "button", class: "xfer-attended", text: tr("attended") });
  const complete = h("button", { type: "button", class: "xfer-complete", text: tr("complete"), hidden: true });
  const cancel = h("button", { type: "button", class: "xfer-cancel", text: tr("cancel"), hidden: true });
  const consulting = (on) => {
    complete.hidden = cancel.hidden = !on;
    blind.disabled = consult.disabled = hold.disabled = on;
    status.textContent = on ? tr("consulting", { to: target.value }) : "";
  };
  hangup.addEventListener("click", () => send(`${base}/hangup`));
  hold.addEventListener("click", async () => {
    const held = hold.getAttribute("aria-pressed") === "true";
    if (await send(`${base}/${held ? "resume" : "hold"}`)) showHeld(bar, !held);
  });
  blind.addEventListener("click", () => target.value && send(`${base}/transfer`, { to: target.value.trim(), kind: "blind", queue: queue.checked }));
  consult.addEventListener("click", async () => {
    if (target.value && (await send(`${base}/transfer`, { to: target.value.trim(), kind: "attended" }))) consulting(true);
  });
  complete.addEventListener("click", async () => (await send(`${base}/transfer/complete`)) && consulting(false));
  cancel.addEventListener("click", async () => (await send(`${base}/transfer/cancel`)) && consulting(false));
  queue.addEventListener("change", () => (consult.disabled = queue.checked));
  const bar = h(
    "div",
    { class: "controls", role: "group", "aria-label": tr("hang_up") },
    hangup,
    hold,
    h("label", { for: id, text: tr("transfer_to") }),
    target,
    h("label", { class: "check", for: `${id}-q` }, queue, ` ${tr("to_queue")}`),
    blind,
    consult,
    complete,
    cancel,
    status,
  );
  if (heldCalls?.has(call.linkedid)) showHeld(bar, true);
  return bar;
}

/** The agent's presence in the header: state, queues, pause with a reason. */
export class PresenceBar {
  constructor(root) {
    this.root = root;
    this.agents = [];
  }

  async load() {
    try {
      this.agents = (await api.get("/api/presence")).agents;
    } catch {
      this.agents = [];
    }
    this.render();
  }

  handle(event) {
    if (event.type !== "presence.changed" || !event.agent) return;
    const index = this.agents.findIndex((a) => a.extension === event.agent.extension);
    if (index < 0) return; // another agent's (a supervisor sees them all)
    this.agents[index] = event.agent;
    this.render();
  }

  render() {
    const queues = this.agents.flatMap((a) => a.queues);
    const paused = queues.length > 0 && queues.every((q) => q.paused);
    const state = this.agents[0]?.state || "offline";
    const reasonId = "pause-reason";
    const reason = h("input", { id: reasonId, class: "pause-reason", maxlength: 80, size: 10, placeholder: tr("pause_reason") });
    const toggle = h("button", { type: "button", class: "pause", text: tr(paused ? "unpause" : "pause"), disabled: !queues.length });
    toggle.addEventListener("click", () => send("/api/presence", { paused: !paused, reason: reason.value }));
    showHeldCalls(this.agents);
    const names = queues.map((q) => (q.paused ? `${q.queue} ⏸` : q.queue)).join(", ");
    const parts = [
      h("span", { class: "presence-state", dataset: { state }, text: paused ? tr("paused", { reason: queues[0].paused_reason || "—" }) : tr(`state_${state}`) }),
      h("span", { class: "presence-queues", text: queues.length ? tr("queues_in", { queues: names }) : tr("queues_none") }),
      paused || !queues.length ? null : h("label", { class: "visually-hidden", for: reasonId, text: tr("pause_reason") }),
      paused || !queues.length ? null : reason,
      toggle,
    ];
    this.root.replaceChildren(...parts.filter(Boolean)); // the DOM would show a null as "null"
  }
}
