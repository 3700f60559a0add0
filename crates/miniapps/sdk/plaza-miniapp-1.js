/*
 * Plaza mini-app SDK, protocol version 1.
 *
 * Load it from the Plaza server your app is registered with, in a page Plaza opens:
 *
 *   <script src="https://plaza.example/sdk/plaza-miniapp-1.js"></script>
 *
 * Plain ES2017, no dependencies, no build step. It defines one global, `window.Plaza`.
 * Every function returns a promise; a refusal rejects with an Error that has a stable
 * `code` (and a human `message`):
 *
 *   Plaza.isInPlaza()            true when the page runs inside the Plaza client.
 *
 *   Plaza.login({scope, nonce})  signs the Plaza user in to your app (OAuth 2.0
 *       authorization code with PKCE, like wx.login): resolves {code, code_verifier,
 *       redirect_uri}. Send all three to YOUR SERVER, which exchanges them (with its
 *       client secret) at POST /api/v1/oauth/token. `scope` defaults to "openid profile";
 *       `nonce`, if given, comes back in the id_token. Plaza shows its consent screen when
 *       the user has not granted these scopes yet. Codes: cancelled, access_denied,
 *       invalid_scope, and the other RFC 6749 §4.1.2.1 errors.
 *   Plaza.getProfile()           resolves {name, picture} (picture may be null) when the
 *       user granted your app the `profile` scope; else rejects `insufficient_scope`.
 *   Plaza.requestPayment({order_id})  shows Plaza's pay sheet for a pay order your server
 *       created (POST /api/v1/pay/orders): resolves {status: "paid", order_id}, or rejects
 *       `cancelled` or the problem's code (insufficient_funds, pay_order_expired, ...).
 *       Trust the payment.succeeded webhook or GET /pay/orders/{id}, not this answer.
 *   Plaza.shareToChat({title, path})  lets the user pick a chat and posts a card that
 *       opens your app at `path` (on your app's origin; "/" … at most 512 characters;
 *       `title` 1–80 characters): resolves {conversation_id}, or rejects `cancelled`.
 *   Plaza.close()                closes the app.
 *
 * Other codes: not_in_plaza (the page is not open in Plaza), timeout (no answer in time:
 * 5 minutes for what waits on the user, 30 seconds otherwise), too_many_requests, busy
 * (Plaza is already showing a sheet for another call), invalid_request, unsupported.
 *
 * Protocol (window.postMessage between the app's frame and the Plaza client):
 *   app → Plaza  {plaza: "plaza-miniapp/1", nonce, id, method, params}
 *   Plaza → app  {plaza: "plaza-miniapp/1", nonce, id, ok: true, result}
 *                {plaza: "plaza-miniapp/1", nonce, id, ok: false, error: {code, message}}
 * `nonce` is a secret Plaza puts in the frame URL's fragment (`plaza_nonce=`) for each
 * launch; the SDK takes it out of the address bar and keeps it in sessionStorage, so it
 * survives navigations inside the app. Each answer is matched to its call by `id`.
 */
