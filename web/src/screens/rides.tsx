import { t } from '../lib/i18n';

// The rides API is being built in parallel; this screen fills in once it lands. No
// made-up drivers or fares in the meantime.
export function RidesScreen() {
  return (
    <section aria-labelledby="rides-title">
      <header class="topbar"><h1 id="rides-title">{t('rides.title')}</h1></header>
      <div class="placeholder-screen pad" data-testid="rides-placeholder">
        <div class="big-icon" aria-hidden="true">🚗</div>
        <h2>{t('rides.soon')}</h2>
        <p class="muted">{t('rides.soon_detail')}</p>
      </div>
    </section>
  );
}
