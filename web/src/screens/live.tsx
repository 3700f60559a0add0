// The Live tab (API.md "Live"), loaded on demand: the rooms live now and the replays, the
// watch screen (the stream full-screen through hls.js, the chat over it, hearts that float
// up, viewers and likes, the pinned product with Buy, the running deal and who just bought
// (`live-deals.tsx`), the end and the replay), and the host's screen (a room with their
// products, the RTMP URL and key for OBS or the phone's own camera (`live-camera.tsx`),
// pinning, deals and sales, the end). State from
// the socket is in `lib/live.ts`.
//
// Paths: /live (the lists), /live/:id (watch, full-screen), /live/host (the host's rooms
// and a new one), /live/host/rooms/:id (one room, for its host). No client path has three
// segments under /live/: those are the server's playback files (/live/{room}/index.m3u8),
// which would answer a reload of such a page with a 404.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, getToken, uploadMedia } from '../lib/api';
import type { Page } from '../lib/api';
import { store } from '../lib/data';
import { t } from '../lib/i18n';
import {
  joinRoom, knownKey, live, loadChatHistory, loadRoom, loadRooms, mediaIdOf, rememberKey, sendHeart, sendLiveChat, splitRtmpUrl,
} from '../lib/live';
import type { JoinedRoom, LiveChatMessage, LiveRoom, LiveRoomWithKey, ProductCard, SeenDeal } from '../lib/live';
import { formatMoney } from '../lib/money';
import { match, navigate, route } from '../lib/router';
import { loadMyShop, useLoaded } from '../lib/shop';
import type { Order, Product } from '../lib/shop';
import { AuthImage, Avatar, ConnectionBanner, Dialog, ErrorLine } from '../lib/ui';
import { formatCount } from '../lib/video';
import { PhoneCamera } from './live-camera';
import { DealCard, HostDeals, SoldTicker, useDeal } from './live-deals';
import { CheckoutDialog } from './shop';

export function LiveScreen() {
  const path = route.use((s) => s.path);
  let params;
  if ((params = match('/live/host/rooms/:id', path))) return <HostRoomView key={params.id} id={params.id} />;
  if (path === '/live/host') return <HostHome />;
  if ((params = match('/live/:id', path))) return <WatchView key={params.id} id={params.id} />;
  return <RoomLists />;
}

export default LiveScreen;

/** How often a screen waiting for something no frame announces looks again. */
const WAIT_POLL_MS = 2000;
/** How often the lists refresh their viewer counts while on screen. */
const LIST_REFRESH_MS = 15000;

// ---- the lists ---------------------------------------------------------------------------

function RoomLists() {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => { if (document.visibilityState === 'visible') setTick((n) => n + 1); }, LIST_REFRESH_MS);
    return () => window.clearInterval(timer);
  }, []);
  const [liveNow, liveError] = useLoaded(() => loadRooms('live'), [tick]);
  const [replays, replayError] = useLoaded(() => loadRooms('ended', 20), [tick]);
  return (
    <section class="live-tab" aria-labelledby="live-title">
      <header class="topbar rides-top">
        <h1 id="live-title">{t('live.title')}</h1>
        <button type="button" class="primary small-button" onClick={() => navigate('/live/host')}>📡 {t('live.go_live')}</button>
      </header>
      <ConnectionBanner />
      <h2 class="pad live-heading">{t('live.now')}</h2>
      <ErrorLine error={liveError} />
      {liveNow && !liveNow.items.length && <p class="muted pad" role="status">{t('live.none')}</p>}
      <ul class="live-grid" aria-label={t('live.now')}>
        {(liveNow?.items ?? []).map((room) => <li key={room.id}><RoomTile room={room} /></li>)}
      </ul>
      <h2 class="pad live-heading">{t('live.replays')}</h2>
      <ErrorLine error={replayError} />
      {replays && !replays.items.length && <p class="muted pad">{t('live.no_replays')}</p>}
      <ul class="live-grid" aria-label={t('live.replays')}>
        {(replays?.items ?? []).filter((room) => room.replay).map((room) => <li key={room.id}><RoomTile room={room} /></li>)}
      </ul>
    </section>
  );
}

function Cover({ room }: { room: LiveRoom }) {
  const id = mediaIdOf(room.cover_url);
  return id ? <AuthImage mediaId={id} alt="" className="live-cover" /> : <div class="live-cover placeholder" aria-hidden="true">📺</div>;
}

