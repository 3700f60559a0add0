// The Shop tab (API.md "Shop"), loaded on demand: browse and search, a product with its
// photos, SKUs, forming groups and flash sale, the checkout (address remembered, the
// wallet's PIN pad), the buyer's orders, and the merchant's shop in `merchant.tsx`.
//
// Paths: /shop (browse), /shop/products/:id (and …/join/:group from a chat card),
// /shop/orders, /shop/orders/:id, /shop/mine (the merchant).
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, newId } from '../lib/api';
import type { Page } from '../lib/api';
import { displayName, loadWallet, store } from '../lib/data';
import { starsText, t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { match, navigate, route } from '../lib/router';
import {
  currentFlashSale, loadGroupBuy, loadOrder, loadOrders, loadShop, noteOrder, saveAddress, savedAddress, shareGroupBuy,
  shareProduct, shop, timeLeft, useLoaded, useNow,
} from '../lib/shop';
import type { Address, Order, Product, Sku } from '../lib/shop';
import { AuthImage, ChatShare, ConnectionBanner, Dialog, ErrorLine, isCancelled, Segmented, withPin } from '../lib/ui';
import { MerchantView } from './merchant';

export function ShopScreen() {
  const path = route.use((s) => s.path);
  let params;
  if ((params = match('/shop/products/:id/join/:group', path))) return <ProductView id={params.id} joinGroup={params.group} />;
  if ((params = match('/shop/products/:id', path))) return <ProductView id={params.id} />;
  if ((params = match('/shop/orders/:id', path))) return <OrderView id={params.id} />;
  const section = path === '/shop/orders' ? 'orders' : path === '/shop/mine' ? 'mine' : 'browse';
  return (
    <section class="shop" aria-labelledby="shop-title">
      <header class="topbar rides-top">
        <h1 id="shop-title">{t('shop.title')}</h1>
        <Segmented label={t('shop.section')} selected={section}
          onSelect={(key) => navigate(key === 'browse' ? '/shop' : `/shop/${key}`)}
          options={[['browse', t('shop.browse')], ['orders', t('shop.orders')], ['mine', t('shop.mine')]]} />
      </header>
      <ConnectionBanner />
      {section === 'browse' && <Browse />}
      {section === 'orders' && <MyOrders />}
      {section === 'mine' && <MerchantView />}
    </section>
  );
}

export default ShopScreen;

// ---- browse ----------------------------------------------------------------------------

function Browse() {
  const [query, setQuery] = useState('');
  const [asked, setAsked] = useState('');
  useEffect(() => { const timer = setTimeout(() => setAsked(query.trim()), 250); return () => clearTimeout(timer); }, [query]);
  const [page, error] = useLoaded(() => api<Page<Product>>('GET', `/products?limit=50${asked ? `&q=${encodeURIComponent(asked)}` : ''}`), [asked]);
  return (
    <div>
      <form class="search pad" role="search" onSubmit={(e) => { e.preventDefault(); setAsked(query.trim()); }}>
        <input type="search" aria-label={t('shop.search')} placeholder={t('shop.search_hint')} value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
      </form>
      <ErrorLine error={error} />
      {page && !page.items.length && <p class="muted pad">{asked ? t('shop.no_results') : t('shop.empty')}</p>}
      <ul class="product-grid" aria-label={t('shop.products')}>
        {(page?.items ?? []).map((product) => <li><ProductTile product={product} /></li>)}
      </ul>
    </div>
  );
}

export function Photo({ product, index = 0 }: { product: Product; index?: number }) {
  const id = product.media_ids[index];
  return id ? <AuthImage mediaId={id} alt={product.title} className="product-photo" /> : <div class="product-photo placeholder" aria-label={t('shop.no_photo')} />;
}

function lowestPrice(product: Product) {
  return product.skus.reduce((low, sku) => (sku.price.amount < low.amount ? sku.price : low), product.skus[0].price);
}

function ProductTile({ product }: { product: Product }) {
  const price = lowestPrice(product);
  return (
    <a class="product-tile" href={`/shop/products/${product.id}`} data-testid="product"
      onClick={(e) => { e.preventDefault(); navigate(`/shop/products/${encodeURIComponent(product.id)}`); }}>
      <Photo product={product} />
      <strong class="ellipsis">{product.title}</strong>
      <span class="shop-price">{formatMoney(price.amount, price.currency)}</span>
      <span class="small muted">{product.group_size ? `${t('shop.group_badge', { n: product.group_size })} · ` : ''}{t('shop.sold', { n: product.sold_count })}</span>
    </a>
  );
}

// ---- a product ---------------------------------------------------------------------------

function Rating({ rating }: { rating: Product['rating'] }) {
  if (!rating.count) return <span class="muted small">{t('shop.no_rating')}</span>;
  const avg = rating.average.toFixed(1);
  return <span class="small" aria-label={t('shop.rating_label', { avg, n: rating.count })}>{t('shop.rating', { avg, n: rating.count })}</span>;
}

function Carousel({ product }: { product: Product }) {
  const [index, setIndex] = useState(0);
  const count = product.media_ids.length;
  if (count <= 1) return <div class="carousel"><Photo product={product} /></div>;
  const go = (step: number) => setIndex((index + step + count) % count);
  return (
    <div class="carousel" role="region" aria-roledescription="carousel" aria-label={t('shop.photos')}
      onKeyDown={(e) => { if (e.key === 'ArrowLeft') go(-1); if (e.key === 'ArrowRight') go(1); }}>
      <div role="group" aria-roledescription="slide" aria-label={t('shop.photo_n', { i: index + 1, n: count })}>
        <Photo product={product} index={index} />
      </div>
      <button type="button" class="icon-button carousel-prev" aria-label={t('shop.photo_prev')} onClick={() => go(-1)}>‹</button>
      <button type="button" class="icon-button carousel-next" aria-label={t('shop.photo_next')} onClick={() => go(1)}>›</button>
      <span class="carousel-count small" aria-hidden="true">{index + 1} / {count}</span>
    </div>
  );
}

export type Checkout = { mode: 'alone' } | { mode: 'open' } | { mode: 'join'; groupId: string } | { mode: 'flash'; saleId: string };

function ProductView({ id, joinGroup }: { id: string; joinGroup?: string }) {
  const me = store.use((s) => s.me)!;
  const version = shop.use((s) => s.version);
  const now = useNow();
  const [product, error] = useLoaded(() => api<Product>('GET', `/products/${encodeURIComponent(id)}`), [id, version]);
  const [shopInfo] = useLoaded(() => (product ? loadShop(product.shop_id) : Promise.resolve(null)), [product?.shop_id]);
  const [reviews] = useLoaded(() => api<Page<{ buyer: { display_name: string }; stars: number; text: string | null; created_at: string }>>(
    'GET', `/products/${encodeURIComponent(id)}/reviews?limit=20`), [id, version]);
  const [skuId, setSkuId] = useState<string | null>(null);
  const [checkout, setCheckout] = useState<Checkout | null>(null);
  const joinAsked = useRef(false);
  // From a chat card: open the checkout for that group, on the group's own SKU.
  useEffect(() => {
    if (!joinGroup || joinAsked.current) return;
    joinAsked.current = true;
    loadGroupBuy(joinGroup).then((group) => { setSkuId(group.sku_id); setCheckout({ mode: 'join', groupId: group.id }); }).catch(() => {
      setCheckout({ mode: 'join', groupId: joinGroup });
    });
  }, [joinGroup]);

  const back = (
    <header class="topbar">
      <button class="icon-button" aria-label={t('shop.back')} onClick={() => (history.length > 1 ? history.back() : navigate('/shop'))}>‹</button>
      <h1 class="ellipsis">{product?.title ?? t('shop.title')}</h1>
      <span />
    </header>
  );
  if (!product) return <section>{back}<ErrorLine error={error} />{!error && <p class="muted pad">{t('common.loading')}</p>}</section>;

  const sku: Sku = product.skus.find((s) => s.id === skuId) ?? product.skus[0];
  const sale = currentFlashSale(product, sku.id, now);
  const saleOn = sale && Date.parse(sale.starts_at) <= now;
  const groupPrice = product.group_size && sku.group_price ? sku.group_price : null;
  const groups = product.open_groups ?? [];
  return (
    <section class="product" aria-label={product.title}>
      {back}
      <Carousel product={product} />
      <div class="pad">
        <h2 class="product-title">{product.title}</h2>
        <p class="product-price"><span class="shop-price big" data-testid="price">{formatMoney(sku.price.amount, sku.price.currency)}</span>
          {' '}<Rating rating={product.rating} /> · <span class="small muted">{t('shop.sold', { n: product.sold_count })}</span></p>
        {shopInfo && <p class="small muted">{t('shop.sold_by', { name: shopInfo.name })}</p>}
        {product.skus.length > 1 && (
          <div class="sku-picker" role="group" aria-label={t('shop.option')}>
            {product.skus.map((option) => (
              <button type="button" aria-pressed={option.id === sku.id} onClick={() => setSkuId(option.id)}>{option.name}</button>
            ))}
          </div>
        )}
        <p class="small muted">{sku.stock > 0 ? t('shop.in_stock', { n: sku.stock }) : t('shop.out_of_stock')}</p>
        {sale && (
          <div class="flash" data-testid="flash-sale" role="status">
            <strong>⚡ {saleOn
              ? t('shop.flash_on', { price: formatMoney(sale.price.amount, sale.price.currency), time: timeLeft(sale.ends_at, now) })
              : t('shop.flash_soon', { price: formatMoney(sale.price.amount, sale.price.currency), time: timeLeft(sale.starts_at, now) })}</strong>
            <span class="small">{sale.remaining > 0 ? t('shop.flash_left', { n: sale.remaining, total: sale.quantity }) : t('shop.flash_sold_out')}
              {' · '}{t('shop.flash_limit', { n: sale.per_user_limit })}</span>
            {saleOn && sale.remaining > 0 && (
              <button type="button" class="primary red wide" onClick={() => setCheckout({ mode: 'flash', saleId: sale.id })}>
                {t('shop.flash_buy', { price: formatMoney(sale.price.amount, sale.price.currency) })}
              </button>
            )}
          </div>
        )}
        <div class="actions buy-actions">
          <button type="button" disabled={sku.stock <= 0} onClick={() => setCheckout({ mode: 'alone' })}>
            {t('shop.buy_alone', { price: formatMoney(sku.price.amount, sku.price.currency) })}
          </button>
          {groupPrice && (
            <button type="button" class="primary" disabled={sku.stock <= 0} onClick={() => setCheckout({ mode: 'open' })}>
              {t('shop.start_group', { n: product.group_size!, price: formatMoney(groupPrice.amount, groupPrice.currency) })}
            </button>
          )}
        </div>
        {groupPrice && groups.length > 0 && (
          <>
            <h3>{t('shop.groups_forming')}</h3>
            <ul class="list" aria-label={t('shop.groups_forming')}>
              {groups.map((group) => (
                <li class="row" data-testid="open-group">
                  <div class="row-main">
                    <strong>{group.leader.id === me.id ? t('shop.your_group') : t('shop.group_of', { name: group.leader.display_name })}</strong><br />
                    <span class="small">{group.seats_left === 1 ? t('shop.seat_left') : t('shop.seats_left', { n: group.seats_left })}
                      {' · '}<span role="timer">{t('shop.time_left', { time: timeLeft(group.expires_at, now) })}</span></span>
                  </div>
                  {group.leader.id !== me.id && (
                    <button type="button" class="primary small-button" onClick={() => setCheckout({ mode: 'join', groupId: group.id })}>
                      {t('shop.join')}
                    </button>
                  )}
                </li>
              ))}
            </ul>
          </>
        )}
        <ShareToChat share={(conversationId) => shareProduct(conversationId, product.id)} />
        {product.description && <><h3>{t('shop.description')}</h3><p class="product-description">{product.description}</p></>}
        <h3>{t('shop.reviews')}</h3>
        {!reviews?.items.length && <p class="muted small">{t('shop.no_rating')}</p>}
        <ul class="list" aria-label={t('shop.reviews')}>
          {(reviews?.items ?? []).map((review) => (
            <li class="row"><div class="row-main"><strong>{'★'.repeat(review.stars)}{'☆'.repeat(5 - review.stars)}</strong>
              {' '}<span class="small muted">{review.buyer.display_name}</span>{review.text && <><br />{review.text}</>}</div></li>
          ))}
        </ul>
      </div>
      {checkout && <CheckoutDialog product={product} sku={sku} checkout={checkout} onClose={() => setCheckout(null)} />}
    </section>
  );
}

/** Shares something of the shop into one of the user's chats. */
function ShareToChat({ share }: { share: (conversationId: string) => Promise<unknown> }) {
  return <ChatShare share={share} label={t('shop.share')} button={t('shop.share_button')} shared={t('shop.shared')} />;
}

// ---- checkout ------------------------------------------------------------------------------

const ADDRESS_FIELDS: (keyof Address)[] = ['name', 'line1', 'city', 'postal_code', 'country', 'phone'];

/**
 * The checkout sheet: quantity, the remembered address, then the PIN pad when the wallet
 * asks. A live stream passes `onSku` (the sheet then offers the product's SKUs itself) and
 * `onPlaced` (the order stays in the stream instead of opening the order's page).
 */
export function CheckoutDialog({ product, sku, checkout, onClose, onSku, onPlaced }: {
  product: Product; sku: Sku; checkout: Checkout; onClose: () => void;
  onSku?: (skuId: string) => void; onPlaced?: (order: Order) => void;
}) {
  const me = store.use((s) => s.me)!;
  const [address, setAddress] = useState<Address>(() => savedAddress(me.id));
  const [quantity, setQuantity] = useState(1);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [placed, setPlaced] = useState<Order | null>(null);
  const key = useRef(newId());
  const grouped = checkout.mode === 'open' || checkout.mode === 'join';
  const sale = checkout.mode === 'flash' ? (product.flash_sales ?? []).find((s) => s.id === checkout.saleId) : null;
  const unit = sale ? sale.price : grouped && sku.group_price ? sku.group_price : sku.price;
  const count = grouped ? 1 : quantity;
  const total = unit.amount * count;
  const title = { alone: t('shop.checkout'), open: t('shop.checkout_open'), join: t('shop.checkout_join'), flash: t('shop.checkout_flash') }[checkout.mode];

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true); setError(null);
    saveAddress(me.id, address);
    const group = checkout.mode === 'open' ? { mode: 'open' } : checkout.mode === 'join' ? { mode: 'join', group_id: checkout.groupId } : undefined;
    const item = { sku_id: sku.id, quantity: count, ...(sale ? { flash_sale_id: sale.id } : {}) };
    try {
      const order = await withPin((pin) => api<Order>('POST', '/orders', { items: [item], address, group, pin }, { idempotencyKey: key.current }));
      noteOrder(order);
      void loadWallet().catch(() => {});
      if (checkout.mode === 'open' && order.group_buy_id) setPlaced(order);
      else if (onPlaced) onPlaced(order);
      else navigate(`/shop/orders/${encodeURIComponent(order.id)}`);
    } catch (caught) { if (!isCancelled(caught)) setError(caught); } finally { setBusy(false); }
  };

  if (placed) {
    return (
      <Dialog title={title} onClose={onClose}>
        <p role="status">{t('shop.group_opened', { n: (product.group_size ?? 2) - 1 })}</p>
        <ShareToChat share={(conversationId) => shareGroupBuy(conversationId, placed.group_buy_id!)} />
        <button type="button" class="wide" onClick={() => navigate(`/shop/orders/${encodeURIComponent(placed.id)}`)}>{t('shop.view_order')}</button>
      </Dialog>
    );
  }
  return (
    <Dialog title={title} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <p><strong>{product.title}</strong>{product.skus.length > 1 ? ` · ${sku.name}` : ''}<br />
          <span class="small">{t('shop.unit_price')}: {formatMoney(unit.amount, unit.currency)}</span></p>
        {onSku && product.skus.length > 1 && (
          <div class="sku-picker" role="group" aria-label={t('shop.option')}>
            {product.skus.map((option) => (
              <button type="button" aria-pressed={option.id === sku.id} disabled={option.stock <= 0} onClick={() => onSku(option.id)}>{option.name}</button>
            ))}
          </div>
        )}
        {grouped && product.group_size && sku.group_price && (
          <p class="small muted">{t('shop.group_rule', { n: product.group_size, price: formatMoney(sku.group_price.amount, sku.group_price.currency), hours: 24 })}</p>
        )}
        {!grouped && (
          <label>{t('shop.quantity')}<input name="quantity" type="number" min={1} max={sale ? sale.per_user_limit : 99} required value={quantity}
            onInput={(e) => setQuantity(Math.max(1, Math.min(99, Number(e.currentTarget.value) || 1)))} /></label>
        )}
        <fieldset><legend>{t('shop.address')}</legend>
          {ADDRESS_FIELDS.map((field) => (
            <label>{t(`shop.addr.${field}` as TextKey)}
              <input name={field} required maxLength={200} autoComplete={field === 'phone' ? 'tel' : field === 'postal_code' ? 'postal-code' : undefined}
                value={address[field]} onInput={(e) => setAddress({ ...address, [field]: e.currentTarget.value })} />
            </label>
          ))}
        </fieldset>
        <p class="small muted">{t('shop.held_note', { amount: formatMoney(total, unit.currency) })}</p>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{t('shop.pay', { amount: formatMoney(total, unit.currency) })}</button>
      </form>
    </Dialog>
  );
}

