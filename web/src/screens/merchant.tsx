// The merchant's side of the Shop tab: open a shop, add and edit products (photos through
// POST /media, SKUs with price, stock and an optional group price), the orders to ship and
// the refunds to answer (each acted on from its order page), the sales total, and flash
// sales. Every number shown is the server's.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, newId, uploadMedia } from '../lib/api';
import type { Page } from '../lib/api';
import { t } from '../lib/i18n';
import { formatMoney, parseMoney } from '../lib/money';
import { loadMyShop, loadOrders, shop, useLoaded } from '../lib/shop';
import type { Product, Shop } from '../lib/shop';
import { AuthImage, Dialog, ErrorLine } from '../lib/ui';
import { OrderRow, Photo } from './shop';

const FEE_TEXT = '5%';

export function MerchantView() {
  const mine = shop.use((s) => s.myShop);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { loadMyShop().catch(setError); }, []);
  if (mine === undefined) return <div class="pad"><ErrorLine error={error} />{!error && <p class="muted">{t('common.loading')}</p>}</div>;
  if (mine === null) return <OpenShop />;
  return <MyShop mine={mine} />;
}

function OpenShop() {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true); setError(null);
    try {
      const opened = await api<Shop>('POST', '/shops', { name: name.trim(), description: description.trim() || undefined });
      shop.set({ myShop: opened });
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  return (
    <form class="form pad" onSubmit={submit} aria-labelledby="open-shop">
      <h2 id="open-shop">{t('shop.open_shop')}</h2>
      <p class="muted small">{t('shop.open_hint', { fee: FEE_TEXT })}</p>
      <label>{t('shop.name')}<input name="name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>{t('shop.shop_description')}<textarea name="description" maxLength={2000} value={description} onInput={(e) => setDescription(e.currentTarget.value)} /></label>
      <ErrorLine error={error} />
      <button class="primary" type="submit" disabled={busy}>{t('shop.open')}</button>
    </form>
  );
}

function MyShop({ mine }: { mine: Shop }) {
  const version = shop.use((s) => s.version);
  const known = shop.use((s) => s.orders);
  const [edited, setEdited] = useState(0);
  const [products, productsError] = useLoaded(() => api<Page<Product>>('GET', `/products?shop_id=${encodeURIComponent(mine.id)}&limit=200`), [mine.id, edited]);
  const [orders, ordersError] = useLoaded(() => loadOrders('seller'), [version]);
  const [editing, setEditing] = useState<Product | 'new' | null>(null);
  const [flash, setFlash] = useState<Product | null>(null);
  const [notice, setNotice] = useState('');
  const current = (orders ?? []).map((o) => known[o.id] ?? o);
  const completed = current.filter((o) => o.status === 'completed');
  const currency = current[0]?.total.currency ?? 'USD';
  const sum = (list: typeof current) => list.reduce((total, o) => total + o.total.amount, 0);
  const pending = current.filter((o) => o.status === 'paid' || o.status === 'shipped');
  const toShip = current.filter((o) => o.status === 'paid');
  const refunds = current.filter((o) => o.status === 'refund_requested');
  return (
    <div>
      <div class="pad">
        <h2>{mine.name}</h2>
        {mine.description && <p class="muted small">{mine.description}</p>}
        <p data-testid="sales-total"><strong>{t('shop.sales_total', { amount: formatMoney(sum(completed), currency), n: completed.length })}</strong><br />
          <span class="small muted">{t('shop.sales_pending', { amount: formatMoney(sum(pending), currency) })}</span></p>
        {notice && <p class="notice" role="status">{notice}</p>}
        <ErrorLine error={productsError ?? ordersError} />
      </div>
      <h2 class="section-title">{t('shop.to_ship')}</h2>
      {orders && !toShip.length && <p class="muted pad small">{t('shop.none_to_ship')}</p>}
      <ul class="list" aria-label={t('shop.to_ship')}>{toShip.map((order) => <OrderRow order={order} />)}</ul>
      <h2 class="section-title">{t('shop.refunds')}</h2>
      {orders && !refunds.length && <p class="muted pad small">{t('shop.no_refunds')}</p>}
      <ul class="list" aria-label={t('shop.refunds')}>{refunds.map((order) => <OrderRow order={order} />)}</ul>
      <h2 class="section-title">{t('shop.products')}</h2>
      <div class="pad"><button class="primary wide" onClick={() => setEditing('new')}>{t('shop.add_product')}</button></div>
      <ul class="list" aria-label={t('shop.products')}>
        {(products?.items ?? []).map((product) => (
          <li class="row">
            <span class="thumb"><Photo product={product} /></span>
            <div class="row-main"><strong class="ellipsis">{product.title}</strong><br />
              <span class="small muted">{product.skus.map((sku) => `${sku.name} ${formatMoney(sku.price.amount, sku.price.currency)} · ${t('shop.in_stock', { n: sku.stock })}`).join(' / ')}</span></div>
            <button class="small-button" aria-label={`${t('shop.edit')} ${product.title}`} onClick={() => setEditing(product)}>{t('shop.edit')}</button>
            <button class="small-button" aria-label={`${t('shop.flash_new')}: ${product.title}`} onClick={() => setFlash(product)}>⚡</button>
          </li>
        ))}
      </ul>
      <h2 class="section-title">{t('shop.sold_orders')}</h2>
      <ul class="list" aria-label={t('shop.sold_orders')}>{current.map((order) => <OrderRow order={order} />)}</ul>
      {editing && <ProductEditor shopId={mine.id} product={editing === 'new' ? null : editing}
        onClose={() => setEditing(null)} onSaved={() => { setEditing(null); setEdited((n) => n + 1); setNotice(t('shop.p.saved')); }} />}
      {flash && <FlashSaleDialog product={flash} onClose={() => setFlash(null)} onDone={() => { setFlash(null); setNotice(t('shop.flash_scheduled')); }} />}
    </div>
  );
}

