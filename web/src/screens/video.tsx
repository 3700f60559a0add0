// The Video tab (API.md "Video"), loaded on demand: the For You and Following feeds, each
// video playing when it is on screen and reporting how it was watched, likes, comments
// with replies, sharing into a chat, "not interested", a creator's profile with a follow
// button, and uploading by tus.
//
// Paths: /video (For You), /video/following, /video/new (upload), /video/users/:id.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../lib/api';
import type { Page } from '../lib/api';
import { conversationTitle, loadConversations, store } from '../lib/data';
import { t } from '../lib/i18n';
import { formatMoney } from '../lib/money';
import { match, navigate, route } from '../lib/router';
import { AuthImage, Avatar, ConnectionBanner, Dialog, ErrorLine, Segmented } from '../lib/ui';
import {
  formatCount, loadFeed, playUrl, reportView, uploadVideo, videoState,
} from '../lib/video';
import type { FeedItem, Profile, Video, VideoComment } from '../lib/video';

export function VideoScreen() {
  const path = route.use((s) => s.path);
  let params;
  if ((params = match('/video/users/:id', path))) return <ProfileView id={params.id} />;
  if ((params = match('/video/v/:id', path))) return <SingleView id={params.id} />;
  if (path === '/video/new') return <UploadView />;
  const section = path === '/video/following' ? 'following' : 'for-you';
  return (
    <section class="video-tab" aria-labelledby="video-title">
      <header class="topbar rides-top">
        <h1 id="video-title">{t('video.title')}</h1>
        <Segmented label={t('video.feeds')} selected={section}
          onSelect={(key) => navigate(key === 'following' ? '/video/following' : '/video')}
          options={[['for-you', t('video.for_you')], ['following', t('video.following')]]} />
        <button type="button" class="primary small-button" onClick={() => navigate('/video/new')}>＋ {t('video.upload')}</button>
      </header>
      <ConnectionBanner />
      <Feed key={section} kind={section} />
    </section>
  );
}

export default VideoScreen;

// ---- feeds -----------------------------------------------------------------------------

function Feed({ kind }: { kind: 'for-you' | 'following' }) {
  const [items, setItems] = useState<FeedItem[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const sentinel = useRef<HTMLDivElement>(null);

  const more = async (from: string | null, replace = false) => {
    if (loading) return;
    setLoading(true);
    try {
      const page = await loadFeed(kind, from);
      setItems((old) => (replace ? page.items : [...old, ...page.items]));
      setCursor(page.next_cursor);
      setDone(!page.next_cursor || page.items.length === 0);
      setError(null);
    } catch (caught) { setError(caught); } finally { setLoading(false); }
  };
  useEffect(() => { void more(null, true); }, [kind]);
  useEffect(() => {
    const element = sentinel.current;
    if (!element || done) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting) && cursor) void more(cursor);
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, [cursor, done, loading]);

  // Arrow keys (and j/k) move one video down or up, as a swipe does.
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const target = event.target as HTMLElement | null;
      if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
      const step = event.key === 'ArrowDown' || event.key === 'j' ? 1 : event.key === 'ArrowUp' || event.key === 'k' ? -1 : 0;
      if (!step) return;
      const articles = Array.from(document.querySelectorAll<HTMLElement>('.video-feed .video-item'));
      const top = (element: HTMLElement) => element.getBoundingClientRect().top;
      const current = articles.findIndex((article) => top(article) > -40) ;
      const next = articles[Math.max(0, Math.min(articles.length - 1, (current < 0 ? 0 : current) + step))];
      if (next) { event.preventDefault(); next.scrollIntoView({ behavior: 'smooth', block: 'start' }); }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  const reset = async () => {
    if (!confirm(t('video.reset_confirm'))) return;
    await api('POST', '/feed/reset').catch(setError);
    await more(null, true);
  };
  return (
    <div class="video-feed">
      <ErrorLine error={error} />
      {!loading && items.length === 0 && !error && (
        <p class="muted pad" role="status">{kind === 'following' ? t('video.following_empty') : t('video.empty')}</p>
      )}
      <ul class="video-list" aria-label={kind === 'following' ? t('video.following') : t('video.for_you')}>
        {items.map((item) => (
          <li key={item.video.id}>
            <VideoItem video={item.video} reason={item.reason}
              onHidden={() => setItems((old) => old.filter((other) => other !== item))} />
          </li>
        ))}
      </ul>
      <div ref={sentinel} class="sentinel" aria-hidden="true" />
      {loading && <p class="muted pad" aria-busy="true">{t('common.loading')}</p>}
      {kind === 'for-you' && done && items.length > 0 && (
        <p class="pad"><button type="button" class="link" onClick={reset}>{t('video.reset')}</button></p>
      )}
    </div>
  );
}

