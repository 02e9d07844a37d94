/* Services list: the "New service" dialog (POST /api/v1/services/). */
(function () {
  "use strict";

  /* The service fields of a form (templates/console/service_fields.html) as the API's body. */
  function serviceBody(form) {
    const body = {
      protocol: form.elements.protocol.value,
      description: form.elements.description.value,
      tags: Mesh.splitList(form.elements.tags.value),
      mtls_mode: form.elements.mtls_mode.value,
    };
    const drain = form.elements.drain_timeout.value.trim();
    if (drain) body.drain_timeout = drain;
    return body;
  }
  Mesh.serviceBody = serviceBody;

  document.addEventListener("DOMContentLoaded", function () {
    const dialog = document.getElementById("service-create-dialog");
    if (!dialog) return;
    Mesh.formDialog(dialog, {
      openers: [document.getElementById("new-service")],
      prepare: function (form) { form.reset(); },
      submit: async function (form) {
        const body = Object.assign({ name: form.elements.name.value.trim() }, serviceBody(form));
        let created;
        try {
          created = await Mesh.api("/api/v1/services/", { method: "POST", body: body });
        } catch (e) {
          if (e.status === 409) { e.status = 400; e.data = { name: [e.message] }; } // the name is taken
          throw e;
        }
        location.href = "/services/" + encodeURIComponent(created.name) + "/";
      },
    });
  });
})();
