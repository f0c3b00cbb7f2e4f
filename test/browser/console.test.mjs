// test/browser/console.test.mjs: p2pay-http's pages in a browser, against
// the daemon and database run.sh starts: the payment form, the analysts'
// console (resolving a review, claims, the live feed) and what each shows
// a role that may not do something.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launch, openPage, psql, insertReview, findReview, shot, APP, ANALYST, ANALYST2, USERS, METHODS,
} from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a payment posted through the form shows the decision stored with it', async () => {
  const page = await openPage(browser, APP, '/');
  // The lists come from the API: Alice is offered by id, the seeded methods
  // and currencies as options.
  await page.waitForSelector(`#users option[value="${USERS.alice}"]`, { state: 'attached' });
  await page.waitForSelector(`#payment_method_id option[value="${METHODS.bank}"]`, { state: 'attached' });
  await page.waitForSelector('#currency option[value="USD"]', { state: 'attached' });

  await page.fill('#payer_id', USERS.alice);
  await page.fill('#payee_id', USERS.bob);
  await page.selectOption('#payment_method_id', METHODS.bank);
  await page.selectOption('#currency', 'USD');

  // A bad amount: the API's error, with the field it names marked.
  await page.fill('#amount', '12,5');
  await page.click('[data-testid=submit]');
  await page.waitForSelector('[data-testid=error]:not([hidden])');
  assert.equal(await page.getAttribute('#amount', 'aria-invalid'), 'true');
  assert.match(await page.textContent('[data-testid=error]'), /\(400\)/);
  assert.equal(await page.isVisible('[data-testid=result]'), false);

  await page.fill('#amount', '27.50');
  await page.click('[data-testid=submit]');
  await page.waitForSelector('[data-testid=decision]');
  const id = (await page.textContent('[data-testid=transaction-id]')).trim();
  const shown = await page.getAttribute('[data-testid=decision]', 'data-decision');
  const score = (await page.textContent('[data-testid=risk-score]')).trim();
  const [[decision, riskScore, amount]] = psql(
    `SELECT decision, round(risk_score::numeric, 2), amount FROM p2pay.payments WHERE transaction_id = '${id}'`);
  assert.equal(shown, decision);
  assert.equal(Number(score), Number(riskScore));
  assert.equal(amount, '27.50');
  assert.equal(await page.getAttribute('#amount', 'aria-invalid'), null);
  assert.equal(await page.isVisible('[data-testid=error]'), false);

  // A payment that fires rules shows them, one per reason.
  await page.fill('#payer_id', USERS.bob);
  await page.fill('#payee_id', USERS.carol);
  await page.selectOption('#payment_method_id', METHODS.cash);
  await page.fill('#amount', '9000');
  await page.click('[data-testid=submit]');
  await page.waitForFunction((prev) => {
    const e = document.querySelector('[data-testid=transaction-id]');
    return e && e.textContent.trim() !== prev;
  }, id);
  const id2 = (await page.textContent('[data-testid=transaction-id]')).trim();
  const [[reasons]] = psql(`SELECT array_to_json(reasons) FROM p2pay.payments WHERE transaction_id = '${id2}'`);
  const listed = await page.$$eval('[data-testid=reasons] li', (lis) => lis.map((li) => li.textContent));
  assert.deepEqual(listed, JSON.parse(reasons));
  assert.ok(listed.length > 0);
  assert.equal(await page.getAttribute('[data-testid=decision]', 'data-decision'),
    psql(`SELECT decision FROM p2pay.payments WHERE transaction_id = '${id2}'`)[0][0]);

  // Carol's name is markup: it is offered as text, never made an element.
  assert.equal(await page.$('[data-testid=injected]'), null);
  await shot(page, 'form.png');
  assert.deepEqual(page.pageErrors, []);
  await page.context().close();
});

