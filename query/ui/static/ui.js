// Small conveniences shared by every page. The pages work without it.
(function () {
  "use strict";
  // A row of the requests table opens its trace when clicked anywhere.
  document.addEventListener("click", function (ev) {
    var tr = ev.target.closest && ev.target.closest("tr[data-trace-id]");
    if (!tr || ev.target.closest("a")) return;
    location.href = "/trace/" + tr.dataset.traceId;
  });
  // Typing a custom range clears the preset, so the form says what it does.
  document.querySelectorAll("form.filters input[type=datetime-local]").forEach(function (inp) {
    inp.addEventListener("change", function () {
      var sel = inp.form.querySelector("select[name=range]");
      if (sel && inp.value) sel.disabled = true;
    });
  });
})();
