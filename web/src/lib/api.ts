// The HTTP half of the API contract (see /work/shared/API.md): JSON in and out, bearer
// auth, problem documents turned into ApiError so screens can translate `code`.

export interface User { id: string; username: string; display_name: string; avatar_url: string | null; created_at: string }
export interface Message {
  id: string; conversation_id: string; seq: number; sender_id: string; client_id: string;
  kind: string; body: any; created_at: string;
}
export interface Member { user: User; role: string; read_seq: number; joined_at: string }
export interface Conversation {
  id: string; kind: 'direct' | 'group'; title: string | null; owner_id: string | null; member_ids: string[];
  last_seq: number; last_activity_at: string; created_at: string;
  members?: Member[] | null; last_message?: Message | null; unread_count?: number | null;
}
export interface Page<T> { items: T[]; next_cursor: string | null }
export interface Balance { currency: string; available: number; held: number }
export interface Entry {
  id: string; transaction_id: string; kind: string; direction: string; amount: number; currency: string;
  counterparty: string; counterparty_user_id: string | null; reference: string; note: string | null; created_at: string;
}
export interface Contact { user: User; status: 'accepted' | 'incoming' | 'outgoing'; updated_at: string }
export interface Claim { user_id: string; amount: number; currency: string; claimed_at: string }
export interface RedPacket {
  id: string; sender_id: string; conversation_id: string; total: { amount: number; currency: string }; count: number;
  mode: string; greeting: string | null; claimed_count: number; claimed_amount: number; created_at: string;
  expires_at: string; refunded_at: string | null; claims: Claim[];
}

export interface LatLng { lat: number; lng: number }
export interface MoneyValue { amount: number; currency: string }
export interface Vehicle { plate: string; model: string; seats: number }
/** Every `ride.status` (API.md "Rides"): the trip's steps in order, then the other two ends
 *  (what each means for a screen: lib/rides.ts). */
export const RIDE_STATUSES = ['requested', 'driver_assigned', 'driver_arrived', 'in_progress', 'completed', 'cancelled', 'no_driver'] as const;
export type RideStatus = typeof RIDE_STATUSES[number];
export interface Ride {
  id: string; status: RideStatus; rider_id: string; driver_id: string | null; pickup: LatLng; dropoff: LatLng;
  fare: MoneyValue; hold: MoneyValue; charged: MoneyValue; payment_status: string; distance_m: number; duration_s: number;
  surge: number; cancelled_by: 'rider' | 'driver' | null; created_at: string; updated_at: string; vehicle?: Vehicle | null;
  driver_location?: LatLng | null;
}
export interface Quote {
  id: string; fare: MoneyValue; distance_m: number; duration_s: number; surge: number; pickup_eta_s: number | null; expires_at: string;
}
/** `remaining_ms` is what was left by the server's clock when the offer was written. */
export interface Offer { ride_id: string; pickup: LatLng; dropoff: LatLng; fare: MoneyValue; pickup_eta_s: number | null; expires_at: string; remaining_ms: number }
export interface DriverState {
  driver_id: string; online: boolean; vehicle: Vehicle | null; location: LatLng | null; active_ride_id: string | null;
  ride: Ride | null; offer: Offer | null;
}
/** Free drivers near a point, each only as the centre of its ~300 m cell. */
export interface NearbyDrivers { drivers: LatLng[] }
export interface ClientConfig {
  map: { tile_url: string | null; attribution: string | null; center: LatLng; zoom: number };
  rides: { cancel_fee: MoneyValue; platform_fee_bps: number; hold_margin_percent: number };
  currencies: string[];
}

export class ApiError extends Error {
  /** The problem's typed extension members (`ride_id`, `available`, …), when it has them. */
  public extra: Record<string, unknown>;
  constructor(public status: number, public code: string, detail: string, public field?: string, extra?: Record<string, unknown>) {
    super(detail);
    this.extra = extra ?? {};
  }
}

const TOKEN_KEY = 'plaza.token';
let token: string | null = localStorage.getItem(TOKEN_KEY);

export function getToken() { return token; }
export function setToken(value: string | null) {
  token = value;
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Called when the server no longer accepts the token (revoked, expired). */
export let onUnauthenticated: () => void = () => {};
export function setOnUnauthenticated(handler: () => void) { onUnauthenticated = handler; }

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  options: { idempotencyKey?: string; form?: FormData } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
  let payload: BodyInit | undefined;
  if (options.form) payload = options.form;
  else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, 'network', 'the server could not be reached');
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let data: any = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) {
    const code = data?.code ?? 'unknown';
    if (response.status === 401 && code === 'unauthenticated' && token) onUnauthenticated();
    throw new ApiError(response.status, code, data?.detail ?? response.statusText, data?.field, data ?? undefined);
  }
  return data as T;
}

/** A random id for client_id and Idempotency-Key; works on plain-HTTP origins too. */
/** Uploads a file as media (`POST /media`, multipart) and returns its id. */
export async function uploadMedia(file: File): Promise<string> {
  const form = new FormData();
  form.append('file', file);
  return (await api<{ id: string }>('POST', '/media', undefined, { form })).id;
}

export function newId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}
