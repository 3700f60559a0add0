// Mini-apps inside Plaza: the directory (`/apps`, GET /miniapps?q=), an app's page
// (`/apps/<id>`) and the full-screen runner (`/apps/<id>/run[/<shared path>]`): a Plaza
// bar with the app's name and a close button over a sandboxed iframe of its `home_url`.
// The app talks to Plaza only through postMessage (lib/miniapp-host.ts checks every
// message); Plaza answers with what the user allowed, never with its own token, and the
// sheets (consent, Plaza Pay, the chat picker) are Plaza's, drawn over the frame.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { api, ApiError } from '../lib/api';
import { conversationTitle, loadConversations, loadWallet, store } from '../lib/data';
import { t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import {
  RateLimit, USER_TIMEOUT_MS, answerMessage, codeFromRedirect, framing, newNonce, parseRequest,
} from '../lib/miniapp-host';
import type { Answer, MiniAppRequest } from '../lib/miniapp-host';
import { formatMoney } from '../lib/money';
import { match, navigate, route } from '../lib/router';
import { Avatar, Dialog, ErrorLine, isCancelled, pinAsk, withPin } from '../lib/ui';
import { consentSentence } from './consent';
import { openMiniApp, takeOpenedFrom } from './miniapp-card';

interface MiniApp {
  id: string; client_id: string; developer_id: string; name: string; description: string; home_url: string;
  redirect_uris: string[]; scopes: string[]; created_at: string;
}

/** `pay_order` (API.md "Mini-apps"); amounts in minor units. */
interface PayOrder {
  id: string; app_id: string; app_name: string; out_trade_no: string; user_sub: string; amount: number; currency: string;
  description: string; status: 'created' | 'paid' | 'expired'; fee: number; refunded: number; created_at: string;
  expires_at: string; paid_at: string | null;
}

interface ConsentView { app: { name: string; description: string } | null; scopes: string[]; already_granted: boolean; redirect_to: string | null }

/** The apps the user let in are read a page at a time; nobody has let in more than this many pages' worth. */
const AUTHORIZATION_PAGES_MAX = 10;

export function MiniAppsScreen() {
  const path = route.use((s) => s.path);
  let params;
  // Keyed by what is opened, so each launch gets a fresh frame and nonce.
  if ((params = match('/apps/:id/run/:path', path))) return <Runner key={path} id={params.id} path={params.path} />;
  if ((params = match('/apps/:id/run', path))) return <Runner key={path} id={params.id} path={null} />;
  if ((params = match('/apps/:id', path))) return <AppPage id={params.id} />;
  return <Directory />;
}

function Directory() {
  const [query, setQuery] = useState('');
  const [apps, setApps] = useState<MiniApp[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    // Typing waits a moment, so a word is one request, not one per letter.
    const timer = setTimeout(() => {
      const q = query.trim();
      api<{ items: MiniApp[] }>('GET', `/miniapps${q ? `?q=${encodeURIComponent(q)}` : ''}`)
        .then((page) => { if (live) { setApps(page.items); setError(null); } })
        .catch((caught) => { if (live) setError(caught); });
    }, query ? 250 : 0);
    return () => { live = false; clearTimeout(timer); };
  }, [query]);
  return (
    <section aria-labelledby="apps-title">
      <header class="topbar">
        <button class="icon-button" aria-label={t('miniapp.back')} onClick={() => navigate('/me')}>‹</button>
        <h1 id="apps-title">{t('miniapp.directory')}</h1>
        <span />
      </header>
      <div class="form pad">
        <p class="muted small">{t('miniapp.directory_hint')}</p>
        <input type="search" name="q" aria-label={t('miniapp.search')} placeholder={t('miniapp.search')} maxLength={60}
          autoComplete="off" value={query} onInput={(event) => setQuery(event.currentTarget.value)} />
        <ErrorLine error={error} />
      </div>
      {!apps && !error && <p class="muted pad" aria-busy="true">{t('common.loading')}</p>}
      {apps && !apps.length && <p class="muted pad">{t('miniapp.none')}</p>}
      <ul class="list" aria-label={t('miniapp.directory')}>
        {(apps ?? []).map((app) => (
          <li key={app.id} class="row">
            <Avatar name={app.name} size={40} />
            <div class="row-main">
              <strong>{app.name}</strong><br />
              <span class="muted small">{app.description}</span>
            </div>
            <button type="button" class="small-button" aria-label={t('miniapp.open_name', { name: app.name })}
              onClick={() => navigate(`/apps/${encodeURIComponent(app.id)}`)}>{t('miniapp.open')}</button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function AppPage({ id }: { id: string }) {
  const [app, setApp] = useState<MiniApp | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { api<MiniApp>('GET', `/miniapps/${encodeURIComponent(id)}`).then(setApp).catch(setError); }, [id]);
  return (
    <section aria-labelledby="app-title">
      <header class="topbar">
        <button class="icon-button" aria-label={t('miniapp.back')} onClick={() => navigate('/apps')}>‹</button>
        <h1 id="app-title" class="ellipsis">{app?.name ?? t('miniapp.directory')}</h1>
        <span />
      </header>
      <div class="pad">
        <ErrorLine error={error} />
        {!app && !error && <p class="muted" aria-busy="true">{t('common.loading')}</p>}
        {app && (
          <div class="form">
            <div class="profile">
              <Avatar name={app.name} size={64} />
              <div>
                <h2>{app.name}</h2>
                <p class="muted small">{originOf(app.home_url)}</p>
              </div>
            </div>
            {app.description && <p>{app.description}</p>}
            <p class="muted small">{t('miniapp.may_ask')}:</p>
            <ul class="muted small">
              {app.scopes.map((scope) => <li key={scope}>{t(`consent.scope.${scope}` as TextKey)}</li>)}
            </ul>
            <button type="button" class="primary" aria-label={t('miniapp.open_name', { name: app.name })}
              onClick={() => openMiniApp(app.id, null)}>{t('miniapp.open')}</button>
          </div>
        )}
      </div>
    </section>
  );
}

function originOf(url: string): string {
  try { return new URL(url).origin; } catch { return url; }
}

// ---- the runner ------------------------------------------------------------------------

function ok(result: unknown): Answer { return { ok: true, result }; }
function fail(code: string, message = code): Answer { return { ok: false, error: { code, message } }; }
/** A refusal from Plaza's API, by its stable code; the app gets the same sentence the user does. */
function failFrom(error: unknown): Answer {
  if (error instanceof ApiError) return fail(error.code, error.message);
  return fail('unknown', 'something went wrong in Plaza');
}

/** Answers `timeout` when the user has not finished in time (the SDK waits as long), and
 *  takes the sheet away; an answer after that is not sent. */
function withTimeout(run: Promise<Answer>, onTimeout: () => void): Promise<Answer> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { onTimeout(); resolve(fail('timeout', 'the user did not answer in time')); }, USER_TIMEOUT_MS);
    run.then(resolve, (error) => resolve(failFrom(error))).finally(() => clearTimeout(timer));
  });
}

