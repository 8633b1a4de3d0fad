// Keeps a sync run's <progress> live: polls the run's JSON every two seconds and reloads the page
// when the run ends (the page itself is right without this script, on every reload).
(function () {
  "use strict";
  var box = document.getElementById("sync-progress");
  if (!box) { return; }
  var bar = document.getElementById("sync-progress-bar");
  var text = document.getElementById("sync-progress-text");
  var url = box.getAttribute("data-progress-url");
  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (run) {
        if (!run) { return; }
        if (run.finished) { window.location.reload(); return; }
        if (run.total !== null) { bar.max = run.total; }
        bar.value = run.seen;
        text.textContent = run.seen + " documents so far" + (run.total !== null ? " of " + run.total : "");
        // The resources read after the research (users, categories...), one line each.
        var list = document.getElementById("sync-progress-resources");
        if (list && run.resources) {
          list.textContent = "";
          run.resources.forEach(function (r) {
            var item = document.createElement("li");
            item.setAttribute("data-resource", r.name);
            item.textContent = r.name + ": " + r.state + ", " + r.seen +
              (r.total !== null ? " of " + r.total : "") + " read, " + r.created + " new, " +
              r.updated + " changed";
            list.appendChild(item);
          });
        }
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
})();