test('a review resolved in the console is in decision_log, and a second analyst is told it is over', async () => {
  const [id, decision] = insertReview();
  assert.equal(decision, 'review');
  const page = await openPage(browser, ANALYST, '/console');
  const row = await findReview(page, id);
  await page.click(`${row} [data-testid=select]`);
  await page.waitForSelector('[data-testid=payer-history] table');
  await page.waitForSelector('[data-testid=payee-history] table');

  // A second analyst has the page open on the same review.
  const other = await openPage(browser, ANALYST2, '/console');
  await other.click(`${await findReview(other, id)} [data-testid=select]`);

  await page.click('[data-testid=claim]');
  await page.waitForSelector('[data-testid=action-notice]:not([hidden])');
  assert.match(await page.textContent('[data-testid=action-notice]'), new RegExp(`Claimed by ${ANALYST.username}`));
  await page.waitForSelector(`${row} [data-testid=claim-state]:has-text("${ANALYST.username}")`);

  await page.fill('[data-testid=note]', 'known customer, called back');
  await page.click('[data-testid=approve]');
  await page.waitForSelector('[data-testid=action-notice]:has-text("Resolved")');
  const log = psql(`SELECT old_decision, new_decision, note, resolved_by FROM p2pay.decision_log
                     WHERE transaction_id = '${id}'`);
  assert.deepEqual(log, [['review', 'approve', 'known customer, called back', ANALYST.username]]);
  assert.equal(psql(`SELECT decision FROM p2pay.payments WHERE transaction_id = '${id}'`)[0][0], 'approve');
  // The queue was refreshed: the payment has left it.
  await page.waitForSelector(row, { state: 'detached' });

  // The second analyst, whose page still shows it, tries to decline it.
  await other.click('[data-testid=decline]');
  await other.waitForSelector('[data-testid=action-error]:not([hidden])');
  assert.equal(await other.getAttribute('[data-testid=action-error]', 'data-status'), '409');
  assert.match(await other.textContent('[data-testid=conflict]'), /no longer under review/);
  assert.equal(psql(`SELECT count(*) FROM p2pay.decision_log WHERE transaction_id = '${id}'`)[0][0], '1');
  await other.context().close();
  assert.deepEqual(page.pageErrors, []);
  await page.context().close();
});

test('a review claimed by one analyst shows the other who holds it', async () => {
  const [id] = insertReview();
  const first = await openPage(browser, ANALYST, '/console');
  const second = await openPage(browser, ANALYST2, '/console');
  let row;
  for (const page of [first, second]) {
    row = await findReview(page, id);
    await page.click(`${row} [data-testid=select]`);
  }
  await first.click('[data-testid=claim]');
  await first.waitForSelector('[data-testid=action-notice]:not([hidden])');

  await second.click('[data-testid=claim]');
  await second.waitForSelector('[data-testid=action-error]:not([hidden])');
  assert.equal(await second.getAttribute('[data-testid=action-error]', 'data-status'), '409');
  assert.match(await second.textContent('[data-testid=conflict]'), new RegExp(`claimed by ${ANALYST.username}`));
  // Resolving it is refused too, and nothing is logged.
  await second.click('[data-testid=approve]');
  await second.waitForSelector('[data-testid=action-error]:not([hidden])');
  assert.equal(await second.getAttribute('[data-testid=action-error]', 'data-status'), '409');
  assert.equal(psql(`SELECT count(*) FROM p2pay.decision_log WHERE transaction_id = '${id}'`)[0][0], '0');
  // The refreshed queue shows the claim to the second analyst.
  await second.waitForSelector(`${row} [data-testid=claim-state]:has-text("${ANALYST.username}")`);
  await first.context().close();
  await second.context().close();
});

