import { logout, store } from '../lib/data';
import { setLang, t, useLang } from '../lib/i18n';
import { applyTheme, currentTheme } from '../lib/theme';
import type { Theme } from '../lib/theme';
import { Avatar } from '../lib/ui';
import { navigate } from '../lib/router';
import { useState } from 'preact/hooks';

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
      </div>
    </section>
  );
}
