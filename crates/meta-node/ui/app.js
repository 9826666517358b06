// The meta-node dashboard: plain JavaScript, no build step. Everything it
// shows comes from the node's own API with the token the user pasted, which
// stays in this tab's sessionStorage (never in a URL). Text from the store
// is only ever set as textContent, never parsed as HTML.
'use strict';

const TOKEN_KEY = 'meta-node-token';
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  view: null,
  stop: [], // what to cancel when the view changes
};

// --- helpers -------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'data') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function say(text, bad) {
  const status = document.getElementById('status');
  status.textContent = text || '';
  status.className = bad ? 'error' : '';
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One API call with the token. Followers answer writes (and reads that are
// not stale) with a redirect to the leader, which a page cannot follow with
// its token: the error says where to go instead.
async function api(method, path, body, headers) {
  const init = { method, headers: Object.assign({ Authorization: 'Bearer ' + state.token }, headers || {}), redirect: 'manual', cache: 'no-store' };
  if (body !== undefined) {
    if (typeof body === 'string') init.headers['Content-Type'] = 'application/octet-stream';
    else init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.type === 'opaqueredirect' || (r.status >= 300 && r.status < 400)) {
    throw new ApiError(307, 'not_leader', 'this node is not the leader: open the leader\'s dashboard to do this');
  }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    if (r.status === 401 && state.me) signOut('Your token was refused (expired or revoked?): sign in again.');
    const e = json && json.error ? json.error : { code: 'http_' + r.status, message: text };
    throw new ApiError(r.status, e.code, e.message);
  }
  return json !== null ? json : text;
}

// Reads a server-sent event stream (fetch, so the token goes in a header)
// and calls onEvent for each event until aborted.
async function follow(path, onEvent, signal, onOpen) {
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token }, signal, cache: 'no-store' });
  if (!r.ok || !r.body) throw new ApiError(r.status, 'watch', 'watch refused: HTTP ' + r.status);
  onOpen();
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      for (const line of block.split('\n')) if (line.startsWith('event:')) event = line.slice(6).trim();
      onEvent(event);
    }
  }
}

function every(ms, fn) {
  let live = true;
  const tick = async () => {
    if (!live) return;
    // A hidden tab asks nothing of the node.
    if (!document.hidden) {
      try { await fn(); } catch (e) { if (live) say(e.message, true); }
    }
    if (live) timer = setTimeout(tick, ms);
  };
  let timer = setTimeout(tick, 0);
  state.stop.push(() => { live = false; clearTimeout(timer); });
}

// A key as one path segment: `/` encoded too, so a browser never folds
// `.` or `..` segments of a key into another key's path.
function keyPath(key) {
  return '/v1/kv/' + encodeURIComponent(key);
}

function mayWrite(key) {
  if (!state.me) return false;
  return state.me.scopes.some((s) => s === 'admin' || s === 'write' || s === 'kv:write' || (s.startsWith('kv:write:') && key.startsWith(s.slice('kv:write:'.length))));
}

function mayWriteSomewhere() {
  return !!state.me && state.me.scopes.some((s) => s === 'admin' || s === 'write' || s.startsWith('kv:write'));
}

// --- sign in -------------------------------------------------------------

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  // Said on the sign-in form after the reload.
  if (why) sessionStorage.setItem(TOKEN_KEY + '-why', why);
  state.token = null;
  state.me = null;
  location.hash = '';
  location.reload();
}

async function signIn(token) {
  state.token = token;
  state.me = await api('GET', '/v1/auth/whoami');
  sessionStorage.setItem(TOKEN_KEY, token);
}

// --- views ---------------------------------------------------------------

const views = { cluster: clusterView, maps: mapsView, keys: keysView, activity: activityView };

function show(view) {
  for (const stop of state.stop.splice(0)) stop();
  state.view = view;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
  const main = document.getElementById('main');
  main.replaceChildren();
  say('');
  views[view](main);
}