test('a payment flagged by an insert appears in the live feed within 2 s of its commit', async () => {
  const page = await openPage(browser, ANALYST, '/console');
  await page.waitForSelector('[data-testid=feed-state][data-state=open]');
  await page.waitForSelector('[data-testid=rule-row]');
  const [id, decision] = insertReview();   // psql returns once the insert has committed
  const committed = Date.now();
  await page.waitForSelector(`[data-testid=feed-item][data-transaction-id="${id}"]`, { timeout: 2000 });
  const elapsed = Date.now() - committed;
  // Newest on top.
  assert.equal(await page.getAttribute('[data-testid=feed-item] >> nth=0', 'data-transaction-id'), id);
  assert.equal(await page.getAttribute(`[data-testid=feed-item][data-transaction-id="${id}"] [data-testid=feed-decision]`,
    'data-decision'), decision);
  const second = insertReview()[0];
  await page.waitForSelector(`[data-testid=feed-item][data-transaction-id="${second}"]`, { timeout: 2000 });
  assert.equal(await page.getAttribute('[data-testid=feed-item] >> nth=0', 'data-transaction-id'), second);
  console.log(`# the feed showed the flagged payment ${elapsed} ms after its commit`);

  // The backtest form replays the last week with a changed weight.
  await page.fill('[data-testid=bt-rules]', '[{"name": "unregistered_method", "weight": 0.1}]');
  await page.click('[data-testid=bt-run]');
  await page.waitForSelector('[data-testid=bt-table] tr[data-rule=unregistered_method]');
  await page.click('[data-testid=queue-refresh]');
  await page.click('[data-testid=review-row] [data-testid=select] >> nth=0');
  await page.waitForSelector('[data-testid=payer-history] table');
  await shot(page, 'console.png', false);
  await shot(page, 'console-full.png');
  assert.deepEqual(page.pageErrors, []);
  await page.context().close();
});

test('the console tells a role without the analysts\' grants that it is not allowed, and a wrong password that it is not signed in', async () => {
  const app = await openPage(browser, APP, '/console');
  await app.waitForSelector('[data-testid=global-error]:not([hidden])');
  assert.equal(await app.getAttribute('[data-testid=global-error]', 'data-status'), '403');
  assert.match(await app.textContent('[data-testid=global-error]'), /Not allowed/);
  await app.context().close();

  const wrong = await openPage(browser, { username: ANALYST.username, password: 'wrong' }, '/console');
  await wrong.waitForSelector('[data-testid=global-error]:not([hidden])');
  assert.equal(await wrong.getAttribute('[data-testid=global-error]', 'data-status'), '401');
  assert.match(await wrong.textContent('[data-testid=global-error]'), /Not signed in/);
  await wrong.context().close();
});

test('the review queue pages on, oldest first, as the queue is ordered', async () => {
  for (let i = 0; i < 22; i++) insertReview();
  const expected = psql(`SELECT transaction_id FROM p2pay.review_queue ORDER BY created_at, transaction_id`)
    .map((r) => r[0]);
  assert.ok(expected.length > 20);
  const page = await openPage(browser, ANALYST, '/console');
  const seen = [];
  await page.waitForSelector('[data-testid=queue-info]:not(:empty)');
  assert.equal(await page.isDisabled('[data-testid=queue-first]'), true);
  for (;;) {
    const ids = await page.$$eval('[data-testid=review-row]', (rows) => rows.map((r) => r.dataset.transactionId));
    assert.ok(ids.length <= 20);
    seen.push(...ids);
    if (await page.isDisabled('[data-testid=queue-next]')) break;
    const info = await page.textContent('[data-testid=queue-info]');
    await page.click('[data-testid=queue-next]');
    await page.waitForFunction((prev) => document.querySelector('[data-testid=queue-info]').textContent !== prev, info);
  }
  assert.deepEqual(seen, expected);
  await page.click('[data-testid=queue-first]');
  await page.waitForSelector('[data-testid=queue-info]:has-text("page 1,")');
  assert.equal(await page.getAttribute('[data-testid=review-row] >> nth=0', 'data-transaction-id'), expected[0]);
  assert.deepEqual(page.pageErrors, []);
  await page.context().close();
});