function Runner({ id, path }: { id: string; path: string | null }) {
  const [app, setApp] = useState<MiniApp | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [sheet, setSheet] = useState<{ node: JSX.Element } | null>(null);
  const [nonce] = useState(newNonce);
  const frame = useRef<HTMLIFrameElement>(null);
  useEffect(() => { api<MiniApp>('GET', `/miniapps/${encodeURIComponent(id)}`).then(setApp).catch(setError); }, [id]);
  const framed = app ? framing(app.home_url, path, nonce, location.origin) : null;
  const name = app?.name ?? '';

  const close = () => {
    const from = takeOpenedFrom();
    navigate(from && !from.startsWith('/apps/') ? from : `/apps/${encodeURIComponent(id)}`);
  };

  useEffect(() => {
    if (!app || !framed) return;
    const limit = new RateLimit();
    let live = true;
    // One sheet at a time: a second sign-in, payment or share while one is shown is `busy`.
    let sheetOpen = false;
    const post = (callId: string, answer: Answer) => {
      const target = frame.current?.contentWindow;
      // Only to the app's frame, only to the app's origin (see `framing` for "*").
      if (live && target) target.postMessage(answerMessage(nonce, callId, answer), framed.targetOrigin);
    };
    /** Shows a sheet until it finishes; the sheet gets `finish` and the promise its value. */
    const ask = <T,>(make: (finish: (value: T) => void) => JSX.Element) => new Promise<T>((resolve) => {
      setSheet({ node: make((value) => { setSheet(null); resolve(value); }) });
    });
    const run = (request: MiniAppRequest): Promise<Answer> => {
      switch (request.method) {
        case 'login': return login(app, request.params, (scopes) => ask<boolean | null>((finish) =>
          <ConsentSheet app={app} scopes={scopes} finish={finish} />));
        case 'requestPayment': return pay(app, request.params.order_id, (order, problem) => ask<Answer>((finish) =>
          <PaySheet order={order} problem={problem} finish={finish} />));
        case 'shareToChat': return ask<Answer>((finish) =>
          <SharePicker app={app} title={request.params.title} path={request.params.path} finish={finish} />);
        default: return Promise.resolve(fail('invalid_request', 'unknown method'));
      }
    };
    const onMessage = (event: MessageEvent) => {
      const parsed = parseRequest(
        { source: event.source, origin: event.origin, data: event.data },
        { source: frame.current?.contentWindow ?? null, origin: framed.expectedOrigin, nonce },
      );
      if (parsed.kind === 'foreign') return;
      const callId = parsed.kind === 'invalid' ? parsed.id : parsed.request.id;
      if (!limit.allow(Date.now())) { post(callId, fail('too_many_requests', 'too many calls; wait a moment')); return; }
      if (parsed.kind === 'invalid') { post(callId, fail('invalid_request', parsed.reason)); return; }
      const request = parsed.request;
      if (request.method === 'close') { close(); return; }
      if (request.method === 'getProfile') { profile(app).then((answer) => post(callId, answer), (caught) => post(callId, failFrom(caught))); return; }
      if (sheetOpen) { post(callId, fail('busy', 'Plaza is already answering another call')); return; }
      sheetOpen = true;
      withTimeout(run(request), () => setSheet(null))
        .then((answer) => post(callId, answer))
        .finally(() => { sheetOpen = false; });
    };
    window.addEventListener('message', onMessage);
    return () => { live = false; window.removeEventListener('message', onMessage); };
  }, [app, framed?.src]);

  return (
    <section class="miniapp-runner" aria-label={t('miniapp.runner', { name })}>
      <header class="miniapp-bar" role="toolbar" aria-label={t('miniapp.bar')}>
        <span />
        <h1 class="ellipsis">{name}</h1>
        <button type="button" class="icon-button" aria-label={t('miniapp.close', { name })} onClick={close}>✕</button>
      </header>
      <ErrorLine error={error} />
      {app && !framed && <p class="error pad" role="alert">{t('miniapp.bad_url')}</p>}
      {!app && !error && <div class="splash" aria-busy="true">{t('common.loading')}</div>}
      {framed && (
        <iframe ref={frame} class="miniapp-frame" src={framed.src} sandbox={framed.sandbox} title={name}
          referrerpolicy="no-referrer" allow="" />
      )}
      {sheet?.node}
    </section>
  );
}

