// The live External Health page: one query for the current state, then healthChanged and
// integrationFailures over graphql-transport-ws. Each event is shown at once and the state
// is re-read (debounced) so p50/p95 and the groups stay exact. No framework: plain DOM.
import './dashboard.css';
import { createClient } from 'graphql-ws';
import { graphqlWsUrl, loadToken, saveToken } from './token.js';

const FAILURE_FIELDS = `id category message escalation occurrences occurredAt connectionId runId
  deliveryId connection { name }`;

const STATE_QUERY = `query ExternalHealthDashboard {
  externalHealth {
    providers { providerId status connectionCount healthyCount degradedCount unhealthyCount
      openCircuits latencyP95Ms errorRate provider { name } }
    connections { connection { id name provider { name } } status circuitState latencyP50Ms
      latencyP95Ms errorRate consecutiveFailures checkedAt }
  }
  integrationFailures(first: 50) {
    groups { category count escalatedCount unresolvedCount lastSeenAt }
    nodes { ${FAILURE_FIELDS} }
  }
}`;

// `after`: the cursor of the last item shown, so a stream that reconnects first replays what
// was committed while it was away (in commit order), then goes on live.
const HEALTH_SUBSCRIPTION = `subscription DashboardHealth($after: ID) {
  healthChanged(after: $after) { cursor connectionId providerId previousStatus status
    circuitState latencyP95Ms errorRate occurredAt }
}`;

const FAILURE_SUBSCRIPTION = `subscription DashboardFailures($after: ID) {
  integrationFailures(after: $after) { cursor ${FAILURE_FIELDS} }
}`;

const $ = (selector) => document.querySelector(selector);
let token = loadToken();
let client = null;
let refreshTimer = null;
let state = { providers: [], connections: [], groups: [], failures: [] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === 'className') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const ms = (value) => (value === null || value === undefined ? '–' : `${Math.round(value)} ms`);
const pct = (value) => `${(100 * (value || 0)).toFixed(1)} %`;
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '–');
const badge = (value, extra = '') => el('span', { className: `status status-${value}${extra}` }, value);

function showMessage(text) {
  const box = $('#message');
  box.hidden = !text;
  box.textContent = text || '';
}

function setLive(stateName, text) {
  const live = $('#live');
  live.dataset.state = stateName;
  live.textContent = text;
  document.body.classList.toggle('disconnected', stateName === 'disconnected');
}

// --- rendering ---------------------------------------------------------------------------

function renderProviders() {
  const body = $('#providers tbody');
  body.replaceChildren(
    ...state.providers.map((p) =>
      el(
        'tr',
        { dataset: { providerId: p.providerId, status: p.status } },
        el('td', {}, p.provider ? p.provider.name : p.providerId),
        el('td', {}, badge(p.status)),
        el('td', { className: 'num' },
          `${p.connectionCount} (${p.healthyCount} healthy, ${p.degradedCount} degraded, ${p.unhealthyCount} unhealthy)`),
        el('td', { className: 'num' }, ms(p.latencyP95Ms)),
        el('td', { className: 'num' }, pct(p.errorRate)),
        el('td', { className: 'num' }, p.openCircuits),
      ),
    ),
  );
  if (!state.providers.length) body.append(el('tr', {}, el('td', { colspan: 6, className: 'empty' }, 'No providers in use.')));
}

function renderConnections(changedId) {
  const body = $('#connections tbody');
  body.replaceChildren(
    ...state.connections.map((c) =>
      el(
        'tr',
        {
          className: c.connection.id === changedId ? 'changed' : null,
          dataset: { connectionId: c.connection.id, status: c.status, circuit: c.circuitState },
        },
        el('td', {}, c.connection.name, el('br'), el('small', {}, c.connection.provider ? c.connection.provider.name : '')),
        el('td', {}, badge(c.status)),
        el('td', {}, badge(c.circuitState)),
        el('td', { className: 'num' }, ms(c.latencyP50Ms)),
        el('td', { className: 'num' }, ms(c.latencyP95Ms)),
        el('td', { className: 'num' }, pct(c.errorRate)),
        el('td', { className: 'num' }, time(c.checkedAt)),
      ),
    ),
  );
  if (!state.connections.length) body.append(el('tr', {}, el('td', { colspan: 7, className: 'empty' }, 'No live connections.')));
}

const NODE_FIELDS = {
  run: `... on IntegrationRun {
      kind status httpStatus latencyMs errorCategory errorMessage externalRef startedAt
      attempts { number httpStatus latencyMs errorCategory errorMessage externalRef }
    }`,
  delivery: `... on WebhookDelivery {
      direction status eventType attemptCount nextAttemptAt
      attempts { number attemptedAt urlHost httpStatus latencyMs errorCategory errorMessage }
      viewerCan { replay }
    }`,
};

function nodeLink(id, label) {
  const query = `{\n  node(id: "${id}") {\n    id\n    ${NODE_FIELDS[label]}\n  }\n}\n`;
  return el('a', { href: `/graphql#query=${encodeURIComponent(query)}`, title: `open ${id} in GraphiQL` }, label);
}

