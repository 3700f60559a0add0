import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, uploadMedia } from '../lib/api';
import type { Conversation, Message } from '../lib/api';
import {
  conversationTitle, displayName, loadConversation, loadMessages, loadRedPacket, loadWallet, markRead, retrySend,
  sendMessage, sendTyping, store,
} from '../lib/data';
import type { Pending } from '../lib/data';
import { errorText, t } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { navigate } from '../lib/router';
import { AuthImage, AvailableLine, Avatar, ConnectionBanner, Dialog, ErrorLine, usePayment } from '../lib/ui';
import { VirtualList } from '../lib/virtual';
import { shortTime, systemText } from './chats';
import { GroupBuyCard, ProductCard, VideoCard } from './shop-cards';
import { MiniAppCard } from './miniapp-card';
import { RideCard } from './ride-card';

type Row = { type: 'message'; message: Message } | { type: 'pending'; pending: Pending };

export function ConversationScreen({ id }: { id: string }) {
  const conversation = store.use((s) => s.conversations[id]);
  const messages = store.use((s) => s.messages[id]);
  const pending = store.use((s) => s.pending[id]);
  const complete = store.use((s) => s.complete[id]);
  const reads = store.use((s) => s.reads[id]);
  const typing = store.use((s) => s.typing[id]);
  const me = store.use((s) => s.me!);
  store.use((s) => s.users);
  const [error, setError] = useState<unknown>(null);
  const [dialog, setDialog] = useState<null | 'transfer' | 'red_packet' | { packet: string }>(null);
  const [, tick] = useState(0);
  const loadingOlder = useRef(false);

  useEffect(() => {
    store.set({ openConversation: id });
    loadConversation(id).catch(setError);
    loadMessages(id).then(() => markRead(id)).catch(setError);
    return () => store.set({ openConversation: null });
  }, [id]);

  useEffect(() => { markRead(id); }, [messages?.length]);

  // Typing indicators expire on their own; re-render when the next one does.
  useEffect(() => {
    const expiries = Object.values(typing ?? {}).filter((at) => at > Date.now());
    if (!expiries.length) return;
    const timer = setTimeout(() => tick((n) => n + 1), Math.min(...expiries) - Date.now() + 50);
    return () => clearTimeout(timer);
  }, [typing]);

  const rows: Row[] = [
    ...(messages ?? []).map((message) => ({ type: 'message' as const, message })),
    ...(pending ?? []).map((p) => ({ type: 'pending' as const, pending: p })),
  ];
  const typists = Object.entries(typing ?? {}).filter(([user, at]) => at > Date.now() && user !== me.id).map(([user]) => displayName(user));
  const title = conversation ? conversationTitle(conversation) : '';
  const others = conversation ? conversation.member_ids.filter((m) => m !== me.id) : [];
  const lastMine = [...(messages ?? [])].reverse().find((m) => m.sender_id === me.id)?.seq;

  const olderWanted = () => {
    if (complete || loadingOlder.current || !messages?.length) return;
    loadingOlder.current = true;
    loadMessages(id, true).catch(setError).finally(() => { loadingOlder.current = false; });
  };

  const receipt = (message: Message) => {
    if (message.sender_id !== me.id || message.seq !== lastMine) return null;
    const readers = others.filter((other) => (reads?.[other] ?? 0) >= message.seq).length;
    const text = !readers ? t('chat.sent') : conversation?.kind === 'group' ? t('chat.read_by', { n: readers }) : t('chat.read');
    return <span class="receipt" data-testid="receipt">{text}</span>;
  };

  const renderRow = (row: Row) => {
    if (row.type === 'pending') {
      const p = row.pending;
      return (
        <div class="msg mine" data-testid="message" data-pending="true">
          <div class="bubble-wrap">
            <Bubble kind={p.kind} body={p.body} mine previewUrl={p.preview_url} onOpenPacket={() => {}} />
            {p.status === 'sending'
              ? <span class="receipt">{t('chat.sending')}</span>
              : <button class="receipt failed" onClick={() => retrySend(p)} title={p.error ? errorText(p.error) : ''}>{t('chat.failed')}</button>}
          </div>
        </div>
      );
    }
    const message = row.message;
    if (message.kind === 'system') return <p class="system-msg">{systemText(message.body)}</p>;
    const mine = message.sender_id === me.id;
    const name = displayName(message.sender_id);
    return (
      <div class={mine ? 'msg mine' : 'msg'} data-testid="message" data-seq={message.seq}>
        {!mine && <Avatar name={name} size={32} />}
        <div class="bubble-wrap">
          {!mine && conversation?.kind === 'group' && <span class="sender small muted">{name}</span>}
          <Bubble kind={message.kind} body={message.body} mine={mine} onOpenPacket={(packet) => setDialog({ packet })} />
          <span class="meta small muted"><time dateTime={message.created_at}>{shortTime(message.created_at)}</time> {receipt(message)}</span>
        </div>
      </div>
    );
  };

  return (
    <section class="conversation" aria-label={title}>
      <header class="topbar">
        <button class="icon-button" aria-label={t('chat.back')} onClick={() => navigate('/chats')}>‹</button>
        <div class="topbar-title">
          <h1 class="ellipsis">{title}</h1>
          <small class="muted" aria-live="polite" data-testid="typing">
            {typists.length ? t('chat.typing', { name: typists.join(', ') })
              : conversation?.kind === 'group' ? t('chat.members', { n: conversation.member_ids.length }) : ''}
          </small>
        </div>
        <span />
      </header>
      <ConnectionBanner />
      <ErrorLine error={error} />
      {!complete && messages?.length ? <p class="muted small center" aria-hidden="true">{t('chat.load_older')}</p> : null}
      {messages && !rows.length && <p class="muted center pad">{t('chat.empty')}</p>}
      <VirtualList items={rows} label={title} onNearTop={olderWanted}
        keyOf={(row) => row.type === 'message' ? `${row.message.sender_id}:${row.message.client_id}` : `${me.id}:${row.pending.client_id}`}
        render={renderRow} />
      <Composer conversationId={id} onMoney={() => setDialog('transfer')} onRedPacket={() => setDialog('red_packet')} />
      {dialog === 'transfer' && conversation && <TransferDialog conversation={conversation} onClose={() => setDialog(null)} />}
      {dialog === 'red_packet' && conversation && <RedPacketDialog conversation={conversation} onClose={() => setDialog(null)} />}
      {dialog && typeof dialog === 'object' && <RedPacketView id={dialog.packet} onClose={() => setDialog(null)} />}
    </section>
  );
}

