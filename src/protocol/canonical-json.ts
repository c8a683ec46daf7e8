import canonicalize from 'canonicalize';

/**
 * RFC 8785 (JSON Canonicalization Scheme) bytes of a value: what signatures are made over, so
 * that any implementation that canonicalizes the same way verifies the same bytes.
 */
export function canonicalBytes(value: unknown): Buffer {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value cannot be canonicalized as JSON');
  return Buffer.from(text, 'utf8');
}
