// test/browser/lib.mjs: what the browser tests share: Debian's chromium
// through playwright-core, a browser context signed in as a role, psql
// against the tests' database, and where screenshots go.  run.sh sets the
// environment.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../http/package.json'));
const { chromium } = require('playwright-core');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests with test/browser/run.sh`);
  return v;
}

export const BASE = env('P2PAY_HTTP_URL');
export const ARTIFACTS = env('P2PAY_BROWSER_ARTIFACTS');
export const APP = { username: env('P2PAY_APP_USER'), password: env('P2PAY_APP_PASSWORD') };
export const ANALYST = { username: env('P2PAY_ANALYST_USER'), password: env('P2PAY_ANALYST_PASSWORD') };
export const ANALYST2 = { username: env('P2PAY_ANALYST2_USER'), password: env('P2PAY_ANALYST_PASSWORD') };

export const USERS = {
  alice: 'a0000000-0000-4000-8000-000000000001',
  bob: 'a0000000-0000-4000-8000-000000000002',
  carol: 'a0000000-0000-4000-8000-000000000003',
};
export const METHODS = { bank: '00000000-0000-4000-8000-000000000001', cash: '00000000-0000-4000-8000-000000000004' };

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A page in a context of its own, answering the Basic challenge as who; the
// page's script errors fail the test that reads pageErrors.
export async function openPage(browser, who, urlPath) {
  const context = await browser.newContext({ httpCredentials: who, viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.pageErrors = [];
  page.on('pageerror', (e) => page.pageErrors.push(e));
  await page.goto(BASE + urlPath);
  return page;
}

// Rows of a query's result, each an array of the columns' texts.
export function psql(sql) {
  const out = execFileSync('psql', ['-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', env: process.env });
  return out.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

// Insert a payment that p2pay puts under review (a large cash payment from
// a fresh old account to a fresh two-day-old one: unregistered_method and
// young_payee_high_amount); returns [transaction_id, decision].
export function insertReview() {
  return psql(`WITH a AS (INSERT INTO p2pay.users (first_name, created_at)
                          VALUES ('Payer', now() - interval '400 days') RETURNING id),
                    b AS (INSERT INTO p2pay.users (first_name, created_at)
                          VALUES ('Payee', now() - interval '2 days') RETURNING id)
               INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
               SELECT a.id, b.id, 9000, 'USD', '${METHODS.cash}' FROM a, b
               RETURNING transaction_id, decision`)[0];
}

// Save a screenshot of the page (the whole page unless fullPage is false).
export function shot(page, name, fullPage = true) {
  return page.screenshot({ path: path.join(ARTIFACTS, name), fullPage });
}

// Page through the console's review queue (oldest first) until the row of
// the payment is listed; returns its selector.
export async function findReview(page, id) {
  const row = `[data-testid=review-row][data-transaction-id="${id}"]`;
  await page.waitForSelector('[data-testid=queue-info]:not(:empty)');
  while (!(await page.$(row))) {
    if (await page.isDisabled('[data-testid=queue-next]'))
      throw new Error(`payment ${id} is in no page of the review queue`);
    const info = await page.textContent('[data-testid=queue-info]');
    await page.click('[data-testid=queue-next]');
    await page.waitForFunction((prev) => document.querySelector('[data-testid=queue-info]').textContent !== prev, info);
  }
  return row;
}
