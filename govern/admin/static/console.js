/* govern console: behaviour that would otherwise be inline script, which the Content-Security-Policy
   forbids (govern/admin/lockdown.py). Served by govern; no outside origin. */
(function () {
  "use strict";

  // Every destructive form carries data-confirm="what it does, naming what it affects":
  // the browser asks first, and a dismissed dialog sends nothing.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  function neutralise() {
    // flask-admin's templates use href="javascript:void(0)" for tabs, pager cells and menu toggles (and had
    // onclick="return false;" on filter links: templates/admin/model/layout.html). Under the CSP the browser
    // would refuse (and report) them when clicked; preventing the default action does what they meant.
    var links = document.querySelectorAll('a[href^="javascript:"], a.filter[href="#"]');
    for (var i = 0; i < links.length; i++) {
      links[i].addEventListener("click", function (event) { event.preventDefault(); });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", neutralise);
  } else {
    neutralise();
  }
}());
