// A `ride` card in a chat (rendered by the server for each viewer from the ride as it is,
// crates/rides/src/card.rs): its state and the trip's length. Kept apart from the rides
// screens so chats load this little eagerly and the map lazily.
import { t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { isRideStatus } from '../lib/rides';

export function RideCard({ body }: { body: any }) {
  const status = isRideStatus(body.status) ? t(`card.ride.${body.status}` as TextKey) : String(body.status ?? '');
  const distanceM = typeof body.distance_m === 'number' ? body.distance_m : null;
  return (
    <div class="bubble ride-card" data-testid="card" data-card-type="ride">
      <div class="ride-card-head"><span class="bubble-icon" aria-hidden="true">🚗</span>
        <div><strong>{t('card.ride')}</strong><br /><small data-testid="ride-card-status">{status}</small></div></div>
      {distanceM !== null && <div class="ride-card-route small muted">{t('card.ride_route', { km: (distanceM / 1000).toFixed(1) })}</div>}
    </div>
  );
}
