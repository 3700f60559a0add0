// Client state, and what each event from the socket (`socket.ts`) does to it.
//
// Messages are keyed by `seq` and pending sends by `client_id`, so a replayed event or a
// retried send never shows twice.
import { api, ApiError, newId, setOnUnauthenticated, setToken, getToken } from './api';
import type { Balance, Contact, Conversation, DriverState, Message, Offer, RedPacket, Ride, User } from './api';
import { rideStep } from './rides';
import { createStore } from './store';
import { Socket } from './socket';
import { applyShopEvent, refreshShop, resetShop } from './shop';
import { applyVideoEvent } from './video';
import { applyLiveFrame, bindLiveSocket, liveResumed } from './live';

export interface Pending {
  client_id: string; conversation_id: string; kind: string; body: any; created_at: string;
  status: 'sending' | 'failed'; error?: ApiError; preview_url?: string;
}

export interface State {
  me: User | null;
  users: Record<string, User>;
  conversations: Record<string, Conversation>;
  conversationsLoaded: boolean;
  messages: Record<string, Message[]>;
  /** Whether the oldest loaded message of a conversation is its first. */
  complete: Record<string, boolean>;
  pending: Record<string, Pending[]>;
  /** conversation → user → highest seq that user has read. */
  reads: Record<string, Record<string, number>>;
  /** conversation → user → time (ms) their typing indicator expires. */
  typing: Record<string, Record<string, number>>;
  connection: 'connecting' | 'online' | 'offline';
  balances: Balance[] | null;
  contacts: Contact[] | null;
  /** Red packets as this user last fetched them (for how their bubbles look), by id. */
  redPackets: Record<string, RedPacket>;
  openConversation: string | null;
  /** Rides this client has seen, by id, as the last `ride.updated` or fetch left them. */
  rides: Record<string, Ride>;
  /** Offers made to this user as a driver, by ride id (until answered or expired). */
  offers: Record<string, HeldOffer>;
  /** ride id → the assigned driver's latest position (ephemeral `driver.location`). */
  driverLocations: Record<string, { lat: number; lng: number; heading: number | null; at: number }>;
}

const initial: State = {
  me: null, users: {}, conversations: {}, conversationsLoaded: false, messages: {}, complete: {}, pending: {},
  reads: {}, typing: {}, connection: 'connecting', balances: null, contacts: null, redPackets: {},
  openConversation: null, rides: {}, offers: {}, driverLocations: {},
};

export const store = createStore<State>(initial);

// ---- users -------------------------------------------------------------------------

const userRequests = new Map<string, Promise<User | null>>();

export function rememberUsers(users: User[]) {
  if (!users.length) return;
  store.set((s) => ({ users: { ...s.users, ...Object.fromEntries(users.map((u) => [u.id, u])) } }));
}

export function loadUser(id: string): Promise<User | null> {
  const known = store.get().users[id];
  if (known) return Promise.resolve(known);
  let request = userRequests.get(id);
  if (!request) {
    request = api<User>('GET', `/users/${encodeURIComponent(id)}`)
      .then((user) => { rememberUsers([user]); return user; })
      .catch(() => null);
    userRequests.set(id, request);
  }
  return request;
}

export function displayName(id: string): string {
  const state = store.get();
  if (state.me?.id === id) return state.me.display_name;
  const user = state.users[id];
  if (!user) { void loadUser(id); return '…'; }
  return user.display_name || user.username;
}

export function conversationTitle(conversation: Conversation): string {
  if (conversation.title) return conversation.title;
  const me = store.get().me?.id;
  const others = conversation.member_ids.filter((id) => id !== me);
  return others.map(displayName).join(', ') || displayName(me ?? '');
}

// ---- session -------------------------------------------------------------------------

export async function startSession(token: string, me: User) {
  setToken(token);
  store.set({ me });
  socket.start();
}

