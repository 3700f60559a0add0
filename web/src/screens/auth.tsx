import { useState } from 'preact/hooks';
import { api, ApiError } from '../lib/api';
import type { User } from '../lib/api';
import { startSession } from '../lib/data';
import { t, useLang, setLang } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { displayNameRule, passwordRule, usernameRule } from '../lib/rules';
import { ErrorLine, Field } from '../lib/ui';
import { navigate } from '../lib/router';

type FieldName = 'username' | 'password' | 'display_name';
type Problems = Partial<Record<FieldName, TextKey>>;

/** The sentence for each field that breaks a rule: on sign-up every rule the server has,
 *  on sign-in only that both are filled in (a wrong name is just a failed sign-in). */
function check(mode: 'signin' | 'signup', username: string, password: string, displayName: string): Problems {
  const problems: Problems = {};
  const name = mode === 'signup' ? usernameRule(username) : username.trim() ? null : 'field.username_required';
  const secret = mode === 'signup' ? passwordRule(password) : password ? null : 'field.password_required';
  const shown = mode === 'signup' ? displayNameRule(displayName) : null;
  if (name) problems.username = name;
  if (secret) problems.password = secret;
  if (shown) problems.display_name = shown;
  return problems;
}

/** A server's answer that belongs next to one field, worded by the app's rule for it. */
function fieldProblem(error: unknown, values: Record<FieldName, string>): Problems | null {
  if (!(error instanceof ApiError)) return null;
  if (error.code === 'username_taken') return { username: 'error.username_taken' };
  if (error.code !== 'invalid_field') return null;
  const field = error.field as FieldName | undefined;
  if (field === 'username') return { username: usernameRule(values.username) ?? 'field.username_chars' };
  if (field === 'password') return { password: passwordRule(values.password) ?? 'field.password_short' };
  if (field === 'display_name') return { display_name: displayNameRule(values.display_name) ?? 'field.display_name_chars' };
  return null;
}

export function AuthScreen() {
  const lang = useLang();
  const [mode, setMode] = useState<'signin' | 'signup'>('signin');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [problems, setProblems] = useState<Problems>({});
  // After the first try, each field is checked again as it is typed in.
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);

  const recheck = (next: { username?: string; password?: string; displayName?: string }) => {
    if (!tried) return;
    setProblems(check(mode, next.username ?? username, next.password ?? password, next.displayName ?? displayName));
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setTried(true);
    setError(null);
    const found = check(mode, username, password, displayName);
    setProblems(found);
    const first = (['username', 'display_name', 'password'] as FieldName[]).find((field) => found[field]);
    if (first) {
      (event.currentTarget as HTMLFormElement).querySelector<HTMLInputElement>(`input[name="${first}"]`)?.focus();
      return;
    }
    setBusy(true);
    try {
      const reply = mode === 'signin'
        ? await api<{ token: string; user: User }>('POST', '/auth/login', { username: username.trim(), password })
        : await api<{ token: string; user: User }>('POST', '/auth/register', {
          username: username.trim(), password, display_name: displayName.trim() || undefined,
        });
      await startSession(reply.token, reply.user);
      navigate('/chats', true);
    } catch (caught) {
      const beside = fieldProblem(caught, { username, password, display_name: displayName });
      if (beside) setProblems(beside); else setError(caught);
    } finally {
      setBusy(false);
    }
  };
  const switchMode = () => {
    setMode(mode === 'signin' ? 'signup' : 'signin');
    setError(null); setProblems({}); setTried(false);
  };

  return (
    <main class="auth">
      <div class="auth-brand">
        <img src="/icon.svg" alt="" width="72" height="72" />
        <h1>{t('app.name')}</h1>
        <p>{t('auth.tagline')}</p>
      </div>
      {/* noValidate: the app tells each rule itself, in its own language. */}
      <form class="card form" onSubmit={submit} noValidate aria-label={mode === 'signin' ? t('auth.signin') : t('auth.signup')}>
        <Field name="username" label={t('auth.username')} problem={problems.username}
          hint={mode === 'signup' ? t('auth.username_hint') : undefined}
          input={{ autoComplete: 'username', autoCapitalize: 'none', required: true, value: username,
            onInput: (e) => { setUsername(e.currentTarget.value); recheck({ username: e.currentTarget.value }); } }} />
        {mode === 'signup' && (
          <Field name="display_name" label={t('auth.display_name')} problem={problems.display_name}
            input={{ autoComplete: 'nickname', value: displayName,
              onInput: (e) => { setDisplayName(e.currentTarget.value); recheck({ displayName: e.currentTarget.value }); } }} />
        )}
        <Field name="password" label={t('auth.password')} problem={problems.password}
          hint={mode === 'signup' ? t('auth.password_hint') : undefined}
          input={{ type: 'password', required: true, autoComplete: mode === 'signin' ? 'current-password' : 'new-password', value: password,
            onInput: (e) => { setPassword(e.currentTarget.value); recheck({ password: e.currentTarget.value }); } }} />
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{mode === 'signin' ? t('auth.signin') : t('auth.signup')}</button>
        <button class="link" type="button" onClick={switchMode}>
          {mode === 'signin' ? t('auth.to_signup') : t('auth.to_signin')}
        </button>
      </form>
      <button class="link lang-switch" type="button" onClick={() => setLang(lang === 'en' ? 'zh-CN' : 'en')}>
        {lang === 'en' ? '中文' : 'English'}
      </button>
    </main>
  );
}
