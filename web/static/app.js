// The kdeals dashboard: reads the JSON API (/api/v1) and draws everything from it.
//
// State lives in the URL's hash (the deals query: the view's vocabulary, as the API takes it),
// so a reload or a bookmark shows the same view. Live updates come from the event stream
// (/api/v1/events), read with fetch so that a bearer token can travel in a header. Every piece
// of text from the store goes into the page with textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem('kdeals.token') || '',
  meta: null,          // /api/v1/filters: vocabulary, sorts, currency
  views: [],           // the config's named views
  page: null,          // the last /api/v1/deals answer
  shown: new Set(),    // ASINs in the table
  fresh: new Set(),    // ASINs that became deals since the table was drawn
  pending: { deals: new Set(), changed: new Set(), resync: false },
  samples: [],
  status: null,
  stat: null,
  detail: null,        // ASIN in the detail panel
};

// Presets anyone has; the config's named views ([view.NAME]) are added after them.
const PRESETS = [
  { name: 'All deals', query: '' },
  { name: 'ROI 50 %+', query: 'min_roi=50' },
  { name: 'Fast sellers', query: 'sort=monthly&max_rank=100000' },
  { name: 'No Amazon, few offers', query: 'no_amazon=true&max_offers=5' },
  { name: 'Near misses', query: 'verdict=near' },
  { name: 'Bought and ignored', query: 'marked=true&verdict=all&sort=fresh' },
];

// ---- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ('HTTP ' + status));
    this.status = status;
    this.parameter = body && body.error && body.error.parameter;
  }
}

function headers(extra) {
  const h = Object.assign({ Accept: 'application/json' }, extra || {});
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  return h;
}

async function api(path, opts) {
  const o = Object.assign({ cache: 'no-store' }, opts || {});
  o.headers = headers(o.headers);
  const r = await fetch(path, o);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401) askToken();
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

function askToken() {
  $('auth').hidden = false;
  $('auth-token').focus();
}

// ---- formatting ------------------------------------------------------------------------

function money(cents) {
  if (cents === null || cents === undefined) return '-';
  const m = state.meta;
  const d = m ? m.decimals : 2;
  const v = cents / Math.pow(10, d);
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: m ? m.currency : 'USD',
      minimumFractionDigits: d, maximumFractionDigits: d }).format(v);
  } catch (e) {
    return v.toFixed(d);
  }
}
const pct = (bp) => (bp === null || bp === undefined ? '-' : (bp / 100).toFixed(1) + ' %');
function count(n) {
  if (n === null || n === undefined) return '-';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (n >= 1e4) return Math.round(n / 1e3) + 'k';
  return String(n);
}
function age(ms) {
  if (!ms) return '-';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 90) return Math.round(s) + 's';
  if (s < 5400) return Math.round(s / 60) + 'm';
  if (s < 172800) return Math.round(s / 3600) + 'h';
  return Math.round(s / 86400) + 'd';
}
const COND = { 1: 'New', 2: 'LN', 3: 'VG', 4: 'G', 5: 'A' };

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// A link to Amazon or Keepa, only when the API gave an https address.
function extLink(href, text) {
  if (typeof href !== 'string' || !href.startsWith('https://')) return null;
  return el('a', { href, target: '_blank', rel: 'noopener noreferrer', text,
    onclick: (ev) => ev.stopPropagation() });
}

// ---- the query (the URL's hash) --------------------------------------------------------

