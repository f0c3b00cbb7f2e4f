/*
 * console.js: the analysts' console.  The review queue (oldest first, a page
 * at a time), the selected review's payer and payee histories, claiming and
 * resolving it, the live feed of flagged payments (Server-Sent Events), the
 * rules with their counters, and the backtest form.
 *
 * The live feed opens only after the first API call has been answered, so
 * that the browser asks for the credentials once, for that call, and
 * EventSource then sends them like any same-origin request.
 */
'use strict';

const PAGE = 20;
const FEED_MAX = 50;

const state = {
  pages: [],          /* the "after" of each page shown so far; [null] is the first */
  items: [],          /* the current page's reviews */
  selected: null,     /* the selected review's transaction_id */
  feed: null,         /* the EventSource */
};

function $(id) { return document.getElementById(id); }

/* A 401 or 403 anywhere also shows at the top, where it can't be missed. */
function noteAuth(err) {
  if (err.status === 401 || err.status === 403) showError($('global-error'), err);
}

function claimText(r) {
  if (!r.claimed_by) return el('span', { class: 'muted', 'data-testid': 'claim-state', text: 'unclaimed' });
  return el('span', { 'data-testid': 'claim-state' }, 'claimed by ', el('strong', { text: r.claimed_by }),
    r.claim_expires_at ? ' until ' + new Date(r.claim_expires_at).toLocaleTimeString() : '');
}

/* ---------- review queue ---------- */

/* Load the current page of the queue; resolves to null, or the ApiError. */
async function loadQueue() {
  const after = state.pages[state.pages.length - 1];
  const box = $('queue-error');
  let items;
  try {
    items = await api('GET', '/reviews' + query({ limit: PAGE, after }));
    clearError(box);
    clearError($('global-error'));
  } catch (err) {
    if (after && err.body && err.body.column === 'after') {
      /* The page's anchor is gone (the payment was deleted): start again. */
      state.pages = [null];
      return loadQueue();
    }
    showError(box, err);
    noteAuth(err);
    return err;
  }
  state.items = items || [];
  renderQueue();
  return null;
}

function renderQueue() {
  const body = $('queue-body');
  fill(body, state.items.map((r) => {
    const selected = r.transaction_id === state.selected;
    return el('tr', { 'data-testid': 'review-row', 'data-transaction-id': r.transaction_id, class: selected ? 'selected' : null },
      el('td', { class: 'nowrap', text: formatWait(r.waiting_seconds), title: formatTime(r.created_at) }),
      el('td', { class: 'mono nowrap', title: r.transaction_id, text: shortId(r.transaction_id) }),
      el('td', { class: 'num nowrap', text: r.amount + ' ' + r.currency }),
      el('td', { class: 'num', 'data-testid': 'review-score', text: formatScore(r.risk_score) }),
      el('td', {}, reasonsList(r.reasons, 'review-reasons')),
      el('td', {}, claimText(r)),
      el('td', {}, el('button', { type: 'button', class: 'secondary', 'data-testid': 'select',
        'aria-label': 'Select payment ' + r.transaction_id, 'aria-pressed': selected ? 'true' : 'false',
        onclick: () => select(r.transaction_id) }, 'Select')));
  }));
  if (state.items.length === 0)
    body.append(el('tr', {}, el('td', { colspan: 7, class: 'muted', text: state.pages.length > 1 ? 'No more reviews.' : 'The queue is empty.' })));
  const pageNo = state.pages.length;
  $('queue-info').textContent = 'page ' + pageNo + ', ' + state.items.length + ' shown';
  $('queue-next').disabled = state.items.length < PAGE;
  $('queue-first').disabled = pageNo === 1;
  if (state.selected) renderDetailFacts();
}

/* ---------- the selected review ---------- */

function selectedItem() {
  return state.items.find((r) => r.transaction_id === state.selected) || null;
}

