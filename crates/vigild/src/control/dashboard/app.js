// Vigil's dashboard: renders the snapshots of GET /v1/live (server-sent events) and,
// with the operator's bearer token, calls the API's POST endpoints.
//
// Rules kept here: server data only ever goes into the page as text (textContent; no
// HTML is ever parsed from a string); the token lives in sessionStorage and leaves the page only in an
// `Authorization: Bearer` header (never a cookie, never a URL); rows are updated in
// place, so a focused button keeps its focus while the data changes around it.
'use strict';

(function () {
  const TOKEN_KEY = 'vigil.token';
  const STALE_MS = 5000;
  const RETRY_MS = 5000;

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM helpers

  // h('span', {class: 'badge', title: 'x'}, 'text', child, ...)
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  // Replaces a node's children only when what it shows changed (`key`), so unchanged
  // cells are not rebuilt every second.
  function fill(node, key, build) {
    if (node.dataset.key === key) return;
    node.dataset.key = key;
    node.replaceChildren(...[].concat(build()).filter((c) => c !== null && c !== undefined));
  }

  // ------------------------------------------------------------------ time

  let serverNow = Date.now(); // the last tick's generated_at: relative times use it

  // Seconds since the tick that last sent service `s` (a tick sends a service only when
  // its facts changed): what only time changes is counted on from there.
  function since(s) {
    const at = parse(s._at);
    return at === null ? 0 : Math.max(0, (serverNow - at) / 1000);
  }

  function parse(ts) {
    if (!ts) return null;
    const ms = Date.parse(ts);
    return Number.isNaN(ms) ? null : ms;
  }

  function span(secs) {
    secs = Math.max(0, Math.round(secs));
    if (secs < 60) return secs + 's';
    const m = Math.floor(secs / 60);
    if (m < 60) return m + 'm' + (secs % 60 ? ' ' + (secs % 60) + 's' : '');
    const hr = Math.floor(m / 60);
    if (hr < 48) return hr + 'h' + (m % 60 ? ' ' + (m % 60) + 'm' : '');
    return Math.floor(hr / 24) + 'd ' + (hr % 24) + 'h';
  }

  function clock(ms) {
    const d = new Date(ms);
    const sameDay = new Date(serverNow).toDateString() === d.toDateString();
    const opts = sameDay
      ? { hour: '2-digit', minute: '2-digit', second: '2-digit' }
      : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    return d.toLocaleString(undefined, opts);
  }

  // <time> with the local clock time and how long ago / from now.
  function when(ts, style) {
    const ms = parse(ts);
    if (ms === null) return h('span', { class: 'muted', text: '–' });
    const delta = (ms - serverNow) / 1000;
    let rel;
    if (Math.abs(delta) < 1) rel = 'now';
    else rel = delta > 0 ? 'in ' + span(delta) : span(-delta) + ' ago';
    const text = style === 'rel' ? rel : clock(ms) + ' (' + rel + ')';
    return h('time', { datetime: ts, title: ts, text });
  }

  // ------------------------------------------------------------------ the token

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let tokenNeeded = true; // the hello event says; false on the control socket
  let canAct = false; // buttons shown
  let who = null;

  function authHeaders() {
    return token ? { Authorization: 'Bearer ' + token } : {};
  }

  async function whoami(candidate) {
    const headers = candidate ? { Authorization: 'Bearer ' + candidate } : {};
    const r = await fetch('/v1/whoami', { headers, cache: 'no-store', credentials: 'omit' });
    if (r.status === 401) return null;
    if (!r.ok) throw new Error('GET /v1/whoami: HTTP ' + r.status);
    return r.json();
  }

  function describeCaller(c) {
    if (!c) return '';
    if (c.uid !== null && c.uid !== undefined) return c.user + ' (uid ' + c.uid + ')';
    return c.from ? c.user + ' from ' + c.from : c.user;
  }

  function setOperator(next, caller) {
    canAct = next;
    who = caller;
    $('operator').hidden = !canAct;
    $('token-form').hidden = canAct || !tokenNeeded;
    $('actions-heading').hidden = !canAct;
    $('operator-who').textContent = canAct
      ? (tokenNeeded ? 'Token accepted: your actions are recorded as ' : 'On the control socket: your actions are recorded as ') + describeCaller(caller) + '.'
      : '';
    $('forget').hidden = !tokenNeeded;
    if (snapshot) render(snapshot);
  }

  async function checkAccess() {
    if (!tokenNeeded) {
      try {
        const me = await whoami('');
        setOperator(me !== null, me);
      } catch (e) {
        setOperator(false, null);
      }
      return;
    }
    if (!token) return setOperator(false, null);
    try {
      const me = await whoami(token);
      if (me === null) {
        forgetToken();
        say('The saved token was refused (it may have been rotated); paste the current one.', 'error');
      } else {
        setOperator(true, me);
      }
    } catch (e) {
      say('Cannot check the token: ' + e.message, 'error');
    }
  }

  function forgetToken() {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    setOperator(false, null);
  }

  $('token-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('token');
    const candidate = input.value.trim();
    if (!candidate) return;
    try {
      const me = await whoami(candidate);
      if (me === null) {
        say('That token was refused: it is not the one in http_token_file.', 'error');
        input.focus();
        return;
      }
      token = candidate;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = '';
      setOperator(true, me);
      say('Token accepted: the operator buttons are shown.', 'done');
    } catch (e) {
      say('Cannot check the token: ' + e.message, 'error');
    }
  });

  $('forget').addEventListener('click', () => {
    forgetToken();
    say('Token forgotten: the page is read-only.', 'done');
    $('token').focus();
  });

  // ------------------------------------------------------------------ messages

  function say(text, kind) {
    const r = $('result');
    r.className = 'result' + (kind ? ' ' + kind : '');
    r.textContent = text;
  }

  function announce(text) {
    $('announce').textContent = text;
  }

  // ------------------------------------------------------------------ actions

  const LABELS = { restart: 'Restart', reset: 'Reset', stop: 'Stop', start: 'Start', pause: 'Pause', resume: 'Resume' };

  async function act(service, action, button) {
    const q = new URLSearchParams();
    const reason = $('reason').value.trim();
    const dur = $('for').value.trim();
    if (reason && ['stop', 'start', 'pause', 'resume'].includes(action)) q.set('reason', reason);
    if (dur && (action === 'stop' || action === 'pause')) q.set('for', dur);
    const url = '/v1/services/' + encodeURIComponent(service) + '/' + action + (q.toString() ? '?' + q : '');
    // Not `disabled`: a disabled button drops the keyboard focus, and the operator would
    // have to find their place again. A second press while one is pending is ignored.
    if (button) {
      if (button.getAttribute('aria-disabled') === 'true') return;
      button.setAttribute('aria-disabled', 'true');
    }
    say(LABELS[action] + ' ' + service + '…');
    try {
      const r = await fetch(url, { method: 'POST', headers: authHeaders(), cache: 'no-store', credentials: 'omit' });
      let body = {};
      try { body = await r.json(); } catch (e) { /* not JSON */ }
      if (r.status === 401) {
        forgetToken();
        say(LABELS[action] + ' ' + service + ': the token was refused; paste the current one.', 'error');
        return;
      }
      if (!r.ok) {
        say(LABELS[action] + ' ' + service + ': ' + (body.error || 'HTTP ' + r.status), 'error');
        return;
      }
      let text;
      if (action === 'restart') text = service + ': ' + body.message + (body.detail ? ' — ' + body.detail : '');
      else if (action === 'reset') text = service + ': reset, ' + body.cleared + ' restart(s) cleared from the window.';
      else text = service + ': ' + body.message;
      const failed = body.ok === false || body.outcome === 'failed';
      say(text, failed ? 'error' : 'done');
    } catch (e) {
      say(LABELS[action] + ' ' + service + ': ' + e.message, 'error');
    } finally {
      if (button) button.removeAttribute('aria-disabled');
    }
  }

  function actionButton(service, action, extraClass) {
    const b = h('button', {
      type: 'button',
      class: extraClass || null,
      'data-action': action,
      'aria-label': LABELS[action] + ' ' + service,
      text: LABELS[action],
    });
    b.addEventListener('click', () => act(service, b.dataset.action, b));
    return b;
  }

  // A row's buttons: created when the operator may act, kept while it may, and only
  // relabelled (stop/start, pause/resume) as the service's hold changes.
  function updateActions(cell, s) {
    if (!canAct) {
      cell.hidden = true;
      if (cell.firstChild) cell.replaceChildren();
      return;
    }
    cell.hidden = false;
    let box = cell.firstChild;
    if (!box) {
      box = h('div', { class: 'actions' },
        actionButton(s.name, 'restart'),
        actionButton(s.name, 'reset'),
        actionButton(s.name, 'stop', 'danger'),
        actionButton(s.name, 'pause'));
      cell.append(box);
    }
    const hold = s.hold ? s.hold.state : null;
    const [, , stopStart, pauseResume] = box.children;
    const ss = hold === 'stopped' ? 'start' : 'stop';
    const pr = hold === 'paused' ? 'resume' : 'pause';
    for (const [b, a] of [[stopStart, ss], [pauseResume, pr]]) {
      if (b.dataset.action !== a) {
        b.dataset.action = a;
        b.textContent = LABELS[a];
        b.setAttribute('aria-label', LABELS[a] + ' ' + s.name);
        b.className = a === 'stop' ? 'danger' : '';
      }
    }
    // Stopped is more than paused: a pause of a stopped service is refused.
    pauseResume.hidden = hold === 'stopped';
  }

  // ------------------------------------------------------------------ cells

  function badge(state, label) {
    return h('span', { class: 'badge s-' + state, text: label || state });
  }

  function holdText(hold) {
    let t = hold.state + (hold.by ? ' by ' + describeCaller(hold.by) : '') + ' (' + hold.source + ')';
    return t;
  }

  function stateCell(s) {
    const out = [badge(s.state)];
    if (s.running === true) out.push(h('span', { class: 'sub', text: 'running' }));
    else if (s.running === false) out.push(h('span', { class: 'sub', text: 'not running' }));
    if (s.hold) {
      const p = h('p', { class: 'hold' }, holdText(s.hold));
      if (s.hold.until) p.append(', until ', when(s.hold.until));
      else p.append(', until undone');
      if (s.hold.reason) p.append(': ', h('q', { text: s.hold.reason }));
      out.push(p);
    }
    return out;
  }

  function checksCell(s) {
    if (!s.checks.length) return h('span', { class: 'muted', text: 'no checks' });
    const ul = h('ul', { class: 'checks' });
    for (const c of s.checks) {
      const status = c.expected_down ? 'expected-down' : c.status;
      const li = h('li', { 'data-check': c.name },
        h('strong', { text: c.name }), ' ',
        h('span', { class: 'muted', text: c.kind }), ' ',
        badge(c.expected_down ? 'stopped' : c.status, status));
      const last = [];
      if (c.last_verdict) last.push('last ' + c.last_verdict);
      if (c.age_secs !== null && c.age_secs !== undefined) last.push(span(c.age_secs + since(s)) + ' ago');
      if (c.consecutive_failures > 1) last.push(c.consecutive_failures + ' failures in a row');
      const reason = h('span', { class: 'reason' }, last.join(', ') + (c.last_reason ? ': ' + c.last_reason : ''));
      li.append(reason);
      ul.append(li);
    }
    return ul;
  }

  function restartsCell(s) {
    const n = s.restarts_in_window;
    const max = s.max_restarts;
    const segments = Math.min(max, 20);
    const used = max > 0 ? Math.min(segments, Math.round((n / max) * segments)) : 0;
    const bar = h('span', {
      class: 'bar' + (n >= max ? ' full' : n >= max - 1 && max > 1 ? ' near' : ''),
      role: 'img',
      'aria-label': n + ' of ' + max + ' restarts used in ' + span(s.window_secs),
    });
    for (let i = 0; i < segments; i++) bar.append(h('span', { class: i < used ? 'used' : null }));
    const out = [bar, h('span', { class: 'count', 'data-field': 'restart-count', text: n + '/' + max }),
      h('span', { class: 'sub', text: 'per ' + span(s.window_secs) })];
    if (s.last_restart) {
      const l = s.last_restart;
      out.push(h('span', { class: 'sub' }, 'last ', when(l.at, 'rel'), ' by ' + l.source + (l.forced ? ' (forced)' : '') +
        (l.outcome ? ', ' + l.outcome : ', in progress')));
    }
    return out;
  }

  function timersCell(s) {
    const dl = h('dl', { class: 'timers' });
    const add = (term, ...dd) => dl.append(h('dt', { text: term }), h('dd', null, ...dd));
    const cooldown = s.cooldown_left_secs - since(s);
    if (cooldown > 0) add('cooldown', span(cooldown) + ' left');
    if (s.rearm_at) add('re-arms', when(s.rearm_at));
    if (s.next_scheduled_restart) add('next restart', when(s.next_scheduled_restart));
    if (s.next_maintenance) {
      const m = s.next_maintenance;
      if (m.open) add('maintenance', m.action + ' now, until ', when(m.end));
      else {
        const len = (parse(m.end) - parse(m.start)) / 1000;
        add('maintenance', m.action + ' ', when(m.start), Number.isNaN(len) ? '' : ' for ' + span(len));
      }
    }
    if (!dl.firstChild) return h('span', { class: 'muted', text: 'none' });
    return dl;
  }

  function processCell(s) {
    if (s.exec) {
      const e = s.exec;
      const parts = [badge(e.state === 'running' ? 'ok' : e.state === 'given-up' ? 'given-up' : 'unknown', e.state)];
      const facts = [];
      if (e.pid) facts.push('pid ' + e.pid);
      if (e.main_pid && e.main_pid !== e.pid) facts.push('main pid ' + e.main_pid);
      const since = parse(e.since);
      if (since !== null && ['running', 'starting', 'stopping'].includes(e.state)) facts.push('up ' + span((serverNow - since) / 1000));
      if (facts.length) parts.push(h('span', { class: 'sub', 'data-field': 'exec', text: facts.join(' · ') }));
      if (e.status_text) parts.push(h('span', { class: 'sub', 'data-field': 'status-text' }, 'status: ', h('q', { text: e.status_text })));
      if (!e.daemon_running) parts.push(h('span', { class: 'sub', text: 'its vigil run is gone' }));
      return parts;
    }
    if (s.systemd) {
      const u = s.systemd;
      if (u.error) return h('span', { class: 'sub', text: u.unit + ': ' + u.error });
      const parts = [h('span', { class: 'mono', text: u.unit })];
      const facts = [u.active_state + (u.sub_state ? ' (' + u.sub_state + ')' : '')];
      if (u.uptime_secs !== null && u.uptime_secs !== undefined) facts.push('up ' + span(u.uptime_secs + since(s)));
      if (u.result && u.result !== 'success') facts.push('result ' + u.result);
      parts.push(h('span', { class: 'sub', text: facts.join(' · ') }));
      return parts;
    }
    if (s.driver_detail) return h('span', { class: 'sub', text: s.driver_detail });
    return h('span', { class: 'muted', text: '–' });
  }

  // ------------------------------------------------------------------ rows

  const rows = new Map(); // service name -> {tr, cells}
  const CELLS = [
    ['state', 'State', stateCell],
    ['checks', 'Checks', checksCell],
    ['restarts', 'Restarts in window', restartsCell],
    ['timers', 'Timers', timersCell],
    ['process', 'Process', processCell],
  ];

  function rowFor(s) {
    let row = rows.get(s.name);
    if (row) return row;
    const name = h('th', { scope: 'row', 'data-label': 'Service' });
    const cells = {};
    const tr = h('tr', { 'data-service': s.name }, name);
    for (const [field, label] of CELLS) {
      cells[field] = h('td', { 'data-field': field, 'data-label': label });
      tr.append(cells[field]);
    }
    const actions = h('td', { 'data-field': 'actions', 'data-label': 'Actions', hidden: true });
    tr.append(actions);
    row = { tr, name, cells, actions };
    rows.set(s.name, row);
    return row;
  }

  function renderServices(services) {
    // Given-up services first, then the configuration's order.
    const order = services.map((s, i) => [s.state === 'given-up' ? 0 : 1, i, s]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
    const body = $('service-rows');
    const seen = new Set();
    order.forEach((s, i) => {
      seen.add(s.name);
      const row = rowFor(s);
      fill(row.name, s.driver + '|' + s.name, () => [h('span', { class: 'name', text: s.name }), h('span', { class: 'sub', text: s.driver })]);
      for (const [field, , build] of CELLS) {
        // Every cell shows a time relative to the daemon's clock: rebuilt each tick.
        const key = JSON.stringify([field, s, serverNow]);
        fill(row.cells[field], key, () => build(s));
      }
      row.tr.classList.toggle('is-given-up', s.state === 'given-up');
      row.tr.dataset.state = s.state;
      updateActions(row.actions, s);
      if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    $('no-services').hidden = services.length > 0;
  }

  function renderGivenUp(services) {
    const gone = services.filter((s) => s.state === 'given-up');
    $('given-up').hidden = gone.length === 0;
    const list = $('given-up-list');
    const key = JSON.stringify([gone, canAct, serverNow]);
    fill(list, key, () => gone.map((s) => {
      const li = h('li', { 'data-service': s.name }, h('strong', { text: s.name }), ': automatic restarts stopped');
      if (s.given_up_since) li.append(' since ', when(s.given_up_since));
      li.append(' (' + s.restarts_in_window + '/' + s.max_restarts + ' in ' + span(s.window_secs) + ')');
      if (s.rearm_at) li.append('; re-arms ', when(s.rearm_at));
      if (s.denials) li.append('; ' + s.denials + ' request(s) denied');
      li.append('. ');
      if (canAct) li.append(actionButton(s.name, 'reset', 'danger'));
      else li.append(h('span', { class: 'muted', text: 'Clear it with vigil reset ' + s.name + '.' }));
      return li;
    }));
  }

  function renderDangling(list) {
    $('dangling').hidden = list.length === 0;
    fill($('dangling-list'), JSON.stringify(list), () => list.map((d) =>
      h('li', null, d.service + ': a restart allowed at ', when(d.at), ' (source ' + d.source + ', vigil pid ' + d.pid + ') has no recorded outcome yet')));
  }

  function renderLedger(entries) {
    const body = $('ledger-rows');
    const newestFirst = entries.slice().reverse();
    fill(body, JSON.stringify([newestFirst, Math.floor(serverNow / 10000)]), () => newestFirst.map((e) => {
      let verdict = e.verdict + (e.reason ? ' (' + e.reason + ')' : '');
      if (e.denials > 1) verdict += ', ' + e.denials + ' denials';
      const state = { allowed: 'ok', skipped: 'warning', denied: 'denied', rearmed: 'ok', stop: 'stopped', pause: 'paused' }[e.verdict] || 'unknown';
      const outcome = e.outcome || (e.verdict === 'allowed' ? 'in progress' : '');
      return h('tr', { 'data-entry': e.id, 'data-source': e.source, 'data-service': e.service },
        h('td', { 'data-label': 'When' }, when(e.at)),
        h('td', { 'data-label': 'Service', text: e.service }),
        h('td', { 'data-label': 'Source', text: e.source + (e.forced ? ' (forced)' : '') }),
        h('td', { 'data-label': 'Verdict' }, badge(state, verdict)),
        h('td', { 'data-label': 'Outcome', text: outcome }),
        h('td', { 'data-label': 'Message', class: 'reason', text: e.message + (e.outcome_detail ? ' — ' + e.outcome_detail : '') }));
    }));
    $('no-entries').hidden = entries.length > 0;
  }

  // Says what changed since the last snapshot, for screen readers (aria-live).
  let previous = null;
  function announceChanges(services) {
    if (previous) {
      const said = [];
      for (const s of services) {
        const before = previous.get(s.name);
        if (!before) continue;
        if (before.state !== s.state) said.push(s.name + ' is now ' + s.state);
        if (s.restarts_in_window > before.restarts_in_window) said.push(s.name + ' restarted (' + s.restarts_in_window + '/' + s.max_restarts + ')');
      }
      if (said.length) announce(said.join('. ') + '.');
    }
    previous = new Map(services.map((s) => [s.name, { state: s.state, restarts_in_window: s.restarts_in_window }]));
  }

  let snapshot = null;
  function render(snap) {
    snapshot = snap;
    const st = snap.status;
    serverNow = parse(st.generated_at) || Date.now();
    renderGivenUp(st.services);
    renderDangling(st.dangling_intents || []);
    renderServices(st.services);
    renderLedger(snap.history || []);
    $('meta').textContent = 'vigil ' + snap.vigil + ' · pid ' + snap.pid + ' · up ' + span((serverNow - (parse(snap.started_at) || serverNow)) / 1000);
    $('updated').textContent = 'Updated ' + clock(serverNow) + ' (daemon clock); live every ' + Math.round(snap.every_ms / 1000) + ' s.';
    announceChanges(st.services);
  }

  // ------------------------------------------------------------------ the feed

  let lastEvent = 0;
  let source = null;

  function setConn(state, text) {
    const c = $('conn');
    if (c.textContent === text) return;
    c.className = 'conn ' + state;
    c.textContent = text;
  }

  function connect() {
    if (source) source.close();
    const es = new EventSource('/v1/live');
    source = es;
    es.addEventListener('hello', (ev) => {
      const hello = JSON.parse(ev.data);
      const needed = hello.token_needed !== false;
      const changed = needed !== tokenNeeded;
      tokenNeeded = needed;
      if (changed || (!canAct && (token || !tokenNeeded))) checkAccess();
      else setOperator(canAct, who);
    });
    // The first tick is a whole snapshot; the next ones carry what changed (a service
    // whose facts changed, in whole; the order when services came or went; the ledger's
    // entries and the dangling intents when they changed).
    es.addEventListener('snapshot', (ev) => {
      lastEvent = Date.now();
      setConn('live', 'Live');
      const snap = JSON.parse(ev.data);
      for (const s of snap.status.services) s._at = snap.status.generated_at;
      render(snap);
    });
    es.addEventListener('changes', (ev) => {
      lastEvent = Date.now();
      const d = JSON.parse(ev.data);
      if (!snapshot || d.seq !== snapshot.seq + 1) {
        // Not on top of what this page has (cannot happen with one stream): start over.
        connect();
        return;
      }
      const st = snapshot.status;
      const byName = new Map(st.services.map((s) => [s.name, s]));
      for (const s of d.services) {
        s._at = d.generated_at;
        byName.set(s.name, s);
      }
      const order = d.order || st.services.map((s) => s.name);
      st.services = order.map((name) => byName.get(name)).filter((s) => s);
      st.generated_at = d.generated_at;
      if (d.history) snapshot.history = d.history;
      if (d.dangling_intents) st.dangling_intents = d.dangling_intents;
      snapshot.seq = d.seq;
      setConn('live', 'Live');
      render(snapshot);
    });
    es.addEventListener('problem', (ev) => {
      lastEvent = Date.now();
      setConn('waiting', 'The daemon cannot build a snapshot: ' + JSON.parse(ev.data).error);
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (e.g. too many dashboards): the browser gives up; we do not.
        setConn('down', 'Disconnected; trying again in ' + RETRY_MS / 1000 + ' s');
        setTimeout(() => { if (source === es) connect(); }, RETRY_MS);
      } else {
        setConn('down', 'Connection lost; reconnecting…');
      }
    });
  }

  setInterval(() => {
    if (lastEvent && Date.now() - lastEvent > STALE_MS && source && source.readyState === EventSource.OPEN) {
      setConn('waiting', 'No update for ' + span((Date.now() - lastEvent) / 1000) + ': the data shown may be stale');
    }
  }, 1000);

  setOperator(false, null);
  connect();
})();