function query() {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

function setQuery(q, keepOffset) {
  if (!keepOffset) q.delete('offset');
  for (const [k, v] of [...q.entries()]) if (v === '') q.delete(k);
  const text = q.toString();
  if (location.hash.replace(/^#/, '') === text) loadDeals();
  else location.hash = text;
}

// ---- the table -------------------------------------------------------------------------

// Columns: header, sort key (if the API sorts by it), class, cell.
const COLUMNS = [
  ['', null, 'text', (d) => el('span', { class: 'badge ' + standing(d), text: standing(d),
    title: standingText(d) })],
  ['Product', null, 'text title', (d) => el('span', null, d.title || d.asin,
    el('small', null, d.asin + (d.category_name ? ' \u00b7 ' + d.category_name : ''),
      // On a phone the condition and the Amazon warning ride along here (their columns hide).
      el('span', { class: 'narrow', text: ' \u00b7 ' + (COND[d.buy_condition] || '-') }),
      d.amazon_on_listing ? el('span', { class: 'narrow amz', text: ' AMZ' }) : null))],
  ['Cond', null, 'text wide', (d) => COND[d.buy_condition] || '-'],
  ['AMZ', null, 'text wide', (d) => (d.amazon_on_listing ? el('span', { class: 'amz', text: 'AMZ',
    title: 'Amazon sells it or holds the Buy Box' }) : '')],
  ['Buy', null, '', (d) => money(d.buy_total_cents)],
  ['Sell', null, 'wide', (d) => money(d.sell_cents)],
  ['Profit', 'profit', '', (d) => signed(d.profit_cents, money(d.profit_cents))],
  ['ROI', 'roi', '', (d) => signed(d.roi_bp, pct(d.roi_bp))],
  ['Max cost', null, 'wide', (d) => money(d.max_cost_cents)],
  ['Rank', 'rank', '', (d) => count(d.sales_rank)],
  ['D30', null, 'wide', (d) => count(d.drops30)],
  ['Sold/mo', null, 'wide', (d) => count(d.monthly_sold)],
  ['Offers', null, 'wide', (d) => count(d.competing_offers)],
  ['Monthly', 'monthly', 'wide', (d) => money(d.monthly_profit_cents)],
  ['Seen', 'fresh', 'wide', (d) => age(d.buy_seen_ms)],
  ['Links', null, 'text links', (d) => el('span', null, extLink(d.amazon_url, 'Amazon'),
    extLink(d.keepa_url, 'Keepa'))],
  ['', null, 'text', (d) => el('button', { type: 'button', class: 'ghost mark-ignore',
    title: 'Mark ignored: it leaves the table', text: 'Ignore',
    onclick: (ev) => { ev.stopPropagation(); mark(d.asin, { mark: 'ignored' }); } })],
];

function standing(d) {
  if (d.mark === 'bought') return 'B';
  if (d.mark === 'ignored') return 'I';
  if (d.state === 'deal') return 'D';
  if (d.verdict_near) return 'N';
  return d.state === 'failing' ? 'F' : 'R';
}
function standingText(d) {
  return { B: 'bought', I: 'ignored', D: 'deal', N: 'near a deal', F: 'failing its re-checks',
    R: 'rejected' }[standing(d)];
}
function signed(v, text) {
  return el('span', { class: v === null || v === undefined ? '' : v < 0 ? 'neg' : 'pos', text });
}

function drawHead() {
  const sort = query().get('sort') || 'roi';
  const tr = $('deals-head');
  tr.replaceChildren();
  for (const [name, key, cls] of COLUMNS) {
    const th = el('th', { class: cls + (key ? ' sortable' : '') + (key === sort ? ' sorted' : ''),
      text: name, scope: 'col' });
    if (key) {
      th.title = 'sort by ' + key;
      th.addEventListener('click', () => { const q = query(); q.set('sort', key); setQuery(q); });
    }
    tr.append(th);
  }
}

async function loadDeals() {
  drawHead();
  syncControls();
  const q = query();
  let page;
  try {
    page = await api('/api/v1/deals?' + q.toString());
  } catch (e) {
    showFilterError(e);
    return;
  }
  $('filter-error').hidden = true;
  state.page = page;
  state.pending = { deals: new Set(), changed: new Set(), resync: false };
  $('banner').hidden = true;
  const body = $('deals-body');
  body.replaceChildren();
  state.shown = new Set();
  for (const d of page.deals) {
    state.shown.add(d.asin);
    const tr = el('tr', { 'data-asin': d.asin, tabindex: '0' });
    if (state.fresh.has(d.asin)) tr.classList.add('fresh');
    for (const [, , cls, cell] of COLUMNS) {
      const v = cell(d);
      tr.append(el('td', { class: cls }, typeof v === 'string' ? document.createTextNode(v) : v));
    }
    tr.addEventListener('click', () => openDetail(d.asin));
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') openDetail(d.asin); });
    body.append(tr);
  }
  state.fresh.clear();
  const from = page.count ? page.offset + 1 : 0;
  $('count').textContent = page.matched + (page.matched === 1 ? ' match' : ' matches');
  $('page').textContent = from + '\u2013' + (page.offset + page.count) + ' of ' + page.matched;
  $('prev').disabled = page.offset === 0;
  $('next').disabled = page.offset + page.count >= page.matched;
  $('empty').hidden = page.count > 0;
  $('empty').textContent = 'No deal matches this view yet. New deals appear here as the engine finds them.';
}

function showFilterError(e) {
  const p = $('filter-error');
  p.textContent = e.message;
  p.hidden = false;
  $('filters').hidden = false;
  $('filters-toggle').setAttribute('aria-expanded', 'true');
  if (e.parameter) {
    const input = document.querySelector('[name="' + CSS.escape(e.parameter) + '"]');
    if (input) input.focus();
  }
}

// ---- filters, sorts, presets -----------------------------------------------------------

const NOT_FIELDS = new Set(['sort', 'limit', 'offset']);

function buildControls() {
  const fields = $('filter-fields');
  fields.replaceChildren();
  for (const f of state.meta.filters) {
    if (NOT_FIELDS.has(f.name)) continue;
    if (f.switch) {
      fields.append(el('label', { class: 'switch', title: f.meaning },
        el('input', { type: 'checkbox', name: f.name }), f.name.replace(/_/g, ' ')));
    } else {
      fields.append(el('label', { title: f.meaning }, f.name.replace(/_/g, ' '),
        el('input', { type: 'text', name: f.name, placeholder: f.values, autocomplete: 'off' })));
    }
  }
  const sort = $('sort');
  sort.replaceChildren(...state.meta.sorts.map((s) => el('option', { value: s, text: s })));
  const preset = $('preset');
  preset.replaceChildren(el('option', { value: '', text: 'custom' }),
    ...PRESETS.map((p) => el('option', { value: p.query, text: p.name })),
    ...state.views.map((v) => el('option', { value: 'view=' + encodeURIComponent(v.name),
      text: v.name })));
}

// The controls show the query in the hash.
function syncControls() {
  const q = query();
  for (const input of $('filter-fields').querySelectorAll('input')) {
    const v = q.get(input.name);
    if (input.type === 'checkbox') input.checked = v === 'true' || v === '1' || v === '';
    else input.value = v || '';
    if (input.type === 'checkbox' && !q.has(input.name)) input.checked = false;
  }
  $('sort').value = q.get('sort') || 'roi';
  const rest = new URLSearchParams(q);
  rest.delete('offset');
  const text = rest.toString();
  const match = [...$('preset').options].find((o) => o.value === text);
  $('preset').value = match ? match.value : '';
}

// On a phone the open form hides the table: it folds away once applied.
function foldFiltersOnPhone() {
  if (window.innerWidth <= 700) {
    $('filters').hidden = true;
    $('filters-toggle').setAttribute('aria-expanded', 'false');
  }
}

function applyFilters(ev) {
  if (ev) ev.preventDefault();
  foldFiltersOnPhone();
  const q = new URLSearchParams();
  const keep = query();
  if (keep.get('sort')) q.set('sort', keep.get('sort'));
  if (keep.get('view')) q.set('view', keep.get('view'));
  for (const input of $('filter-fields').querySelectorAll('input')) {
    if (input.type === 'checkbox') { if (input.checked) q.set(input.name, 'true'); }
    else if (input.value.trim() !== '') q.set(input.name, input.value.trim());
  }
  setQuery(q);
}

// ---- the detail panel ------------------------------------------------------------------

async function openDetail(asin) {
  state.detail = asin;
  let doc;
  try {
    doc = await api('/api/v1/deals/' + encodeURIComponent(asin));
  } catch (e) {
    $('detail-title').textContent = asin;
    $('detail-body').replaceChildren(el('p', { class: 'error', text: e.message }));
    $('detail').hidden = false;
    return;
  }
  const d = doc.deal;
  $('detail-title').textContent = d.title || d.asin;
  const rows = (pairs) => el('table', null, ...pairs.filter(Boolean).map(([k, v, cls]) =>
    el('tr', { class: cls || '' }, el('td', { text: k }), el('td', { class: 'num', text: v }))));
  const verdict = d.state === 'deal' ? 'A deal' : d.verdict_near ? 'Near a deal' :
    d.state === 'failing' ? 'No longer a deal (failing its re-checks)' : 'Not a deal';
  const body = [
    el('p', { class: 'links' }, el('span', { text: d.asin + ' \u00b7 ' + (d.category_name || '') }),
      extLink(d.amazon_url, 'Amazon'), extLink(d.offers_url, 'Offers'), extLink(d.keepa_url, 'Keepa')),
    el('p', { class: 'verdict', text: verdict + (d.mark !== 'none' ? ' \u00b7 marked ' + d.mark : '') +
      (d.judged_by_current_rules ? '' : ' \u00b7 judged under other rules than the current ones') }),
    el('h3', { text: 'Why' }),
    el('table', { class: 'reasons' }, ...(d.reasons || []).map((r) =>
      el('tr', { class: 'reason ' + r.state }, el('td', { text: r.text })))),
    el('h3', { text: 'The offer to buy' }),
    rows([
      ['Condition', d.buy_condition_name || '-'],
      ['Price + shipping', money(d.buy_price_cents) + ' + ' + money(d.buy_shipping_cents)],
      ['Seller', (d.buy_seller_id || '-') + (d.buy_is_fba ? ' (FBA)' : '') + (d.buy_is_amazon ? ' (Amazon)' : '')],
      ['Seen', d.buy_seen ? age(d.buy_seen_ms) + ' ago' : '-'],
      ['Max cost (price + shipping)', money(d.max_cost_cents)],
    ]),
    el('h3', { text: 'Money' }),
    rows([
      ['Sell (' + (d.sell_basis || '-') + (d.sell_caps && d.sell_caps.length ? ', capped by ' +
        d.sell_caps.join(', ') : '') + ')', money(d.sell_cents)],
      ['Referral fee' + (d.fee_referral_bp !== null ? ' (' + pct(d.fee_referral_bp) + ')' : ''),
        '\u2212' + money(d.fee_referral_cents)],
      ['Closing fee', '\u2212' + money(d.fee_closing_cents)],
      ['FBA fee' + (d.fee_fba_default ? ' (default)' : ''), '\u2212' + money(d.fee_fba_cents)],
      d.fee_fbm_shipping_cents ? ['Your shipping (FBM)', '\u2212' + money(d.fee_fbm_shipping_cents)] : null,
      ['Payout', money(d.payout_cents)],
      ['Buy total', money(d.buy_total_cents)],
      ['Tax, prep, inbound', money(d.cost_tax_cents) + ', ' + money(d.cost_prep_cents) + ', ' +
        money(d.cost_inbound_cents)],
      ['Landed cost', money(d.landed_cents)],
      ['Profit', money(d.profit_cents), d.profit_cents < 0 ? 'neg' : 'pos'],
      ['ROI / margin', pct(d.roi_bp) + ' / ' + pct(d.margin_bp)],
      ['Expected monthly profit', money(d.monthly_profit_cents)],
    ]),
    el('h3', { text: 'Market' }),
    rows([
      ['Sales rank', count(d.sales_rank)],
      ['Rank drops 30 / 90 / 365 d', [d.drops30, d.drops90, d.drops365].map(count).join(' / ')],
      ['Sold per month (Keepa)', count(d.monthly_sold)],
      ['Competing offers', count(d.competing_offers)],
      ['Amazon on the listing', d.amazon_on_listing ? 'yes' : 'no'],
      ['Buy Box new / used', money(d.new_buy_box_cents) + ' / ' + money(d.used_buy_box_cents)],
    ]),
    el('h3', { text: 'History' }),
    el('table', null, ...doc.history.map((h) => el('tr', null,
      el('td', { text: h.at.replace('T', ' ').slice(0, 16) }),
      el('td', { text: h.checks > 1 ? h.event + ' ×' + h.checks + ' since ' +
        h.first_at.replace('T', ' ').slice(0, 16) : h.event }),
      el('td', { text: h.state }), el('td', { class: 'num', text: money(h.profit_cents) }),
      el('td', { class: 'num', text: pct(h.roi_bp) })))),
    el('h3', { text: 'Mark' }),
    markForm(d),
  ];
  $('detail-body').replaceChildren(...body);
  $('detail').hidden = false;
}

function markForm(d) {
  const cost = el('input', { type: 'text', name: 'cost', inputmode: 'decimal',
    placeholder: money(d.buy_total_cents) });
  const qty = el('input', { type: 'text', name: 'qty', inputmode: 'numeric', placeholder: '1' });
  const bought = () => {
    const m = { mark: 'bought' };
    if (cost.value.trim()) m.cost = cost.value.trim();
    if (qty.value.trim()) m.qty = Number(qty.value.trim());
    mark(d.asin, m);
  };
  return el('div', { class: 'marks' },
    el('label', null, 'your cost', cost), el('label', null, 'units', qty),
    el('button', { type: 'button', class: 'mark-bought', text: 'Bought', onclick: bought }),
    el('button', { type: 'button', class: 'ghost mark-ignore', text: 'Ignore',
      onclick: () => mark(d.asin, { mark: 'ignored' }) }),
    el('button', { type: 'button', class: 'ghost mark-clear', text: 'Clear mark',
      disabled: d.mark === 'none' ? '' : null, onclick: () => mark(d.asin, { mark: 'none' }) }));
}

async function mark(asin, body) {
  try {
    await api('/api/v1/deals/' + encodeURIComponent(asin) + '/mark', {
      method: 'POST', body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json', 'X-Kdeals-Request': '1' } });
  } catch (e) {
    alert('The mark was not saved: ' + e.message);
    return;
  }
  if (state.detail === asin && body.mark !== 'ignored') openDetail(asin);
  else closeDetail();
  loadDeals();
}

function closeDetail() {
  $('detail').hidden = true;
  state.detail = null;
}

// ---- live updates ----------------------------------------------------------------------

function banner() {
  const p = state.pending;
  const parts = [];
  if (p.resync) parts.push('many deals changed');
  if (p.deals.size) parts.push(p.deals.size + (p.deals.size === 1 ? ' new deal' : ' new deals'));
  const n = p.changed.size;
  if (n) parts.push(n + (n === 1 ? ' deal' : ' deals') + ' on this page changed');
  $('banner-text').textContent = parts.join(' \u00b7 ');
  $('banner').hidden = parts.length === 0;
}

function onEvent(name, data) {
  if (name === 'hello') {
    $('live').textContent = 'live';
    $('live').classList.add('on');
  } else if (name === 'deal') {
    state.pending.deals.add(data.asin);
    state.fresh.add(data.asin);
    banner();
  } else if (name === 'change') {
    // A check that found it in the same state is no news (its figures may have moved a little:
    // the row shows them on the next reload); a deal that stopped being one, or a mark, is.
    const news = data.state !== data.prev_state || data.event === 'mark';
    if (news && state.shown.has(data.asin)) { state.pending.changed.add(data.asin); banner(); }
  } else if (name === 'resync') {
    state.pending.resync = true;
    banner();
  } else if (name === 'sample') {
    state.samples.push(data);
    while (state.samples.length > 2160) state.samples.shift();
    refreshEngine();
  }
}

async function stream() {
  for (;;) {
    try {
      const r = await fetch('/api/v1/events', { headers: headers({ Accept: 'text/event-stream' }),
        cache: 'no-store' });
      if (r.status === 401) { askToken(); throw new Error('no token'); }
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) name = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data) {
            try { onEvent(name, JSON.parse(data)); } catch (e) { /* a malformed event is skipped */ }
          }
        }
      }
    } catch (e) { /* reconnect below */ }
    $('live').textContent = 'reconnecting';
    $('live').classList.remove('on');
    await new Promise((res) => setTimeout(res, 3000));
  }
}

// ---- the engine panel ------------------------------------------------------------------

async function loadEngine() {
  try {
    const [status, stat, samples] = await Promise.all([api('/api/v1/status'), api('/api/v1/stat'),
      api('/api/v1/samples')]);
    state.status = status;
    state.stat = stat;
    state.samples = samples.samples;
  } catch (e) {
    state.status = null;
  }
  refreshEngine();
}

// Change of a sample field over the last hour (or the samples there are), per hour.
function perHour(get) {
  const s = state.samples;
  if (s.length < 2) return null;
  const last = s[s.length - 1];
  let first = s[0];
  for (const x of s) if (last.at_ms - x.at_ms <= 3600e3) { first = x; break; }
  const h = (last.at_ms - first.at_ms) / 3600e3;
  return h > 0 ? (get(last) - get(first)) / h : null;
}

// What the spending policy has learned (docs/architecture.md, "Value per token"): how fast
// deals vanish, how far a peek holds, which kinds of candidate are not peeked, how often shown
// deals are re-checked. Keepa minutes.
function valueRows(v) {
  if (!v) return [];
  const min = (m) => (m > 0 ? m + ' min' : '-');
  const pct = (bp) => (bp > 0 ? (bp / 100).toFixed(1) + ' %' : '-');
  return [
    ['Deals vanish', 'half-life ' + min(v.vanish_half_life_min) + ' (rank \u2264 100k ' +
      min(v.vanish_half_life_fast_min) + ', \u2264 1M ' + min(v.vanish_half_life_mid_min) +
      ', beyond ' + min(v.vanish_half_life_slow_min) + ')'],
    ['Peeks hold', 'hit ' + pct(v.peek_hit_bp) + ', profit ' + pct(v.peek_profit_ratio_bp) +
      ' of the peek\'s'],
    ['Not peeked', v.peek_classes_shut > 0
      ? v.peek_classes_shut + ' kinds of candidate (their peeks pass under 1 in 4)' : 'none'],
    ['Re-check every', min(v.recheck_interval_min)],
  ];
}

function refreshEngine() {
  const st = state.status;
  const s = state.samples.length ? state.samples[state.samples.length - 1] : null;
  const t = st && st.tokens;
  // Per-hour figures need two samples (one every 10 s); until then they say so.
  const fmt = (v, d) => (v === null || v === undefined ? 'collecting\u2026' : Number(v).toFixed(d || 0));
  const stored = s && s.deals !== null ? s.deals : st ? st.deals : -1;
  $('summary').textContent = st ? (stored >= 0 ? stored + ' deals stored' : '') +
    (t ? ' \u00b7 ' + (s ? s.tokens : t.projected) + ' tokens' : '') : 'engine not running';
  const c = state.stat && state.stat.counters;
  const spent = ['scanner', 'committer', 'updater'].map((r) =>
    r + ' ' + fmt(perHour((x) => x.spent[r]))).join(', ');
  const pairs = [
    ['Token balance', s ? s.tokens + (t ? ' of ' + t.cap : '') : t ? t.projected : '-'],
    ['Refill', (s ? s.refill_rate : t ? t.refill_rate : '-') + ' / Keepa minute'],
    ['Spent per hour', spent],
    ['429 answers', c ? c.http_429.total + ' (' + fmt(perHour((x) => x.http_429)) + ' / h)' : '-'],
    ['Deals per hour', fmt(perHour((x) => x.committed), 1)],
    ['Deals stored', s && s.deals !== null ? s.deals : st ? st.deals : '-'],
    ...valueRows(state.stat && state.stat.value),
  ];
  const dl = el('dl', { class: 'figures' });
  for (const [k, v] of pairs) dl.append(el('dt', { text: k }), el('dd', { text: String(v) }));
  $('engine-figures').replaceChildren(...dl.childNodes);
  if (st && st.processes) {
    $('procs').replaceChildren(el('tr', null, ...['role', 'pid', 'state', 'restarts', 'last error']
      .map((h) => el('th', { text: h }))), ...st.processes.filter((p) => p.pid > 0 || p.restarts)
      .map((p) => el('tr', null, el('td', { text: p.role }), el('td', { text: String(p.pid) }),
        el('td', { text: p.state }), el('td', { text: String(p.restarts) }),
        el('td', { text: p.last_error }))));
  }
  if (!$('engine').hidden) drawChart();
}

// Token balance (left scale) and deals stored (right scale) over the samples kept.
function drawChart() {
  const cv = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 640;
  const h = cv.clientHeight || 180;
  cv.width = Math.round(w * dpr);
  cv.height = Math.round(h * dpr);
  const g = cv.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const s = state.samples;
  const pad = { l: 44, r: 40, t: 8, b: 18 };
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#5d6670';
  if (s.length < 2) {
    g.fillText('collecting samples (one every ' + (state.samples.every_ms || 10000) / 1000 + ' s)\u2026', pad.l, h / 2);
    $('chart-span').textContent = '';
    return;
  }
  const t0 = s[0].at_ms;
  const t1 = s[s.length - 1].at_ms;
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad.l - pad.r);
  const series = [
    { get: (p) => p.tokens, colour: getComputedStyle(document.body).getPropertyValue('--accent') || '#1d4ed8', axis: 'l' },
    { get: (p) => p.deals, colour: getComputedStyle(document.body).getPropertyValue('--deal') || '#1f6f43', axis: 'r' },
  ];
  for (const se of series) {
    const vals = s.map(se.get).filter((v) => v !== null && v !== undefined);
    if (!vals.length) continue;
    let lo = Math.min(0, ...vals);
    let hi = Math.max(...vals);
    if (hi === lo) hi = lo + 1;
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
    g.strokeStyle = se.colour.trim();
    g.lineWidth = 1.5;
    g.beginPath();
    let started = false;
    for (const p of s) {
      const v = se.get(p);
      if (v === null || v === undefined) continue;
      if (!started) { g.moveTo(x(p.at_ms), y(v)); started = true; } else g.lineTo(x(p.at_ms), y(v));
    }
    g.stroke();
    g.fillStyle = se.colour.trim();
    g.textAlign = se.axis === 'l' ? 'right' : 'left';
    const ax = se.axis === 'l' ? pad.l - 4 : w - pad.r + 4;
    g.fillText(String(Math.round(hi)), ax, pad.t + 8);
    g.fillText(String(Math.round(lo)), ax, h - pad.b);
  }
  g.fillStyle = '#5d6670';
  g.textAlign = 'left';
  const span = (t1 - t0) / 60000;
  g.fillText(new Date(t0).toLocaleTimeString(), pad.l, h - 4);
  g.textAlign = 'right';
  g.fillText(new Date(t1).toLocaleTimeString(), w - pad.r, h - 4);
  $('chart-span').textContent = '\u00b7 the last ' + (span < 1.5 ? 'minute' : span < 90 ?
    Math.round(span) + ' minutes' : (span / 60).toFixed(1) + ' hours');
}

