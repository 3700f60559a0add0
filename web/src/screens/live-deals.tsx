// In-stream deals on the Live screens (API.md "Live"): the deal card over the video with
// its countdown and units left, the sold ticker, and the host's "Start a deal" form with the
// running deal and the room's orders, units and revenue.
//
// The countdown runs from the server's `remaining_ms` on the monotonic clock
// (`performance.now()`), not from `ends_at` against the phone's wall clock, which may be
// minutes off; and only the countdown re-renders each second, not the screen around it.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../lib/api';
import { errorText, t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { dealEndsAt, loadSales, mediaIdOf, seen, startDeal } from '../lib/live';
import type { JoinedRoom, LiveDeal, LiveRoom, LiveSales, SeenDeal, SoldLine } from '../lib/live';
import { formatMoney, parseMoney } from '../lib/money';
import { useLoaded } from '../lib/shop';
import type { Product } from '../lib/shop';
import { AuthImage, ErrorLine } from '../lib/ui';

/** How long one "Mia bought 2 × Trail mix" line stays on the video. */
const SOLD_SHOWN_MS = 4000;
/** How often the host's totals are read while live, besides after each `live.sold`. */
const SALES_POLL_MS = 3000;

/** The deal on screen: the socket's latest word on it, else the fetched room's. */
export function useDeal(room: LiveRoom | null, joined: JoinedRoom | undefined): SeenDeal | null {
  // The fetched room's deal is stamped once per fetch, so its countdown does not restart.
  const [fetched, setFetched] = useState<SeenDeal | null>(null);
  useEffect(() => { setFetched(room?.deal && !room.deal.ended ? seen(room.deal) : null); }, [room]);
  if (joined && joined.deal !== undefined) return joined.deal;
  return fetched;
}

/** "1:05", ticking on its own: the one element that changes every second. */
export function Countdown({ endsAt, onDone }: { endsAt: number; onDone?: () => void }) {
  const [now, setNow] = useState(() => performance.now());
  const left = Math.max(0, endsAt - now);
  useEffect(() => {
    if (left <= 0) { onDone?.(); return; }
    // Wake when the shown second changes, measured from this moment: a new frame moves
    // `endsAt` every second, and a delay measured from a stale `now` would be put off forever.
    const leftNow = endsAt - performance.now();
    const timer = window.setTimeout(() => setNow(performance.now()), Math.max(0, leftNow % 1000) + 20);
    return () => window.clearTimeout(timer);
  }, [now, endsAt]);
  const seconds = Math.ceil(left / 1000);
  return <span class="deal-countdown" role="timer" data-testid="deal-countdown">{Math.floor(seconds / 60)}:{String(seconds % 60).padStart(2, '0')}</span>;
}

/** The deal over the video: product, deal price, units left, countdown and Buy. */
export function DealCard({ deal, onBuy }: { deal: SeenDeal; onBuy: () => void }) {
  const [over, setOver] = useState(false);
  useEffect(() => setOver(false), [deal.flash_sale_id]);
  const title = deal.product?.title ?? '';
  const photo = mediaIdOf(deal.product?.photo_url);
  const price = formatMoney(deal.price.amount, deal.price.currency);
  const soldOut = deal.remaining <= 0;
  return (
    <div class="live-deal" data-testid="live-deal" role="group" aria-label={t('live.deal_label', { title })}>
      {photo ? <AuthImage mediaId={photo} alt="" className="live-pinned-photo" /> : <span class="live-pinned-photo placeholder" aria-hidden="true">⚡</span>}
      <div class="live-pinned-text">
        <span class="deal-flag small">⚡ {t('live.deal')} · <Countdown key={deal.flash_sale_id} endsAt={dealEndsAt(deal)} onDone={() => setOver(true)} /></span>
        <strong class="ellipsis">{title}</strong>
        <span><span class="shop-price">{price}</span>{' '}
          <span class="small" data-testid="deal-left">{soldOut ? t('shop.flash_sold_out') : t('shop.flash_left', { n: deal.remaining, total: deal.quantity })}</span></span>
      </div>
      <button type="button" class="primary red small-button" aria-label={t('live.deal_buy', { title, price })}
        disabled={soldOut || over} onClick={onBuy}>{t('live.buy')}</button>
    </div>
  );
}

/** "Mia bought 2 × Trail mix", each line for a few seconds. */
export function SoldTicker({ lines }: { lines: SoldLine[] }) {
  const [now, setNow] = useState(() => performance.now());
  useEffect(() => setNow(performance.now()), [lines]);
  // A line that arrived after `now` was read is shown too (its age is negative).
  const shown = lines.filter((line) => now - line.seen_at < SOLD_SHOWN_MS);
  useEffect(() => {
    const oldest = shown[0];
    if (!oldest) return;
    const timer = window.setTimeout(() => setNow(performance.now()), SOLD_SHOWN_MS - (now - oldest.seen_at) + 20);
    return () => window.clearTimeout(timer);
  }, [now]);
  if (!shown.length) return null;
  return (
    <ul class="live-sold" aria-live="polite" aria-label={t('live.sold_label')}>
      {shown.map((line) => (
        <li key={line.key} data-testid="live-sold">
          🛍️ {t('live.sold', { name: line.buyer_name, n: line.quantity, title: line.product_title })}
        </li>
      ))}
    </ul>
  );
}

// ---- the host's side -----------------------------------------------------------------------

type DealField = 'sku_id' | 'price' | 'quantity' | 'duration_s' | 'per_user_limit';
const DEAL_FIELDS: DealField[] = ['sku_id', 'price', 'quantity', 'duration_s', 'per_user_limit'];

/** Which field a server's refusal belongs beside, and in what words (else the form's foot). */
function dealProblem(error: unknown): { field: DealField; text: string } | null {
  if (!(error instanceof ApiError)) return null;
  const raw = (error.field ?? '').replace(/\.currency$|\.amount$/, '');
  const field = DEAL_FIELDS.find((name) => name === raw);
  if (error.code === 'out_of_stock') return { field: 'quantity', text: t('live.deal_rule.stock') };
  if (error.code === 'product_not_in_shop' || error.code === 'product_archived') return { field: 'sku_id', text: errorText(error) };
  if (!field) return null;
  const rule = error.code === 'invalid_field' ? (`live.deal_rule.${field}` as TextKey) : null;
  return { field, text: rule ? t(rule) : errorText(error) };
}

/** The host's deals: the running one with its countdown and units left, else the form that
 *  starts one; and what the room's deals sold, read again after each sale and every few seconds. */
export function HostDeals({ room, joined }: { room: LiveRoom; joined: JoinedRoom | undefined }) {
  const deal = useDeal(room, joined);
  // The answer to the start, shown until the socket's `live.deal` replaces it; an ended
  // frame clears it.
  const [started, setStarted] = useState<SeenDeal | null>(null);
  useEffect(() => { if (joined?.deal === null) setStarted(null); }, [joined?.deal]);
  const running = deal ?? started;
  const [over, setOver] = useState(false);
  useEffect(() => setOver(false), [running?.flash_sale_id]);
  return (
    <div class="pad host-deals" data-testid="host-deals">
      <h2>{t('live.deals')}</h2>
      <SalesLine roomId={room.id} soldFrames={joined?.soldFrames ?? 0} />
      {running && !over ? (
        <div class="host-deal" data-testid="host-deal" role="group" aria-label={t('live.deal_label', { title: running.product?.title ?? '' })}>
          <strong>⚡ {running.product?.title} · {formatMoney(running.price.amount, running.price.currency)}</strong>
          <span> · <Countdown key={running.flash_sale_id} endsAt={dealEndsAt(running)} onDone={() => setOver(true)} /></span>
          <br /><span class="small" data-testid="deal-left">{running.remaining <= 0 ? t('shop.flash_sold_out') : t('shop.flash_left', { n: running.remaining, total: running.quantity })}</span>
        </div>
      ) : (
        <DealForm room={room} onStarted={(answer) => setStarted(seen(answer))} />
      )}
    </div>
  );
}

function SalesLine({ roomId, soldFrames }: { roomId: string; soldFrames: number }) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => { if (document.visibilityState === 'visible') setTick((n) => n + 1); }, SALES_POLL_MS);
    return () => window.clearInterval(timer);
  }, []);
  const [sales, error] = useLoaded<LiveSales>(() => loadSales(roomId), [roomId, soldFrames, tick]);
  const revenue = sales?.revenue.map((money) => formatMoney(money.amount, money.currency)).join(' + ');
  return (
    <>
      {sales && (
        <p class="host-sales" data-testid="host-sales">
          {t('live.sales', { orders: sales.orders, units: sales.units, revenue: revenue || '—' })}
        </p>
      )}
      {!sales && <ErrorLine error={error} />}
    </>
  );
}

