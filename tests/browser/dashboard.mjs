// tests/browser/dashboard.mjs: the dashboard in a real browser, as a new user uses it.
//
//   node dashboard.mjs URL OUT_DIR SECRET
//
// Debian's headless Chromium (/usr/bin/chromium), driven by playwright-core, loads the page a
// running daemon serves at URL and checks, step by step, what a person sees: the table shows
// the deals the API returned to the page (same ASINs, same order, the same count); the page
// carries no SECRET (the API key); a filter applied through the form narrows the table to what
// the API answers for it, and a bad one shows the API's message; a row opens the detail panel
// with the reasons and the history; "Ignore" there makes the deal leave the table; a new deal
// arriving on the event stream raises the banner (the harness makes one when the script says
// its page is live); the engine panel draws its chart; the page
// works at phone width. Screenshots go to OUT_DIR (web-dashboard.png, web-dashboard-phone.png)
// on every run, failed or not. A console error or an uncaught exception fails the run (a
// Content-Security-Policy violation is one). Exit 0 when every step passed.
import { chromium } from 'playwright-core';

const [url, outDir, secret] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node dashboard.mjs URL OUT_DIR SECRET');
  process.exit(2);
}
const CHROMIUM = process.env.KD_CHROMIUM || '/usr/bin/chromium';
// The flags this machine needs: no sandbox as root, and no background connections to a
// network that is not there.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage'];