// ---- orders --------------------------------------------------------------------------------

export function statusText(status: string) {
  return t(`order.status.${status}` as TextKey);
}

function MyOrders() {
  const version = shop.use((s) => s.version);
  const [orders, error] = useLoaded(() => loadOrders('buyer'), [version]);
  const known = shop.use((s) => s.orders);
  return (
    <div>
      <ErrorLine error={error} />
      {orders && !orders.length && <p class="muted pad">{t('shop.no_orders')}</p>}
      <ul class="list" aria-label={t('shop.my_orders')}>
        {(orders ?? []).map((listed) => <OrderRow order={known[listed.id] ?? listed} />)}
      </ul>
    </div>
  );
}

export function OrderRow({ order }: { order: Order }) {
  const first = order.items[0];
  return (
    <li>
      <a class="row" href={`/shop/orders/${order.id}`} data-testid="order" onClick={(e) => { e.preventDefault(); navigate(`/shop/orders/${encodeURIComponent(order.id)}`); }}>
        <div class="row-main">
          <strong class="ellipsis">{first?.title}{order.items.length > 1 ? ` +${order.items.length - 1}` : ''}</strong><br />
          <span class="small muted">{first?.sku_name} × {first?.quantity}</span>
        </div>
        <div class="order-side">
          <strong>{formatMoney(order.total.amount, order.total.currency)}</strong><br />
          <span class={`order-status ${order.status}`} data-testid="order-status">{statusText(order.status)}</span>
        </div>
      </a>
    </li>
  );
}

