/* nosgrid dashboard: request signing (WebCrypto Ed25519), the job editor, live logs,
   alerts and the in-browser check of the ledger's hash chain. No library, no build. */
(function () {
  "use strict";
  const enc = new TextEncoder();
  const $ = (id) => document.getElementById(id);
  const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

  function b58encode(bytes) {
    const digits = [];
    for (const byte of bytes) {
      let carry = byte;
      for (let i = 0; i < digits.length; i++) {
        carry += digits[i] << 8; digits[i] = carry % 58; carry = Math.floor(carry / 58);
      }
      while (carry) { digits.push(carry % 58); carry = Math.floor(carry / 58); }
    }
    let out = "";
    for (const byte of bytes) { if (byte !== 0) break; out += "1"; }
    for (let i = digits.length - 1; i >= 0; i--) out += B58[digits[i]];
    return out;
  }

  // Base units as NOS, the way nosgrid.core.money.format_nos writes them (6 decimals, no
  // trailing zeros): display only, the amounts are the API's integers.
  function formatNos(units) {
    const sign = units < 0 ? "-" : "", v = Math.abs(units);
    const whole = Math.floor(v / 1e6), frac = v % 1e6;
    return sign + whole + (frac ? "." + String(frac).padStart(6, "0").replace(/0+$/, "") : "");
  }
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
  const sha256hex = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

  /* ---------------------------------------------------------------- signing */
  // The signer lives in this closure only: never in storage, gone when the tab leaves.
  let signer = null;
  const PKCS8_ED25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

  function needCrypto() {
    if (!window.crypto || !crypto.subtle) {
      throw new Error("this browser offers no WebCrypto here: open the dashboard over HTTPS (or on localhost)");
    }
  }

  async function signerFromKeyFile(text) {
    needCrypto();
    let raw;
    try { raw = JSON.parse(text); } catch (e) { throw new Error("the file is not JSON: expected a solana-keygen id.json (an array of 64 numbers)"); }
    if (!Array.isArray(raw) || raw.length !== 64 || !raw.every((b) => Number.isInteger(b) && b >= 0 && b < 256)) {
      throw new Error("the file is not a solana-keygen keypair: expected a JSON array of 64 byte values");
    }
    const bytes = Uint8Array.from(raw);
    const key = await crypto.subtle.importKey("pkcs8", Uint8Array.from([...PKCS8_ED25519, ...bytes.slice(0, 32)]),
      { name: "Ed25519" }, false, ["sign"]);
    const pub = await crypto.subtle.importKey("raw", bytes.slice(32), { name: "Ed25519" }, false, ["verify"]);
    const probe = enc.encode("nosgrid key check");
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, key, probe);
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, pub, sig, probe))) {
      throw new Error("the file's public half does not match its secret half");
    }
    return { pubkey: b58encode(bytes.slice(32)),
             sign: async (msg) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, msg)) };
  }

  // A browser wallet that implements the Solana wallet standard (solana:signMessage).
  const wallets = [];
  function registerWallet(wallet) {
    if (wallet && wallet.features && wallet.features["solana:signMessage"]) {
      wallets.push(wallet);
      const btn = $("wallet-btn");
      if (btn) { btn.hidden = false; btn.textContent = "Use " + (wallet.name || "browser wallet"); }
    }
    return () => {};
  }
  window.addEventListener("wallet-standard:register-wallet", (e) => { try { e.detail({ register: registerWallet }); } catch (err) { /* a broken wallet */ } });
  window.dispatchEvent(new CustomEvent("wallet-standard:app-ready", { detail: { register: registerWallet } }));

  async function signerFromWallet(wallet) {
    if (wallet.features["standard:connect"]) await wallet.features["standard:connect"].connect();
    const account = wallet.accounts[0];
    if (!account) throw new Error("the wallet shared no account");
    return { pubkey: b58encode(account.publicKey),
             sign: async (msg) => (await wallet.features["solana:signMessage"].signMessage({ account, message: msg }))[0].signature };
  }

  function nonce() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // The same message as nosgrid.core.identity.request_message, signed as the SDK does.
  async function signedFetch(method, path, body) {
    if (!signer) throw new Error("load your key first");
    const text = body === undefined ? "" : JSON.stringify(body);
    const ts = Math.floor(Date.now() / 1000);
    const n = nonce();
    const msg = ["nosgrid-v1", method, path, await sha256hex(enc.encode(text)), String(ts), n].join("\n");
    const sig = await signer.sign(enc.encode(msg));
    const headers = { "x-nosgrid-pubkey": signer.pubkey, "x-nosgrid-timestamp": String(ts),
                      "x-nosgrid-nonce": n, "x-nosgrid-signature": b58encode(sig) };
    if (text) headers["content-type"] = "application/json";
    return fetch(path, { method, headers, body: text || undefined });
  }

  async function api(method, path, body) {
    const r = await signedFetch(method, path, body);
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((data.error && data.error.message) || ("the coordinator answered " + r.status));
    return data;
  }

  /* ---------------------------------------------------------------- console page */
  const EXAMPLE = {
    version: "0.1", type: "container",
    meta: { trigger: "dashboard", nosgrid: { timeout: 120, outputs: ["/outputs"] } },
    ops: [{ type: "container/run", id: "hello", args: { image: "localhost/nosgrid-busybox:test",
      cmd: "for i in 1 2 3; do echo \"step $i of 3\"; sleep 1; done; echo hello > /outputs/hello.txt; echo done" } }],
  };
  const ENDED = ["settled", "cancelled"];

  function consolePage() {
    const spec = $("spec");
    spec.value = JSON.stringify(EXAMPLE, null, 2);
    let valid = false, timer = null, following = null;

    $("keyfile").addEventListener("change", async (e) => {
      const file = e.target.files[0];
      $("signin-error").textContent = "";
      if (!file) return;
      try { signedIn(await signerFromKeyFile(await file.text())); }
      catch (err) { $("signin-error").textContent = "Could not use this key: " + err.message; }
      e.target.value = "";  // the file's bytes are not kept by the input either
    });
    $("wallet-btn").addEventListener("click", async () => {
      try { signedIn(await signerFromWallet(wallets[0])); }
      catch (err) { $("signin-error").textContent = "The wallet refused: " + err.message; }
    });

    function signedIn(s) {
      signer = s;
      $("pubkey").textContent = s.pubkey;
      $("account").hidden = false; $("jobs").hidden = false;
      if ($("faucet-row")) $("faucet-row").hidden = false;
      refreshBalance(); refreshJobs(); updatePost();
    }
    async function refreshBalance() {
      try { $("balance").textContent = (await api("GET", "/v1/accounts/me")).balance_nos; }
      catch (err) { $("balance").textContent = "? (" + err.message + ")"; }
    }
    if ($("faucet-btn")) $("faucet-btn").addEventListener("click", async () => {
      try { await api("POST", "/v1/faucet", { amount: String($("faucet-amount").value) }); refreshBalance(); }
      catch (err) { $("signin-error").textContent = "Faucet: " + err.message; }
    });
    async function refreshJobs() {
      const list = await api("GET", "/v1/jobs?limit=50");
      const body = $("jobs-body"); body.textContent = "";
      for (const j of list.jobs) {
        const tr = document.createElement("tr");
        const a = document.createElement("a"); a.href = "#job-" + j.id; a.textContent = j.id.slice(0, 12) + "…";
        a.addEventListener("click", (e) => { e.preventDefault(); showJob(j.id); });
        const cells = [a, j.state, j.market, j.settlement ? j.settlement.cost_nos : "—", new Date(j.created_at * 1000).toISOString().slice(0, 19).replace("T", " ")];
        for (const c of cells) { const td = document.createElement("td"); if (typeof c === "string") td.textContent = c; else td.appendChild(c); tr.appendChild(td); }
        body.appendChild(tr);
      }
      if (!list.jobs.length) body.innerHTML = "<tr><td colspan=5>No job yet.</td></tr>";
    }
    $("refresh-jobs").addEventListener("click", refreshJobs);

    function updatePost() { $("post-btn").disabled = !(valid && signer); }
    async function validate() {
      const r = await fetch("/v1/jobs/validate", { method: "POST", headers: { "content-type": "application/json" },
                                                  body: JSON.stringify({ spec_text: spec.value }) });
      const data = await r.json();
      const list = $("spec-errors"); list.textContent = "";
      if (!r.ok) { data.errors = [(data.error && data.error.message) || "the coordinator could not validate it"]; data.valid = false; }
      valid = !!data.valid;
      spec.setAttribute("aria-invalid", valid ? "false" : "true");
      $("spec-ok").textContent = valid ? "Valid: " + data.ops + " op" + (data.ops === 1 ? "" : "s") + ", spec " + data.spec_hash.slice(0, 12) + "…" : "";
      for (const msg of data.errors || []) { const li = document.createElement("li"); li.textContent = msg; list.appendChild(li); }
      updatePost();
    }
    spec.addEventListener("input", () => { valid = false; updatePost(); clearTimeout(timer); timer = setTimeout(validate, 400); });
    $("validate-btn").addEventListener("click", validate);
    validate();

    $("job-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      $("post-error").textContent = "";
      const req = { spec_text: spec.value, market: $("market").value || null };
      if ($("timeout").value) req.timeout = Number($("timeout").value);
      try { const job = await api("POST", "/v1/jobs", req); showJob(job.id); refreshBalance(); refreshJobs(); }
      catch (err) { $("post-error").textContent = "Not posted: " + err.message; }
    });

    async function showJob(id) {
      $("job").hidden = false; $("job-id").textContent = id; $("job-logs").textContent = "";
      $("job-outputs").innerHTML = "<li>None yet.</li>";
      const mine = following = id;
      followLogs(id);
      while (following === mine) {
        let job;
        try { job = await api("GET", "/v1/jobs/" + id); } catch (err) { $("job-state").textContent = err.message; return; }
        renderJob(job);
        if (ENDED.includes(job.state)) {
          refreshBalance(); refreshJobs(); break;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    function renderJob(job) {
      $("job-state").textContent = job.state; $("job-market").textContent = job.market;
      $("job-node").textContent = job.node ? job.node.slice(0, 8) + "…" : "—";
      $("job-deposit").textContent = job.deposit_nos + " NOS"; $("job-seconds").textContent = String(job.seconds_used);
      const split = $("job-split").tBodies[0];
      if (job.settlement) {
        const s = job.settlement, f = formatNos;
        split.innerHTML = "";
        for (const [k, v] of [["Cost", s.cost_nos], ["Node", f(s.node_pay)], ["Treasury", f(s.treasury_fee)], ["Stakers", f(s.stakers_fee)], ["Refunded", f(s.refund)]]) {
          const tr = split.insertRow(); const th = document.createElement("th"); th.scope = "row"; th.textContent = k; tr.appendChild(th); tr.insertCell().textContent = v + " NOS";
        }
      }
      const outs = (job.result && job.result.outputs) || [];
      if (outs.length) {
        const ul = $("job-outputs"); ul.textContent = "";
        for (const o of outs) {
          const li = document.createElement("li"); const b = document.createElement("button");
          b.type = "button"; b.textContent = "Download " + o.path + " (" + o.size + " bytes)";
          b.addEventListener("click", () => download(o));
          li.appendChild(b); ul.appendChild(li);
        }
      }
      if (["verifying", "settled", "disputed"].includes(job.state)) {
        api("GET", "/v1/jobs/" + job.id + "/verification").then((v) => {
          $("job-verification").textContent = (v.status + (v.verdict ? " (" + v.verdict + ")" : "")).replace(/_/g, " ");
          const list = $("job-audits"); list.textContent = "";
          for (const r of v.runs || []) {
            const li = document.createElement("li");
            li.textContent = r.role + " run " + r.job.slice(0, 12) + "… on node " + r.node.slice(0, 8) + "… (paid by the " + r.paid_by + ")";
            list.appendChild(li);
          }
          if (v.comparison) { const li = document.createElement("li"); li.textContent = "comparison: " + (v.comparison.match ? "match" : "mismatch") + (v.comparison.reason ? " (" + v.comparison.reason + ")" : ""); list.appendChild(li); }
          if (!list.children.length) list.innerHTML = "<li>No audit run (" + v.status.replace(/_/g, " ") + ").</li>";
        }).catch(() => { $("job-verification").textContent = "not verified (its definition asks for none)"; });
      }
    }
    async function download(o) {
      const r = await signedFetch("GET", "/v1/blobs/" + o.sha256);
      if (!r.ok) { $("post-error").textContent = "Download failed: " + r.status; return; }
      const url = URL.createObjectURL(await r.blob());
      const a = document.createElement("a"); a.href = url; a.download = o.path.split("/").pop() || o.sha256; a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    }
    // Live logs: the signed NDJSON follow stream (an EventSource cannot sign its request).
    async function followLogs(id) {
      const pre = $("job-logs");
      try {
        const r = await signedFetch("GET", "/v1/jobs/" + id + "/logs?follow=true");
        if (!r.ok) { pre.textContent += "[logs: " + r.status + "]\n"; return; }
        const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, i); buf = buf.slice(i + 1);
            if (!line) continue;
            const m = JSON.parse(line);
            if (m.end) { pre.textContent += "[the job is " + m.state + "]\n"; return; }
            pre.textContent += m.data;
            pre.scrollTop = pre.scrollHeight;
          }
        }
      } catch (err) { pre.textContent += "[logs stopped: " + err.message + "]\n"; }
    }
  }

  /* ---------------------------------------------------------------- node page: alerts */
  function nodePage() {
    const section = $("alerts"); const id = section.dataset.node; const list = $("alert-list");
    let source = null;
    const add = (text) => { const li = document.createElement("li"); li.textContent = new Date().toISOString().slice(11, 19) + " " + text; list.prepend(li); };
    $("alert-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (source) source.close();
      const minutes = Number($("idle-minutes").value) || 30;
      source = new EventSource("/v1/nodes/" + encodeURIComponent(id) + "/alerts?idle_minutes=" + minutes);
      // each connection opens with the node's status (the stream reconnects every ~30 s):
      // announce the first, and a change that happened between two connections
      let last = null;
      source.addEventListener("status", (ev) => {
        const s = JSON.parse(ev.data);
        if (last === null) add("subscribed: the node is " + s.status + " (idle alert after " + minutes + " min)");
        else if (s.status !== last.status) add(s.status + ": the node is " + s.status);
        else if (s.offences > last.offences) add("slashed: offence " + s.offences);
        last = s;
      });
      source.addEventListener("alert", (ev) => { const a = JSON.parse(ev.data); add(a.kind + ": " + a.message); });
    });
  }

  /* ---------------------------------------------------------------- ledger page */
  // Canonical JSON as nosgrid.core.ledger.hash_body writes it (sorted keys, no spaces).
  function canon(v) {
    if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
    if (v !== null && typeof v === "object") return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}";
    return JSON.stringify(v);
  }
  async function ledgerPage() {
    const entries = JSON.parse($("entries-data").textContent);
    let bad = 0, prev = null;
    for (const e of entries) {
      const body = { seq: e.seq, kind: e.kind, ref: e.ref, at: e.at, postings: e.postings, prev_hash: e.prev_hash, meta: e.meta };
      const hashOk = (await sha256hex(enc.encode(canon(body)))) === e.hash;
      const linkOk = prev === null ? (e.seq !== 0 || e.prev_hash === "0".repeat(64)) : e.prev_hash === prev;
      prev = e.hash;
      if (!(hashOk && linkOk)) bad++;
      const cell = document.querySelector('tr[data-seq="' + e.seq + '"] .browser');
      if (cell) cell.textContent = hashOk && linkOk ? "· browser ✓" : "· browser ✗ " + (hashOk ? "link" : "hash");
    }
    const status = $("browser-check");
    status.textContent = bad ? "Your browser found " + bad + " entr" + (bad === 1 ? "y" : "ies") + " whose hash or link does not match." :
      "Your browser recomputed all " + entries.length + " hashes with SHA-256 and checked every link: the hash chain is verified.";
    status.dataset.verified = bad ? "false" : "true";
    if (bad) $("chain-status").classList.add("failed");
  }

  window.nosgrid = { consolePage, nodePage, ledgerPage, b58encode, canon };
})();
