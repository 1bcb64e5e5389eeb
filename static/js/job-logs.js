/*
 * Live output of a GPU job (SPEC §7 "View Log") on the job's detail page.
 *
 * Opens /ws/jobs/<id>/logs/ (ws:// or wss:// like the page), appends each
 * {"type":"log","data":…,"offset":N} frame to the <pre>, and remembers the
 * offset, so that after a dropped connection it reconnects with ?offset=N
 * and nothing is shown twice. On {"type":"end"} it stops, and reloads the
 * status card (state, exit code, billing) from data-status-url; the card is
 * also refreshed every data-poll-seconds while the job is active.
 *
 * A refusal (close codes 4400-4499, docs/api.md: bad request, not signed
 * in, forbidden, not found, not running) is final: retrying cannot change
 * it, so it says why and stops. Any other close (1006 when the network or
 * the server went away, 4502 when the cluster's stream broke) reconnects
 * with backoff.
 */
(function () {
  "use strict";
  var pre = document.getElementById("job-logs");
  if (!pre || !window.WebSocket) { return; }
  var note = document.getElementById("job-logs-note");
  var slot = document.getElementById(pre.dataset.statusSlot);
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var offset = 0;
  var ended = false;
  var retries = 0;
  var pollMs = (parseInt(pre.dataset.pollSeconds, 10) || 0) * 1000;
  var pollTimer = null;
  // Close code -> the note's data-* message (unknown 44xx: data-refused).
  var REFUSALS = {4401: "signedOut", 4403: "forbidden", 4404: "missing", 4409: "notRunning"};

  function say(key) {
    if (!note) { return; }
    note.textContent = key ? (note.dataset[key] || "") : "";
    note.dataset.state = key || "";
  }

  function stopPolling() {
    if (pollTimer !== null) {
      clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  function append(text) {
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(text));
    if (atBottom) { pre.scrollTop = pre.scrollHeight; }
  }

  function jobActive() {
    var card = slot && slot.querySelector("[data-active]");
    return !card || card.dataset.active === "1";
  }

  function refreshStatus() {
    if (!slot || !pre.dataset.statusUrl) { return; }
    fetch(pre.dataset.statusUrl, {
      credentials: "same-origin",
      headers: {"X-Requested-With": "XMLHttpRequest"},
    }).then(function (response) {
      // A redirect is the login page (session expired): keep the card.
      return response.ok && !response.redirected ? response.text() : null;
    }).then(function (html) {
      if (html !== null) { slot.innerHTML = html; }
      if (!jobActive()) { stopPolling(); }
    }).catch(function () { /* the next poll tries again */ });
  }

  function connect() {
    var ws = new WebSocket(scheme + location.host + pre.dataset.wsPath + "?offset=" + offset);
    ws.onopen = function () { retries = 0; say(""); };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (typeof frame.offset === "number") { offset = frame.offset; }
      if (frame.type === "log" && typeof frame.data === "string") {
        append(frame.data);
      } else if (frame.type === "end") {
        ended = true;
        say("ended");
        refreshStatus();
      }
    };
    ws.onclose = function (event) {
      if (ended) { return; }
      if (event.code >= 4400 && event.code < 4500) {
        say(REFUSALS[event.code] || "refused");
        stopPolling();
        // Nothing came before the refusal: no empty black box under the note.
        if (!pre.textContent) { pre.hidden = true; }
        return;
      }
      // Dropped: back off (1 s, 2 s, 4 s … 30 s) and resume from the offset.
      retries += 1;
      say("reconnecting");
      setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, Math.min(retries - 1, 5))));
    };
  }

  if (pollMs > 0 && jobActive()) {
    pollTimer = setInterval(refreshStatus, pollMs);
  }
  connect();
})();
