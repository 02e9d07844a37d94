/* Audit page: the export links follow the filters as they are typed, so the
   CSV/JSON downloaded is what the form says (before it is submitted too). */
(function () {
  "use strict";
  const form = document.getElementById("audit-filters");
  const links = [document.getElementById("export-csv"), document.getElementById("export-json")];
  if (!form) return;

  function update() {
    const params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { if (value) params.set(key, value); });
    links.forEach(function (link) {
      if (!link) return;
      const url = new URL(link.href, window.location.href);
      const format = url.searchParams.get("format");
      const next = new URLSearchParams(params);
      next.set("format", format);
      url.search = next.toString();
      link.href = url.pathname + url.search;
    });
  }
  form.addEventListener("input", update);
  update();
})();
