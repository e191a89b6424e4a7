// The bearer token both pages use: typed into the page's token field, or given once in the
// URL fragment (#token=…, never sent to the server), kept in this browser's localStorage.
const KEY = 'studio-integrations.token';

export function loadToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    saveToken(fromUrl);
    fragment.delete('token');
    const rest = fragment.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
    return fromUrl.trim();
  }
  return (localStorage.getItem(KEY) || '').trim();
}

export function saveToken(token) {
  const value = token.trim().replace(/^bearer\s+/i, '');
  if (value) localStorage.setItem(KEY, value);
  else localStorage.removeItem(KEY);
  return value;
}

export function graphqlWsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
}
