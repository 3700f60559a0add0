import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api';
import type { Conversation, Page, User } from '../lib/api';
import { loadContacts, rememberUsers, store } from '../lib/data';
import { t } from '../lib/i18n';
import { navigate } from '../lib/router';
import { Avatar, ErrorLine } from '../lib/ui';

export async function openDirectChat(userId: string) {
  const conversation = await api<Conversation>('POST', '/conversations', { kind: 'direct', member_ids: [userId] });
  store.set((s) => ({ conversations: { ...s.conversations, [conversation.id]: { ...s.conversations[conversation.id], ...conversation } } }));
  navigate(`/chats/${conversation.id}`);
}

export function ContactsScreen() {
  const contacts = store.use((s) => s.contacts);
  const me = store.use((s) => s.me!);
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<User[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { void loadContacts().catch(setError); }, []);

  useEffect(() => {
    const q = query.trim();
    if (!q) { setResults(null); return; }
    const timer = setTimeout(() => {
      api<Page<User>>('GET', `/users?q=${encodeURIComponent(q)}&limit=20`)
        .then((page) => { rememberUsers(page.items); setResults(page.items.filter((u) => u.id !== me.id)); })
        .catch(setError);
    }, 250);
    return () => clearTimeout(timer);
  }, [query]);

  const statusOf = (id: string) => contacts?.find((c) => c.user.id === id)?.status;
  const act = (run: () => Promise<unknown>) => { setError(null); run().then(() => loadContacts()).catch(setError); };
  const add = (id: string) => act(() => api('POST', '/contacts', { user_id: id }));
  const accept = (id: string) => act(() => api('POST', `/contacts/${encodeURIComponent(id)}/accept`));
  const message = (id: string) => { setError(null); openDirectChat(id).catch(setError); };

  const incoming = (contacts ?? []).filter((c) => c.status === 'incoming');
  const outgoing = (contacts ?? []).filter((c) => c.status === 'outgoing');
  const accepted = (contacts ?? []).filter((c) => c.status === 'accepted');

  const action = (user: User) => {
    const status = statusOf(user.id);
    if (status === 'accepted') return <button class="small-button" onClick={() => message(user.id)}>{t('contacts.message')}</button>;
    if (status === 'incoming') {
      return <button class="small-button primary" onClick={() => accept(user.id)} aria-label={t('contacts.accept_name', { name: user.display_name })}>{t('contacts.accept')}</button>;
    }
    if (status === 'outgoing') return <span class="muted small">{t('contacts.requested')}</span>;
    return <button class="small-button primary" onClick={() => add(user.id)} aria-label={`${t('contacts.add')} ${user.display_name}`}>{t('contacts.add')}</button>;
  };
  const row = (user: User) => (
    <li class="row" data-testid="person">
      <Avatar name={user.display_name} />
      <div class="row-main"><strong>{user.display_name}</strong><br /><span class="muted small">@{user.username}</span></div>
      {action(user)}
    </li>
  );

  return (
    <section aria-labelledby="contacts-title">
      <header class="topbar"><h1 id="contacts-title">{t('tab.contacts')}</h1></header>
      <div class="pad">
        <label class="search">
          <span class="visually-hidden">{t('contacts.search')}</span>
          <input type="search" name="q" placeholder={`🔍 ${t('contacts.search_hint')}`} aria-label={t('contacts.search')}
            value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        </label>
        <ErrorLine error={error} />
      </div>
      {results && (
        <>
          <h2 class="section-title">{t('contacts.search')}</h2>
          {!results.length && <p class="muted pad">{t('contacts.no_results')}</p>}
          <ul class="list" aria-label={t('contacts.search')}>{results.map(row)}</ul>
        </>
      )}
      {!!incoming.length && <><h2 class="section-title">{t('contacts.incoming')}</h2><ul class="list" aria-label={t('contacts.incoming')}>{incoming.map((c) => row(c.user))}</ul></>}
      <h2 class="section-title">{t('contacts.mine')}</h2>
      {contacts && !accepted.length && <p class="muted pad">{t('contacts.none')}</p>}
      <ul class="list" aria-label={t('contacts.mine')}>{accepted.map((c) => row(c.user))}</ul>
      {!!outgoing.length && <><h2 class="section-title">{t('contacts.outgoing')}</h2><ul class="list" aria-label={t('contacts.outgoing')}>{outgoing.map((c) => row(c.user))}</ul></>}
    </section>
  );
}
