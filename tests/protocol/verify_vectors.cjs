// A second implementation, from docs/protocol.md alone, in another language: Node's own crypto (no
// package) checks the vectors' key id, the envelope's and the webhook's Ed25519 signatures over the
// domain tags the specification names, and the RFC 9421 signature base of the signed requests.
// Run by tests/protocol/test_vectors_elsewhere.py: `node verify_vectors.cjs <vectors folder>`.
"use strict";
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const dir = process.argv[2];
const load = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
const b64 = (text) => Buffer.from(text, "base64");
const ed25519 = (raw) => crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
const keyId = (raw) => crypto.createHash("sha256").update(raw).digest("hex").slice(0, 16);
const verify = (raw, message, signature) => crypto.verify(null, message, ed25519(raw), signature);
const tag = (text) => Buffer.concat([Buffer.from(text, "utf8"), Buffer.from([0])]);
const failures = [];
const check = (what, ok) => { if (!ok) failures.push(what); };

const kid = load("key-id.json");
check("key id", keyId(b64(kid.public_key)) === kid.key_id);

const env = load("envelope.json");
const envelope = JSON.parse(env.envelope);
const broker = b64(env.broker_key);
check("envelope member order", Object.keys(envelope).join() === "format,signer,body,signature");
check("envelope signer is the broker key id", envelope.signer === keyId(broker));
const body = b64(envelope.body);
check("envelope signature", verify(broker, Buffer.concat([tag("referral-broker envelope v1"), body]), b64(envelope.signature)));
check("envelope signature refuses another body", !verify(broker, Buffer.concat([tag("referral-broker envelope v1"), body, Buffer.from(" ")]), b64(envelope.signature)));
const inner = JSON.parse(body.toString("utf8"));
check("body member order", Object.keys(inner).join() === "kind,delivery_id,reference,clinic,issued_at,recipients");
check("page carries the envelope as base64", b64(JSON.parse(env.inbox_page).items[0].envelope).toString("utf8") === env.envelope);

const hook = load("webhook.json");
const m = /^t=(\d+), keyid=([0-9a-f]{16}), ed25519=(.+)$/.exec(hook.header);
check("webhook header form", m !== null);
if (m) {
  check("webhook keyid", m[2] === keyId(b64(hook.broker_key)));
  const message = Buffer.concat([tag("referral-broker webhook v1"), Buffer.from(`${m[1]}.`), Buffer.from(hook.body, "utf8")]);
  check("webhook signature", verify(b64(hook.broker_key), message, b64(m[3])));
}

const req = load("signed-requests.json");
for (const r of req.requests) {
  const url = new URL(r.url);
  const input = r.headers["Signature-Input"];
  const params = input.slice(input.indexOf("=") + 1);
  const lines = [`"@method": ${r.method}`, `"@path": ${url.pathname}`, `"@query": ${url.search || "?"}`];
  if (r.body) {
    const digest = crypto.createHash("sha256").update(r.body, "utf8").digest("base64");
    check(`${r.method} content-digest`, r.headers["Content-Digest"] === `sha-256=:${digest}:`);
    lines.push(`"content-digest": ${r.headers["Content-Digest"]}`);
  }
  lines.push(`"@signature-params": ${params}`);
  const base = lines.join("\n");
  check(`${r.method} signature base`, base === r.signature_base);
  const signature = r.headers.Signature.slice(r.headers.Signature.indexOf("=") + 1).replace(/:/g, "");
  check(`${r.method} request signature`, verify(b64(req.clinic_signing_public), Buffer.from(base, "utf8"), b64(signature)));
  check(`${r.method} tag`, params.includes(';tag="referral-broker-clinic"'));
}

if (failures.length) { console.error("failed: " + failures.join("; ")); process.exit(1); }
console.log("ok");
