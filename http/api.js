/*
 * api.js: what p2pay-http's pages share: calling /api/v1 (same-origin, so
 * the browser answers the Basic challenge once and sends the credentials
 * again), turning an API error into a message, and building DOM from data.
 * Data is only ever inserted as text (textContent, attribute values), never
 * as markup.
 */
'use strict';

/* An API error: the JSON the daemon sends for it, with the HTTP status. */
class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || ('HTTP ' + status));
    this.status = status;
    this.body = body || {};
  }
}

/* Call the API; resolve to its JSON, or reject with an ApiError. */
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch('/api/v1' + path, init);
  } catch (e) {
    throw new ApiError(0, { message: 'The server could not be reached.', detail: String(e.message || e) });
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!resp.ok) {
    if (json === null || typeof json !== 'object')
      json = { message: text || resp.statusText };
    throw new ApiError(resp.status, json);
  }
  return json;
}

/* A query string from an object, leaving out empty values. */
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}

/* An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/* Empty an element and put children in it. */
function fill(target, ...children) {
  target.replaceChildren();
  for (const c of children.flat())
    if (c !== undefined && c !== null && c !== false)
      target.append(c instanceof Node ? c : document.createTextNode(String(c)));
}

/* The sentence for an error's status, before the API's own message. */
function statusSentence(err) {
  switch (err.status) {
    case 0: return 'No answer from the server.';
    case 401: return 'Not signed in: the server refused the user name or password (401). Reload the page to sign in again.';
    case 403: return 'Not allowed: your PostgreSQL role lacks the privilege for this (403).';
    case 404: return 'Not found (404).';
    case 409: return 'Conflict (409).';
    case 413: return 'The request is too large (413).';
    case 503: return 'The database is busy or unavailable (503); try again in a moment.';
    default: return err.status >= 500 ? 'Server error (' + err.status + ').' : 'Refused (' + err.status + ').';
  }
}

/*
 * Show an error in box (a role="alert" element): the status, then the
 * API's message, detail, hint and code, each as text.
 */
function showError(box, err) {
  const b = err.body || {};
  const parts = [el('p', { class: 'error-status', 'data-testid': 'error-status', text: statusSentence(err) })];
  if (b.message) parts.push(el('p', { class: 'error-message', 'data-testid': 'error-message', text: b.message }));
  if (b.detail) parts.push(el('p', { class: 'error-detail', 'data-testid': 'error-detail', text: b.detail }));
  if (b.hint) parts.push(el('p', { class: 'error-hint', 'data-testid': 'error-hint', text: 'Hint: ' + b.hint }));
  const meta = [];
  if (b.code) meta.push('code ' + b.code);
  if (b.column) meta.push('field ' + b.column);
  if (meta.length) parts.push(el('p', { class: 'error-code', text: meta.join(', ') }));
  fill(box, parts);
  box.hidden = false;
  box.dataset.status = String(err.status);
}

function clearError(box) {
  box.replaceChildren();
  box.hidden = true;
  delete box.dataset.status;
}

/* A reason as the trigger writes it: a rule name, or an object naming one. */
function reasonText(r) {
  if (r === null || r === undefined) return '';
  if (typeof r !== 'object') return String(r);
  const name = r.rule || r.name || r.reason;
  const rest = Object.entries(r).filter(([k]) => !['rule', 'name', 'reason'].includes(k))
    .map(([k, v]) => k + ': ' + (typeof v === 'object' ? JSON.stringify(v) : String(v)));
  if (name === undefined) return JSON.stringify(r);
  return rest.length ? name + ' (' + rest.join(', ') + ')' : String(name);
}

/* A list of reasons (a JSON array, or a PostgreSQL array's text). */
function reasonsList(reasons, testid) {
  let list = reasons;
  if (typeof list === 'string')
    list = list.replace(/^\{|\}$/g, '').split(',').filter(Boolean);
  if (!Array.isArray(list)) list = list ? [list] : [];
  if (list.length === 0) return el('span', { class: 'muted', 'data-testid': testid, text: 'no rule fired' });
  return el('ul', { class: 'reasons', 'data-testid': testid },
    list.map((r) => el('li', { text: reasonText(r) })));
}

/* A decision as a badge whose style tells approve, review and decline apart. */
function decisionBadge(decision, testid) {
  const d = String(decision);
  const known = ['approve', 'review', 'decline'].includes(d);
  return el('span', { class: 'badge decision-' + (known ? d : 'other'), 'data-testid': testid, 'data-decision': d, text: d });
}

function formatScore(s) {
  if (s === null || s === undefined || s === '') return '';
  const n = Number(s);
  return Number.isFinite(n) ? n.toFixed(2) : String(s);
}

function formatTime(t) {
  if (!t) return '';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/* Seconds as "3 h 05 min", "12 min", "40 s". */
function formatWait(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + String(m % 60).padStart(2, '0') + ' min';
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
}

/* An id short enough for a table cell (the whole id goes in its title). */
function shortId(id) {
  const s = id ? String(id) : '';
  return s.length > 16 ? s.slice(0, 8) + '…' + s.slice(-4) : s;
}
