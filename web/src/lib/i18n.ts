// English and Simplified Chinese. Errors are translated from the API problem's stable
// `code` (`error.<code>`), never from its human `detail`.
import { createStore } from './store';
import { ApiError } from './api';

const en = {
  'app.name': 'Plaza',
  'tab.chats': 'Chats', 'tab.contacts': 'Contacts', 'tab.wallet': 'Wallet', 'tab.rides': 'Rides', 'tab.me': 'Me',
  'auth.signin': 'Sign in', 'auth.signup': 'Create account', 'auth.username': 'Username', 'auth.password': 'Password',
  'auth.display_name': 'Display name', 'auth.to_signup': 'New here? Create an account',
  'auth.to_signin': 'Have an account? Sign in', 'auth.tagline': 'Chat, pay and ride, in one app.',
  'auth.password_hint': 'At least 8 characters', 'auth.username_hint': '3–32 letters a–z, digits or _',
  'me.username': 'Username', 'me.joined': 'Joined', 'me.language': 'Language', 'me.theme': 'Theme',
  'me.theme.system': 'System', 'me.theme.light': 'Light', 'me.theme.dark': 'Dark', 'me.logout': 'Log out',
  'chats.empty': 'No chats yet. Add a contact and say hello.', 'chats.new_group': 'New group',
  'chats.unread': '{n} unread', 'chats.no_messages': 'No messages yet',
  'group.title': 'Group name', 'group.members': 'Members', 'group.create': 'Create group',
  'group.pick': 'Pick at least one contact', 'group.no_contacts': 'Add contacts first, then make a group with them.',
  'chat.back': 'Back', 'chat.input': 'Message', 'chat.send': 'Send', 'chat.attach_image': 'Send a photo',
  'chat.more': 'More', 'chat.send_money': 'Send money', 'chat.red_packet': 'Red packet',
  'chat.typing': '{name} is typing…', 'chat.offline': 'Offline — messages will be sent when you reconnect',
  'chat.connecting': 'Connecting…', 'chat.sending': 'Sending', 'chat.sent': 'Sent', 'chat.read': 'Read',
  'chat.read_by': 'Read by {n}', 'chat.failed': 'Not sent — tap to retry', 'chat.load_older': 'Loading earlier messages…',
  'chat.image': 'Photo', 'chat.members': '{n} members', 'chat.empty': 'Say hello 👋',
  'msg.transfer': 'Transfer', 'msg.transfer_to': '{amount} to {name}', 'msg.red_packet': 'Red packet',
  'msg.open': 'Open', 'msg.card': 'Card', 'msg.system.group_created': '{actor} created the group',
  'msg.system.members_added': '{actor} added {names}', 'msg.system.member_left': '{names} left',
  'msg.system.member_removed': '{actor} removed {names}', 'msg.unsupported': 'A message this app cannot show yet',
  'rp.greeting_default': 'Best wishes!', 'rp.total': 'Total amount', 'rp.count': 'Number of packets',
  'rp.mode': 'Split', 'rp.lucky': 'Lucky (random amounts)', 'rp.equal': 'Equal', 'rp.greeting': 'Greeting',
  'rp.send': 'Put money in', 'rp.from': 'From {name}', 'rp.claimed': '{claimed} of {count} opened',
  'rp.you_got': 'You got {amount}', 'rp.who_got': 'Who got how much', 'rp.none_left': 'All packets have been opened',
  'rp.open': 'Open', 'transfer.to': 'To', 'transfer.amount': 'Amount', 'transfer.note': 'Note (optional)',
  'transfer.send': 'Send', 'transfer.done': 'Sent {amount}',
  'contacts.search': 'Search people', 'contacts.search_hint': 'Username or name',
  'contacts.add': 'Add', 'contacts.accept': 'Accept', 'contacts.requested': 'Requested',
  'contacts.incoming': 'Requests', 'contacts.outgoing': 'Waiting for them', 'contacts.mine': 'Contacts',
  'contacts.none': 'No contacts yet. Search for someone above.', 'contacts.message': 'Message',
  'contacts.no_results': 'Nobody found', 'contacts.is_contact': 'Contact',
  'wallet.balance': 'Balance', 'wallet.available': 'Available', 'wallet.held': 'Held',
  'wallet.topup': 'Top up', 'wallet.topup_sandbox': 'Top up (sandbox)', 'wallet.send': 'Send',
  'wallet.history': 'History', 'wallet.no_history': 'No transactions yet', 'wallet.pin': 'Payment PIN',
  'wallet.set_pin': 'Set PIN', 'wallet.change_pin': 'Change PIN', 'wallet.pin_set': 'PIN saved',
  'wallet.topped_up': 'Added {amount}', 'wallet.in': 'In', 'wallet.out': 'Out',
  'pin.title': 'Enter your payment PIN', 'pin.new': 'Choose a 6-digit PIN', 'pin.current': 'Current PIN',
  'pin.delete': 'Delete digit', 'pin.cancel': 'Cancel', 'pin.digit': 'Digit {d}',
  'rides.title': 'Rides', 'rides.soon': 'Ride-hailing is on its way.',
  'rides.soon_detail': 'Requesting a car, watching it come and paying from your wallet arrive here once the rides service is ready on this server.',
  'common.cancel': 'Cancel', 'common.close': 'Close', 'common.save': 'Save', 'common.retry': 'Retry',
  'common.loading': 'Loading…', 'common.you': 'You', 'common.online': 'Online', 'common.offline': 'Offline',
  'error.network': 'Cannot reach the server. Check your connection.',
  'error.unknown': 'Something went wrong. Please try again.',
  'error.invalid_credentials': 'Wrong username or password.', 'error.username_taken': 'That username is taken.',
  'error.invalid_field': 'Please check {field}.', 'error.unauthenticated': 'Please sign in again.',
  'error.rate_limited': 'Too many attempts. Wait a minute and try again.',
  'error.insufficient_funds': 'Not enough money in your wallet.', 'error.wrong_pin': 'Wrong PIN.',
  'error.pin_locked': 'Payments are locked after too many wrong PINs. Try again in 15 minutes.',
  'error.pin_required': 'This payment needs your PIN.', 'error.already_claimed': 'You already opened this red packet.',
  'error.red_packet_empty': 'Too late — every packet has been opened.', 'error.red_packet_expired': 'This red packet has expired.',
  'error.red_packet_not_found': 'This red packet does not exist.', 'error.cannot_contact_self': 'That is you.',
  'error.user_not_found': 'No such user.', 'error.contact_not_found': 'No such contact request.',
  'error.conversation_not_found': 'This chat no longer exists.', 'error.not_a_member': 'You are not in this chat.',
  'error.group_full': 'The group is full.', 'error.payload_too_large': 'That file is too large.',
  'error.unsupported_media_type': 'That kind of file cannot be sent.', 'error.media_not_found': 'The photo is gone.',
  'error.topup_limit_exceeded': 'That is more than today’s top-up limit.', 'error.forbidden': 'You may not do that.',
  'error.not_found': 'Not found.', 'error.timeout': 'The server took too long. Try again.',
  'error.unavailable': 'The server is busy. Try again shortly.', 'error.internal': 'The server had a problem. Try again.',
  'error.idempotency_key_reused': 'That request changed while being retried. Please start again.',
  'error.idempotency_key_in_progress': 'Still working on your last request…',
  'error.funding_provider_failed': 'The payment provider did not answer. Try again.',
  'error.amount': 'Enter an amount', 'error.pin_format': 'The PIN is 6 digits',
  'entry.topup': 'Top-up', 'entry.withdrawal': 'Withdrawal', 'entry.transfer': 'Transfer',
  'entry.red_packet': 'Red packet sent', 'entry.red_packet_claim': 'Red packet received',
  'entry.red_packet_refund': 'Red packet refund', 'entry.payment_hold': 'Payment (held)',
  'entry.payment_capture': 'Payment', 'entry.payment_release': 'Payment released', 'entry.payment_refund': 'Refund',
};

