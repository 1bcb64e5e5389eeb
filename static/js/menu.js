/* Phones: the main menu folds behind a "Menu" button (portal.css, max-width 600px).
 * Without JavaScript the menu simply stays open (the button stays hidden). */
(function () {
  "use strict";
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
