import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api';
import type { Entry, Page } from '../lib/api';
import { displayName, loadContacts, loadWallet, store } from '../lib/data';
import { t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { captureIn } from '../lib/entries';
import { formatMoney } from '../lib/money';
import { AvailableLine, Dialog, ErrorLine, askPin, usePayment } from '../lib/ui';
import { shortTime } from './chats';

export function WalletScreen() {
  const balances = store.use((s) => s.balances);
  const [history, setHistory] = useState<Entry[] | null>(null);
  const capture = captureIn(history ?? []);
  const [error, setError] = useState<unknown>(null);
  const [dialog, setDialog] = useState<null | 'topup' | 'send'>(null);
  const [notice, setNotice] = useState('');
  const loadHistory = () => api<Page<Entry>>('GET', '/wallet/transactions?limit=50').then((page) => setHistory(page.items)).catch(setError);
  useEffect(() => { void loadWallet().catch(setError); }, []);
  useEffect(() => { void loadHistory(); }, [balances]);
  store.use((s) => s.users);

  const setPin = async () => {
    setError(null); setNotice('');
    const pin = await askPin(t('pin.new'));
    if (!pin) return;
    try {
      await api('POST', '/wallet/pin', { pin });
    } catch (first: any) {
      // Replacing a PIN needs the current one.
      if (first?.code !== 'wrong_pin' && first?.code !== 'pin_required' && first?.code !== 'invalid_field') { setError(first); return; }
      const current = await askPin(t('pin.current'));
      if (!current) return;
      try { await api('POST', '/wallet/pin', { pin, current_pin: current }); } catch (caught) { setError(caught); return; }
    }
    setNotice(t('wallet.pin_set'));
  };

  return (
    <section aria-labelledby="wallet-title">
      <header class="topbar"><h1 id="wallet-title">{t('tab.wallet')}</h1></header>
      <div class="pad">
        {(balances ?? []).map((balance) => (
          <div class="balance-card" data-testid="balance">
            <span>{t('wallet.available')} · {balance.currency}</span>
            <strong data-testid="available">{formatMoney(balance.available, balance.currency)}</strong>
            <span class="small">{t('wallet.held')}: <span data-testid="held">{formatMoney(balance.held, balance.currency)}</span></span>
          </div>
        ))}
        {!balances && !error && <p class="muted">{t('common.loading')}</p>}
        <div class="actions">
          <button class="primary" onClick={() => setDialog('topup')}>{t('wallet.topup')}</button>
          <button onClick={() => setDialog('send')}>{t('wallet.send')}</button>
          <button onClick={setPin}>{t('wallet.set_pin')}</button>
        </div>
        {notice && <p class="notice" role="status">{notice}</p>}
        <ErrorLine error={error} />
      </div>
      <h2 class="section-title">{t('wallet.history')}</h2>
      {history && !history.length && <p class="muted pad">{t('wallet.no_history')}</p>}
      <ul class="list" aria-label={t('wallet.history')}>
        {(history ?? []).map((entry) => (
          <li class="row" data-testid="entry">
            <div class="row-main">
              <strong>{entryTitle(entry, capture(entry))}</strong><br />
              <span class="muted small">{shortTime(entry.created_at)}{entry.note ? ` · ${entry.note}` : ''}</span>
            </div>
            <strong class={entry.direction === 'in' ? 'amount in' : 'amount out'}>
              {entry.direction === 'in' ? '+' : '−'}{formatMoney(entry.amount, entry.currency)}
            </strong>
          </li>
        ))}
      </ul>
      {dialog === 'topup' && <TopupDialog currency={balances?.[0]?.currency ?? 'USD'} onDone={(text) => { setDialog(null); setNotice(text); }} onClose={() => setDialog(null)} />}
      {dialog === 'send' && <SendDialog currency={balances?.[0]?.currency ?? 'USD'} onDone={(text) => { setDialog(null); setNotice(text); }} onClose={() => setDialog(null)} />}
    </section>
  );
}

const ENTRY_KINDS = ['topup', 'withdrawal', 'transfer', 'red_packet', 'red_packet_claim', 'red_packet_refund',
  'payment_hold', 'payment_capture', 'payment_release', 'payment_refund'];

/** An entry's title; a capture coming in is either money received or this user's own hold
 *  returning (`captureIn`, lib/entries.ts). */
function entryTitle(entry: Entry, captured: ReturnType<ReturnType<typeof captureIn>>): string {
  const who = entry.counterparty_user_id ? displayName(entry.counterparty_user_id) : '';
  const kind = captured
    ? t(captured === 'hold_returned' ? 'entry.payment_capture_rest' : 'entry.payment_received')
    : ENTRY_KINDS.includes(entry.kind) ? t(`entry.${entry.kind}` as TextKey) : entry.kind.replace(/_/g, ' ');
  return who ? `${kind} · ${who}` : kind;
}

function TopupDialog({ currency, onDone, onClose }: { currency: string; onDone: (text: string) => void; onClose: () => void }) {
  const { amount, setAmount, error, busy, submit: pay } = usePayment(currency);
  const submit = pay(
    (minor, pin, idempotencyKey) => api('POST', '/wallet/topups', { amount: minor, currency, pin }, { idempotencyKey }),
    async (minor) => {
      await loadWallet();
      onDone(t('wallet.topped_up', { amount: formatMoney(minor, currency) }));
    },
  );
  return (
    <Dialog title={t('wallet.topup_sandbox')} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>{t('transfer.amount')} ({currency})<input name="amount" inputMode="decimal" required value={amount} onInput={(e) => setAmount(e.currentTarget.value)} /></label>
        <ErrorLine error={error} />
        <button class="primary" type="submit" disabled={busy}>{t('wallet.topup')}</button>
      </form>
    </Dialog>
  );
}

function SendDialog({ currency, onDone, onClose }: { currency: string; onDone: (text: string) => void; onClose: () => void }) {
  const contacts = store.use((s) => s.contacts);
  const accepted = (contacts ?? []).filter((c) => c.status === 'accepted');
  const [to, setTo] = useState('');
  const { amount, setAmount, error, setError, busy, submit: pay } = usePayment(currency);
  const [note, setNote] = useState('');
  useEffect(() => { void loadContacts().catch(setError); }, []);
  useEffect(() => { if (!to && accepted.length) setTo(accepted[0].user.id); }, [accepted.length]);
  const submit = pay(
    (minor, pin, idempotencyKey) => api('POST', '/wallet/transfers', { to_user_id: to, amount: minor, currency, note: note.trim() || undefined, pin }, { idempotencyKey }),
    async (minor) => {
      await loadWallet();
      onDone(t('transfer.done', { amount: formatMoney(minor, currency) }));
    },
  );
  return (
    <Dialog title={t('wallet.send')} onClose={onClose}>
      <form class="form" onSubmit={submit}>
        <label>{t('transfer.to')}
          <select name="to" value={to} onChange={(e) => setTo(e.currentTarget.value)} required>
            {accepted.map((c) => <option value={c.user.id}>{c.user.display_name} (@{c.user.username})</option>)}
          </select>
        </label>
        <label>{t('transfer.amount')} ({currency})<input name="amount" inputMode="decimal" required value={amount} onInput={(e) => setAmount(e.currentTarget.value)}
          aria-describedby="send-available" /></label>
        <AvailableLine id="send-available" currency={currency} />
        <label>{t('transfer.note')}<input name="note" maxLength={200} value={note} onInput={(e) => setNote(e.currentTarget.value)} /></label>
        <ErrorLine error={error} currency={currency} />
        <button class="primary" type="submit" disabled={busy || !to}>{t('transfer.send')}</button>
      </form>
    </Dialog>
  );
}
