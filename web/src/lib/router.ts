// History-API routing: the server answers every non-API path with the page, so paths
// like /chats/<id> survive a reload.
import { createStore } from './store';

export const route = createStore({ path: location.pathname });

export function navigate(path: string, replace = false) {
  if (path === location.pathname) return;
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route.set({ path });
  window.scrollTo(0, 0);
}

window.addEventListener('popstate', () => route.set({ path: location.pathname }));

/** Matches `/chats/:id` style patterns; returns the parameters or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}