export async function restoreSession(): Promise<boolean> {
  if (!getToken()) return false;
  try {
    const me = await api<User>('GET', '/me');
    store.set({ me });
    socket.start();
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { setToken(null); return false; }
    // The server is unreachable: stay signed in and let the socket retry.
    socket.start();
    return true;
  }
}

export async function logout() {
  try { await api('POST', '/auth/logout'); } catch { /* the token goes either way */ }
  endSession();
}

function endSession() {
  socket.stop();
  setToken(null);
  socket.forgetCursor();
  resetShop();
  store.set({ ...initial, connection: 'offline' });
}

setOnUnauthenticated(endSession);

// ---- conversations and messages ------------------------------------------------------

export async function loadConversations() {
  const page = await api<{ items: Conversation[] }>('GET', '/conversations?limit=200');
  store.set((s) => {
    const conversations = { ...s.conversations };
    for (const conversation of page.items) conversations[conversation.id] = { ...conversations[conversation.id], ...conversation };
    return { conversations, conversationsLoaded: true };
  });
  page.items.forEach((c) => c.member_ids.forEach((id) => void loadUser(id)));
}

export async function loadConversation(id: string) {
  const conversation = await api<Conversation>('GET', `/conversations/${encodeURIComponent(id)}`);
  rememberUsers((conversation.members ?? []).map((m) => m.user));
  store.set((s) => ({
    conversations: { ...s.conversations, [id]: { ...s.conversations[id], ...conversation } },
    reads: {
      ...s.reads,
      [id]: { ...s.reads[id], ...Object.fromEntries((conversation.members ?? []).map((m) => [m.user.id, Math.max(m.read_seq, s.reads[id]?.[m.user.id] ?? 0)])) },
    },
  }));
  return conversation;
}

/** Loads the newest page, or the page before the oldest loaded message. */
export async function loadMessages(conversationId: string, older = false) {
  const have = store.get().messages[conversationId] ?? [];
  const before = older && have.length ? `&before_seq=${have[0].seq}` : '';
  const limit = 100;
  const page = await api<{ items: Message[] }>('GET', `/conversations/${encodeURIComponent(conversationId)}/messages?limit=${limit}${before}`);
  addMessages(page.items);
  if (page.items.length < limit || page.items[0]?.seq === 1) {
    store.set((s) => ({ complete: { ...s.complete, [conversationId]: true } }));
  }
}

function addMessages(messages: Message[]) {
  if (!messages.length) return;
  store.set((s) => {
    const byConversation: Record<string, Message[]> = {};
    for (const message of messages) (byConversation[message.conversation_id] ??= []).push(message);
    const all = { ...s.messages };
    const pending = { ...s.pending };
    for (const [id, incoming] of Object.entries(byConversation)) {
      const bySeq = new Map((all[id] ?? []).map((m) => [m.seq, m]));
      for (const message of incoming) bySeq.set(message.seq, message);
      all[id] = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
      const arrived = new Set(incoming.map((m) => m.client_id));
      if (pending[id]?.some((p) => arrived.has(p.client_id))) pending[id] = pending[id].filter((p) => !arrived.has(p.client_id));
    }
    return { messages: all, pending };
  });
}

function noteNewMessage(message: Message) {
  // "Ben opened your red packet": the packet's bubble changes with it.
  if (message.kind === 'system' && typeof message.body?.red_packet_id === 'string') redPacketChanged(message.body.red_packet_id);
  // Sending marks the sender's own read position (the server does the same, silently).
  noteRead({ conversation_id: message.conversation_id, user_id: message.sender_id, seq: message.seq });
  const state = store.get();
  const known = state.messages[message.conversation_id]?.some((m) => m.seq === message.seq);
  addMessages([message]);
  const conversation = state.conversations[message.conversation_id];
  if (!conversation) { void loadConversations(); return; }
  if (known && (conversation.last_seq ?? 0) >= message.seq) return;
  const mine = message.sender_id === state.me?.id;
  const reading = state.openConversation === message.conversation_id && document.visibilityState === 'visible';
  const newer = message.seq > (conversation.last_seq ?? 0);
  store.set((s) => ({
    conversations: {
      ...s.conversations,
      [message.conversation_id]: {
        ...conversation,
        last_seq: Math.max(conversation.last_seq ?? 0, message.seq),
        last_message: newer ? message : conversation.last_message,
        last_activity_at: newer ? message.created_at : conversation.last_activity_at,
        unread_count: mine || reading || !newer ? conversation.unread_count ?? 0 : (conversation.unread_count ?? 0) + 1,
      },
    },
    typing: { ...s.typing, [message.conversation_id]: { ...s.typing[message.conversation_id], [message.sender_id]: 0 } },
  }));
  if (reading && !mine) markRead(message.conversation_id);
}

