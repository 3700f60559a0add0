// The OAuth consent screen: GET /api/v1/oauth/authorize sends the browser here
// (`/consent?<the app's request>`). The server checks the request again and says which
// app asks for what; a request for scopes the user already granted is answered at once,
// without asking. The answer (POST /oauth/authorize) says where to send the browser:
// back to the app, with a code or with `error=access_denied`.
import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api';
import { t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { ErrorLine } from '../lib/ui';

interface ConsentView {
  app: { id: string; name: string; description: string; home_url: string } | null;
  scopes: string[];
  already_granted: boolean;
  redirect_to: string | null;
}

/** The request's parameters, as the app sent them to the authorization endpoint. */
function requestParams(): Record<string, string> {
  const params: Record<string, string> = {};
  new URLSearchParams(location.search).forEach((value, name) => { params[name] = value; });
  return params;
}

/** "Coffee House wants your name and photo; to ask you for payments". */
export function consentSentence(name: string, scopes: string[]): string {
  const parts: string[] = [];
  if (scopes.includes('profile')) parts.push(t('consent.profile'));
  else if (scopes.includes('openid')) parts.push(t('consent.openid'));
  if (scopes.includes('payments')) parts.push(t('consent.payments'));
  return t('consent.wants', { app: name, what: parts.join(t('consent.separator')) });
}

export function ConsentScreen() {
  const [view, setView] = useState<ConsentView | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const params = requestParams();

  const answer = async (approve: boolean) => {
    setBusy(true); setError(null);
    try {
      const { redirect_to } = await api<{ redirect_to: string }>('POST', '/oauth/authorize', { ...params, approve });
      location.replace(redirect_to);
    } catch (caught) {
      setError(caught); setBusy(false);
    }
  };

  useEffect(() => {
    api<ConsentView>('GET', `/oauth/consent${location.search}`)
      .then((found) => {
        if (found.redirect_to) location.replace(found.redirect_to);
        else if (found.already_granted) answer(true);
        else setView(found);
      })
      .catch(setError);
  }, []);

  if (error) return <section class="pad"><h1>{t('consent.title')}</h1><ErrorLine error={error} /></section>;
  if (!view || !view.app) return <div class="splash" aria-busy="true">{t('common.loading')}</div>;
  return (
    <section aria-labelledby="consent-title" class="pad consent">
      <h1 id="consent-title">{t('consent.title')}</h1>
      <p data-testid="consent-sentence">{consentSentence(view.app.name, view.scopes)}</p>
      {view.app.description && <p class="muted">{view.app.description}</p>}
      <p class="muted small">{view.app.home_url}</p>
      <ul class="muted small">
        {view.scopes.map((scope) => <li key={scope}>{t(`consent.scope.${scope}` as TextKey)}</li>)}
      </ul>
      <div class="form">
        <button type="button" class="primary" disabled={busy} onClick={() => answer(true)}>{t('consent.allow')}</button>
        <button type="button" disabled={busy} onClick={() => answer(false)}>{t('consent.deny')}</button>
      </div>
    </section>
  );
}