const TIMELINE = ['grouping', 'paid', 'shipped', 'completed'];

function Timeline({ order }: { order: Order }) {
  const steps = order.group_buy_id ? TIMELINE : TIMELINE.slice(1);
  const at = steps.indexOf(order.status === 'refund_requested' || order.status === 'refunded' ? 'shipped' : order.status);
  return (
    <ol class="timeline" aria-label={t('shop.timeline')}>
      {steps.map((step, i) => (
        <li class={i <= at ? 'done' : ''} aria-current={i === at ? 'step' : undefined}>{statusText(step)}</li>
      ))}
      {['cancelled', 'refund_requested', 'refunded'].includes(order.status) && <li class="done final" aria-current="step">{statusText(order.status)}</li>}
    </ol>
  );
}

function OrderView({ id }: { id: string }) {
  const me = store.use((s) => s.me)!;
  const order = shop.use((s) => s.orders[id]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [reason, setReason] = useState('');
  const [asking, setAsking] = useState(false);
  const [stars, setStars] = useState(0);
  const [review, setReview] = useState('');
  const [reviewed, setReviewed] = useState(false);
  const [carrier, setCarrier] = useState('');
  const [tracking, setTracking] = useState('');
  const groupVersion = shop.use((s) => (order?.group_buy_id ? s.groupBuys[order.group_buy_id] : undefined));
  useEffect(() => { loadOrder(id).catch(setError); }, [id]);
  useEffect(() => { if (order?.group_buy_id) void loadGroupBuy(order.group_buy_id).catch(() => {}); }, [order?.group_buy_id, order?.status]);
  store.use((s) => s.users);
  const now = useNow();

  const act = async (action: string, body: object = {}) => {
    setBusy(true); setError(null);
    try {
      const changed = await api<Order | undefined>('POST', `/orders/${encodeURIComponent(id)}/${action}`, body);
      if (changed && (changed as Order).id) noteOrder(changed as Order); else await loadOrder(id);
      void loadWallet().catch(() => {});
      return true;
    } catch (caught) { setError(caught); return false; } finally { setBusy(false); }
  };

  const back = (
    <header class="topbar">
      <button class="icon-button" aria-label={t('shop.back')} onClick={() => navigate(order && order.shop.owner.id === me.id ? '/shop/mine' : '/shop/orders')}>‹</button>
      <h1>{t('shop.order')}</h1><span />
    </header>
  );
  if (!order) return <section>{back}<ErrorLine error={error} />{!error && <p class="muted pad">{t('common.loading')}</p>}</section>;
  const buyer = order.buyer.id === me.id;
  const seller = order.shop.owner.id === me.id;
  const group = groupVersion;
  return (
    <section aria-label={t('shop.order')}>
      {back}
      <div class="pad">
        <p class="order-big-status" role="status" data-testid="order-status">{statusText(order.status)}</p>
        <Timeline order={order} />
        <ul class="list" aria-label={t('shop.items')}>
          {order.items.map((item) => (
            <li class="row"><div class="row-main"><strong>{item.title}</strong><br /><span class="small muted">{item.sku_name} × {item.quantity}</span></div>
              <span>{formatMoney(item.unit_price.amount * item.quantity, item.unit_price.currency)}</span></li>
          ))}
        </ul>
        <p><strong>{t('shop.total')}: {formatMoney(order.total.amount, order.total.currency)}</strong></p>
        {seller && <p class="small">{t('shop.buyer', { name: displayName(order.buyer.id) })}</p>}
        {group && (
          <div class="group-box" data-testid="group">
            <strong>{t('shop.group_status', { status: t(`group.status.${group.status}` as TextKey) })}</strong>
            <span class="small">{' '}{group.members.map((m) => (m as any).display_name ?? displayName(m.id)).join(', ')}</span>
            {group.status === 'forming' && (
              <p class="small">{group.seats_left === 1 ? t('shop.seat_left') : t('shop.seats_left', { n: group.seats_left })}
                {' · '}<span role="timer">{t('shop.time_left', { time: timeLeft(group.expires_at, now) })}</span></p>
            )}
            {group.status === 'forming' && <ShareToChat share={(conversationId) => shareGroupBuy(conversationId, group.id)} />}
          </div>
        )}
        {order.shipment && (
          <p data-testid="shipment">📦 {t('shop.shipment', { carrier: order.shipment.carrier, number: order.shipment.tracking_number })}
            {order.status === 'shipped' && order.shipment.auto_confirm_at && <><br /><span class="small muted">{t('shop.auto_confirm', { date: new Date(order.shipment.auto_confirm_at).toLocaleDateString() })}</span></>}</p>
        )}
        {order.refund && <p class="small">{t('shop.refund_asked', { reason: order.refund.reason ?? '' })}</p>}
        <ErrorLine error={error} />
        <div class="actions">
          {buyer && order.status === 'shipped' && <button class="primary" disabled={busy} onClick={() => act('confirm')}>{t('shop.confirm')}</button>}
          {(buyer || seller) && (order.status === 'paid' || (buyer && order.status === 'grouping')) && (
            <button class="danger" disabled={busy} onClick={() => act('cancel')}>{t('shop.cancel_order')}</button>
          )}
          {buyer && (order.status === 'shipped' || order.status === 'completed') && !asking && (
            <button disabled={busy} onClick={() => setAsking(true)}>{t('shop.refund')}</button>
          )}
          {seller && order.status === 'refund_requested' && <>
            <button class="primary" disabled={busy} onClick={() => act('refund/approve')}>{t('shop.approve')}</button>
            <button disabled={busy} onClick={() => act('refund/reject')}>{t('shop.reject')}</button>
          </>}
        </div>
        {seller && order.status === 'paid' && (
          <form class="form" onSubmit={(e) => { e.preventDefault(); void act('ship', { carrier: carrier.trim(), tracking_number: tracking.trim() }); }}>
            <label>{t('shop.carrier')}<input name="carrier" required maxLength={100} value={carrier} onInput={(e) => setCarrier(e.currentTarget.value)} /></label>
            <label>{t('shop.tracking')}<input name="tracking" required maxLength={100} value={tracking} onInput={(e) => setTracking(e.currentTarget.value)} /></label>
            <button class="primary" type="submit" disabled={busy}>{t('shop.ship')}</button>
          </form>
        )}
        {asking && (
          <form class="form" onSubmit={async (e) => { e.preventDefault(); if (await act('refund', { reason: reason.trim() })) setAsking(false); }}>
            <label>{t('shop.refund_reason')}<input name="reason" required maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} /></label>
            <button class="primary" type="submit" disabled={busy}>{t('shop.refund_send')}</button>
          </form>
        )}
        {buyer && order.status === 'completed' && !reviewed && !order.reviewed && (
          <form class="form" onSubmit={async (e) => { e.preventDefault(); if (stars && await act('review', { stars, text: review.trim() || undefined })) setReviewed(true); }}>
            <fieldset class="stars"><legend>{t('shop.pick_stars')}</legend>
              {[1, 2, 3, 4, 5].map((n) => (
                <label class={n <= stars ? 'star on' : 'star'}>
                  <input class="visually-hidden" type="radio" name="stars" value={n} checked={stars === n} onChange={() => setStars(n)} aria-label={starsText(n)} />★
                </label>
              ))}
            </fieldset>
            <label>{t('shop.review_text')}<textarea name="review" maxLength={2000} value={review} onInput={(e) => setReview(e.currentTarget.value)} /></label>
            <button class="primary" type="submit" disabled={busy || !stars}>{t('shop.review_send')}</button>
          </form>
        )}
        {reviewed && <p class="notice" role="status">{t('shop.reviewed')}</p>}
      </div>
    </section>
  );
}
