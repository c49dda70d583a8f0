// Keyboard shortcuts of the agent page: `/` searches contacts, `?` shows the help,
// Esc closes the help (the dialog itself) or leaves the search field. Esc on an ended
// call's pop is the pop board's own (pop.js).

const SEARCH = "#main input[type=search]";

/** Is the agent typing into `target` (a visible field; the sign-in form keeps the focus
 * for a moment after it is hidden)? */
function typing(target) {
  const field = target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  return field && target.checkVisibility();
}

/** Wait (up to `ms`) for an element to appear, e.g. after a view was routed to. */
function appear(selector, ms = 3000) {
  return new Promise((resolve) => {
    const found = document.querySelector(selector);
    if (found) return resolve(found);
    const observer = new MutationObserver(() => {
      const el = document.querySelector(selector);
      if (el) {
        observer.disconnect();
        clearTimeout(timer);
        resolve(el);
      }
    });
    const timer = setTimeout(() => {
      observer.disconnect();
      resolve(null);
    }, ms);
    observer.observe(document.body, { childList: true, subtree: true });
  });
}

/** Focus the contact search of the current view (calls, Contacts), or, from a view
 * without one (the wall, a contact), go to the Contacts page's. */
async function focusSearch() {
  if (!document.querySelector(SEARCH)) location.hash = "#/contacts";
  const input = await appear(SEARCH);
  input?.focus();
  input?.select();
}

function showHelp() {
  const dialog = document.getElementById("help");
  if (dialog && !dialog.open) dialog.showModal();
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (document.getElementById("shell")?.hidden) return; // signed out
  if (ev.key === "Escape" && ev.target instanceof HTMLInputElement && ev.target.type === "search") {
    ev.target.blur();
    return;
  }
  if (typing(ev.target) || document.getElementById("help")?.open) return;
  if (ev.key === "/") {
    ev.preventDefault();
    focusSearch();
  } else if (ev.key === "?") {
    ev.preventDefault();
    showHelp();
  }
}

/** Install the shortcuts (once, at start) and the header's help button. */
export function installShortcuts() {
  document.addEventListener("keydown", onKey);
  document.getElementById("help-open")?.addEventListener("click", showHelp);
}
