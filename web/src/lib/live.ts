// Live shopping's client state (API.md "Live"): the rooms this client has joined over the
// socket and what their frames said (chat, viewers and likes, the pinned product, the
// end, the running deal and who just bought), hearts summed before they are sent, and the
// HLS player's choice of engine.
//
// The socket frames are ephemeral: a reconnect joins every room again (and the server
// sends the last 50 messages again, merged here by id), and the screens fetch the room
// over HTTP after each rejoin for whatever a frame said while the socket was down.
import { api } from './api';
import type { MoneyValue, Page, User } from './api';
import { createStore } from './store';

/** The shop's `product` card of a product shown in a room. */
export interface ProductCard {
  type: 'product'; id: string; title: string; price: MoneyValue | null; group_price?: MoneyValue | null;
  group_size?: number | null; photo_url: string | null; shop_name: string; status: 'active' | 'archived';
}
export type RoomStatus = 'created' | 'live' | 'ended';
export interface LiveRoom {
  id: string; host: User; title: string; status: RoomStatus; viewers: number; likes: number;
  products: ProductCard[]; pinned_product: ProductCard | null; deal: LiveDeal | null;
  playback: { hls_url: string } | null; replay: { hls_url: string } | null; cover_url: string | null;
  created_at: string; started_at: string | null; ended_at: string | null;
}
/** A room as its host gets it at creation and at each key rotation: the only time the key is shown. */
export interface LiveRoomWithKey extends LiveRoom {
  stream_key: string; ingest: { rtmp_url: string | null; websocket_url: string | null };
}
export interface LiveChatMessage { id: string; user: User; text: string; at: string }
/** A shop flash sale running inside the stream (`room.deal`, `live.deal`'s `deal`). */
export interface LiveDeal {
  flash_sale_id: string; sku_id: string; product: ProductCard | null; price: MoneyValue; quantity: number;
  remaining: number; per_user_limit: number; ends_at: string;
  /** Milliseconds left by the server's clock when it answered: the countdown starts from it. */
  remaining_ms: number; ended: boolean;
}
/** A deal as this page got it: `seen_at` is `performance.now()` when it arrived, so the end
 *  is `seen_at + remaining_ms` on the monotonic clock, whatever the phone's wall clock says. */
export interface SeenDeal extends LiveDeal { seen_at: number }
/** One line of the sold ticker ("Mia bought 2 × Trail mix"). */
export interface SoldLine { key: number; buyer_name: string; product_title: string; quantity: number; seen_at: number }
export interface LiveSales { room_id: string; deals: number; orders: number; units: number; revenue: MoneyValue[] }

/** What the socket said about one joined room. */
export interface JoinedRoom {
  chat: LiveChatMessage[];
  /** From `live.stats`; null until the first one. */
  viewers: number | null;
  likes: number | null;
  /** From `live.pinned`: undefined until one came (the fetched room knows until then). */
  pinned: ProductCard | null | undefined;
  /** From `live.deal`: undefined until one came, null once it ended. */
  deal: SeenDeal | null | undefined;
  /** The latest sales, newest last (the ticker shows each briefly). */
  sold: SoldLine[];
  /** Every `live.sold` frame bumps it: the host's screen reads the totals again. */
  soldFrames: number;
  ended: boolean;
}

interface LiveState {
  joined: Record<string, JoinedRoom>;
  /** Bumped each time the socket joined the rooms again after a reconnect: screens refetch. */
  rejoins: number;
}

/** The chat kept per joined room: enough to scroll back a little, never unbounded. */
const CHAT_KEPT_MAX = 200;
/** Hearts are summed for this long and sent as one `POST …/likes`. */
const HEARTS_BATCH_MS = 500;
/** The most hearts one request may carry (API.md: 1–100). */
const HEARTS_PER_REQUEST_MAX = 100;
/** Sold lines kept per room: the ticker shows only the last few seconds' anyway. */
const SOLD_KEPT_MAX = 5;
let soldKey = 0;

export const live = createStore<LiveState>({ joined: {}, rejoins: 0 });

type Send = (frame: object) => boolean;
let send: Send = () => false;
/** How the socket's frames go out (`data.ts` binds its socket here, keeping this module free of it). */
export function bindLiveSocket(sender: Send) { send = sender; }

