// The desk's only script (served from the desk itself: the CSP allows no inline script). It shows what
// arrives without reloading the page under the reader: it waits on the desk's own /changes, which answers as
// soon as the desk has filed, marked or deleted something (or after 25 s of nothing), then asks for the same
// page again, and when what it shows has changed it puts the new content in place and says so in a polite
// live region. When the reader is working inside the content (focus on a button or in the search field) it
// only says so. When /changes cannot wait (too many tabs) or fails, it looks every few seconds instead.
// Without this script the page still works: "Fetch new referrals now" or reloading shows the same.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var said = document.getElementById("changes-said");
  if (!live || !said) return;
  var every = Math.max(1, Number(live.getAttribute("data-every")) || 20) * 1000;
  var seen = live.getAttribute("data-generation") || "0";
  var asking = { credentials: "same-origin", cache: "no-store", redirect: "manual" };

  function working() {
    var focused = document.activeElement;
    return focused && focused !== document.body && live.contains(focused);
  }

  // Ask for this page again and show what changed; then `next(true)` when the page was read, else `next(false)`.
  function look(next) {
    fetch(window.location.href, asking)
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html === null) return false;
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("live");
        if (!fresh) return false;
        seen = fresh.getAttribute("data-generation") || seen;
        if (fresh.getAttribute("data-version") === live.getAttribute("data-version")) {
          // nothing new to see: only "last checked" moves on, without a word to a screen reader
          var checked = page.getElementById("last-pull"), shown = document.getElementById("last-pull");
          if (checked && shown) shown.textContent = checked.textContent;
          return true;
        }
        if (working()) {
          said.textContent = live.getAttribute("data-changed-later");
          return true;
        }
        live.innerHTML = fresh.innerHTML;
        live.setAttribute("data-version", fresh.getAttribute("data-version"));
        said.textContent = fresh.getAttribute("data-changed");
        return true;
      })
      .catch(function () { return false; /* the desk was stopped or is busy: ask again later */ })
      .then(next);
  }

  // Wait on the desk for a change, then look; if the desk cannot wait, look again after `every`.
  function wait(read) {
    if (!read) {
      window.setTimeout(function () { look(wait); }, every);
      return;
    }
    fetch("/changes?seen=" + encodeURIComponent(seen), asking)
      .then(function (answer) { return answer.ok; })
      .catch(function () { return false; })
      .then(function (waited) {
        if (waited) look(wait);
        else window.setTimeout(function () { look(wait); }, every);
      });
  }
  wait(true);
})();