// ---- start -----------------------------------------------------------------------------

async function start() {
  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.token = $('auth-token').value.trim();
    sessionStorage.setItem('kdeals.token', state.token);
    $('auth').hidden = true;
    start2();
  });
  $('filters').addEventListener('submit', applyFilters);
  $('reset').addEventListener('click', () => { foldFiltersOnPhone(); setQuery(new URLSearchParams()); });
  $('filters-toggle').addEventListener('click', () => {
    const f = $('filters');
    f.hidden = !f.hidden;
    $('filters-toggle').setAttribute('aria-expanded', String(!f.hidden));
  });
  $('engine-toggle').addEventListener('click', () => {
    const e = $('engine');
    e.hidden = !e.hidden;
    $('engine-toggle').setAttribute('aria-expanded', String(!e.hidden));
    if (!e.hidden) loadEngine();
  });
  $('sort').addEventListener('change', () => { const q = query(); q.set('sort', $('sort').value); setQuery(q); });
  $('preset').addEventListener('change', () => setQuery(new URLSearchParams($('preset').value)));
  $('prev').addEventListener('click', () => page(-1));
  $('next').addEventListener('click', () => page(1));
  $('banner-show').addEventListener('click', () => loadDeals());
  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeDetail(); });
  window.addEventListener('hashchange', loadDeals);
  window.addEventListener('resize', () => { if (!$('engine').hidden) drawChart(); });
  start2();
}

let started = false;
async function start2() {
  try {
    state.meta = await api('/api/v1/filters');
    state.views = (await api('/api/v1/views')).views || [];
  } catch (e) {
    if (e.status !== 401) $('summary').textContent = 'The API does not answer: ' + e.message;
    return;
  }
  buildControls();
  await loadDeals();
  loadEngine();
  if (!started) {
    started = true;
    stream();
    setInterval(loadEngine, 30000);
  }
}

function page(dir) {
  const p = state.page;
  if (!p) return;
  const q = query();
  q.set('offset', String(Math.max(0, p.offset + dir * p.limit)));
  setQuery(q, true);
}

document.addEventListener('DOMContentLoaded', start);
