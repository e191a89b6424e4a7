// GraphiQL 5 served from this host (no CDN). A token field above the IDE: as soon as a
// token is there the IDE is (re)mounted with it, so the schema loads without a "Re-fetch".
// Queries and mutations go over HTTP with the token's Authorization header (a header typed
// in the Headers pane wins); subscriptions over graphql-transport-ws, the token in
// connection_init.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import '@graphiql/plugin-explorer/style.css';
import './graphiql.css';
import { Fragment, createElement as h, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { explorerPlugin } from '@graphiql/plugin-explorer';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import { graphqlWsUrl, loadToken, saveToken } from './token.js';

const DEFAULT_QUERY = `# Paste a token above (make run prints one), then run:
{
  viewer {
    subject
    tenantId
    scopes
  }
}
`;

const NO_TOKEN = {
  errors: [{ message: 'No token: paste a bearer token in the Token field above.' }],
};

function makeFetcher(token) {
  if (!token) return async () => NO_TOKEN;
  const authorization = `Bearer ${token}`;
  const wsClient = createClient({
    url: graphqlWsUrl(),
    lazy: true,
    connectionParams: { authorization },
    retryAttempts: 3,
  });
  return createGraphiQLFetcher({
    url: '/graphql',
    headers: { Authorization: authorization },
    wsClient,
    enableIncrementalDelivery: false,
  });
}

const explorer = explorerPlugin();
const linkedQuery = new URLSearchParams(location.hash.slice(1)).get('query');

function TokenBar({ token, onToken }) {
  const [draft, setDraft] = useState(token);
  const submit = (event) => {
    event.preventDefault();
    onToken(saveToken(draft));
  };
  return h(
    'form',
    { className: 'studio-bar', onSubmit: submit },
    h('strong', null, 'studio-integrations'),
    h(
      'label',
      null,
      'Token ',
      h('input', {
        id: 'studio-token',
        type: 'password',
        autoComplete: 'off',
        placeholder: 'paste a bearer token',
        value: draft,
        onChange: (e) => setDraft(e.target.value),
        onPaste: (e) => {
          const text = e.clipboardData.getData('text');
          e.preventDefault();
          setDraft(text);
          onToken(saveToken(text));
        },
      }),
    ),
    h('button', { type: 'submit' }, 'Use token'),
    token
      ? h('span', { className: 'ok', id: 'studio-token-state' }, 'schema loads with this token')
      : h('span', { className: 'hint', id: 'studio-token-state' }, 'no token: the schema cannot load'),
    h('a', { href: '/dashboard' }, 'External Health dashboard'),
  );
}

function App() {
  const [token, setToken] = useState(loadToken);
  const fetcher = useMemo(() => makeFetcher(token), [token]);
  return h(
    Fragment,
    null,
    h(TokenBar, { token, onToken: setToken }),
    h(
      'div',
      { className: 'studio-ide' },
      h(GraphiQL, {
        key: token || 'no-token',
        fetcher,
        plugins: [explorer],
        defaultQuery: DEFAULT_QUERY,
        ...(linkedQuery ? { initialQuery: linkedQuery } : {}),
      }),
    ),
  );
}

createRoot(document.getElementById('graphiql')).render(h(App));