(function (global) {
  'use strict';

  var PROTOCOL = 'plaza-miniapp/1';
  var NONCE_KEY = 'plaza-miniapp-nonce';
  // What waits on the user (consent, the PIN, picking a chat) may take minutes; the rest
  // is one request to Plaza.
  var USER_TIMEOUT_MS = 5 * 60 * 1000;
  var QUICK_TIMEOUT_MS = 30 * 1000;
  // A page that calls in a loop gets refusals, not an unbounded table of callbacks.
  var PENDING_MAX = 16;
  var TITLE_MAX_CHARS = 80;
  var PATH_MAX_CHARS = 512;

  function PlazaError(code, message) {
    var error = new Error(message || code);
    error.name = 'PlazaError';
    error.code = code;
    return error;
  }

  // The Plaza origin: the one this script was loaded from. Answers from any other origin
  // are ignored, and requests are posted to it only.
  var plazaOrigin = (function () {
    var script = document.currentScript;
    if (!script || !script.src) return null;
    try { return new URL(script.src, location.href).origin; } catch (ignored) { return null; }
  })();

  var launchNonce = (function () {
    var found = /(^#|&)plaza_nonce=([0-9a-f]{32})(?=&|$)/.exec(location.hash);
    if (found) {
      try { sessionStorage.setItem(NONCE_KEY, found[2]); } catch (ignored) { /* an opaque origin has no storage */ }
      // Out of the address bar, so the app does not share or log it by accident.
      var rest = location.hash.replace(found[0], found[1] === '#' ? '#' : '').replace(/^#&/, '#');
      try {
        history.replaceState(history.state, '', location.pathname + location.search + (rest === '#' ? '' : rest));
      } catch (ignored) { /* a sandbox may refuse; the nonce is read already */ }
      return found[2];
    }
    try { return sessionStorage.getItem(NONCE_KEY); } catch (ignored) { return null; }
  })();

  var inPlaza = global.parent !== global && !!launchNonce;
  var pending = {};
  var pendingCount = 0;
  var counter = 0;

  function newCallId() {
    counter += 1;
    return 'c' + counter + '-' + randomHex(6);
  }

  function randomHex(bytes) {
    var array = new Uint8Array(bytes);
    global.crypto.getRandomValues(array);
    return Array.prototype.map.call(array, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function base64url(bytes) {
    var binary = '';
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  global.addEventListener('message', function (event) {
    if (event.source !== global.parent) return;
    if (plazaOrigin && event.origin !== plazaOrigin) return;
    var data = event.data;
    if (!data || typeof data !== 'object' || data.plaza !== PROTOCOL || data.nonce !== launchNonce) return;
    if (typeof data.id !== 'string' || !Object.prototype.hasOwnProperty.call(pending, data.id)) return;
    var call = pending[data.id];
    settle(data.id);
    if (data.ok === true) call.resolve(data.result);
    else {
      var error = data.error && typeof data.error === 'object' ? data.error : {};
      call.reject(PlazaError(typeof error.code === 'string' ? error.code : 'unknown', typeof error.message === 'string' ? error.message : ''));
    }
  });

  function settle(id) {
    clearTimeout(pending[id].timer);
    delete pending[id];
    pendingCount -= 1;
  }

  function call(method, params, timeoutMs) {
    return new Promise(function (resolve, reject) {
      if (!inPlaza) return reject(PlazaError('not_in_plaza', 'this page is not open in Plaza'));
      if (pendingCount >= PENDING_MAX) return reject(PlazaError('too_many_requests', 'too many calls waiting for Plaza'));
      var id = newCallId();
      var timer = setTimeout(function () {
        settle(id);
        reject(PlazaError('timeout', 'Plaza did not answer ' + method + ' in time'));
      }, timeoutMs);
      pending[id] = { resolve: resolve, reject: reject, timer: timer };
      pendingCount += 1;
      global.parent.postMessage({ plaza: PROTOCOL, nonce: launchNonce, id: id, method: method, params: params }, plazaOrigin || '*');
    });
  }

  function stringOption(options, name, maxChars) {
    var value = options[name];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' || value.length > maxChars) throw PlazaError('invalid_request', name + ': a string of at most ' + maxChars + ' characters');
    return value;
  }

  var Plaza = {
    version: 1,

    isInPlaza: function () { return inPlaza; },

    login: async function (options) {
      options = options || {};
      var scope = stringOption(options, 'scope', 200) || 'openid profile';
      var nonce = stringOption(options, 'nonce', 200);
      if (!global.crypto || !global.crypto.subtle) {
        throw PlazaError('unsupported', 'PKCE needs crypto.subtle (an https:// or loopback page)');
      }
      // The verifier never leaves this frame except to the app's own server; Plaza sees
      // only its SHA-256, so whoever reads the code cannot redeem it.
      var verifierBytes = new Uint8Array(32);
      global.crypto.getRandomValues(verifierBytes);
      var codeVerifier = base64url(verifierBytes);
      var digest = await global.crypto.subtle.digest('SHA-256', new TextEncoder().encode(codeVerifier));
      var state = randomHex(16);
      var params = { scope: scope, state: state, code_challenge: base64url(new Uint8Array(digest)) };
      if (nonce !== undefined) params.nonce = nonce;
      var answer = await call('login', params, USER_TIMEOUT_MS);
      if (!answer || answer.state !== state || typeof answer.code !== 'string') {
        throw PlazaError('invalid_response', 'the sign-in answer does not match the request');
      }
      return { code: answer.code, code_verifier: codeVerifier, redirect_uri: answer.redirect_uri };
    },

    getProfile: function () { return call('getProfile', {}, QUICK_TIMEOUT_MS); },

    requestPayment: function (options) {
      var orderId = options && options.order_id;
      if (typeof orderId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(orderId)) {
        return Promise.reject(PlazaError('invalid_request', 'order_id: the id of a pay order'));
      }
      return call('requestPayment', { order_id: orderId }, USER_TIMEOUT_MS);
    },

    shareToChat: function (options) {
      options = options || {};
      var title = typeof options.title === 'string' ? options.title.trim() : '';
      var path = typeof options.path === 'string' ? options.path : '';
      if (!title || Array.from(title).length > TITLE_MAX_CHARS) {
        return Promise.reject(PlazaError('invalid_request', 'title: 1 to ' + TITLE_MAX_CHARS + ' characters'));
      }
      if (path.charAt(0) !== '/' || path.charAt(1) === '/' || Array.from(path).length > PATH_MAX_CHARS || /[\s\u0000-\u001f\u007f\\]/.test(path)) {
        return Promise.reject(PlazaError('invalid_request', 'path: a path on your origin, "/" … at most ' + PATH_MAX_CHARS + ' characters'));
      }
      return call('shareToChat', { title: title, path: path }, USER_TIMEOUT_MS);
    },

    close: function () {
      if (!inPlaza) return Promise.reject(PlazaError('not_in_plaza', 'this page is not open in Plaza'));
      // Plaza removes the frame at once, so no answer would arrive.
      global.parent.postMessage({ plaza: PROTOCOL, nonce: launchNonce, id: newCallId(), method: 'close', params: {} }, plazaOrigin || '*');
      return Promise.resolve();
    },
  };

  global.Plaza = Plaza;
})(window);
