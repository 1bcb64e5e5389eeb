/* Live pages (aladdin/live.py): what the page shows of jobs, workshops and the
 * balance is kept current without reloading it.
 *
 * Markup: an element with data-live-job="ID" (or data-live-workshop="ID")
 * holds children with data-live-field="state_label" (or reason, billed,
 * started, ended …): their text is replaced when the server says it changed;
 * the element's data-state follows the state. An element with
 * data-live-partial="URL" is re-fetched (and swapped in) when its state
 * changes, for cards whose buttons depend on the state. data-live-balance
 * holds fields "active" and "debt". The server only answers for the user's
 * own rows. Pages without such elements open no socket.
 */
(function () {
  "use strict";

  function ids(attr) {
    var found = [];
    document.querySelectorAll("[" + attr + "]").forEach(function (el) {
      var id = parseInt(el.getAttribute(attr), 10);
      if (!isNaN(id) && found.indexOf(id) < 0) { found.push(id); }
    });
    return found;
  }

  var watch = {
    jobs: ids("data-live-job"),
    workshops: ids("data-live-workshop"),
    balance: document.querySelector("[data-live-balance]") !== null,
  };
  if (!watch.jobs.length && !watch.workshops.length && !watch.balance) { return; }

  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var retries = 0;

  function setFields(root, fields) {
    Object.keys(fields).forEach(function (name) {
      root.querySelectorAll('[data-live-field="' + name + '"]').forEach(function (el) {
        var value = fields[name];
        // Amounts and times come as the page's own filters render them
        // (aladdin/live.py: escaped HTML, the exact value on hover).
        if (el.hasAttribute("data-live-html")) { el.innerHTML = value; } else { el.textContent = value; }
        // An empty reason hides its line rather than leaving a blank one.
        if (el.hasAttribute("data-live-hide-empty")) { el.hidden = !value; }
      });
    });
  }

  function refetch(root) {
    var url = root.getAttribute("data-live-partial");
    fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "XMLHttpRequest"}})
      .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
      .then(function (html) { if (html !== null) { root.outerHTML = html; } })
      .catch(function () { /* the next change tries again */ });
  }

  function apply(attr, rows) {
    Object.keys(rows || {}).forEach(function (id) {
      var fields = rows[id];
      document.querySelectorAll("[" + attr + '="' + id + '"]').forEach(function (root) {
        var stateChanged = fields.state !== undefined && root.dataset.state !== fields.state;
        if (fields.state !== undefined) {
          var old = root.dataset.state;
          root.dataset.state = fields.state;
          // The state's colour (portal.css .ws-<state>) follows it.
          root.querySelectorAll(".ws-state").forEach(function (el) {
            el.classList.remove("ws-" + old);
            el.classList.add("ws-" + fields.state);
          });
        }
        setFields(root, fields);
        if (stateChanged && root.hasAttribute("data-live-partial")) { refetch(root); }
      });
    });
  }

  function connect() {
    var ws = new WebSocket(scheme + location.host + "/ws/live/");
    ws.onopen = function () {
      retries = 0;
      ws.send(JSON.stringify({watch: watch}));
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type !== "update") { return; }
      apply("data-live-job", frame.jobs);
      apply("data-live-workshop", frame.workshops);
      var balance = document.querySelector("[data-live-balance]");
      if (balance && frame.balance) { setFields(balance, frame.balance); }
    };
    ws.onclose = function (event) {
      // 44xx: refused (signed out, banned): a reload shows why. Else back off.
      if (event.code >= 4400 && event.code < 4500) { return; }
      retries += 1;
      setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, Math.min(retries - 1, 5))));
    };
  }

  connect();
})();