const readTimers = new Map<string, number>();
/** Sends a read receipt for the newest loaded message (debounced). */
export function markRead(conversationId: string) {
  const messages = store.get().messages[conversationId];
  const last = messages?.[messages.length - 1]?.seq;
  const me = store.get().me?.id;
  if (!last || !me) return;
  store.set((s) => ({
    conversations: s.conversations[conversationId]
      ? { ...s.conversations, [conversationId]: { ...s.conversations[conversationId], unread_count: 0 } }
      : s.conversations,
  }));
  if ((store.get().reads[conversationId]?.[me] ?? 0) >= last) return;
  clearTimeout(readTimers.get(conversationId));
  readTimers.set(conversationId, window.setTimeout(() => {
    api('POST', `/conversations/${encodeURIComponent(conversationId)}/read`, { seq: last })
      .then(() => noteRead({ conversation_id: conversationId, user_id: me, seq: last }))
      .catch(() => {});
  }, 300));
}

function noteRead(receipt: { conversation_id: string; user_id: string; seq: number }) {
  store.set((s) => ({
    reads: {
      ...s.reads,
      [receipt.conversation_id]: {
        ...s.reads[receipt.conversation_id],
        [receipt.user_id]: Math.max(receipt.seq, s.reads[receipt.conversation_id]?.[receipt.user_id] ?? 0),
      },
    },
  }));
}

/** Shows the message at once and sends it; a retry reuses the client_id. */
export function sendMessage(conversationId: string, kind: string, body: any, previewUrl?: string) {
  const pending: Pending = {
    client_id: newId(), conversation_id: conversationId, kind, body, created_at: new Date().toISOString(),
    status: 'sending', preview_url: previewUrl,
  };
  store.set((s) => ({ pending: { ...s.pending, [conversationId]: [...(s.pending[conversationId] ?? []), pending] } }));
  socket.send(pending);
}

export function retrySend(pending: Pending) {
  updatePending(pending.conversation_id, pending.client_id, { status: 'sending', error: undefined });
  socket.send({ ...pending, status: 'sending' });
}

function updatePending(conversationId: string, clientId: string, patch: Partial<Pending>) {
  store.set((s) => ({
    pending: {
      ...s.pending,
      [conversationId]: (s.pending[conversationId] ?? []).map((p) => (p.client_id === clientId ? { ...p, ...patch } : p)),
    },
  }));
}

export function sendTyping(conversationId: string) { socket.frame({ type: 'typing', data: { conversation_id: conversationId } }); }

// ---- contacts and wallet -------------------------------------------------------------

export async function loadContacts() {
  const page = await api<{ items: Contact[] }>('GET', '/contacts?limit=200');
  rememberUsers(page.items.map((c) => c.user));
  store.set({ contacts: page.items });
}

export async function loadWallet() {
  const wallet = await api<{ balances: Balance[] }>('GET', '/wallet');
  store.set({ balances: wallet.balances });
}

// ---- red packets ---------------------------------------------------------------------

const packetRequests = new Map<string, Promise<RedPacket>>();

