// The flag list, live: follows /flags/stream (the console relays the flags service's change
// stream with the person's own token, kept server-side in the HttpOnly session cookie) and,
// on each change and each (re)connect, fetches the page it is on again (the same ?cursor=, so
// page 2 stays page 2 and only the rows shown are updated) and swaps its rows in.
// The stream does not replay what changed while it was down, hence the fetch on connect.
// Without this script (or without EventSource) the list is as of loading: reload shows changes.
(function () {
  "use strict";
  var rows = document.getElementById("flag-rows");
  var status = document.getElementById("live-status");
  if (!rows || !status || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var delay = 1000;
  var pending = null;

  function say(which) {
    status.textContent = status.getAttribute(which === "live" ? "data-live" : "data-offline");
  }

  function versions(tbody) {
    var seen = {};
    Array.prototype.forEach.call(tbody.querySelectorAll("tr[id]"), function (tr) {
      seen[tr.id] = tr.getAttribute("data-version");
    });
    return seen;
  }

  function refresh() {
    // A burst of changes costs one fetch.
    if (pending) {
      return;
    }
    pending = window.setTimeout(function () {
      pending = null;
      fetch(window.location.pathname + window.location.search, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      })
        .then(function (resp) {
          return resp.ok ? resp.text() : null;
        })
        .then(function (html) {
          if (!html) {
            return;
          }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("flag-rows");
          if (!fresh) {
            return; // signed out meanwhile: the next reload goes to sign-in
          }
          var before = versions(rows);
          var current = document.getElementById("flag-rows");
          current.parentNode.replaceChild(document.adoptNode(fresh), current);
          rows = fresh;
          Array.prototype.forEach.call(rows.querySelectorAll("tr[id]"), function (tr) {
            if (before[tr.id] !== tr.getAttribute("data-version")) {
              tr.classList.add("changed");
            }
          });
        })
        .catch(function () {});
    }, 150);
  }

  function connect() {
    var source = new EventSource("/flags/stream");
    source.onopen = function () {
      delay = 1000;
      say("live");
      refresh();
    };
    ["flag.created", "flag.updated", "flag.deleted"].forEach(function (type) {
      source.addEventListener(type, refresh);
    });
    source.onerror = function () {
      // The console ends each relay after a few seconds, and answers 503 when busy: either
      // way, reconnect ourselves (EventSource gives up on a 503), backing off to 30 s.
      source.close();
      if (delay > 4000) {
        say("offline");
      }
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  connect();
})();