function DealForm({ room, onStarted }: { room: LiveRoom; onStarted: (deal: LiveDeal) => void }) {
  const [products, loadError] = useLoaded<Product[]>(
    () => Promise.all(room.products.map((card) => api<Product>('GET', `/products/${encodeURIComponent(card.id)}`))),
    [room.products.map((card) => card.id).join(',')]);
  const skus = (products ?? []).filter((product) => product.status === 'active')
    .flatMap((product) => product.skus.map((sku) => ({ product, sku })));
  const [skuId, setSkuId] = useState('');
  const [price, setPrice] = useState('');
  const [quantity, setQuantity] = useState('10');
  const [seconds, setSeconds] = useState('60');
  const [limit, setLimit] = useState('1');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [local, setLocal] = useState<{ field: DealField; text: string } | null>(null);
  const chosen = skus.find((option) => option.sku.id === skuId) ?? skus[0];
  if (!room.products.length) return <p class="small muted">{t('live.deal_no_products')}</p>;
  if (!products) return <ErrorLine error={loadError} />;
  if (!chosen) return <p class="small muted">{t('live.deal_no_products')}</p>;
  const currency = chosen.sku.price.currency;

  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null); setLocal(null);
    const amount = parseMoney(price, currency);
    if (amount === null || amount <= 0) { setLocal({ field: 'price', text: t('live.deal_rule.price') }); return; }
    setBusy(true);
    try {
      onStarted(await startDeal(room.id, {
        sku_id: chosen.sku.id, price: { amount, currency }, quantity: Number(quantity),
        duration_s: Number(seconds), per_user_limit: Number(limit),
      }));
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  const problem = local ?? dealProblem(error);
  const beside = (field: DealField) => problem?.field === field
    ? <small id={`deal-${field}-error`} class="field-error" data-testid={`deal-${field}-error`}>{problem.text}</small> : null;
  const described = (field: DealField) => problem?.field === field
    ? { 'aria-invalid': true, 'aria-describedby': `deal-${field}-error` } : {};
  const number = (field: DealField, label: string, value: string, set: (text: string) => void, min: number, max: number) => (
    <>
      <label>{label}
        <input name={field} type="number" inputMode="numeric" required min={min} max={max} value={value}
          onInput={(e) => set(e.currentTarget.value)} {...described(field)} />
      </label>
      {beside(field)}
    </>
  );
  return (
    <form class="form" onSubmit={submit} aria-labelledby="deal-form-title" noValidate>
      <h3 id="deal-form-title">{t('live.start_deal')}</h3>
      <label>{t('live.deal_product')}
        <select name="sku_id" value={chosen.sku.id} onChange={(e) => setSkuId(e.currentTarget.value)} {...described('sku_id')}>
          {skus.map(({ product, sku }) => (
            <option value={sku.id}>{product.skus.length > 1 ? `${product.title} · ${sku.name}` : product.title}
              {' '}({formatMoney(sku.price.amount, sku.price.currency)}, {t('live.deal_in_stock', { n: sku.stock })})</option>
          ))}
        </select>
      </label>
      {beside('sku_id')}
      <label>{t('live.deal_price', { currency })}
        <input name="price" inputMode="decimal" required value={price} placeholder={formatMoney(chosen.sku.price.amount, currency)}
          onInput={(e) => setPrice(e.currentTarget.value)} {...described('price')} />
      </label>
      {beside('price')}
      {number('quantity', t('live.deal_units'), quantity, setQuantity, 1, 100000)}
      {number('duration_s', t('live.deal_seconds'), seconds, setSeconds, 10, 300)}
      {number('per_user_limit', t('live.deal_limit'), limit, setLimit, 1, 99)}
      {!problem && <ErrorLine error={error} />}
      <button type="submit" class="primary red" disabled={busy}>⚡ {t('live.start_deal')}</button>
    </form>
  );
}