type Key = keyof typeof en;

const zh: Record<Key, string> = {
  'app.name': 'Plaza',
  'tab.chats': '聊天', 'tab.contacts': '通讯录', 'tab.wallet': '钱包', 'tab.rides': '出行', 'tab.me': '我',
  'auth.signin': '登录', 'auth.signup': '注册', 'auth.username': '用户名', 'auth.password': '密码',
  'auth.display_name': '昵称', 'auth.to_signup': '新用户？创建账号', 'auth.to_signin': '已有账号？登录',
  'auth.tagline': '聊天、支付、出行，一个应用全搞定。', 'auth.password_hint': '至少 8 个字符',
  'auth.username_hint': '3–32 位小写字母、数字或 _',
  'me.username': '用户名', 'me.joined': '注册于', 'me.language': '语言', 'me.theme': '主题',
  'me.theme.system': '跟随系统', 'me.theme.light': '浅色', 'me.theme.dark': '深色', 'me.logout': '退出登录',
  'chats.empty': '还没有聊天。添加联系人，打个招呼吧。', 'chats.new_group': '发起群聊',
  'chats.unread': '{n} 条未读', 'chats.no_messages': '暂无消息',
  'group.title': '群名称', 'group.members': '成员', 'group.create': '创建群聊', 'group.pick': '请至少选择一位联系人',
  'group.no_contacts': '先添加联系人，再和他们建群。',
  'chat.back': '返回', 'chat.input': '消息', 'chat.send': '发送', 'chat.attach_image': '发送图片', 'chat.more': '更多',
  'chat.send_money': '转账', 'chat.red_packet': '红包', 'chat.typing': '{name} 正在输入…',
  'chat.offline': '已离线——重新连接后会发送消息', 'chat.connecting': '连接中…', 'chat.sending': '发送中',
  'chat.sent': '已发送', 'chat.read': '已读', 'chat.read_by': '{n} 人已读', 'chat.failed': '发送失败——点击重试',
  'chat.load_older': '正在加载更早的消息…', 'chat.image': '图片', 'chat.members': '{n} 位成员', 'chat.empty': '打个招呼吧 👋',
  'msg.transfer': '转账', 'msg.transfer_to': '向 {name} 转账 {amount}', 'msg.red_packet': '红包', 'msg.open': '打开',
  'msg.card': '卡片', 'msg.system.group_created': '{actor} 创建了群聊', 'msg.system.members_added': '{actor} 邀请了 {names}',
  'msg.system.member_left': '{names} 退出了群聊', 'msg.system.member_removed': '{actor} 移除了 {names}',
  'msg.unsupported': '当前版本无法显示此消息',
  'rp.greeting_default': '恭喜发财，大吉大利！', 'rp.total': '总金额', 'rp.count': '红包个数', 'rp.mode': '分配方式',
  'rp.lucky': '拼手气（随机金额）', 'rp.equal': '普通（金额相同）', 'rp.greeting': '祝福语', 'rp.send': '塞钱进红包',
  'rp.from': '{name} 的红包', 'rp.claimed': '已领取 {claimed}/{count} 个', 'rp.you_got': '你领到了 {amount}',
  'rp.who_got': '领取详情', 'rp.none_left': '红包已被领完', 'rp.open': '開',
  'transfer.to': '收款人', 'transfer.amount': '金额', 'transfer.note': '备注（选填）', 'transfer.send': '转账',
  'transfer.done': '已转账 {amount}',
  'contacts.search': '搜索用户', 'contacts.search_hint': '用户名或昵称', 'contacts.add': '添加', 'contacts.accept': '接受',
  'contacts.requested': '已申请', 'contacts.incoming': '新的朋友', 'contacts.outgoing': '等待对方验证',
  'contacts.mine': '联系人', 'contacts.none': '还没有联系人。在上方搜索吧。', 'contacts.message': '发消息',
  'contacts.no_results': '没有找到用户', 'contacts.is_contact': '联系人',
  'wallet.balance': '余额', 'wallet.available': '可用', 'wallet.held': '冻结', 'wallet.topup': '充值',
  'wallet.topup_sandbox': '充值（沙盒）', 'wallet.send': '转账', 'wallet.history': '账单', 'wallet.no_history': '暂无交易',
  'wallet.pin': '支付密码', 'wallet.set_pin': '设置支付密码', 'wallet.change_pin': '修改支付密码',
  'wallet.pin_set': '支付密码已保存', 'wallet.topped_up': '已充值 {amount}', 'wallet.in': '收入', 'wallet.out': '支出',
  'pin.title': '请输入支付密码', 'pin.new': '设置 6 位支付密码', 'pin.current': '当前支付密码', 'pin.delete': '删除',
  'pin.cancel': '取消', 'pin.digit': '数字 {d}',
  'rides.title': '出行', 'rides.soon': '打车功能即将上线。',
  'rides.soon_detail': '此服务器的出行服务就绪后，你可以在这里叫车、查看司机位置并用钱包付款。',
  'common.cancel': '取消', 'common.close': '关闭', 'common.save': '保存', 'common.retry': '重试', 'common.loading': '加载中…',
  'common.you': '你', 'common.online': '在线', 'common.offline': '离线',
  'error.network': '无法连接服务器，请检查网络。', 'error.unknown': '出错了，请重试。',
  'error.invalid_credentials': '用户名或密码错误。', 'error.username_taken': '该用户名已被占用。',
  'error.invalid_field': '请检查{field}。', 'error.unauthenticated': '请重新登录。',
  'error.rate_limited': '尝试次数过多，请稍后再试。', 'error.insufficient_funds': '钱包余额不足。',
  'error.wrong_pin': '支付密码错误。', 'error.pin_locked': '支付密码错误次数过多，请 15 分钟后再试。',
  'error.pin_required': '此笔付款需要支付密码。', 'error.already_claimed': '你已经领过这个红包了。',
  'error.red_packet_empty': '来晚了，红包已被领完。', 'error.red_packet_expired': '红包已过期。',
  'error.red_packet_not_found': '红包不存在。', 'error.cannot_contact_self': '不能添加自己。',
  'error.user_not_found': '用户不存在。', 'error.contact_not_found': '好友申请不存在。',
  'error.conversation_not_found': '该聊天已不存在。', 'error.not_a_member': '你不在此聊天中。',
  'error.group_full': '群成员已满。', 'error.payload_too_large': '文件太大。', 'error.unsupported_media_type': '不支持该文件类型。',
  'error.media_not_found': '图片已不存在。', 'error.topup_limit_exceeded': '超过今日充值限额。',
  'error.forbidden': '你无权执行此操作。', 'error.not_found': '未找到。', 'error.timeout': '服务器响应超时，请重试。',
  'error.unavailable': '服务器繁忙，请稍后再试。', 'error.internal': '服务器出错了，请重试。',
  'error.idempotency_key_reused': '重试时请求发生了变化，请重新开始。', 'error.idempotency_key_in_progress': '上一个请求仍在处理中…',
  'error.funding_provider_failed': '支付渠道无响应，请重试。', 'error.amount': '请输入金额', 'error.pin_format': '支付密码为 6 位数字',
  'entry.topup': '充值', 'entry.withdrawal': '提现', 'entry.transfer': '转账', 'entry.red_packet': '发出红包',
  'entry.red_packet_claim': '收到红包', 'entry.red_packet_refund': '红包退款', 'entry.payment_hold': '付款（冻结）',
  'entry.payment_capture': '付款', 'entry.payment_release': '解冻', 'entry.payment_refund': '退款',
};

