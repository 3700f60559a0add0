import { store, conversationTitle, displayName } from '../lib/data';
import type { Conversation, Message } from '../lib/api';
import { t, lang } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { Avatar, ConnectionBanner } from '../lib/ui';
import { navigate } from '../lib/router';

export function preview(message: Message | null | undefined): string {
  if (!message) return t('chats.no_messages');
  const body = message.body ?? {};
  switch (message.kind) {
    case 'text': return body.text ?? '';
    case 'image': return `[${t('chat.image')}]`;
    case 'transfer': return `[${t('msg.transfer')}] ${formatMoney(body.amount, body.currency)}`;
    case 'red_packet': return `[${t('msg.red_packet')}] ${body.greeting || t('rp.greeting_default')}`;
    case 'card': return body.type === 'ride' ? `[${t('card.ride')}]` : `[${t('msg.card')}] ${body.title ?? ''}`;
    case 'system': return systemText(body);
    default: return t('msg.unsupported');
  }
}

/** A red packet's chat line, worded for the reader: "Ben opened your red packet", "You
 *  opened Ann's red packet", or, for a big packet, that all its shares were taken. */
function packetText(body: any): string {
  const me = store.get().me?.id;
  const actor = displayName(body.actor_id ?? '');
  const owner = displayName(body.owner_id ?? '');
  if (body.event === 'red_packet_finished') {
    return body.owner_id === me ? t('msg.system.packet_finished_mine', { n: body.count ?? 0 }) : t('msg.system.packet_finished', { owner, n: body.count ?? 0 });
  }
  if (body.actor_id === me) return body.owner_id === me ? t('msg.system.packet_opened_own') : t('msg.system.packet_opened_by_me', { owner });
  return body.owner_id === me ? t('msg.system.packet_opened_mine', { actor }) : t('msg.system.packet_opened', { actor, owner });
}

export function systemText(body: any): string {
  if (body.event === 'red_packet_claimed' || body.event === 'red_packet_finished') return packetText(body);
  const names = (body.user_ids ?? []).map(displayName).join(', ');
  const actor = body.actor_id ? displayName(body.actor_id) : '';
  const key = `msg.system.${body.event}` as const;
  const known = ['group_created', 'members_added', 'member_left', 'member_removed'].includes(body.event);
  return known ? t(key as any, { actor, names }) : (body.text ?? '');
}

export function shortTime(iso: string): string {
  const date = new Date(iso);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return new Intl.DateTimeFormat(lang.get().lang, sameDay ? { hour: '2-digit', minute: '2-digit' } : { month: 'short', day: 'numeric' }).format(date);
}

export function ChatsScreen() {
  const conversations = store.use((s) => s.conversations);
  const loaded = store.use((s) => s.conversationsLoaded);
  store.use((s) => s.users);
  const list = Object.values(conversations).sort((a, b) => b.last_activity_at.localeCompare(a.last_activity_at));
  return (
    <section aria-labelledby="chats-title">
      <header class="topbar">
        <h1 id="chats-title">{t('tab.chats')}</h1>
        <button class="icon-button" aria-label={t('chats.new_group')} title={t('chats.new_group')} onClick={() => navigate('/chats/new-group')}>+</button>
      </header>
      <ConnectionBanner />
      {!loaded && <p class="muted pad">{t('common.loading')}</p>}
      {loaded && !list.length && <p class="muted pad">{t('chats.empty')}</p>}
      <ul class="list" aria-label={t('tab.chats')}>
        {list.map((conversation) => <ChatRow conversation={conversation} />)}
      </ul>
    </section>
  );
}

function ChatRow({ conversation }: { conversation: Conversation }) {
  const title = conversationTitle(conversation);
  const unread = conversation.unread_count ?? 0;
  const last = conversation.last_message;
  const sender = last && conversation.kind === 'group' && last.kind !== 'system' ? `${displayName(last.sender_id)}: ` : '';
  return (
    <li>
      <a class="row chat-row" href={`/chats/${conversation.id}`} onClick={(e) => { e.preventDefault(); navigate(`/chats/${conversation.id}`); }}
        aria-label={`${title}${unread ? ', ' + t('chats.unread', { n: unread }) : ''}`}>
        <Avatar name={title} size={48} />
        <div class="row-main">
          <div class="row-top">
            <strong class="ellipsis">{title}</strong>
            {last && <time class="muted small" dateTime={last.created_at}>{shortTime(last.created_at)}</time>}
          </div>
          <div class="row-bottom">
            <span class="muted ellipsis">{sender}{preview(last)}</span>
            {unread > 0 && <span class="badge" data-testid="unread">{unread > 99 ? '99+' : unread}</span>}
          </div>
        </div>
      </a>
    </li>
  );
}
