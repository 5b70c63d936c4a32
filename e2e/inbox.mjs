#!/usr/bin/env node
// End-to-end test of Postel's web inbox in a real browser (headless Chromium).
//
//   node e2e/inbox.mjs --web http://127.0.0.1:8025 --smtp 2525 [--screenshots DIR]
//
// Mail goes in over SMTP (Python's smtplib, a client Postel did not write),
// and the test watches it come out in the page: live list update, every tab
// of the message view, the attachment download, search, a hostile HTML
// message, delete. Each check prints one line; the run exits 0 only if all
// passed. Needs `npm ci` in e2e/ (playwright-core only; it drives the
// system's /usr/bin/chromium and downloads no browser).
//
// Options:
//   --web URL          the web listener (required)
//   --smtp PORT        the SMTP listener on --smtp-host (required)
//   --smtp-host HOST   default 127.0.0.1
//   --screenshots DIR  also save inbox.png, message.png, inbox-phone.png and message-phone.png there
//   --auth USER:PASS   HTTP Basic credentials, for a web listener that needs a login
//   --chromium PATH    default /usr/bin/chromium
//   --timeout MS       how long one wait may take, default 15000

import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  console.error('playwright-core is missing: run `npm ci` in e2e/ first');
  process.exit(2);
}

// ------------------------------------------------------------- options ---

function parseArgs(argv) {
  const o = { smtpHost: '127.0.0.1', chromium: '/usr/bin/chromium', timeout: 15000 };
  const names = { '--web': 'web', '--smtp': 'smtp', '--smtp-host': 'smtpHost', '--screenshots': 'screenshots', '--auth': 'auth', '--chromium': 'chromium', '--timeout': 'timeout' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const key = names[flag];
    const value = inline ?? argv[++i];
    if (!key || value === undefined) usage(`bad argument: ${argv[i] ?? flag}`);
    o[key] = value;
  }
  if (!o.web || !o.smtp) usage('--web and --smtp are required');
  o.web = o.web.replace(/\/+$/, '');
  o.smtp = Number(o.smtp);
  o.timeout = Number(o.timeout);
  return o;
}

function usage(why) {
  console.error(`${why}\nusage: node e2e/inbox.mjs --web http://127.0.0.1:PORT --smtp PORT [--smtp-host HOST] [--screenshots DIR] [--auth USER:PASS] [--chromium PATH] [--timeout MS]`);
  process.exit(2);
}

const opt = parseArgs(process.argv.slice(2));
const WEB = new URL(opt.web);
// The only hosts the browser may talk to. Anything else (a tracking pixel,
// a remote font) means the message's HTML escaped its CSP.
const LOCAL_HOSTS = new Set(['127.0.0.1', WEB.hostname]);
const T = opt.timeout;
const run = Date.now().toString(36); // makes this run's subjects unique

// The whole run may not hang: a wedged browser or server fails it.
setTimeout(() => {
  console.log('FAIL the run took longer than 5 minutes');
  process.exit(1);
}, 5 * 60_000).unref();

// -------------------------------------------------------------- checks ---

let passed = 0;
let failed = 0;

class Fatal extends Error {}

