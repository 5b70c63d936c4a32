// Postel web inbox: plain ES module, no dependencies, no build step.
//
// The one security rule of this file: message data (addresses, subjects,
// headers, bodies, file names) only ever reaches the page as text, through
// textContent, append(string) or setAttribute. Never innerHTML. A message's
// HTML body is shown only inside an <iframe sandbox=""> that the server fills
// (with its own strict CSP), so neither the page nor the message's HTML can
// run a script with this origin's rights.
//
// Routing uses the location hash (#/ is the list, #/m/ID a message), so
// opening a message never reloads the page and the browser's Back button
// works on a phone.

// Relative, so that the inbox also works behind a reverse proxy under a sub-path.
const API = 'api/v1/';
const PAGE_SIZE = 50;
const MAX_LIMIT = 500; // the server's largest page
const SEARCH_DEBOUNCE_MS = 250;
const STATUS_EVERY_MS = 30_000;
// The width below which list and message are shown one at a time; keep in step with style.css.
const NARROW = window.matchMedia('(max-width: 799px)');

const $ = (id) => document.getElementById(id);

// el('a', {href: x, class: 'y'}, 'text', child) builds a node. Strings become
// text nodes (append() never parses HTML), which is what keeps this page safe.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// ---------------------------------------------------------------- API ---

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const res = await fetch(API + path, { headers: { Accept: 'application/json' }, ...options });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body && body.error) message = body.error;
    } catch { /* not JSON: keep the status line */ }
    throw new ApiError(res.status, message);
  }
  if (res.status === 204) return null;
  return (res.headers.get('content-type') || '').includes('json') ? res.json() : res.text();
}

const messageUrl = (id, rest = '') => API + 'messages/' + encodeURIComponent(id) + rest;

// --------------------------------------------------------- formatting ---

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// The list shows the time for today's mail, the day for this year's, else the date.
function shortTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return timeFmt.format(d);
  if (d.getFullYear() === now.getFullYear()) return dayFmt.format(d);
  return dateFmt.format(d);
}

function fullTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso ?? '') : fullFmt.format(d);
}

