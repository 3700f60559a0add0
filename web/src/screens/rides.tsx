// Rides, for riders and drivers (API.md "Rides"). Loaded on demand: the map, the
// bundled street file and these screens are not part of the first load.
//
// The server is the truth: every state shown comes from a ride the API returned or a
// `ride.updated` / `ride.offer` / `driver.location` frame (lib/data.ts). What the client
// keeps itself is only which ride to show after a reload (localStorage) and, for a
// driver, the car and position to go online with again.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../lib/api';
import type { ClientConfig, DriverState, Entry, LatLng, Offer, Page, Quote, Ride } from '../lib/api';
import { conversationTitle, displayName, dropOffer, loadRide, loadUser, loadWallet, noteRide, store } from '../lib/data';
import { t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { navigate } from '../lib/router';
import { Dialog, ErrorLine } from '../lib/ui';
import { ConnectionBanner } from './conversation';
import { MapView, nearestStreet } from '../map/map';
import type { Marker } from '../map/map';
import { bearing, between, distanceM } from '../map/geo';

// ---- shared ------------------------------------------------------------------------------

let configRequest: Promise<ClientConfig> | null = null;
function loadClientConfig(): Promise<ClientConfig> {
  configRequest ??= api<ClientConfig>('GET', '/client/config').catch((error) => { configRequest = null; throw error; });
  return configRequest;
}

function useClientConfig(): [ClientConfig | null, unknown] {
  const [config, setConfig] = useState<ClientConfig | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { loadClientConfig().then(setConfig).catch(setError); }, []);
  return [config, error];
}

/** Re-renders every `ms` (countdowns, "n s ago"). */
function useTick(ms = 1000) {
  const [, setN] = useState(0);
  useEffect(() => { const id = window.setInterval(() => setN((n) => n + 1), ms); return () => clearInterval(id); }, [ms]);
}

function placeName(at: LatLng): string {
  const street = nearestStreet(at);
  return street ? t('rides.near', { street }) : `${at.lat.toFixed(4)}, ${at.lng.toFixed(4)}`;
}

function km(metres: number) { return t('rides.km', { n: (metres / 1000).toFixed(1) }); }
function minutes(seconds: number) { return t('rides.min', { n: Math.max(1, Math.round(seconds / 60)) }); }
function clock(seconds: number) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
/** The driver's share of an amount, as the server computes it (the fee is rounded down). */
function driverShare(amount: number, feeBps: number) { return amount - Math.floor(amount * feeBps / 10_000); }
/** Rough city driving time, for an ETA from the driver's live position. */
const CITY_SPEED_MPS = 25 / 3.6;

const FINAL = new Set(['completed', 'cancelled', 'no_driver']);

function saved<T>(key: string): T | null {
  try { return JSON.parse(localStorage.getItem(key) ?? 'null'); } catch { return null; }
}
function save(key: string, value: unknown) {
  if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, JSON.stringify(value));
}

export function RidesScreen() {
  const me = store.use((s) => s.me)!;
  const [config, error] = useClientConfig();
  const modeKey = `plaza.rides.mode.${me.id}`;
  const [mode, setModeState] = useState<'ride' | 'drive'>(saved(modeKey) === 'drive' ? 'drive' : 'ride');
  const setMode = (value: 'ride' | 'drive') => { save(modeKey, value); setModeState(value); };
  return (
    <section class="rides" aria-labelledby="rides-title">
      <header class="topbar rides-top">
        <h1 id="rides-title">{t('rides.title')}</h1>
        <div class="segmented" role="group" aria-label={t('rides.mode')}>
          <button type="button" aria-pressed={mode === 'ride'} onClick={() => setMode('ride')}>{t('rides.mode_ride')}</button>
          <button type="button" aria-pressed={mode === 'drive'} onClick={() => setMode('drive')}>{t('rides.mode_drive')}</button>
        </div>
      </header>
      <ConnectionBanner />
      <ErrorLine error={error} />
      {config && (mode === 'ride' ? <RiderView config={config} /> : <DriverView config={config} />)}
      {!config && !error && <p class="muted center pad">{t('common.loading')}</p>}
    </section>
  );
}

function mapProps(config: ClientConfig) {
  return { center: config.map.center, zoom: config.map.zoom, tileUrl: config.map.tile_url, attribution: config.map.attribution };
}