// ---- login ---------------------------------------------------------------------------

/** The authorization code flow for the app, run by Plaza on the app's behalf: the app's
 *  first registered redirect URI, its PKCE challenge, consent when the user has not
 *  granted these scopes yet; the code goes back to the app, whose server redeems it. */
async function login(
  app: MiniApp,
  params: { scope: string; state: string; code_challenge: string; nonce?: string },
  askConsent: (scopes: string[]) => Promise<boolean | null>,
): Promise<Answer> {
  const redirectUri = app.redirect_uris[0];
  if (!redirectUri) return fail('invalid_request', 'the app has no redirect URI');
  const request: Record<string, string> = {
    client_id: app.client_id, redirect_uri: redirectUri, response_type: 'code', scope: params.scope, state: params.state,
    code_challenge: params.code_challenge, code_challenge_method: 'S256',
  };
  if (params.nonce !== undefined) request.nonce = params.nonce;
  const view = await api<ConsentView>('GET', `/oauth/consent?${new URLSearchParams(request)}`);
  if (view.redirect_to) {
    const refused = codeFromRedirect(view.redirect_to);
    return fail('error' in refused ? refused.error : 'server_error', 'the sign-in request was refused');
  }
  if (!view.already_granted) {
    const approved = await askConsent(view.scopes);
    if (approved === null) return fail('cancelled', 'the user closed the sign-in');
    if (!approved) return fail('access_denied', 'the user did not let the app in');
  }
  const { redirect_to } = await api<{ redirect_to: string }>('POST', '/oauth/authorize', { ...request, approve: true });
  const answer = codeFromRedirect(redirect_to);
  if ('error' in answer) return fail(answer.error, 'the sign-in did not give a code');
  return ok({ code: answer.code, state: answer.state, redirect_uri: redirectUri });
}