function renderDetailFacts() {
  const r = selectedItem();
  if (!r) return;
  fill($('detail-facts'),
    el('dt', { text: 'Transaction' }), el('dd', { class: 'mono', 'data-testid': 'detail-transaction-id', text: r.transaction_id }),
    el('dt', { text: 'Created' }), el('dd', { text: formatTime(r.created_at) + ' (waiting ' + formatWait(r.waiting_seconds) + ')' }),
    el('dt', { text: 'Payer' }), el('dd', { class: 'mono', text: r.payer_id }),
    el('dt', { text: 'Payee' }), el('dd', { class: 'mono', text: r.payee_id }),
    el('dt', { text: 'Amount' }), el('dd', { text: r.amount + ' ' + r.currency + (r.amount_base != null ? ' (' + r.amount_base + ' in base)' : '') }),
    el('dt', { text: 'Risk score' }), el('dd', { text: formatScore(r.risk_score) }),
    el('dt', { text: 'Reasons' }), el('dd', {}, reasonsList(r.reasons, 'detail-reasons')),
    el('dt', { text: 'Claim' }), el('dd', {}, claimText(r)));
}

function historyTable(payments, userId) {
  if (!payments || payments.length === 0) return el('p', { class: 'muted', text: 'No payments.' });
  return el('div', { class: 'table-wrap' }, el('table', {},
    el('thead', {}, el('tr', {}, ['When', 'Direction', 'Other party', 'Amount', 'Decision', 'Score'].map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, payments.map((p) => {
      const out = p.payer_id === userId;
      return el('tr', { 'data-transaction-id': p.transaction_id },
        el('td', { text: formatTime(p.created_at) }),
        el('td', { text: out ? 'paid' : 'received' }),
        el('td', { class: 'mono', title: out ? p.payee_id : p.payer_id, text: shortId(out ? p.payee_id : p.payer_id) }),
        el('td', { class: 'num nowrap', text: p.amount + ' ' + p.currency }),
        el('td', {}, decisionBadge(p.decision)),
        el('td', { class: 'num', text: formatScore(p.risk_score) }));
    }))));
}

async function loadHistory(target, userId) {
  fill(target, el('p', { class: 'muted', text: 'Loading…' }));
  try {
    const rows = await api('GET', '/payments' + query({ user_id: userId, limit: 10 }));
    fill(target, historyTable(rows, userId));
  } catch (err) {
    const box = el('div', { class: 'alert', role: 'alert' });
    showError(box, err);
    fill(target, box);
    noteAuth(err);
  }
}

function select(id) {
  state.selected = id;
  const r = selectedItem();
  $('detail-empty').hidden = true;
  $('detail-body').hidden = false;
  clearError($('action-error'));
  $('action-notice').hidden = true;
  $('note').value = '';
  renderQueue();
  if (r) {
    loadHistory($('payer-history'), r.payer_id);
    loadHistory($('payee-history'), r.payee_id);
  }
}

function notice(text) {
  const n = $('action-notice');
  n.textContent = text;
  n.hidden = false;
}

/* The sentence a 409 gets: who holds the claim, or that the review is over. */
function conflictText(err) {
  const b = err.body || {};
  const all = [b.message, b.detail].filter(Boolean).join(' ');
  const by = /claimed by "?([^\s",.]+)"?/i.exec(all);
  if (by) return 'This review is claimed by ' + by[1] + '.';
  if (/no longer|not under review|not in review/i.test(all)) return 'This payment is no longer under review.';
  return null;
}

async function act(what) {
  const id = state.selected;
  if (!id) return;
  const errBox = $('action-error');
  clearError(errBox);
  $('action-notice').hidden = true;
  const buttons = ['claim', 'release', 'approve', 'decline'].map($);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    if (what === 'claim') {
      const c = await api('POST', '/reviews/' + encodeURIComponent(id) + '/claim', {});
      notice('Claimed by ' + c.claimed_by + (c.expires_at ? ' until ' + new Date(c.expires_at).toLocaleTimeString() : '') + '.');
    } else if (what === 'release') {
      await api('DELETE', '/reviews/' + encodeURIComponent(id) + '/claim');
      notice('Claim released.');
    } else {
      const note = $('note').value;
      const p = await api('POST', '/reviews/' + encodeURIComponent(id), { decision: what, note: note === '' ? null : note });
      notice('Resolved: ' + p.decision + ' (' + p.transaction_id + ').');
      state.selected = null;
      $('detail-body').hidden = true;
      $('detail-empty').hidden = false;
      $('detail-empty').textContent = 'Select another payment in the queue.';
    }
  } catch (err) {
    showError(errBox, err);
    if (err.status === 409) {
      const sentence = conflictText(err);
      if (sentence) errBox.prepend(el('p', { class: 'error-status', 'data-testid': 'conflict', text: sentence }));
    }
    noteAuth(err);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
  await loadQueue();
}