/** Fetches a red packet (one request at a time per packet) and keeps it for its bubble. */
export function loadRedPacket(id: string): Promise<RedPacket> {
  let request = packetRequests.get(id);
  if (!request) {
    request = api<RedPacket>('GET', `/red-packets/${encodeURIComponent(id)}`)
      .then((packet) => { store.set((s) => ({ redPackets: { ...s.redPackets, [id]: packet } })); return packet; })
      .finally(() => packetRequests.delete(id));
    packetRequests.set(id, request);
  }
  return request;
}

/** A claim happened: a packet this client shows is fetched again. */
function redPacketChanged(id: string) {
  const inFlight = packetRequests.get(id);
  // A fetch already under way may have been answered before this claim: fetch after it.
  if (inFlight) void inFlight.catch(() => {}).then(() => loadRedPacket(id)).catch(() => {});
  else if (store.get().redPackets[id]) void loadRedPacket(id).catch(() => {});
}

// ---- rides ---------------------------------------------------------------------------

/** Keeps the furthest known state of a ride (events and fetches may arrive out of order;
 *  a ride only moves forward, and a final state settles its payment a moment later). */
export function noteRide(ride: Ride) {
  store.set((s) => {
    const known = s.rides[ride.id];
    if (known && (rideStep(known.status) > rideStep(ride.status)
      || (known.status === ride.status && Date.parse(known.updated_at) > Date.parse(ride.updated_at)))) return {};
    // `vehicle` comes only from GET /rides/{id}; an event keeps the one already known.
    const merged = { ...ride, vehicle: ride.vehicle !== undefined ? ride.vehicle : known?.vehicle };
    const offers = { ...s.offers };
    if (ride.status !== 'requested') delete offers[ride.id];
    // A fetched ride says where its car is; a live frame, once one came, knows better.
    const at = ride.driver_location;
    const driverLocations = at && !s.driverLocations[ride.id]
      ? { ...s.driverLocations, [ride.id]: { lat: at.lat, lng: at.lng, heading: null, at: Date.now() } } : s.driverLocations;
    return { rides: { ...s.rides, [ride.id]: merged }, offers, driverLocations };
  });
}

export async function loadRide(id: string): Promise<Ride> {
  const ride = await api<Ride>('GET', `/rides/${encodeURIComponent(id)}`);
  noteRide(ride);
  return ride;
}

/** An offer as this client holds it: when it runs out on this device's monotonic clock
 *  (`performance.now()`), counted from the server's `remaining_ms` — a phone's own clock may
 *  be off — and when it was received. */
export interface HeldOffer extends Offer { deadline: number; total_ms: number; received: number }

/** Offers answered or run out here: a late copy (a fetch answered meanwhile) is not shown again. */
const offersDone = new Set<string>();
const OFFERS_DONE_MAX = 200;

export function noteOffer(offer: Offer) {
  if (offersDone.has(offer.ride_id)) return;
  const now = performance.now();
  const left = offer.remaining_ms;
  if (!(left > 0)) return;
  store.set((s) => {
    const total = Math.max(left, s.offers[offer.ride_id]?.total_ms ?? 0);
    return { offers: { ...s.offers, [offer.ride_id]: { ...offer, deadline: now + left, total_ms: total, received: now } } };
  });
  window.setTimeout(() => {
    const held = store.get().offers[offer.ride_id];
    if (held && held.deadline <= performance.now() + 50) dropOffer(offer.ride_id);
  }, left);
}

export function dropOffer(rideId: string) {
  if (offersDone.size >= OFFERS_DONE_MAX) offersDone.clear();
  offersDone.add(rideId);
  store.set((s) => { const offers = { ...s.offers }; delete offers[rideId]; return { offers }; });
}

/** The caller as a driver, from the server: the trip under way and the open offer with what is
 *  left of it now. Read on opening the driver's screen and after every reconnect, it also
 *  corrects offers replayed from before (whose `remaining_ms` is as old as the event): an offer
 *  received before the question and missing from the answer is no longer open. */
