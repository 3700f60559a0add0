// The shop's half of the client state (API.md "Shop"): its wire types, the orders and
// group buys the socket keeps fresh (`order.updated`, `group_buy.updated`), the buyer's
// remembered address and the clock the countdowns read.
//
// The server is the truth: a status, a price, seats left and a deadline are shown only as
// the API or an event gave them; the client only counts the time down.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api';
import type { MoneyValue, Page, User } from './api';
import { createStore } from './store';

export interface Rating { average: number; count: number }
export interface Shop { id: string; owner: User; name: string; description: string; rating: Rating; created_at: string }
export interface Sku { id: string; name: string; price: MoneyValue; group_price?: MoneyValue | null; stock: number }
export interface OpenGroup { id: string; leader: User; seats_left: number; expires_at: string }
export interface FlashSale {
  id: string; sku_id: string; product_id: string; price: MoneyValue; quantity: number; remaining: number;
  per_user_limit: number; starts_at: string; ends_at: string;
}
export interface Product {
  id: string; shop_id: string; title: string; description: string; media_ids: string[]; photo_urls: string[];
  skus: Sku[]; group_size?: number | null; status: 'active' | 'archived'; rating: Rating; sold_count: number;
  created_at: string; open_groups?: OpenGroup[] | null; flash_sales?: FlashSale[] | null;
}
export type OrderStatus = 'grouping' | 'paid' | 'shipped' | 'completed' | 'cancelled' | 'refund_requested' | 'refunded';
export interface OrderItem { sku_id: string; product_id?: string; title: string; sku_name: string; quantity: number; unit_price: MoneyValue }
export interface Shipment { carrier: string; tracking_number: string; shipped_at: string | null; auto_confirm_at: string | null }
export interface Order {
  id: string; buyer: { id: string }; shop: { id: string; owner: { id: string } }; items: OrderItem[]; total: MoneyValue;
  status: OrderStatus; group_buy_id?: string | null; shipment?: Shipment | null;
  refund?: { reason: string | null; amount: MoneyValue } | null; reviewed?: boolean; created_at: string; updated_at: string;
}
export interface GroupBuy {
  id: string; product_id: string; sku_id: string; size: number; price: MoneyValue; members: User[]; seats_left: number;
  status: 'forming' | 'complete' | 'failed'; expires_at: string;
}
export interface Address { name: string; line1: string; city: string; postal_code: string; country: string; phone: string }

export const EMPTY_ADDRESS: Address = { name: '', line1: '', city: '', postal_code: '', country: '', phone: '' };

interface ShopState {
  /** Orders this client has seen, as the last fetch or `order.updated` left them. */
  orders: Record<string, Order>;
  /** Group buys by id, as the last fetch or `group_buy.updated` left them. */
  groupBuys: Record<string, GroupBuy>;
  /** Bumped by every shop event, so lists and product pages refetch. */
  version: number;
  /** The signed-in merchant's shop: undefined until asked, null when they have none. */
  myShop: Shop | null | undefined;
}

export const shop = createStore<ShopState>({ orders: {}, groupBuys: {}, version: 0, myShop: undefined });

/**
 * How long shop events wait to be applied together. A flash sale tells its merchant of every
 * order, thousands in a few seconds: one state update and one refetch of the open list per
 * event would be thousands of `GET /orders` from one tab. Applied together, an open screen
 * refetches at most about three times a second however many orders arrive.
 */
const SHOP_EVENTS_WAIT_MS = 300;
let pendingOrders: Order[] = [];
let pendingGroupBuys: GroupBuy[] = [];
let pendingFlush: ReturnType<typeof setTimeout> | undefined;

export function resetShop() {
  if (pendingFlush !== undefined) clearTimeout(pendingFlush);
  pendingFlush = undefined;
  pendingOrders = [];
  pendingGroupBuys = [];
  shop.set({ orders: {}, groupBuys: {}, version: 0, myShop: undefined });
}

/** Whether `known` is a later version of the order than `order`: events and fetches may
 * cross, and the later `updated_at` wins. */
function isOlder(order: Order, known: Order | undefined): boolean {
  return known !== undefined && Date.parse(known.updated_at) > Date.parse(order.updated_at);
}

export function noteOrder(order: Order) {
  shop.set((s) => {
    const known = s.orders[order.id];
    if (isOlder(order, known)) return {};
    return { orders: { ...s.orders, [order.id]: { ...known, ...order } } };
  });
}

export function noteGroupBuy(group: GroupBuy) {
  shop.set((s) => ({ groupBuys: { ...s.groupBuys, [group.id]: { ...s.groupBuys[group.id], ...group } } }));
}

/** What the socket's shop events do (called from data.ts's event switch): kept, then applied
 * with the others that arrive within `SHOP_EVENTS_WAIT_MS`, in the order they came. */
export function applyShopEvent(type: string, data: any) {
  if (type === 'order.updated' && data?.id) pendingOrders.push(data);
  else if (type === 'group_buy.updated' && data?.id) pendingGroupBuys.push(data);
  else return;
  if (pendingFlush === undefined) pendingFlush = setTimeout(flushShopEvents, SHOP_EVENTS_WAIT_MS);
}