function size(bytes) {
  if (!Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let n = bytes / 1024;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function duration(secs) {
  if (!Number.isFinite(secs)) return '';
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  return `${Math.floor(secs / 86400)}d ${Math.floor((secs % 86400) / 3600)}h`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
// The null reverse-path (bounces) is "" in the API.
const sender = (from) => (from ? from : '<>');

// ------------------------------------------------------------ errors ---

let errorTimer = 0;
function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

// -------------------------------------------------------------- list ---

const list = {
  q: '',
  items: new Map(), // id -> <li>, in the order shown (insertion order is kept in sync by the code below)
  total: 0,
  seq: 0, // bumped by each list query; an answer to an older query is dropped
};

function listItem(m) {
  const to = Array.isArray(m.to) ? m.to : [];
  const li = el('li', { 'data-id': m.id },
    el('a', { href: '#/m/' + encodeURIComponent(m.id), class: 'item' },
      el('span', { class: 'from', title: sender(m.from) }, sender(m.from)),
      el('time', { class: 'time', datetime: m.received_at, title: fullTime(m.received_at) }, shortTime(m.received_at)),
      el('span', { class: m.subject ? 'subj' : 'subj none' }, m.subject || '(no subject)'),
      el('span', { class: 'size' }, size(m.size)),
      el('span', { class: 'to', title: to.join(', ') }, 'To: ' + (to.join(', ') || '—')),
      checkBadges(m.checks),
    ));
  if (m.id === current.id) li.classList.add('selected');
  return li;
}

// One badge per mail authentication check (SPF, DKIM, DMARC, ARC), and one for
// the DMARC quarantine flag; nothing for mail that was not checked.
function checkBadges(checks) {
  if (!checks || typeof checks !== 'object') return null;
  const kind = (r) => (r === 'pass' ? 'pass' : r === 'fail' || r === 'softfail' || r === 'permerror' ? 'fail' : 'other');
  const badges = ['spf', 'dkim', 'dmarc', 'arc'].map((k) =>
    el('span', { class: 'badge ' + kind(checks[k]), title: `${k.toUpperCase()}: ${checks[k] ?? 'none'}` },
      `${k.toUpperCase()} ${checks[k] ?? 'none'}`));
  if (checks.quarantine) badges.push(el('span', { class: 'badge fail', title: 'DMARC asks for quarantine' }, 'Quarantine'));
  return el('span', { class: 'checks' }, badges);
}

function renderCount() {
  const shown = list.items.size;
  const count = $('count');
  if (list.q) count.textContent = `${shown} of ${list.total} matching`;
  else count.textContent = shown === list.total ? plural(list.total, 'message') : `${shown} of ${plural(list.total, 'message')}`;
  $('empty').hidden = shown > 0;
  $('empty').textContent = list.q ? 'No message matches this search.' : 'No messages yet. Send one over SMTP; it shows up here at once.';
  $('load-more').hidden = shown >= list.total;
}

function clearList() {
  list.items.clear();
  $('messages').replaceChildren();
}

// Loads the first page again (keeping as many messages as are shown now),
// or, with append, the next page.
async function loadList({ append = false } = {}) {
  const seq = ++list.seq;
  const offset = append ? list.items.size : 0;
  const limit = append ? PAGE_SIZE : Math.min(MAX_LIMIT, Math.max(PAGE_SIZE, list.items.size));
  const params = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (list.q) params.set('q', list.q);
  document.body.classList.add('busy');
  $('load-more').disabled = true;
  try {
    const page = await api('messages?' + params);
    if (seq !== list.seq) return; // a newer search or reload has been sent since
    if (!append) clearList();
    const ul = $('messages');
    for (const m of page.messages) {
      if (list.items.has(m.id)) continue; // pages can overlap when mail arrives in between
      const li = listItem(m);
      list.items.set(m.id, li);
      ul.append(li);
    }
    list.total = page.total;
    renderCount();
  } catch (e) {
    if (seq === list.seq) showError(`Could not load the messages: ${e.message}`);
  } finally {
    if (seq === list.seq) {
      document.body.classList.remove('busy');
      $('load-more').disabled = false;
    }
  }
}

// Several events in a burst cause one reload.
let reloadTimer = 0;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadList(), 300);
}

function removeItem(id) {
  const li = list.items.get(id);
  if (!li) return false;
  li.remove();
  list.items.delete(id);
  list.total = Math.max(0, list.total - 1);
  return true;
}

function selectItem(id) {
  for (const li of $('messages').querySelectorAll('li.selected')) li.classList.remove('selected');
  const li = id && list.items.get(id);
  if (li) li.classList.add('selected');
}

// ------------------------------------------------------- live events ---

function onNewMessage(m) {
  statusSoon();
  if (list.items.has(m.id)) return;
  // Whether a message matches a search is the server's to say (it may match
  // on more than what the page sees), so with a search we ask again.
  if (list.q) { reloadSoon(); return; }
  const li = listItem(m);
  li.classList.add('fresh');
  const rest = [...list.items];
  list.items = new Map([[m.id, li], ...rest]);
  $('messages').prepend(li);
  list.total += 1;
  renderCount();
}

function onDeleted(d) {
  statusSoon();
  if (d.all) {
    clearList();
    list.total = 0;
    renderCount();
    if (current.id) markGone();
    return;
  }
  if (!removeItem(d.id) && list.items.size < list.total) {
    // Not shown, but it may have been on a page not loaded yet: count again.
    reloadSoon();
  }
  renderCount();
  if (d.id === current.id) markGone();
}

let events = null;
function connectEvents() {
  const live = $('live');
  const setLive = (on, title) => {
    live.className = on ? 'live on' : 'live off';
    live.textContent = on ? 'live' : 'offline';
    live.title = 'Live updates: ' + title;
  };
  let missed = false;
  events = new EventSource(API + 'events');
  events.addEventListener('open', () => {
    setLive(true, 'connected');
    // Events sent while we were cut off are lost: catch up.
    if (missed) { missed = false; loadList(); refreshStatus(); }
  });
  events.addEventListener('error', () => {
    missed = true;
    setLive(false, 'reconnecting');
    // EventSource retries by itself, except after an HTTP error (401, 5xx):
    // then it closes for good, and we start a new one a little later.
    if (events.readyState === EventSource.CLOSED) {
      events = null;
      setTimeout(connectEvents, 5000);
    }
  });
  events.addEventListener('message', (ev) => {
    try { onNewMessage(JSON.parse(ev.data)); } catch (e) { console.error('bad message event', e); }
  });
  events.addEventListener('deleted', (ev) => {
    try { onDeleted(JSON.parse(ev.data)); } catch (e) { console.error('bad deleted event', e); }
  });
  // The server fell behind on this stream and dropped events: reload.
  events.addEventListener('resync', () => { loadList(); refreshStatus(); });
}

// ------------------------------------------------------------ status ---

// Release targets from the status: the Release button shows only if any.
let releaseTargets = [];

async function releaseCurrent() {
  const m = current.message;
  if (!m || releaseTargets.length === 0) return;
  let target = releaseTargets[0];
  if (releaseTargets.length > 1) {
    target = prompt(`Release to which target? (${releaseTargets.join(', ')})`, target);
    if (!target) return;
  }
  const given = prompt(`Release to ${target}, for these recipients (comma-separated):`, (m.to || []).join(', '));
  if (!given) return;
  const to = given.split(',').map((a) => a.trim()).filter((a) => a);
  try {
    const r = await api(messageUrl(m.id, '/release').slice(API.length), {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({ target, to }),
    });
    alert(r.results.map((x) => `<${x.recipient}>: ${x.reply}`).join('\n'));
  } catch (e) {
    showError(`Could not release: ${e.message}`);
  }
}

async function refreshStatus() {
  try {
    const s = await api('status');
    releaseTargets = Array.isArray(s.release_targets) ? s.release_targets : [];
    $('release').hidden = releaseTargets.length === 0;
    $('status').textContent = [
      `Postel ${s.version}`,
      `${plural(s.messages, 'message')} stored (${size(s.bytes)})`,
      `SMTP sessions: ${s.sessions_open} open, ${s.sessions_total} since start`,
      `up ${duration(s.uptime_secs)}`,
    ].join(' · ');
  } catch (e) {
    $('status').textContent = `Status unavailable: ${e.message}`;
  }
}

let statusTimer = 0;
function statusSoon() {
  clearTimeout(statusTimer);
  statusTimer = setTimeout(refreshStatus, 500);
}

// ------------------------------------------------------ message view ---

const current = {
  id: null,
  message: null,
  seq: 0, // bumped per opened message; an answer for an older one is dropped
  rawLoaded: false,
  listScroll: 0,
};

const TABS = ['html', 'text', 'headers', 'raw', 'attachments'];
const ENVELOPE_KEY = 'postel.envelope';

function header(m, name) {
  const h = (m.headers || []).filter((x) => x.name.toLowerCase() === name.toLowerCase());
  return h.length ? h.map((x) => x.value).join(', ') : null;
}

function fieldRows(dl, rows) {
  dl.replaceChildren();
  for (const [name, value, cls] of rows) {
    if (value == null || value === '') continue;
    dl.append(el('dt', {}, name), el('dd', { class: cls || null }, value));
  }
}

function withParams(address, params) {
  const p = Array.isArray(params) && params.length ? ' ' + params.join(' ') : '';
  return `<${address}>${p}`;
}

function renderMessage(m) {
  current.message = m;
  current.rawLoaded = false;
  $('message-gone').hidden = true;
  $('delete').disabled = false;

  $('message-subject').textContent = m.subject || '(no subject)';
  $('message-subject').classList.toggle('none', !m.subject);

  // What the message says about itself (header fields), falling back to the envelope.
  const to = Array.isArray(m.to) ? m.to : [];
  fieldRows($('message-headers'), [
    ['From', header(m, 'From') ?? sender(m.from)],
    ['To', header(m, 'To') ?? to.join(', ')],
    ['Cc', header(m, 'Cc')],
    ['Reply-To', header(m, 'Reply-To')],
    ['Date', header(m, 'Date')],
    ['Received', fullTime(m.received_at)],
  ]);

  // What the SMTP session said, which can differ from the headers (Bcc, lists, forgery).
  const rcptParams = Array.isArray(m.rcpt_params) ? m.rcpt_params : [];
  fieldRows($('envelope-fields'), [
    ['MAIL FROM', withParams(m.from ?? '', m.mail_params), 'mono'],
    ...to.map((r, i) => ['RCPT TO', withParams(r, rcptParams[i]), 'mono']),
    ['Client', m.client, 'mono'],
    ['HELO', m.helo, 'mono'],
    ['Protocol', m.protocol, 'mono'],
    ['TLS', m.tls ?? 'none'],
    ['Authenticated', m.auth_user ?? 'no'],
    ['Checks', checkBadges(m.checks) ?? 'not checked'],
    ['Size', `${size(m.size)} (${m.size} bytes)`],
    ['ID', m.id, 'mono'],
  ]);
  $('envelope-gist').textContent = [
    `${m.protocol || 'SMTP'} from ${m.client || '?'}`,
    m.tls ? 'TLS' : 'no TLS',
    m.auth_user ? `user ${m.auth_user}` : null,
    plural(to.length, 'recipient'),
  ].filter(Boolean).join(' · ');
  // Open or closed as the user last left it; by default open where there is room.
  let saved = null;
  try { saved = localStorage.getItem(ENVELOPE_KEY); } catch { /* storage off */ }
  $('envelope').open = saved ? saved === 'open' : !NARROW.matches;

  // The text part.
  $('text-body').textContent = m.text ?? '';

  // Header fields, in order.
  const tbody = $('headers-table').tBodies[0];
  tbody.replaceChildren(...(m.headers || []).map((h) => el('tr', {}, el('th', { scope: 'row' }, h.name), el('td', {}, h.value))));

  // Raw source: fetched only when its tab is opened.
  $('raw-body').textContent = '';
  const download = $('download-raw');
  download.href = messageUrl(m.id, '/raw');
  download.setAttribute('download', `${m.id}.eml`);

  // Attachments.
  const atts = Array.isArray(m.attachments) ? m.attachments : [];
  $('attachments').replaceChildren(...atts.map((a) => attachmentItem(m.id, a)));

  // The HTML body: an iframe made when its tab is first shown.
  $('panel-html').replaceChildren();

  const has = {
    html: m.html != null,
    text: m.text != null,
    headers: true,
    raw: true,
    attachments: atts.length > 0,
  };
  for (const t of TABS) {
    const tab = $('tab-' + t);
    tab.disabled = !has[t];
    tab.title = has[t] ? '' : `This message has no ${t === 'attachments' ? 'attachments' : t + ' part'}`;
  }
  $('tab-attachments').textContent = atts.length ? `Attachments (${atts.length})` : 'Attachments';

  const note = $('parse-error');
  if (m.parse_error != null) {
    note.textContent = `This message could not be parsed: ${m.parse_error}; its raw source is shown.`;
    note.hidden = false;
    showTab('raw');
  } else {
    note.hidden = true;
    showTab(has.html ? 'html' : has.text ? 'text' : 'raw');
  }
}

function attachmentItem(id, a) {
  const name = a.filename || `attachment-${a.index}`;
  const url = messageUrl(id, `/attachments/${a.index}`);
  const details = [a.content_type, size(a.size)];
  if (a.inline) details.push('inline');
  if (a.content_id) details.push(`cid:${a.content_id}`);
  return el('li', { 'data-index': a.index },
    // Images get a preview; <img> never runs script, whatever the file holds.
    /^image\/(png|jpeg|gif|webp|bmp|avif)$/i.test(a.content_type || '')
      ? el('img', { class: 'thumb', src: url, alt: '', loading: 'lazy' })
      : el('span', { class: 'thumb ext', 'aria-hidden': 'true' }, extension(name)),
    el('span', { class: 'att-text' },
      el('a', { href: url, download: name, class: 'att-name' }, name),
      el('span', { class: 'att-meta' }, details.filter(Boolean).join(' · '))));
}

// "report.pdf" -> "PDF", for the file badge; "file" when there is no extension.
function extension(name) {
  const m = /\.([A-Za-z0-9]{1,4})$/.exec(name);
  return m ? m[1].toUpperCase() : 'FILE';
}

function showTab(name) {
  for (const t of TABS) {
    const selected = t === name;
    $('tab-' + t).setAttribute('aria-selected', String(selected));
    $('tab-' + t).tabIndex = selected ? 0 : -1;
    $('panel-' + t).hidden = !selected;
  }
  const m = current.message;
  if (!m) return;
  if (name === 'html' && !$('html-frame')) {
    // sandbox="" (empty): no scripts, no forms, no popups, and an opaque
    // origin, so the message can neither read this page nor call the API
    // with the user's credentials. The server adds a CSP with "sandbox" too.
    $('panel-html').append(el('iframe', {
      id: 'html-frame',
      sandbox: '',
      src: messageUrl(m.id, '/html'),
      title: 'HTML body of the message',
      referrerpolicy: 'no-referrer',
    }));
  }
  if (name === 'raw' && !current.rawLoaded) loadRaw(m.id);
}

async function loadRaw(id) {
  current.rawLoaded = true;
  const seq = current.seq;
  const pre = $('raw-body');
  pre.textContent = 'Loading…';
  try {
    const text = await api('messages/' + encodeURIComponent(id) + '/raw');
    if (seq === current.seq) pre.textContent = text;
  } catch (e) {
    current.rawLoaded = false;
    if (seq === current.seq) pre.textContent = `Could not load the raw source: ${e.message}`;
  }
}

async function openMessage(id) {
  if (NARROW.matches && !document.body.classList.contains('viewing')) current.listScroll = $('list-pane').scrollTop;
  const seq = ++current.seq;
  current.id = id;
  current.message = null;
  selectItem(id);
  document.body.classList.add('viewing');
  $('placeholder').hidden = true;
  const article = $('message');
  article.hidden = false;
  article.classList.add('loading');
  $('message-pane').scrollTop = 0;
  try {
    const m = await api('messages/' + encodeURIComponent(id));
    if (seq !== current.seq) return;
    renderMessage(m);
    // On a phone the list (and the link just tapped) is gone: start reading at the subject.
    if (NARROW.matches) $('message-subject').focus({ preventScroll: true });
  } catch (e) {
    if (seq !== current.seq) return;
    current.message = null;
    article.hidden = true;
    $('placeholder').hidden = false;
    $('placeholder').textContent = e.status === 404 ? 'This message no longer exists.' : `Could not load the message: ${e.message}`;
  } finally {
    if (seq === current.seq) article.classList.remove('loading');
  }
}

function closeMessage() {
  current.seq++;
  current.id = null;
  current.message = null;
  selectItem(null);
  $('message').hidden = true;
  $('panel-html').replaceChildren(); // drop the iframe
  $('placeholder').hidden = false;
  $('placeholder').textContent = 'Select a message to read it.';
  if (document.body.classList.contains('viewing')) {
    document.body.classList.remove('viewing');
    if (NARROW.matches) $('list-pane').scrollTop = current.listScroll;
  }
}

function markGone() {
  $('message-gone').hidden = false;
  $('delete').disabled = true;
}

// ------------------------------------------------------------ routing ---

let cameFromList = false;

// ------------------------------------------------------------ the queue ---

const QUEUE_EVERY_MS = 5_000;
let queueTimer = 0;

const QUEUE_ACTIONS = [
  ['retry', 'Retry', 'Try now, whatever the schedule says'],
  ['hold', 'Hold', 'Stop trying until released'],
  ['release', 'Release', 'Try held recipients again'],
  ['bounce', 'Bounce', 'Give up, and return the message to its sender'],
  ['delete', 'Delete', 'Give up, without a notice to the sender'],
];

function queueRow(e, firstOfMessage) {
  const actions = el('td', { class: 'actions' });
  if (firstOfMessage) {
    for (const [action, label, title] of QUEUE_ACTIONS) {
      const b = el('button', { type: 'button', title, 'data-action': action }, label);
      if (action === 'bounce' || action === 'delete') b.classList.add('danger');
      b.addEventListener('click', () => queueAct(e.id, action));
      actions.append(b);
    }
  }
  const message = firstOfMessage ? el('a', { href: '#/m/' + encodeURIComponent(e.id) }, e.id) : '';
  return el('tr', { 'data-id': e.id, 'data-state': e.state },
    el('td', {}, message),
    el('td', {}, e.recipient),
    el('td', { class: 'state state-' + e.state }, e.state),
    el('td', { class: 'num' }, String(e.attempts)),
    el('td', {}, e.state === 'delivered' || e.state === 'failed' ? '' : shortTime(e.next_attempt)),
    el('td', { class: 'reply' }, e.last_reply ?? ''),
    actions);
}

async function loadQueue() {
  let rows;
  try {
    rows = await api('queue');
  } catch (err) {
    showError(`Cannot load the queue: ${err.message}`);
    return;
  }
  const body = $('queue-table').querySelector('tbody');
  body.replaceChildren();
  let last = null;
  for (const e of rows) {
    body.append(queueRow(e, e.id !== last));
    last = e.id;
  }
  $('queue-table').hidden = rows.length === 0;
  $('queue-empty').hidden = rows.length !== 0;
  $('queue-count').textContent = rows.length === 1 ? '1 recipient queued' : `${rows.length} recipients queued`;
}

async function queueAct(id, action) {
  if ((action === 'bounce' || action === 'delete') && !confirm(`${action} message ${id}?`)) return;
  try {
    await api(`queue/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
  } catch (err) {
    showError(`Cannot ${action} ${id}: ${err.message}`);
  }
  loadQueue();
}

function showQueue(on) {
  $('queue-view').hidden = !on;
  $('app').hidden = on;
  $('search').hidden = on;
  clearInterval(queueTimer);
  if (on) {
    loadQueue();
    queueTimer = setInterval(loadQueue, QUEUE_EVERY_MS);
  }
}

function route() {
  if (location.hash === '#/queue') {
    showQueue(true);
    return;
  }
  showQueue(false);
  const match = /^#\/m\/(.+)$/.exec(location.hash);
  if (match) {
    const id = decodeURIComponent(match[1]);
    if (id !== current.id || !current.message) openMessage(id);
  } else {
    closeMessage();
  }
}

function backToList() {
  // After list -> message, going back is history.back(), so the phone's own
  // Back button and ours agree; after a deep link there is nothing to go back to.
  if (cameFromList) history.back();
  else location.hash = '#/';
}

// -------------------------------------------------------------- wiring ---

function init() {
  let searchTimer = 0;
  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const q = $('search').value.trim();
      if (q === list.q) return;
      list.q = q;
      clearList(); // a new search starts from its first page
      loadList();
    }, SEARCH_DEBOUNCE_MS);
  });

  $('load-more').addEventListener('click', () => loadList({ append: true }));
  $('queue-refresh').addEventListener('click', loadQueue);

  $('delete-all').addEventListener('click', async () => {
    if (!confirm('Delete all stored messages? This cannot be undone.')) return;
    try {
      await api('messages', { method: 'DELETE' });
      onDeleted({ all: true });
      if (current.id) backToList();
      loadList();
    } catch (e) {
      showError(`Could not delete: ${e.message}`);
    }
  });

  $('release').addEventListener('click', releaseCurrent);
  $('delete').addEventListener('click', async () => {
    const id = current.id;
    if (!id) return;
    $('delete').disabled = true;
    try {
      await api('messages/' + encodeURIComponent(id), { method: 'DELETE' });
    } catch (e) {
      if (e.status !== 404) { // 404: already gone, which is what we wanted
        $('delete').disabled = false;
        showError(`Could not delete: ${e.message}`);
        return;
      }
    }
    removeItem(id);
    renderCount();
    statusSoon();
    backToList();
  });

  $('back').addEventListener('click', backToList);
  $('envelope').addEventListener('toggle', () => {
    try { localStorage.setItem(ENVELOPE_KEY, $('envelope').open ? 'open' : 'closed'); } catch { /* storage off */ }
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && current.id && ev.target !== $('search')) backToList();
  });

  for (const t of TABS) $('tab-' + t).addEventListener('click', () => showTab(t));
  // Arrow keys move between tabs, as in the WAI-ARIA tabs pattern.
  document.querySelector('.tabs').addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    const enabled = TABS.filter((t) => !$('tab-' + t).disabled);
    const at = enabled.findIndex((t) => $('tab-' + t).getAttribute('aria-selected') === 'true');
    const next = enabled[(at + (ev.key === 'ArrowRight' ? 1 : enabled.length - 1)) % enabled.length];
    showTab(next);
    $('tab-' + next).focus();
  });

  window.addEventListener('hashchange', (ev) => {
    cameFromList = /^#\/m\//.test(new URL(ev.newURL).hash) && !/^#\/m\//.test(new URL(ev.oldURL).hash);
    route();
  });

  connectEvents();
  loadList();
  refreshStatus();
  setInterval(refreshStatus, STATUS_EVERY_MS);
  route();
}

init();
