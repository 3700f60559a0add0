// Shared pieces: dialogs, the PIN pad, avatars, error lines, authenticated images, the
// connection banner, the segmented switch of a tab's sections.
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, newId } from './api';
import { createStore } from './store';
import { errorText, t } from './i18n';
import type { TextKey } from './i18n';
import { formatMoney, parseMoney } from './money';
import { getToken } from './api';
import { conversationTitle, store } from './data';

export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>('input, select, textarea, button:not(.dialog-close)');
    first?.focus();
    const onKey = (event: KeyboardEvent) => { if (event.key === 'Escape') props.onClose(); };
    window.addEventListener('keydown', onKey);
    return () => { window.removeEventListener('keydown', onKey); previous?.focus?.(); };
  }, []);
  return (
    <div class="overlay" onClick={(event) => { if (event.target === event.currentTarget) props.onClose(); }}>
      <div class="dialog" role="dialog" aria-modal="true" aria-label={props.title} ref={ref}>
        <header class="dialog-head">
          <h2>{props.title}</h2>
          <button class="icon-button dialog-close" aria-label={t('common.close')} onClick={props.onClose}>✕</button>
        </header>
        {props.children}
      </div>
    </div>
  );
}

/** An error as a sentence. With the payment's `currency`, "not enough money" also says how
 *  much there is, from the problem's typed `available` member. */
export function ErrorLine({ error, currency }: { error: unknown; currency?: string }) {
  if (!error) return null;
  let text = typeof error === 'string' ? error : errorText(error);
  if (currency && error instanceof ApiError && error.code === 'insufficient_funds' && typeof error.extra.available === 'number') {
    text = t('error.insufficient_funds_have', { available: formatMoney(error.extra.available, currency) });
  }
  return <p class="error" role="alert">{text}</p>;
}

/** What the user can spend, shown beside an amount field (its id for `aria-describedby`). */
export function AvailableLine({ id, currency }: { id: string; currency: string }) {
  const balance = store.use((s) => s.balances?.find((b) => b.currency === currency));
  if (!balance) return null;
  return <small id={id} class="hint" data-testid="send-available">{t('wallet.can_send', { amount: formatMoney(balance.available, currency) })}</small>;
}

export function Avatar({ name, size = 40 }: { name: string; size?: number }) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) | 0;
  const hue = Math.abs(hash) % 360;
  const initial = [...(name.trim() || '?')][0].toUpperCase();
  return (
    <span class="avatar" aria-hidden="true" style={{ width: size, height: size, background: `hsl(${hue} 55% 48%)`, fontSize: size * 0.45 }}>
      {initial}
    </span>
  );
}

// Images need the bearer token, so they are fetched and shown from blob URLs.
const imageUrls = new Map<string, Promise<string>>();
export function AuthImage({ mediaId, alt, fallback, className = 'chat-image' }: { mediaId: string; alt: string; fallback?: string; className?: string }) {
  const [url, setUrl] = useState<string | null>(fallback ?? null);
  useEffect(() => {
    let request = imageUrls.get(mediaId);
    if (!request) {
      request = fetch(`/api/v1/media/${encodeURIComponent(mediaId)}`, { headers: { authorization: `Bearer ${getToken()}` } })
        .then((response) => { if (!response.ok) throw new Error(String(response.status)); return response.blob(); })
        .then((blob) => URL.createObjectURL(blob));
      request.catch(() => imageUrls.delete(mediaId));
      imageUrls.set(mediaId, request);
    }
    let live = true;
    request.then((value) => live && setUrl(value)).catch(() => {});
    return () => { live = false; };
  }, [mediaId]);
  return url ? <img class={className} src={url} alt={alt} /> : <div class={`${className} placeholder`} aria-label={alt || undefined} />;
}

// ---- the PIN pad ---------------------------------------------------------------------

interface PinAsk { title: string; error: unknown; resolve: (pin: string | null) => void }
export const pinAsk = createStore<{ ask: PinAsk | null }>({ ask: null });

export function askPin(title: string, error: unknown = null): Promise<string | null> {
  return new Promise((resolve) => pinAsk.set({ ask: { title, error, resolve } }));
}

/** Runs a payment; when the server wants the PIN, asks for it and runs it again. */
export async function withPin<T>(run: (pin?: string) => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== 'pin_required') throw error;
  }
  let problem: unknown = null;
  for (;;) {
    const pin = await askPin(t('pin.title'), problem);
    if (pin === null) throw new ApiError(0, 'cancelled', 'cancelled');
    try {
      return await run(pin);
    } catch (error) {
      if (error instanceof ApiError && error.code === 'wrong_pin') { problem = error; continue; }
      throw error;
    }
  }
}

export function isCancelled(error: unknown) { return error instanceof ApiError && error.code === 'cancelled'; }

/** A dialog that pays an amount typed in `currency`: the amount's text, the error to show,
 *  whether a payment is running, and `submit`, which checks the amount, pays it through
 *  `pay` (asking for the PIN when the server wants it) with one idempotency key for every
 *  try of this dialog, so that a retry never pays twice, and then runs `done`. */