function flushShopEvents() {
  pendingFlush = undefined;
  const [orders, groupBuys] = [pendingOrders, pendingGroupBuys];
  pendingOrders = [];
  pendingGroupBuys = [];
  shop.set((s) => {
    // One copy for the whole burst, not one per event.
    const known = { ...s.orders };
    for (const order of orders) {
      if (!isOlder(order, known[order.id])) known[order.id] = { ...known[order.id], ...order };
    }
    const groups = { ...s.groupBuys };
    for (const group of groupBuys) groups[group.id] = { ...groups[group.id], ...group };
    return { orders: known, groupBuys: groups, version: s.version + 1 };
  });
}

/** After a `resync` (events were missed): every shop view refetches. */
export function refreshShop() {
  shop.set((s) => ({ version: s.version + 1 }));
}

export async function loadOrder(id: string): Promise<Order> {
  const order = await api<Order>('GET', `/orders/${encodeURIComponent(id)}`);
  noteOrder(order);
  return order;
}

export async function loadOrders(role: 'buyer' | 'seller', status?: string): Promise<Order[]> {
  const query = `role=${role}&limit=200${status ? `&status=${encodeURIComponent(status)}` : ''}`;
  const page = await api<Page<Order>>('GET', `/orders?${query}`);
  page.items.forEach(noteOrder);
  return page.items;
}

export async function loadGroupBuy(id: string): Promise<GroupBuy> {
  const group = await api<GroupBuy>('GET', `/group-buys/${encodeURIComponent(id)}`);
  noteGroupBuy(group);
  return group;
}

export async function loadMyShop(): Promise<Shop | null> {
  try {
    const mine = await api<Shop>('GET', '/shops/mine');
    shop.set({ myShop: mine });
    return mine;
  } catch (error: any) {
    if (error?.code !== 'shop_not_found') throw error;
    shop.set({ myShop: null });
    return null;
  }
}

const shopRequests = new Map<string, Promise<Shop>>();
/** A shop by id, fetched once per page load (names and ratings shown beside products). */
export function loadShop(id: string): Promise<Shop> {
  let request = shopRequests.get(id);
  if (!request) {
    request = api<Shop>('GET', `/shops/${encodeURIComponent(id)}`);
    request.catch(() => shopRequests.delete(id));
    shopRequests.set(id, request);
  }
  return request;
}

/** The buyer's address, remembered per user on this device for the next checkout. */
export function savedAddress(userId: string): Address {
  try {
    const saved = JSON.parse(localStorage.getItem(`plaza.shop.address.${userId}`) ?? 'null');
    return saved ? { ...EMPTY_ADDRESS, ...saved } : EMPTY_ADDRESS;
  } catch {
    return EMPTY_ADDRESS;
  }
}

export function saveAddress(userId: string, address: Address) {
  localStorage.setItem(`plaza.shop.address.${userId}`, JSON.stringify(address));
}

/** Posts a product card into a chat; the server renders its title, price and photo. */
export function shareProduct(conversationId: string, productId: string) {
  return api('POST', `/products/${encodeURIComponent(productId)}/share`, { conversation_id: conversationId });
}

export function shareGroupBuy(conversationId: string, groupId: string) {
  return api('POST', `/group-buys/${encodeURIComponent(groupId)}/share`, { conversation_id: conversationId });
}

/** The flash sale of a SKU that is on now, or else the next one to start. */
export function currentFlashSale(product: Product, skuId: string, now: number): FlashSale | null {
  const sales = (product.flash_sales ?? []).filter((sale) => sale.sku_id === skuId && Date.parse(sale.ends_at) > now);
  sales.sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
  return sales[0] ?? null;
}

// ---- the clock -----------------------------------------------------------------------

const clock = createStore({ now: Date.now() });
let clockUsers = 0;
let clockTimer = 0;

/** The time now, re-rendering every second while a countdown is on screen. */
export function useNow(): number {
  useEffect(() => {
    if (clockUsers++ === 0) clockTimer = window.setInterval(() => clock.set({ now: Date.now() }), 1000);
    return () => { if (--clockUsers === 0) clearInterval(clockTimer); };
  }, []);
  return clock.use((s) => s.now);
}

/** "1:02:03" or "4:05": what is left until `until`, never below zero. */
export function timeLeft(until: string, now: number): string {
  const seconds = Math.max(0, Math.floor((Date.parse(until) - now) / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** A loaded value that refetches whenever `deps` change; the error is kept for the screen. */
export function useLoaded<T>(load: () => Promise<T>, deps: unknown[]): [T | null, unknown, () => void] {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [again, setAgain] = useState(0);
  useEffect(() => {
    let live = true;
    load().then((loaded) => { if (live) { setValue(loaded); setError(null); } }).catch((caught) => live && setError(caught));
    return () => { live = false; };
  }, [...deps, again]);
  return [value, error, () => setAgain((n) => n + 1)];
}
