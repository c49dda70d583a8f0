// Media without the login token in the URL: a recording or an attachment is loaded
// by the browser itself (<audio src>, a download link, an image in a mail), which
// cannot send the Authorization header. The server signs each path for this agent
// for 15 minutes (POST /api/media-urls); the paths asked for in one tick go in one
// request, and a URL is signed again when it has grown old.

import { api } from "./ui.js";

const FRESH_FOR = 10 * 60_000; // re-sign well before the server's 15 minutes run out
const MAX_PATHS = 200; // per request, as the server allows

const signed = new Map(); // path -> {url, at}
let batch = null; // path -> {resolve, reject}, waiting for this tick's request

/** A signed URL of `path` (a recording or attachment path of the API). */
export function signedUrl(path) {
  const hit = signed.get(path);
  if (hit && Date.now() - hit.at < FRESH_FOR) return Promise.resolve(hit.url);
  if (!batch) {
    const current = (batch = new Map());
    setTimeout(() => sign(current), 0);
  }
  if (!batch.has(path)) {
    const waiting = {};
    waiting.promise = new Promise((resolve, reject) => Object.assign(waiting, { resolve, reject }));
    batch.set(path, waiting);
  }
  return batch.get(path).promise;
}

async function sign(current) {
  if (batch === current) batch = null;
  const paths = [...current.keys()];
  try {
    for (let i = 0; i < paths.length; i += MAX_PATHS) {
      const chunk = paths.slice(i, i + MAX_PATHS);
      const { urls } = await api.post("/api/media-urls", { paths: chunk });
      chunk.forEach((path, j) => {
        signed.set(path, { url: urls[j], at: Date.now() });
        current.get(path).resolve(urls[j]);
      });
    }
  } catch (err) {
    for (const waiting of current.values()) waiting.reject(err);
  }
}

function fresh(path) {
  const hit = signed.get(path);
  return Boolean(hit && Date.now() - hit.at < FRESH_FOR);
}

/**
 * Give `el` (an <audio> or an <a>) the signed URL of `path` in `attr`, and sign it
 * again when it is used after the URL has grown old (played, clicked).
 */
export function withSignedUrl(el, attr, path) {
  signedUrl(path).then((url) => el.setAttribute(attr, url), () => {});
  const renew = async (event) => {
    if (fresh(path)) return;
    event.preventDefault();
    el.setAttribute(attr, await signedUrl(path));
    if (el.tagName === "AUDIO") el.play();
    else el.click();
  };
  el.addEventListener(el.tagName === "AUDIO" ? "play" : "click", renew);
  return el;
}

/** `mail` with a signed `url` on each of its attachments (for links and inline images). */
export async function withAttachmentUrls(mail) {
  const parts = (mail.attachments || []).filter((a) => !a.truncated);
  const urls = await Promise.all(parts.map((a) => signedUrl(`/api/emails/${mail.id}/attachments/${a.n}`)));
  parts.forEach((a, i) => (a.url = urls[i]));
  return mail;
}
