"""The HTML of click-to-dial: server-rendered, one small inline script under a nonce CSP.

No external assets and no inline event handlers: the Content-Security-Policy allows only the
script and style carrying this response's nonce, and fetches to the page's own origin. The
script finds the dial endpoints relative to its own path, so the pages work behind a reverse
proxy that serves them under a prefix (``public_url = "https://pbx.example.com/cti/"``).

Only the setup page carries a key (the agent's own, which is what the page is for); the page
a dial link opens shows the outcome of that one dial and holds no key.
"""

from __future__ import annotations

import html
import json
import secrets
from typing import Any

from starlette.responses import HTMLResponse

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}button{font:inherit;padding:.3em 1em}input{font:inherit;width:14em}
#outcome,#status{padding:.5em;border-left:4px solid #888;background:#f4f4f4;min-height:1.5em}
#outcome[data-state=answered]{border-color:#2a2}#outcome[data-state=failed],
#outcome[data-state=busy],#outcome[data-state=no-answer],#outcome[data-state=refused]{border-color:#c22}
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const base = location.pathname.replace(/\/call$/, "");
const show = (id, text, state) => {
  const el = document.getElementById(id);
  el.textContent = text;
  if (state) el.dataset.state = state;
};
async function follow(attempt) {
  for (let i = 0; i < 120; i++) {
    let s;
    try {
      const r = await fetch(base + "/outcome/" + encodeURIComponent(attempt), {cache: "no-store"});
      if (!r.ok) {
        show("outcome", "The outcome of this call is no longer known.", "failed");
        return;
      }
      s = await r.json();
    } catch (e) {
      s = null;
    }
    if (s) {
      show("outcome", s.message, s.state);
      if (s.final) return;
    }
    await new Promise((done) => setTimeout(done, 1000));
  }
}
function register() {
  const url = new URL(base + "/call?key=" + encodeURIComponent(data.key) + "&to=%s", location.href);
  if (!navigator.registerProtocolHandler) {
    show("status", "This browser cannot take over phone links.", "failed");
    return;
  }
  try {
    navigator.registerProtocolHandler("tel", url.href.replace("%25s", "%s"));
    show("status", "Asked the browser to open phone (tel:) links with this page. " +
      "Confirm its prompt; if none appeared, see below.", "asked");
  } catch (e) {
    show("status", "The browser refused to register this page: " + e.message, "failed");
  }
}
async function testCall() {
  const number = document.getElementById("number").value.trim();
  if (!number) { show("outcome", "Type a number to call first.", "refused"); return; }
  show("outcome", "Placing the call\u2026", "ringing");
  const url = base + "/call?key=" + encodeURIComponent(data.key) +
    "&to=" + encodeURIComponent("tel:" + number);
  try {
    const r = await fetch(url, {headers: {Accept: "application/json"}, cache: "no-store"});
    const s = await r.json();
    show("outcome", s.message, s.attempt ? "ringing" : "refused");
    if (s.attempt) await follow(s.attempt);
  } catch (e) {
    show("outcome", "The bridge did not answer: " + e.message, "failed");
  }
}
if (data.key) {
  document.getElementById("register").addEventListener("click", register);
  document.getElementById("test").addEventListener("click", testCall);
  register();
}
if (data.attempt) follow(data.attempt);
"""

_SETUP = """
<h1>Click-to-dial for extension {ext}</h1>
<p>Phone numbers in Zammad are <code>tel:</code> links. Once this browser opens them with this
page, a click on a number rings your phone {ext}; when you pick it up, the number is called.</p>
<p><button id="register" type="button">Open phone links with this page</button></p>
<p id="status" role="status">Registering needs JavaScript.</p>
<h2>If the browser showed no prompt</h2>
<ul>
<li><b>Chrome, Edge</b>: click the handler icon (two overlapping diamonds) at the right end of
the address bar and choose <i>Allow</i>. Later changes: Settings, Privacy and security, Site
settings, Additional permissions, Protocol handlers.</li>
<li><b>Firefox</b>: a bar above the page asks; if it is gone, Settings, General, Applications,
find <i>tel</i> and choose this site.</li>
<li>Browsers offer this only on <b>https</b> pages (or on localhost). Open this page through its
https address.</li>
<li>Keep this link to yourself: it dials for your extension. If it leaked, ask for a new one
(the old one then stops working).</li>
</ul>
<h2>Test call</h2>
<p><label for="number">Number</label> <input id="number" type="tel" autocomplete="off">
<button id="test" type="button">Place a test call</button></p>
<p id="outcome" role="status"></p>
"""

_DIALLED = """
<h1>Click-to-dial</h1>
<p id="outcome" role="status" data-state="{state}">{message}</p>
<p>You can close this tab.</p>
"""


def _page(title: str, body: str, data: dict[str, Any], status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    blob = json.dumps(data).replace("<", "\\u003c")  # never "</script>" inside the block
    text = (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<meta name=robots content="noindex">'
        f"<title>{html.escape(title)}</title><style nonce={nonce}>{_STYLE}</style></head>"
        f"<body>{body}"
        f'<script type="application/json" id="data">{blob}</script>'
        f"<script nonce={nonce}>{_SCRIPT}</script></body></html>\n"
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(text, status_code=status, headers={"content-security-policy": csp})


def setup_page(ext: str, key: str) -> HTMLResponse:
    body = _SETUP.format(ext=html.escape(ext))
    return _page(f"Click-to-dial {ext}", body, {"key": key})


def dialled_page(message: str, attempt: str | None, state: str, status: int) -> HTMLResponse:
    body = _DIALLED.format(message=html.escape(message), state=html.escape(state))
    return _page("Click-to-dial", body, {"attempt": attempt}, status)