const problems = [];
let step = 'start';
const say = (text) => console.log('  ' + text);
function check(ok, what) {
  if (!ok) throw new Error(step + ': ' + what);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
page.on('pageerror', (e) => problems.push('page error: ' + e.message));

const isDeals = (r) => new URL(r.url()).pathname === '/api/v1/deals' && r.request().method() === 'GET';
const rowAsins = () => page.$$eval('#deals-body tr', (trs) => trs.map((t) => t.dataset.asin));
let code = 0;
try {
  step = 'load';
  const first = page.waitForResponse(isDeals);
  await page.goto(url);
  const doc = await (await first).json();
  await page.waitForSelector('#deals-body tr');
  const asins = await rowAsins();
  check(doc.deals.length > 0, 'the API returned no deal to the page');
  check(JSON.stringify(asins) === JSON.stringify(doc.deals.map((d) => d.asin)),
    'the table rows ' + asins.slice(0, 5) + ' are not the deals the API returned ' +
    doc.deals.slice(0, 5).map((d) => d.asin));
  const countText = await page.textContent('#count');
  check(countText.startsWith(String(doc.matched)), 'the count says "' + countText + '", the API ' + doc.matched);
  const title0 = await page.textContent('#deals-body tr:first-child td.title');
  check(title0.includes(doc.deals[0].title.slice(0, 20)), 'the first row does not show its title');
  check(!secret || !(await page.content()).includes(secret), 'the page holds the API key');
  say('the table shows the ' + asins.length + ' deals the API returned (' + doc.matched + ' match)');

  step = 'filter';
  const rois = doc.deals.map((d) => d.roi_bp).filter((v) => v !== null).sort((a, b) => b - a);
  const minRoi = Math.floor(rois[Math.min(4, rois.length - 1)] / 100);
  await page.click('#filters-toggle');
  await page.fill('input[name="min_roi"]', String(minRoi));
  let next = page.waitForResponse((r) => isDeals(r) && r.url().includes('min_roi=' + minRoi));
  await page.click('#apply');
  const filtered = await (await next).json();
  await page.waitForFunction((n) => document.querySelectorAll('#deals-body tr').length === n,
    filtered.deals.length);
  const fasins = await rowAsins();
  check(JSON.stringify(fasins) === JSON.stringify(filtered.deals.map((d) => d.asin)),
    'the filtered table is not what the API answered');
  check(filtered.deals.every((d) => d.roi_bp >= minRoi * 100), 'a row below the minimum ROI');
  check(filtered.matched < doc.matched || doc.matched <= 5, 'the filter did not narrow the view');
  check((await page.evaluate(() => location.hash)).includes('min_roi=' + minRoi),
    'the filter is not in the address');
  say('min ROI ' + minRoi + ' %: ' + filtered.matched + ' of ' + doc.matched + ' deals, as the API answers');
  await page.fill('input[name="max_rank"]', 'lots');
  next = page.waitForResponse((r) => isDeals(r) && r.url().includes('max_rank=lots'));
  await page.click('#apply');
  check((await next).status() === 400, 'a bad filter was not a 400');
  await page.waitForSelector('#filter-error:not([hidden])');
  const err = await page.textContent('#filter-error');
  check(err.includes('max_rank'), 'the error does not name the filter: ' + err);
  say('a bad filter shows the API\'s message: ' + err);
  problems.splice(0, problems.length, ...problems.filter((p) => !p.includes('400')));
  next = page.waitForResponse(isDeals);
  await page.click('#reset');
  await next;
  await page.waitForSelector('#deals-body tr');

  step = 'preset';
  const views = await page.evaluate(async () => (await (await fetch('/api/v1/views')).json()).views);
  if (views.length) {
    const name = views[0].name;
    next = page.waitForResponse((r) => isDeals(r) && r.url().includes('view=' + name));
    await page.selectOption('#preset', 'view=' + name);
    const viewed = await (await next).json();
    await page.waitForFunction((n) => document.querySelectorAll('#deals-body tr').length === n,
      viewed.deals.length);
    check(JSON.stringify(await rowAsins()) === JSON.stringify(viewed.deals.map((d) => d.asin)),
      'the preset\'s table is not what the API answered');
    say('the config\'s view "' + name + '" from the preset list: ' + viewed.matched + ' deals');
    next = page.waitForResponse(isDeals);
    await page.click('#reset');
    await next;
    await page.waitForSelector('#deals-body tr');
  }

  step = 'detail';
  const target = (await rowAsins())[0];
  const detailResp = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/deals/' + target);
  await page.click('#deals-body tr:first-child td.title');
  const detail = await (await detailResp).json();
  await page.waitForSelector('#detail:not([hidden])');
  check((await page.textContent('#detail-title')) === (detail.deal.title || target), 'the panel title');
  const reasons = await page.$$eval('#detail .reason', (r) => r.map((x) => x.textContent));
  check(reasons.length === detail.deal.reasons.length && reasons.length >= 5, 'the reasons are missing');
  check(reasons.some((r) => r.startsWith('ROI')), 'no ROI reason with its margin');
  const panel = await page.textContent('#detail-body');
  for (const word of ['Referral fee', 'FBA fee', 'Landed cost', 'Max cost', 'History'])
    check(panel.includes(word), 'the panel does not show ' + word);
  check(await page.$('#detail a[href^="https://www.amazon."]') !== null, 'no Amazon link');
  check(await page.$('#detail a[href^="https://keepa.com/"]') !== null, 'no Keepa link');
  await page.screenshot({ path: outDir + '/web-dashboard.png' });
  say('the detail panel of ' + target + ' explains it: ' + reasons.find((r) => r.startsWith('ROI')));

  step = 'mark';
  const markResp = page.waitForResponse((r) => r.url().endsWith('/api/v1/deals/' + target + '/mark'));
  const reload = page.waitForResponse(isDeals);
  await page.click('#detail .mark-ignore');
  check((await markResp).status() === 200, 'the mark was not saved');
  await reload;
  await page.waitForFunction((a) => !document.querySelector('#deals-body tr[data-asin="' + a + '"]'), target);
  check(await page.isHidden('#detail'), 'the panel stayed open');
  const after = await page.evaluate(async (a) => (await (await fetch('/api/v1/deals/' + a)).json()).deal.mark, target);
  check(after === 'ignored', 'the store says ' + after);
  say('marked ' + target + ' ignored: it left the table');

  step = 'live';
  await page.waitForSelector('#live.on', { timeout: 20000 });
  // The test harness makes the new deal when it reads this line (test_web_browser.c).
  say('the page is live: waiting for a new deal');
  await page.waitForFunction(() => {
    const b = document.getElementById('banner');
    return !b.hidden && /new deal/.test(document.getElementById('banner-text').textContent);
  }, null, { timeout: 150000, polling: 500 });
  const banner = await page.textContent('#banner-text');
  await page.screenshot({ path: outDir + '/web-dashboard.png' });
  // Deals keep arriving once the harness lifted its limit, and one arriving after Show raises
  // the banner again: what Show must do is hide it, so the page records that it did.
  await page.evaluate(() => {
    const b = document.getElementById('banner');
    window.bannerHidden = false;
    new MutationObserver(() => { if (b.hidden) window.bannerHidden = true; })
      .observe(b, { attributes: true, attributeFilter: ['hidden'] });
  });
  next = page.waitForResponse(isDeals);
  await page.click('#banner-show');
  await next;
  const hid = await page.waitForFunction(() => window.bannerHidden, null, { timeout: 10000 })
    .then(() => true, () => false);
  check(hid, 'the banner stayed after Show');
  say('a new deal arrived live: "' + banner + '"');

  step = 'engine';
  await page.click('#engine-toggle');
  await page.waitForSelector('#engine:not([hidden]) dd');
  const figures = await page.textContent('#engine-figures');
  for (const word of ['Token balance', 'Refill', 'Spent per hour', '429 answers', 'Deals per hour',
    'Deals vanish', 'Peeks hold', 'Not peeked', 'Re-check every'])
    check(figures.includes(word), 'the engine panel lacks ' + word);
  // The chart needs two samples (one every 10 s): it is drawn once the second one arrives,
  // and only then names the span it covers (before, it says it is collecting).
  const painted = await page.waitForFunction(() => {
    if (document.getElementById('chart-span').textContent === '') return false;
    const c = document.getElementById('chart');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
    return n > 100;
  }, null, { timeout: 30000, polling: 500 }).then(() => true, () => false);
  check(painted, 'the chart is empty');
  await page.screenshot({ path: outDir + '/web-dashboard.png' });
  say('the engine panel: ' + figures.replace(/\s+/g, ' ').slice(0, 160));

  step = 'phone';
  await page.click('#engine-toggle');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const phone = await page.evaluate(() => ({
    rows: document.querySelectorAll('#deals-body tr').length,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
    roi: [...document.querySelectorAll('#deals-head th')].some((t) => t.textContent === 'ROI' && t.offsetWidth > 0),
  }));
  check(phone.rows > 0, 'no row at phone width');
  check(!phone.overflow, 'the page is wider than a phone (only the table may scroll)');
  await page.screenshot({ path: outDir + '/web-dashboard-phone.png' });
  await page.click('#deals-body tr:first-child td.title');
  await page.waitForSelector('#detail:not([hidden])');
  const w = await page.$eval('#detail', (e) => e.getBoundingClientRect().width);
  check(w >= 380, 'the detail panel does not take the phone\'s width');
  say('at phone width: ' + phone.rows + ' rows, the page does not overflow, the panel is full width');

  check(problems.length === 0, 'the browser reported: ' + problems.join(' | '));
} catch (e) {
  console.error('FAIL ' + e.message);
  if (problems.length) console.error('  the browser reported: ' + problems.join(' | '));
  code = 1;
  await page.screenshot({ path: outDir + '/web-dashboard.png' }).catch(() => {});
}
await browser.close();
process.exit(code);