function ConsentSheet({ app, scopes, finish }: { app: MiniApp; scopes: string[]; finish: (approved: boolean | null) => void }) {
  return (
    <Dialog title={t('consent.title')} onClose={() => finish(null)}>
      <div class="form consent">
        <p data-testid="consent-sentence">{consentSentence(app.name, scopes)}</p>
        {app.description && <p class="muted">{app.description}</p>}
        <ul class="muted small">
          {scopes.map((scope) => <li key={scope}>{t(`consent.scope.${scope}` as TextKey)}</li>)}
        </ul>
        <button type="button" class="primary" onClick={() => finish(true)}>{t('consent.allow')}</button>
        <button type="button" onClick={() => finish(false)}>{t('consent.deny')}</button>
      </div>
    </Dialog>
  );
}

// ---- profile -------------------------------------------------------------------------

/** The user's name and photo, only for an app they granted `profile`. */
async function profile(app: MiniApp): Promise<Answer> {
  let cursor: string | null = null;
  for (let page = 0; page < AUTHORIZATION_PAGES_MAX; page++) {
    const found: { items: { app_id: string; scopes: string[] }[]; next_cursor: string | null } = await api('GET',
      `/me/authorizations?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    const grant = found.items.find((item) => item.app_id === app.id);
    if (grant) {
      if (!grant.scopes.includes('profile')) break;
      const me = store.get().me!;
      return ok({ name: me.display_name, picture: me.avatar_url ? new URL(me.avatar_url, location.origin).href : null });
    }
    if (!found.next_cursor) break;
    cursor = found.next_cursor;
  }
  return fail('insufficient_scope', 'the user has not let this app see their profile; call login with the profile scope first');
}

// ---- Plaza Pay -----------------------------------------------------------------------

/** Reads the order first: one already paid is answered at once; another app's order is
 *  not this app's to ask for, and is answered as not found, showing nothing. */
async function pay(
  app: MiniApp,
  orderId: string,
  askPay: (order: PayOrder | null, problem: unknown) => Promise<Answer>,
): Promise<Answer> {
  let order: PayOrder;
  try {
    order = await api<PayOrder>('GET', `/pay/orders/${encodeURIComponent(orderId)}`);
  } catch (caught) {
    return askPay(null, caught);
  }
  if (order.app_id !== app.id) return fail('pay_order_not_found', 'no such pay order for this app');
  if (order.status === 'paid') return ok({ status: 'paid', order_id: order.id });
  const problem = order.status === 'expired' || Date.parse(order.expires_at) <= Date.now()
    ? new ApiError(409, 'pay_order_expired', 'this pay order has expired') : null;
  return askPay(order, problem);
}

/** Codes after which confirming again cannot help. */
const FINAL_PAY_PROBLEMS = ['pay_order_expired', 'pay_order_not_found'];

function PaySheet({ order, problem, finish }: { order: PayOrder | null; problem: unknown; finish: (answer: Answer) => void }) {
  const balances = store.use((s) => s.balances);
  const [error, setError] = useState<unknown>(problem);
  const [busy, setBusy] = useState(false);
  useEffect(() => { void loadWallet().catch(() => {}); }, []);
  const balance = order ? balances?.find((b) => b.currency === order.currency) : undefined;
  const code = error instanceof ApiError ? error.code : null;
  const final = code !== null && FINAL_PAY_PROBLEMS.includes(code);
  const cancel = () => {
    // Escape also reaches this sheet while the PIN pad is over it; that closes the pad only.
    if (pinAsk.get().ask) return;
    finish(code ? fail(code, (error as ApiError).message) : fail('cancelled', 'the user cancelled the payment'));
  };
  const confirm = async () => {
    if (!order) return;
    setBusy(true); setError(null);
    try {
      // With a PIN set, the server asks for it (`pin_required`) and the PIN pad opens.
      const paid = await withPin((pin) => api<PayOrder>('POST', `/pay/orders/${encodeURIComponent(order.id)}/confirm`, pin ? { pin } : {}));
      void loadWallet().catch(() => {});
      finish(ok({ status: 'paid', order_id: paid.id }));
    } catch (caught) {
      if (!isCancelled(caught)) setError(caught);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('miniapp.pay_title')} onClose={cancel}>
      <div class="form pay-sheet">
        {order && (
          <>
            <p class="center">{t('miniapp.pay_to', { app: order.app_name })}</p>
            <p class="pay-amount center" data-testid="pay-amount" aria-label={`${t('miniapp.pay_amount')}: ${formatMoney(order.amount, order.currency)}`}>
              {formatMoney(order.amount, order.currency)}
            </p>
            {order.description && <p class="center">{t('miniapp.pay_description')}: {order.description}</p>}
            {balance && <p class="muted small center" data-testid="pay-available">{t('miniapp.pay_available', { amount: formatMoney(balance.available, balance.currency) })}</p>}
          </>
        )}
        {code === 'payments_locked' || code === 'pin_locked'
          ? <p class="error" role="alert">{code === 'payments_locked' ? t('error.payments_locked', { detail: (error as ApiError).message }) : t('error.pin_locked')}</p>
          : <ErrorLine error={error} currency={order?.currency} />}
        <button type="button" class="primary" disabled={busy || !order || final} onClick={confirm}>{t('miniapp.pay_confirm')}</button>
        <button type="button" disabled={busy} onClick={cancel}>{t('miniapp.pay_cancel')}</button>
      </div>
    </Dialog>
  );
}

// ---- share to a chat -----------------------------------------------------------------

function SharePicker({ app, title, path, finish }: { app: MiniApp; title: string; path: string; finish: (answer: Answer) => void }) {
  const conversations = store.use((s) => s.conversations);
  store.use((s) => s.users);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => { void loadConversations().catch(setError); }, []);
  const list = Object.values(conversations).sort((a, b) => b.last_activity_at.localeCompare(a.last_activity_at));
  const share = async (conversationId: string) => {
    setBusy(true); setError(null);
    try {
      await api('POST', `/miniapps/${encodeURIComponent(app.id)}/share`, { conversation_id: conversationId, title, path });
      finish(ok({ conversation_id: conversationId }));
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('miniapp.share_title')} onClose={() => finish(fail('cancelled', 'the user did not pick a chat'))}>
      <p class="muted">{t('miniapp.share_what', { title, app: app.name })}</p>
      <ul class="list" aria-label={t('miniapp.share_title')}>
        {list.map((conversation) => (
          <li key={conversation.id}>
            <button type="button" class="list-button" disabled={busy} onClick={() => share(conversation.id)}>{conversationTitle(conversation)}</button>
          </li>
        ))}
      </ul>
      {list.length === 0 && <p class="muted">{t('chats.empty')}</p>}
      <ErrorLine error={error} />
    </Dialog>
  );
}
