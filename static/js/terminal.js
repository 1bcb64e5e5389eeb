/*
 * The web terminal of a workshop or a running job (xterm.js over a websocket).
 *
 * Opens data-ws-path (ws:// or wss:// like the page). Keystrokes go out as
 * binary frames, a resize as {"type":"resize","rows","cols"}; output comes
 * back as binary frames.
 *
 * How a close ends (docs/api.md): a refusal (4400-4499: not signed in,
 * forbidden, not found, not running) is final, so it says why and stops,
 * instead of retrying forever; 1000 means the shell ended. Anything else
 * (1006 when the network or the server went away, 4502 when the cluster
 * could not open a shell) reconnects with backoff, to a new shell.
 */
(function () {
  "use strict";
  var el = document.getElementById("terminal");
  if (!el || !window.WebSocket || !window.Terminal) { return; }
  var status = document.getElementById("terminal-status");
  var term = new Terminal({cursorBlink: true, convertEol: false});
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  // Close code -> the status line's data-* message (unknown 44xx: data-refused).
  var REFUSALS = {4401: "signedOut", 4403: "forbidden", 4404: "missing", 4409: "notRunning"};
  var ws = null;
  var retries = 0;

  function say(key) {
    if (!status) { return; }
    status.textContent = key ? (status.dataset[key] || "") : "";
    status.dataset.state = key || "";
  }

  function resize() {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({type: "resize", rows: term.rows, cols: term.cols}));
    }
  }

  function connect() {
    ws = new WebSocket(scheme + location.host + el.dataset.wsPath);
    ws.binaryType = "arraybuffer";
    ws.onopen = function () { say(""); resize(); term.focus(); };
    ws.onmessage = function (ev) {
      retries = 0;  // a shell answered: the next drop starts the backoff anew
      term.write(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
    };
    ws.onclose = function (event) {
      if (event.code >= 4400 && event.code < 4500) {
        say(REFUSALS[event.code] || "refused");
        return;
      }
      if (event.code === 1000) {
        say("closed");
        return;
      }
      // Dropped: back off (1 s, 2 s, 4 s … 30 s) and open a new shell.
      retries += 1;
      say("reconnecting");
      setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, Math.min(retries - 1, 5))));
    };
  }

  term.onData(function (data) {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(new TextEncoder().encode(data)); }
  });
  window.addEventListener("resize", function () { fit.fit(); resize(); });
  connect();
})();
