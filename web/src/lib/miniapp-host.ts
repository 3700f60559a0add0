// The host half of the mini-app protocol (the app's half is the SDK the server serves at
// /sdk/plaza-miniapp-1.js; the protocol is described at its top). A mini-app runs in a
// sandboxed iframe and may only ask; this module decides what a message is, with one pure
// function, `parseRequest`, so every check is in one place and can be read in one go:
//   1. it comes from the app's frame (`event.source`), from the app's origin
//      (`event.origin`: the origin of its `home_url`, or "null" when the frame is
//      sandboxed without `allow-same-origin`), and carries this launch's nonce;
//   2. it is small (MESSAGE_MAX_CHARS as JSON), a plain object of the protocol's shape;
//   3. its method is a known one and its parameters have the right types and lengths.
// A message failing 1 is dropped without an answer (a stranger learns nothing); one
// failing 2 or 3 is answered `invalid_request`, so the app's developer sees why.

export const PROTOCOL = 'plaza-miniapp/1';
/** No call needs more than a few hundred characters; a megabyte message is an attack. */
export const MESSAGE_MAX_CHARS = 4096;
export const CALL_ID_MAX_CHARS = 64;
export const TITLE_MAX_CHARS = 80;
export const PATH_MAX_CHARS = 512;
const SCOPE_MAX_CHARS = 200;
const STATE_MAX_CHARS = 200;
const OIDC_NONCE_MAX_CHARS = 200;
/** What waits on the user (consent, the PIN, picking a chat): as long as the SDK waits. */
export const USER_TIMEOUT_MS = 5 * 60 * 1000;
/** At most this many messages from one launch in RATE_WINDOW_MS; more are refused. */
export const RATE_MAX = 30;
export const RATE_WINDOW_MS = 10_000;

export type MiniAppRequest =
  | { id: string; method: 'login'; params: { scope: string; state: string; code_challenge: string; nonce?: string } }
  | { id: string; method: 'getProfile'; params: Record<string, never> }
  | { id: string; method: 'requestPayment'; params: { order_id: string } }
  | { id: string; method: 'shareToChat'; params: { title: string; path: string } }
  | { id: string; method: 'close'; params: Record<string, never> };

export type Method = MiniAppRequest['method'];

/** Who may talk to this launch. */
export interface Expected { source: unknown; origin: string; nonce: string }

/** The parts of a MessageEvent that the checks read. */
export interface Incoming { source: unknown; origin: string; data: unknown }

export type Parsed =
  | { kind: 'request'; request: MiniAppRequest }
  /** From the app, but not a request it may make; answer `invalid_request`. */
  | { kind: 'invalid'; id: string; reason: string }
  /** Not from this launch of the app at all; drop it. */
  | { kind: 'foreign' };

const CALL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const ORDER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** A base64url SHA-256 (RFC 7636 §4.2: 43 characters). */
const CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const SCOPE = /^[a-z_]+( [a-z_]+)*$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Characters (code points), as the server counts them. */
function chars(text: string): number { return Array.from(text).length; }

/** A title as the share endpoint takes it: 1–80 characters after trimming, no control characters. */
export function validTitle(title: unknown): title is string {
  if (typeof title !== 'string') return false;
  const trimmed = title.trim();
  return trimmed.length > 0 && chars(trimmed) <= TITLE_MAX_CHARS && !CONTROL.test(trimmed);
}

/** A path on the app's origin, as the share endpoint takes it: starts with "/" but not
 *  "//" (another host), at most 512 characters, no white space, control characters or
 *  "\" (which browsers read as "/"). */
export function validPath(path: unknown): path is string {
  return typeof path === 'string' && path.startsWith('/') && !path.startsWith('//') && chars(path) <= PATH_MAX_CHARS
    && !/[\s\\]/.test(path) && !CONTROL.test(path);
}

function optionalString(value: unknown, max: number): value is string | undefined {
  return value === undefined || (typeof value === 'string' && value.length <= max && !CONTROL.test(value));
}

