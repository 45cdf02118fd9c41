// What the browser scripts share: the environment, the browser, the step-naming check, a
// watch for Content-Security-Policy violations, and the wait for a change to be verified.

import { chromium } from 'playwright-core';

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

let step = 'start';
export const at = (name) => {
  step = name;
};
export const check = (ok, what) => {
  if (!ok) throw new Error(`${step}: ${what}`);
};

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });

export const violations = [];
export const watch = (page) => {
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/.test(message.text())) violations.push(message.text());
  });
  page.on('pageerror', (error) => violations.push(String(error)));
};

// Waits, without reloading by hand, until the case page shows `remediated` with its
// verification: while the change is applied the page polls its state (htmx) and reloads
// itself when it moves.
export const waitVerified = async (page) => {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await page.waitForFunction(
        () => document.querySelector('#case-state')?.textContent.trim() === 'remediated',
        null,
        { timeout: 5_000 },
      );
      break;
    } catch (error) {
      // The page reloading itself under the wait, or not there yet: look again.
      check(Date.now() < deadline, `the change was never verified (${error})`);
    }
  }
  await page.waitForLoadState('load');
  check((await page.textContent('main')).includes('write_back_verified'), 'no verification on the page');
};

// Runs `body` with a browser; exits non-zero naming the step when anything fails.
export const run = async (name, body) => {
  const browser = await launch();
  try {
    await body(browser);
    at('content security policy');
    check(violations.length === 0, `the browser reported: ${violations.join(' | ')}`);
    console.log(`${name}: every step passed`);
  } catch (error) {
    console.error(String(error));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
};
