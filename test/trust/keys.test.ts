import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  generateSigningKeyPair,
  KeyFormatError,
  keyIdOf,
  parsePrivateKey,
  parsePublicKey,
} from '../../src/trust/keys.js';

describe('keys', () => {
  test('a generated pair round-trips: base64 public key, PEM public key and the private key agree on the key id', () => {
    const pair = generateSigningKeyPair();
    const fromBase64 = parsePublicKey(pair.publicKeyBase64);
    const privateKey = parsePrivateKey(pair.privateKeyPem);
    const pem = privateKey.publicKey.key.export({ format: 'pem', type: 'spki' }).toString();
    assert.equal(fromBase64.keyid, pair.keyid);
    assert.equal(privateKey.keyid, pair.keyid);
    assert.equal(parsePublicKey(pem).keyid, pair.keyid);
  });

  test('the key id is the SHA-256 of the raw 32 bytes', () => {
    const pair = generateSigningKeyPair();
    const raw = Buffer.from(pair.publicKeyBase64, 'base64');
    assert.equal(raw.length, 32);
    assert.equal(keyIdOf(raw), createHash('sha256').update(raw).digest('hex'));
    assert.equal(pair.keyid, keyIdOf(raw));
  });

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const badPublicKeys: Array<[string, string]> = [
    ['not base64', 'not a key!'],
    ['31 bytes', Buffer.alloc(31, 1).toString('base64')],
    ['33 bytes', Buffer.alloc(33, 1).toString('base64')],
    ['a broken PEM', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----'],
    ['an RSA key', rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString()],
  ];
  for (const [name, text] of badPublicKeys) {
    test(`refuses a public key that is ${name}`, () => {
      assert.throws(() => parsePublicKey(text), (err: unknown) => err instanceof KeyFormatError && err.code === 'key_invalid');
    });
  }

  test('refuses a private key that is not Ed25519 or not PEM', () => {
    const rsaPem = rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    for (const text of [rsaPem, 'garbage']) {
      assert.throws(() => parsePrivateKey(text), (err: unknown) => err instanceof KeyFormatError);
    }
  });
});
