/* Phones: the main menu folds behind a "Menu" button (portal.css, max-width 600px).
 * Without JavaScript the menu simply stays open (the button stays hidden).
 * A table or block of code that scrolls sideways inside its card is made
 * reachable by the keyboard (tabindex), so it can be scrolled without a mouse. */
(function () {
  "use strict";
  function reachableScrolls() {
    document.querySelectorAll("main table, main pre").forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        if (!el.hasAttribute("tabindex")) { el.setAttribute("tabindex", "0"); }
      } else if (el.getAttribute("tabindex") === "0") {
        el.removeAttribute("tabindex");
      }
    });
  }
  reachableScrolls();
  window.addEventListener("resize", reachableScrolls);
  // Cards swapped in later (live status) get the same treatment.
  var main = document.querySelector("main");
  if (main && window.MutationObserver) {
    new MutationObserver(reachableScrolls).observe(main, {childList: true, subtree: true});
  }

  var bar = document.querySelector(".topbar");
  var button = bar && bar.querySelector(".menu-toggle");
  if (!button) { return; }
  bar.classList.add("js-menu");
  button.hidden = false;
  button.addEventListener("click", function () {
    var open = bar.classList.toggle("menu-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
})();