function renderFailures(newId) {
  const groups = $('#failure-groups');
  groups.className = 'groups';
  groups.replaceChildren(
    ...state.groups.map((g) =>
      el(
        'div',
        { className: 'group', dataset: { category: g.category, count: g.count } },
        el('strong', {}, g.category),
        `${g.count} ${g.count === 1 ? 'failure' : 'failures'} · ${g.escalatedCount} escalated · `
          + `${g.unresolvedCount} unresolved · last ${time(g.lastSeenAt)}`,
      ),
    ),
  );
  const feed = $('#failures');
  const byCategory = new Map();
  for (const f of state.failures) {
    if (!byCategory.has(f.category)) byCategory.set(f.category, []);
    byCategory.get(f.category).push(f);
  }
  const items = [];
  for (const [category, failures] of byCategory) {
    items.push(el('li', { className: 'category', dataset: { categoryHeading: category } }, `${category} (${failures.length})`));
    for (const f of failures) {
      items.push(
        el(
          'li',
          { className: f.id === newId ? 'new' : null, dataset: { failureId: f.id, category: f.category, escalation: f.escalation } },
          el('time', {}, time(f.occurredAt)),
          badge(f.escalation, f.escalation === 'OPEN' ? '-escalation' : ''),
          el('span', {}, f.connection ? f.connection.name : f.connectionId || 'no connection'),
          el('span', {}, f.message),
          el('span', {}, `×${f.occurrences}`),
          f.runId ? nodeLink(f.runId, 'run') : null,
          f.deliveryId ? nodeLink(f.deliveryId, 'delivery') : null,
        ),
      );
    }
  }
  feed.replaceChildren(...items);
  if (!items.length) feed.append(el('li', { className: 'empty' }, 'No failures.'));
}

function render(changedId, newFailureId) {
  renderProviders();
  renderConnections(changedId);
  renderFailures(newFailureId);
}

// --- data --------------------------------------------------------------------------------

async function fetchState() {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: STATE_QUERY }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new Error(`Token refused: ${body.errors?.[0]?.message || 'unauthenticated'}`);
  if (body.errors?.length && !body.data) throw new Error(body.errors[0].message);
  if (body.errors?.length) showMessage(`Partly shown: ${body.errors[0].message}`);
  const health = body.data?.externalHealth || { providers: [], connections: [] };
  const failures = body.data?.integrationFailures || { groups: [], nodes: [] };
  state = { providers: health.providers, connections: health.connections, groups: failures.groups, failures: failures.nodes };
}

async function refresh(changedId, newFailureId) {
  try {
    await fetchState();
    if (!client || $('#live').dataset.state === 'live') showMessage('');
    render(changedId, newFailureId);
  } catch (error) {
    showMessage(error.message);
  }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh(), 300);
}

function onHealthChanged(change) {
  const row = state.connections.find((c) => c.connection.id === change.connectionId);
  if (row) {
    Object.assign(row, { status: change.status, circuitState: change.circuitState, errorRate: change.errorRate });
    if (change.latencyP95Ms !== null) row.latencyP95Ms = change.latencyP95Ms;
    row.checkedAt = change.occurredAt;
  }
  renderConnections(change.connectionId);
  scheduleRefresh();
}

function onFailure(failure) {
  state.failures = [failure, ...state.failures.filter((f) => f.id !== failure.id)];
  renderFailures(failure.id);
  scheduleRefresh();
}

const cursorRefused = (errors) => Array.isArray(errors)
  && errors.some((e) => String(e.extensions?.code).startsWith('CURSOR_'));

function subscribe(query, onData) {
  // graphql-ws sends this same object again when it reconnects: the newest cursor rides along.
  // A cursor past the resume window is refused (CURSOR_EXPIRED): then the stream goes on live
  // from now, and the state re-read on reconnect covers the gap.
  const request = { query, variables: {} };
  client.subscribe(
    request,
    {
      next: (result) => {
        if (cursorRefused(result.errors) && request.variables.after) {
          subscribe(query, onData);
          return;
        }
        if (result.errors?.length) showMessage(result.errors[0].message);
        const payload = result.data && Object.values(result.data)[0];
        if (payload?.cursor) request.variables.after = payload.cursor;
        if (payload) onData(payload);
      },
      // A closed socket is told by the client's `closed` handler; this is for the rest.
      error: (error) => {
        if (cursorRefused(error) && request.variables.after) {
          subscribe(query, onData);
          return;
        }
        if (!(error && typeof error.code === 'number')) {
          showMessage(`Live updates stopped: ${error.message || error}`);
        }
      },
      complete: () => {},
    },
  );
}

function connect() {
  if (client) client.dispose();
  client = null;
  if (!token) {
    setLive('idle', 'no token');
    showMessage('Paste a bearer token (make run prints one) to see External Health.');
    return;
  }
  setLive('connecting', 'connecting…');
  client = createClient({
    url: graphqlWsUrl(),
    connectionParams: { authorization: `Bearer ${token}` },
    lazy: false,
    retryAttempts: Infinity,
    // A refused or expired token stays refused: wait for a new one instead of retrying.
    shouldRetry: (event) => !(event && (event.code === 4401 || event.code === 4403)),
    retryWait: async (retries) => new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** retries, 10000))),
    on: {
      connecting: () => setLive('connecting', 'connecting…'),
      connected: () => {
        setLive('live', 'live');
        showMessage('');
        refresh(); // whatever happened while away
      },
      closed: (event) => {
        setLive('disconnected', 'disconnected');
        const refused = event && (event.code === 4403 || event.code === 4401);
        showMessage(refused
          ? 'Token refused or expired: paste a new one.'
          : 'Disconnected from live updates: what you see may be stale. Reconnecting…');
      },
    },
  });
  subscribe(HEALTH_SUBSCRIPTION, onHealthChanged);
  subscribe(FAILURE_SUBSCRIPTION, onFailure);
}

$('#token').value = token;
$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  token = saveToken($('#token').value);
  connect();
  refresh();
});
connect();
if (token) refresh();
