import { useState } from 'preact/hooks';
import { api } from '../lib/api';
import type { User } from '../lib/api';
import { startSession } from '../lib/data';
import { t, useLang, setLang } from '../lib/i18n';
import { ErrorLine } from '../lib/ui';
import { navigate } from '../lib/router';

export function AuthScreen() {
  const lang = useLang();
  const [mode, setMode] = useState<'signin' | 'signup'>('signin');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const reply = mode === 'signin'
        ? await api<{ token: string; user: User }>('POST', '/auth/login', { username: username.trim(), password })
        : await api<{ token: string; user: User }>('POST', '/auth/register', {
          username: username.trim(), password, display_name: displayName.trim() || undefined,
        });
      await startSession(reply.token, reply.user);
      navigate('/chats', true);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="auth">
      <div class="auth-brand">
        <img src="/icon.svg" alt="" width="72" height="72" />
        <h1>{t('app.name')}</h1>
        <p>{t('auth.tagline')}</p>
      </div>
      <form class="card form" onSubmit={submit} aria-label={mode === 'signin' ? t('auth.signin') : t('auth.signup')}>
        <label>
          {t('auth.username')}
          <input name="username" autoComplete="username" autoCapitalize="none" required value={username}
            onInput={(e) => setUsername(e.currentTarget.value)} aria-describedby={mode === 'signup' ? 'username-hint' : undefined} />
        </label>
        {mode === 'signup' && <small id="username-hint" class="hint">{t('auth.username_hint')}</small>}
        {mode === 'signup' && (
          <label>
            {t('auth.display_name')}
            <input name="display_name" autoComplete="nickname" value={displayName} onInput={(e) => setDisplayName(e.currentTarget.value)} />
          </label>
        )}
        <label>
          {t('auth.password')}
          <input name="password" type="password" required minLength={mode === 'signup' ? 8 : undefined}
            autoComplete={mode === 'signin' ? 'current-password' : 'new-password'} value={password}
            onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {mode === 'signup' && <small class="hint">{t('auth.password_hint')}</small>}
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{mode === 'signin' ? t('auth.signin') : t('auth.signup')}</button>
        <button class="link" type="button" onClick={() => { setMode(mode === 'signin' ? 'signup' : 'signin'); setError(null); }}>
          {mode === 'signin' ? t('auth.to_signup') : t('auth.to_signin')}
        </button>
      </form>
      <button class="link lang-switch" type="button" onClick={() => setLang(lang === 'en' ? 'zh-CN' : 'en')}>
        {lang === 'en' ? '中文' : 'English'}
      </button>
    </main>
  );
}
