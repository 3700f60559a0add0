// "Go live from this phone" on the host's screen: the camera's preview, the stream's state,
// Stop, and why it stopped. The recording and the socket are `lib/live-ingest.ts`.
import { useEffect, useRef, useState } from 'preact/hooks';
import { t } from '../lib/i18n';
import type { TextKey } from '../lib/i18n';
import { startCamera } from '../lib/live-ingest';
import type { CameraSession, CameraState } from '../lib/live-ingest';

/** The phone's camera into the room, while this screen is open (leaving it stops the stream). */
export function PhoneCamera({ websocketPath, streamKey }: { websocketPath: string; streamKey: string }) {
  const [state, setState] = useState<CameraState>({ phase: 'stopped' });
  const [stream, setStream] = useState<MediaStream | null>(null);
  const session = useRef<CameraSession | null>(null);
  const preview = useRef<HTMLVideoElement>(null);
  useEffect(() => () => session.current?.stop(), []);
  useEffect(() => {
    const video = preview.current;
    if (!video) return;
    video.srcObject = stream;
    if (stream) void video.play().catch(() => {});
  }, [stream]);
  const running = state.phase === 'starting' || state.phase === 'connecting' || state.phase === 'live';
  const start = () => {
    session.current?.stop();
    session.current = startCamera(websocketPath, streamKey, (next) => {
      setState(next);
      if (next.phase === 'stopped' || next.phase === 'failed') setStream(null);
    }, setStream);
  };
  const stop = () => { session.current?.stop(); session.current = null; };
  return (
    <div class="pad host-camera" role="group" aria-label={t('live.camera_title')}>
      <h2>{t('live.camera_title')}</h2>
      {stream && <video ref={preview} class="host-camera-video" muted playsInline aria-label={t('live.camera_preview')} data-testid="camera-preview" />}
      {state.phase !== 'stopped' && state.phase !== 'failed' && (
        <p class="small" role="status" data-testid="camera-status">{t(`live.camera.${state.phase}` as TextKey)}</p>
      )}
      {state.phase === 'failed' && <p class="error" role="alert" data-testid="camera-error">{t(`live.camera_problem.${state.problem}` as TextKey)}</p>}
      {running
        ? <button type="button" class="danger wide" onClick={stop}>{t('live.camera_stop')}</button>
        : <button type="button" class="primary wide" onClick={start}>📱 {t('live.camera_start')}</button>}
      {!running && <p class="small muted">{t('live.camera_hint')}</p>}
    </div>
  );
}
