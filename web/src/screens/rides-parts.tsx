// What the rider's and the driver's screens share: formatting, the ride's progress, the
// rating form, and the little localStorage helpers. Part of the rides chunk, loaded on
// first visit with the screens.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../lib/api';
import type { ClientConfig, LatLng, RideStatus } from '../lib/api';
import { starsText, t } from '../lib/i18n';
import { TRIP_STEPS } from '../lib/rides';
import type { TextKey } from '../lib/i18n';
import { Dialog, ErrorLine } from '../lib/ui';
import { nearestStreet } from '../map/map';

/** Re-renders every `ms` (countdowns, "n s ago"). */
export function useTick(ms = 1000) {
  const [, setN] = useState(0);
  useEffect(() => { const id = window.setInterval(() => setN((n) => n + 1), ms); return () => clearInterval(id); }, [ms]);
}

export function placeName(at: LatLng): string {
  const street = nearestStreet(at);
  return street ? t('rides.near', { street }) : `${at.lat.toFixed(4)}, ${at.lng.toFixed(4)}`;
}

export function km(metres: number) { return t('rides.km', { n: (metres / 1000).toFixed(1) }); }
export { FINAL } from '../lib/rides';

export function saved<T>(key: string): T | null {
  try { return JSON.parse(localStorage.getItem(key) ?? 'null'); } catch { return null; }
}
export function save(key: string, value: unknown) {
  if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, JSON.stringify(value));
}

export function mapProps(config: ClientConfig) {
  return { center: config.map.center, zoom: config.map.zoom, tileUrl: config.map.tile_url, attribution: config.map.attribution };
}

export function Stars(props: { rideId: string; legend: string }) {
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
              aria-label={starsText(n)} />
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

/** The trip's five steps as labelled bars: done ones filled, the current one in bold. */
export function Steps({ status }: { status: RideStatus }) {
  const at = TRIP_STEPS.indexOf(status);
  if (at < 0) return null;
  return (
    <ol class="steps" aria-label={t('rides.progress')}>
      {TRIP_STEPS.map((step, i) => <li class={i <= at ? 'done' : ''} aria-current={i === at ? 'step' : undefined}>
        <span class="step-bar" aria-hidden="true" /><span class="step-label">{t(`rides.status.${step}` as TextKey)}</span></li>)}
    </ol>
  );
}

/** Asks once before a ride is cancelled, saying what it costs. */
export function ConfirmCancel(props: { title: string; text: string; keep: string; confirm: string; onKeep: () => void; onConfirm: () => void }) {
  return (
    <Dialog title={props.title} onClose={props.onKeep}>
      <p data-testid="cancel-terms">{props.text}</p>
      <div class="actions">
        <button type="button" onClick={props.onKeep}>{props.keep}</button>
        <button type="button" class="danger" onClick={props.onConfirm}>{props.confirm}</button>
      </div>
    </Dialog>
  );
}
