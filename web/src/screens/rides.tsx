// Rides, for riders and drivers (API.md "Rides"). Loaded on demand: the map, the
// bundled street file and these screens are not part of the first load.
//
// The server is the truth: every state shown comes from a ride the API returned or a
// `ride.updated` / `ride.offer` / `driver.location` frame (lib/data.ts). What the client
// keeps itself is only which ride to show after a reload (localStorage) and, for a
// driver, the car and position to go online with again.
//
// This file is the tab (ride or drive, and the server's ride rules); the screens are
// `rider.tsx` and `driver.tsx`, and what they share is in `rides-parts.tsx`.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api';
import type { ClientConfig } from '../lib/api';
import { store } from '../lib/data';
import { t } from '../lib/i18n';
import { ConnectionBanner, ErrorLine, Segmented } from '../lib/ui';
import { saved, save } from './rides-parts';
import { RiderView } from './rider';
import { DriverView } from './driver';

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
        <Segmented label={t('rides.mode')} selected={mode} onSelect={setMode}
          options={[['ride', t('rides.mode_ride')], ['drive', t('rides.mode_drive')]]} />
      </header>
      <ConnectionBanner />
      <ErrorLine error={error} />
      {config && (mode === 'ride' ? <RiderView config={config} /> : <DriverView config={config} />)}
      {!config && !error && <p class="muted center pad">{t('common.loading')}</p>}
    </section>
  );
}

export default RidesScreen;