/** How many screens hold each room joined (the watch screen and the host screen may both). */
const holders = new Map<string, number>();

/** Joins a room's live frames; the returned function leaves it. */
export function joinRoom(roomId: string): () => void {
  const count = holders.get(roomId) ?? 0;
  holders.set(roomId, count + 1);
  if (count === 0) {
    live.set((s) => ({ joined: { ...s.joined, [roomId]: {
      chat: [], viewers: null, likes: null, pinned: undefined, deal: undefined, sold: [], soldFrames: 0, ended: false,
    } } }));
    // Not live yet: the next `resumed` joins it (`liveResumed`).
    send({ type: 'live.join', data: { room_id: roomId } });
  }
  return () => {
    const left = (holders.get(roomId) ?? 1) - 1;
    if (left > 0) { holders.set(roomId, left); return; }
    holders.delete(roomId);
    send({ type: 'live.leave', data: { room_id: roomId } });
    live.set((s) => { const joined = { ...s.joined }; delete joined[roomId]; return { joined }; });
  };
}

/** The socket is live again (a first connect or a reconnect): every held room is joined again. */
export function liveResumed() {
  if (!holders.size) return;
  for (const roomId of holders.keys()) send({ type: 'live.join', data: { room_id: roomId } });
  live.set((s) => ({ rejoins: s.rejoins + 1 }));
}

function updateJoined(roomId: string, change: (room: JoinedRoom) => Partial<JoinedRoom>) {
  live.set((s) => {
    const room = s.joined[roomId];
    if (!room) return {};
    return { joined: { ...s.joined, [roomId]: { ...room, ...change(room) } } };
  });
}

/** What a `live.*` frame does (called from data.ts's ephemeral switch). */
export function applyLiveFrame(type: string, data: any) {
  const roomId = data?.room_id;
  if (typeof roomId !== 'string' || !live.get().joined[roomId]) return;
  switch (type) {
    case 'live.chat': {
      const incoming: LiveChatMessage[] = Array.isArray(data.messages) ? data.messages : [];
      updateJoined(roomId, (room) => {
        // The last 50 come again on every rejoin: a message is kept once, by id.
        const known = new Set(room.chat.map((message) => message.id));
        const fresh = incoming.filter((message) => message && !known.has(message.id));
        if (!fresh.length) return {};
        return { chat: [...room.chat, ...fresh].slice(-CHAT_KEPT_MAX) };
      });
      return;
    }
    case 'live.chat_deleted':
      updateJoined(roomId, (room) => ({ chat: room.chat.filter((message) => message.id !== data.message_id) }));
      return;
    case 'live.stats':
      updateJoined(roomId, () => ({ viewers: Number(data.viewers) || 0, likes: Number(data.likes) || 0 }));
      return;
    case 'live.pinned':
      updateJoined(roomId, () => ({ pinned: data.product ?? null }));
      return;
    case 'live.deal': {
      const deal = data.deal as LiveDeal | undefined;
      if (!deal || typeof deal.flash_sale_id !== 'string') return;
      updateJoined(roomId, () => ({ deal: deal.ended ? null : seen(deal) }));
      return;
    }
    case 'live.sold': {
      // A rush arrives as one frame naming up to a few sales (`sales`) and counting the rest.
      const sales: any[] = Array.isArray(data.sales) && data.sales.length ? data.sales : [data];
      const now = performance.now();
      const lines: SoldLine[] = sales.filter((sale) => sale && typeof sale.buyer_name === 'string').map((sale) => ({
        key: ++soldKey, buyer_name: sale.buyer_name, product_title: String(sale.product_title ?? ''),
        quantity: Number(sale.quantity) || 1, seen_at: now,
      }));
      updateJoined(roomId, (room) => ({ sold: [...room.sold, ...lines].slice(-SOLD_KEPT_MAX), soldFrames: room.soldFrames + 1 }));
      return;
    }
    case 'live.ended':
      updateJoined(roomId, () => ({ ended: true, deal: null }));
      return;
  }
}

// ---- hearts ---------------------------------------------------------------------------

const unsentHearts = new Map<string, number>();
const heartTimers = new Map<string, number>();