interface SkuDraft { id?: string; name: string; price: string; stock: string; group_price: string }

function money(minor: number | undefined | null) {
  return minor ? (minor / 100).toFixed(2) : '';
}

function ProductEditor({ shopId, product, onClose, onSaved }: { shopId: string; product: Product | null; onClose: () => void; onSaved: () => void }) {
  const currency = product?.skus[0]?.price.currency ?? 'USD';
  const [title, setTitle] = useState(product?.title ?? '');
  const [description, setDescription] = useState(product?.description ?? '');
  const [mediaIds, setMediaIds] = useState<string[]>(product?.media_ids ?? []);
  const [groupSize, setGroupSize] = useState(product?.group_size ? String(product.group_size) : '');
  const [skus, setSkus] = useState<SkuDraft[]>(product
    ? product.skus.map((sku) => ({ id: sku.id, name: sku.name, price: money(sku.price.amount), stock: String(sku.stock), group_price: money(sku.group_price?.amount) }))
    : [{ name: '', price: '', stock: '10', group_price: '' }]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const key = useRef(newId());
  const file = useRef<HTMLInputElement>(null);

  const upload = async (chosen: File | undefined) => {
    if (!chosen) return;
    try {
      setMediaIds([...mediaIds, await uploadMedia(chosen)]);
    } catch (caught) { setError(caught); }
    if (file.current) file.current.value = '';
  };
  const setSku = (i: number, patch: Partial<SkuDraft>) => setSkus(skus.map((sku, j) => (j === i ? { ...sku, ...patch } : sku)));

  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null);
    const parsed = skus.map((sku) => ({
      id: sku.id, name: sku.name.trim(), price: parseMoney(sku.price, currency), stock: Number(sku.stock),
      group_price: sku.group_price.trim() ? parseMoney(sku.group_price, currency) : undefined,
    }));
    if (parsed.some((sku) => sku.price === null || sku.group_price === null)) { setError(t('error.amount')); return; }
    const amount = (minor: number | null | undefined) => (minor ? { amount: minor, currency } : undefined);
    setBusy(true);
    try {
      if (product) {
        await api('PATCH', `/products/${encodeURIComponent(product.id)}`, {
          title: title.trim(), description: description.trim(), media_ids: mediaIds,
          skus: parsed.map((sku) => ({ id: sku.id, price: amount(sku.price), stock: sku.stock })),
        });
      } else {
        await api('POST', `/shops/${encodeURIComponent(shopId)}/products`, {
          title: title.trim(), description: description.trim() || undefined, media_ids: mediaIds,
          skus: parsed.map((sku) => ({ name: sku.name, price: amount(sku.price), stock: sku.stock, group_price: amount(sku.group_price) })),
          group_size: groupSize ? Number(groupSize) : undefined,
        }, { idempotencyKey: key.current });
      }
      onSaved();
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  const archive = async () => {
    if (!product) return;
    setBusy(true);
    try { await api('PATCH', `/products/${encodeURIComponent(product.id)}`, { status: product.status === 'archived' ? 'active' : 'archived' }); onSaved(); }
    catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  return (
    <Dialog title={product ? t('shop.edit_product') : t('shop.new_product')} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>{t('shop.p.title')}<input name="title" required maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} /></label>
        <label>{t('shop.p.description')}<textarea name="description" maxLength={5000} value={description} onInput={(e) => setDescription(e.currentTarget.value)} /></label>
        <fieldset><legend>{t('shop.p.photos')}</legend>
          <div class="photo-strip">
            {mediaIds.map((id, i) => (
              <span class="thumb"><AuthImage mediaId={id} alt="" className="product-photo" />
                <button type="button" class="icon-button" aria-label={t('shop.p.remove_photo', { i: i + 1 })} onClick={() => setMediaIds(mediaIds.filter((m) => m !== id))}>✕</button></span>
            ))}
          </div>
          <label class="menu-like">🖼️ {t('shop.p.add_photo')}
            <input ref={file} class="visually-hidden" type="file" accept="image/*" onChange={(e) => void upload(e.currentTarget.files?.[0])} /></label>
        </fieldset>
        <fieldset><legend>{t('shop.p.skus')}</legend>
          {product && <p class="small muted">{t('shop.p.fixed_names')}</p>}
          {skus.map((sku, i) => (
            <div class="sku-fields" role="group" aria-label={sku.name || `${t('shop.option')} ${i + 1}`}>
              <label>{t('shop.p.sku_name')}<input name={`sku-${i}-name`} required maxLength={100} disabled={!!sku.id} value={sku.name} onInput={(e) => setSku(i, { name: e.currentTarget.value })} /></label>
              <label>{t('shop.p.price')} ({currency})<input name={`sku-${i}-price`} inputMode="decimal" required value={sku.price} onInput={(e) => setSku(i, { price: e.currentTarget.value })} /></label>
              <label>{t('shop.p.stock')}<input name={`sku-${i}-stock`} type="number" min={0} required value={sku.stock} onInput={(e) => setSku(i, { stock: e.currentTarget.value })} /></label>
              <label>{t('shop.p.group_price')}<input name={`sku-${i}-group-price`} inputMode="decimal" disabled={!!sku.id} value={sku.group_price} onInput={(e) => setSku(i, { group_price: e.currentTarget.value })} /></label>
              {!product && skus.length > 1 && <button type="button" class="small-button" aria-label={t('shop.p.remove_sku', { i: i + 1 })} onClick={() => setSkus(skus.filter((_, j) => j !== i))}>✕</button>}
            </div>
          ))}
          {!product && <button type="button" class="small-button" onClick={() => setSkus([...skus, { name: '', price: '', stock: '10', group_price: '' }])}>{t('shop.p.add_sku')}</button>}
        </fieldset>
        {!product && <label>{t('shop.p.group_size')}<input name="group_size" type="number" min={2} max={50} value={groupSize} onInput={(e) => setGroupSize(e.currentTarget.value)} /></label>}
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{t('shop.p.save')}</button>
        {product && <button type="button" class="danger" disabled={busy} onClick={archive}>{product.status === 'archived' ? t('shop.p.unarchive') : t('shop.p.archive')}</button>}
      </form>
    </Dialog>
  );
}

function FlashSaleDialog({ product, onClose, onDone }: { product: Product; onClose: () => void; onDone: () => void }) {
  const [skuId, setSkuId] = useState(product.skus[0].id);
  const sku = product.skus.find((s) => s.id === skuId) ?? product.skus[0];
  const [price, setPrice] = useState('');
  const [quantity, setQuantity] = useState('10');
  const [startsIn, setStartsIn] = useState('5');
  const [minutes, setMinutes] = useState('60');
  const [perUser, setPerUser] = useState('1');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const key = useRef(newId());
  const submit = async (event: Event) => {
    event.preventDefault();
    const minor = parseMoney(price, sku.price.currency);
    if (minor === null) { setError(t('error.amount')); return; }
    const starts = Date.now() + Number(startsIn) * 60_000;
    setBusy(true); setError(null);
    try {
      await api('POST', '/flash-sales', {
        sku_id: sku.id, price: { amount: minor, currency: sku.price.currency }, quantity: Number(quantity),
        starts_at: new Date(starts).toISOString(), ends_at: new Date(starts + Number(minutes) * 60_000).toISOString(),
        per_user_limit: Number(perUser),
      }, { idempotencyKey: key.current });
      onDone();
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  return (
    <Dialog title={t('shop.flash_new')} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <p><strong>{product.title}</strong></p>
        {product.skus.length > 1 && (
          <label>{t('shop.flash_sku')}<select value={skuId} onChange={(e) => setSkuId(e.currentTarget.value)}>
            {product.skus.map((option) => <option value={option.id}>{option.name} · {formatMoney(option.price.amount, option.price.currency)}</option>)}
          </select></label>
        )}
        <label>{t('shop.flash_price')} ({sku.price.currency})<input name="price" inputMode="decimal" required value={price} onInput={(e) => setPrice(e.currentTarget.value)} /></label>
        <label>{t('shop.flash_quantity')}<input name="quantity" type="number" min={1} required value={quantity} onInput={(e) => setQuantity(e.currentTarget.value)} /></label>
        <label>{t('shop.flash_starts')}<input name="starts_in" type="number" min={0} required value={startsIn} onInput={(e) => setStartsIn(e.currentTarget.value)} /></label>
        <label>{t('shop.flash_minutes')}<input name="minutes" type="number" min={1} required value={minutes} onInput={(e) => setMinutes(e.currentTarget.value)} /></label>
        <label>{t('shop.flash_per_user')}<input name="per_user" type="number" min={1} required value={perUser} onInput={(e) => setPerUser(e.currentTarget.value)} /></label>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{t('shop.flash_schedule')}</button>
      </form>
    </Dialog>
  );
}