/**
 * One video: it plays (muted, looping) while most of it is on screen, and when it leaves
 * the screen the feed is told how it was watched: for how long, whether to the end, and
 * how many times it started over.
 */
function VideoItem({ video: initial, reason, onHidden }: { video: Video; reason?: string; onHidden?: () => void }) {
  const me = store.use((s) => s.me!);
  const [video, setVideo] = useState(initial);
  const [comments, setComments] = useState(false);
  const [sharing, setSharing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [following, setFollowing] = useState(video.author.followed_by_me ?? false);
  const [muted, setMuted] = useState(true);
  const [burst, setBurst] = useState(false);
  // A reloaded list (the video became ready) brings a new object for the same video.
  useEffect(() => setVideo(initial), [initial]);
  const element = useRef<HTMLVideoElement>(null);
  const watch = useRef({ watchedMs: 0, last: 0, completed: false, replays: 0, reported: false });

  useEffect(() => {
    const player = element.current;
    if (!player) return;
    const report = () => {
      const state = watch.current;
      if (state.reported) return;
      state.reported = true;
      reportView(video.id, state.watchedMs, state.completed, state.replays);
    };
    const onTime = () => {
      const state = watch.current;
      const now = player.currentTime;
      const duration = player.duration || (video.duration_ms ?? 0) / 1000;
      if (now < state.last - 0.5) {
        // Looped back to the start: a replay, and the end was reached.
        state.replays += 1;
        state.completed = true;
      } else if (now > state.last) {
        state.watchedMs += (now - state.last) * 1000;
      }
      if (duration && now >= duration - 0.3) state.completed = true;
      state.last = now;
    };
    player.addEventListener('timeupdate', onTime);
    const observer = new IntersectionObserver(([entry]) => {
      if (entry.intersectionRatio >= 0.6) {
        watch.current = { watchedMs: 0, last: player.currentTime, completed: false, replays: 0, reported: false };
        player.play().catch(() => { /* autoplay refused: a tap starts it */ });
        // The next video loads while this one plays, so a swipe starts it at once.
        player.closest('li')?.nextElementSibling?.querySelector('video')?.setAttribute('preload', 'auto');
      } else if (!player.paused) {
        player.pause();
        report();
      }
    }, { threshold: [0, 0.6] });
    observer.observe(player);
    return () => { observer.disconnect(); player.removeEventListener('timeupdate', onTime); if (!player.paused) report(); };
  }, [video.id]);

  const like = async (only?: 'like') => {
    const liked = only === 'like' ? true : !video.liked_by_me;
    if (liked === video.liked_by_me) return;
    setVideo({ ...video, liked_by_me: liked, counts: { ...video.counts, likes: video.counts.likes + (liked ? 1 : -1) } });
    try { await api(liked ? 'POST' : 'DELETE', `/videos/${video.id}/like`); } catch (caught) { setError(caught); setVideo(video); }
  };
  const follow = async () => {
    try { await api('POST', `/users/${video.author.id}/follow`); setFollowing(true); } catch (caught) { setError(caught); }
  };
  const notInterested = async () => {
    try { await api('POST', `/videos/${video.id}/not-interested`); onHidden?.(); } catch (caught) { setError(caught); }
  };
  const mine = video.author.id === me.id;
  const portrait = (video.height ?? 0) > (video.width ?? 0);
  return (
    <article class="video-item" aria-label={t('video.item', { name: video.author.display_name })} data-testid="video" data-video-id={video.id}>
      {video.status === 'ready' && video.playback ? (
        <div class="video-stage">
          {/* One tap plays or pauses, a double tap likes, as in every short-video app. */}
          <video ref={element} class={portrait ? 'video-frame portrait' : 'video-frame'} src={playUrl(video.playback.mp4_url)}
            poster={video.poster_url ? playUrl(video.poster_url) : undefined} muted={muted} loop playsInline preload="metadata"
            aria-label={video.caption}
            onClick={(event) => { const player = event.currentTarget; if (player.paused) void player.play().catch(() => {}); else player.pause(); }}
            onDblClick={() => { void like('like'); setBurst(true); window.setTimeout(() => setBurst(false), 700); }} />
          {burst && <span class="like-burst" aria-hidden="true">❤️</span>}
          <button type="button" class="mute-button" aria-pressed={!muted} aria-label={muted ? t('video.unmute') : t('video.mute')}
            onClick={() => setMuted(!muted)}>{muted ? '🔇' : '🔊'}</button>
        </div>
      ) : (
        <div class="video-frame placeholder" role="status">
          {video.status === 'failed' ? t(`video.failed.${video.failure ?? 'transcode_failed'}` as any) : t('video.processing')}
        </div>
      )}
      <div class="video-meta pad">
        <p class="video-author">
          <a href={`/video/users/${video.author.id}`} onClick={(event) => { event.preventDefault(); navigate(`/video/users/${video.author.id}`); }}>
            <strong>{video.author.display_name}</strong> <span class="muted">@{video.author.username}</span>
          </a>
          {!mine && !following && (
            <button type="button" class="small-button" onClick={follow} aria-label={t('video.follow_name', { name: video.author.display_name })}>
              {t('video.follow')}
            </button>
          )}
        </p>
        <p class="video-caption">{video.caption}</p>
        {reason && <p class="small muted" data-testid="reason" title={t('video.why')}>💡 {t('video.why')}: {reason}</p>}
        {video.product && (
          <button type="button" class="video-product" onClick={() => navigate(`/shop/products/${encodeURIComponent(video.product.id)}`)}
            aria-label={t('video.product_open', { title: video.product.title })}>
            🛍️ <strong>{video.product.title}</strong>
            {video.product.price && <span class="shop-price"> {formatMoney(video.product.price.amount, video.product.price.currency)}</span>}
          </button>
        )}
        <div class="video-actions" role="group" aria-label={t('video.actions')}>
          <button type="button" aria-pressed={video.liked_by_me} onClick={() => like()} aria-label={t('video.like_count', { n: video.counts.likes })}>
            {video.liked_by_me ? '❤️' : '🤍'} {formatCount(video.counts.likes)}
          </button>
          <button type="button" aria-expanded={comments} onClick={() => setComments(!comments)} aria-label={t('video.comments_count', { n: video.counts.comments })}>
            💬 {formatCount(video.counts.comments)}
          </button>
          {video.visibility === 'public' && video.status === 'ready' && (
            <button type="button" onClick={() => setSharing(true)} aria-label={t('video.share')}>↗ {formatCount(video.counts.shares)}</button>
          )}
          <span class="small muted">{t('video.views', { n: formatCount(video.counts.views) })}</span>
          {!mine && onHidden && <button type="button" class="link small" onClick={notInterested}>{t('video.not_interested')}</button>}
        </div>
        <ErrorLine error={error} />
      </div>
      {comments && <Comments video={video} onCount={(n) => setVideo((v) => ({ ...v, counts: { ...v.counts, comments: n } }))} />}
      {sharing && <ShareDialog video={video} onClose={() => setSharing(false)}
        onShared={() => setVideo((v) => ({ ...v, counts: { ...v.counts, shares: v.counts.shares + 1 } }))} />}
    </article>
  );
}

function Comments({ video, onCount }: { video: Video; onCount: (n: number) => void }) {
  const me = store.use((s) => s.me!);
  const [items, setItems] = useState<VideoComment[] | null>(null);
  const [text, setText] = useState('');
  const [replyTo, setReplyTo] = useState<VideoComment | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = () => api<Page<VideoComment>>('GET', `/videos/${video.id}/comments?limit=200`)
    .then((page) => { setItems(page.items); onCount(page.items.length); }, setError);
  useEffect(() => { void load(); }, [video.id]);
  const send = async (event: Event) => {
    event.preventDefault();
    try {
      await api('POST', `/videos/${video.id}/comments`, { text, parent_id: replyTo?.id });
      setText(''); setReplyTo(null); setError(null);
      await load();
    } catch (caught) { setError(caught); }
  };
  const remove = async (comment: VideoComment) => {
    try { await api('DELETE', `/videos/${video.id}/comments/${comment.id}`); await load(); } catch (caught) { setError(caught); }
  };
  const top = (items ?? []).filter((comment) => !comment.parent_id);
  const replies = (parent: string) => (items ?? []).filter((comment) => comment.parent_id === parent);
  const line = (comment: VideoComment) => (
    <li key={comment.id} data-testid="comment">
      <strong>{comment.author.display_name}</strong> {comment.text}
      <span class="comment-actions">
        {!comment.parent_id && <button type="button" class="link small" onClick={() => setReplyTo(comment)}>{t('video.reply')}</button>}
        {(comment.author.id === me.id || video.author.id === me.id) && (
          <button type="button" class="link small" onClick={() => remove(comment)}>{t('video.delete_comment')}</button>
        )}
      </span>
    </li>
  );
  return (
    <div class="video-comments pad">
      {items === null ? <p class="muted" aria-busy="true">{t('common.loading')}</p> : (
        <ul class="comment-list" aria-label={t('video.comments')}>
          {top.map((comment) => (
            <>
              {line(comment)}
              {replies(comment.id).length > 0 && <li class="replies"><ul>{replies(comment.id).map(line)}</ul></li>}
            </>
          ))}
          {top.length === 0 && <li class="muted">{t('video.no_comments')}</li>}
        </ul>
      )}
      <form class="comment-form" onSubmit={send}>
        {replyTo && <p class="small muted">{t('video.replying_to', { name: replyTo.author.display_name })}
          {' '}<button type="button" class="link small" onClick={() => setReplyTo(null)}>{t('common.cancel')}</button></p>}
        <input name="comment" aria-label={t('video.add_comment')} placeholder={t('video.add_comment')} maxLength={500} required
          value={text} onInput={(event) => setText(event.currentTarget.value)} />
        <button type="submit" class="primary small-button">{t('video.post')}</button>
      </form>
      <ErrorLine error={error} />
    </div>
  );
}

function ShareDialog({ video, onClose, onShared }: { video: Video; onClose: () => void; onShared: () => void }) {
  const conversations = store.use((s) => Object.values(s.conversations));
  const [error, setError] = useState<unknown>(null);
  useEffect(() => { void loadConversations(); }, []);
  const share = async (conversationId: string) => {
    try {
      await api('POST', `/videos/${video.id}/share`, { conversation_id: conversationId });
      onShared();
      onClose();
    } catch (caught) { setError(caught); }
  };
  return (
    <Dialog title={t('video.share_to')} onClose={onClose}>
      <ul class="list" aria-label={t('video.share_to')}>
        {conversations.map((conversation) => (
          <li key={conversation.id}>
            <button type="button" class="list-button" onClick={() => share(conversation.id)}>{conversationTitle(conversation)}</button>
          </li>
        ))}
      </ul>
      {conversations.length === 0 && <p class="muted">{t('chats.empty')}</p>}
      <ErrorLine error={error} />
    </Dialog>
  );
}

// ---- profiles --------------------------------------------------------------------------

function ProfileView({ id }: { id: string }) {
  const me = store.use((s) => s.me!);
  const version = videoState.use((s) => s.version);
  const [profile, setProfile] = useState<Profile | null>(null);
  const [videos, setVideos] = useState<Video[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = () => {
    api<Profile>('GET', `/users/${encodeURIComponent(id)}`).then(setProfile, setError);
    api<Page<Video>>('GET', `/users/${encodeURIComponent(id)}/videos?limit=50`).then((page) => setVideos(page.items), setError);
  };
  useEffect(load, [id, version]);
  // `video.ready` reloads the list; a video that finished before this screen subscribed
  // would wait for nothing, so a processing one is also looked at again every few seconds.
  const processing = (videos ?? []).some((video) => video.status === 'processing');
  useEffect(() => {
    if (!processing) return;
    const timer = window.setTimeout(load, 3000);
    return () => window.clearTimeout(timer);
  }, [processing, videos]);
  const toggleFollow = async () => {
    if (!profile) return;
    try {
      await api(profile.followed_by_me ? 'DELETE' : 'POST', `/users/${profile.id}/follow`);
      load();
    } catch (caught) { setError(caught); }
  };
  return (
    <section class="video-tab" aria-label={profile?.display_name ?? t('common.loading')}>
      <header class="topbar">
        <button type="button" class="icon-button" aria-label={t('chat.back')} onClick={() => history.back()}>‹</button>
        <h1>{profile?.display_name ?? ''}</h1>
      </header>
      <ErrorLine error={error} />
      {profile && (
        <div class="profile pad">
          {profile.avatar_url
            ? <AuthImage mediaId={profile.avatar_url.split('/').pop()!} alt="" className="avatar-image" />
            : <Avatar name={profile.display_name} size={64} />}
          <div>
            <p class="muted">@{profile.username}</p>
            {profile.bio && <p data-testid="bio">{profile.bio}</p>}
            <p class="small" data-testid="follow-counts">
              {t('video.followers', { n: formatCount(profile.followers_count) })} · {t('video.following_n', { n: formatCount(profile.following_count) })}
            </p>
            {profile.id !== me.id && (
              <button type="button" class={profile.followed_by_me ? '' : 'primary'} onClick={toggleFollow}>
                {profile.followed_by_me ? t('video.unfollow') : t('video.follow')}
              </button>
            )}
          </div>
        </div>
      )}
      {videos && videos.length === 0 && <p class="muted pad">{t('video.no_videos')}</p>}
      <ul class="video-grid" aria-label={t('video.videos')}>
        {(videos ?? []).map((video) => (
          <li key={video.id}>
            <button type="button" class="video-tile" onClick={() => navigate(`/video/v/${video.id}`)}
              aria-label={`${video.caption} · ${video.status === 'ready' ? t('video.views', { n: formatCount(video.counts.views) }) : t(video.status === 'failed' ? 'video.failed_short' : 'video.processing_short')}`}
              data-testid="video-tile" data-status={video.status}>
              {video.status === 'ready' && video.poster_url
                ? <img src={playUrl(video.poster_url)} alt="" loading="lazy" />
                : <span class="tile-state">{video.status === 'failed' ? '⚠️' : '⏳'}</span>}
              <span class="tile-views">▶ {formatCount(video.counts.views)}</span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** One video on its own (from a profile's grid, or a link). */
function SingleView({ id }: { id: string }) {
  const [video, setVideo] = useState<Video | null>(null);
  const [error, setError] = useState<unknown>(null);
  const version = videoState.use((s) => s.version);
  useEffect(() => { api<Video>('GET', `/videos/${encodeURIComponent(id)}`).then(setVideo, setError); }, [id, version]);
  return (
    <section class="video-tab" aria-label={video?.caption ?? t('common.loading')}>
      <header class="topbar">
        <button type="button" class="icon-button" aria-label={t('chat.back')} onClick={() => history.back()}>‹</button>
        <h1>{video?.author.display_name ?? ''}</h1>
      </header>
      <ErrorLine error={error} />
      {video && <VideoItem video={video} />}
    </section>
  );
}

// ---- uploading -------------------------------------------------------------------------

function UploadView() {
  const me = store.use((s) => s.me!);
  const [file, setFile] = useState<File | null>(null);
  const [caption, setCaption] = useState('');
  const [visibility, setVisibility] = useState('public');
  const [progress, setProgress] = useState<number | null>(null);
  const [products, setProducts] = useState<{ id: string; title: string }[]>([]);
  const [productId, setProductId] = useState('');
  // A merchant may link one of their products: viewers buy it from the video.
  useEffect(() => {
    api<{ id: string }>('GET', '/shops/mine')
      .then((mine) => api<Page<{ id: string; title: string }>>('GET', `/products?shop_id=${encodeURIComponent(mine.id)}&limit=200`))
      .then((page) => setProducts(page.items), () => setProducts([]));
  }, []);
  const [error, setError] = useState<unknown>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!file) return;
    setError(null);
    setProgress(0);
    try {
      await uploadVideo(file, caption, visibility, setProgress, productId || undefined);
      navigate(`/video/users/${me.id}`);
    } catch (caught) { setError(caught); setProgress(null); }
  };
  return (
    <section class="video-tab" aria-labelledby="upload-title">
      <header class="topbar">
        <button type="button" class="icon-button" aria-label={t('chat.back')} onClick={() => navigate('/video')}>‹</button>
        <h1 id="upload-title">{t('video.new')}</h1>
      </header>
      <form class="form pad" onSubmit={submit}>
        <label>{t('video.file')}
          <input type="file" name="file" accept="video/*" required onChange={(event) => setFile(event.currentTarget.files?.[0] ?? null)} />
        </label>
        <label>{t('video.caption')}
          <textarea name="caption" required maxLength={2200} rows={3} placeholder={t('video.caption_hint')}
            value={caption} onInput={(event) => setCaption(event.currentTarget.value)} />
        </label>
        <label>{t('video.visibility')}
          <select name="visibility" value={visibility} onChange={(event) => setVisibility(event.currentTarget.value)}>
            <option value="public">{t('video.visibility.public')}</option>
            <option value="followers">{t('video.visibility.followers')}</option>
            <option value="private">{t('video.visibility.private')}</option>
          </select>
        </label>
        {products.length > 0 && (
          <label>{t('video.product')}
            <select name="product" value={productId} onChange={(event) => setProductId(event.currentTarget.value)}>
              <option value="">{t('video.no_product')}</option>
              {products.map((product) => <option value={product.id}>{product.title}</option>)}
            </select>
          </label>
        )}
        {progress !== null && (
          <label>{t('video.uploading', { percent: Math.round(progress * 100) })}
            <progress max={1} value={progress} />
          </label>
        )}
        <button type="submit" class="primary" disabled={!file || progress !== null}>{t('video.publish')}</button>
        <p class="small muted">{t('video.publish_hint')}</p>
        <ErrorLine error={error} />
      </form>
    </section>
  );
}
