// Submits a form as JSON to the API and shows the answer.
function kciForm(id, build) {
  var form = document.getElementById(id);
  var out = document.getElementById("result");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var req = build(form);
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    if (req.token) { headers["Authorization"] = "Bearer " + req.token; }
    fetch(req.url, { method: "POST", headers: headers, body: JSON.stringify(req.body) })
      .then(function (resp) { return resp.text().then(function (text) { return [resp.status, text]; }); })
      .then(function (r) { out.textContent = r[0] + "\n" + r[1]; })
      .catch(function (err) { out.textContent = "request failed: " + err; });
  });
}

// The admin's invite form (GET /user/invite).
if (document.getElementById("invite-form")) {
  kciForm("invite-form", function (form) {
    var groups = form.groups.value.split(",").map(function (g) { return g.trim(); })
      .filter(function (g) { return g.length > 0; });
    return {
      url: "/latest/user/invite",
      token: form.admin_token.value,
      body: {
        username: form.username.value, email: form.email.value, groups: groups,
        is_superuser: form.is_superuser.checked, send_email: form.send_email.checked,
        return_token: true
      }
    };
  });
}

// The invitee's password form (GET /user/accept-invite?token=...): the
// token is taken from the address and then removed from it (and from the
// history), so it is not left in the address bar for others to see.
if (document.getElementById("accept-form")) {
  var inviteToken = new URLSearchParams(window.location.search).get("token") || "";
  document.getElementById("accept-form").token.value = inviteToken;
  if (inviteToken) { history.replaceState(null, "", window.location.pathname); }
  kciForm("accept-form", function (form) {
    return {
      url: "/latest/user/accept-invite",
      body: { token: form.token.value, password: form.password.value }
    };
  });
}