/* ---------- live feed ---------- */

function feedState(s, text) {
  const e = $('feed-state');
  e.dataset.state = s;
  e.textContent = text;
}

function feedItem(ev, data) {
  const kind = data.event || data.kind || ev.type;
  const when = data.commit_time || data.created_at;
  const li = el('li', { class: 'fresh', 'data-testid': 'feed-item', 'data-transaction-id': data.transaction_id || '', 'data-lsn': ev.lastEventId || data.lsn || '' },
    el('div', { class: 'row' },
      data.decision ? decisionBadge(data.decision, 'feed-decision') : null,
      el('strong', { text: kind }),
      data.old_decision ? el('span', { class: 'muted', text: 'was ' + data.old_decision }) : null,
      data.amount !== undefined ? el('span', { text: data.amount + ' ' + (data.currency || '') }) : null,
      data.risk_score !== undefined && data.risk_score !== null ? el('span', { text: 'score ' + formatScore(data.risk_score) }) : null,
      el('span', { class: 'muted', text: formatTime(when) })),
    data.transaction_id ? el('div', { class: 'mono', text: data.transaction_id }) : null,
    data.reasons ? reasonsList(data.reasons, 'feed-reasons') : null);
  return li;
}

function addFeed(li) {
  const list = $('feed');
  list.prepend(li);
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}

function openFeed() {
  if (state.feed) state.feed.close();
  feedState('connecting', 'connecting…');
  const es = new EventSource('/api/v1/flagged');
  state.feed = es;
  es.onopen = () => feedState('open', 'live');
  es.onmessage = (ev) => {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { data = { event: 'unreadable', detail: ev.data }; }
    addFeed(feedItem(ev, data));
  };
  es.addEventListener('gap', () => {
    addFeed(el('li', { 'data-testid': 'feed-gap', class: 'muted', text: 'Some events were missed while disconnected: the feed continues from now.' }));
  });
  es.onerror = async () => {
    if (es.readyState === EventSource.CONNECTING) { feedState('connecting', 'reconnecting…'); return; }
    /* Closed for good: EventSource gives no status, so ask the API why. */
    feedState('error', 'disconnected');
    try {
      const r = await fetch('/api/v1/flagged', { method: 'GET', credentials: 'same-origin', headers: { Accept: 'text/event-stream' } });
      if (r.status === 401 || r.status === 403) {
        const body = await r.json().catch(() => ({}));
        feedState('error', r.status === 403 ? 'not allowed (403): your role may not read payments' : 'not signed in (401)');
        noteAuth(new ApiError(r.status, body));
      } else if (r.body) {
        r.body.cancel();
        setTimeout(openFeed, 3000);
      }
    } catch (e) {
      setTimeout(openFeed, 3000);
    }
  };
}

/* ---------- rules ---------- */

function firstOf(o, ...keys) {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return '';
}

async function loadRules() {
  try {
    const rules = await api('GET', '/rules');
    clearError($('rules-error'));
    fill($('rules-body'), (rules || []).map((r) => el('tr', { 'data-testid': 'rule-row', 'data-rule': r.name },
      el('td', { class: 'rule-name' }, el('strong', { text: r.name }),
        r.description ? el('div', { class: 'hint', text: r.description }) : null),
      el('td', { text: r.mode }),
      el('td', { class: 'num', text: r.weight }),
      el('td', { class: 'mono params', text: r.params === undefined ? '' : JSON.stringify(r.params) }),
      el('td', { class: 'num', 'data-testid': 'rule-evaluated', text: firstOf(r, 'evaluated', 'evaluations') }),
      el('td', { class: 'num', 'data-testid': 'rule-fired', text: firstOf(r, 'fired', 'fires') }))));
  } catch (err) {
    showError($('rules-error'), err);
    noteAuth(err);
  }
}

