// "Go live from this phone": the camera and microphone recorded by MediaRecorder and sent
// over the room's ingest WebSocket (`ingest.websocket_url`, crates/live/src/ingest.rs).
//
// The protocol: the stream key is the first text message and the server answers
// `{"type":"accepted"}` before any media is read (a close with 4401 is a wrong key, 4409 a
// room already streaming, 4400 no key); then each one-second WebM chunk is one binary
// message, in order, since the chunks decode only joined. The socket's own buffer is the
// send queue, bounded: past `SEND_BUFFER_MAX_BYTES` the connection cannot keep up with the
// camera and the stream stops, rather than falling ever further behind the live edge.

/** Unsent bytes the socket may hold before the stream is called too slow (about ten seconds
 *  of a phone camera's chunks). */
const SEND_BUFFER_MAX_BYTES = 4 * 1024 * 1024;
/** How long the server has to accept the key. */
const ACCEPT_TIMEOUT_MS = 15_000;
/** MediaRecorder's timeslice: one chunk a second. */
const CHUNK_MS = 1000;
/** What the server transcodes: WebM, VP8 and Opus first, as Debian's Chromium records. */
const MIME_TYPES = ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm;codecs=h264,opus', 'video/webm'];

export type CameraProblem =
  | 'unsupported' | 'camera_denied' | 'no_camera' | 'key_refused' | 'busy' | 'no_key' | 'too_slow' | 'connection_lost';
export type CameraState =
  | { phase: 'starting' } | { phase: 'connecting' } | { phase: 'live' } | { phase: 'stopped' }
  | { phase: 'failed'; problem: CameraProblem };

export interface CameraSession {
  /** The camera's picture, for the preview (null until the camera is open). */
  stream: MediaStream | null;
  stop(): void;
}

/** `ws(s)://<this page's origin><path>`. */
function socketUrl(path: string): string {
  if (/^wss?:\/\//.test(path)) return path;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}${path}`;
}

function pickMimeType(): string | undefined {
  return MIME_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
}

const CLOSE_PROBLEMS: Record<number, CameraProblem> = { 4401: 'key_refused', 4409: 'busy', 4400: 'no_key' };

/**
 * Opens the camera, then the ingest socket with the key, and once the server accepts it
 * records and sends. `onState` hears each step and the one problem that ended it.
 */
export function startCamera(websocketPath: string, streamKey: string, onState: (state: CameraState) => void,
  onStream: (stream: MediaStream) => void): CameraSession {
  let stopped = false;
  let socket: WebSocket | null = null;
  let recorder: MediaRecorder | null = null;
  let acceptTimer = 0;
  const session: CameraSession = { stream: null, stop: () => finish({ phase: 'stopped' }) };

  function finish(state: CameraState) {
    if (stopped) return;
    stopped = true;
    window.clearTimeout(acceptTimer);
    if (recorder && recorder.state !== 'inactive') { recorder.ondataavailable = null; recorder.stop(); }
    session.stream?.getTracks().forEach((track) => track.stop());
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
    onState(state);
  }

  if (typeof MediaRecorder === 'undefined' || !navigator.mediaDevices?.getUserMedia || !pickMimeType()) {
    onState({ phase: 'failed', problem: 'unsupported' });
    stopped = true;
    return session;
  }
  onState({ phase: 'starting' });
  navigator.mediaDevices.getUserMedia({ video: true, audio: true }).then((stream) => {
    if (stopped) { stream.getTracks().forEach((track) => track.stop()); return; }
    session.stream = stream;
    onStream(stream);
    connect(stream);
  }, (error: DOMException) => {
    finish({ phase: 'failed', problem: error?.name === 'NotFoundError' || error?.name === 'OverconstrainedError' ? 'no_camera' : 'camera_denied' });
  });

  function connect(stream: MediaStream) {
    onState({ phase: 'connecting' });
    const ws = new WebSocket(socketUrl(websocketPath));
    socket = ws;
    ws.binaryType = 'arraybuffer';
    acceptTimer = window.setTimeout(() => finish({ phase: 'failed', problem: 'connection_lost' }), ACCEPT_TIMEOUT_MS);
    ws.onopen = () => ws.send(JSON.stringify({ stream_key: streamKey }));
    ws.onmessage = (event) => {
      if (typeof event.data !== 'string' || recorder) return;
      let message: { type?: string } = {};
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type !== 'accepted') return;
      window.clearTimeout(acceptTimer);
      record(stream, ws);
    };
    ws.onclose = (event) => {
      if (stopped) return;
      finish({ phase: 'failed', problem: CLOSE_PROBLEMS[event.code] ?? 'connection_lost' });
    };
  }

  function record(stream: MediaStream, ws: WebSocket) {
    const started = new MediaRecorder(stream, { mimeType: pickMimeType() });
    recorder = started;
    started.ondataavailable = (event) => {
      if (stopped || !event.data.size) return;
      if (ws.bufferedAmount > SEND_BUFFER_MAX_BYTES) { finish({ phase: 'failed', problem: 'too_slow' }); return; }
      // A Blob is sent whole and in order after the ones before it.
      ws.send(event.data);
    };
    started.onerror = () => finish({ phase: 'failed', problem: 'connection_lost' });
    started.start(CHUNK_MS);
    onState({ phase: 'live' });
  }

  return session;
}
