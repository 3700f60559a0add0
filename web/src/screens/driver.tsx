// The driver's screen: go online with a car, take offers, move the trip along, and see
// today's earnings. Part of the rides chunk.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../lib/api';
import type { ClientConfig, DriverState, Entry, LatLng, Page, Ride } from '../lib/api';
import { displayName, dropOffer, loadDriverState, loadUser, loadWallet, noteRide, store } from '../lib/data';
import type { HeldOffer } from '../lib/data';
import { t } from '../lib/i18n';
import { captureIn } from '../lib/entries';
import { formatMoney } from '../lib/money';
import { navigate } from '../lib/router';
import { ErrorLine } from '../lib/ui';
import { MapView } from '../map/map';
import type { Marker } from '../map/map';
import { bearing, between, distanceM } from '../map/geo';
import { ConfirmCancel, FINAL, Stars, Steps, km, mapProps, placeName, saved, save, useTick } from './rides-parts';

/** The driver's share of an amount, as the server computes it (the fee is rounded down). */
function driverShare(amount: number, feeBps: number) { return amount - Math.floor(amount * feeBps / 10_000); }

/** What this device remembers for the next time the driver goes online (the server says
 *  whether they are online, on a trip, or offered one: `GET /rides/driver`). */
interface DriverSaved { plate: string; model: string; seats: number; at: LatLng }

/** How fast the simulated car drives when the driver taps somewhere: ~50 km/h. */
const DRIVE_SPEED_MPS = 14;
const DRIVE_TICK_MS = 1000;
/** The server drops a driver silent for 60 s; a parked driver says where it is well before. */
const HEARTBEAT_MS = 15_000;

