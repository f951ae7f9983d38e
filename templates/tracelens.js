(function () {
  "use strict";
  // Hover tooltips: SVG <title> texts (which work without this script) become a styled tip.
  var tip = document.createElement("div");
  tip.className = "tip";
  tip.setAttribute("role", "tooltip");
  tip.hidden = true;
  document.body.appendChild(tip);
  var titles = document.querySelectorAll("svg title");
  for (var i = 0; i < titles.length; i++) {
    var t = titles[i];
    var owner = t.parentNode;
    if (owner && owner.nodeName.toLowerCase() !== "svg") {
      owner.setAttribute("data-tip", t.textContent);
      owner.removeChild(t);
    }
  }
  var current = null;
  function hide() {
    tip.hidden = true;
    if (current) { current.classList.remove("hover"); current = null; }
  }
  document.addEventListener("mousemove", function (e) {
    var el = e.target && e.target.closest ? e.target.closest("[data-tip]") : null;
    if (!el) { hide(); return; }
    if (el !== current) {
      if (current) { current.classList.remove("hover"); }
      current = el;
      el.classList.add("hover");
      tip.textContent = el.getAttribute("data-tip");
      tip.hidden = false;
    }
    var x = e.clientX + 14, y = e.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) { x = Math.max(4, e.clientX - w - 14); }
    if (y + h > window.innerHeight - 4) { y = Math.max(4, e.clientY - h - 14); }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  });
  document.addEventListener("mouseleave", hide);
  window.addEventListener("scroll", hide, { passive: true });

  // Copy buttons: hidden without the script, since they need it.
  var buttons = document.querySelectorAll("button[data-copy]");
  for (var j = 0; j < buttons.length; j++) {
    (function (btn) {
      btn.hidden = false;
      btn.addEventListener("click", function () {
        var source = document.getElementById(btn.getAttribute("data-copy"));
        if (!source) { return; }
        var text = source.textContent;
        var done = function () {
          var label = btn.textContent;
          btn.textContent = "Copied";
          setTimeout(function () { btn.textContent = label; }, 1500);
        };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(text).then(done, function () {});
        }
      });
    })(buttons[j]);
  }
})();
