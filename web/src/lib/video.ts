// Short video's client state (API.md "Video"): feed items, the viewer's watch reports, and
// uploads by tus. Kept apart from the screen so the chat's video card can use `playUrl`
// without loading the Video tab.
import { api, getToken } from './api';
import type { Page, User } from './api';
import { createStore } from './store';

export interface Profile extends User {
  bio: string; followers_count: number; following_count: number; followed_by_me?: boolean;
}
export interface Video {
  id: string; author: Profile; caption: string; hashtags: string[]; status: 'processing' | 'ready' | 'failed';
  failure: string | null; duration_ms: number | null; width: number | null; height: number | null;
  visibility: 'public' | 'followers' | 'private'; playback: { hls_url: string; mp4_url: string } | null;
  poster_url: string | null; product: any | null;
  counts: { views: number; likes: number; comments: number; shares: number }; liked_by_me: boolean; created_at: string;
}
export interface FeedItem { video: Video; reason: string; reason_code: string }
export interface VideoComment { id: string; video_id: string; author: Profile; parent_id: string | null; text: string; created_at: string }

/** Bumped when a video of the user's changes state (`video.ready`, `video.failed`), so lists reload. */
export const videoState = createStore<{ version: number; lastReady: string | null }>({ version: 0, lastReady: null });

export function applyVideoEvent(type: string, data: any) {
  if (type === 'video.ready' || type === 'video.failed') {
    videoState.set((s) => ({ version: s.version + 1, lastReady: type === 'video.ready' ? data.video_id : s.lastReady }));
  }
}

/** A playback URL a `<video src>` can load: the element cannot send a header, so the token rides in the query. */
export function playUrl(path: string): string {
  const token = getToken();
  return token ? `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : path;
}

export function loadFeed(kind: 'for-you' | 'following', cursor: string | null): Promise<Page<FeedItem>> {
  const query = `limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
  return api<Page<FeedItem>>('GET', `/feed/${kind}?${query}`);
}

/** What one viewing taught the feed: sent when the video leaves the screen or ends. */
export function reportView(videoId: string, watchedMs: number, completed: boolean, replays: number) {
  if (watchedMs < 1 && !completed) return;
  const body = { watched_ms: Math.min(Math.round(watchedMs), 3_600_000), completed, replays: Math.min(replays, 100) };
  api('POST', `/videos/${encodeURIComponent(videoId)}/views`, body).catch(() => { /* a lost signal is only a lost signal */ });
}

/**
 * Uploads a file by tus (tus-js-client resumes a dropped upload from the server's offset)
 * and publishes it; resolves with the video, `processing` until `video.ready`.
 */
export async function uploadVideo(
  file: File,
  caption: string,
  visibility: string,
  onProgress: (fraction: number) => void,
  productId?: string,
): Promise<Video> {
  const { Upload } = await import('tus-js-client');
  const uploadId = await new Promise<string>((resolve, reject) => {
    const upload = new Upload(file, {
      endpoint: '/api/v1/videos/uploads',
      headers: { authorization: `Bearer ${getToken()}` },
      // 8 MiB requests: a dropped one loses at most that, and each is well under any proxy's limit.
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000],
      // A fingerprint per file lets a reload resume instead of starting over.
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => onProgress(total ? sent / total : 0),
      onError: reject,
      onSuccess: () => resolve(upload.url!.split('/').pop()!),
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    }, reject);
  });
  return api<Video>('POST', '/videos', { upload_id: uploadId, caption, visibility, product_id: productId || undefined });
}

export function formatCount(n: number): string {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(1).replace(/\.0$/, '')}M`;
  if (n >= 10_000) return `${Math.round(n / 1000)}K`;
  return String(n);
}