function RoomTile({ room }: { room: LiveRoom }) {
  const isLive = room.status === 'live';
  const label = isLive
    ? t('live.tile_live', { title: room.title, host: room.host.display_name, n: room.viewers })
    : t('live.tile_replay', { title: room.title, host: room.host.display_name });
  return (
    <a class="live-tile" href={`/live/${room.id}`} aria-label={label} data-testid="live-room" data-status={room.status}
      onClick={(event) => { event.preventDefault(); navigate(`/live/${encodeURIComponent(room.id)}`); }}>
      <Cover room={room} />
      <span class={isLive ? 'live-badge' : 'live-badge replay'} aria-hidden="true">{isLive ? t('live.badge') : t('live.replay_badge')}</span>
      {isLive && <span class="live-viewers" aria-hidden="true">👁 {formatCount(room.viewers)}</span>}
      <strong class="ellipsis">{room.title}</strong>
      <span class="small muted ellipsis">{room.host.display_name}</span>
    </a>
  );
}

// ---- the player --------------------------------------------------------------------------

/** How many times a stream that stopped loading is started again before the screen says so. */
const PLAYER_RETRIES_MAX = 10;

/**
 * An HLS stream in a `<video>`: hls.js (MediaSource) wherever it is supported, since
 * Chromium claims native HLS and then may not play it; the element's own HLS only where
 * MediaSource is missing (Safari on older iPhones). `auth` sends the bearer token with
 * every request (a replay is for signed-in users; the live stream is public).
 */
