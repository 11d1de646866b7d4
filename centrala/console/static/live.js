// Screen-pop: when a call rings this agent, show who is calling before they pick up.
// Server-sent events from /console/live; every value is put in the page as text, never as HTML.
(function () {
  "use strict";
  var aside = document.getElementById("screen-pop");
  if (!aside || !window.EventSource) { return; }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function contactCard(contact) {
    var card = el("section", "pop-contact");
    card.appendChild(el("h3", null, contact.name || "Unknown caller"));
    if (contact.organization) { card.appendChild(el("p", "pop-org", contact.organization.name)); }
    if (contact.emails.length) { card.appendChild(el("p", "pop-meta", contact.emails.join(", "))); }
    if (contact.open_tickets.length) {
      var list = el("ul", "pop-tickets");
      contact.open_tickets.forEach(function (ticket) {
        var item = el("li", null, ticket.number + " · " + ticket.subject + " · " + ticket.status);
        ticket.sla.forEach(function (clock) {
          if (clock.remaining_business_minutes !== null && clock.state === "running") {
            item.appendChild(el("span", clock.remaining_business_minutes <= 0 ? "pop-late" : "pop-due",
              " " + clock.metric.replace("_", " ") + ": " + Math.round(clock.remaining_business_minutes) + " min"));
          }
        });
        list.appendChild(item);
      });
      card.appendChild(list);
    } else {
      card.appendChild(el("p", "pop-meta", "No open tickets."));
    }
    if (contact.recent_interactions.length) {
      var recent = el("ol", "pop-recent");
      contact.recent_interactions.forEach(function (entry) {
        recent.appendChild(el("li", null, entry.channel + " " + entry.direction + ": " + (entry.subject || entry.text)));
      });
      card.appendChild(recent);
    }
    return card;
  }

  function show(pop) {
    aside.textContent = "";
    aside.dataset.callSid = pop.call.call_sid;
    var head = el("header", "pop-head");
    head.appendChild(el("strong", null, "Incoming call"));
    head.appendChild(el("span", "pop-number", pop.call.from_display || "withheld number"));
    if (pop.call.queue) { head.appendChild(el("span", "pop-meta", pop.call.queue)); }
    var close = el("button", "pop-close", "Dismiss");
    close.type = "button";
    close.addEventListener("click", function () { aside.hidden = true; });
    head.appendChild(close);
    aside.appendChild(head);
    pop.contacts.forEach(function (contact) { aside.appendChild(contactCard(contact)); });
    if (pop.suggestions.length) {
      var next = el("ul", "pop-next");
      pop.suggestions.forEach(function (suggestion) { next.appendChild(el("li", null, suggestion.text)); });
      aside.appendChild(el("h4", null, "Next steps"));
      aside.appendChild(next);
    }
    aside.hidden = false;
  }

  var source = window.centralaLive || (window.centralaLive = new EventSource("/console/live"));
  source.addEventListener("screen-pop", function (event) { show(JSON.parse(event.data)); });
  source.addEventListener("call-ended", function (event) {
    var ended = JSON.parse(event.data);
    if (aside.dataset.callSid === ended.call_sid) {
      aside.classList.add("pop-ended");
      var note = el("p", "pop-meta", "Call ended: " + ended.outcome);
      aside.appendChild(note);
    }
  });
}());

// New messages and tickets in the agent's queues: a short list at the top of the page, newest first.
(function () {
  "use strict";
  if (!window.EventSource) { return; }
  var list = document.getElementById("live-news");
  if (!list) { return; }
  var source = window.centralaLive || (window.centralaLive = new EventSource("/console/live"));
  source.addEventListener("interaction", function (event) {
    var news = JSON.parse(event.data);
    var item = document.createElement("li");
    var link = document.createElement("a");
    link.href = "/console/tickets/" + encodeURIComponent(news.ticket);
    link.textContent = news.ticket;
    item.appendChild(link);
    var what = news.new_ticket ? " new ticket: " : " new " + news.channel + " " + news.direction + ": ";
    item.appendChild(document.createTextNode(what + news.subject + (news.author ? " (" + news.author + ")" : "")));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > 8) { list.removeChild(list.lastChild); }
    list.hidden = false;
    if (window.location.pathname === "/console/tickets/" + news.ticket) {
      item.appendChild(document.createTextNode(" — reload to see it here"));
    }
  });
}());
