import { logout, store } from '../lib/data';
import { api, uploadMedia } from '../lib/api';
import { setLang, t, useLang } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { passwordRule } from '../lib/rules';
import { applyTheme, currentTheme } from '../lib/theme';
import type { Theme } from '../lib/theme';
import { Avatar, ErrorLine, Field } from '../lib/ui';
import { navigate } from '../lib/router';
import { useEffect, useState } from 'preact/hooks';

export function MeScreen() {
  const me = store.use((s) => s.me!);
  const lang = useLang();
  const [theme, setTheme] = useState<Theme>(currentTheme());
  return (
    <section aria-labelledby="me-title">
      <header class="topbar"><h1 id="me-title">{t('tab.me')}</h1></header>
      <div class="profile pad">
        <Avatar name={me.display_name} size={72} />
        <div>
          <h2 data-testid="display-name">{me.display_name}</h2>
          <p class="muted">{t('me.username')}: @{me.username}</p>
          <p class="muted small">{t('me.joined')}: {new Date(me.created_at).toLocaleDateString(lang)}</p>
        </div>
      </div>
      <div class="pad">
        <button type="button" class="list-button miniapps-entry" onClick={() => navigate('/apps')}>
          <span aria-hidden="true">🧩</span> {t('me.miniapps_open')}
        </button>
      </div>
      <div class="form pad">
        <label>{t('me.language')}
          <select name="language" value={lang} onChange={(e) => setLang(e.currentTarget.value as any)}>
            <option value="en">English</option>
            <option value="zh-CN">简体中文</option>
          </select>
        </label>
        <label>{t('me.theme')}
          <select name="theme" value={theme} onChange={(e) => { const value = e.currentTarget.value as Theme; setTheme(value); applyTheme(value); }}>
            <option value="system">{t('me.theme.system')}</option>
            <option value="light">{t('me.theme.light')}</option>
            <option value="dark">{t('me.theme.dark')}</option>
          </select>
        </label>
        <button class="danger" onClick={() => logout().then(() => navigate('/login', true))}>{t('me.logout')}</button>
        <button class="danger" onClick={logoutEverywhere}>{t('me.logout_everywhere')}</button>
      </div>
      <ProfileForm />
      <ConnectedApps />
      <PasswordForm />
    </section>
  );
}

/** Ends every session of this account, on every device; their sockets close at once. */
async function logoutEverywhere() {
  if (!confirm(t('me.logout_everywhere_confirm'))) return;
  try { await api('POST', '/auth/logout-everywhere'); } catch { /* signed out either way */ }
  await logout();
  navigate('/login', true);
}

interface Authorization { app_id: string; app: { name: string; home_url: string }; scopes: string[]; granted_at: string }

/** Me → Connected apps: the apps this user let in; disconnecting one ends its tokens at once. */
function ConnectedApps() {
  const [apps, setApps] = useState<Authorization[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = () => api<{ items: Authorization[] }>('GET', '/me/authorizations?limit=200')
    .then((page) => setApps(page.items)).catch(setError);
  useEffect(() => { load(); }, []);
  const disconnect = async (authorization: Authorization) => {
    if (!confirm(t('me.disconnect_confirm', { app: authorization.app.name }))) return;
    try { await api('DELETE', `/me/authorizations/${encodeURIComponent(authorization.app_id)}`); await load(); }
    catch (caught) { setError(caught); }
  };
  return (
    <section class="form pad" aria-labelledby="connected-apps-title">
      <h2 id="connected-apps-title">{t('me.connected_apps')}</h2>
      <ErrorLine error={error} />
      {apps && apps.length === 0 && <p class="muted">{t('me.connected_none')}</p>}
      {apps && apps.length > 0 && (
        <ul class="connected-apps">
          {apps.map((authorization) => (
            <li key={authorization.app_id}>
              <div>
                <strong>{authorization.app.name}</strong>
                <p class="muted small">{authorization.scopes.map((scope) => t(`consent.scope.${scope}` as TextKey)).join(' · ')}</p>
              </div>
              <button type="button" class="danger small-button" onClick={() => disconnect(authorization)}>{t('me.disconnect')}</button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** Changing the password signs every other device out; this one stays signed in. */
function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  // The server's rules, told next to the field (lib/rules.ts), not in a browser tooltip.
  const [problem, setProblem] = useState<{ current?: TextKey; next?: TextKey }>({});
  const submit = async (event: Event) => {
    event.preventDefault();
    const found = { current: current ? undefined : 'field.password_required' as TextKey, next: passwordRule(next) ?? undefined };
    setProblem(found);
    if (found.current || found.next) return;
    setBusy(true); setError(null); setDone(false);
    try {
      await api('POST', '/auth/password', { current_password: current, new_password: next });
      setCurrent(''); setNext(''); setDone(true);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="form pad" onSubmit={submit} noValidate aria-label={t('me.password')}>
      <h2>{t('me.password')}</h2>
      <Field name="current_password" label={t('me.password_current')} problem={problem.current}
        input={{ type: 'password', autoComplete: 'current-password', required: true, value: current,
          onInput: (e) => setCurrent(e.currentTarget.value) }} />
      <Field name="new_password" label={t('me.password_new')} problem={problem.next}
        input={{ type: 'password', autoComplete: 'new-password', required: true, value: next,
          onInput: (e) => setNext(e.currentTarget.value) }} />
      <ErrorLine error={error} />
      {done && <p role="status">{t('me.password_changed')}</p>}
      <button type="submit" disabled={busy}>{t('me.password_change')}</button>
    </form>
  );
}

/** Me → Profile: the display name, bio and photo everyone sees (`PATCH /me`). */
function ProfileForm() {
  const me = store.use((s) => s.me!) as any;
  const [name, setName] = useState<string>(me.display_name);
  const [bio, setBio] = useState<string>(me.bio ?? '');
  const [photo, setPhoto] = useState<File | null>(null);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const save = async (event: Event) => {
    event.preventDefault();
    setSaved(false);
    try {
      let avatar_media_id: string | undefined;
      if (photo) avatar_media_id = await uploadMedia(photo);
      const updated = await api<any>('PATCH', '/me', { display_name: name, bio, avatar_media_id });
      store.set({ me: { ...me, ...updated } });
      setSaved(true);
      setError(null);
    } catch (caught) { setError(caught); }
  };
  return (
    <form class="form pad" onSubmit={save} aria-labelledby="profile-title">
      <h2 id="profile-title">{t('me.profile')}</h2>
      <label>{t('auth.display_name')}
        <input name="display_name" required maxLength={64} value={name} onInput={(event) => setName(event.currentTarget.value)} />
      </label>
      <label>{t('me.bio')}
        <textarea name="bio" maxLength={160} rows={2} value={bio} onInput={(event) => setBio(event.currentTarget.value)} />
      </label>
      <label>{t('me.avatar')}
        <input type="file" name="avatar" accept="image/*" onChange={(event) => setPhoto(event.currentTarget.files?.[0] ?? null)} />
      </label>
      <button type="submit">{t('common.save')}</button>
      {saved && <p class="small" role="status">{t('me.profile_saved')}</p>}
      <ErrorLine error={error} />
    </form>
  );
}