export function DriverView({ config }: { config: ClientConfig }) {
  const me = store.use((s) => s.me)!;
  const key = `plaza.driver.${me.id}`;
  const initial = saved<DriverSaved>(key);
  const [plate, setPlate] = useState(initial?.plate ?? '');
  const [model, setModel] = useState(initial?.model ?? '');
  const [seats, setSeats] = useState(String(initial?.seats ?? 4));
  const [online, setOnline] = useState(false);
  /** Whether the server has said where this driver stands (until then, nothing to act on). */
  const [loaded, setLoaded] = useState(false);
  const [at, setAt] = useState<LatLng>(initial?.at ?? config.map.center);
  const [heading, setHeading] = useState<number | null>(null);
  const [driveTo, setDriveTo] = useState<LatLng | null>(null);
  const [rideId, setRideId] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [earned, setEarned] = useState<number | null>(null);
  const [confirmCancel, setConfirmCancel] = useState(false);
  const offers = store.use((s) => s.offers);
  const ride = store.use((s) => (rideId ? s.rides[rideId] : undefined));
  const atRef = useRef(at);
  atRef.current = at;
  const headingRef = useRef(heading);
  headingRef.current = heading;
  const connection = store.use((s) => s.connection);

  const remember = (patch: Partial<DriverSaved>) => {
    const current: DriverSaved = saved<DriverSaved>(key) ?? { plate, model, seats: Number(seats) || 4, at };
    save(key, { ...current, ...patch });
  };
  const sendLocation = async (point: LatLng, towards: number | null) => {
    try { await api('POST', '/rides/driver/location', { lat: point.lat, lng: point.lng, heading: towards ?? undefined }); }
    catch (caught) {
      if (caught instanceof ApiError && caught.code === 'driver_offline') setOnline(false);
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
      remember({ plate: plate.trim(), model: model.trim(), seats: Number(seats), at: atRef.current });
      if (state.ride) { noteRide(state.ride); setRideId(state.ride.id); }
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  const goOffline = async () => {
    setBusy(true); setError(null);
    try { await api('POST', '/rides/driver/offline', {}); setOnline(false); setDriveTo(null); }
    catch (caught) { setError(caught); } finally { setBusy(false); }
  };
  // Where the driver stands, from the server: on opening the screen (after a reload the
  // driver carries on — online, on the trip, or with the offer and its time left — rather
  // than going online again) and after every reconnect (offers replayed meanwhile are
  // corrected).
  useEffect(() => {
    if (loaded && connection !== 'online') return;
    loadDriverState().then((state) => {
      setOnline(state.online);
      if (!loaded && state.vehicle) { setPlate(state.vehicle.plate); setModel(state.vehicle.model); setSeats(String(state.vehicle.seats)); }
      if (state.online && state.location) { setAt(state.location); atRef.current = state.location; }
      if (state.ride) setRideId(state.ride.id);
    }).catch(setError).finally(() => setLoaded(true));
  }, [connection]);

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

  // Offers are dropped from the store when they run out, which renders this again.
  const offer: HeldOffer | undefined = Object.values(offers).find((o) => o.deadline > performance.now());
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
  if (!loaded) {
    sheet = <p class="muted center pad">{t('common.loading')}</p>;
  } else if (!online) {
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
    const toPickup = distanceM(at, offer.pickup);
    sheet = (
      <div class="offer" data-testid="offer" role="alertdialog" aria-labelledby="offer-title">
        <h2 id="offer-title">{t('rides.offer_title')}</h2>
        <OfferCountdown offer={offer} />
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
    // A leg of the trip: where to, a button to drive the car there, and the step that ends it.
    const leg = (title: string, to: LatLng, drive: string, step: 'arrive' | 'complete', stepLabel: string) => (<>
      <h2>{title}</h2>
      <p>{placeName(to)} · {km(distanceM(at, to))}</p>
      <div class="actions">
        <button type="button" onClick={() => setDriveTo(to)} disabled={!!driveTo}>{drive}</button>
        <button type="button" class="primary" onClick={() => advance(step)} disabled={busy}>{stepLabel}</button>
      </div>
    </>);
    sheet = (
      <div class="ride-progress" data-testid="trip" data-status={ride.status} aria-live="polite">
        <Steps status={ride.status} />
        {ride.status === 'driver_assigned'
          && leg(t('rides.pick_up', { name: rider }), ride.pickup, t('rides.drive_pickup'), 'arrive', t('rides.arrive'))}
        {ride.status === 'driver_arrived' && (<>
          <h2>{t('rides.waiting_for', { name: rider })}</h2>
          <p class="small muted">{t('rides.driver_cancel_rule', { fee: formatMoney(fee.amount, fee.currency) })}</p>
          <button type="button" class="primary wide" onClick={() => advance('start')} disabled={busy}>{t('rides.start')}</button>
        </>)}
        {ride.status === 'in_progress'
          && leg(t('rides.take_to', { name: rider }), ride.dropoff, t('rides.drive_dropoff'), 'complete', t('rides.complete'))}
        {(ride.status === 'driver_assigned' || ride.status === 'driver_arrived') && (
          <button type="button" class="danger wide" onClick={() => setConfirmCancel(true)} disabled={busy}>{t('rides.cancel_trip')}</button>
        )}
        {confirmCancel && !FINAL.has(ride.status) && (
          <ConfirmCancel title={t('rides.driver_cancel_title')} keep={t('rides.keep_trip')} confirm={t('rides.cancel_trip')}
            text={ride.status === 'driver_arrived' ? t('rides.driver_cancel_fee', { name: rider, fee: formatMoney(fee.amount, fee.currency) })
              : t('rides.driver_cancel_free', { name: rider })}
            onKeep={() => setConfirmCancel(false)} onConfirm={() => { setConfirmCancel(false); void advance('cancel'); }} />
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

/** What is left of an offer, by the server's count (`remaining_ms`) on this device's monotonic
 *  clock. It ticks on its own, so the screen around it is not drawn again every second. */
function OfferCountdown({ offer }: { offer: HeldOffer }) {
  useTick();
  const left = Math.max(0, (offer.deadline - performance.now()) / 1000);
  const share = offer.total_ms > 0 ? left * 1000 / offer.total_ms : 0;
  return (
    <div class="countdown" role="timer" aria-label={t('rides.offer_left', { s: Math.ceil(left) })}>
      <span class="countdown-bar" style={{ width: `${Math.max(0, Math.min(100, share * 100))}%` }} />
      <span class="countdown-text" data-testid="offer-countdown">{Math.ceil(left)} s</span>
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
  // A capture back to a payer is their own hold returning (their own rides), not a fare.
  const capture = captureIn(entries);
  const fares = entries.filter((e) => capture(e) === 'received' && new Date(e.created_at).toDateString() === today);
  if (!fares.length) return null;
  const total = fares.reduce((sum, e) => sum + e.amount, 0);
  return (
    <p class="earnings" data-testid="earnings-today">
      {t(fares.length === 1 ? 'rides.earnings_today_one' : 'rides.earnings_today', { amount: formatMoney(total, fares[0].currency), n: fares.length })}
      {' '}<button type="button" class="link" onClick={() => navigate('/wallet')}>{t('tab.wallet')}</button>
    </p>
  );
}