function Stars(props: { rideId: string; legend: string }) {
  const [done, setDone] = useState(false);
  const [stars, setStars] = useState(0);
  const [comment, setComment] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!stars) { setError(t('rides.pick_stars')); return; }
    setBusy(true); setError(null);
    try {
      await api('POST', `/rides/${encodeURIComponent(props.rideId)}/rating`, { stars, comment: comment.trim() || undefined });
      setDone(true);
    } catch (caught) {
      if (caught instanceof ApiError && caught.code === 'already_rated') setDone(true); else setError(caught);
    } finally { setBusy(false); }
  };
  if (done) return <p class="notice" data-testid="rated">{t('rides.thanks')}</p>;
  return (
    <form class="form rating" onSubmit={submit}>
      <fieldset class="stars">
        <legend>{props.legend}</legend>
        {[1, 2, 3, 4, 5].map((n) => (
          <label class={n <= stars ? 'star on' : 'star'}>
            <input class="visually-hidden" type="radio" name="stars" value={n} checked={stars === n} onChange={() => setStars(n)}
              aria-label={t('rides.stars', { n })} />
            <span aria-hidden="true">★</span>
          </label>
        ))}
      </fieldset>
      <label>{t('rides.comment')}<textarea name="comment" rows={2} maxLength={500} value={comment} onInput={(e) => setComment(e.currentTarget.value)} /></label>
      <ErrorLine error={error} />
      <button class="primary" type="submit" disabled={busy}>{t('rides.send_rating')}</button>
    </form>
  );
}