/** Checks one message against one launch. Pure: no DOM, no clock, no state. */
export function parseRequest(event: Incoming, expected: Expected): Parsed {
  // A frame not loaded yet has no window: then nothing is from it (null === null must not pass).
  if (expected.source == null || event.source !== expected.source || event.origin !== expected.origin) return { kind: 'foreign' };
  const data = event.data;
  if (!isPlainObject(data) || data.plaza !== PROTOCOL || data.nonce !== expected.nonce) return { kind: 'foreign' };
  if (typeof data.id !== 'string' || !CALL_ID.test(data.id)) return { kind: 'foreign' };
  const id = data.id;
  let size: number;
  try { size = JSON.stringify(data).length; } catch { return { kind: 'invalid', id, reason: 'the message is not plain JSON' }; }
  if (size > MESSAGE_MAX_CHARS) return { kind: 'invalid', id, reason: `a message has at most ${MESSAGE_MAX_CHARS} characters` };
  const params = data.params === undefined ? {} : data.params;
  if (!isPlainObject(params)) return { kind: 'invalid', id, reason: 'params must be an object' };
  const only = (...names: string[]) => Object.keys(params).every((name) => names.includes(name));
  const bad = (reason: string): Parsed => ({ kind: 'invalid', id, reason });
  switch (data.method) {
    case 'login': {
      const { scope, state, code_challenge: challenge, nonce } = params;
      if (!only('scope', 'state', 'code_challenge', 'nonce')) return bad('login takes scope, state, code_challenge and nonce');
      if (typeof scope !== 'string' || scope.length > SCOPE_MAX_CHARS || !SCOPE.test(scope)) return bad('scope: space-separated scope names');
      if (typeof state !== 'string' || !state || state.length > STATE_MAX_CHARS || CONTROL.test(state)) return bad(`state: 1 to ${STATE_MAX_CHARS} characters`);
      if (typeof challenge !== 'string' || !CODE_CHALLENGE.test(challenge)) return bad('code_challenge: a base64url SHA-256 of the verifier (S256)');
      if (!optionalString(nonce, OIDC_NONCE_MAX_CHARS)) return bad(`nonce: at most ${OIDC_NONCE_MAX_CHARS} characters`);
      const request: MiniAppRequest = { id, method: 'login', params: { scope, state, code_challenge: challenge } };
      if (nonce !== undefined) request.params.nonce = nonce;
      return { kind: 'request', request };
    }
    case 'getProfile':
    case 'close':
      if (!only()) return bad(`${data.method} takes no parameters`);
      return { kind: 'request', request: { id, method: data.method, params: {} } };
    case 'requestPayment': {
      if (!only('order_id')) return bad('requestPayment takes order_id');
      if (typeof params.order_id !== 'string' || !ORDER_ID.test(params.order_id)) return bad('order_id: the id of a pay order');
      return { kind: 'request', request: { id, method: 'requestPayment', params: { order_id: params.order_id } } };
    }
    case 'shareToChat': {
      if (!only('title', 'path')) return bad('shareToChat takes title and path');
      if (!validTitle(params.title)) return bad(`title: 1 to ${TITLE_MAX_CHARS} characters, no control characters`);
      if (!validPath(params.path)) return bad(`path: a path on the app's origin, "/" … at most ${PATH_MAX_CHARS} characters`);
      return { kind: 'request', request: { id, method: 'shareToChat', params: { title: params.title.trim(), path: params.path } } };
    }
    default:
      return bad('unknown method');
  }
}

/** An answer to one call, in the protocol's shape. */
export type Answer = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

export function answerMessage(nonce: string, id: string, answer: Answer) {
  return { plaza: PROTOCOL, nonce, id, ...answer };
}

/** 32 hex characters from the browser's random source: the launch's nonce. */
export function newNonce(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** How a launch frames its app: the URL (with the nonce in its fragment), the sandbox,
 *  the origin messages must come from and the target origin answers go to. */
export interface Framing { src: string; sandbox: string; expectedOrigin: string; targetOrigin: string }

/** `path` (a checked share path, or none) is resolved on the app's origin; null when the
 *  home URL is not an http(s) URL. */
export function framing(homeUrl: string, path: string | null, nonce: string, plazaOrigin: string): Framing | null {
  let url: URL;
  try { url = new URL(homeUrl); } catch { return null; }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  if (path !== null) {
    if (!validPath(path)) return null;
    url = new URL(path, url.origin);
  }
  const fragment = url.hash ? `${url.hash}&` : '#';
  const src = `${url.origin}${url.pathname}${url.search}${fragment}plaza_nonce=${nonce}`;
  const appOrigin = url.origin;
  // An app on Plaza's own origin must not get `allow-same-origin`: it could then reach
  // into this page (and its token). Its frame's origin is then opaque: messages come
  // from "null", and answers cannot name a target origin, so they go to "*" — still
  // only to that frame's window, and carrying the nonce only that launch knows.
  if (appOrigin === plazaOrigin) {
    return { src, sandbox: 'allow-scripts allow-forms', expectedOrigin: 'null', targetOrigin: '*' };
  }
  return { src, sandbox: 'allow-scripts allow-forms allow-same-origin', expectedOrigin: appOrigin, targetOrigin: appOrigin };
}

/** The authorization code from a redirect the authorization endpoint answered, or the
 *  OAuth error it carries. */
export function codeFromRedirect(redirectTo: string): { code: string; state: string | null } | { error: string } {
  let url: URL;
  try { url = new URL(redirectTo); } catch { return { error: 'server_error' }; }
  const error = url.searchParams.get('error');
  if (error) return { error: /^[a-z_]{1,64}$/.test(error) ? error : 'server_error' };
  const code = url.searchParams.get('code');
  return code ? { code, state: url.searchParams.get('state') } : { error: 'server_error' };
}

/** Counts messages in a sliding window; `allow` is false once a launch sends too many. */
export class RateLimit {
  private times: number[] = [];
  constructor(private max = RATE_MAX, private windowMs = RATE_WINDOW_MS) {}
  allow(now: number): boolean {
    this.times = this.times.filter((at) => now - at < this.windowMs);
    if (this.times.length >= this.max) return false;
    this.times.push(now);
    return true;
  }
}