function HlsPlayer({ src, auth, muted, label, onMutedByBrowser, onStalled, onTime, className }: {
  src: string; auth: boolean; muted: boolean; label: string; onMutedByBrowser?: () => void;
  /** The stream stopped loading (it may have ended: the screen looks at the room again). */
  onStalled?: () => void;
  /** Where playback is, in seconds from the stream's start (a replay's chat follows it). */
  onTime?: (seconds: number) => void; className?: string;
}) {
  const ref = useRef<HTMLVideoElement>(null);
  const [attempt, setAttempt] = useState(0);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    const video = ref.current;
    if (!video) return;
    let stopped = false;
    let destroy = () => {};
    const start = () => {
      video.play().catch((error: DOMException) => {
        // Sound needs a tap first on some browsers: play muted and offer the sound button.
        if (stopped || error?.name !== 'NotAllowedError' || video.muted) return;
        video.muted = true;
        onMutedByBrowser?.();
        void video.play().catch(() => {});
      });
    };
    void import('hls.js/light').then(({ default: Hls }) => {
      if (stopped) return;
      if (Hls.isSupported()) {
        const hls = new Hls({
          // The page's CSP has no `blob:` workers; the transmuxing of 1 s segments is cheap.
          enableWorker: false,
          // Close to the live edge (1 s segments), catching up by playing a little faster.
          liveSyncDurationCount: 2, liveMaxLatencyDurationCount: 6, maxLiveSyncPlaybackRate: 1.5,
          xhrSetup: auth ? (xhr) => { const token = getToken(); if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`); } : undefined,
        });
        hls.on(Hls.Events.ERROR, (_event, data) => {
          if (!data.fatal || stopped) return;
          if (data.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
          hls.destroy();
          destroy = () => {};
          onStalled?.();
          if (attempt < PLAYER_RETRIES_MAX) window.setTimeout(() => { if (!stopped) setAttempt((n) => n + 1); }, WAIT_POLL_MS);
          else setFailed(true);
        });
        hls.on(Hls.Events.MANIFEST_PARSED, start);
        hls.loadSource(src);
        hls.attachMedia(video);
        destroy = () => hls.destroy();
      } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
        // Native HLS cannot send a header: a replay's token rides in the playlist's query.
        video.src = auth ? `${src}?token=${encodeURIComponent(getToken() ?? '')}` : src;
        start();
        destroy = () => { video.removeAttribute('src'); video.load(); };
      } else {
        setFailed(true);
      }
    }, () => setFailed(true));
    return () => { stopped = true; destroy(); };
  }, [src, auth, attempt]);
  useEffect(() => { if (ref.current) ref.current.muted = muted; }, [muted]);
  useEffect(() => {
    const video = ref.current;
    if (!video || !onTime) return;
    const tell = () => onTime(video.currentTime);
    video.addEventListener('timeupdate', tell);
    return () => video.removeEventListener('timeupdate', tell);
  }, [!!onTime]);
  return (
    <>
      <video ref={ref} class={className ?? 'live-video'} playsInline muted={muted} aria-label={label} data-testid="live-video" />
      {failed && (
        <div class="live-failed" role="alert">
          {t('live.play_failed')} <button type="button" class="small-button" onClick={() => { setFailed(false); setAttempt(0); }}>{t('common.retry')}</button>
        </div>
      )}
    </>
  );
}

// ---- watching ------------------------------------------------------------------------------

/** A room fetched over HTTP, fetched again after each rejoin (frames may have been missed),
 *  and every couple of seconds while `waiting` says something no frame announces is due. */
function useRoom(id: string, waiting: (room: LiveRoom) => boolean) {
  const rejoins = live.use((s) => s.rejoins);
  const [room, setRoom] = useState<LiveRoom | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [again, setAgain] = useState(0);
  useEffect(() => {
    let current = true;
    loadRoom(id).then((loaded) => { if (current) { setRoom(loaded); setError(null); } }, (caught) => current && setError(caught));
    return () => { current = false; };
  }, [id, rejoins, again]);
  useEffect(() => {
    if (!room || !waiting(room)) return;
    const timer = window.setTimeout(() => setAgain((n) => n + 1), WAIT_POLL_MS);
    return () => window.clearTimeout(timer);
  }, [room]);
  return { room, setRoom, error, reload: () => setAgain((n) => n + 1) };
}

/** The room's frames while this screen is open and the room not ended (joined again when
 *  it goes live: a room not live yet may have nothing to join). */
function useJoined(id: string, status: LiveRoom['status'] | undefined): JoinedRoom | undefined {
  useEffect(() => (status === 'live' || status === 'created' ? joinRoom(id) : undefined), [id, status]);
  return live.use((s) => s.joined[id]);
}

/** Likes never count down on screen: the server's count may lag the taps just sent. */
function useLikes(serverLikes: number, taps: number) {
  const shown = useRef(0);
  const base = useRef({ likes: serverLikes, taps });
  if (serverLikes !== base.current.likes) base.current = { likes: serverLikes, taps };
  shown.current = Math.max(shown.current, serverLikes + (taps - base.current.taps));
  return shown.current;
}

function WatchView({ id }: { id: string }) {
  const me = store.use((s) => s.me!);
  const { room, error, reload } = useRoom(id, (r) => r.status === 'live' && !r.playback);
  const joined = useJoined(id, room?.status);
  const ended = room?.status === 'ended' || !!joined?.ended;
  const [replaying, setReplaying] = useState(false);
  const [muted, setMuted] = useState(false);
  const [taps, setTaps] = useState(0);
  const [hearts, setHearts] = useState<{ key: number; drift: number }[]>([]);
  const [buying, setBuying] = useState<{ card: ProductCard; deal?: SeenDeal } | null>(null);
  const heartKey = useRef(0);
  // The end came over the socket: fetch the room for its replay, a few times while the
  // recording is being closed.
  const endChecks = useRef(0);
  useEffect(() => {
    if (!joined?.ended || !room || room.status === 'ended') return;
    reload();
  }, [joined?.ended]);
  useEffect(() => {
    if (!room || room.status !== 'ended' || room.replay || endChecks.current >= 5) return;
    endChecks.current += 1;
    const timer = window.setTimeout(reload, WAIT_POLL_MS);
    return () => window.clearTimeout(timer);
  }, [room]);
  // A replay opened from the list plays at once; one that ended while watched waits for a tap.
  const openedEnded = useRef<boolean | null>(null);
  if (room && openedEnded.current === null) openedEnded.current = room.status === 'ended';
  const playReplay = replaying || (openedEnded.current === true);

  // A replay's chat: what was said, shown as the recording reaches the moment it was said.
  const [replayAt, setReplayAt] = useState(0);
  const [said] = useLoaded(() => (ended && playReplay ? loadChatHistory(id) : Promise.resolve(null)), [id, ended && playReplay]);
  const startedAt = room?.started_at ? Date.parse(room.started_at) : null;
  const replayChat = said && startedAt !== null ? said.filter((message) => (Date.parse(message.at) - startedAt) / 1000 <= replayAt) : [];

  const likes = useLikes(joined?.likes ?? room?.likes ?? 0, taps);
  const viewers = joined?.viewers ?? room?.viewers ?? 0;
  const pinned = joined && joined.pinned !== undefined ? joined.pinned : room?.pinned_product ?? null;
  const deal = useDeal(room, joined);
  const back = () => (history.length > 1 ? history.back() : navigate('/live'));

  const heart = () => {
    if (ended) return;
    sendHeart(id);
    setTaps((n) => n + 1);
    const key = ++heartKey.current;
    setHearts((list) => [...list.slice(-20), { key, drift: Math.round(Math.random() * 40 - 20) }]);
  };

  if (!room) {
    return (
      <section class="live-watch" aria-label={t('live.title')}>
        <header class="live-top"><button type="button" class="icon-button live-round" aria-label={t('chat.back')} onClick={back}>‹</button></header>
        <ErrorLine error={error} />
        {!error && <p class="live-wait" aria-busy="true">{t('common.loading')}</p>}
      </section>
    );
  }
  const source = ended ? (playReplay && room.replay ? room.replay.hls_url : null) : room.playback?.hls_url ?? null;
  return (
    <section class="live-watch" aria-label={room.title} data-testid="live-watch">
      {source
        ? <HlsPlayer key={source + (ended ? 'replay' : 'live')} src={source} auth={ended} muted={muted}
            label={t('live.video_label', { title: room.title })} onMutedByBrowser={() => setMuted(true)} onStalled={reload}
            onTime={ended ? setReplayAt : undefined} />
        : <div class="live-video placeholder" aria-hidden="true" />}
      <header class="live-top">
        <button type="button" class="icon-button live-round" aria-label={t('chat.back')} onClick={back}>‹</button>
        <div class="live-host">
          <Avatar name={room.host.display_name} size={32} />
          <div class="live-host-text">
            <strong class="ellipsis">{room.host.display_name}</strong>
            <span class="small ellipsis">{room.title}</span>
          </div>
        </div>
        {/* Not a live region: counts that change every second would be read out every second. */}
        <div class="live-counts">
          {!ended && <span class="live-badge" aria-hidden="true">{t('live.badge')}</span>}
          {ended && playReplay && <span class="live-badge replay" aria-hidden="true">{t('live.replay_badge')}</span>}
          {!ended && <span role="img" aria-label={t('live.viewers', { n: viewers })} data-testid="live-viewers">👁 {formatCount(viewers)}</span>}
          <span role="img" aria-label={t('live.likes', { n: likes })} data-testid="live-likes">❤️ {formatCount(likes)}</span>
        </div>
      </header>
      <ConnectionBanner />
      {!ended && !room.playback && <p class="live-wait" role="status">{t('live.starting')}</p>}
      {source && (
        <button type="button" class="live-round live-sound" aria-pressed={!muted} aria-label={muted ? t('video.unmute') : t('video.mute')}
          onClick={() => setMuted(!muted)}>{muted ? '🔇' : '🔊'}</button>
      )}
      <div class="live-hearts" aria-hidden="true">
        {hearts.map((h) => (
          <span key={h.key} class="live-heart" style={{ '--drift': `${h.drift}px` } as Record<string, string>}
            onAnimationEnd={() => setHearts((list) => list.filter((other) => other.key !== h.key))}>❤️</span>
        ))}
      </div>
      {ended && !playReplay && (
        <div class="live-ended" role="status" data-testid="live-ended">
          <strong>{t('live.ended')}</strong>
          {room.replay
            ? <button type="button" class="primary" onClick={() => setReplaying(true)}>▶ {t('live.watch_replay')}</button>
            : <span class="small">{t('live.replay_soon')}</span>}
          <button type="button" onClick={() => navigate('/live')}>{t('live.more_rooms')}</button>
        </div>
      )}
      <div class="live-bottom">
        {!ended && <ChatList messages={joined?.chat ?? []} mine={me.id} />}
        {ended && playReplay && <ChatList messages={replayChat} mine={me.id} />}
        {!ended && <SoldTicker lines={joined?.sold ?? []} />}
        {!ended && deal && deal.product && <DealCard deal={deal} onBuy={() => setBuying({ card: deal.product!, deal })} />}
        {pinned && <PinnedCard product={pinned} onBuy={() => setBuying({ card: pinned })} />}
        {!ended && (
          <div class="live-compose">
            <ChatForm roomId={id} />
            <button type="button" class="live-round live-heart-button" aria-label={t('live.send_heart')} onClick={heart}>❤️</button>
          </div>
        )}
      </div>
      {buying && <BuySheet card={buying.card} deal={buying.deal} onClose={() => setBuying(null)} />}
    </section>
  );
}

function ChatList({ messages, mine, moderate }: {
  messages: LiveChatMessage[]; mine: string; moderate?: (message: LiveChatMessage) => ComponentChildren;
}) {
  const list = useRef<HTMLUListElement>(null);
  const pinnedToEnd = useRef(true);
  // The oldest lines fade out only once the list is full (a lone message stays legible).
  const [full, setFull] = useState(false);
  useEffect(() => {
    const element = list.current;
    if (!element) return;
    if (pinnedToEnd.current) element.scrollTop = element.scrollHeight;
    setFull(element.scrollHeight > element.clientHeight);
  }, [messages]);
  return (
    <ul class={full ? 'live-chat full' : 'live-chat'} role="log" aria-label={t('live.chat')} ref={list}
      onScroll={(event) => { const e = event.currentTarget; pinnedToEnd.current = e.scrollHeight - e.scrollTop - e.clientHeight < 24; }}>
      {messages.map((message) => (
        <li key={message.id} data-testid="live-chat-message" class={message.user.id === mine ? 'mine' : ''}>
          <strong>{message.user.display_name}</strong> {message.text}
          {moderate?.(message)}
        </li>
      ))}
    </ul>
  );
}

function ChatForm({ roomId }: { roomId: string }) {
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    const said = text.trim();
    if (!said) return;
    setBusy(true); setError(null);
    try { await sendLiveChat(roomId, said); setText(''); } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  return (
    <form class="live-chat-form" onSubmit={submit}>
      <input name="live-chat" aria-label={t('live.chat_input')} placeholder={t('live.chat_hint')} maxLength={200} autoComplete="off"
        value={text} onInput={(event) => setText(event.currentTarget.value)} />
      <button type="submit" class="primary small-button" disabled={busy || !text.trim()}>{t('chat.send')}</button>
      <ErrorLine error={error} />
    </form>
  );
}

function PinnedCard({ product, onBuy }: { product: ProductCard; onBuy: () => void }) {
  const photo = mediaIdOf(product.photo_url);
  const price = product.price ? formatMoney(product.price.amount, product.price.currency) : '';
  return (
    <div class="live-pinned" data-testid="live-pinned" role="group" aria-label={t('live.pinned', { title: product.title })}>
      {photo ? <AuthImage mediaId={photo} alt="" className="live-pinned-photo" /> : <span class="live-pinned-photo placeholder" aria-hidden="true">🛍️</span>}
      <div class="live-pinned-text">
        <strong class="ellipsis">{product.title}</strong>
        {price && <span class="shop-price">{price}</span>}
      </div>
      <button type="button" class="primary red small-button" aria-label={t('live.buy_title', { title: product.title })}
        disabled={product.status !== 'active'} onClick={onBuy}>{t('live.buy')}</button>
    </div>
  );
}

/** The shop's checkout over the stream: the product's SKUs, the remembered address, the PIN
 *  pad; for a deal, its one SKU at the deal's price (an order naming its flash sale). */
function BuySheet({ card, deal, onClose }: { card: ProductCard; deal?: SeenDeal; onClose: () => void }) {
  const [product, error] = useLoaded(() => api<Product>('GET', `/products/${encodeURIComponent(card.id)}`), [card.id]);
  const [skuId, setSkuId] = useState<string | null>(null);
  const [placed, setPlaced] = useState<Order | null>(null);
  if (placed) {
    return (
      <Dialog title={t('live.bought_title')} onClose={onClose}>
        <p role="status" data-testid="live-bought">{t('live.bought', { title: card.title })}</p>
        <div class="actions">
          <button type="button" class="primary" onClick={onClose}>{t('live.keep_watching')}</button>
          <button type="button" onClick={() => navigate(`/shop/orders/${encodeURIComponent(placed.id)}`)}>{t('shop.view_order')}</button>
        </div>
      </Dialog>
    );
  }
  if (!product) {
    return (
      <Dialog title={t('shop.checkout')} onClose={onClose}>
        <ErrorLine error={error} />
        {!error && <p class="muted" aria-busy="true">{t('common.loading')}</p>}
      </Dialog>
    );
  }
  if (deal) {
    const sku = product.skus.find((s) => s.id === deal.sku_id) ?? product.skus[0];
    // The sheet reads the sale from the product; the deal is one even if the product's list
    // was read a moment before it started.
    const sale = {
      id: deal.flash_sale_id, sku_id: deal.sku_id, product_id: product.id, price: deal.price, quantity: deal.quantity,
      remaining: deal.remaining, per_user_limit: deal.per_user_limit, starts_at: deal.ends_at, ends_at: deal.ends_at,
    };
    const withSale = { ...product, flash_sales: [...(product.flash_sales ?? []).filter((s) => s.id !== sale.id), sale] };
    return <CheckoutDialog product={withSale} sku={sku} checkout={{ mode: 'flash', saleId: deal.flash_sale_id }} onClose={onClose} onPlaced={setPlaced} />;
  }
  const sku = product.skus.find((s) => s.id === skuId) ?? product.skus.find((s) => s.stock > 0) ?? product.skus[0];
  return <CheckoutDialog product={product} sku={sku} checkout={{ mode: 'alone' }} onClose={onClose} onSku={setSkuId} onPlaced={setPlaced} />;
}

// ---- hosting -------------------------------------------------------------------------------

function HostHome() {
  const me = store.use((s) => s.me!);
  const [mine, mineError] = useLoaded(async () => {
    const [created, liveNow] = await Promise.all([loadRooms('created', 50), loadRooms('live', 200)]);
    return [...liveNow.items.filter((room) => room.host.id === me.id), ...created.items];
  }, []);
  return (
    <section class="live-tab" aria-labelledby="host-title">
      <header class="topbar">
        <button type="button" class="icon-button" aria-label={t('chat.back')} onClick={() => navigate('/live')}>‹</button>
        <h1 id="host-title">{t('live.host_title')}</h1>
        <span />
      </header>
      <ErrorLine error={mineError} />
      {mine && mine.length > 0 && (
        <>
          <h2 class="pad live-heading">{t('live.your_rooms')}</h2>
          <ul class="list" aria-label={t('live.your_rooms')}>
            {mine.map((room) => (
              <li key={room.id}>
                <a class="row" href={`/live/host/rooms/${room.id}`} onClick={(event) => { event.preventDefault(); navigate(`/live/host/rooms/${encodeURIComponent(room.id)}`); }}>
                  <div class="row-main"><strong class="ellipsis">{room.title}</strong><br />
                    <span class="small muted">{t(room.status === 'live' ? 'live.status.live' : 'live.status.created')}</span></div>
                  <span aria-hidden="true">›</span>
                </a>
              </li>
            ))}
          </ul>
        </>
      )}
      <NewRoomForm />
    </section>
  );
}

function NewRoomForm() {
  const [title, setTitle] = useState('');
  const [chosen, setChosen] = useState<string[]>([]);
  const [cover, setCover] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [products] = useLoaded(async () => {
    const shop = await loadMyShop();
    if (!shop) return null;
    return (await api<Page<Product>>('GET', `/products?shop_id=${encodeURIComponent(shop.id)}&limit=50`)).items;
  }, []);
  const toggle = (id: string) => setChosen(chosen.includes(id) ? chosen.filter((other) => other !== id) : [...chosen, id]);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true); setError(null);
    try {
      let cover_media_id: string | undefined;
      if (cover) cover_media_id = await uploadMedia(cover);
      const room = await api<LiveRoomWithKey>('POST', '/live/rooms', { title: title.trim(), product_ids: chosen, cover_media_id });
      rememberKey(room);
      navigate(`/live/host/rooms/${encodeURIComponent(room.id)}`);
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  return (
    <form class="form pad" onSubmit={submit} aria-labelledby="new-room-title">
      <h2 id="new-room-title">{t('live.new_room')}</h2>
      <label>{t('live.room_title')}
        <input name="title" required maxLength={100} placeholder={t('live.room_title_hint')} value={title}
          onInput={(event) => setTitle(event.currentTarget.value)} />
      </label>
      <label>{t('live.cover')}
        <input type="file" name="cover" accept="image/*" onChange={(event) => setCover(event.currentTarget.files?.[0] ?? null)} />
      </label>
      <fieldset>
        <legend>{t('live.products')}</legend>
        {products === null && <p class="small muted">{t('live.no_shop')}{' '}
          <button type="button" class="link small" onClick={() => navigate('/shop/mine')}>{t('live.open_shop')}</button></p>}
        {products && !products.length && <p class="small muted">{t('live.no_products')}</p>}
        {(products ?? []).map((product) => (
          <label class="check-row">
            <input type="checkbox" checked={chosen.includes(product.id)} onChange={() => toggle(product.id)} />
            <span class="ellipsis">{product.title}</span>
          </label>
        ))}
      </fieldset>
      <ErrorLine error={error} />
      <button type="submit" class="primary" disabled={busy || !title.trim()}>{t('live.create')}</button>
      <p class="small muted">{t('live.create_hint')}</p>
    </form>
  );
}

function CopyField({ label, value, secret }: { label: string; value: string; secret?: boolean }) {
  const [copied, setCopied] = useState(false);
  const [shown, setShown] = useState(!secret);
  const input = useRef<HTMLInputElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      // No clipboard (a plain-HTTP origin): select the text for the user to copy.
      const element = input.current;
      if (element) { element.type = 'text'; element.select(); document.execCommand?.('copy'); }
    }
    setCopied(true);
    window.setTimeout(() => setCopied(false), 2000);
  };
  return (
    <div class="copy-field">
      <label>{label}
        <input ref={input} readOnly type={shown ? 'text' : 'password'} value={value} onFocus={(event) => event.currentTarget.select()} />
      </label>
      <div class="copy-actions">
        {secret && <button type="button" class="small-button" aria-pressed={shown} onClick={() => setShown(!shown)}>
          {shown ? t('live.hide') : t('live.show')}</button>}
        <button type="button" class="small-button" aria-label={t('live.copy_label', { what: label })} onClick={copy}>
          {copied ? t('live.copied') : t('live.copy')}
        </button>
      </div>
    </div>
  );
}

function HostRoomView({ id }: { id: string }) {
  const me = store.use((s) => s.me!);
  const { room, setRoom, error: loadError } = useRoom(id, (r) => r.status === 'created' || (r.status === 'live' && !r.playback));
  const joined = useJoined(id, room?.status);
  const [key, setKey] = useState(() => knownKey(id));
  // Who the host muted from this screen (the server keeps the truth; this names the button).
  const [muted, setMuted] = useState<Record<string, boolean>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const ended = room?.status === 'ended' || !!joined?.ended;
  const act = async (run: () => Promise<LiveRoom>) => {
    setBusy(true); setError(null);
    try { setRoom(await run()); } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  const rotate = () => act(async () => {
    if (room?.status === 'live' && !confirm(t('live.rotate_confirm'))) return room;
    const rotated = await api<LiveRoomWithKey>('POST', `/live/rooms/${encodeURIComponent(id)}/stream-key`);
    rememberKey(rotated);
    setKey(knownKey(id));
    return rotated;
  });
  const moderate = async (userId: string, mute: boolean) => {
    setError(null);
    try {
      await api('POST', `/live/rooms/${encodeURIComponent(id)}/moderation`, { user_id: userId, action: mute ? 'mute' : 'unmute' });
      setMuted((known) => ({ ...known, [userId]: mute }));
    } catch (caught) { setError(caught); }
  };
  const remove = async (messageId: string) => {
    setError(null);
    try {
      await api('DELETE', `/live/rooms/${encodeURIComponent(id)}/chat/${encodeURIComponent(messageId)}`);
    } catch (caught) { setError(caught); }
  };
  const pin = (productId: string | null) => act(() => api<LiveRoom>('POST', `/live/rooms/${encodeURIComponent(id)}/pin`, { product_id: productId }));
  const end = () => act(async () => {
    if (!confirm(t('live.end_confirm'))) return room!;
    return api<LiveRoom>('POST', `/live/rooms/${encodeURIComponent(id)}/end`);
  });
  const header = (
    <header class="topbar">
      <button type="button" class="icon-button" aria-label={t('chat.back')} onClick={() => navigate('/live/host')}>‹</button>
      <h1 class="ellipsis">{room?.title ?? t('live.host_title')}</h1>
      <span />
    </header>
  );
  if (!room) return <section class="live-tab">{header}<ErrorLine error={loadError} />{!loadError && <p class="muted pad">{t('common.loading')}</p>}</section>;
  if (room.host.id !== me.id) return <section class="live-tab">{header}<p class="error pad">{t('error.forbidden')}</p></section>;
  const pinned = joined && joined.pinned !== undefined ? joined.pinned : room.pinned_product;
  const viewers = joined?.viewers ?? room.viewers;
  const likes = joined?.likes ?? room.likes;
  const status = ended ? 'ended' : room.status;
  const obs = key?.rtmp_url ? splitRtmpUrl(key.rtmp_url) : null;
  // Before the stream arrives the settings come first; once live, the products and the chat.
  const ingest = (
    <div class="pad host-ingest" role="group" aria-label={t('live.stream_settings')}>
      <h2>{t('live.stream_settings')}</h2>
      {status === 'created' && <p class="small">{t('live.obs_hint')}</p>}
      {key?.rtmp_url && obs ? (
        <>
          <CopyField label={t('live.rtmp_url')} value={key.rtmp_url} secret />
          <CopyField label={t('live.obs_server')} value={obs.server} />
          <CopyField label={t('live.stream_key')} value={key.stream_key} secret />
        </>
      ) : key ? <p class="small muted">{t('live.no_rtmp')}</p> : <p class="small muted">{t('live.key_hidden')}</p>}
      <button type="button" class="small-button" disabled={busy} onClick={rotate}>{t('live.rotate')}</button>
    </div>
  );
  return (
    <section class="live-tab host-room" aria-label={room.title}>
      {header}
      <ConnectionBanner />
      <div class="pad">
        <p class={`host-status ${status}`} role="status" data-testid="host-status">
          {status === 'live' ? `🔴 ${t('live.status.live')}` : status === 'ended' ? t('live.status.ended') : `⏳ ${t('live.status.created')}`}
        </p>
        {status === 'live' && (
          <p class="host-counts" data-testid="host-counts">
            <span role="img" aria-label={t('live.viewers', { n: viewers })}>👁 {formatCount(viewers)}</span>
            <span role="img" aria-label={t('live.likes', { n: likes })}>❤️ {formatCount(likes)}</span>
          </p>
        )}
        {status === 'live' && room.playback && (
          <div class="host-preview">
            <HlsPlayer src={room.playback.hls_url} auth={false} muted label={t('live.preview')} className="host-preview-video" />
          </div>
        )}
        {status === 'ended' && (
          <p class="small">{room.replay ? t('live.host_ended_replay') : t('live.replay_soon')}{' '}
            {room.replay && <button type="button" class="link small" onClick={() => navigate(`/live/${encodeURIComponent(room.id)}`)}>{t('live.watch_replay')}</button>}</p>
        )}
        <ErrorLine error={error} />
      </div>
      {/* One place in the tree whatever the status, so going live does not restart the camera. */}
      {!ended && key?.websocket_url && <PhoneCamera websocketPath={key.websocket_url} streamKey={key.stream_key} />}
      {status === 'created' && ingest}
      {room.products.length > 0 && (
        <div class="pad">
          <h2>{t('live.products')}</h2>
          <ul class="list" aria-label={t('live.products')}>
            {room.products.map((product) => {
              const isPinned = pinned?.id === product.id;
              return (
                <li class="row" data-testid="host-product">
                  <div class="row-main"><strong class="ellipsis">{product.title}</strong>
                    {product.price && <><br /><span class="shop-price small">{formatMoney(product.price.amount, product.price.currency)}</span></>}
                    {isPinned && <span class="small notice"> · 📌 {t('live.pinned_now')}</span>}</div>
                  {!ended && (isPinned
                    ? <button type="button" class="small-button" disabled={busy} aria-label={t('live.unpin_title', { title: product.title })} onClick={() => pin(null)}>{t('live.unpin')}</button>
                    : <button type="button" class="primary small-button" disabled={busy} aria-label={t('live.pin_title', { title: product.title })} onClick={() => pin(product.id)}>{t('live.pin')}</button>)}
                </li>
              );
            })}
          </ul>
        </div>
      )}
      {status === 'live' && <HostDeals room={room} joined={joined} />}
      {status === 'live' && (
        <div class="pad host-chat">
          <h2>{t('live.chat')}</h2>
          <ChatList messages={joined?.chat ?? []} mine={me.id} moderate={(message) => (
            <>
              {message.user.id !== me.id && (
                <button type="button" class="link small chat-moderate" onClick={() => moderate(message.user.id, !muted[message.user.id])}
                  aria-label={t(muted[message.user.id] ? 'live.unmute_name' : 'live.mute_name', { name: message.user.display_name })}>
                  {muted[message.user.id] ? t('live.unmute') : t('live.mute')}
                </button>
              )}
              {/* Every viewer's copy goes too (`live.chat_deleted`). */}
              <button type="button" class="link small chat-moderate" onClick={() => remove(message.id)}
                aria-label={t('live.delete_message', { name: message.user.display_name, text: message.text })}>
                {t('live.delete')}
              </button>
            </>
          )} />
          {!(joined?.chat.length) && <p class="small muted">{t('live.no_chat')}</p>}
          <ChatForm roomId={id} />
        </div>
      )}
      {status === 'live' && ingest}
      {!ended && (
        <div class="pad">
          <button type="button" class="danger wide" disabled={busy} onClick={end}>{t('live.end')}</button>
        </div>
      )}
    </section>
  );
}