function ShareRide({ rideId }: { rideId: string }) {
  const conversations = store.use((s) => s.conversations);
  store.use((s) => s.users);
  const [to, setTo] = useState('');
  const [done, setDone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const list = Object.values(conversations).sort((a, b) => b.last_activity_at.localeCompare(a.last_activity_at));
  if (!list.length) return null;
  const share = async () => {
    setError(null);
    try {
      await api('POST', `/rides/${encodeURIComponent(rideId)}/share`, { conversation_id: to || list[0].id });
      setDone(true);
    } catch (caught) { setError(caught); }
  };
  const title = (id: string) => conversationTitle(conversations[id]);
  return (
    <div class="share-ride">
      <label>{t('rides.share')}
        <select value={to || list[0].id} onChange={(e) => setTo(e.currentTarget.value)}>
          {list.map((c) => <option value={c.id}>{title(c.id)}</option>)}
        </select>
      </label>
      <button type="button" onClick={share} disabled={done}>{done ? t('rides.shared') : t('rides.share_button')}</button>
      <ErrorLine error={error} />
    </div>
  );
}

// ---- the rider ---------------------------------------------------------------------------

const plan: { pickup?: LatLng; dropoff?: LatLng } = {};

function RiderView({ config }: { config: ClientConfig }) {
  const me = store.use((s) => s.me)!;
  const rideKey = `plaza.ride.${me.id}`;
  const [rideId, setRideIdState] = useState<string | null>(saved(rideKey));
  const setRideId = (id: string | null) => { save(rideKey, id); setRideIdState(id); };
  const ride = store.use((s) => (rideId ? s.rides[rideId] : undefined));
  const driverAt = store.use((s) => (rideId ? s.driverLocations[rideId] : undefined));
  const center = config.map.center;
  // The chosen points outlive a visit to another tab (not a reload).
  const [pickup, setPickupState] = useState<LatLng>(plan.pickup ?? { lat: center.lat - 0.0015, lng: center.lng - 0.001 });
  const [dropoff, setDropoffState] = useState<LatLng>(plan.dropoff ?? { lat: center.lat + 0.012, lng: center.lng + 0.014 });
  const setPickup = (at: LatLng) => { plan.pickup = at; setPickupState(at); };
  const setDropoff = (at: LatLng) => { plan.dropoff = at; setDropoffState(at); };
  const [target, setTarget] = useState<'pickup' | 'dropoff'>('pickup');
  const [quote, setQuote] = useState<Quote | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  // After a reload, the ride kept in localStorage is fetched again; the socket's resume
  // brings anything that happened meanwhile, and a slow poll covers a lost frame.
  useEffect(() => {
    if (!rideId) return;
    loadRide(rideId).catch((caught) => { if (caught instanceof ApiError && caught.status === 404) setRideId(null); });
  }, [rideId]);
  useEffect(() => {
    // Settling the payment sends its own `ride.updated`, so a final ride needs no polling.
    if (!rideId || !ride || FINAL.has(ride.status)) return;
    const id = window.setInterval(() => void loadRide(rideId).catch(() => {}), 5000);
    return () => clearInterval(id);
  }, [rideId, ride?.status]);
  // The car to look for arrives with GET /rides/{id}, not with the event.
  useEffect(() => {
    if (ride?.driver_id && !ride.vehicle) void loadRide(ride.id).catch(() => {});
    if (ride?.driver_id) void loadUser(ride.driver_id);
  }, [ride?.driver_id, ride?.status]);
  useEffect(() => { if (ride && FINAL.has(ride.status)) void loadWallet().catch(() => {}); }, [ride?.status, ride?.payment_status]);

  const choose = (at: LatLng) => {
    if (ride && !FINAL.has(ride.status)) return;
    setQuote(null);
    if (target === 'pickup') { setPickup(at); setTarget('dropoff'); } else setDropoff(at);
  };
  const getQuote = async () => {
    setBusy(true); setError(null);
    try { setQuote(await api<Quote>('POST', '/rides/quotes', { pickup, dropoff })); }
    catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  const request = async () => {
    if (!quote) return;
    setBusy(true); setError(null);
    try {
      const created = await api<Ride>('POST', '/rides', { quote_id: quote.id });
      noteRide(created);
      setRideId(created.id);
      setQuote(null);
    } catch (caught) {
      // An open ride from another tab or device: follow that one instead.
      const open = caught instanceof ApiError && caught.code === 'ride_already_open' ? /(\S+)$/.exec(caught.message)?.[1] : null;
      if (open) setRideId(open); else setError(caught);
    } finally { setBusy(false); }
  };

  const active = ride && (!FINAL.has(ride.status) || rideId);
  const markers: Marker[] = [];
  const from = ride ? ride.pickup : pickup;
  const to = ride ? ride.dropoff : dropoff;
  markers.push({ id: 'pickup', at: from, kind: 'pickup', label: `${t('rides.pickup')}: ${placeName(from)}` });
  markers.push({ id: 'dropoff', at: to, kind: 'dropoff', label: `${t('rides.dropoff')}: ${placeName(to)}` });
  if (ride && driverAt && !FINAL.has(ride.status)) {
    markers.push({ id: 'car', at: driverAt, kind: 'car', label: t('rides.driver_here'), heading: driverAt.heading });
  }
  const fitKey = ride ? `${ride.id}:${ride.status === 'requested' ? 0 : 1}` : 'plan';

  return (
    <div class="rides-body">
      <MapView {...mapProps(config)} label={active ? t('rides.map_trip') : t(target === 'pickup' ? 'rides.map_pick_pickup' : 'rides.map_pick_dropoff')}
        markers={markers} route={[from, to]} fitKey={fitKey} fit={driverAt && ride?.status === 'driver_assigned' ? [from, driverAt] : [from, to]}
        onTap={active ? undefined : choose} />
      <div class="sheet" data-testid="rider-sheet">
        {ride && active
          ? <RideProgress ride={ride} config={config} driverAt={driverAt} onDone={() => setRideId(null)}
              onAgain={() => { setPickup(ride.pickup); setDropoff(ride.dropoff); setRideId(null); }} />
          : (
            <>
              <div class="places" role="radiogroup" aria-label={t('rides.tap_sets')}>
                <button type="button" role="radio" aria-checked={target === 'pickup'} class="place" onClick={() => setTarget('pickup')} data-testid="set-pickup">
                  <span class="dot pickup" aria-hidden="true">A</span>
                  <span class="place-text"><small class="muted">{t('rides.pickup')}</small><span class="ellipsis">{placeName(pickup)}</span></span>
                </button>
                <button type="button" role="radio" aria-checked={target === 'dropoff'} class="place" onClick={() => setTarget('dropoff')} data-testid="set-dropoff">
                  <span class="dot dropoff" aria-hidden="true">B</span>
                  <span class="place-text"><small class="muted">{t('rides.dropoff')}</small><span class="ellipsis">{placeName(dropoff)}</span></span>
                </button>
              </div>
              <p class="muted small">{t(target === 'pickup' ? 'rides.tap_pickup' : 'rides.tap_dropoff')}</p>
              {quote ? <QuoteCard quote={quote} config={config} busy={busy} onRequest={request} onRefresh={getQuote} />
                : <button class="primary wide" type="button" onClick={getQuote} disabled={busy}>{t('rides.get_price')}</button>}
              <ErrorLine error={error} />
              {error instanceof ApiError && error.code === 'insufficient_funds' && (
                <button class="link" type="button" onClick={() => navigate('/wallet')}>{t('rides.top_up')}</button>
              )}
            </>
          )}
      </div>
    </div>
  );
}

function QuoteCard(props: { quote: Quote; config: ClientConfig; busy: boolean; onRequest: () => void; onRefresh: () => void }) {
  useTick();
  const { quote } = props;
  const left = (Date.parse(quote.expires_at) - Date.now()) / 1000;
  const expired = left <= 0;
  const hold = quote.fare.amount + Math.ceil(quote.fare.amount * props.config.rides.hold_margin_percent / 100);
  return (
    <div class="quote" data-testid="quote" aria-live="polite">
      <div class="quote-main">
        <strong class="fare" data-testid="quote-fare" data-amount={quote.fare.amount}>{formatMoney(quote.fare.amount, quote.fare.currency)}</strong>
        {quote.surge > 1 && (
          <span class="surge" data-testid="surge" title={t('rides.surge_why')}>⚡ {t('rides.surge', { x: quote.surge.toFixed(1) })}</span>
        )}
      </div>
      <p class="quote-facts">
        <span>{km(quote.distance_m)}</span> · <span>{minutes(quote.duration_s)}</span> · <span data-testid="pickup-eta">
          {quote.pickup_eta_s === null ? t('rides.no_driver_near') : t('rides.driver_eta', { min: minutes(quote.pickup_eta_s) })}</span>
      </p>
      {quote.surge > 1 && <p class="small surge-note">{t('rides.surge_why')}</p>}
      <p class="small muted">{t('rides.hold_note', { hold: formatMoney(hold, quote.fare.currency) })}</p>
      <p class={expired ? 'small error' : 'small muted'} role="timer" aria-live="off">
        {expired ? t('rides.price_expired') : t('rides.price_valid', { time: clock(left) })}
      </p>
      {expired
        ? <button class="primary wide" type="button" onClick={props.onRefresh} disabled={props.busy}>{t('rides.refresh_price')}</button>
        : <button class="primary wide" type="button" onClick={props.onRequest} disabled={props.busy} data-testid="request">
            {t('rides.request', { fare: formatMoney(quote.fare.amount, quote.fare.currency) })}</button>}
    </div>
  );
}

function RideProgress(props: { ride: Ride; config: ClientConfig; driverAt?: LatLng; onDone: () => void; onAgain: () => void }) {
  const { ride, config } = props;
  store.use((s) => s.users);
  const [error, setError] = useState<unknown>(null);
  const [confirm, setConfirm] = useState(false);
  const fee = config.rides.cancel_fee;
  const cancel = async () => {
    setConfirm(false); setError(null);
    try { noteRide(await api<Ride>('POST', `/rides/${encodeURIComponent(ride.id)}/cancel`, {})); } catch (caught) { setError(caught); }
  };
  const driver = ride.driver_id ? displayName(ride.driver_id) : '';
  const eta = (target: LatLng) => props.driverAt ? minutes(distanceM(props.driverAt, target) * 1.3 / CITY_SPEED_MPS) : null;
  const cancelButton = (charged: boolean) => (
    <>
      <p class="small muted">{charged ? t('rides.cancel_rule_now', { fee: formatMoney(fee.amount, fee.currency) })
        : t('rides.cancel_rule', { fee: formatMoney(fee.amount, fee.currency) })}</p>
      <button type="button" class="danger wide" onClick={() => (charged ? setConfirm(true) : void cancel())}>{t('rides.cancel')}</button>
    </>
  );
  const vehicle = ride.vehicle && (
    <div class="vehicle" data-testid="vehicle">
      <span class="plate">{ride.vehicle.plate}</span>
      <span>{ride.vehicle.model} · {t('rides.seats', { n: ride.vehicle.seats })}</span>
    </div>
  );
  let body;
  switch (ride.status) {
    case 'requested':
      body = (<>
        <h2 class="status-line"><span class="spinner" aria-hidden="true" /> {t('rides.searching')}</h2>
        <p class="muted">{formatMoney(ride.fare.amount, ride.fare.currency)} · {km(ride.distance_m)}</p>
        {cancelButton(false)}
      </>);
      break;
    case 'driver_assigned':
      body = (<>
        <h2 class="status-line">{t('rides.assigned', { name: driver })}</h2>
        {vehicle}
        <p class="muted">{eta(ride.pickup) ? t('rides.arrives_in', { min: eta(ride.pickup)! }) : t('rides.driver_coming')}</p>
        {cancelButton(false)}
      </>);
      break;
    case 'driver_arrived':
      body = (<>
        <h2 class="status-line">{t('rides.arrived', { name: driver })}</h2>
        {vehicle}
        {cancelButton(true)}
      </>);
      break;
    case 'in_progress':
      body = (<>
        <h2 class="status-line">{t('rides.in_progress')}</h2>
        {vehicle}
        <p class="muted">{eta(ride.dropoff) ? t('rides.there_in', { min: eta(ride.dropoff)! }) : placeName(ride.dropoff)}</p>
      </>);
      break;
    case 'completed':
      body = (<>
        <h2 class="status-line">{t('rides.completed')}</h2>
        <p class="paid" data-testid="charged" data-amount={ride.charged.amount}>
          {ride.payment_status === 'captured' ? t('rides.you_paid', { amount: formatMoney(ride.charged.amount, ride.charged.currency) })
            : t('rides.paying', { amount: formatMoney(ride.fare.amount, ride.fare.currency) })}
        </p>
        <Stars rideId={ride.id} legend={t('rides.rate')} />
        <ShareRide rideId={ride.id} />
        <button type="button" class="wide" onClick={props.onDone}>{t('rides.done')}</button>
      </>);
      break;
    case 'cancelled':
      body = (<>
        <h2 class="status-line">{ride.cancelled_by === ride.rider_id ? t('rides.cancelled_by_you') : t('rides.cancelled_by_driver')}</h2>
        <p data-testid="charged" data-amount={ride.charged.amount}>{ride.charged.amount > 0
          ? t('rides.fee_charged', { amount: formatMoney(ride.charged.amount, ride.charged.currency) }) : t('rides.nothing_charged')}</p>
        <div class="actions"><button type="button" onClick={props.onAgain}>{t('rides.again')}</button>
          <button type="button" onClick={props.onDone}>{t('rides.done')}</button></div>
      </>);
      break;
    case 'no_driver':
      body = (<>
        <h2 class="status-line">{t('rides.no_driver')}</h2>
        <p>{t('rides.nothing_charged')}</p>
        <div class="actions"><button type="button" class="primary" onClick={props.onAgain}>{t('rides.again')}</button>
          <button type="button" onClick={props.onDone}>{t('rides.done')}</button></div>
      </>);
      break;
  }
  return (
    <div class="ride-progress" data-testid="ride" data-status={ride.status} aria-live="polite">
      <Steps status={ride.status} />
      {body}
      <ErrorLine error={error} />
      {confirm && (
        <Dialog title={t('rides.cancel_confirm_title')} onClose={() => setConfirm(false)}>
          <p>{t('rides.cancel_confirm', { fee: formatMoney(fee.amount, fee.currency) })}</p>
          <div class="actions">
            <button type="button" onClick={() => setConfirm(false)}>{t('rides.keep')}</button>
            <button type="button" class="danger" onClick={cancel}>{t('rides.cancel_anyway')}</button>
          </div>
        </Dialog>
      )}
    </div>
  );
}

const STEPS = ['requested', 'driver_assigned', 'driver_arrived', 'in_progress', 'completed'] as const;
function Steps({ status }: { status: string }) {
  const at = STEPS.indexOf(status as typeof STEPS[number]);
  if (at < 0) return null;
  return (
    <ol class="steps" aria-label={t('rides.progress')}>
      {STEPS.map((step, i) => <li class={i <= at ? 'done' : ''} aria-current={i === at ? 'step' : undefined}>
        <span class="visually-hidden">{t(`rides.status.${step}` as TextKey)}</span></li>)}
    </ol>
  );
}

// ---- the driver --------------------------------------------------------------------------

interface DriverSaved { plate: string; model: string; seats: number; online: boolean; at: LatLng }

/** How fast the simulated car drives when the driver taps somewhere: ~50 km/h. */
const DRIVE_SPEED_MPS = 14;
const DRIVE_TICK_MS = 1000;
/** The server drops a driver silent for 60 s; a parked driver says where it is well before. */
const HEARTBEAT_MS = 15_000;

function DriverView({ config }: { config: ClientConfig }) {
  const me = store.use((s) => s.me)!;
  const key = `plaza.driver.${me.id}`;
  const initial = saved<DriverSaved>(key);
  const [plate, setPlate] = useState(initial?.plate ?? '');
  const [model, setModel] = useState(initial?.model ?? '');
  const [seats, setSeats] = useState(String(initial?.seats ?? 4));
  const [online, setOnline] = useState(false);
  const [at, setAt] = useState<LatLng>(initial?.at ?? config.map.center);
  const [heading, setHeading] = useState<number | null>(null);
  const [driveTo, setDriveTo] = useState<LatLng | null>(null);
  const [rideId, setRideId] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [earned, setEarned] = useState<number | null>(null);
  const offers = store.use((s) => s.offers);
  const ride = store.use((s) => (rideId ? s.rides[rideId] : undefined));
  const atRef = useRef(at);
  atRef.current = at;
  const headingRef = useRef(heading);
  headingRef.current = heading;
  useTick();

  const remember = (patch: Partial<DriverSaved>) => {
    const current: DriverSaved = saved<DriverSaved>(key) ?? { plate, model, seats: Number(seats) || 4, online, at };
    save(key, { ...current, ...patch });
  };
  const sendLocation = async (point: LatLng, towards: number | null) => {
    try { await api('POST', '/rides/driver/location', { lat: point.lat, lng: point.lng, heading: towards ?? undefined }); }
    catch (caught) {
      if (caught instanceof ApiError && caught.code === 'driver_offline') { setOnline(false); remember({ online: false }); }
      if (!(caught instanceof ApiError && caught.code === 'rate_limited')) setError(caught);
    }
  };
  const goOnline = async (event?: Event) => {
    event?.preventDefault();
    setBusy(true); setError(null);
    try {
      const state = await api<DriverState>('POST', '/rides/driver/online', {
        vehicle: { plate: plate.trim(), model: model.trim(), seats: Number(seats) }, location: atRef.current,
      });
      setOnline(true);
      remember({ plate: plate.trim(), model: model.trim(), seats: Number(seats), online: true, at: atRef.current });
      if (state.active_ride_id) { setRideId(state.active_ride_id); void loadRide(state.active_ride_id).catch(() => {}); }
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  const goOffline = async () => {
    setBusy(true); setError(null);
    try { await api('POST', '/rides/driver/offline', {}); setOnline(false); setDriveTo(null); remember({ online: false }); }
    catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  // A driver who was online before a reload is online again, with the same car.
  useEffect(() => { if (initial?.online && initial.plate) void goOnline(); }, []);

  // Keep-alive while parked.
  useEffect(() => {
    if (!online) return;
    const id = window.setInterval(() => void sendLocation(atRef.current, headingRef.current), HEARTBEAT_MS);
    return () => clearInterval(id);
  }, [online]);

  // Driving towards a tapped point (or the pickup / drop-off), one step a second, every
  // step sent to the server, which streams it to the rider.
  useEffect(() => {
    if (!driveTo || !online) return;
    const id = window.setInterval(() => {
      const here = atRef.current;
      const left = distanceM(here, driveTo);
      const next = left <= DRIVE_SPEED_MPS * DRIVE_TICK_MS / 1000 ? driveTo : between(here, driveTo, DRIVE_SPEED_MPS / left);
      const towards = bearing(here, driveTo);
      setAt(next); setHeading(towards); atRef.current = next;
      remember({ at: next });
      void sendLocation(next, towards);
      if (next === driveTo) setDriveTo(null);
    }, DRIVE_TICK_MS);
    return () => clearInterval(id);
  }, [driveTo, online]);

  const tap = (point: LatLng) => {
    if (!online) { setAt(point); remember({ at: point }); return; }
    setDriveTo(point);
  };
  const useGps = () => {
    setError(null);
    navigator.geolocation?.getCurrentPosition(
      (position) => { const point = { lat: position.coords.latitude, lng: position.coords.longitude }; setAt(point); remember({ at: point }); },
      () => setError(t('rides.gps_failed')),
      { enableHighAccuracy: true, timeout: 10_000 },
    );
  };

  const offer: Offer | undefined = Object.values(offers).find((o) => Date.parse(o.expires_at) > Date.now());
  // An offer is an alert: focus goes to it, so a keyboard or screen-reader user can answer.
  const acceptButton = useRef<HTMLButtonElement>(null);
  useEffect(() => { if (offer) acceptButton.current?.focus(); }, [offer?.ride_id]);

  const answer = async (accept: boolean, id: string) => {
    setBusy(true); setError(null);
    try {
      const answered = await api<Ride>('POST', `/rides/${encodeURIComponent(id)}/${accept ? 'accept' : 'decline'}`, {});
      dropOffer(id);
      if (accept) {
        noteRide(answered);
        setRideId(id);
        setEarned(null);
        // The rider sees the car at once, not at the next heartbeat.
        void sendLocation(atRef.current, heading);
      }
    } catch (caught) { dropOffer(id); setError(caught); } finally { setBusy(false); }
  };
  const advance = async (action: 'arrive' | 'start' | 'complete' | 'cancel') => {
    if (!ride) return;
    setBusy(true); setError(null);
    try {
      const next = await api<Ride>('POST', `/rides/${encodeURIComponent(ride.id)}/${action}`, {});
      noteRide(next);
      if (action === 'arrive' || action === 'complete') setDriveTo(null);
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  // The money arrives in the wallet once the ride is settled: show what landed there.
  // (Settling sends its own `ride.updated`: no polling while the money is still held.)
  useEffect(() => {
    if (!ride || !FINAL.has(ride.status) || ride.payment_status === 'held') return;
    void loadWallet().catch(() => {});
    if (ride.charged.amount > 0) setEarned(driverShare(ride.charged.amount, config.rides.platform_fee_bps));
  }, [ride?.status, ride?.payment_status]);
  if (ride?.rider_id) void loadUser(ride.rider_id);

  const markers: Marker[] = [{ id: 'me', at, kind: 'me', label: t('rides.you_are_here'), heading }];
  const shown = ride && !FINAL.has(ride.status) ? ride : offer;
  if (shown) {
    markers.push({ id: 'pickup', at: shown.pickup, kind: 'pickup', label: `${t('rides.pickup')}: ${placeName(shown.pickup)}` });
    markers.push({ id: 'dropoff', at: shown.dropoff, kind: 'dropoff', label: `${t('rides.dropoff')}: ${placeName(shown.dropoff)}` });
  }
  const fitKey = offer ? `offer:${offer.ride_id}` : ride ? `ride:${ride.id}:${ride.status}` : online ? 'online' : 'offline';
  const fit = shown ? [at, shown.pickup, ...(ride?.status === 'in_progress' || offer ? [shown.dropoff] : [])] : [at];

  let sheet;
  if (!online) {
    sheet = (
      <form class="form" onSubmit={goOnline} data-testid="driver-offline">
        <h2>{t('rides.drive_title')}</h2>
        <div class="vehicle-fields">
          <label>{t('rides.plate')}<input name="plate" required maxLength={16} autoComplete="off" value={plate} onInput={(e) => setPlate(e.currentTarget.value)} /></label>
          <label>{t('rides.model')}<input name="model" required maxLength={64} value={model} onInput={(e) => setModel(e.currentTarget.value)} /></label>
          <label>{t('rides.seats_label')}<input name="seats" type="number" min={1} max={16} required value={seats} onInput={(e) => setSeats(e.currentTarget.value)} /></label>
        </div>
        <p class="small muted">{t('rides.position', { place: placeName(at) })} {t('rides.tap_position')}</p>
        {'geolocation' in navigator && <button type="button" class="link" onClick={useGps}>📍 {t('rides.use_gps')}</button>}
        <ErrorLine error={error} />
        <button class="primary wide" type="submit" disabled={busy}>{t('rides.go_online')}</button>
      </form>
    );
  } else if (offer && !(ride && !FINAL.has(ride.status))) {
    const left = (Date.parse(offer.expires_at) - Date.now()) / 1000;
    const toPickup = distanceM(at, offer.pickup);
    sheet = (
      <div class="offer" data-testid="offer" role="alertdialog" aria-labelledby="offer-title">
        <h2 id="offer-title">{t('rides.offer_title')}</h2>
        <div class="countdown" role="timer" aria-label={t('rides.offer_left', { s: Math.ceil(left) })}>
          <span class="countdown-bar" style={{ width: `${Math.max(0, Math.min(100, left / 15 * 100))}%` }} />
          <span class="countdown-text" data-testid="offer-countdown">{Math.max(0, Math.ceil(left))} s</span>
        </div>
        <p class="fare">{formatMoney(offer.fare.amount, offer.fare.currency)}
          <small class="muted"> · {t('rides.you_get', { amount: formatMoney(driverShare(offer.fare.amount, config.rides.platform_fee_bps), offer.fare.currency) })}</small></p>
        <p>{t('rides.pickup')}: <strong>{placeName(offer.pickup)}</strong> · {km(toPickup)}</p>
        <p>{t('rides.dropoff')}: <strong>{placeName(offer.dropoff)}</strong> · {km(distanceM(offer.pickup, offer.dropoff))}</p>
        <ErrorLine error={error} />
        <div class="actions">
          <button type="button" onClick={() => answer(false, offer.ride_id)} disabled={busy}>{t('rides.decline')}</button>
          <button type="button" class="primary" ref={acceptButton} onClick={() => answer(true, offer.ride_id)} disabled={busy} data-testid="accept">{t('rides.accept')}</button>
        </div>
      </div>
    );
  } else if (ride && rideId) {
    const rider = displayName(ride.rider_id);
    const fee = config.rides.cancel_fee;
    sheet = (
      <div class="ride-progress" data-testid="trip" data-status={ride.status} aria-live="polite">
        <Steps status={ride.status} />
        {ride.status === 'driver_assigned' && (<>
          <h2>{t('rides.pick_up', { name: rider })}</h2>
          <p>{placeName(ride.pickup)} · {km(distanceM(at, ride.pickup))}</p>
          <div class="actions">
            <button type="button" onClick={() => setDriveTo(ride.pickup)} disabled={!!driveTo}>{t('rides.drive_pickup')}</button>
            <button type="button" class="primary" onClick={() => advance('arrive')} disabled={busy}>{t('rides.arrive')}</button>
          </div>
        </>)}
        {ride.status === 'driver_arrived' && (<>
          <h2>{t('rides.waiting_for', { name: rider })}</h2>
          <p class="small muted">{t('rides.driver_cancel_rule', { fee: formatMoney(fee.amount, fee.currency) })}</p>
          <button type="button" class="primary wide" onClick={() => advance('start')} disabled={busy}>{t('rides.start')}</button>
        </>)}
        {ride.status === 'in_progress' && (<>
          <h2>{t('rides.take_to', { name: rider })}</h2>
          <p>{placeName(ride.dropoff)} · {km(distanceM(at, ride.dropoff))}</p>
          <div class="actions">
            <button type="button" onClick={() => setDriveTo(ride.dropoff)} disabled={!!driveTo}>{t('rides.drive_dropoff')}</button>
            <button type="button" class="primary" onClick={() => advance('complete')} disabled={busy}>{t('rides.complete')}</button>
          </div>
        </>)}
        {(ride.status === 'driver_assigned' || ride.status === 'driver_arrived') && (
          <button type="button" class="danger wide" onClick={() => advance('cancel')} disabled={busy}>{t('rides.cancel_trip')}</button>
        )}
        {FINAL.has(ride.status) && (<>
          <h2>{ride.status === 'completed' ? t('rides.completed') : t('rides.trip_cancelled')}</h2>
          {earned !== null
            ? <p class="paid" data-testid="earned" data-amount={earned}>{t('rides.earned', { amount: formatMoney(earned, ride.charged.currency) })}</p>
            : ride.status === 'completed' && <p class="muted">{t('rides.settling')}</p>}
          {ride.status === 'completed' && <Stars rideId={ride.id} legend={t('rides.rate_rider', { name: displayName(ride.rider_id) })} />}
          <button type="button" class="wide" onClick={() => { setRideId(null); setEarned(null); }}>{t('rides.done')}</button>
        </>)}
        <ErrorLine error={error} />
      </div>
    );
  } else {
    sheet = (
      <div class="driver-idle" data-testid="driver-online">
        <h2 class="status-line"><span class="pulse" aria-hidden="true" /> {t('rides.online')}</h2>
        <p class="muted">{t('rides.waiting_offers')} {t('rides.tap_drive')}</p>
        <p class="small">{plate} · {model}</p>
        <Earnings />
        <ErrorLine error={error} />
        <button type="button" class="wide" onClick={goOffline} disabled={busy}>{t('rides.go_offline')}</button>
      </div>
    );
  }

  return (
    <div class="rides-body">
      <MapView {...mapProps(config)} label={online ? t('rides.map_drive') : t('rides.map_position')} markers={markers}
        route={shown ? [shown.pickup, shown.dropoff] : undefined} fitKey={fitKey} fit={fit} onTap={tap} />
      <div class="sheet" data-testid="driver-sheet">{sheet}</div>
    </div>
  );
}

/** Today's takings, read from the wallet: fares the rides service paid in. */
function Earnings() {
  const balances = store.use((s) => s.balances);
  const [entries, setEntries] = useState<Entry[] | null>(null);
  useEffect(() => {
    api<Page<Entry>>('GET', '/wallet/transactions?limit=200').then((page) => setEntries(page.items)).catch(() => {});
  }, [balances]);
  if (!entries) return null;
  const today = new Date().toDateString();
  // A capture also returns a payer's unused hold; payments this user held money for are
  // their own rides, not fares earned.
  const paid = new Set(entries.filter((e) => e.kind === 'payment_hold').map((e) => e.reference));
  const fares = entries.filter((e) => e.kind === 'payment_capture' && e.direction === 'in' && !paid.has(e.reference)
    && new Date(e.created_at).toDateString() === today);
  if (!fares.length) return null;
  const total = fares.reduce((sum, e) => sum + e.amount, 0);
  return (
    <p class="earnings" data-testid="earnings-today">
      {t(fares.length === 1 ? 'rides.earnings_today_one' : 'rides.earnings_today', { amount: formatMoney(total, fares[0].currency), n: fares.length })}
      {' '}<button type="button" class="link" onClick={() => navigate('/wallet')}>{t('tab.wallet')}</button>
    </p>
  );
}

export default RidesScreen;