function clusterView(main) {
  const facts = h('div', { class: 'facts' });
  const body = h('tbody');
  const note = h('p', { class: 'muted' });
  main.append(h('section', { class: 'card', 'aria-labelledby': 'cluster-title' },
    h('h2', { id: 'cluster-title' }, 'Cluster'), facts,
    h('table', { id: 'members' }, h('thead', {}, h('tr', {}, ['id', 'role', 'engine', 'peer address', 'API address', 'matched', 'lag', 'reachable'].map((t) => h('th', {}, t)))), body),
    note));
  every(1000, async () => {
    const s = await api('GET', '/v1/cluster/status');
    facts.replaceChildren(
      h('div', {}, 'leader', h('b', { id: 'leader' }, s.leader ? 'node ' + s.leader : 'none')),
      h('div', {}, 'term', h('b', { id: 'term' }, s.term)),
      h('div', {}, 'applied index', h('b', {}, s.applied_index ?? '-')),
      h('div', {}, 'last log index', h('b', {}, s.last_log_index ?? '-')),
      h('div', {}, 'this node', h('b', {}, 'node ' + s.id + ' (' + s.state + ')')));
    const leading = s.leader === s.id;
    const rows = Object.entries(s.members).sort((a, b) => Number(a[0]) - Number(b[0])).map(([id, m]) => {
      const p = m.progress;
      const leader = Number(id) === s.leader;
      const role = leader ? 'leader' : m.voter ? 'follower' : 'learner';
      let reach = h('span', { class: 'muted' }, '-');
      if (leader && leading) reach = h('span', { class: 'ok' }, 'yes');
      else if (p) reach = p.reachable ? h('span', { class: 'ok' }, 'yes') : h('span', { class: 'bad', title: p.last_error || '' }, 'unreachable');
      const matched = p && p.matched_index !== null ? p.matched_index : null;
      const lag = matched !== null && s.last_log_index !== null ? s.last_log_index - matched : null;
      return h('tr', { class: leader ? 'leader' : '', data: { node: id, role, reachable: p ? String(!!p.reachable) : 'unknown' } },
        h('td', {}, id), h('td', {}, role), h('td', {}, m.engine || '-'), h('td', { class: 'mono' }, m.raft), h('td', { class: 'mono' }, m.api),
        h('td', {}, matched ?? '-'), h('td', { class: lag > 1000 ? 'warn' : '' }, lag ?? '-'), h('td', {}, reach));
    });
    body.replaceChildren(...rows);
    const leaderApi = s.leader && s.members[s.leader] ? s.members[s.leader].api : null;
    note.textContent = leading ? 'Progress as this leader sees it, refreshed every second.'
      : 'Progress (matched index, lag, reachability) is known by the leader' + (leaderApi ? ': open its dashboard at ' + leaderApi + '/ui/' : '') + '.';
  });
}

