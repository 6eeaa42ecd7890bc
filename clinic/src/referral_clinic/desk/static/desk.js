// The desk's only script (served from the desk itself: the CSP allows no inline script). It shows what
// arrives without reloading the page under the reader: every few seconds it asks for the same page again,
// and when what it shows has changed it puts the new content in place and says so in a polite live region.
// When the reader is working inside the content (focus on a button or in the search field) it only says so.
// Without this script the page still works: "Fetch new referrals now" or reloading shows the same.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var said = document.getElementById("changes-said");
  if (!live || !said) return;
  var every = Math.max(1, Number(live.getAttribute("data-every")) || 20) * 1000;

  function working() {
    var focused = document.activeElement;
    return focused && focused !== document.body && live.contains(focused);
  }

  function look() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", redirect: "manual" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("live");
        if (!fresh) return;
        if (fresh.getAttribute("data-version") === live.getAttribute("data-version")) {
          // nothing new to see: only "last checked" moves on, without a word to a screen reader
          var checked = page.getElementById("last-pull"), shown = document.getElementById("last-pull");
          if (checked && shown) shown.textContent = checked.textContent;
          return;
        }
        if (working()) {
          said.textContent = live.getAttribute("data-changed-later");
          return;
        }
        live.innerHTML = fresh.innerHTML;
        live.setAttribute("data-version", fresh.getAttribute("data-version"));
        said.textContent = fresh.getAttribute("data-changed");
      })
      .catch(function () { /* the desk was stopped or is busy: ask again next time */ })
      .then(function () { window.setTimeout(look, every); });
  }
  window.setTimeout(look, every);
})();