// Runs one check and prints its line. A fatal check's failure ends the run,
// for the checks after it depend on it (there is no message to open if none arrived).
async function check(name, fn, { fatal = false } = {}) {
  try {
    const detail = await fn();
    passed++;
    console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
    return true;
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${String(e?.message ?? e).split('\n').slice(0, process.env.E2E_VERBOSE ? 30 : 1).join('\n')}`);
    if (fatal) throw new Fatal(name);
    return false;
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

// ------------------------------------------------------------- helpers ---

const authHeader = opt.auth ? { Authorization: 'Basic ' + Buffer.from(opt.auth).toString('base64') } : {};

// The API, from outside the browser: what the server really holds.
async function http(urlPath, init = {}) {
  return fetch(opt.web + urlPath, { ...init, headers: { ...authHeader, ...(init.headers || {}) } });
}
async function apiJson(urlPath) {
  const r = await http(urlPath);
  assert(r.ok, `GET ${urlPath}: ${r.status}`);
  return r.json();
}

// Sends one message with Python's smtplib (the message is built with the
// email package, so the MIME structure is a stock client's, not ours).
const SENDER_PY = String.raw`
import base64, json, smtplib, sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
spec = json.load(sys.stdin)
msg = EmailMessage()
msg['From'] = spec['from']
msg['To'] = ', '.join(spec['to'])
msg['Subject'] = spec['subject']
msg['Date'] = formatdate(localtime=True)
msg['Message-ID'] = make_msgid(domain='postel-e2e.test')
for name, value in spec.get('headers', {}).items():
    msg[name] = value
if spec.get('text') is not None:
    msg.set_content(spec['text'])
if spec.get('html') is not None:
    if spec.get('text') is not None:
        msg.add_alternative(spec['html'], subtype='html')
    else:
        msg.set_content(spec['html'], subtype='html')
    html = msg.get_body(('html',))
    for r in spec.get('related', []):
        # Makes the HTML part multipart/related, with the image beside it.
        maintype, subtype = r['type'].split('/')
        html.add_related(base64.b64decode(r['data']), maintype, subtype, cid='<' + r['cid'] + '>', filename=r.get('filename'))
for a in spec.get('attachments', []):
    maintype, subtype = a['type'].split('/')
    msg.add_attachment(base64.b64decode(a['data']), maintype, subtype, filename=a['filename'])
with smtplib.SMTP(spec['host'], spec['port'], timeout=30) as s:
    s.send_message(msg, from_addr=spec['mail_from'], to_addrs=spec['rcpt_to'])
`;

function sendMail(spec) {
  const full = {
    host: opt.smtpHost,
    port: opt.smtp,
    mail_from: spec.mail_from ?? addrOnly(spec.from),
    rcpt_to: spec.rcpt_to ?? spec.to.map(addrOnly),
    ...spec,
    related: (spec.related || []).map((r) => ({ ...r, data: r.data.toString('base64') })),
    attachments: (spec.attachments || []).map((a) => ({ ...a, data: a.data.toString('base64') })),
  };
  return new Promise((resolve, reject) => {
    const py = spawn('python3', ['-c', SENDER_PY], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    py.stderr.on('data', (d) => { err += d; });
    py.on('error', reject);
    py.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`smtplib failed (${code}): ${err.trim().split('\n').pop()}`))));
    py.stdin.end(JSON.stringify(full));
  });
}

function addrOnly(a) {
  const m = /<([^>]*)>/.exec(a);
  return m ? m[1] : a;
}

// A real PNG, made here: RGB, no filter. pixel(x, y) gives [r, g, b].
function png(width, height, pixel) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const rows = [];
  for (let y = 0; y < height; y++) {
    rows.push(0);
    for (let x = 0; x < width; x++) rows.push(...pixel(x, y));
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// A 64x64 logo: a white envelope on blue.
const LOGO = png(64, 64, (x, y) => {
  const inEnvelope = x >= 10 && x < 54 && y >= 18 && y < 46;
  const flapY = 18 + 16 * (1 - Math.abs(x - 31.5) / 22); // the V of the flap
  if (inEnvelope && Math.abs(y - flapY) < 1.5) return [36, 87, 197];
  return inEnvelope ? [255, 255, 255] : [36, 87, 197];
});

// "PDF" bytes with every byte value in them, so a transfer-encoding mistake shows.
const PDF = Buffer.concat([
  Buffer.from('%PDF-1.4\n% postel e2e attachment\n'),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from('\n%%EOF\n'),
]);

// Waits until the list shows a message whose text includes `text`; returns its <li>.
async function waitListed(page, text) {
  const li = page.locator('#messages li[data-id]', { hasText: text });
  await li.first().waitFor({ timeout: T });
  return li.first();
}

async function openFromList(page, li) {
  const id = await li.getAttribute('data-id');
  await li.locator('a').click();
  await page.waitForFunction((want) => {
    const m = document.getElementById('message');
    return location.hash === '#/m/' + encodeURIComponent(want) && m && !m.hidden && !m.classList.contains('loading');
  }, id, { timeout: T });
  return id;
}

// Polls fn until it returns something truthy, or throws what it last saw.
async function eventually(fn, what) {
  const end = Date.now() + T;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e.message; }
    if (Date.now() > end) throw new Error(`${what}${last !== undefined ? `; last saw: ${JSON.stringify(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// animations: 'disabled' skips the highlight that new list items fade out of.
const shot = (p, name) => p.screenshot({ path: path.join(opt.screenshots, name), animations: 'disabled' });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --------------------------------------------------------------- setup ---

const browser = await chromium.launch({
  executablePath: opt.chromium,
  // The machine has no network: these keep Chromium from trying to reach Google's services.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const httpCredentials = opt.auth ? { username: opt.auth.split(':')[0], password: opt.auth.split(':').slice(1).join(':') } : undefined;
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true, httpCredentials });

// Every request any page or frame makes, and a guard that aborts any to a
// host other than this server's, so a failing CSP shows up here as a
// recorded request without a packet leaving the machine.
// Chromium reports a request that CSP blocked too (it never leaves the
// renderer), then fails it with "csp": those are kept apart.
const requests = [];
const byRequest = new Map();
function watchRequests(ctx) {
  ctx.on('request', (r) => {
    const entry = { url: r.url(), method: r.method(), failure: null };
    byRequest.set(r, entry);
    requests.push(entry);
  });
  ctx.on('requestfailed', (r) => {
    const entry = byRequest.get(r);
    if (entry) entry.failure = r.failure()?.errorText ?? 'failed';
  });
}
const blockedByCsp = (r) => r.failure != null && /^csp$|BLOCKED_BY_CSP/i.test(r.failure);
const isLocal = (u) => !/^https?:$/.test(u.protocol) || LOCAL_HOSTS.has(u.hostname);
watchRequests(context);
await context.route((u) => !isLocal(u), (route) => route.abort('blockedbyclient'));

// Violations of the inbox page's own CSP (an inline style or script in our
// page would be one); the message frame's expected violations are its own.
await context.addInitScript(() => {
  if (window !== window.top) return;
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
  });
});

const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => {
  if (m.type() === 'error' && process.env.E2E_VERBOSE) console.log(`     console: ${m.text()}`);
});

// ---------------------------------------------------------------- test ---

let exitCode = 1;
try {
  // a. A message arrives while the inbox is open, and shows up without a reload.
  const subject = `E2E multipart ${run}`;
  const textBody = `Hello from the e2e test ${run}.\nThis is the plain-text part.\n`;
  const htmlPhrase = `HTML part of ${run}`;
  const html = `<!doctype html><html><body><h1 id="greeting">${htmlPhrase}</h1>`
    + '<p>With an inline image: <img id="logo" src="cid:logo.e2e@postel.test" alt="logo" width="64" height="64"></p></body></html>';
  let id;

  await check('a. inbox page loads and its event stream connects', async () => {
    const r = await page.goto(opt.web + '/', { timeout: T });
    assert(r && r.ok(), `GET / answered ${r && r.status()}`);
    await page.locator('#live.on').waitFor({ timeout: T });
    await page.evaluate(() => { window.__noReload = 1; });
  }, { fatal: true });

  await check('a. a message sent over SMTP appears in the list without a reload', async () => {
    await sendMail({
      from: 'E2E Sender <sender@e2e.test>',
      to: ['Rcpt One <one@e2e.test>', 'two@e2e.test'],
      subject,
      text: textBody,
      html,
      related: [{ type: 'image/png', cid: 'logo.e2e@postel.test', data: LOGO, filename: 'logo.png' }],
      attachments: [{ type: 'application/pdf', filename: 'report.pdf', data: PDF }],
    });
    const li = await waitListed(page, subject);
    assert(await page.evaluate(() => window.__noReload) === 1, 'the page was reloaded');
    id = await li.getAttribute('data-id');
    assert(id, 'the list item has no data-id');
    return `id ${id}`;
  }, { fatal: true });

  // b. The message view and each tab.
  await check('b. opening it shows subject, header fields and SMTP envelope', async () => {
    await openFromList(page, page.locator(`#messages li[data-id="${id}"]`));
    assert(await page.textContent('#message-subject') === subject, 'wrong subject');
    const headers = await page.textContent('#message-headers');
    assert(headers.includes('sender@e2e.test'), `no From in the header block: ${headers}`);
    const envelope = await page.textContent('#envelope-fields');
    for (const want of ['<sender@e2e.test>', '<one@e2e.test>', '<two@e2e.test>', id]) {
      assert(envelope.includes(want), `the envelope block lacks ${want}`);
    }
    assert(await page.getAttribute('#tab-html', 'aria-selected') === 'true', 'the HTML tab is not the default');
  }, { fatal: true });

  await check('b. HTML tab: sandboxed iframe shows the HTML part', async () => {
    assert(await page.getAttribute('#html-frame', 'sandbox') === '', 'the iframe is not sandbox=""');
    const body = page.frameLocator('#html-frame').locator('#greeting');
    await body.waitFor({ timeout: T });
    const text = await body.textContent();
    assert(text.includes(htmlPhrase), `iframe shows "${text}"`);
  });

  // The server inlines cid: images as data: URLs: a sandboxed frame sends
  // no credentials, so an attachment URL would fail behind a login.
  await check('b. HTML tab: the cid: image is inlined from its MIME part', async () => {
    const img = page.frameLocator('#html-frame').locator('#logo');
    const seen = await eventually(async () => {
      const s = await img.evaluate((i) => ({ complete: i.complete, width: i.naturalWidth, src: i.currentSrc }));
      return s.complete && s.width > 0 ? s : null;
    }, 'the image did not load');
    assert(seen.src.startsWith('data:image/png;base64,'), `the image came from ${seen.src.slice(0, 80)}`);
    return seen.src.slice(0, 40);
  });

  await check('b. Text tab shows the text part', async () => {
    await page.click('#tab-text');
    assert(await page.isVisible('#panel-text'), 'the text panel is hidden');
    const t = await page.textContent('#text-body');
    assert(t.includes(`Hello from the e2e test ${run}.`), `text panel: ${t.slice(0, 80)}`);
  });

  await check('b. Headers tab lists the header fields', async () => {
    await page.click('#tab-headers');
    const rows = await page.locator('#headers-table tr').allTextContents();
    assert(rows.some((r) => r.startsWith('Subject') && r.includes(subject)), 'no Subject row');
    assert(rows.some((r) => r.startsWith('Message-ID')), 'no Message-ID row');
  });

  await check('b. Raw tab shows the source, with a download link', async () => {
    await page.click('#tab-raw');
    await eventually(async () => (await page.textContent('#raw-body')).includes('Content-Type: multipart/'), 'no multipart Content-Type in the raw source');
    const href = await page.getAttribute('#download-raw', 'href');
    assert(new URL(href, opt.web + '/').pathname === `/api/v1/messages/${id}/raw`, `download link is ${href}`);
  });

  await check('b. Attachments tab: report.pdf downloads with its name and exact bytes', async () => {
    await page.click('#tab-attachments');
    const link = page.locator('#attachments a', { hasText: 'report.pdf' });
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: T }), link.click()]);
    assert(download.suggestedFilename() === 'report.pdf', `suggested name ${download.suggestedFilename()}`);
    const got = await readFile(await download.path());
    assert(got.equals(PDF), `got ${got.length} bytes, sent ${PDF.length}, and they differ`);
    return `${got.length} bytes`;
  });

  // c. Search.
  const listed = () => page.$$eval('#messages li[data-id]', (lis) => lis.map((li) => li.textContent));
  const searchFor = async (q) => {
    // The page asks the server after a debounce: wait for that answer.
    const answered = page.waitForResponse((r) => {
      const u = new URL(r.url());
      return u.pathname.endsWith('/api/v1/messages') && (u.searchParams.get('q') ?? '') === q;
    }, { timeout: T });
    await page.fill('#search', q);
    await answered;
  };

  await check('c. searching part of the subject keeps it listed', async () => {
    await page.goto(opt.web + '/#/'); // same document: only the hash changes
    await searchFor(`multipart ${run}`);
    const items = await eventually(async () => {
      const l = await listed();
      return l.length === 1 && l[0].includes(subject) ? l : null;
    }, 'the list is not just this message');
    assert(await page.evaluate(() => window.__noReload) === 1, 'the page was reloaded');
    return `${items.length} listed`;
  });

  await check('c. searching nonsense empties the list', async () => {
    await searchFor(`zz-no-such-message-${run}`);
    await eventually(async () => (await listed()).length === 0 && page.isVisible('#empty'), 'the list is not empty');
  });

  await check('c. clearing the search brings the messages back', async () => {
    await searchFor('');
    await eventually(async () => (await listed()).some((t) => t.includes(subject)), 'the message is not listed again');
  });

  // f. Screenshots, while the list has content (before anything is deleted).
  if (opt.screenshots) {
    await mkdir(opt.screenshots, { recursive: true });
    await check('f. screenshots', async () => {
      await sendRealisticMail();
      await page.goto(opt.web + '/#/');
      await waitListed(page, 'Your order #10423 has shipped');
      await page.locator('#search').blur();
      await page.mouse.move(0, 0);
      await sleep(800); // the status line is refreshed half a second after the last event
      await shot(page, 'inbox.png');

      await openFromList(page, await waitListed(page, 'Your order #10423 has shipped'));
      await page.frameLocator('#html-frame').locator('h1').waitFor({ timeout: T });
      await sleep(300); // let the frame paint
      await shot(page, 'message.png');

      const phone = await browser.newContext({
        viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, httpCredentials,
      });
      await phone.route((u) => !isLocal(u), (route) => route.abort('blockedbyclient'));
      watchRequests(phone);
      const p = await phone.newPage();
      await p.goto(opt.web + '/');
      await waitListed(p, 'Your order #10423 has shipped');
      await shot(p, 'inbox-phone.png');
      await openFromList(p, await waitListed(p, 'Your order #10423 has shipped'));
      assert(!(await p.isVisible('#list-pane')), 'on a phone the list should hide while a message is open');
      await p.frameLocator('#html-frame').locator('h1').waitFor({ timeout: T });
      await sleep(300);
      await shot(p, 'message-phone.png');
      await p.click('#back');
      await p.locator('#list-pane').waitFor({ state: 'visible', timeout: T });
      await phone.close();
      return `in ${opt.screenshots}`;
    });
  }

  // d. A hostile message: script, remote image, inline handler.
  const hostileSubject = `Hostile HTML ${run}`;
  let hostileId;
  let totalBefore;
  await check('d. a hostile HTML message arrives', async () => {
    await page.goto(opt.web + '/#/');
    await sendMail({
      from: 'mallory@evil.test',
      to: ['victim@e2e.test'],
      subject: hostileSubject,
      text: 'Nothing to see here.',
      html: '<p id="x">not run</p>'
        + "<script>document.getElementById('x').textContent='ran';parent.document.title='pwned';fetch('/api/v1/messages',{method:'DELETE'})</script>"
        + '<img src="http://192.0.2.1/track.png">'
        + "<img src=\"x\" onerror=\"document.getElementById('x').textContent='ran'\">",
    });
    const li = await waitListed(page, hostileSubject);
    hostileId = await li.getAttribute('data-id');
    totalBefore = (await apiJson('/api/v1/messages?limit=1')).total;
    await openFromList(page, li);
    await page.frameLocator('#html-frame').locator('#x').waitFor({ timeout: T });
    await sleep(1500); // give a script, a timer or an onerror every chance to run
  }, { fatal: true });

  await check('d. its script and inline handler did not run', async () => {
    const x = await page.frameLocator('#html-frame').locator('#x').textContent();
    assert(x === 'not run', `#x reads "${x}"`);
  });

  await check('d. it could not touch the page', async () => {
    const title = await page.title();
    assert(title !== 'pwned', 'the page title is "pwned"');
  });

  await check('d. it deleted nothing', async () => {
    const total = (await apiJson('/api/v1/messages?limit=1')).total;
    assert(total === totalBefore, `total went from ${totalBefore} to ${total}`);
    const deletes = requests.filter((r) => r.method === 'DELETE');
    assert(deletes.length === 0, `DELETE sent to ${deletes.map((r) => r.url).join(', ')}`);
  });

  await check('d. no request went to another host', async () => {
    const away = requests.filter((r) => !isLocal(new URL(r.url)));
    const out = away.filter((r) => !blockedByCsp(r));
    assert(out.length === 0, `requests to ${out.map((r) => `${r.url} (${r.failure ?? 'sent'})`).join(', ')}`);
    const local = requests.length - away.length;
    return `${local} requests to ${[...LOCAL_HOSTS].join(' or ')}`
      + (away.length ? `; ${away.length} to ${[...new Set(away.map((r) => new URL(r.url).host))].join(', ')} blocked by CSP before leaving the browser` : '');
  });

  await check('d. the HTML is served with a CSP that sandboxes it', async () => {
    const r = await http(`/api/v1/messages/${hostileId}/html`);
    const csp = r.headers.get('content-security-policy') || '';
    assert(r.ok, `status ${r.status}`);
    assert(/(^|;)\s*sandbox\b/.test(csp), `CSP is "${csp}"`);
    return csp;
  });

  // e. Delete from the message view.
  await check('e. delete removes the first message from the list and the server', async () => {
    await page.goto(opt.web + '/#/');
    const first = page.locator('#messages li[data-id]').first();
    await first.waitFor({ timeout: T });
    const victim = await openFromList(page, first);
    await page.click('#delete');
    await page.locator(`#messages li[data-id="${victim}"]`).waitFor({ state: 'detached', timeout: T });
    await eventually(() => page.evaluate(() => location.hash === '#/' || location.hash === ''), 'did not go back to the list');
    const r = await http(`/api/v1/messages/${victim}`);
    assert(r.status === 404, `GET after delete answered ${r.status}`);
    return `deleted ${victim}`;
  });

  // f. The delivery queue view (delivery is off here: it is empty).
  await check('f. the Queue link opens the queue view, and the inbox comes back', async () => {
    await page.click('#queue-link');
    await page.locator('#queue-empty').waitFor({ state: 'visible', timeout: T });
    assert(await page.isHidden('#app'), 'the inbox is still shown beside the queue');
    const count = await page.textContent('#queue-count');
    assert(count.includes('0 recipients'), `queue count: ${count}`);
    await page.click('#queue-back');
    await page.locator('#app').waitFor({ state: 'visible', timeout: T });
    assert(await page.isHidden('#queue-view'), 'the queue view is still shown');
  });

  // Throughout: the page itself threw nothing and broke no rule of its CSP.
  await check('the inbox page threw no error and broke no CSP rule', async () => {
    assert(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
    const v = await page.evaluate(() => window.__cspViolations);
    assert(Array.isArray(v) && v.length === 0, `CSP violations: ${JSON.stringify(v)}`);
    assert(await page.evaluate(() => window.__noReload) === 1, 'the page was reloaded at some point');
  });

  exitCode = failed === 0 ? 0 : 1;
} catch (e) {
  if (!(e instanceof Fatal)) {
    failed++;
    console.log(`FAIL unexpected error: ${e?.stack ?? e}`);
  } else {
    console.log(`stopped: the checks after "${e.message}" need it`);
  }
} finally {
  await browser.close().catch(() => {});
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(exitCode);

// Four messages such as a developer's app sends, for the screenshots.
async function sendRealisticMail() {
  const shop = `<!doctype html><html><head><style>
    body{font-family:Helvetica,Arial,sans-serif;background:#f4f4f7;margin:0;padding:24px;color:#333}
    .card{max-width:560px;margin:auto;background:#fff;border-radius:8px;padding:24px}
    h1{font-size:22px;margin:0 0 12px} table{width:100%;border-collapse:collapse}
    td{padding:8px 0;border-bottom:1px solid #eee} .r{text-align:right}
    .btn{display:inline-block;background:#2457c5;color:#fff;padding:10px 18px;border-radius:6px;text-decoration:none}
  </style></head><body><div class="card">
    <p><img src="cid:logo.shop@postel.test" width="48" height="48" alt=""></p>
    <h1>Your order is on its way</h1>
    <p>Hi Ada, good news: order <b>#10423</b> left our warehouse this morning.</p>
    <table><tr><td>Mechanical keyboard (ISO, brown switches)</td><td class="r">€129.00</td></tr>
    <tr><td>USB-C cable, 2 m</td><td class="r">€9.90</td></tr>
    <tr><td><b>Total</b></td><td class="r"><b>€138.90</b></td></tr></table>
    <p><a class="btn" href="https://shop.example.test/track/10423">Track your parcel</a></p>
    <p style="color:#888;font-size:12px">Shop Example Ltd · 1 Test Street · Nowhere</p>
  </div></body></html>`;
  await sendMail({
    from: 'Team Calendar <calendar@corp.example.test>',
    to: ['ada@example.test', 'grace@example.test'],
    subject: 'Réunion : planning du premier trimestre ☕',
    text: 'Bonjour à tous,\n\nLa réunion de planning a lieu jeudi à 10 h, salle Turing.\n\nOrdre du jour en pièce jointe.\n',
    attachments: [{ type: 'text/calendar', filename: 'invite.ics', data: Buffer.from('BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n') }],
  });
  await sendMail({
    from: 'Reports <reports@app.example.test>',
    to: ['ops@example.test'],
    subject: 'Weekly usage report, week 47',
    text: 'Active users: 1,284 (+4.2%)\nMessages sent: 38,901\nErrors: 12\n\nThe full numbers are in the attached CSV.\n',
    attachments: [{ type: 'text/csv', filename: 'usage-week-47.csv', data: Buffer.from('day,users,messages\nMon,1201,5520\nTue,1244,5702\n') }],
  });
  await sendMail({
    from: 'Acme Accounts <no-reply@acme.example.test>',
    to: ['grace@example.test'],
    subject: 'Reset your password',
    text: 'Someone asked to reset the password of your Acme account.\nOpen https://acme.example.test/reset?t=abc123 within 30 minutes.\n',
    html: '<p>Someone asked to reset the password of your Acme account.</p><p><a href="https://acme.example.test/reset?t=abc123">Choose a new password</a> within 30 minutes.</p><p>If it was not you, ignore this message.</p>',
  });
  await sendMail({
    from: 'Shop Example <orders@shop.example.test>',
    to: ['Ada Lovelace <ada@example.test>'],
    subject: 'Your order #10423 has shipped',
    text: 'Hi Ada, good news: order #10423 left our warehouse this morning.\nTotal: EUR 138.90\nTrack it: https://shop.example.test/track/10423\n',
    html: shop,
    related: [{ type: 'image/png', cid: 'logo.shop@postel.test', data: LOGO, filename: 'logo.png' }],
    attachments: [{ type: 'application/pdf', filename: 'invoice-10423.pdf', data: PDF }],
  });
}
