// kubeforge dashboard: the little the pages need beyond HTML forms.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A sign-in link (`kubeforge dashboard`) carries the token in the URL's
  // fragment, which browsers never send to a server: move it into the form,
  // drop it from the address bar and history, and sign in.
  // (hashchange: the link may be opened on a sign-in page already shown.)
  const login = document.getElementById("login");
  const signInFromLink = () => {
    if (login && location.hash.startsWith("#token=")) {
      document.getElementById("token").value = decodeURIComponent(location.hash.slice(7));
      history.replaceState(null, "", location.pathname);
      login.submit();
    }
  };
  window.addEventListener("hashchange", signInFromLink);
  signInFromLink();

  // Ask before destructive actions.
  for (const b of document.querySelectorAll("button[data-confirm]")) {
    b.addEventListener("click", (e) => {
      if (!window.confirm(b.dataset.confirm)) e.preventDefault();
    });
  }

  // Live log tail: stream the log endpoint into the <pre>.
  const pre = document.getElementById("log");
  if (!pre) return;
  const follow = document.getElementById("follow");
  let ctrl = null;
  const open = async (src) => {
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    pre.textContent = "";
    for (const t of document.querySelectorAll(".logtab")) t.classList.toggle("on", t.dataset.logSrc === src);
    try {
      const resp = await fetch(src, { signal: ctrl.signal, credentials: "same-origin" });
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pre.append(dec.decode(value, { stream: true }));
        if (follow && follow.checked) pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.ended = "true";
    } catch (e) {
      if (e.name !== "AbortError") pre.append("\n[log stream failed: " + e + "]\n");
    }
  };
  for (const t of document.querySelectorAll(".logtab")) {
    t.addEventListener("click", (e) => { e.preventDefault(); open(t.dataset.logSrc); });
  }
  open(pre.dataset.logSrc);
});
