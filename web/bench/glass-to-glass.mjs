// Glass to glass for `plaza-bench live` (crates/loadgen/src/live/glass.rs): headless
// Chromium plays each given HLS playlist with hls.js, configured as the client's watch
// screen is (web/src/screens/live.tsx), and reads every frame it presents back off the
// screen: the publisher burns each frame's number into 16 black-or-white blocks across
// the top 40 rows. One JSON line per presented frame on stdout:
// {"label", "frame", "shown_ms"} (wall-clock milliseconds of the frame's presentation).
//
// Usage: node web/bench/glass-to-glass.mjs '{"seconds": 15, "players": [{"label": "plaza",
//   "origin": "http://127.0.0.1:8080", "url": "http://…/index.m3u8", "token": "…"}]}'
// Each player's page is served at its playlist's origin (same-origin, no CORS needed).
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const spec = JSON.parse(process.argv[2]);
const hlsJs = readFileSync(fileURLToPath(new URL('../node_modules/hls.js/dist/hls.light.min.js', import.meta.url)));

const page = (url, token) => `<!doctype html><html><body style="margin:0">
<video muted playsinline width="640" height="360"></video>
<script src="/__bench/hls.js"></script>
<script>
const video = document.querySelector('video');
const canvas = document.createElement('canvas');
canvas.width = 640; canvas.height = 40;
const context = canvas.getContext('2d', { willReadFrequently: true });
const token = ${JSON.stringify(token ?? null)};
const hls = new Hls({
  enableWorker: false,
  liveSyncDurationCount: 2, liveMaxLatencyDurationCount: 6, maxLiveSyncPlaybackRate: 1.5,
  xhrSetup: token ? (xhr) => xhr.setRequestHeader('authorization', 'Bearer ' + token) : undefined,
});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
hls.on(Hls.Events.ERROR, (_event, data) => {
  if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  else if (data.fatal) setTimeout(() => hls.loadSource(${JSON.stringify(url)}), 500);
});
hls.loadSource(${JSON.stringify(url)});
hls.attachMedia(video);
const presented = (now, meta) => {
  context.drawImage(video, 0, 0, 640, 40, 0, 0, 640, 40);
  const row = context.getImageData(0, 20, 640, 1).data;
  let frame = 0;
  for (let bit = 0; bit < 16; bit++) if (row[(bit * 40 + 20) * 4] > 128) frame |= 1 << bit;
  window.benchFrame(frame, performance.timeOrigin + meta.expectedDisplayTime);
  video.requestVideoFrameCallback(presented);
};
video.requestVideoFrameCallback(presented);
</script></body></html>`;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--autoplay-policy=no-user-gesture-required', '--no-sandbox'],
});
try {
  const context = await browser.newContext();
  await context.route('**/__bench/hls.js', (route) => route.fulfill({ body: hlsJs, contentType: 'text/javascript' }));
  for (const player of spec.players) {
    const tab = await context.newPage();
    await tab.exposeFunction('benchFrame', (frame, shownMs) => {
      process.stdout.write(`${JSON.stringify({ label: player.label, frame, shown_ms: shownMs })}\n`);
    });
    await tab.route(`${player.origin}/__bench/watch`, (route) =>
      route.fulfill({ body: page(player.url, player.token), contentType: 'text/html' }));
    await tab.goto(`${player.origin}/__bench/watch`);
  }
  await new Promise((resolve) => setTimeout(resolve, spec.seconds * 1000));
} finally {
  await browser.close();
}
