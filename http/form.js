/*
 * form.js: the payment form.  It offers the users, payment methods and
 * currencies the API lists, posts the payment, and shows what the database
 * decided (decision, risk score, reasons) or why it refused it, marking the
 * field the error names.
 */
'use strict';

const FIELDS = ['payer_id', 'payee_id', 'payment_method_id', 'currency', 'amount'];

/* Fill the datalist of users and the method and currency lists. */
async function loadChoices() {
  const loadError = document.getElementById('load-error');
  try {
    const [users, methods, currencies] = await Promise.all([
      api('GET', '/users' + query({ limit: 1000 })),
      api('GET', '/payment-methods'),
      api('GET', '/currencies'),
    ]);
    fill(document.getElementById('users'), (users || []).map((u) => {
      const name = [u.first_name, u.last_name].filter(Boolean).join(' ');
      return el('option', { value: u.id, label: [name, u.email_address].filter(Boolean).join(' · ') || u.id });
    }));
    fill(document.getElementById('payment_method_id'),
      el('option', { value: '', text: 'Choose a method' }),
      (methods || []).map((m) => el('option', { value: m.id, text: m.name || m.id })));
    fill(document.getElementById('currency'),
      el('option', { value: '', text: 'Choose a currency' }),
      (currencies || []).map((c) => el('option', { value: c.code, text: c.name ? c.code + ' · ' + c.name : c.code })));
    clearError(loadError);
  } catch (err) {
    showError(loadError, err);
    /* Whatever could not be listed can still be typed. */
    for (const id of ['payment_method_id', 'currency']) {
      const sel = document.getElementById(id);
      if (sel.options.length <= 1) {
        const input = el('input', { id, name: id, required: true, autocomplete: 'off',
          'data-testid': sel.dataset.testid, placeholder: id === 'currency' ? 'e.g. USD' : 'method id (uuid)' });
        sel.replaceWith(input);
      }
    }
  }
}

function markField(column) {
  for (const f of FIELDS) {
    const input = document.getElementById(f);
    if (f === column) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', 'error');
    } else {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    }
  }
}

/* The stored payment, as the API returned it. */
function showPayment(p) {
  const result = document.getElementById('result');
  const d = String(p.decision);
  result.className = 'result decision-' + (['approve', 'review', 'decline'].includes(d) ? d : 'other');
  fill(result,
    el('p', { class: 'big' }, decisionBadge(p.decision, 'decision')),
    el('dl', { class: 'facts' },
      el('dt', { text: 'Risk score' }), el('dd', { 'data-testid': 'risk-score', text: formatScore(p.risk_score) }),
      el('dt', { text: 'Reasons' }), el('dd', {}, reasonsList(p.reasons, 'reasons')),
      el('dt', { text: 'Amount' }), el('dd', { text: p.amount + ' ' + p.currency }),
      el('dt', { text: 'Transaction' }), el('dd', { class: 'mono', 'data-testid': 'transaction-id', text: p.transaction_id }),
      el('dt', { text: 'Created' }), el('dd', { text: formatTime(p.created_at) }),
      el('dt', { text: 'Rule set' }), el('dd', { text: p.ruleset_version })));
  result.hidden = false;
  document.getElementById('no-result').hidden = true;
}

async function submit(ev) {
  ev.preventDefault();
  const errorBox = document.getElementById('error');
  const button = document.getElementById('submit');
  const body = {};
  for (const f of FIELDS) body[f] = document.getElementById(f).value.trim();
  button.disabled = true;
  document.getElementById('busy').textContent = 'Sending…';
  try {
    const p = await api('POST', '/payments', body);
    clearError(errorBox);
    markField(null);
    showPayment(p);
  } catch (err) {
    document.getElementById('result').hidden = true;
    document.getElementById('no-result').hidden = false;
    showError(errorBox, err);
    markField(err.body && err.body.column);
    if (err.body && FIELDS.includes(err.body.column)) document.getElementById(err.body.column).focus();
  } finally {
    button.disabled = false;
    document.getElementById('busy').textContent = '';
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('payment-form').addEventListener('submit', submit);
  loadChoices();
});