/* ---------- backtest ---------- */

function cell(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' && !Number.isInteger(v)) return v.toFixed(3);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

async function runBacktest(ev) {
  ev.preventDefault();
  const errBox = $('bt-error');
  const fields = { from: $('bt-from'), to: $('bt-to'), rules: $('bt-rules') };
  Object.values(fields).forEach((f) => f.removeAttribute('aria-invalid'));
  let rules;
  try {
    rules = $('bt-rules').value.trim() === '' ? null : JSON.parse($('bt-rules').value);
  } catch (e) {
    showError(errBox, new ApiError(400, { message: 'The changed rules are not valid JSON.', detail: e.message, column: 'rules' }));
    fields.rules.setAttribute('aria-invalid', 'true');
    fields.rules.focus();
    return;
  }
  $('bt-run').disabled = true;
  $('bt-busy').textContent = 'Replaying…';
  try {
    const res = await api('POST', '/backtest', { from: fields.from.value.trim(), to: fields.to.value.trim(), rules });
    clearError(errBox);
    const rows = (res && res.rules) || [];
    /* backtest()'s columns in its order (jsonb keeps keys in its own), then any others. */
    const known = ['rule', 'payments', 'fired', 'would_review', 'would_decline', 'fired_at_time',
      'reviewed_at_time', 'declined_at_time', 'labelled_fraud', 'fired_on_fraud', 'precision', 'recall'];
    const keys = rows.length ? Object.keys(rows[0]) : [];
    const cols = known.filter((k) => keys.includes(k)).concat(keys.filter((k) => !known.includes(k)));
    fill($('bt-result'),
      el('p', { class: 'muted', text: 'Payments from ' + formatTime(res.from) + ' to ' + formatTime(res.to) + ': ' + rows.length + ' rows.' }),
      rows.length === 0 ? null : el('table', { 'data-testid': 'bt-table' },
        el('thead', {}, el('tr', {}, cols.map((c) => el('th', { scope: 'col', class: typeof rows[0][c] === 'number' ? 'num' : null, text: c })))),
        el('tbody', {}, rows.map((r) => el('tr', { 'data-rule': r.rule || '' },
          cols.map((c) => el('td', { class: typeof r[c] === 'number' ? 'num' : null, text: cell(r[c]) })))))));
  } catch (err) {
    fill($('bt-result'));
    showError(errBox, err);
    const col = err.body && err.body.column;
    if (col && fields[col]) fields[col].setAttribute('aria-invalid', 'true');
    else if (col) fields.rules.setAttribute('aria-invalid', 'true');
    noteAuth(err);
  } finally {
    $('bt-run').disabled = false;
    $('bt-busy').textContent = '';
  }
}

/* ---------- start ---------- */

document.addEventListener('DOMContentLoaded', async () => {
  $('queue-first').addEventListener('click', () => { state.pages = [null]; loadQueue(); });
  $('queue-next').addEventListener('click', () => {
    if (state.items.length === 0) return;
    state.pages.push(state.items[state.items.length - 1].transaction_id);
    loadQueue();
  });
  $('queue-refresh').addEventListener('click', () => loadQueue());
  $('rules-refresh').addEventListener('click', () => loadRules());
  for (const what of ['claim', 'release', 'approve', 'decline'])
    $(what).addEventListener('click', () => act(what));
  $('backtest-form').addEventListener('submit', runBacktest);
  const now = new Date();
  $('bt-to').value = now.toISOString();
  $('bt-from').value = new Date(now.getTime() - 7 * 86400e3).toISOString();

  state.pages = [null];
  const err = await loadQueue();
  loadRules();
  /* Not after a 401 or 403: the feed would only be refused the same way. */
  if (err && (err.status === 401 || err.status === 403))
    feedState('error', 'not connected: ' + (err.status === 401 ? 'not signed in' : 'not allowed'));
  else
    openFeed();
  setInterval(() => { if (!document.hidden) loadQueue(); }, 30000);
});
