// The rider's screen: choose pickup and drop-off on the map, get a price, request, follow
// the driver coming and the trip, pay from the wallet and rate. Part of the rides chunk.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../lib/api';
import type { ClientConfig, LatLng, NearbyDrivers, Quote, Ride } from '../lib/api';
import { displayName, loadRide, loadUser, loadWallet, noteRide, store } from '../lib/data';
import { t } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { navigate } from '../lib/router';
import { ChatShare, ErrorLine } from '../lib/ui';
import { MapView } from '../map/map';
import type { Marker } from '../map/map';
import { distanceM } from '../map/geo';
import { ConfirmCancel, FINAL, Stars, Steps, km, mapProps, placeName, saved, save, useTick } from './rides-parts';

function minutes(seconds: number) { return t('rides.min', { n: Math.max(1, Math.round(seconds / 60)) }); }
function clock(seconds: number) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
/** Rough city driving time, for an ETA from the driver's live position. */
const CITY_SPEED_MPS = 25 / 3.6;
/** How often the free cars around the pickup are asked for while the rider plans a trip. */
const NEARBY_REFRESH_MS = 4000;

/** The free cars around `pickup` while `watching`, asked again every few seconds (not while
 *  the page is hidden). The server gives only cell centres: no ids, no exact positions. */
function useNearbyCars(pickup: LatLng, watching: boolean): LatLng[] | null {
  const [cars, setCars] = useState<LatLng[] | null>(null);
  useEffect(() => {
    setCars(null);
    if (!watching) return;
    let stopped = false;
    const look = () => {
      if (document.hidden) return;
      api<NearbyDrivers>('GET', `/rides/nearby-drivers?lat=${pickup.lat}&lng=${pickup.lng}`)
        .then((answer) => { if (!stopped) setCars(answer.drivers); }).catch(() => {});
    };
    look();
    const id = window.setInterval(look, NEARBY_REFRESH_MS);
    return () => { stopped = true; clearInterval(id); };
  }, [watching, pickup.lat, pickup.lng]);
  return cars;
}


/** Shares the ride into one of the rider's chats, once. */
function ShareRide({ rideId }: { rideId: string }) {
  const share = (conversationId: string) =>
    api('POST', `/rides/${encodeURIComponent(rideId)}/share`, { conversation_id: conversationId });
  return <ChatShare share={share} label={t('rides.share')} button={t('rides.share_button')} shared={t('rides.shared')} once />;
}

const plan: { pickup?: LatLng; dropoff?: LatLng } = {};

export function RiderView({ config }: { config: ClientConfig }) {
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
      const open = caught instanceof ApiError && caught.code === 'ride_already_open' && typeof caught.extra.ride_id === 'string' ? caught.extra.ride_id : null;
      if (open) setRideId(open); else setError(caught);
    } finally { setBusy(false); }
  };

  const active = ride && (!FINAL.has(ride.status) || rideId);
  const nearby = useNearbyCars(pickup, !active);
  // The free cars first, so the pins are drawn over them.
  const markers: Marker[] = active ? []
    : (nearby ?? []).map((car, i) => ({ id: `nearby-${i}`, at: car, kind: 'nearby' as const, label: t('rides.car_nearby') }));
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
              <p class="muted small">{t(target === 'pickup' ? 'rides.tap_pickup' : 'rides.tap_dropoff')}
                {nearby && <> <span data-testid="cars-near" data-count={nearby.length}>{nearby.length === 0 ? t('rides.cars_none')
                  : t(nearby.length === 1 ? 'rides.cars_near_one' : 'rides.cars_near', { n: nearby.length })}</span></>}</p>
              {quote ? <QuoteCard quote={quote} config={config} busy={busy} onRequest={request} onRefresh={getQuote} />
                : <button class="primary wide" type="button" onClick={getQuote} disabled={busy}>{t('rides.get_price')}</button>}
              <ErrorLine error={error} currency={quote?.fare.currency ?? config.currencies[0]} />
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
      <button type="button" class="danger wide" onClick={() => setConfirm(true)}>{t('rides.cancel')}</button>
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
        <h2 class="status-line">{ride.cancelled_by === 'rider' ? t('rides.cancelled_by_you') : t('rides.cancelled_by_driver')}</h2>
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
      {confirm && (() => {
        // The fee applies once the driver has arrived, as the server decides it.
        const charged = ride.status === 'driver_arrived';
        const price = formatMoney(fee.amount, fee.currency);
        return <ConfirmCancel title={t('rides.cancel_confirm_title')} keep={t('rides.keep')}
          text={charged ? t('rides.cancel_confirm', { fee: price }) : t('rides.cancel_free')}
          confirm={charged ? t('rides.cancel_anyway') : t('rides.cancel_confirm_button')}
          onKeep={() => setConfirm(false)} onConfirm={cancel} />;
      })()}
    </div>
  );
}