function mapsView(main) {
  const nodesBody = h('tbody');
  const grid = h('table', { id: 'shard-grid', class: 'grid' });
  const version = h('b', { id: 'shard-version' }, '-');
  main.append(
    h('section', { class: 'card' }, h('h2', {}, 'Nodes (cluster map)'),
      h('table', { id: 'nodes' }, h('thead', {}, h('tr', {}, ['id', 'address', 'state', 'labels'].map((t) => h('th', {}, t)))), nodesBody)),
    h('section', { class: 'card' }, h('h2', {}, 'Shard map'), h('p', {}, 'version ', version, h('span', { class: 'muted' }, ' · ● primary, ○ replica')), grid));
  const refresh = async () => {
    const [nodes, shards] = await Promise.all([api('GET', '/v1/cluster/nodes?stale=true&limit=10000'), api('GET', '/v1/shards?stale=true&limit=10000')]);
    nodesBody.replaceChildren(...nodes.nodes.map((n) => h('tr', { data: { node: n.id } },
      h('td', {}, n.id), h('td', { class: 'mono' }, n.address),
      h('td', { class: n.state === 'Down' ? 'bad' : n.state === 'Draining' ? 'warn' : 'ok' }, n.state),
      h('td', {}, Object.entries(n.labels || {}).map(([k, v]) => k + '=' + v).join(', ')))));
    version.textContent = shards.version;
    const ids = new Set(nodes.nodes.map((n) => n.id));
    for (const a of Object.values(shards.shards)) for (const r of a.replicas) ids.add(r);
    const columns = [...ids].sort((a, b) => a - b);
    grid.replaceChildren(
      h('thead', {}, h('tr', {}, h('th', {}, 'shard'), columns.map((c) => h('th', {}, 'node ' + c)))),
      h('tbody', {}, Object.entries(shards.shards).map(([shard, a]) => h('tr', { data: { shard } }, h('td', {}, shard),
        columns.map((c) => h('td', { class: 'cell' }, a.replicas[0] === c ? '●' : a.replicas.includes(c) ? '○' : ''))))));
  };
  const controller = new AbortController();
  state.stop.push(() => controller.abort());
  // One refresh at a time; changes meanwhile make one more.
  let running = false, again = false;
  const update = async () => {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await refresh(); } while (again);
    } catch (e) {
      say(e.message, true);
    } finally {
      running = false;
    }
  };
  update();
  // Live: any change to either map refreshes the view; after a (re)connect
  // the view is refreshed too, so nothing missed meanwhile stays unseen.
  for (const area of ['cluster', 'shards']) {
    (async () => {
      while (!controller.signal.aborted) {
        try {
          await follow('/v1/watch/' + area, (event) => { if (event === 'put' || event === 'delete') update(); }, controller.signal, update);
        } catch (e) {
          if (controller.signal.aborted) return;
          say('watch: ' + e.message, true);
          if (e.status >= 400 && e.status < 500) return;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
  }
}

function hex(base64) {
  const bytes = atob(base64);
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += bytes.charCodeAt(i).toString(16).padStart(2, '0') + (i % 16 === 15 ? '\n' : ' ');
  return out.trim();
}

function keysView(main) {
  const prefix = h('input', { id: 'prefix', placeholder: 'prefix, e.g. app/', spellcheck: 'false' });
  const body = h('tbody');
  const pager = h('div', { class: 'row' });
  const detail = h('section', { class: 'card', id: 'key-detail', hidden: true });
  const cursors = [];
  let next = null;
  let listed = ''; // the prefix of the pages shown
  const load = async (startAfter) => {
    const q = new URLSearchParams({ prefix: listed, limit: '50', stale: 'true' });
    if (startAfter) q.set('start_after', startAfter);
    const page = await api('GET', '/v1/kv?' + q);
    next = page.next;
    body.replaceChildren(...page.items.map((kv) => h('tr', { class: 'clickable', tabindex: '0', data: { key: kv.key },
      onclick: () => open(kv.key).catch((e) => say(e.message, true)),
      onkeydown: (e) => { if (e.key === 'Enter') open(kv.key).catch((err) => say(err.message, true)); } },
      h('td', { class: 'mono' }, kv.key),
      h('td', { class: 'mono' }, kv.value !== undefined ? kv.value.slice(0, 60) : '<' + atob(kv.value_base64).length + ' bytes, binary>'),
      h('td', {}, kv.mod_revision))));
    if (!page.items.length) body.append(h('tr', {}, h('td', { colspan: '3', class: 'muted' }, 'no keys')));
    pager.replaceChildren(
      h('button', { class: 'secondary', type: 'button', disabled: !cursors.length, onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]).catch((e) => say(e.message, true)); } }, '← Previous'),
      h('button', { class: 'secondary', type: 'button', disabled: !next, onclick: () => { cursors.push(next); load(next).catch((e) => say(e.message, true)); } }, 'Next →'));
  };
  const open = async (key) => {
    const kv = await api('GET', keyPath(key) + '?stale=true');
    const binary = kv.value === undefined;
    const children = [h('h2', {}, 'Key'), h('pre', { class: 'mono' }, kv.key),
      h('p', {}, 'revisions: created ', kv.create_revision, ', modified ', kv.mod_revision, ', version ', kv.version, kv.lease ? ' · lease ' + kv.lease : ''),
      h('label', {}, binary ? 'Value (binary, hex)' : 'Value'), h('pre', { id: 'value' }, binary ? hex(kv.value_base64) : kv.value)];
    // Binary values and values with a carriage return would not survive a
    // text area unchanged: they are not edited here.
    const editable = !binary && !kv.value.includes('\r');
    if (mayWrite(kv.key) && !editable) {
      children.push(h('p', { class: 'muted' }, 'This value is not text the page can edit unchanged: use the CLI or the API.'));
    }
    if (mayWrite(kv.key) && editable) {
      const edit = h('textarea', { id: 'edit-value' });
      edit.value = binary ? '' : kv.value;
      children.push(h('label', { for: 'edit-value' }, 'New value'), edit, h('div', { class: 'row' },
        h('button', { type: 'button', class: 'edit', id: 'save', onclick: async () => {
          try { await api('PUT', keyPath(kv.key), edit.value, { 'If-Match': '"' + kv.mod_revision + '"' }); say('saved'); await open(kv.key); await load(cursors[cursors.length - 1]); } catch (e) { say(e.message, true); }
        } }, 'Save (if unchanged)'),
        h('button', { type: 'button', class: 'danger edit', id: 'delete', onclick: async () => {
          if (!confirm('Delete ' + kv.key + '?')) return;
          try { await api('DELETE', keyPath(kv.key), undefined, { 'If-Match': '"' + kv.mod_revision + '"' }); say('deleted'); detail.hidden = true; await load(cursors[cursors.length - 1]); } catch (e) { say(e.message, true); }
        } }, 'Delete')));
    }
    detail.replaceChildren(...children);
    detail.hidden = false;
  };
  const form = h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); cursors.length = 0; listed = prefix.value; load().catch((err) => say(err.message, true)); } },
    h('div', {}, h('label', { for: 'prefix' }, 'Prefix'), prefix), h('button', { type: 'submit' }, 'List'));
  const sections = [h('section', { class: 'card' }, h('h2', {}, 'Keys'), form,
    h('table', { id: 'keys' }, h('thead', {}, h('tr', {}, ['key', 'value', 'mod revision'].map((t) => h('th', {}, t)))), body), pager)];
  if (mayWriteSomewhere()) {
    const key = h('input', { id: 'new-key', spellcheck: 'false', required: true });
    const value = h('input', { id: 'new-value', spellcheck: 'false' });
    sections.push(h('section', { class: 'card' }, h('h2', {}, 'New key'), h('form', { class: 'row', onsubmit: async (e) => {
      e.preventDefault();
      try { await api('PUT', keyPath(key.value), value.value, { 'If-None-Match': '*' }); say('created ' + key.value); cursors.length = 0; await load(); } catch (err) { say(err.message, true); }
    } }, h('div', {}, h('label', { for: 'new-key' }, 'Key'), key), h('div', {}, h('label', { for: 'new-value' }, 'Value'), value), h('button', { type: 'submit', class: 'edit' }, 'Create'))));
  }
  main.append(...sections, detail);
  load().catch((e) => say(e.message, true));
}

