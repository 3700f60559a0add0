// A `miniapp` card in a chat (written by the server, API.md "Mini-apps": the app's name,
// home and description come from its registration) and the routes that open an app. Kept
// apart from screens/miniapps.tsx so chats load this little eagerly and the runner lazily.
import { t } from '../lib/i18n';
import { validPath } from '../lib/miniapp-host';
import { navigate, route } from '../lib/router';

/** Where the runner's close button goes back to: the screen the app was opened from. */
let openedFrom: string | null = null;

export function takeOpenedFrom(): string | null {
  const from = openedFrom;
  openedFrom = null;
  return from;
}

/** `/apps/<id>/run`, or `/apps/<id>/run/<the shared path, as one encoded segment>`. */
export function runnerPath(appId: string, path: string | null): string {
  const base = `/apps/${encodeURIComponent(appId)}/run`;
  return path ? `${base}/${encodeURIComponent(path)}` : base;
}

export function openMiniApp(appId: string, path: string | null) {
  openedFrom = route.get().path;
  navigate(runnerPath(appId, path));
}

export function MiniAppCard({ body }: { body: any }) {
  const title = typeof body.title === 'string' ? body.title : '';
  const appName = typeof body.app_name === 'string' ? body.app_name : '';
  // The server checked the path when the card was posted; it is checked again because a
  // card is only data, and only a path on the app's own origin may be opened.
  const path = validPath(body.path) ? body.path : null;
  return (
    <div class="bubble shop-card miniapp-card" data-testid="card" data-card-type="miniapp">
      <small class="muted">{t('card.miniapp')}{appName ? ` · ${appName}` : ''}</small>
      <strong>{title}</strong>
      {body.description && <span class="small muted ellipsis">{body.description}</span>}
      {typeof body.id === 'string' && (
        <button type="button" class="primary small-button" aria-label={t('card.miniapp_open', { title, app: appName })}
          onClick={() => openMiniApp(body.id, path)}>
          {t('miniapp.open')}
        </button>
      )}
    </div>
  );
}
