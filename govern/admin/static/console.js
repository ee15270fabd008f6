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

  function labelFilters() {
    // flask-admin's bs4_filters.js builds each active filter's operation and value fields with no label;
    // name them after the filter (the text of its remove button), so a screen reader can tell them apart.
    var rows = document.querySelectorAll("table.filters tr");
    for (var i = 0; i < rows.length; i++) {
      var button = rows[i].querySelector(".remove-filter");
      if (!button) { continue; }
      var name = button.textContent.replace("\u00d7", "").trim();
      var fields = rows[i].querySelectorAll("select, input");
      for (var j = 0; j < fields.length; j++) {
        var field = fields[j];
        if (field.type === "hidden" || field.hasAttribute("aria-label")) { continue; }
        var what = field.classList.contains("filter-op") ? "condition" : "value";
        field.setAttribute("aria-label", name + " filter " + what);
      }
    }
    var closers = document.querySelectorAll(".select2-search-choice-close:not([aria-label])");
    for (var k = 0; k < closers.length; k++) {
      closers[k].setAttribute("aria-label", "Remove this value");
    }
  }

  function start() {
    neutralise();
    labelFilters();
    var filters = document.querySelector("table.filters");
    if (filters && window.MutationObserver) {
      new MutationObserver(labelFilters).observe(filters, {childList: true, subtree: true});
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
