// Presence on a ticket: every few seconds this page tells the server its agent is viewing (or typing, when
// they typed in the last seconds) and shows who else is on the ticket, so two agents do not answer the same
// customer at once. Names are put in the page as text, never as HTML.
(function () {
  "use strict";
  var card = document.getElementById("ticket");
  var notice = document.getElementById("presence");
  if (!card || !notice || !window.fetch) { return; }
  var url = "/console/tickets/" + encodeURIComponent(card.dataset.ticket) + "/presence";
  var csrf = card.dataset.csrf;
  var lastTyped = 0;
  var EVERY_MS = 5000;
  var TYPING_MS = 8000;

  document.querySelectorAll("[data-typing]").forEach(function (field) {
    field.addEventListener("input", function () {
      var wasIdle = Date.now() - lastTyped > TYPING_MS;
      lastTyped = Date.now();
      if (wasIdle) { report(); }
    });
  });

  function show(others) {
    if (!others.length) { notice.hidden = true; notice.textContent = ""; return; }
    notice.textContent = others.map(function (other) {
      return other.name + " is " + other.state + " on this ticket";
    }).join("; ");
    notice.hidden = false;
  }

  function report(state) {
    var body = new URLSearchParams();
    body.set("csrf", csrf);
    body.set("state", state || (Date.now() - lastTyped < TYPING_MS ? "typing" : "viewing"));
    return fetch(url, { method: "POST", body: body, credentials: "same-origin", keepalive: state === "left" })
      .then(function (response) { return response.ok ? response.json() : { others: [] }; })
      .then(function (data) { if (state !== "left") { show(data.others || []); } })
      .catch(function () { /* presence is a hint; the next round tries again */ });
  }

  report();
  setInterval(report, EVERY_MS);
  window.addEventListener("pagehide", function () { report("left"); });
})();
