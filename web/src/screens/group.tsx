import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api';
import type { Conversation } from '../lib/api';
import { loadContacts, store } from '../lib/data';
import { t } from '../lib/i18n';
import { navigate } from '../lib/router';
import { Avatar, ErrorLine } from '../lib/ui';

export function NewGroupScreen() {
  const contacts = store.use((s) => s.contacts);
  const [title, setTitle] = useState('');
  const [picked, setPicked] = useState<Set<string>>(new Set());
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => { void loadContacts().catch(setError); }, []);
  const accepted = (contacts ?? []).filter((c) => c.status === 'accepted');

  const create = async (event: Event) => {
    event.preventDefault();
    if (!picked.size) { setError(t('group.pick')); return; }
    setBusy(true);
    try {
      const conversation = await api<Conversation>('POST', '/conversations', {
        kind: 'group', member_ids: [...picked], title: title.trim() || undefined,
      });
      store.set((s) => ({ conversations: { ...s.conversations, [conversation.id]: conversation } }));
      navigate(`/chats/${conversation.id}`, true);
    } catch (caught) { setError(caught); } finally { setBusy(false); }
  };

  return (
    <section aria-labelledby="group-title">
      <header class="topbar">
        <button class="icon-button" aria-label={t('chat.back')} onClick={() => history.back()}>‹</button>
        <h1 id="group-title">{t('chats.new_group')}</h1>
        <span />
      </header>
      <form class="form pad" onSubmit={create}>
        <label>{t('group.title')}<input name="title" maxLength={100} value={title} onInput={(e) => setTitle(e.currentTarget.value)} /></label>
        <fieldset>
          <legend>{t('group.members')}</legend>
          {contacts && !accepted.length && <p class="muted">{t('group.no_contacts')}</p>}
          <ul class="list">
            {accepted.map((contact) => (
              <li><label class="row check-row">
                <input type="checkbox" checked={picked.has(contact.user.id)} onChange={(e) => {
                  const next = new Set(picked);
                  if (e.currentTarget.checked) next.add(contact.user.id); else next.delete(contact.user.id);
                  setPicked(next);
                }} />
                <Avatar name={contact.user.display_name} size={36} />
                <span>{contact.user.display_name} <span class="muted">@{contact.user.username}</span></span>
              </label></li>
            ))}
          </ul>
        </fieldset>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{t('group.create')}</button>
      </form>
    </section>
  );
}