// Prometheus text: { name: [{labels, value}] }.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const part of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[part[1]] = part[2];
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

const READ = (labels) => labels.method === 'GET' && labels.route !== '/metrics' && !labels.route.startsWith('/v1/watch') && labels.route !== '/v1/cluster/status';
const WRITE = (labels) => ['PUT', 'POST', 'DELETE'].includes(labels.method);

function sum(samples, keep) {
  return (samples || []).filter((s) => keep(s.labels)).reduce((a, s) => a + s.value, 0);
}

function buckets(samples, keep) {
  const by = new Map();
  for (const s of samples || []) if (keep(s.labels)) by.set(s.labels.le, (by.get(s.labels.le) || 0) + s.value);
  return by;
}

function quantile(q, now, before) {
  const les = [...now.keys()].map((le) => (le === '+Inf' ? Infinity : Number(le))).sort((a, b) => a - b);
  const count = (le) => (now.get(le === Infinity ? '+Inf' : String(le)) || 0) - (before.get(le === Infinity ? '+Inf' : String(le)) || 0);
  const total = count(Infinity);
  if (!total) return null;
  for (const le of les) if (count(le) >= q * total) return le;
  return null;
}

function activityView(main) {
  const rates = h('canvas', { id: 'rates', width: '900', height: '220', 'aria-label': 'requests per second' });
  const latency = h('canvas', { id: 'latency', width: '900', height: '220', 'aria-label': 'latency' });
  // Colours by class: the page's policy allows no inline style.
  const legend = (items) => h('p', { class: 'legend' }, items.map(([css, text]) => h('span', {}, h('i', { class: css }), text)));
  const now = h('div', { class: 'facts', id: 'activity-now' });
  main.append(h('section', { class: 'card' }, h('h2', {}, 'Activity'), h('p', { class: 'muted' }, 'From this node\'s /metrics every 2 s, the last 5 minutes.'), now,
    h('div', { class: 'split' },
      h('div', {}, h('h3', {}, 'Requests per second'), rates, legend([['blue', 'reads'], ['red', 'writes']])),
      h('div', {}, h('h3', {}, 'Latency (upper bucket bound)'), latency, legend([['blue', 'p50'], ['amber', 'p99']])))));
  const points = [];
  let last = null;
  every(2000, async () => {
    const m = parseMetrics(await api('GET', '/metrics'));
    const t = Date.now() / 1000;
    const sample = {
      t,
      reads: sum(m.meta_http_requests_total, READ),
      writes: sum(m.meta_http_requests_total, WRITE),
      buckets: buckets(m.meta_http_request_duration_seconds_bucket, (l) => READ(l) || WRITE(l)),
    };
    if (last) {
      const dt = t - last.t;
      points.push({ t, reads: (sample.reads - last.reads) / dt, writes: (sample.writes - last.writes) / dt,
        p50: quantile(0.5, sample.buckets, last.buckets), p99: quantile(0.99, sample.buckets, last.buckets) });
      while (points.length > 150) points.shift();
      const p = points[points.length - 1];
      const ms = (v) => (v === null ? '-' : v === Infinity ? '> 30 s' : (v * 1000).toFixed(v < 0.001 ? 2 : 1) + ' ms');
      now.replaceChildren(h('div', {}, 'reads/s', h('b', {}, p.reads.toFixed(1))), h('div', {}, 'writes/s', h('b', {}, p.writes.toFixed(1))),
        h('div', {}, 'p50', h('b', {}, ms(p.p50))), h('div', {}, 'p99', h('b', {}, ms(p.p99))));
      chart(rates, points, [['reads', '#0b61a4'], ['writes', '#c62828']], (v) => v.toFixed(0) + '/s');
      chart(latency, points, [['p50', '#0b61a4'], ['p99', '#9a6700']], (v) => (v * 1000).toFixed(1) + ' ms');
    }
    last = sample;
  });
}

