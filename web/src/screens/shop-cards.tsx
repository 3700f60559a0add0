// The shop's cards in a chat (rendered by the server, API.md "Shop"): a product opens its
// page; a group buy shows its price, seats and deadline and a Join button that opens the
// checkout in join mode. Kept small: chats load it eagerly, the shop tab lazily.
import { t } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { navigate } from '../lib/router';
import { timeLeft, useNow } from '../lib/shop';
import { AuthImage } from '../lib/ui';
import { playUrl } from '../lib/video';

function photoId(url: unknown): string | null {
  return typeof url === 'string' ? url.split('/').pop() ?? null : null;
}

export function ProductCard({ body }: { body: any }) {
  const price = body.price ? formatMoney(body.price.amount, body.price.currency) : '';
  const photo = photoId(body.photo_url);
  return (
    <button type="button" class="bubble shop-card" data-testid="card" data-card-type="product"
      aria-label={t('card.product_open', { title: body.title })} onClick={() => navigate(`/shop/products/${encodeURIComponent(body.id)}`)}>
      {photo && <AuthImage mediaId={photo} alt="" />}
      <small class="muted">{t('card.product')}{body.shop_name ? ` · ${body.shop_name}` : ''}</small>
      <strong>{body.title}</strong>
      {price && <span class="shop-price">{price}</span>}
    </button>
  );
}

export function GroupBuyCard({ body }: { body: any }) {
  const now = useNow();
  const status: string = body.status ?? 'forming';
  const price = body.price ? formatMoney(body.price.amount, body.price.currency) : '';
  const open = status === 'forming' && Date.parse(body.expires_at) > now && body.seats_left > 0;
  const photo = photoId(body.photo_url);
  return (
    <div class="bubble shop-card" data-testid="card" data-card-type="group_buy" data-status={status}>
      {photo && <AuthImage mediaId={photo} alt="" />}
      <small class="muted">{t('card.group_buy')}</small>
      <strong>{body.title}</strong>
      <span>{t('card.group_buy_line', { size: body.size, price })}</span>
      {status === 'forming' && (
        <span data-testid="group-state">
          {body.seats_left === 1 ? t('shop.seat_left') : t('shop.seats_left', { n: body.seats_left })}
          {' · '}<span role="timer">{t('shop.time_left', { time: timeLeft(body.expires_at, now) })}</span>
        </span>
      )}
      {status === 'complete' && <span data-testid="group-state">✅ {t('card.group_buy.complete')}</span>}
      {status === 'failed' && <span data-testid="group-state">❌ {t('card.group_buy.failed')}</span>}
      {open && (
        <button type="button" class="primary small-button" aria-label={t('card.join_group', { title: body.title, price })}
          onClick={() => navigate(`/shop/products/${encodeURIComponent(body.product_id)}/join/${encodeURIComponent(body.id)}`)}>
          {t('shop.join')}
        </button>
      )}
    </div>
  );
}

/** A shared video plays right in the chat (its MP4 answers byte ranges, so it starts at once). */
export function VideoCard({ body }: { body: any }) {
  return (
    <div class="bubble video-card" data-testid="card" data-card-type="video">
      <video class="card-video" src={playUrl(body.mp4_url)} poster={body.poster_url ? playUrl(body.poster_url) : undefined}
        controls playsInline preload="metadata" aria-label={t('card.video_by', { name: body.author_name })} />
      <small class="muted">{t('card.video')} · {body.author_name}</small>
      <strong>{body.title}</strong>
    </div>
  );
}
