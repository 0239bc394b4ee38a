// Independent check of crypto/vectors/*.json against crypto/SPEC.md, using libsodium.js.
// Shares no code with the Python implementation: every signed byte string, associated
// data, commitment and padding rule is rebuilt here from the specification.
// Exit status: 0 when every positive vector verifies (byte for byte where the spec is
// deterministic) and every negative vector is refused; 1 otherwise.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import _sodium from 'libsodium-wrappers-sumo';

await _sodium.ready;
const sodium = _sodium;
// CONFIDE_VECTOR_DIR lets the test suite point the checker at deliberately broken copies.
const VECTORS = process.env.CONFIDE_VECTOR_DIR ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors');
const load = (name) => JSON.parse(readFileSync(join(VECTORS, name), 'utf8'));

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const SMALL_ORDER_U = new Set([
  0n, 1n, P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);
const KINDS = { message: 1, note: 2, attachment_key: 3, message_edit: 4, message_delete: 5, note_amendment: 6 };
const REFERENCING = new Set(['message_edit', 'message_delete', 'note_amendment']);
const CHUNK = 65536;
const ABYTES = 17;

class Refused extends Error {}
const refuse = (why) => { throw new Refused(why); };
const check = (cond, why) => { if (!cond) refuse(why); };

const hex = (b) => sodium.to_hex(b);
const fromHex = (s) => sodium.from_hex(s);
const b64 = (s) => {
  check(typeof s === 'string', 'bytes field must be a base64 string');
  return sodium.from_base64(s, sodium.base64_variants.ORIGINAL);
};
const utf8 = (s) => new TextEncoder().encode(s);
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const equal = (a, b) => a.length === b.length && sodium.memcmp(a, b);
const leInt = (b) => b.reduceRight((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
const beBytes = (value, width) => {
  const out = new Uint8Array(width);
  let v = BigInt(value);
  for (let i = width - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
};
const uuidBytes = (s) => {
  check(typeof s === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s), 'bad uuid');
  return fromHex(s.replaceAll('-', ''));
};

// Canonical encoding (SPEC section 3): every item is u32be(length) || bytes.
class Writer {
  constructor(domain) { this.parts = []; this.item(utf8(domain)); }
  item(b) { this.parts.push(beBytes(b.length, 4), b); return this; }
  u8(v) { return this.item(beBytes(v, 1)); }
  u32(v) { return this.item(beBytes(v, 4)); }
  u64(v) { return this.item(beBytes(v, 8)); }
  uuid(s) { return this.item(uuidBytes(s)); }
  optUuid(s) { return this.item(s === null ? new Uint8Array(0) : uuidBytes(s)); }
  bytes() { return concat(...this.parts); }
}

const exactKeys = (obj, required, optional = []) => {
  check(obj !== null && typeof obj === 'object' && !Array.isArray(obj), 'not an object');
  for (const k of Object.keys(obj)) check(required.includes(k) || optional.includes(k), `unknown field ${k}`);
  for (const k of required) check(k in obj, `missing field ${k}`);
};
const keyVersion = (v) => check(Number.isInteger(v) && v >= 1 && v <= 0xffffffff, 'key version');

function validX25519(pk) {
  check(pk.length === 32, 'x25519 length');
  const u = leInt(pk);
  check(u < P, 'x25519 non-canonical');
  check(!SMALL_ORDER_U.has(u), 'x25519 small order');
}
function validEd25519(pk) {
  check(pk.length === 32 && sodium.crypto_core_ed25519_is_valid_point(pk), 'ed25519 invalid');
}
function verifyStrict(pk, msg, sig) {
  check(sig.length === 64, 'signature length');
  check(leInt(sig.subarray(32)) < L, 'signature S not canonical');
  check(sodium.crypto_sign_verify_detached(sig, msg, pk), 'signature does not verify');
}

// ---- key bundles (SPEC section 4) ----
function parseBundle(text) {
  const o = JSON.parse(text);
  exactKeys(o, ['version', 'account_id', 'key_version', 'encryption_key', 'signing_key', 'created_at', 'self_signature'], ['rotation_signature']);
  check(o.version === 1, 'bundle version');
  keyVersion(o.key_version);
  check(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(o.created_at), 'created_at must be whole seconds UTC');
  const seconds = Date.parse(o.created_at) / 1000;
  check(Number.isInteger(seconds) && seconds >= 0, 'created_at');
  const b = {
    account_id: o.account_id, key_version: o.key_version, created: seconds,
    encryption_key: b64(o.encryption_key), signing_key: b64(o.signing_key),
    self_signature: b64(o.self_signature),
    rotation_signature: o.rotation_signature == null ? null : b64(o.rotation_signature),
  };
  uuidBytes(b.account_id);
  validX25519(b.encryption_key);
  validEd25519(b.signing_key);
  check(b.self_signature.length === 64, 'self signature length');
  if (b.rotation_signature !== null) {
    check(b.key_version !== 1, 'rotation signature on version 1');
    check(b.rotation_signature.length === 64, 'rotation signature length');
  }
  return b;
}
const bundleBody = (w, b) => w.u32(1).uuid(b.account_id).u32(b.key_version).item(b.encryption_key).item(b.signing_key).u64(b.created);
const bundleSignedBytes = (b) => bundleBody(new Writer('confide/v1/key-bundle'), b).bytes();
const rotationSignedBytes = (prev, b) => bundleBody(new Writer('confide/v1/key-rotation'), b).u32(prev.key_version).item(prev.signing_key).bytes();
const verifyBundle = (b) => verifyStrict(b.signing_key, bundleSignedBytes(b), b.self_signature);
function verifyRotation(prev, b) {
  verifyBundle(prev); verifyBundle(b);
  check(b.account_id === prev.account_id, 'account differs');
  check(b.key_version === prev.key_version + 1, 'version does not follow');
  check(b.created >= prev.created, 'older than previous');
  check(b.rotation_signature !== null, 'no rotation signature (reset)');
  verifyStrict(prev.signing_key, rotationSignedBytes(prev, b), b.rotation_signature);
}

// ---- envelopes (SPEC section 5) ----
const bucketSizes = new Set(Array.from({ length: 13 }, (_, i) => 256 << i));
function parseEnvelope(text) {
  const o = JSON.parse(text);
  exactKeys(o, ['version', 'kind', 'context_id', 'item_id', 'sender', 'recipients', 'nonce', 'key_commitment', 'ciphertext', 'signature'], ['references']);
  check(o.version === 1, 'envelope version');
  check(o.kind in KINDS, 'kind');
  const references = o.references ?? null;
  check(REFERENCING.has(o.kind) === (references !== null), 'reference rule');
  exactKeys(o.sender, ['account_id', 'key_version']);
  keyVersion(o.sender.key_version);
  check(Array.isArray(o.recipients) && o.recipients.length >= 1 && o.recipients.length <= 256, 'recipient count');
  const recipients = o.recipients.map((r) => {
    exactKeys(r, ['account_id', 'key_version', 'public_key', 'wrapped_key']);
    keyVersion(r.key_version);
    const entry = { account_id: r.account_id, key_version: r.key_version, public_key: b64(r.public_key), wrapped_key: b64(r.wrapped_key) };
    validX25519(entry.public_key);
    check(entry.wrapped_key.length === 80, 'wrapped key length');
    return entry;
  });
  const order = (r) => hex(uuidBytes(r.account_id)) + r.key_version.toString(16).padStart(8, '0');
  for (let i = 1; i < recipients.length; i++) check(order(recipients[i - 1]) < order(recipients[i]), 'recipients unsorted');
  check(recipients.some((r) => r.account_id === o.sender.account_id && r.key_version === o.sender.key_version), 'sender not a recipient');
  const e = {
    kind: o.kind, context_id: o.context_id, item_id: o.item_id, sender: o.sender, references, recipients,
    nonce: b64(o.nonce), key_commitment: b64(o.key_commitment), ciphertext: b64(o.ciphertext), signature: b64(o.signature),
  };
  check(e.nonce.length === 24 && e.key_commitment.length === 32 && e.signature.length === 64, 'field length');
  check(bucketSizes.has(e.ciphertext.length - 16), 'ciphertext not a bucket');
  return e;
}
function envelopeSignedBytes(e) {
  const w = new Writer(`confide/v1/envelope/${e.kind}`).u32(1).u8(KINDS[e.kind]).uuid(e.context_id).uuid(e.item_id)
    .uuid(e.sender.account_id).u32(e.sender.key_version).optUuid(e.references).u32(e.recipients.length);
  for (const r of e.recipients) w.uuid(r.account_id).u32(r.key_version).item(r.public_key).item(r.wrapped_key);
  return w.item(e.nonce).item(e.key_commitment).item(e.ciphertext).bytes();
}
const envelopeAD = (e) => new Writer('confide/v1/envelope-ad').u32(1).u8(KINDS[e.kind]).uuid(e.context_id).uuid(e.item_id)
  .uuid(e.sender.account_id).u32(e.sender.key_version).optUuid(e.references).bytes();
const commitment = (key, nonce) => sodium.crypto_hash_sha512(new Writer('confide/v1/key-commitment').item(key).item(nonce).bytes()).subarray(0, 32);
function unpad(padded) {
  check(bucketSizes.has(padded.length), 'padded length');
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  check(i >= 0 && padded[i] === 0x80, 'padding');
  const size = Math.max(256, 2 ** Math.floor(Math.log2(i) + 1));
  check(size === padded.length, 'not the canonical bucket');
  return padded.subarray(0, i);
}
function verifyEnvelope(e, sender) {
  verifyBundle(sender);
  check(sender.account_id === e.sender.account_id && sender.key_version === e.sender.key_version, 'not the sender bundle');
  verifyStrict(sender.signing_key, envelopeSignedBytes(e), e.signature);
  const own = e.recipients.find((r) => r.account_id === e.sender.account_id && r.key_version === e.sender.key_version);
  check(equal(own.public_key, sender.encryption_key), 'sender entry key');
}
function checkReadable(e, sender, contextId, kinds) {
  verifyEnvelope(e, sender);
  check(e.context_id === contextId && kinds.includes(e.kind), 'wrong context or kind');
}
// Unwrap, then the key commitment (SPEC 5.4) before any decryption: it is what binds an
// unsigned wrap (a custodian's re-wrap, SPEC 5.10) to this signed envelope.
function unwrapAndDecrypt(e, reader, wrapped) {
  check(wrapped.length === 80, 'wrapped key length');
  let key;
  try { key = sodium.crypto_box_seal_open(wrapped, reader.bundle.encryption_key, reader.secret); } catch { refuse('unwrap'); }
  check(equal(commitment(key, e.nonce), e.key_commitment), 'commitment');
  let padded;
  try { padded = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, e.ciphertext, envelopeAD(e), e.nonce, key); } catch { refuse('aead'); }
  const payload = unpad(padded);
  JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  return { key, padded, payload };
}
function openEnvelope(e, sender, reader, contextId, kinds) {
  checkReadable(e, sender, contextId, kinds);
  const entry = e.recipients.find((r) => r.account_id === reader.bundle.account_id && r.key_version === reader.bundle.key_version);
  check(entry && equal(entry.public_key, reader.bundle.encryption_key), 'not a recipient');
  return unwrapAndDecrypt(e, reader, entry.wrapped_key);
}
function openEnvelopeWithWrap(e, sender, reader, wrapped, contextId, kinds) {
  checkReadable(e, sender, contextId, kinds);
  return unwrapAndDecrypt(e, reader, wrapped);
}
const NOTE_KINDS = ['note', 'note_amendment'];

// ---- backups (SPEC section 7) ----
function parseBackup(text) {
  const o = JSON.parse(text);
  exactKeys(o, ['version', 'account_id', 'key_version', 'kdf', 'opslimit', 'memlimit', 'salt', 'nonce', 'ciphertext']);
  check(o.version === 1 && o.kdf === 'argon2id13', 'backup version or kdf');
  keyVersion(o.key_version);
  check(Number.isInteger(o.opslimit) && o.opslimit >= 3 && o.opslimit <= 16, 'opslimit range');
  check(Number.isInteger(o.memlimit) && o.memlimit >= 64 * 2 ** 20 && o.memlimit <= 1024 * 2 ** 20, 'memlimit range');
  const b = { ...o, salt: b64(o.salt), nonce: b64(o.nonce), ciphertext: b64(o.ciphertext) };
  check(b.salt.length === 16 && b.nonce.length === 24 && b.ciphertext.length === 80, 'backup lengths');
  return b;
}
const backupAD = (b) => new Writer('confide/v1/key-backup').u32(1).uuid(b.account_id).u32(b.key_version)
  .item(utf8('argon2id13')).u64(b.opslimit).u64(b.memlimit).item(b.salt).bytes();
const passphraseBytes = (p) => utf8(p.normalize('NFKC'));
function openBackup(b, passphrase, bundle) {
  check(b.account_id === bundle.account_id && b.key_version === bundle.key_version, 'backup for another key');
  verifyBundle(bundle);
  const key = sodium.crypto_pwhash(32, passphraseBytes(passphrase), b.salt, b.opslimit, b.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
  let secrets;
  try { secrets = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, b.ciphertext, backupAD(b), b.nonce, key); } catch { refuse('backup aead'); }
  check(equal(sodium.crypto_scalarmult_base(secrets.subarray(0, 32)), bundle.encryption_key), 'x25519 key mismatch');
  check(equal(sodium.crypto_sign_seed_keypair(secrets.subarray(32)).publicKey, bundle.signing_key), 'ed25519 key mismatch');
  return { key, secrets };
}

// ---- attachments (SPEC section 6) ----
function parseAttachmentKey(text) {
  const o = JSON.parse(text);
  exactKeys(o, ['version', 'attachment_id', 'key', 'ciphertext_hash', 'size', 'media_type']);
  check(o.version === 1, 'attachment version');
  return { ...o, key: b64(o.key), ciphertext_hash: b64(o.ciphertext_hash) };
}
function decryptAttachment(blob, ref) {
  check(blob.length >= 24, 'no header');
  const state = sodium.crypto_secretstream_xchacha20poly1305_init_pull(blob.subarray(0, 24), ref.key);
  const ad = new Writer('confide/v1/attachment').u32(1).uuid(ref.attachment_id).bytes();
  const out = [];
  let at = 24;
  for (;;) {
    const block = blob.subarray(at, at + CHUNK + ABYTES);
    at += block.length;
    check(block.length >= ABYTES, 'truncated');
    const r = sodium.crypto_secretstream_xchacha20poly1305_pull(state, block, ad);
    check(r, 'chunk does not authenticate');
    const final = r.tag === sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    check(final === (r.message.length < CHUNK), 'chunking');
    out.push(r.message);
    if (final) break;
  }
  check(at === blob.length, 'trailing bytes');
  const plain = concat(...out);
  check(plain.length === ref.size, 'size');
  check(equal(sodium.crypto_generichash(32, blob), ref.ciphertext_hash), 'hash');
  return plain;
}

// ---- consent statements (SPEC section 9) ----
const CONSENT_ACTIONS = { grant: 1, revoke: 2 };
const SCOPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;
const PURPOSE = /^[A-Z]{2,16}$/;
function utcSeconds(s, what) {
  check(typeof s === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(s), `${what} must be whole seconds UTC`);
  const seconds = Date.parse(s) / 1000;
  check(Number.isInteger(seconds) && seconds >= 0, what);
  return seconds;
}
function parseConsent(text) {
  check(utf8(text).length <= 4096, 'consent too large');
  const o = JSON.parse(text);
  exactKeys(o, ['version', 'action', 'consent_id', 'client', 'organization_id', 'grantee_type', 'grantee_id',
    'scopes', 'purpose', 'valid_from', 'valid_until', 'issued_at', 'signature']);
  check(o.version === 1, 'consent version');
  check(Object.hasOwn(CONSENT_ACTIONS, o.action), 'action');
  exactKeys(o.client, ['account_id', 'key_version']);
  keyVersion(o.client.key_version);
  for (const id of [o.consent_id, o.client.account_id, o.organization_id, o.grantee_id]) uuidBytes(id);
  check(o.grantee_type === 'clinician' || o.grantee_type === 'organization', 'grantee type');
  check(o.grantee_type !== 'organization' || o.grantee_id === o.organization_id, 'organization grantee');
  check(Array.isArray(o.scopes) && o.scopes.length >= 1 && o.scopes.length <= 16, 'scope count');
  for (const scope of o.scopes) check(typeof scope === 'string' && scope.length <= 64 && SCOPE.test(scope), 'scope');
  for (let i = 1; i < o.scopes.length; i++) check(o.scopes[i - 1] < o.scopes[i], 'scopes unsorted');
  check(typeof o.purpose === 'string' && PURPOSE.test(o.purpose), 'purpose');
  const c = {
    action: o.action, consent_id: o.consent_id, client: o.client, organization_id: o.organization_id,
    grantee_type: o.grantee_type, grantee_id: o.grantee_id, scopes: o.scopes, purpose: o.purpose,
    valid_from: utcSeconds(o.valid_from, 'valid_from'),
    valid_until: o.valid_until === null ? null : utcSeconds(o.valid_until, 'valid_until'),
    issued_at: utcSeconds(o.issued_at, 'issued_at'),
    signature: b64(o.signature),
  };
  check(c.valid_until === null || c.valid_until > c.valid_from, 'validity period');
  check(c.signature.length === 64, 'consent signature length');
  return c;
}
function consentSignedBytes(c) {
  const w = new Writer(`confide/v1/consent/${c.action}`).u32(1).u8(CONSENT_ACTIONS[c.action]).uuid(c.consent_id)
    .uuid(c.client.account_id).u32(c.client.key_version).uuid(c.organization_id)
    .item(utf8(c.grantee_type)).uuid(c.grantee_id).u32(c.scopes.length);
  for (const scope of c.scopes) w.item(utf8(scope));
  w.item(utf8(c.purpose)).u64(c.valid_from);
  if (c.valid_until === null) w.item(new Uint8Array(0)); else w.u64(c.valid_until);
  return w.u64(c.issued_at).bytes();
}
function verifyConsent(c, client) {
  verifyBundle(client);
  check(client.account_id === c.client.account_id && client.key_version === c.client.key_version, 'not the client key');
  verifyStrict(client.signing_key, consentSignedBytes(c), c.signature);
}

// ---- fingerprints (SPEC section 8) ----
function fingerprintDigest(b) {
  const identity = new Writer('confide/v1/fingerprint').u32(1).uuid(b.account_id).item(b.signing_key).item(b.encryption_key).bytes();
  let d = identity;
  for (let i = 0; i < 5200; i++) d = sodium.crypto_hash_sha512(concat(d, identity));
  return { identity, digest: d.subarray(0, 32) };
}
const digits = (d) => Array.from({ length: 6 }, (_, i) => (leInt(d.subarray(5 * i, 5 * i + 5).slice().reverse()) % 100000n).toString().padStart(5, '0'));

// ---- run ----
let failures = 0;
let passed = 0;
function test(name, fn) {
  try { fn(); passed++; } catch (err) { failures++; console.error(`FAIL ${name}: ${err.message}`); }
}
const expectEqual = (actual, expected, what) => { if (actual !== expected) throw new Error(`${what}: ${actual} != ${expected}`); };

const keys = load('keys.json');
const identities = new Map();
for (const v of keys.identities) {
  test(`bundle ${v.name}`, () => {
    const b = parseBundle(v.bundle);
    const secret = fromHex(v.encryption_secret);
    const signing = sodium.crypto_sign_seed_keypair(fromHex(v.signing_seed));
    expectEqual(hex(sodium.crypto_scalarmult_base(secret)), v.encryption_key, 'x25519 public key');
    expectEqual(hex(signing.publicKey), v.signing_key, 'ed25519 public key');
    expectEqual(hex(b.encryption_key), v.encryption_key, 'bundle encryption key');
    expectEqual(hex(bundleSignedBytes(b)), v.bundle_signed_bytes, 'bundle signed bytes');
    expectEqual(hex(sodium.crypto_sign_detached(bundleSignedBytes(b), signing.privateKey)), hex(b.self_signature), 'self signature (deterministic)');
    verifyBundle(b);
    identities.set(v.name, { bundle: b, secret, signing });
    if (v.previous !== null) {
      const prev = identities.get(v.previous);
      expectEqual(hex(rotationSignedBytes(prev.bundle, b)), v.rotation_signed_bytes, 'rotation signed bytes');
      expectEqual(hex(sodium.crypto_sign_detached(rotationSignedBytes(prev.bundle, b), prev.signing.privateKey)), hex(b.rotation_signature), 'rotation signature');
      verifyRotation(prev.bundle, b);
    }
  });
}
test('chain', () => { for (let i = 1; i < keys.chain.length; i++) verifyRotation(identities.get(keys.chain[i - 1]).bundle, identities.get(keys.chain[i]).bundle); });

const envelopeVectors = load('envelopes.json').envelopes;
for (const v of envelopeVectors) {
  test(`envelope ${v.name}`, () => {
    const e = parseEnvelope(v.envelope);
    const sender = identities.get(v.sender);
    expectEqual(hex(envelopeSignedBytes(e)), v.signed_bytes, 'signed bytes');
    expectEqual(hex(envelopeAD(e)), v.associated_data, 'associated data');
    expectEqual(hex(sodium.crypto_sign_detached(envelopeSignedBytes(e), sender.signing.privateKey)), hex(e.signature), 'signature (deterministic)');
    const key = fromHex(v.content_key);
    expectEqual(hex(commitment(key, e.nonce)), v.key_commitment, 'key commitment');
    expectEqual(hex(e.nonce), v.nonce, 'nonce');
    const ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(fromHex(v.padded_payload), envelopeAD(e), null, e.nonce, key);
    expectEqual(hex(ciphertext), hex(e.ciphertext), 'AEAD ciphertext (deterministic)');
    e.recipients.forEach((r, i) => {
      const esk = fromHex(v.ephemeral_secrets[i]);
      const epk = sodium.crypto_scalarmult_base(esk);
      const nonce = sodium.crypto_generichash(24, concat(epk, r.public_key), null);
      const boxed = concat(epk, sodium.crypto_box_easy(key, nonce, r.public_key, esk));
      expectEqual(hex(boxed), hex(r.wrapped_key), `wrapped key ${i} (deterministic sealed box)`);
    });
    for (const name of v.recipients) {
      const opened = openEnvelope(e, sender.bundle, identities.get(name), v.context_id, Object.keys(KINDS));
      expectEqual(hex(opened.key), v.content_key, `content key for ${name}`);
      expectEqual(hex(opened.padded), v.padded_payload, 'padded payload');
      expectEqual(new TextDecoder().decode(opened.payload), v.payload, 'payload');
    }
  });
}

for (const v of load('rewraps.json').rewraps) {
  test(`rewrap ${v.name}`, () => {
    const source = envelopeVectors.find((item) => item.name === v.envelope);
    check(source !== undefined, 'unknown envelope vector');
    const e = parseEnvelope(source.envelope);
    const sender = identities.get(source.sender);
    const custodian = identities.get(v.custodian);
    const reader = identities.get(v.reader);
    check(source.recipients.includes(v.custodian) && !source.recipients.includes(v.reader), 'vector roles');
    // What the custodian does: open its own entry, then seal the key to the reader.
    const { key } = openEnvelope(e, sender.bundle, custodian, v.context_id, v.kinds);
    expectEqual(hex(key), v.content_key, 'custodian content key');
    const esk = fromHex(v.ephemeral_secret);
    const epk = sodium.crypto_scalarmult_base(esk);
    const nonce = sodium.crypto_generichash(24, concat(epk, reader.bundle.encryption_key), null);
    const boxed = concat(epk, sodium.crypto_box_easy(key, nonce, reader.bundle.encryption_key, esk));
    expectEqual(hex(boxed), v.wrapped_key, 'wrapped key (deterministic sealed box)');
    // What the reader does: verify the envelope, open the wrap, check the commitment.
    const opened = openEnvelopeWithWrap(e, sender.bundle, reader, fromHex(v.wrapped_key), v.context_id, v.kinds);
    expectEqual(hex(opened.key), v.content_key, 'reader content key');
    expectEqual(new TextDecoder().decode(opened.payload), source.payload, 'payload');
  });
}

const attachments = load('attachments.json');
for (const v of attachments.attachments) {
  test(`attachment ${v.name}`, () => {
    const blob = b64(v.ciphertext);
    const ref = parseAttachmentKey(v.attachment_key);
    expectEqual(hex(blob.subarray(0, 24)), v.header, 'header');
    const plain = decryptAttachment(blob, ref);
    const expected = Uint8Array.from({ length: v.size }, (_, i) => i % 251);
    if (!equal(plain, expected)) throw new Error('plaintext differs');
  });
}

for (const v of load('backups.json').backups) {
  test(`backup ${v.name}`, () => {
    expectEqual(hex(passphraseBytes(v.passphrase)), v.normalized_passphrase, 'NFKC passphrase');
    const b = parseBackup(v.backup);
    expectEqual(hex(backupAD(b)), v.associated_data, 'backup associated data');
    const { key, secrets } = openBackup(b, v.passphrase, identities.get(v.identity).bundle);
    expectEqual(hex(key), v.derived_key, 'Argon2id key');
    expectEqual(hex(secrets), v.plaintext, 'backup plaintext');
  });
}

for (const v of load('fingerprints.json').fingerprints) {
  test(`fingerprint ${v.a}+${v.b}`, () => {
    const a = fingerprintDigest(identities.get(v.a).bundle);
    const b = fingerprintDigest(identities.get(v.b).bundle);
    expectEqual(hex(a.identity), v.identity_bytes_a, 'identity bytes');
    expectEqual(digits(a.digest).join(' '), v.fingerprint_a, 'fingerprint a');
    expectEqual(digits(b.digest).join(' '), v.fingerprint_b, 'fingerprint b');
    const [first, second] = [a.digest, b.digest].sort((x, y) => (hex(x) < hex(y) ? -1 : 1));
    expectEqual([...digits(first), ...digits(second)].join(' '), v.safety_number, 'safety number');
    expectEqual(hex(concat(Uint8Array.of(1), first, second)), v.qr_payload, 'QR payload');
  });
}

for (const v of load('consents.json').consents) {
  test(`consent ${v.name}`, () => {
    const c = parseConsent(v.statement);
    const signer = identities.get(v.identity);
    expectEqual(hex(consentSignedBytes(c)), v.signed_bytes, 'consent signed bytes');
    expectEqual(hex(sodium.crypto_sign_detached(consentSignedBytes(c), signer.signing.privateKey)), hex(c.signature), 'consent signature (deterministic)');
    verifyConsent(c, signer.bundle);
  });
}

for (const v of load('negative.json').vectors) {
  test(`negative ${v.name}`, () => {
    try {
      if (v.category === 'envelope') {
        openEnvelope(parseEnvelope(v.data), identities.get(v.identity).bundle, identities.get(v.reader), v.context_id, ['message']);
      } else if (v.category === 'bundle') {
        verifyBundle(parseBundle(v.data));
      } else if (v.category === 'rotation') {
        verifyRotation(identities.get(v.identity).bundle, parseBundle(v.data));
      } else if (v.category === 'backup') {
        openBackup(parseBackup(v.data), v.passphrase, identities.get(v.identity).bundle);
      } else if (v.category === 'consent') {
        verifyConsent(parseConsent(v.data), identities.get(v.identity).bundle);
      } else if (v.category === 'rewrap') {
        openEnvelopeWithWrap(parseEnvelope(v.data), identities.get(v.identity).bundle, identities.get(v.reader), b64(v.wrapped_key), v.context_id, NOTE_KINDS);
      } else if (v.category === 'attachment') {
        decryptAttachment(b64(v.data), parseAttachmentKey(v.attachment_key));
      } else {
        throw new Error(`unknown category ${v.category}`);
      }
    } catch (err) {
      if (err instanceof Refused) return;
      throw err;
    }
    throw new Error(`accepted (expected ${v.expected_error})`);
  });
}

console.log(`interop: ${passed} passed, ${failures} failed`);
process.exit(failures === 0 && passed > 0 ? 0 : 1);