function Bubble(props: { kind: string; body: any; mine: boolean; previewUrl?: string; onOpenPacket: (id: string) => void }) {
  const { kind, body } = props;
  switch (kind) {
    case 'text': return <div class="bubble">{body.text}</div>;
    case 'image': return <div class="bubble image">{body.media_id ? <AuthImage mediaId={body.media_id} alt={t('chat.image')} fallback={props.previewUrl} /> : <img class="chat-image" src={props.previewUrl} alt={t('chat.image')} />}</div>;
    case 'transfer':
      return (
        <div class="bubble transfer" data-testid="transfer">
          <span class="bubble-icon" aria-hidden="true">💸</span>
          <div><strong>{formatMoney(body.amount, body.currency)}</strong><br />
            <small>{t('msg.transfer_to', { amount: '', name: displayName(body.to_user_id) }).trim()}{body.note ? ` · ${body.note}` : ''}</small></div>
        </div>
      );
    case 'red_packet': return <RedPacketBubble body={body} onOpen={() => props.onOpenPacket(body.red_packet_id)} />;
    case 'card':
      if (body.type === 'ride') return <RideCard body={body} />;
      if (body.type === 'product') return <ProductCard body={body} />;
      if (body.type === 'group_buy') return <GroupBuyCard body={body} />;
      if (body.type === 'video') return <VideoCard body={body} />;
      if (body.type === 'miniapp') return <MiniAppCard body={body} />;
      return (
        <div class="bubble card-msg" data-testid="card">
          <small class="muted">{body.type ?? t('msg.card')}</small>
          <strong>{body.title}</strong>
          {body.subtitle && <span>{body.subtitle}</span>}
        </div>
      );
    default: return <div class="bubble muted">{t('msg.unsupported')}</div>;
  }
}

/** How a red packet looks to this reader: still to open, or dimmed once it is opened
 *  ("You got $1.23"), taken by others, or expired. The message itself never changes; the
 *  packet's state comes from GET /red-packets/{id}, fetched again when a claim is heard of. */