/** One tap of the heart: counted now, sent with the other taps of the next half second. */
export function sendHeart(roomId: string) {
  unsentHearts.set(roomId, (unsentHearts.get(roomId) ?? 0) + 1);
  if (!heartTimers.has(roomId)) heartTimers.set(roomId, window.setTimeout(() => flushHearts(roomId), HEARTS_BATCH_MS));
}

function flushHearts(roomId: string) {
  heartTimers.delete(roomId);
  const total = unsentHearts.get(roomId) ?? 0;
  const count = Math.min(total, HEARTS_PER_REQUEST_MAX);
  unsentHearts.delete(roomId);
  if (count <= 0) return;
  // More than one request carries: the rest goes in the next batch.
  if (total > count) {
    unsentHearts.set(roomId, total - count);
    heartTimers.set(roomId, window.setTimeout(() => flushHearts(roomId), HEARTS_BATCH_MS));
  }
  // Hearts are a signal, not a ledger: a lost batch is not worth an error on the screen.
  api('POST', `/live/rooms/${encodeURIComponent(roomId)}/likes`, { count }).catch(() => {});
}

// ---- rooms over HTTP --------------------------------------------------------------------

export function loadRoom(roomId: string): Promise<LiveRoom> {
  return api<LiveRoom>('GET', `/live/rooms/${encodeURIComponent(roomId)}`);
}

export function loadRooms(status: RoomStatus, limit = 50): Promise<Page<LiveRoom>> {
  return api<Page<LiveRoom>>('GET', `/live/rooms?status=${status}&limit=${limit}`);
}

/** The chat kept with a room for its replay, oldest first (at most `pagesMax` pages of 200). */
export async function loadChatHistory(roomId: string, pagesMax = 5): Promise<LiveChatMessage[]> {
  const messages: LiveChatMessage[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < pagesMax; page++) {
    const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const loaded: Page<LiveChatMessage> = await api<Page<LiveChatMessage>>('GET', `/live/rooms/${encodeURIComponent(roomId)}/chat?limit=200${query}`);
    messages.push(...loaded.items);
    cursor = loaded.next_cursor;
    if (!cursor) break;
  }
  return messages;
}

/** A deal stamped with the monotonic time it arrived (see `SeenDeal`). */
export function seen(deal: LiveDeal): SeenDeal { return { ...deal, seen_at: performance.now() }; }

/** When a seen deal ends, on `performance.now()`'s clock. */
export function dealEndsAt(deal: SeenDeal): number { return deal.seen_at + Math.max(0, deal.remaining_ms); }

export interface DealInput { sku_id: string; price: MoneyValue; quantity: number; duration_s: number; per_user_limit: number }
export function startDeal(roomId: string, input: DealInput): Promise<LiveDeal> {
  return api<LiveDeal>('POST', `/live/rooms/${encodeURIComponent(roomId)}/deals`, input);
}
export function loadSales(roomId: string): Promise<LiveSales> {
  return api<LiveSales>('GET', `/live/rooms/${encodeURIComponent(roomId)}/sales`);
}

export function sendLiveChat(roomId: string, text: string) {
  return api('POST', `/live/rooms/${encodeURIComponent(roomId)}/chat`, { text });
}

/** The secret stream key, kept in this page's memory only: the server keeps just its digest,
 *  so after a reload the host rotates it to see one again. */
const streamKeys = new Map<string, { stream_key: string; rtmp_url: string | null; websocket_url: string | null }>();
export function rememberKey(room: LiveRoomWithKey) {
  streamKeys.set(room.id, { stream_key: room.stream_key, rtmp_url: room.ingest.rtmp_url, websocket_url: room.ingest.websocket_url });
}
export function knownKey(roomId: string) { return streamKeys.get(roomId) ?? null; }

/** OBS asks for a server and a stream key: the RTMP URL split at its last `/`. */
export function splitRtmpUrl(url: string): { server: string; key: string } {
  const at = url.lastIndexOf('/');
  return { server: url.slice(0, at), key: url.slice(at + 1) };
}

/** The media id in a `/api/v1/media/{id}` URL. */
export function mediaIdOf(url: string | null | undefined): string | null {
  return typeof url === 'string' ? url.split('/').pop() ?? null : null;
}