export function usePayment(currency: string) {
  const [amount, setAmount] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const key = useRef(newId());
  const submit = (
    pay: (minor: number, pin: string | undefined, idempotencyKey: string) => Promise<unknown>,
    done: (minor: number) => unknown,
  ) => async (event: Event) => {
    event.preventDefault();
    const minor = parseMoney(amount, currency);
    if (minor === null) { setError(t('error.amount')); return; }
    setBusy(true); setError(null);
    try {
      await withPin((pin) => pay(minor, pin, key.current));
      await done(minor);
    } catch (caught) { if (!isCancelled(caught)) setError(caught); } finally { setBusy(false); }
  };
  return { amount, setAmount, error, setError, busy, submit };
}

export function PinPad() {
  const ask = pinAsk.use((s) => s.ask);
  const [digits, setDigits] = useState('');
  useEffect(() => setDigits(''), [ask]);
  if (!ask) return null;
  const finish = (pin: string | null) => { pinAsk.set({ ask: null }); ask.resolve(pin); };
  const press = (digit: string) => {
    const next = (digits + digit).slice(0, 6);
    setDigits(next);
    if (next.length === 6) setTimeout(() => finish(next), 80);
  };
  const onKey = (event: KeyboardEvent) => {
    if (/^[0-9]$/.test(event.key)) { event.preventDefault(); press(event.key); }
    else if (event.key === 'Backspace') setDigits(digits.slice(0, -1));
  };
  return (
    <Dialog title={ask.title} onClose={() => finish(null)}>
      <div class="pin" onKeyDown={onKey}>
        <div class="pin-dots" role="status" aria-label={`${digits.length} / 6`}>
          {Array.from({ length: 6 }, (_, i) => <span class={i < digits.length ? 'filled' : ''} />)}
        </div>
        <ErrorLine error={ask.error} />
        <div class="pin-keys">
          {['1', '2', '3', '4', '5', '6', '7', '8', '9'].map((d) => (
            <button type="button" aria-label={t('pin.digit', { d })} onClick={() => press(d)}>{d}</button>
          ))}
          <button type="button" onClick={() => finish(null)}>{t('pin.cancel')}</button>
          <button type="button" aria-label={t('pin.digit', { d: '0' })} onClick={() => press('0')}>0</button>
          <button type="button" aria-label={t('pin.delete')} onClick={() => setDigits(digits.slice(0, -1))}>⌫</button>
        </div>
      </div>
    </Dialog>
  );
}

export { api };

/** Says so while the socket is not live (connecting, or offline), on every screen that shows live data. */
export function ConnectionBanner() {
  const connection = store.use((s) => s.connection);
  if (connection === 'online') return null;
  return (
    <div class={`banner ${connection}`} role="status" data-testid="connection">
      {connection === 'offline' ? t('chat.offline') : t('chat.connecting')}
    </div>
  );
}

/** A labelled input with the app's own sentence for its rule next to it (not the browser's
 *  tooltip), named as its description; `name` is also the input's name and the ids' stem. */
export function Field(props: {
  name: string; label: string; hint?: string; problem?: TextKey; input: JSX.InputHTMLAttributes<HTMLInputElement>;
}) {
  const hintId = `${props.name}-hint`;
  const errorId = `${props.name}-error`;
  const describedBy = [props.problem ? errorId : '', props.hint ? hintId : ''].filter(Boolean).join(' ') || undefined;
  return (
    <>
      <label>
        {props.label}
        <input name={props.name} {...props.input} aria-invalid={props.problem ? true : undefined} aria-describedby={describedBy} />
      </label>
      {props.problem && <small id={errorId} class="field-error" data-testid={`${props.name}-error`}>{t(props.problem)}</small>}
      {props.hint && <small id={hintId} class="hint">{props.hint}</small>}
    </>
  );
}

/** A tab's switch between its sections (rides or drive, For You or Following, …): a group
 *  of toggle buttons named by `label`, the `selected` one pressed. */
export function Segmented<Key extends string>({ label, selected, options, onSelect }: {
  label: string; selected: Key; options: [Key, string][]; onSelect: (key: Key) => void;
}) {
  return (
    <div class="segmented" role="group" aria-label={label}>
      {options.map(([key, text]) => (
        <button type="button" key={key} aria-pressed={selected === key} onClick={() => onSelect(key)}>{text}</button>
      ))}
    </div>
  );
}

/** Picks one of the user's chats (the most recently active first) and shares something
 *  into it with `share`; `label`, `button` and `shared` are its words. A share is done for
 *  good `once`; otherwise picking another chat offers to share there too. */
export function ChatShare({ share, label, button, shared, once = false }: {
  share: (conversationId: string) => Promise<unknown>; label: string; button: string; shared: string; once?: boolean;
}) {
  const conversations = store.use((s) => s.conversations);
  store.use((s) => s.users);
  const [to, setTo] = useState('');
  const [done, setDone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const list = Object.values(conversations).sort((a, b) => b.last_activity_at.localeCompare(a.last_activity_at));
  if (!list.length) return null;
  const run = async () => {
    setError(null);
    try { await share(to || list[0].id); setDone(true); } catch (caught) { setError(caught); }
  };
  return (
    <div class="share-ride">
      <label>{label}
        <select value={to || list[0].id} onChange={(e) => { setTo(e.currentTarget.value); if (!once) setDone(false); }}>
          {list.map((c) => <option value={c.id}>{conversationTitle(c)}</option>)}
        </select>
      </label>
      <button type="button" onClick={run} disabled={done}>{done ? shared : button}</button>
      <ErrorLine error={error} />
    </div>
  );
}