function RedPacketBubble({ body, onOpen }: { body: any; onOpen: () => void }) {
  const id: string = body.red_packet_id;
  const packet = store.use((s) => s.redPackets[id]);
  const me = store.use((s) => s.me!);
  useEffect(() => { if (!packet) void loadRedPacket(id).catch(() => {}); }, [id]);
  const greeting = body.greeting || t('rp.greeting_default');
  const mine = packet?.claims.find((claim) => claim.user_id === me.id);
  const allTaken = packet ? packet.claimed_count >= packet.count : false;
  const ended = packet ? packet.refunded_at !== null || Date.parse(packet.expires_at) <= Date.now() : false;
  let state: string | null = null;
  if (mine) state = t('rp.state_opened');
  else if (allTaken) state = packet!.sender_id === me.id && packet!.count === 1 ? t('rp.state_opened') : t('rp.state_all_taken');
  else if (ended) state = t('rp.state_expired');
  const detail = mine ? t('rp.you_got', { amount: formatMoney(mine.amount, mine.currency) }) : t('msg.red_packet');
  return (
    <button class={state ? 'bubble red-packet opened' : 'bubble red-packet'} data-testid="red-packet" data-state={state ? 'done' : 'open'}
      onClick={onOpen} aria-label={`${t('msg.red_packet')}: ${greeting}. ${state ? `${state}. ${mine ? detail : ''}` : t('msg.open')}`.trim()}>
      <span class="bubble-icon" aria-hidden="true">🧧</span>
      <div><strong>{greeting}</strong><br /><small>{state ? `${state}${mine ? ` · ${detail}` : ''}` : t('msg.red_packet')}</small></div>
    </button>
  );
}

function Composer(props: { conversationId: string; onMoney: () => void; onRedPacket: () => void }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [menu, setMenu] = useState(false);
  const lastTyping = useRef(0);
  const file = useRef<HTMLInputElement>(null);

  const send = (event: Event) => {
    event.preventDefault();
    const value = text.trim();
    if (!value) return;
    sendMessage(props.conversationId, 'text', { text: value });
    setText('');
  };
  const onInput = (value: string) => {
    setText(value);
    if (value && Date.now() - lastTyping.current > 3000) { lastTyping.current = Date.now(); sendTyping(props.conversationId); }
  };
  const sendImage = async (chosen: File | undefined) => {
    if (!chosen) return;
    setError(null);
    try {
      const mediaId = await uploadMedia(chosen);
      sendMessage(props.conversationId, 'image', { media_id: mediaId }, URL.createObjectURL(chosen));
    } catch (caught) { setError(caught); }
    if (file.current) file.current.value = '';
  };

  return (
    <div class="composer-wrap">
      <ErrorLine error={error} />
      {menu && (
        <div class="composer-menu" role="menu">
          <button role="menuitem" onClick={() => { setMenu(false); props.onMoney(); }}>💸 {t('chat.send_money')}</button>
          <button role="menuitem" onClick={() => { setMenu(false); props.onRedPacket(); }}>🧧 {t('chat.red_packet')}</button>
          <label class="menu-like" role="menuitem">🖼️ {t('chat.attach_image')}
            <input ref={file} class="visually-hidden" type="file" accept="image/*" onChange={(e) => { setMenu(false); void sendImage(e.currentTarget.files?.[0]); }} />
          </label>
        </div>
      )}
      <form class="composer" onSubmit={send}>
        <button type="button" class="icon-button" aria-label={t('chat.more')} aria-expanded={menu} onClick={() => setMenu(!menu)}>+</button>
        <input name="message" aria-label={t('chat.input')} placeholder={t('chat.input')} autoComplete="off" value={text}
          onInput={(e) => onInput(e.currentTarget.value)} maxLength={4000} />
        <button class="primary" type="submit" disabled={!text.trim()}>{t('chat.send')}</button>
      </form>
    </div>
  );
}

function useBalanceCurrency(): string {
  const balances = store.use((s) => s.balances);
  useEffect(() => { if (!balances) void loadWallet().catch(() => {}); }, []);
  return balances?.[0]?.currency ?? 'USD';
}

function TransferDialog({ conversation, onClose }: { conversation: Conversation; onClose: () => void }) {
  const me = store.get().me!;
  const currency = useBalanceCurrency();
  const others = conversation.member_ids.filter((m) => m !== me.id);
  const [to, setTo] = useState(others[0] ?? '');
  const { amount, setAmount, error, busy, submit: pay } = usePayment(currency);
  const [note, setNote] = useState('');

  const submit = pay((minor, pin, idempotencyKey) => api('POST', '/wallet/transfers', {
    to_user_id: to, amount: minor, currency, note: note.trim() || undefined, conversation_id: conversation.id, pin,
  }, { idempotencyKey }), onClose);
  return (
    <Dialog title={t('chat.send_money')} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        {others.length > 1 && (
          <label>{t('transfer.to')}
            <select value={to} onChange={(e) => setTo(e.currentTarget.value)}>
              {others.map((id) => <option value={id}>{displayName(id)}</option>)}
            </select>
          </label>
        )}
        {others.length === 1 && <p>{t('transfer.to')}: <strong>{displayName(to)}</strong></p>}
        <label>{t('transfer.amount')} ({currency})<input name="amount" inputMode="decimal" required value={amount} onInput={(e) => setAmount(e.currentTarget.value)}
          aria-describedby="transfer-available" /></label>
        <AvailableLine id="transfer-available" currency={currency} />
        <label>{t('transfer.note')}<input name="note" maxLength={200} value={note} onInput={(e) => setNote(e.currentTarget.value)} /></label>
        <ErrorLine error={error} currency={currency} />
        <button class="primary" type="submit" disabled={busy}>{t('transfer.send')}</button>
      </form>
    </Dialog>
  );
}

