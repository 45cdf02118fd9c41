// A new user's whole way in a real headless Chromium, run by crates/writ/tests/browser.rs
// against a real `writ serve` on an empty database and a real PostgreSQL target: the first
// admin is made on the setup page with the code `writ serve` left on the host, an approver is
// added, ownership rules imported and the target synced, a finding sent by hand; the approver
// signs in with the token the console showed, approves, and sees the change applied and
// verified. No CLI. Exits non-zero naming the step when anything fails; prints `CASE=<id>`
// and `ROOT=<the admin's token>`.
//
// Env: WRIT_URL, SETUP_CODE, TARGET (the [[targets]] name), SYSTEM (its system), ROLE (the
// target's role the finding is about), SHOTS (a directory), CHROMIUM (the browser).

import { at, check, env, run, waitVerified, watch } from './common.mjs';

const base = env('WRIT_URL');
const shots = env('SHOTS');
const mainText = (page) => page.textContent('main');
// Waits until the page reached after a form says `expected` in its outcome line.
const outcome = async (page, expected) => {
  try {
    await page.waitForFunction(
      (text) => document.querySelector('#outcome')?.textContent.includes(text),
      expected,
      { timeout: 15_000 },
    );
  } catch (error) {
    check(false, `no "${expected}": ${await mainText(page)}`);
  }
};

await run('first run', async (browser) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page);

  at('the setup page');
  await page.goto(`${base}/`);
  check(page.url().endsWith('/setup'), `an empty installation did not lead to /setup: ${page.url()}`);
  await page.screenshot({ path: `${shots}/06-setup.png`, fullPage: true });
  await page.fill('#code', env('SETUP_CODE'));
  await page.fill('#name', 'root');
  await page.fill('#team', 'security');
  await page.check('#role-source');
  await page.selectOption('#trust', 'high');
  await page.click('#setup');
  await page.waitForSelector('#new-token');
  const rootToken = (await page.textContent('#new-token')).trim();
  await page.click('#continue');
  await page.waitForURL(`${base}/`);
  check((await mainText(page)).includes('Signed in as root'), 'the first admin is not signed in');

  at('an approver');
  await page.click('#to-principals');
  await page.fill('#name', 'omar');
  await page.fill('#team', 'data');
  await page.check('#role-approver');
  await page.click('#add-principal');
  await page.waitForSelector('#new-token');
  const omarToken = (await page.textContent('#new-token')).trim();
  check(omarToken.length > 20, `no token shown: ${omarToken}`);
  await page.goto(`${base}/principals`);
  await page.screenshot({ path: `${shots}/07-principals.png`, fullPage: true });

  at('ownership and sync');
  await page.goto(`${base}/`);
  await page.click('#to-systems');
  await page.fill('#rules-text', `pattern,owner_team,criticality\n${env('SYSTEM')}/${env('ROLE')},data,medium\n`);
  await page.click('#import-rules');
  await outcome(page, 'Imported owners.csv');
  await page.click(`#sync-${env('TARGET')}`);
  await outcome(page, `Synced ${env('TARGET')}`);
  await page.screenshot({ path: `${shots}/08-systems.png`, fullPage: true });

  at('a finding');
  await page.goto(`${base}/`);
  await page.click('#to-findings');
  await page.fill(
    '#findings',
    JSON.stringify({
      finding_type: 'inactive_service_account',
      severity: 'medium',
      confidence: 0.95,
      subject: { system: env('SYSTEM'), external_id: env('ROLE') },
      title: 'no login for 200 days',
    }),
  );
  await page.click('#send-findings');
  await outcome(page, '1 recorded');
  const href = await page.getAttribute('main table a[href^="/cases/"]', 'href');
  const caseId = href.replace('/cases/', '');
  await page.screenshot({ path: `${shots}/09-findings.png`, fullPage: true });

  at('sign out');
  await page.click('button:has-text("Sign out")');
  await page.waitForURL(`${base}/login`);

  at('the approver approves');
  await page.fill('#token', omarToken);
  await page.click('button[type="submit"]');
  await page.waitForURL(`${base}/`);
  await page.locator(`a[href="/cases/${caseId}"]`).first().click();
  await page.waitForSelector('#approve');
  await page.fill('#rationale', 'the old ETL is gone');
  await page.click('#approve');
  await page.waitForURL(`${base}/cases/${caseId}`);
  at('verified');
  await waitVerified(page);
  console.log(`CASE=${caseId}`);
  console.log(`ROOT=${rootToken}`);
});
