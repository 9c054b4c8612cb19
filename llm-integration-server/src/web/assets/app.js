// Progressive enhancement for the browser door; every form works without it.
// It shows the hostname as the name is typed, shows only the fields of the
// chosen source (and custom endpoint authentication), runs `Test` on a
// pasted key or an endpoint, and follows a ChatGPT login.
"use strict";

function csrfOf(form) {
  const input = form && form.querySelector('input[name="csrf"]');
  return input ? input.value : "";
}

function setupHostname() {
  const name = document.getElementById("name");
  const host = document.getElementById("hostname");
  if (!name || !host) return;
  const domain = host.dataset.domain;
  const update = () => {
    const owner = document.querySelector('input[name="owner"]:checked');
    const team = Boolean(owner && owner.value);
    host.textContent = (name.value.trim() || "NAME") + "." + (team ? "team" : "int") + "." + domain;
    // A ChatGPT subscription is for personal integrations only.
    const chatgpt = document.getElementById("openai-chatgpt");
    if (chatgpt && !chatgpt.checked) chatgpt.disabled = team;
  };
  name.addEventListener("input", update);
  document.querySelectorAll('input[name="owner"]').forEach((r) => r.addEventListener("change", update));
  update();
}

function setupSources() {
  document.querySelectorAll("fieldset.provider").forEach((set) => {
    const provider = set.dataset.provider;
    const update = () => {
      const chosen = set.querySelector('input[name="' + provider + '"]:checked');
      const value = chosen ? chosen.value : "";
      set.querySelectorAll(".key").forEach((div) => {
        div.hidden = div.dataset.for !== value;
      });
    };
    set.querySelectorAll('input[type="radio"]').forEach((r) => r.addEventListener("change", update));
    update();
    // A custom endpoint's authentication: only the chosen one's fields.
    const auth = () => {
      const chosen = set.querySelector('input[name="' + provider + '_auth"]:checked');
      const value = chosen ? chosen.value : "none";
      set.querySelectorAll(".auth-fields").forEach((div) => {
        div.hidden = div.dataset.auth !== value;
      });
    };
    set.querySelectorAll('input[name="' + provider + '_auth"]').forEach((r) => r.addEventListener("change", auth));
    auth();
  });
}

async function runTest(button, out, body, busy) {
  out.className = "busy";
  out.textContent = busy;
  button.disabled = true;
  try {
    const r = await fetch(button.dataset.action, { method: "POST", body, credentials: "same-origin" });
    const answer = r.headers.get("content-type") === "application/json" ? await r.json() : { ok: false, message: "the test was refused (HTTP " + r.status + "); reload the page" };
    out.className = answer.ok ? "ok" : "error";
    out.textContent = answer.message;
  } catch (e) {
    out.className = "error";
    out.textContent = "The server could not be reached; try again.";
  } finally {
    button.disabled = false;
  }
}

function setupEndpointTests() {
  document.querySelectorAll("button.test-endpoint").forEach((button) => {
    button.dataset.action = "/integrations/test-endpoint";
    button.addEventListener("click", () => {
      const p = button.dataset.provider;
      const form = button.form;
      const value = (id) => {
        const input = document.getElementById(id);
        return input ? input.value : "";
      };
      const chosen = form.querySelector('input[name="' + p + '_auth"]:checked');
      const hidden = (name) => {
        const input = form.querySelector('input[type="hidden"][name="' + name + '"]');
        return input ? input.value : "";
      };
      const out = document.getElementById(p + "-endpoint-test");
      if (!value(p + "-url")) {
        out.className = "error";
        out.textContent = "Give the endpoint's URL first, then click Test.";
        document.getElementById(p + "-url").focus();
        return;
      }
      const body = new URLSearchParams({
        csrf: csrfOf(form),
        provider: p,
        url: value(p + "-url"),
        auth: chosen ? chosen.value : "none",
        token: value(p + "-token"),
        header: value(p + "-header"),
        header_value: value(p + "-header-value"),
        original: hidden("original"),
        owner: hidden("owner"),
      });
      runTest(button, out, body, "Listing the endpoint's models…");
    });
  });
}

function setupTests() {
  document.querySelectorAll("button.test").forEach((button) => {
    button.addEventListener("click", async () => {
      const provider = button.dataset.provider;
      const input = document.getElementById(provider + "-key");
      const out = document.getElementById(provider + "-test");
      if (!input.value) {
        out.className = "error";
        out.textContent = "Paste the key first, then click Test.";
        input.focus();
        return;
      }
      const body = new URLSearchParams({ csrf: csrfOf(button.form), provider, key: input.value });
      button.dataset.action = "/integrations/test-key";
      runTest(button, out, body, "Testing the key with " + provider + "…");
    });
  });
}

function setupLogin() {
  const status = document.getElementById("login-status");
  if (!status) return;
  const id = status.dataset.login;
  let stopped = false;
  const poll = async () => {
    if (stopped) return;
    try {
      const r = await fetch("/chatgpt/status?id=" + encodeURIComponent(id), { credentials: "same-origin" });
      const answer = await r.json();
      if (answer.message && status.textContent !== answer.message) status.textContent = answer.message;
      if (answer.state !== "waiting") {
        status.classList.add(answer.state);
        // "Done signing in" clicked too early left a refusal on the page;
        // the status now says where the login stands, alone.
        const early = document.getElementById("login-error");
        if (early) early.remove();
        stopped = true;
        return;
      }
    } catch (e) {
      // Keep waiting; the next poll may reach the server.
    }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

// The VM list of a dialog with an owner choice: only the VMs of the
// chosen owner's scope (the server sends one group per scope).
function setupVmScopes() {
  document.querySelectorAll("select[data-scoped]").forEach((select) => {
    const form = select.form;
    const scopes = new Map();
    select.querySelectorAll("optgroup").forEach((group) => {
      const vms = Array.from(group.querySelectorAll("option")).map((o) => o.value);
      scopes.set(group.dataset.owner, { vms });
    });
    const update = () => {
      const owner = form.querySelector('input[name="owner"]:checked');
      const team = owner ? owner.value : "";
      const scope = scopes.get(team);
      const before = select.value;
      select.replaceChildren();
      if (!scope || scope.vms.length === 0) {
        const option = new Option(team ? "(team " + team + " has no VMs)" : "(you have no VMs)", "");
        select.add(option);
        return;
      }
      scope.vms.forEach((vm) => select.add(new Option(vm, vm, false, vm === before)));
    };
    form.querySelectorAll('input[name="owner"]').forEach((r) => r.addEventListener("change", update));
    update();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupVmScopes();
  setupHostname();
  setupSources();
  setupTests();
  setupEndpointTests();
  setupLogin();
});
