import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { FunctionComponent } from 'preact';
import './styles.css';
import { match, navigate, route } from './lib/router';
import { restoreSession, store } from './lib/data';
import { t, useLang } from './lib/i18n';
import { PinPad } from './lib/ui';
import { applyTheme } from './lib/theme';
import { AuthScreen } from './screens/auth';
import { ChatsScreen } from './screens/chats';
import { ConversationScreen } from './screens/conversation';
import { NewGroupScreen } from './screens/group';
import { ContactsScreen } from './screens/contacts';
import { WalletScreen } from './screens/wallet';
import { MeScreen } from './screens/me';
import { ConsentScreen } from './screens/consent';

applyTheme();

const TABS = [
  { path: '/chats', key: 'tab.chats', icon: '💬' },
  { path: '/contacts', key: 'tab.contacts', icon: '👥' },
  { path: '/wallet', key: 'tab.wallet', icon: '👛' },
  { path: '/rides', key: 'tab.rides', icon: '🚗' },
  { path: '/shop', key: 'tab.shop', icon: '🛍️' },
  { path: '/video', key: 'tab.video', icon: '🎬' },
  { path: '/live', key: 'tab.live', icon: '📺' },
  { path: '/me', key: 'tab.me', icon: '🙂' },
] as const;

// Rides (its map and street file) and the shop load on first visit, keeping them out of
// the first load.
const lazyScreens: Record<string, FunctionComponent> = {};
function Lazy({ name, load }: { name: string; load: () => Promise<FunctionComponent> }) {
  const [Screen, setScreen] = useState<FunctionComponent | null>(() => lazyScreens[name] ?? null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    if (Screen) return;
    load()
      .then((screen) => { lazyScreens[name] = screen; setScreen(() => screen); })
      .catch(() => setFailed(true));
  }, []);
  if (failed) return <p class="error pad" role="alert">{t('error.network')}</p>;
  return Screen ? <Screen /> : <div class="splash" aria-busy="true">{t('common.loading')}</div>;
}
const loadRides = () => import('./screens/rides').then((module) => module.RidesScreen);
const loadShop = () => import('./screens/shop').then((module) => module.ShopScreen);
const loadVideo = () => import('./screens/video').then((module) => module.VideoScreen);
const loadLive = () => import('./screens/live').then((module) => module.LiveScreen);
const loadMiniApps = () => import('./screens/miniapps').then((module) => module.MiniAppsScreen);

function TabBar({ path }: { path: string }) {
  const unread = store.use((s) => Object.values(s.conversations).reduce((sum, c) => sum + (c.unread_count ?? 0), 0));
  return (
    <nav class="tabbar" aria-label="Plaza">
      {TABS.map((tab) => {
        const current = path === tab.path || path.startsWith(tab.path + '/');
        return (
          <a href={tab.path} class={current ? 'current' : ''} aria-current={current ? 'page' : undefined}
            onClick={(event) => { event.preventDefault(); navigate(tab.path); }}>
            <span class="tab-icon" aria-hidden="true">{tab.icon}</span>
            <span>{t(tab.key)}</span>
            {tab.path === '/chats' && unread > 0 && <span class="badge tab-badge" aria-label={t('chats.unread', { n: unread })}>{unread > 99 ? '99+' : unread}</span>}
          </a>
        );
      })}
    </nav>
  );
}

/** A ride offer reaches a driver on any screen: this banner leads to it. */
function OfferBanner({ path }: { path: string }) {
  const offers = store.use((s) => Object.keys(s.offers).length);
  if (!offers || path === '/rides') return null;
  return (
    <div role="alert">
      <button type="button" class="offer-banner" onClick={() => navigate('/rides')}>
        🚗 {t('rides.offer_banner')}
      </button>
    </div>
  );
}

const PENDING_CONSENT = 'plaza.pending_consent';

function App() {
  useLang();
  const path = route.use((s) => s.path);
  const me = store.use((s) => s.me);
  const [ready, setReady] = useState(false);
  useEffect(() => { restoreSession().finally(() => setReady(true)); }, []);
  useEffect(() => {
    if (!ready) return;
    // An app's sign-in request waits through the sign-in, then comes back to the consent screen.
    if (!me && path === '/consent') sessionStorage.setItem(PENDING_CONSENT, location.search);
    if (!me && path !== '/login') navigate('/login', true);
    if (me && (path === '/login' || path === '/')) {
      const pending = sessionStorage.getItem(PENDING_CONSENT);
      sessionStorage.removeItem(PENDING_CONSENT);
      if (pending !== null) {
        history.replaceState(null, '', `/consent${pending}`);
        route.set({ path: '/consent' });
      } else navigate('/chats', true);
    }
  }, [ready, me, path]);
  if (!ready) return <div class="splash" aria-busy="true">{t('common.loading')}</div>;
  if (!me) return <AuthScreen />;

  if (path === '/consent') return <div class="shell full"><main class="screen"><ConsentScreen /></main></div>;
  let screen;
  let params;
  if ((params = match('/chats/:id', path)) && params.id !== 'new-group') screen = <ConversationScreen id={params.id} />;
  else if (path === '/chats/new-group') screen = <NewGroupScreen />;
  else if (path === '/contacts') screen = <ContactsScreen />;
  else if (path === '/wallet') screen = <WalletScreen />;
  else if (path === '/rides') screen = <Lazy name="rides" load={loadRides} />;
  else if (path === '/shop' || path.startsWith('/shop/')) screen = <Lazy name="shop" load={loadShop} />;
  else if (path === '/video' || path.startsWith('/video/')) screen = <Lazy name="video" load={loadVideo} />;
  else if (path === '/live' || path.startsWith('/live/')) screen = <Lazy name="live" load={loadLive} />;
  else if (path === '/apps' || path.startsWith('/apps/')) screen = <Lazy name="miniapps" load={loadMiniApps} />;
  else if (path === '/me') screen = <MeScreen />;
  else screen = <ChatsScreen />;
  // A running mini-app has the whole screen, under Plaza's bar; so does a live stream.
  const fullScreen = path.startsWith('/chats/') || /^\/apps\/[^/]+\/run(\/|$)/.test(path) || /^\/live\/(?!host$)[^/]+$/.test(path);
  return (
    <div class={fullScreen ? 'shell full' : 'shell'}>
      <OfferBanner path={path} />
      <main class="screen">{screen}</main>
      {!fullScreen && <TabBar path={path} />}
      <PinPad />
    </div>
  );
}

render(<App />, document.getElementById('app')!);

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  window.addEventListener('load', () => { navigator.serviceWorker.register('/sw.js').catch(() => {}); });
}
