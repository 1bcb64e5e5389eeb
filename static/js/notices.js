/* The bell's unread count, kept live over /ws/notifications/ (aladdin.accounts.consumers).
 * The server sends {"type": "unread", "count": n} on connect and after every change. */
(function () {
  "use strict";
  var bell = document.querySelector("[data-testid=bell]");
  if (!bell || !window.WebSocket) return;
  var badge = bell.querySelector(".bell-count");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var delay = 1000;

  function show(count) {
    badge.textContent = String(count);
    badge.hidden = count <= 0;
    document.dispatchEvent(new CustomEvent("aladdin:unread", { detail: { count: count } }));
  }

  function connect() {
    var ws = new WebSocket(scheme + location.host + bell.dataset.wsPath);
    ws.onopen = function () { delay = 1000; };
    ws.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data && data.type === "unread" && typeof data.count === "number") show(data.count);
    };
    ws.onclose = function (event) {
      // 44xx: refused (signed out, banned); the same socket would be refused again.
      if (event.code >= 4400 && event.code < 4500) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