export async function loadDriverState(): Promise<DriverState> {
  const asked = performance.now();
  const state = await api<DriverState>('GET', '/rides/driver');
  if (state.ride) noteRide(state.ride);
  for (const held of Object.values(store.get().offers)) {
    if (held.ride_id !== state.offer?.ride_id && held.received < asked) dropOffer(held.ride_id);
  }
  if (state.offer) noteOffer(state.offer);
  return state;
}

// ---- what the socket brings -----------------------------------------------------------

function applyEvent(type: string, data: any) {
  switch (type) {
    case 'message.new': noteNewMessage(data); break;
    case 'message.read': noteRead(data); break;
    case 'conversation.updated': {
      const existing = store.get().conversations[data.id];
      store.set((s) => ({ conversations: { ...s.conversations, [data.id]: { ...existing, ...data } } }));
      if (store.get().me && !data.member_ids.includes(store.get().me!.id)) {
        store.set((s) => { const rest = { ...s.conversations }; delete rest[data.id]; return { conversations: rest }; });
      }
      break;
    }
    case 'contact.request': case 'contact.accepted': void loadContacts(); break;
    case 'wallet.updated': {
      const balances = [...(store.get().balances ?? [])];
      const index = balances.findIndex((b) => b.currency === data.currency);
      const balance = { currency: data.currency, available: data.available, held: data.held };
      if (index >= 0) balances[index] = balance; else balances.push(balance);
      store.set({ balances });
      break;
    }
    case 'ride.updated': noteRide(data); break;
    // A replayed offer counts down from its old `remaining_ms` until the driver's screen
    // reads the driver state after the reconnect (`loadDriverState`).
    case 'ride.offer': noteOffer(data); break;
    case 'order.updated': case 'group_buy.updated': applyShopEvent(type, data); break;
    case 'red_packet.claimed': redPacketChanged(data.red_packet_id); break;
    case 'video.ready': case 'video.failed': applyVideoEvent(type, data); break;
  }
}

function applyEphemeral(type: string, data: any) {
  switch (type) {
    case 'driver.location': {
      // Where the assigned driver is now.
      const { ride_id, lat, lng, heading } = data;
      store.set((s) => ({ driverLocations: { ...s.driverLocations, [ride_id]: { lat, lng, heading: heading ?? null, at: Date.now() } } }));
      return;
    }
    case 'typing': {
      const { conversation_id, user_id } = data;
      store.set((s) => ({ typing: { ...s.typing, [conversation_id]: { ...s.typing[conversation_id], [user_id]: Date.now() + 5000 } } }));
      return;
    }
  }
  if (type.startsWith('live.')) applyLiveFrame(type, data);
}

function sendFailed(clientId: string, problem: any) {
  for (const [conversationId, list] of Object.entries(store.get().pending)) {
    if (list.some((p) => p.client_id === clientId)) {
      updatePending(conversationId, clientId, {
        status: 'failed', error: new ApiError(problem.status ?? 0, problem.code ?? 'unknown', problem.detail ?? '', problem.field),
      });
    }
  }
}

function reloadState() {
  void loadConversations().catch(() => {});
  void loadWallet().catch(() => {});
  void loadContacts().catch(() => {});
  refreshShop();
  const open = store.get().openConversation;
  if (open) void loadMessages(open).catch(() => {});
}

export const socket = new Socket({
  event: applyEvent,
  ephemeral: applyEphemeral,
  ack: noteNewMessage,
  sendFailed,
  reload: reloadState,
  connection: (connection) => {
    if (store.get().connection !== connection) store.set({ connection });
    // Live rooms are joined per connection: a new one joins them again.
    if (connection === 'online') liveResumed();
  },
  pendingSends: () => Object.values(store.get().pending).flat(),
});
bindLiveSocket((frame) => socket.frame(frame));
window.addEventListener('online', () => socket.networkChanged(true));
window.addEventListener('offline', () => socket.networkChanged(false));
document.addEventListener('visibilitychange', () => {
  const open = store.get().openConversation;
  if (document.visibilityState === 'visible' && open) markRead(open);
});
