// The reviewer console in a real headless Chromium (Debian `chromium`, driven by
// playwright-core), run by crates/writ/tests/browser.rs against a real `writ serve` and a real
// OpenID Connect provider (oidc-provider). Exits non-zero, naming the step, when anything
// fails; saves a screenshot of each page it reaches in $SHOTS.
//
// Env: WRIT_URL, CASE (the case the approver approves), OTHER_CASE (a case of the same team
// that the second reviewer may not decide), APPROVER (the login the provider signs in),
// OTHER_TOKEN (the second reviewer's API token), SHOTS (a directory), CHROMIUM (the browser).

import { at, check, env, run, waitVerified, watch } from './common.mjs';

const base = env('WRIT_URL');
const shots = env('SHOTS');

await run('console', async (browser) => {
  // 1. An approver signs in through the identity provider.
  at('sign-in with OIDC');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page);
  await page.goto(`${base}/`);
  check(page.url().endsWith('/login'), `not sent to /login: ${page.url()}`);
  await page.screenshot({ path: `${shots}/01-login.png` });
  await page.getByRole('link', { name: 'Sign in with single sign-on' }).click();
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', env('APPROVER'));
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');
  // The provider asks for consent once.
  await page.waitForLoadState('load');
  if (!page.url().startsWith(base)) {
    await page.click('button[type="submit"]');
  }
  await page.waitForURL(`${base}/`);
  check((await page.textContent('main')).includes(`Signed in as ${env('APPROVER')}`), 'not signed in');

  // 2. The approval is due for them; they approve it on the case page.
  at('queue');
  const caseLink = page.locator(`a[href="/cases/${env('CASE')}"]`).first();
  check((await caseLink.count()) === 1, 'the case is not in the queue');
  await page.screenshot({ path: `${shots}/02-queues.png`, fullPage: true });
  at('approve');
  await caseLink.click();
  await page.waitForSelector('#approve');
  await page.fill('#rationale', 'unused for 200 days; the team confirmed it can go');
  await page.screenshot({ path: `${shots}/03-case.png`, fullPage: true });
  await page.click('#approve');
  await page.waitForURL(`${base}/cases/${env('CASE')}`);
  at('verified');
  await waitVerified(page);
  await page.screenshot({ path: `${shots}/04-verified.png`, fullPage: true });
  at('dashboard');
  await page.goto(`${base}/dashboard`);
  check((await page.locator('svg.chart').count()) >= 2, 'no charts');
  await page.screenshot({ path: `${shots}/05-dashboard.png`, fullPage: true });

  // 3. A reviewer of another team (signed in with a token) is offered no approval, and a
  // vote forced through, or a form without its CSRF token, is refused.
  at('other team');
  const other = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const otherPage = await other.newPage();
  watch(otherPage);
  await otherPage.goto(`${base}/login`);
  await otherPage.fill('#token', env('OTHER_TOKEN'));
  await otherPage.click('button[type="submit"]');
  await otherPage.waitForURL(`${base}/`);
  await otherPage.goto(`${base}/cases/${env('OTHER_CASE')}`);
  check((await otherPage.locator('#approve').count()) === 0, 'an approve button is offered');
  const csrf = await otherPage.getAttribute('input[name="csrf"]', 'value');
  const forged = await other.request.post(`${base}/cases/${env('OTHER_CASE')}/vote`, {
    form: { csrf, verdict: 'approve', rationale: 'forged' },
    maxRedirects: 0,
  });
  check(forged.status() === 403, `a forged vote answered ${forged.status()}`);
  const noToken = await other.request.post(`${base}/cases/${env('OTHER_CASE')}/vote`, {
    form: { verdict: 'approve', rationale: 'no token' },
    maxRedirects: 0,
  });
  check(noToken.status() === 403, `a vote without its CSRF token answered ${noToken.status()}`);
});