function chart(canvas, points, series, format) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, hgt = canvas.height, pad = 40;
  ctx.clearRect(0, 0, w, hgt);
  const values = points.flatMap((p) => series.map(([k]) => p[k])).filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(1e-9, ...values) * 1.1;
  ctx.strokeStyle = '#d8dee4';
  ctx.fillStyle = '#5b6670';
  ctx.font = '12px sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = hgt - pad / 2 - (i / 4) * (hgt - pad);
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(format((i / 4) * max), 2, y - 2);
  }
  for (const [key, color] of series) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    points.forEach((p, i) => {
      const v = p[key];
      if (v === null || !Number.isFinite(v)) return;
      const x = pad + (i / 149) * (w - pad);
      const y = hgt - pad / 2 - (v / max) * (hgt - pad);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
  }
}

// --- start ---------------------------------------------------------------

function route() {
  const view = (location.hash || '#cluster').slice(1);
  show(views[view] ? view : 'cluster');
}

async function start() {
  const why = sessionStorage.getItem(TOKEN_KEY + '-why');
  if (why) {
    sessionStorage.removeItem(TOKEN_KEY + '-why');
    document.getElementById('login-error').textContent = why;
  }
  document.getElementById('login').addEventListener('submit', async (e) => {
    e.preventDefault();
    const error = document.getElementById('login-error');
    error.textContent = '';
    try {
      await signIn(document.getElementById('token').value.trim());
      enter();
    } catch (err) {
      state.token = null;
      error.textContent = err.status === 401 ? 'This token is not valid here.' : err.message;
    }
  });
  document.getElementById('signout').addEventListener('click', () => signOut());
  if (state.token) {
    try {
      state.me = await api('GET', '/v1/auth/whoami');
      enter();
    } catch (_) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
    }
  }
}

function enter() {
  document.getElementById('nav').hidden = false;
  say('signed in as ' + state.me.id + ' (' + state.me.scopes.join(', ') + ')');
  window.addEventListener('hashchange', route);
  // A hidden tab holds no stream open and polls nothing (a browser allows
  // few connections per node); shown again, the view starts afresh.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) for (const stop of state.stop.splice(0)) stop();
    else route();
  });
  route();
}

start();