function RedPacketDialog({ conversation, onClose }: { conversation: Conversation; onClose: () => void }) {
  const currency = useBalanceCurrency();
  const group = conversation.kind === 'group';
  const { amount, setAmount, error, busy, submit: pay } = usePayment(currency);
  const [count, setCount] = useState(group ? String(Math.max(1, conversation.member_ids.length - 1)) : '1');
  const [mode, setMode] = useState<'lucky' | 'equal'>('lucky');
  const [greeting, setGreeting] = useState('');

  const submit = pay((minor, pin, idempotencyKey) => api('POST', '/red-packets', {
    conversation_id: conversation.id, total: { amount: minor, currency }, count: Number(count), mode,
    greeting: greeting.trim() || undefined, pin,
  }, { idempotencyKey }), onClose);
  return (
    <Dialog title={t('chat.red_packet')} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>{t('rp.total')} ({currency})<input name="amount" inputMode="decimal" required value={amount} onInput={(e) => setAmount(e.currentTarget.value)}
          aria-describedby="packet-available" /></label>
        <AvailableLine id="packet-available" currency={currency} />
        {group && <label>{t('rp.count')}<input name="count" type="number" min={1} max={200} required value={count} onInput={(e) => setCount(e.currentTarget.value)} /></label>}
        {group && (
          <fieldset class="inline"><legend>{t('rp.mode')}</legend>
            <label><input type="radio" name="mode" checked={mode === 'lucky'} onChange={() => setMode('lucky')} /> {t('rp.lucky')}</label>
            <label><input type="radio" name="mode" checked={mode === 'equal'} onChange={() => setMode('equal')} /> {t('rp.equal')}</label>
          </fieldset>
        )}
        <label>{t('rp.greeting')}<input name="greeting" maxLength={100} placeholder={t('rp.greeting_default')} value={greeting} onInput={(e) => setGreeting(e.currentTarget.value)} /></label>
        <ErrorLine error={error} currency={currency} />
        <button class="primary red" type="submit" disabled={busy}>{t('rp.send')}</button>
      </form>
    </Dialog>
  );
}

function RedPacketView({ id, onClose }: { id: string; onClose: () => void }) {
  const me = store.get().me!;
  const packet = store.use((s) => s.redPackets[id] ?? null);
  store.use((s) => s.users);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => { void loadRedPacket(id).catch(setError); }, [id]);

  const mine = packet?.claims.find((claim) => claim.user_id === me.id);
  const left = packet ? packet.count - packet.claimed_count : 0;
  const open = async () => {
    setBusy(true); setError(null);
    try { await api('POST', `/red-packets/${encodeURIComponent(id)}/claim`, {}); }
    catch (caught) { if (!(caught instanceof ApiError && caught.code === 'already_claimed')) setError(caught); }
    await loadRedPacket(id).catch(setError);
    setBusy(false);
  };
  return (
    <Dialog title={t('msg.red_packet')} onClose={onClose}>
      {!packet && !error && <p class="muted">{t('common.loading')}</p>}
      <ErrorLine error={error} />
      {packet && (
        <div class="packet">
          <div class="packet-head">
            <Avatar name={displayName(packet.sender_id)} size={48} />
            <p>{t('rp.from', { name: displayName(packet.sender_id) })}</p>
            <h3>{packet.greeting || t('rp.greeting_default')}</h3>
            {mine && <p class="packet-amount" data-testid="my-share">{t('rp.you_got', { amount: formatMoney(mine.amount, mine.currency) })}</p>}
            {!mine && left > 0 && !packet.refunded_at && (
              <button class="packet-open" onClick={open} disabled={busy} aria-label={t('msg.open')}>{t('rp.open')}</button>
            )}
            {!mine && left <= 0 && <p>{t('rp.none_left')}</p>}
          </div>
          <h4>{t('rp.who_got')} · {t('rp.claimed', { claimed: packet.claimed_count, count: packet.count })}</h4>
          <ul class="list claims" aria-label={t('rp.who_got')}>
            {packet.claims.map((claim) => (
              <li class="row"><Avatar name={displayName(claim.user_id)} size={32} />
                <span class="row-main">{displayName(claim.user_id)}</span>
                <strong>{formatMoney(claim.amount, claim.currency)}</strong></li>
            ))}
          </ul>
        </div>
      )}
    </Dialog>
  );
}