export type Lang = 'en' | 'zh-CN';
const dictionaries: Record<Lang, Record<Key, string>> = { en, 'zh-CN': zh };

function initialLang(): Lang {
  const saved = localStorage.getItem('plaza.lang');
  if (saved === 'en' || saved === 'zh-CN') return saved;
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

export const lang = createStore({ lang: initialLang() });
document.documentElement.lang = lang.get().lang;

export function setLang(value: Lang) {
  localStorage.setItem('plaza.lang', value);
  document.documentElement.lang = value;
  lang.set({ lang: value });
}

export function t(key: Key, params: Record<string, string | number> = {}): string {
  const text = dictionaries[lang.get().lang][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

const FIELD_NAMES: Record<string, Key> = {
  username: 'auth.username', password: 'auth.password', display_name: 'auth.display_name',
  amount: 'transfer.amount', 'total.amount': 'rp.total', count: 'rp.count', greeting: 'rp.greeting',
  note: 'transfer.note', title: 'group.title', pin: 'wallet.pin',
};

/** The user-facing sentence for any error, from the problem's `code`. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    const key = `error.${error.code}` as Key;
    if (key in en) {
      const field = error.field ? t(FIELD_NAMES[error.field] ?? ('error.unknown' as Key)) : '';
      return t(key, { field: FIELD_NAMES[error.field ?? ''] ? field : error.field ?? '' });
    }
  }
  return t('error.unknown');
}

export function useLang() { return lang.use((state) => state.lang); }
export type { Key as TextKey };
