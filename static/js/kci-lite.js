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
